"""JMA new snowfall (cloud/detect/snow.py) on hand-computed vectors, and against the simulator's
ground truth on the demo storm."""

from __future__ import annotations

import random

import pytest

from bosai.paths import PROFILES_DIR
from cloud.detect.snow import SNOW_WINDOWS_H, NewSnowfall
from edge.profiles import load_profiles
from simulators.devices import build_devices
from simulators.offline import scenario_samples
from simulators.runner import default_scenario_path, load_scenario
from simulators.truth import scenario_truth

HOUR = 3600.0
H0 = 1_700_000_400 // 3600 * 3600  # an hour boundary of epoch time


def at_boundaries(depths: list[float], min_increment: float = 0.5) -> NewSnowfall:
    """One sample exactly at each boundary H0, H0 + 1 h, ..., and one just after the last, so
    that every boundary is complete."""
    d = NewSnowfall(min_increment=min_increment)
    for i, depth in enumerate(depths):
        d.add(H0 + i * HOUR, depth)
    d.add(H0 + (len(depths) - 1) * HOUR + 1.0, depths[-1])
    return d


def test_jma_example_10_15_14_18_gives_9() -> None:
    d = at_boundaries([10.0, 15.0, 14.0, 18.0])
    assert d.hour_end == H0 + 3 * HOUR
    assert d.hourly == [(H0, 0.0), (H0 + HOUR, 5.0), (H0 + 2 * HOUR, 0.0), (H0 + 3 * HOUR, 4.0)]
    assert d.totals() == {1: 4.0, 3: 9.0, 6: 9.0, 12: 9.0, 24: 9.0}


def test_settling_and_melt_give_no_snow() -> None:
    d = at_boundaries([60.0, 58.5, 58.0, 55.0, 51.0, 50.9])
    assert d.totals() == dict.fromkeys(SNOW_WINDOWS_H, 0.0)


def test_nothing_before_the_first_complete_boundary() -> None:
    d = NewSnowfall()
    assert d.hour_end is None and d.hourly == []
    assert d.totals() == dict.fromkeys(SNOW_WINDOWS_H, 0.0)
    d.add(H0 - 60.0, 10.0)
    d.add(H0, 10.0)  # on the boundary: part of its window, does not complete it
    assert d.hour_end is None
    d.add(H0 + 60.0, 10.0)
    assert d.hour_end == H0


def test_depth_at_a_boundary_is_the_median_of_the_settle_window() -> None:
    d = NewSnowfall()
    for t, depth in [(H0 - 300.0, 20.0), (H0 - 120.0, 20.4), (H0, 19.8)]:
        d.add(t, depth)  # median 20.0
    # Before H1's window (H1 - 600 s): ignored, even a wild value.
    d.add(H0 + HOUR - 1200.0, 45.0)
    # H1's window: a spike among 22.6, 23.0, 22.8 -> median 22.9 (mean of 22.8 and 23.0).
    for t, depth in [(-540.0, 22.6), (-400.0, 23.0), (-200.0, 41.0), (0.0, 22.8)]:
        d.add(H0 + HOUR + t, depth)
    d.add(H0 + HOUR + 10.0, 22.8)
    assert d.hour_end == H0 + HOUR
    assert d.totals()[1] == pytest.approx(2.9)


def test_carry_of_the_last_sample_when_the_window_is_empty() -> None:
    # Report by exception: 20 cm once, 50 min before H0, then 24 cm just after H0 + 2 h.
    d = NewSnowfall()
    d.add(H0 - 3000.0, 20.0)
    d.add(H0 + 2 * HOUR + 30.0, 24.0)  # completes H0, H0 + 1 h, H0 + 2 h (all 20 cm, carried)
    assert d.hourly == [(H0, 0.0), (H0 + HOUR, 0.0), (H0 + 2 * HOUR, 0.0)]
    d.add(H0 + 3 * HOUR + 1.0, 24.0)  # H0 + 3 h: nothing in its window; 24 cm carried (59.5 min old)
    assert d.hourly[-1] == (H0 + 3 * HOUR, 4.0)
    assert d.totals()[3] == 4.0


