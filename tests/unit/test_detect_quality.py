"""Data-quality verdicts (cloud/detect/quality.py): spikes, impossible jumps, level shifts, range,
flatline and gaps, on hand-built series; and the sensor-faults scenario's spike and stuck radar."""

from __future__ import annotations

import math
import random

import pytest

from bosai.paths import PROFILES_DIR
from cloud.detect.quality import QualityConfig, SeriesQuality, Verdict, robust_line
from simulators.offline import scenario_samples
from simulators.runner import default_scenario_path, load_scenario

T0 = 1_700_000_000.0
MIN = 60.0
HOUR = 3600.0
# The settings recommended for river levels (benchmarks/calibrate_quality.py).
RIVER = QualityConfig(min_scale=0.01, max_rate_per_h=10.0, flatline_s=1800.0)


def noisy(
    n: int, level: float = 1.0, sigma: float = 0.01, seed: int = 1, start: float = T0
) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(start + i * MIN, level + rng.gauss(0.0, sigma)) for i in range(n)]


def feed(q: SeriesQuality, samples: list[tuple[float, float]]) -> list[Verdict]:
    return [q.check(t, v) for t, v in samples]


def test_robust_line_ignores_an_outlier_in_its_window() -> None:
    ts = [float(i) for i in range(9)]
    vs = [2.0 * t + 1.0 for t in ts]
    vs[4] = 100.0
    line = robust_line(ts, vs)
    assert line.slope == pytest.approx(2.0)
    assert line.at(10.0) == pytest.approx(21.0)
    assert line.scale == 0.0  # 8 of 9 residuals are exactly 0


def test_spike_among_noise_is_suspect_and_the_next_normal_sample_ok() -> None:
    q = SeriesQuality(QualityConfig(min_scale=0.01))
    assert set(feed(q, noisy(30))) == {Verdict.OK}
    t = T0 + 30 * MIN
    assert q.check(t, 3.5) is Verdict.SUSPECT
    assert q.last_suspect == (t, 3.5) and q.suspect_since == t
    assert q.reference == pytest.approx(1.0, abs=0.02)
    assert q.check(t + MIN, 1.004) is Verdict.OK
    assert q.suspect_since is None and q.shifts == 0
    assert q.check(t + 2 * MIN, 0.5) is Verdict.SUSPECT  # downward too (50 scales below)


def test_gaussian_noise_is_not_flagged_even_without_min_scale() -> None:
    # The MAD of one 15-sample window scatters; the floor from recent windows' scales keeps the
    # unlucky windows from flagging plain noise (~23 of 10 000 samples without it).
    q = SeriesQuality(QualityConfig())
    suspects = sum(v is not Verdict.OK for v in feed(q, noisy(10_000, seed=12)))
    assert suspects <= 2


def test_steady_ramp_is_never_flagged() -> None:
    # A river rising 1.2 m/h for 6 h with 1 cm of noise: a trailing median would lag it by
    # ~14 cm (7 samples of 2 cm), i.e. 14 noise scales: the robust line follows it.
    rng = random.Random(2)
    q = SeriesQuality(QualityConfig(min_scale=0.01))
    ramp = [(T0 + i * MIN, 1.0 + 1.2 * i / 60 + rng.gauss(0.0, 0.01)) for i in range(360)]
    assert set(feed(q, ramp)) == {Verdict.OK}


def test_accelerating_slope_is_not_flagged() -> None:
    # Tilt in tertiary creep (alpha = 2: v = A / (tf - t)) up to 12 min before failure.
    tf = T0 + 12 * HOUR
    q = SeriesQuality(QualityConfig(min_scale=0.01))
    rng = random.Random(3)
    series = [
        (t, 0.02 - 0.5 * math.log((tf - t) / (tf - T0)) + rng.gauss(0.0, 0.002))
        for t in (T0 + i * MIN for i in range(12 * 60 - 12))
    ]
    assert series[-1][1] > 2.0
    assert set(feed(q, series)) == {Verdict.OK}


def test_abrupt_rise_is_a_new_trend_after_two_suspects() -> None:
    # A flat river that suddenly rises 4 m/h for 20 min, then holds: each kink leaves the old
    # line, and its first samples are suspect, but they continue from the last accepted value on
    # a clean line, so the third is taken as the new trend: no 30-min hold, no level shift.
    rng = random.Random(6)
    q = SeriesQuality(QualityConfig(min_scale=0.01, max_rate_per_h=10.0))

    def level(i: int) -> float:
        return 1.0 + 4.0 * min(max(i - 30, 0), 20) / 60

    verdicts = [q.check(T0 + i * MIN, level(i) + rng.gauss(0.0, 0.01)) for i in range(90)]
    suspects = [i for i, v in enumerate(verdicts) if v is not Verdict.OK]
    assert len([i for i in suspects if 30 <= i < 50]) <= 2
    assert len([i for i in suspects if i >= 50]) <= 2
    assert len(suspects) >= 1 and q.shifts == 0


