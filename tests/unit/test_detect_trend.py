"""Robust rate of change (Theil-Sen) and trend forecast, on hand-computed vectors."""

from __future__ import annotations

import math
import random

import pytest

from cloud.detect.trend import Crossing, Rate, RateWindow, forecast_crossing, theil_sen_rate

T0 = 1_736_900_000.0  # epoch seconds: the fits must not lose precision on real timestamps
HOUR = 3600.0


def line_window(
    slope_per_h: float,
    value_now: float,
    *,
    now: float = T0,
    span_h: float = 3.0,
    step_s: float = 300.0,
    noise: float = 0.0,
    seed: int = 1,
) -> RateWindow:
    """Samples every `step_s` over the `span_h` hours up to `now` of a line through value_now."""
    rng = random.Random(seed)
    window = RateWindow(span_h * HOUR)
    n = round(span_h * HOUR / step_s)
    for k in range(n + 1):
        t = now - span_h * HOUR + k * step_s
        window.add(t, value_now + slope_per_h * (t - now) / HOUR + rng.gauss(0.0, noise))
    return window


# -- Rate -----------------------------------------------------------------------------------------


def test_exact_line_gives_its_slope_with_a_zero_width_interval() -> None:
    window = RateWindow(1200.0)
    for k in range(11):  # 0, 60, ..., 600 s: value 2 + 0.001 t
        window.add(T0 + 60.0 * k, 2.0 + 0.06 * k)
    rate = window.rate()
    assert rate is not None
    assert rate.per_s == pytest.approx(0.001, rel=1e-9)
    assert rate.low == pytest.approx(0.001, rel=1e-9) and rate.high == pytest.approx(0.001, rel=1e-9)
    assert (rate.n, rate.span_s) == (11, 600.0)
    assert rate.significant
    assert window.fitted(T0 + 1200.0) == pytest.approx(3.2, abs=1e-9)


def test_one_wild_outlier_moves_neither_the_slope_nor_the_line() -> None:
    window = RateWindow(1200.0)
    for k in range(11):
        window.add(T0 + 60.0 * k, 2.0 + 0.06 * k + (100.0 if k == 5 else 0.0))
    rate = window.rate()
    assert rate is not None
    # 55 pair slopes: the 10 through the outlier split 5 huge up, 5 huge down; the median is exact
    assert rate.per_s == pytest.approx(0.001, rel=1e-9)
    assert window.fitted(T0 + 300.0) == pytest.approx(2.3, abs=1e-9)  # median intercept


def test_least_squares_would_not_survive_that_outlier() -> None:
    """The reason for Theil-Sen, in numbers: one outlier off the centre of the window."""
    ts = [60.0 * k for k in range(11)]
    vs = [2.0 + 0.06 * k + (100.0 if k == 9 else 0.0) for k in range(11)]
    mean_t, mean_v = sum(ts) / 11, sum(vs) / 11
    sxx = sum((t - mean_t) ** 2 for t in ts)
    least_squares = sum((t - mean_t) * (v - mean_v) for t, v in zip(ts, vs, strict=True)) / sxx
    assert least_squares > 0.05  # fifty times the true 0.001 per second
    rate = theil_sen_rate([T0 + t for t in ts], vs)
    assert rate is not None and rate.per_s == pytest.approx(0.001, rel=1e-9)


def test_window_drops_samples_older_than_window_s() -> None:
    window = RateWindow(600.0)
    for k in range(31):  # 30 min: slope 0.001/s for 20 min, then 0.002/s
        t = 60.0 * k
        value = 0.001 * t if t <= 1200.0 else 1.2 + 0.002 * (t - 1200.0)
        window.add(T0 + t, value)
    assert len(window) == 11  # t = 1200 ... 1800: the samples of the last 600 s (both ends kept)
    rate = window.rate()
    assert rate is not None and rate.per_s == pytest.approx(0.002, rel=1e-9)
    assert rate.span_s == 600.0


def test_max_samples_thins_the_older_half_and_keeps_the_span() -> None:
    window = RateWindow(30_000.0, max_samples=120)
    sizes = []
    for k in range(10_000):
        window.add(T0 + k, 5.0 - 0.5 * k)
        sizes.append(len(window))
    assert max(sizes) <= 120
    rate = window.rate()
    assert rate is not None
    assert rate.span_s == 9999.0  # the first sample is never thinned away
    assert rate.per_s == pytest.approx(-0.5, rel=1e-9)
    assert 60 <= rate.n <= 120