def test_carry_expires_and_unknown_hours_count_zero() -> None:
    d = NewSnowfall(carry_s=3 * HOUR)
    d.add(H0, 20.0)
    # Five hours of silence: H0+1..3 h carry 20 cm, H0+4 h and H0+5 h are unknown.
    d.add(H0 + 5 * HOUR + 1.0, 30.0)
    d.add(H0 + 6 * HOUR, 30.0)
    d.add(H0 + 6 * HOUR + 1.0, 30.0)
    # H0+6 h has a depth (30 cm) but H0+5 h had none: no new snow counted for that hour either.
    assert [new for _, new in d.hourly] == [0.0] * 7
    d.add(H0 + 7 * HOUR, 31.0)
    d.add(H0 + 7 * HOUR + 1.0, 31.0)
    assert d.hourly[-1] == (H0 + 7 * HOUR, 1.0)


def test_deadband_keeps_small_rises_until_they_add_up() -> None:
    # +0.25 cm every hour (exact in binary): no single hour passes the 0.5 cm deadband, but the
    # rise since the reference depth does, every second hour, and is counted then.
    depths = [10.0, 10.25, 10.5, 10.75, 11.0, 11.25]
    d = at_boundaries(depths)
    assert [new for _, new in d.hourly] == [0.0, 0.0, 0.5, 0.0, 0.5, 0.0]
    assert d.totals() == {1: 0.0, 3: 0.5, 6: 1.0, 12: 1.0, 24: 1.0}
    assert at_boundaries(depths, min_increment=0.0).totals()[24] == 1.25


def test_noise_sized_dips_do_not_move_the_reference() -> None:
    # A dip of less than 2 * min_increment (1 cm) is taken as noise: the rise after it is
    # counted from the reference (20), not from the dip.
    d = at_boundaries([20.0, 19.25, 20.25, 21.0])
    assert [new for _, new in d.hourly] == [0.0, 0.0, 0.0, 1.0]
    # Settling by 1 cm or more moves the reference down: the rise after it counts in full.
    d = at_boundaries([20.0, 19.0, 20.0, 21.0])
    assert [new for _, new in d.hourly] == [0.0, 0.0, 1.0, 1.0]


def test_light_steady_snowfall_is_counted_despite_noise() -> None:
    # 0.4 cm/h for a day under the ultrasonic sensor's 0.5 cm noise: 9.6 cm of new snow.  A
    # plain hourly deadband (hour minus previous hour >= 0.5) would count about half of it.
    rng = random.Random(11)
    d = NewSnowfall()
    for k in range(26 * 60 + 2):
        d.add(H0 + 60.0 * k, 50.0 + 0.4 * k / 60 + rng.gauss(0.0, 0.5))
    assert d.hour_end == H0 + 26 * HOUR
    assert d.totals()[24] == pytest.approx(9.6, abs=1.0)


def test_the_25th_hour_drops_out_of_the_24_hour_total() -> None:
    # +5 cm in the first hour, then +1 cm every hour.
    depths = [0.0, 5.0] + [5.0 + i for i in range(1, 25)]  # boundaries H0 .. H0 + 25 h
    d = NewSnowfall()
    for i, depth in enumerate(depths[:25]):
        d.add(H0 + i * HOUR, depth)
    d.add(H0 + 24 * HOUR + 1.0, depths[24])
    assert d.hour_end == H0 + 24 * HOUR
    assert d.totals() == {1: 1.0, 3: 3.0, 6: 6.0, 12: 12.0, 24: 5.0 + 23.0}
    d.add(H0 + 25 * HOUR, depths[25])
    d.add(H0 + 25 * HOUR + 1.0, depths[25])
    assert d.totals()[24] == 24.0  # the +5 cm hour (ending H0 + 1 h) is now 25 h back
    assert len(d.hourly) == 24 and d.hourly[0][0] == H0 + 2 * HOUR