def test_a_multi_sample_spike_is_not_a_trend() -> None:
    # +30 cm for 6 samples, no rate limit: on a clean line, but not one that starts from the
    # last accepted sample.
    q = SeriesQuality(QualityConfig(min_scale=0.01))
    feed(q, noisy(30))
    spike = noisy(6, level=1.3, seed=8, start=T0 + 30 * MIN)
    assert feed(q, spike) == [Verdict.SUSPECT] * 6
    assert feed(q, noisy(3, seed=9, start=T0 + 36 * MIN)) == [Verdict.OK] * 3


def test_impossible_jump_even_without_history() -> None:
    q = SeriesQuality(QualityConfig(min_scale=0.01, max_rate_per_h=2.0))
    assert q.check(T0, 1.00) is Verdict.OK
    assert q.check(T0 + MIN, 1.02) is Verdict.OK
    # 2.5 m in a minute: allowed 2 m/h * 1/60 h + 6 * 0.01 = 0.093 m.
    assert q.check(T0 + 2 * MIN, 3.52) is Verdict.SUSPECT
    assert q.reference == 1.02
    assert q.check(T0 + 3 * MIN, 1.03) is Verdict.OK
    # Without a rate limit, the first samples have nothing to be judged by.
    free = SeriesQuality(QualityConfig(min_scale=0.01))
    assert feed(free, [(T0, 1.0), (T0 + MIN, 1.02), (T0 + 2 * MIN, 3.52)]) == [Verdict.OK] * 3


def test_level_shift_is_accepted_after_shift_confirm_s() -> None:
    q = SeriesQuality(QualityConfig(min_scale=0.01, shift_confirm_s=1800.0))
    feed(q, noisy(30))
    start = T0 + 30 * MIN
    shifted = noisy(40, level=1.5, seed=7, start=start)  # remounted 50 cm higher
    verdicts = feed(q, shifted)
    # Suspect until the run has lasted 30 min (t = start + 1800 s is the 31st sample).
    assert verdicts[:30] == [Verdict.SUSPECT] * 30
    assert verdicts[30:] == [Verdict.OK] * 10
    assert q.shifts == 1 and q.suspect_since is None
    assert q.reference == pytest.approx(1.5, abs=0.02)


def test_a_short_history_gives_way_to_a_longer_consistent_run() -> None:
    # Just after a start, 5 samples happen to lie on a steep, noiseless line (3 m/h): the next
    # samples, level with noise, are outliers against it, but once they outnumber the history
    # that condemns them they are taken as the history, without waiting for shift_confirm_s.
    q = SeriesQuality(QualityConfig())
    feed(q, [(T0 + i * MIN, 1.0 + 0.05 * i) for i in range(5)])
    level = noisy(20, level=1.2, sigma=0.005, seed=10, start=T0 + 5 * MIN)
    verdicts = feed(q, level)
    assert verdicts[:5] == [Verdict.SUSPECT] * 5
    assert verdicts[5:] == [Verdict.OK] * 15  # the 6th outnumbers the 5
    assert q.shifts == 0


def test_disagreeing_suspects_are_not_a_level_shift() -> None:
    q = SeriesQuality(QualityConfig(min_scale=0.01, shift_confirm_s=600.0))
    feed(q, noisy(30))
    rng = random.Random(4)
    garbage = [(T0 + (30 + i) * MIN, rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 9.0)) for i in range(60)]
    assert set(feed(q, garbage)) == {Verdict.SUSPECT}
    assert q.shifts == 0 and q.suspect_since == T0 + 30 * MIN


def test_out_of_range_is_not_added_to_history() -> None:
    q = SeriesQuality(QualityConfig(range=(0.0, 20.0), min_scale=0.01))
    assert q.check(T0, 0.0) is Verdict.OK  # bounds are inclusive
    assert q.check(T0 + MIN, -0.01) is Verdict.OUT_OF_RANGE
    assert q.check(T0 + 2 * MIN, 20.0) is Verdict.OK
    q = SeriesQuality(QualityConfig(range=(0.0, 20.0), min_scale=0.01))
    feed(q, noisy(20))
    # A run of out-of-range readings neither becomes history nor a level shift.
    assert set(feed(q, [(T0 + (20 + i) * MIN, 25.0) for i in range(60)])) == {Verdict.OUT_OF_RANGE}
    assert q.check(T0 + 80 * MIN, 1.0) is Verdict.OK
    assert q.check(T0 + 81 * MIN, 8.0) is Verdict.SUSPECT