def test_flat_noisy_series_is_not_significant() -> None:
    rng = random.Random(7)
    window = RateWindow(3 * HOUR)
    for k in range(181):
        window.add(T0 + 60.0 * k, 1.25 + rng.gauss(0.0, 0.01))
    rate = window.rate()
    assert rate is not None
    assert rate.low < 0.0 < rate.high
    assert not rate.significant


def test_too_few_samples_or_too_short_a_span_give_no_rate() -> None:
    window = RateWindow(3600.0, min_samples=6)
    for k in range(5):
        window.add(T0 + 600.0 * k, float(k))
    assert window.rate() is None  # 5 samples of 6
    window.add(T0 + 3000.0, 5.0)
    assert window.rate() is not None
    short = RateWindow(3600.0)
    for k in range(20):  # 20 samples within 95 s < window_s / 4
        short.add(T0 + 5.0 * k, float(k))
    assert short.rate() is None and short.fitted(T0) is None


def test_stale_duplicate_and_non_finite_samples_are_ignored() -> None:
    window = RateWindow(3600.0)
    for k in range(10):
        window.add(T0 + 120.0 * k, 0.5 * k)
    window.add(T0 + 120.0 * 5, 99.0)  # older than the last: ignored
    window.add(T0 + 120.0 * 9, 99.0)  # same time: ignored
    window.add(T0 + 2000.0, math.nan)
    window.add(math.inf, 1.0)
    assert len(window) == 10
    rate = window.rate()
    assert rate is not None and rate.per_s == pytest.approx(0.5 / 120.0, rel=1e-9)
    window.clear()
    assert len(window) == 0 and window.rate() is None


def test_rate_significance_by_sign() -> None:
    assert Rate(1.0, 0.5, 1.5, 10, 60.0).significant
    assert Rate(-1.0, -1.5, -0.5, 10, 60.0).significant
    assert not Rate(0.1, -0.1, 0.3, 10, 60.0).significant


# -- forecast_crossing ------------------------------------------------------------------------------


def test_line_rising_0_1_per_hour_from_1_reaches_2_in_10_hours() -> None:
    window = line_window(0.1, 1.0)
    crossing = forecast_crossing(window, T0, 2.0, horizon_s=24 * HOUR)
    assert isinstance(crossing, Crossing)
    assert crossing.target == 2.0
    assert crossing.eta == pytest.approx(T0 + 10 * HOUR, abs=1e-3)
    # an exact line: the slope's interval has zero width, but a straight line is a model: the
    # band is at least 5 % of the lead time either side (30 min of 10 h)
    assert crossing.earliest == pytest.approx(crossing.eta - 0.5 * HOUR, abs=1e-3)
    assert crossing.latest == pytest.approx(crossing.eta + 0.5 * HOUR, abs=1e-3)


def test_forecast_is_from_the_fitted_value_at_now_not_the_last_sample() -> None:
    window = line_window(0.1, 1.0)
    window.add(T0 + 1.0, 1.5)  # one high reading 1 s later: the robust line does not jump
    crossing = forecast_crossing(window, T0 + 1.0, 2.0, horizon_s=24 * HOUR)
    assert crossing is not None
    assert crossing.eta == pytest.approx(T0 + 10 * HOUR, abs=60.0)


def test_falling_line_reaches_a_lower_target() -> None:
    window = line_window(-0.1, 1.0)
    crossing = forecast_crossing(window, T0, 0.0, horizon_s=24 * HOUR)
    assert crossing is not None
    assert crossing.eta == pytest.approx(T0 + 10 * HOUR, abs=1e-3)


def test_noisy_line_has_an_ordered_band_around_the_truth() -> None:
    window = line_window(0.1, 1.0, noise=0.01, step_s=60.0)
    crossing = forecast_crossing(window, T0, 2.0, horizon_s=24 * HOUR)
    assert crossing is not None
    assert crossing.earliest < crossing.eta < crossing.latest
    assert crossing.earliest <= T0 + 10 * HOUR <= crossing.latest
    assert abs(crossing.eta - (T0 + 10 * HOUR)) < HOUR