def test_late_and_duplicate_samples_are_ignored() -> None:
    d = NewSnowfall()
    d.add(H0, 10.0)
    d.add(H0 + 60.0, 10.0)
    d.add(H0 - 30.0, 80.0)  # late: its boundary is already complete
    d.add(H0 + 60.0, 80.0)  # same time again
    d.add(H0 + HOUR, 12.0)
    d.add(H0 + HOUR + 1.0, 12.0)
    assert d.totals()[1] == 2.0


def test_week_long_outage_keeps_memory_bounded() -> None:
    d = NewSnowfall()
    d.add(H0, 10.0)
    d.add(H0 + HOUR, 15.0)
    d.add(H0 + HOUR + 1.0, 15.0)
    assert d.totals()[24] == 5.0
    d.add(H0 + 7 * 24 * HOUR + 1.0, 15.0)  # back a week later
    assert d.hour_end == H0 + 7 * 24 * HOUR
    assert len(d.hourly) == 24 and all(new == 0.0 for _, new in d.hourly)
    assert d.totals()[24] == 0.0


def test_week_long_gap_within_a_long_carry_keeps_the_reference() -> None:
    # A gateway that only reports changes, configured to trust a depth for 8 days: a week of
    # silence carries 20 cm, and the first change after it counts from there.
    d = NewSnowfall(carry_s=8 * 24 * HOUR)
    d.add(H0, 20.0)
    d.add(H0 + 7 * 24 * HOUR + 1.0, 25.0)
    assert d.totals()[24] == 0.0
    d.add(H0 + 7 * 24 * HOUR + HOUR + 1.0, 25.0)
    assert d.hourly[-1] == (H0 + 7 * 24 * HOUR + HOUR, 5.0)


@pytest.mark.parametrize("sigma", [0.3, 0.5])
def test_noise_alone_accumulates_no_snow(sigma: float) -> None:
    # A laser (0.3 cm) or ultrasonic (0.5 cm) sensor over a constant 50 cm for 5 days, a sample
    # a minute: no 24 h total reaches 1 cm.
    rng = random.Random(5)
    d = NewSnowfall()
    worst = 0.0
    for k in range(5 * 24 * 60):
        d.add(H0 + 60.0 * k, 50.0 + rng.gauss(0.0, sigma))
        worst = max(worst, d.totals()[24])
    assert worst < 1.0


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        NewSnowfall((0, 24))
    with pytest.raises(ValueError):
        NewSnowfall(settle_s=3600.0)
    with pytest.raises(ValueError):
        NewSnowfall(min_increment=-0.1)


@pytest.mark.parametrize("device", ["snow-laser-01", "snow-us-02"])
def test_demo_storm_matches_the_ground_truth(device: str) -> None:
    """Every hour of the 12 h demo storm (~35 cm of new snow), from the noisy 60 s samples:
    every window within 1.5 cm of the truth's JMA figures from the noise-free depth."""
    scenario = load_scenario(default_scenario_path("demo-storm"))
    truth = [
        r
        for r in scenario_truth(scenario, build_devices(scenario, load_profiles(PROFILES_DIR)), H0)
        if r["type"] == "snowfall" and r["device"] == device
    ]
    d = NewSnowfall()
    got: dict[float, dict[int, float]] = {}
    for s in scenario_samples(scenario, PROFILES_DIR):
        if s.device == device and s.kind == "snow_depth" and s.value is not None:
            d.add(H0 + s.t, s.value)
            if d.hour_end is not None:
                got[d.hour_end] = d.totals()
    d.add(H0 + scenario.duration + 60.0, 0.0)
    assert d.hour_end is not None
    got[d.hour_end] = d.totals()
    assert len(truth) == 12 and truth[-1]["new_24h"] > 30.0
    for r in truth:
        for w in SNOW_WINDOWS_H:
            assert got[r["t"]][w] == pytest.approx(r[f"new_{w}h"], abs=1.5), (r["t"], w)