def test_flatline_after_flatline_s_and_ok_again_when_it_moves() -> None:
    q = SeriesQuality(RIVER)
    history = noisy(30)
    feed(q, history)
    stuck_at = T0 + 30 * MIN
    flat = [(stuck_at + i * MIN, round(history[-1][1], 3)) for i in range(45)]  # frozen output
    verdicts = feed(q, flat)
    # Flat from stuck_at: OK until it has lasted 1800 s (the 31st sample), FLATLINE from then on.
    assert verdicts[:30] == [Verdict.OK] * 30
    assert verdicts[30:] == [Verdict.FLATLINE] * 15
    assert q.flat_since == stuck_at
    # Moving again, 30 cm higher (the river rose meanwhile): OK, judged by a fresh history.
    moving = noisy(10, level=1.55, seed=9, start=stuck_at + 45 * MIN)
    assert feed(q, moving) == [Verdict.OK] * 10
    assert q.flat_since is None


def test_flatline_needs_min_samples_and_honours_epsilon() -> None:
    sparse = SeriesQuality(QualityConfig(flatline_s=1800.0, flatline_min_samples=10))
    # One sample every 10 min: 1800 s are reached at the 4th sample, 10 samples at 90 min.
    verdicts = feed(sparse, [(T0 + i * 600.0, 2.0) for i in range(12)])
    assert verdicts == [Verdict.OK] * 9 + [Verdict.FLATLINE] * 3
    banded = SeriesQuality(QualityConfig(flatline_s=600.0, flatline_epsilon=0.002, flatline_min_samples=5))
    wobble = [(T0 + i * MIN, 3.0 + (0.001 if i % 2 else 0.0)) for i in range(12)]
    assert feed(banded, wobble)[10:] == [Verdict.FLATLINE] * 2
    assert banded.check(T0 + 12 * MIN, 3.003) is Verdict.OK  # leaves the 0.002 band
    off = SeriesQuality(QualityConfig())  # flatline_s None: no check at all
    assert set(feed(off, [(T0 + i * MIN, 2.0) for i in range(200)])) == {Verdict.OK}


def test_gap_restarts_history() -> None:
    q = SeriesQuality(QualityConfig(min_scale=0.01))
    feed(q, noisy(30))
    back = T0 + 29 * MIN + 7 * HOUR  # a week-long outage would do the same
    assert q.check(back, 3.0) is Verdict.OK  # not judged against 7 h old history
    assert q.check(back + MIN, 3.01) is Verdict.OK
    # A shorter gap keeps the history, with a tolerance widened for the extrapolation.
    q = SeriesQuality(QualityConfig(min_scale=0.01))
    feed(q, noisy(30))
    assert q.check(T0 + 29 * MIN + HOUR, 1.1) is Verdict.OK
    assert q.check(T0 + 29 * MIN + HOUR + MIN, 3.0) is Verdict.SUSPECT


def test_samples_not_newer_than_the_last_are_not_judged() -> None:
    q = SeriesQuality(QualityConfig(min_scale=0.01))
    feed(q, noisy(10))
    last = T0 + 9 * MIN
    assert q.check(last, 1.0) is Verdict.SUSPECT
    assert q.check(last - MIN, 1.0) is Verdict.SUSPECT
    assert q.last_suspect is None and q.suspect_since is None
    assert q.check(last + MIN, 1.0) is Verdict.OK


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        SeriesQuality(QualityConfig(window=1))
    with pytest.raises(ValueError):
        SeriesQuality(QualityConfig(k=0.0))


def test_sensor_faults_spike_and_stuck_radar_are_caught() -> None:
    """The scenario's +2.5 m spike on the pressure gauge (t 3240-3420 s): every sample SUSPECT;
    the radar stuck from t = 2 h to 3 h: FLATLINE from 2.5 h (flatline_s 1800 s) to its end; and
    nothing else of either gauge flagged over the 6 h."""
    scenario = load_scenario(default_scenario_path("sensor-faults"))
    checks = {"river-pt-02": SeriesQuality(RIVER), "river-radar-01": SeriesQuality(RIVER)}
    flagged: dict[str, list[tuple[float, Verdict]]] = {d: [] for d in checks}
    spike_samples = 0
    for s in scenario_samples(scenario, PROFILES_DIR):
        if s.device in checks and s.value is not None:
            verdict = checks[s.device].check(T0 + s.t, s.value)
            spike_samples += s.device == "river-pt-02" and 3240 <= s.t < 3420
            if verdict is not Verdict.OK:
                flagged[s.device].append((s.t, verdict))
    assert spike_samples == 3
    assert flagged["river-pt-02"] == [(t, Verdict.SUSPECT) for t in (3240.0, 3300.0, 3360.0)]
    stuck = flagged["river-radar-01"]
    assert {v for _, v in stuck} == {Verdict.FLATLINE}
    assert stuck[0][0] == 7200.0 + 1800.0 and stuck[-1][0] == 10800.0 - MIN
    assert len(stuck) == 30