def test_trend_heading_away_from_the_target_gives_none() -> None:
    assert forecast_crossing(line_window(0.1, 1.0), T0, 0.5, horizon_s=24 * HOUR) is None
    assert forecast_crossing(line_window(-0.1, 1.0), T0, 2.0, horizon_s=24 * HOUR) is None


def test_target_already_reached_gives_none() -> None:
    window = line_window(0.1, 1.0)
    assert forecast_crossing(window, T0, 1.0, horizon_s=24 * HOUR) is None
    assert forecast_crossing(window, T0, 0.9, horizon_s=24 * HOUR) is None  # passed, rising on


def test_crossing_beyond_the_horizon_gives_none() -> None:
    window = line_window(0.1, 1.0)
    assert forecast_crossing(window, T0, 2.0, horizon_s=9 * HOUR) is None
    assert forecast_crossing(window, T0, 2.0, horizon_s=11 * HOUR) is not None


def test_flat_noisy_series_gives_no_forecast() -> None:
    window = line_window(0.0, 1.0, noise=0.01, step_s=60.0, seed=3)
    rate = window.rate()
    assert rate is not None and not rate.significant
    assert forecast_crossing(window, T0, 1.1, horizon_s=1e9) is None
    assert forecast_crossing(window, T0, 0.9, horizon_s=1e9) is None


def test_empty_window_gives_none() -> None:
    assert forecast_crossing(RateWindow(3600.0), T0, 1.0, horizon_s=HOUR) is None


@pytest.mark.parametrize("seed", range(6))
def test_same_estimate_and_interval_as_scipy(seed: int) -> None:
    """trend.py computes Theil-Sen itself (scipy's wrapper costs more than the fit); it must
    agree with scipy.stats.theilslopes, ties in times and values included."""
    from scipy.stats import theilslopes

    rng = random.Random(seed)
    times = sorted({float(rng.randint(0, 60)) for _ in range(30)})
    values = [round(0.05 * t + rng.gauss(0.0, 1.0), 1) for t in times]  # rounding makes ties
    confidence = (0.9, 0.95, 0.99)[seed % 3]
    ref = theilslopes(values, times, confidence, method="joint")
    rate = theil_sen_rate(times, values, confidence)
    assert rate is not None
    assert rate.per_s == pytest.approx(ref.slope, rel=1e-12)
    assert rate.low == pytest.approx(min(ref.low_slope, ref.slope), rel=1e-12)
    assert rate.high == pytest.approx(max(ref.high_slope, ref.slope), rel=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_every_refit_equals_a_fit_from_scratch_of_the_window(seed: int) -> None:
    """Every refit of a RateWindow equals the Theil-Sen of exactly the samples it holds then,
    through evictions of several samples at once, quantised values (ties), thinning, ignored
    samples and a clear."""
    from cloud.detect.trend import CONFIDENCE, _theil_sen

    rng = random.Random(seed)
    window = RateWindow(1800.0, min_samples=4, max_samples=rng.choice([12, 40, 120]))
    t = T0
    fits = 0
    for step in range(400):
        t += rng.choice([1.0, 30.0, 60.0, 60.0, 60.0, 90.0, 400.0, 1000.0])
        value = round(1.5 + 0.002 * step + rng.gauss(0.0, 0.01), rng.choice([2, 3, 6]))
        window.add(t, value)
        if rng.random() < 0.1:
            window.add(t - 5.0, value)  # older than the last: ignored
        if step == 250:
            window.clear()
        rate = window.rate()
        expected = _theil_sen(list(window._t), list(window._v), CONFIDENCE, distinct_times=True)
        refitted = window._fitted_at == window._t[-1] if window._t else False  # not held by REFITS
        if rate is None or expected is None or not refitted:
            continue
        fits += 1
        want = expected.rate
        assert (rate.per_s, rate.low, rate.high, rate.n) == pytest.approx(
            (want.per_s, want.low, want.high, want.n), rel=1e-12, abs=1e-15
        )
        assert window.fitted(t) == pytest.approx(
            expected.intercept + expected.rate.per_s * (t - expected.t_ref), rel=1e-12
        )
    assert fits > 100
