"""Inverse-velocity (Fukuzono) failure forecast on synthetic series with known answers.

Tertiary creep with alpha = 2 (a = A v^2) has v(t) = 1 / (A (t_f - t)), so the displacement is
x(t) = -(1/A) ln((t_f - t) / t_f) and 1/v = A (t_f - t) reaches 0 at t_f exactly.  A is set by
the velocity v0 at t = 0: A = 1 / (v0 t_f).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import pytest

from cloud.detect.inverse_velocity import MAX_BIN_SAMPLES, FailureForecast, InverseVelocity

T0 = 1_736_900_000.0
HOUR = 3600.0
DAY = 86400.0
TF_H = 100.0  # failure 100 h after T0


def fukuzono(
    end_h: float, *, v0_per_day: float = 2.0, noise: float = 0.02, seed: int = 1, direction: float = 1.0
) -> Iterator[tuple[float, float]]:
    """x(t) = -(1/A) ln((t_f - t) / t_f) + noise, sampled every 60 s up to end_h."""
    tf = TF_H * HOUR
    a = 1.0 / (v0_per_day / DAY * tf)
    rng = random.Random(seed)
    for k in range(round(end_h * 60) + 1):
        t = 60.0 * k
        yield T0 + t, 5.0 + direction * (-math.log((tf - t) / tf) / a) + rng.gauss(0.0, noise)


def linear(
    per_day: float, hours: float, *, noise: float = 0.02, seed: int = 3, step_s: float = 60.0
) -> Iterator[tuple[float, float]]:
    rng = random.Random(seed)
    for k in range(round(hours * 3600 / step_s) + 1):
        t = step_s * k
        yield T0 + t, 3.0 + per_day * t / DAY + rng.gauss(0.0, noise)


def run(
    samples: Iterator[tuple[float, float]], iv: InverseVelocity | None = None
) -> tuple[InverseVelocity, int]:
    """Feed every sample, asking for a forecast after each as the engine does; (forecaster,
    number of forecasts given)."""
    iv = iv or InverseVelocity()
    given = 0
    for t, value in samples:
        iv.add(t, value)
        if iv.forecast(t) is not None:
            given += 1
    return iv, given


def forecast_at_end(samples: Iterator[tuple[float, float]]) -> tuple[FailureForecast | None, InverseVelocity]:
    iv = InverseVelocity()
    t = T0
    for t, value in samples:
        iv.add(t, value)
    return iv.forecast(t), iv


@pytest.mark.parametrize(("lead_min", "max_error_min"), [(60.0, 5.0), (10.0, 2.0)])
def test_fukuzono_series_forecasts_the_failure_time(lead_min: float, max_error_min: float) -> None:
    end_h = TF_H - lead_min / 60.0
    fc, iv = forecast_at_end(fukuzono(end_h))
    assert fc is not None, iv.refused
    assert iv.refused == ""
    truth = T0 + TF_H * HOUR
    assert abs(fc.t_failure - truth) <= max_error_min * 60.0
    assert fc.earliest <= fc.t_failure <= fc.latest
    assert fc.earliest <= truth <= fc.latest

    # v = 1 / (A (t_f - t)) = v0 t_f / (t_f - t); the last closed bin ends at most 10 min ago
    def v_true(minutes_before: float) -> float:
        return 2.0 * TF_H * 60.0 / minutes_before

    assert 0.9 * v_true(lead_min + 10.0) <= fc.velocity_per_day <= 1.1 * v_true(lead_min)
    assert fc.inverse_velocity == pytest.approx(1.0 / fc.velocity_per_day)
    assert fc.points >= 6
    assert T0 + (end_h - 24.0) * HOUR <= fc.onset < T0 + end_h * HOUR


def test_bins_shrink_as_failure_approaches() -> None:
    """1 h bins far from failure; the last bins before t_f - 10 min last at most 10 min."""
    _, iv = forecast_at_end(fukuzono(TF_H - 1.0 / 6.0))
    bins = list(iv._bins)
    assert bins[0].end - bins[0].start == pytest.approx(HOUR)
    assert all(b.end - b.start <= 600.0 for b in bins[-4:])


def test_movement_towards_negative_values_is_movement() -> None:
    fc, iv = forecast_at_end(fukuzono(TF_H - 1.0, direction=-1.0, seed=2))
    assert fc is not None, iv.refused
    assert abs(fc.t_failure - (T0 + TF_H * HOUR)) <= 5 * 60.0
    assert fc.velocity_per_day > 0  # positive = moving, whatever the sign of the series
    velocity = iv.velocity_per_day()
    assert velocity is not None and velocity < 0  # the raw velocity keeps the series' sign


def test_forecast_is_refused_once_the_failure_time_is_past_or_beyond_the_horizon() -> None:
    fc, iv = forecast_at_end(fukuzono(TF_H - 1.0))
    assert fc is not None
    assert iv.forecast(fc.t_failure + 60.0) is None
    assert "past" in iv.refused
    far = InverseVelocity(max_horizon_s=1800.0)
    for t, value in fukuzono(TF_H - 1.0):
        far.add(t, value)
    assert far.forecast(T0 + (TF_H - 1.0) * HOUR) is None
    assert far.refused == "failure beyond 0.5 h"


def test_constant_velocity_is_refused_as_not_accelerating() -> None:
    iv, given = run(linear(5.0, 40.0))
    assert given == 0
    assert iv.refused.startswith("not accelerating")
    assert iv.forecast(T0 + 40 * HOUR) is None


def test_decelerating_creep_is_refused() -> None:
    """Primary creep, x = 10 ln(1 + t / 5 h): the velocity falls all along."""
    rng = random.Random(4)
    samples = (
        (T0 + 60.0 * k, 10.0 * math.log1p(60.0 * k / (5 * HOUR)) + rng.gauss(0.0, 0.02))
        for k in range(40 * 60)
    )
    iv, given = run(samples)
    assert given == 0
    assert iv.refused == "decelerating"


def test_constant_plus_noise_is_refused_as_not_moving() -> None:
    iv, given = run(linear(0.0, 40.0, seed=5))
    assert given == 0
    assert iv.refused == "not moving measurably (velocity within the noise)"


def test_too_few_velocity_points_are_refused() -> None:
    iv, given = run(linear(5.0, 3.0))  # bins close at 1, 2 and 3 h
    assert given == 0
    assert iv.refused == "too few velocity points (3 of 6)"
    assert InverseVelocity().forecast(T0) is None


def test_min_velocity_refuses_a_slow_slope() -> None:
    iv = InverseVelocity(min_velocity_per_day=1000.0)
    iv, given = run(fukuzono(TF_H - 1.0), iv)
    assert given == 0
    assert iv.refused.startswith("velocity ") and "below the minimum 1000/day" in iv.refused


def test_memory_is_bounded_and_stale_samples_are_ignored() -> None:
    iv = InverseVelocity()
    for k in range(3601 + 600):  # 1 s samples: the open bin is thinned
        iv.add(T0 + k, 0.001 * k)
        assert len(iv._bin_t) <= MAX_BIN_SAMPLES + 1
    iv.add(T0, 99.0)  # older: ignored
    iv.add(T0 + 4200, 99.0)  # same time as the last: ignored
    iv.add(T0 + 4201, math.nan)
    assert len(iv._bins) == 1
    assert iv.velocity_per_day() == pytest.approx(0.001 * DAY, rel=1e-6)
    days = InverseVelocity()
    for t, value in linear(5.0, 24 * 10, noise=0.0, step_s=600.0):  # 10 days of 1 h bins
        days.add(t, value)
    assert len(days._bins) <= 2 * 24 + 1  # the fit window and the one before
