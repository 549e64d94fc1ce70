"""The adaptive report policy on small synthetic sample sequences, and on a river hydrograph.

Times are seconds after T0; each sample is the readings of one poll at one sample time.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import msgspec
import pytest

from edge.report import Decision, FastMode, Reporter, ReportPolicy, policy_problems
from wire.telemetry import Quality, Reading, make_reading, utc_from_epoch

T0 = 1_750_000_000.0
HOUR = 3600.0
DAY = 86400.0


def sample(t: float, **points: float | Quality) -> list[Reading]:
    """One poll at T0 + t: a float is an ok value, a Quality is a failed point."""
    when = utc_from_epoch(T0 + t)
    return [
        make_reading("gauge-01", kind, when, None, "m", v)
        if isinstance(v, Quality)
        else make_reading("gauge-01", kind, when, v, "m")
        for kind, v in points.items()
    ]


def feed(reporter: Reporter, values: Sequence[float | Quality], step: float = 600.0) -> list[Decision]:
    """Single-point ('level') samples, `step` seconds apart from t = 0."""
    return [reporter.offer(sample(i * step, level=v)) for i, v in enumerate(values)]


def reported(decisions: list[Decision]) -> list[int]:
    return [i for i, d in enumerate(decisions) if d.report]


def run(
    reporter: Reporter, signal: Callable[[float], float], end: float
) -> list[tuple[float, float, Decision]]:
    """Poll like the gateway does: the next sample comes after the reporter's current interval."""
    out: list[tuple[float, float, Decision]] = []
    t = 0.0
    while t < end:
        value = signal(t)
        out.append((t, value, reporter.offer(sample(t, level=value))))
        t += reporter.interval
    return out


def level_policy(**fast: float | str) -> ReportPolicy:
    """Heartbeat only (no deadband) plus fast mode by level 2.0, 2-minute fast interval."""
    args: dict[str, float | str] = {"level": 2.0, "interval": 120.0, "hold": 0.0, **fast}
    return ReportPolicy(heartbeat=DAY, fast=msgspec.convert(args, FastMode))


# --- no policy, trivial policies ------------------------------------------------------------


def test_no_policy_reports_every_sample_never_urgent_at_the_sensor_interval() -> None:
    r = Reporter("gauge-01", 600.0, None)
    decisions = feed(r, [1.0, 1.0, 1.0, 5.0, Quality.TIMEOUT])
    assert all(d == Decision(True, False, reason="every sample") for d in decisions)
    assert (r.reported, r.suppressed) == (5, 0)
    assert r.interval == 600.0
    assert not r.fast


def test_policy_without_deadband_and_heartbeat_reports_every_sample() -> None:
    for policy in (ReportPolicy(), ReportPolicy(fast=FastMode(level=2.0, interval=120.0))):
        r = Reporter("gauge-01", 600.0, policy)
        decisions = feed(r, [1.0, 1.0, 1.0])
        assert [d.reason for d in decisions] == ["first", "every sample", "every sample"]
        assert not any(d.urgent for d in decisions)
        assert (r.reported, r.suppressed) == (3, 0)


def test_empty_sample_is_neither_reported_nor_counted() -> None:
    r = Reporter("gauge-01", 600.0, ReportPolicy(deadband=0.1))
    assert not r.offer([]).report
    assert (r.reported, r.suppressed) == (0, 0)


# --- report by exception --------------------------------------------------------------------


def test_scalar_deadband_reports_changes_of_at_least_the_deadband() -> None:
    r = Reporter("gauge-01", 600.0, ReportPolicy(deadband=0.1))
    decisions = feed(r, [1.0, 1.05, 0.95, 1.1, 1.15, 1.0, 0.99])
    assert [d.reason for d in decisions] == ["first", "", "", "deadband level", "", "deadband level", ""]
    assert not any(d.urgent for d in decisions)
    assert (r.reported, r.suppressed) == (3, 4)


def test_drift_accumulates_against_the_last_reported_value() -> None:
    """0.005 per sample never moves 0.02 from one sample to the next, but does from the last
    report every fourth sample."""
    r = Reporter("gauge-01", 600.0, ReportPolicy(deadband=0.02))
    decisions = feed(r, [round(1.0 + 0.005 * i, 3) for i in range(13)])
    assert reported(decisions) == [0, 4, 8, 12]


def test_decimal_deadband_is_not_defeated_by_float_rounding() -> None:
    assert 0.3 - 0.1 < 0.2  # the float arithmetic this guards against
    r = Reporter("gauge-01", 600.0, ReportPolicy(deadband=0.2))
    assert reported(feed(r, [0.1, 0.3])) == [0, 1]


def test_zero_deadband_reports_any_change_only() -> None:
    r = Reporter("gauge-01", 600.0, ReportPolicy(deadband=0.0))
    assert reported(feed(r, [1.0, 1.0, 1.001, 1.001, 1.0])) == [0, 2, 4]


def test_per_kind_deadband_and_kinds_without_one_never_trigger() -> None:
    r = Reporter("incl-01", 600.0, ReportPolicy(deadband={"tilt_x": 0.005, "temperature": 0.5}))
    polls = [
        dict(tilt_x=0.100, tilt_y=0.0, temperature=10.0),
        dict(tilt_x=0.104, tilt_y=5.0, temperature=10.4),  # tilt_y has no deadband
        dict(tilt_x=0.105, tilt_y=9.0, temperature=10.4),
        dict(tilt_x=0.107, tilt_y=9.0, temperature=10.9),
        dict(tilt_x=0.107, tilt_y=0.0, temperature=10.9),
    ]
    decisions = [r.offer(sample(i * 600.0, **p)) for i, p in enumerate(polls)]
    assert [d.reason for d in decisions] == ["first", "", "deadband tilt_x", "deadband temperature", ""]


def test_deadband_counts_in_both_directions() -> None:
    r = Reporter("gauge-01", 600.0, ReportPolicy(deadband=0.1))
    assert reported(feed(r, [1.0, 0.95, 0.9, 0.85, 0.8])) == [0, 2, 4]


# --- quality and heartbeat ------------------------------------------------------------------


def test_quality_changes_are_reported_against_the_last_reported_quality() -> None:
    r = Reporter("gauge-01", 600.0, ReportPolicy(deadband=1.0, heartbeat=DAY))
    decisions = feed(r, [1.0, Quality.TIMEOUT, Quality.TIMEOUT, Quality.CRC, 1.0, 1.0])
    assert [d.reason for d in decisions] == [
        "first",
        "quality level",
        "",
        "quality level",
        "quality level",
        "",
    ]


def test_quality_change_of_one_point_reports_the_whole_sample() -> None:
    r = Reporter("incl-01", 600.0, ReportPolicy(heartbeat=DAY))
    r.offer(sample(0, tilt_x=0.1, tilt_y=0.2))
    d = r.offer(sample(600, tilt_x=0.1, tilt_y=Quality.INVALID))
    assert d.report
    assert d.reason == "quality tilt_y"


def test_heartbeat_limits_silence_and_any_report_restarts_it() -> None:
    r = Reporter("gauge-01", 600.0, ReportPolicy(deadband=0.5, heartbeat=HOUR))
    values = [1.0] * 8 + [2.0] + [2.0] * 7
    decisions = feed(r, values)  # samples every 10 min
    assert reported(decisions) == [0, 6, 8, 14]
    assert [decisions[i].reason for i in (6, 8, 14)] == ["heartbeat", "deadband level", "heartbeat"]


def test_heartbeat_restarts_when_sample_time_steps_back() -> None:
    r = Reporter("gauge-01", 600.0, ReportPolicy(heartbeat=HOUR))
    assert r.offer(sample(10 * HOUR, level=1.0)).report
    # The clock is corrected by 10 h: the next heartbeat is an hour after the corrected time,
    # not 10 hours later.
    assert not r.offer(sample(1 * HOUR, level=1.0)).report
    assert r.offer(sample(2 * HOUR, level=1.0)).reason == "heartbeat"


# --- fast mode by level ---------------------------------------------------------------------


def test_fast_mode_by_level_urgent_flags_and_interval() -> None:
    r = Reporter("gauge-01", 600.0, level_policy(hysteresis=0.05))
    d = r.offer(sample(0, level=1.9))
    assert (d.reason, d.urgent, r.fast, r.interval) == ("first", False, False, 600.0)
    assert not r.offer(sample(600, level=1.95)).report

    d = r.offer(sample(1200, level=2.0))  # at the level counts
    assert d == Decision(True, True, entered_fast=True, reason="enter fast: level")
    assert (r.fast, r.interval) == (True, 120.0)

    for i, v in enumerate([2.2, 1.96, 2.0]):
        d = r.offer(sample(1320 + 120 * i, level=v))
        assert d == Decision(True, True, reason="fast")

    d = r.offer(sample(1680, level=1.94))  # back below level - hysteresis, hold 0
    assert d == Decision(True, False, left_fast=True, reason="leave fast")
    assert (r.fast, r.interval) == (False, 600.0)
    assert not r.offer(sample(2280, level=1.99)).report  # below the level: back to heartbeat only
    assert r.offer(sample(2880, level=2.01)).entered_fast


def test_hovering_at_the_level_does_not_flap() -> None:
    r = Reporter("gauge-01", 600.0, level_policy(hysteresis=0.05))
    rng = random.Random(7)
    decisions = [r.offer(sample(120.0 * i, level=2.0 + rng.uniform(-0.04, 0.04))) for i in range(200)]
    entered = [i for i, d in enumerate(decisions) if d.entered_fast]
    assert len(entered) == 1
    assert not any(d.left_fast for d in decisions)
    assert all(d.report and d.urgent for d in decisions[entered[0] :])


def test_without_hysteresis_the_same_sequence_would_flap() -> None:
    """The control for the test above: hysteresis is what prevents the flapping."""
    r = Reporter("gauge-01", 600.0, level_policy(hysteresis=0.0))
    decisions = feed(r, [2.01, 1.99, 2.01, 1.99], step=120.0)
    assert [d.entered_fast or d.left_fast for d in decisions] == [True, True, True, True]


def test_hold_keeps_fast_mode_after_the_last_trigger() -> None:
    r = Reporter("gauge-01", 600.0, level_policy(hold=1800.0))
    r.offer(sample(0, level=2.1))
    assert r.fast
    r.offer(sample(120, level=2.05))  # last sample where the level holds
    t = 240.0
    while True:
        d = r.offer(sample(t, level=1.5))
        if d.left_fast:
            break
        assert d == Decision(True, True, reason="fast")
        t += r.interval
    assert t == 120 + 1800
    assert not d.urgent and r.interval == 600.0


def test_a_dip_shorter_than_hold_keeps_fast_mode() -> None:
    r = Reporter("gauge-01", 600.0, level_policy(hold=1800.0))
    values = [2.1] * 3 + [1.5] * 10 + [2.1] + [1.5] * 14 + [1.5]
    decisions = feed(r, values, step=120.0)
    assert [i for i, d in enumerate(decisions) if d.entered_fast or d.left_fast] == [0, 13 + 15]


# --- fast mode by rate ----------------------------------------------------------------------


def rate_policy(**fast: float | str) -> ReportPolicy:
    args: dict[str, float | str] = {"rate": 0.3, "rate_window": HOUR, "interval": 120.0, "hold": 0.0, **fast}
    return ReportPolicy(heartbeat=DAY, fast=msgspec.convert(args, FastMode))


def test_rate_needs_three_samples_spanning_half_the_window() -> None:
    """A steady 1 m/h rise sampled every 10 min: the hour window first has enough at 30 min."""
    r = Reporter("gauge-01", 600.0, rate_policy())
    decisions = feed(r, [1.0 + i / 6 for i in range(5)])
    assert [d.entered_fast for d in decisions] == [False, False, False, True, False]
    assert decisions[3].reason == "enter fast: rate"


def test_noise_and_a_single_spike_do_not_trigger_the_rate() -> None:
    r = Reporter("gauge-01", 600.0, rate_policy())
    rng = random.Random(3)
    values = [1.0 + rng.uniform(-0.03, 0.03) for _ in range(288)]  # 2 days
    values[100] += 0.3  # one glitch of 30 cm
    decisions = feed(r, values)
    assert not any(d.entered_fast for d in decisions)
    assert r.reported == 2  # the first sample and the daily heartbeat: the noise costs nothing


def test_a_real_rise_triggers_the_rate_long_before_the_level() -> None:
    r = Reporter("gauge-01", 600.0, rate_policy(level=3.0, rate_window=1800.0))
    rise_start = 6 * HOUR

    def signal(t: float) -> float:
        return 1.0 + max(0.0, t - rise_start) / HOUR * 0.5  # 0.5 m/h

    entered = next((t, v) for t, v, d in run(r, signal, DAY) if d.entered_fast)
    assert entered[0] <= rise_start + 1800 + 600
    assert entered[1] < 1.5


def test_rate_keeps_fast_mode_at_half_the_rate_then_leaves() -> None:
    r = Reporter("gauge-01", 600.0, rate_policy(rate_window=1800.0))

    def signal(t: float) -> float:
        if t < 4 * HOUR:
            return 1.0 + t / HOUR * 0.4  # enters: 0.4 m/h >= 0.3
        if t < 8 * HOUR:
            return 2.6 + (t - 4 * HOUR) / HOUR * 0.2  # stays: 0.2 m/h >= 0.15
        return 3.4  # levels off: leaves once the fitted slope falls under 0.15 m/h

    trace = run(r, signal, 12 * HOUR)
    changes = [(t, d.entered_fast) for t, _, d in trace if d.entered_fast or d.left_fast]
    assert len(changes) == 2
    assert changes[0][1] and changes[0][0] < 1 * HOUR
    assert not changes[1][1] and 8 * HOUR < changes[1][0] < 8 * HOUR + 1800


# --- directions -----------------------------------------------------------------------------


def test_falling_direction_level_and_hysteresis() -> None:
    r = Reporter("gauge-01", 600.0, level_policy(direction="falling", level=0.5, hysteresis=0.05))
    decisions = feed(r, [1.0, 0.6, 0.5, 0.54, 0.56], step=120.0)
    assert [d.entered_fast for d in decisions] == [False, False, True, False, False]
    assert [d.left_fast for d in decisions] == [False, False, False, False, True]


def test_falling_direction_rate_ignores_rises() -> None:
    up = Reporter("gauge-01", 600.0, rate_policy(direction="falling"))
    assert not any(d.entered_fast for d in feed(up, [1.0 + i / 6 for i in range(10)]))
    down = Reporter("gauge-01", 600.0, rate_policy(direction="falling"))
    assert any(d.entered_fast for d in feed(down, [1.0 - i / 6 for i in range(10)]))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_absolute_direction_uses_the_magnitude(sign: float) -> None:
    r = Reporter("incl-01", 600.0, level_policy(direction="absolute", level=1.0, hysteresis=0.05))
    decisions = feed(r, [sign * v for v in (0.5, 1.2, 0.97, 0.9)], step=120.0)
    assert [d.entered_fast for d in decisions] == [False, True, False, False]
    assert [d.left_fast for d in decisions] == [False, False, False, True]

    r = Reporter("incl-01", 600.0, rate_policy(direction="absolute"))
    assert any(d.entered_fast for d in feed(r, [sign * i / 6 for i in range(10)]))


# --- driving point, failing sensor ----------------------------------------------------------


def test_only_the_configured_kind_drives_fast_mode() -> None:
    r = Reporter("incl-01", 600.0, level_policy(kind="tilt_x", level=1.0))
    assert not r.offer(sample(0, tilt_x=0.1, tilt_y=5.0)).entered_fast
    assert r.offer(sample(600, tilt_x=1.1, tilt_y=0.0)).entered_fast


def test_without_a_kind_the_single_point_drives_fast_mode() -> None:
    r = Reporter("gauge-01", 600.0, level_policy())
    assert r.offer(sample(0, river_level=2.5)).entered_fast


def test_failing_sensor_keeps_fast_mode_and_never_enters_it() -> None:
    r = Reporter("gauge-01", 600.0, level_policy(hold=600.0))
    decisions = feed(r, [2.5] + [Quality.TIMEOUT] * 20 + [1.0], step=120.0)
    assert decisions[0].entered_fast
    # Failing for 40 min, far past the hold: still fast, every sample reported and urgent.
    assert all(d == Decision(True, True, reason="fast") for d in decisions[1:21])
    assert r.fast is False and decisions[21].left_fast

    r = Reporter("gauge-01", 600.0, level_policy())
    d = r.offer(sample(0, level=Quality.TIMEOUT))
    assert (d.report, d.urgent, d.entered_fast, r.fast) == (True, False, False, False)


def test_another_point_failing_does_not_stop_the_driving_point() -> None:
    r = Reporter("incl-01", 600.0, level_policy(kind="tilt_x", level=1.0))
    d = r.offer(sample(0, tilt_x=1.2, tilt_y=Quality.CRC))
    assert d.entered_fast and d.urgent


def test_counters() -> None:
    r = Reporter("gauge-01", 600.0, level_policy())
    feed(r, [1.0, 1.0, 1.0, 2.5, 2.5, 1.0, 1.0], step=120.0)
    assert (r.reported, r.suppressed) == (4, 3)


# --- config ---------------------------------------------------------------------------------


def test_the_documented_yaml_decodes() -> None:
    raw = {
        "deadband": 0.02,
        "heartbeat": 86400,
        "fast": {
            "kind": "river_level",
            "direction": "rising",
            "level": 2.0,
            "hysteresis": 0.05,
            "rate": 0.3,
            "rate_window": 1200,
            "interval": 120,
            "hold": 1800,
        },
    }
    policy = msgspec.convert(raw, ReportPolicy, strict=True)
    assert policy.fast is not None and policy.fast.interval == 120.0
    assert policy_problems(policy, ["river_level"], 600.0) == []
    per_kind = msgspec.convert({"deadband": {"tilt_x": 0.005}}, ReportPolicy, strict=True)
    assert per_kind.deadband == {"tilt_x": 0.005}


@pytest.mark.parametrize(
    "raw",
    [
        {"deadband": -0.1},
        {"deadband": {"tilt_x": -0.1}},
        {"deadband": {"Tilt X": 0.1}},
        {"heartbeat": 0},
        {"fast": {"level": 2.0}},  # no interval
        {"fast": {"level": 2.0, "interval": 120, "direction": "up"}},
        {"fast": {"rate": 0, "interval": 120}},
        {"fast": {"rate": 0.3, "interval": 120, "rate_window": 0}},
        {"fast": {"level": 2.0, "interval": 120, "hysteresis": -0.1}},
        {"fast": {"level": 2.0, "interval": 120, "hold": -1}},
        {"fast": {"level": 2.0, "interval": 120, "typo": 1}},
        {"dedband": 0.1},
    ],
)
def test_invalid_yaml_is_rejected_by_msgspec(raw: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(raw, ReportPolicy, strict=True)


POINTS = ["tilt_x", "tilt_y", "temperature"]


@pytest.mark.parametrize(
    ("policy", "kinds", "expected"),
    [
        (
            ReportPolicy(fast=FastMode(level=1.0, interval=60.0)),
            POINTS,
            ("report.fast.kind", "required: the profile has points tilt_x, tilt_y, temperature"),
        ),
        (
            ReportPolicy(fast=FastMode(kind="x", level=1.0, interval=60.0)),
            POINTS,
            ("report.fast.kind", "no point 'x' in the profile (points: tilt_x, tilt_y, temperature)"),
        ),
        (
            ReportPolicy(deadband={"tilt_x": 0.1, "foo": 0.1}),
            POINTS,
            ("report.deadband.foo", "no point 'foo' in the profile (points: tilt_x, tilt_y, temperature)"),
        ),
        (
            ReportPolicy(fast=FastMode(interval=60.0)),
            ["river_level"],
            ("report.fast", "give a level, a rate, or both"),
        ),
        (
            ReportPolicy(fast=FastMode(level=2.0, interval=900.0)),
            ["river_level"],
            ("report.fast.interval", "must not be longer than the sensor's interval (600 s)"),
        ),
        (
            ReportPolicy(heartbeat=300.0),
            ["river_level"],
            ("report.heartbeat", "must be at least the sensor's interval (600 s)"),
        ),
        (ReportPolicy(deadband=-0.1), ["river_level"], ("report.deadband", "must be a finite number >= 0")),
        (
            ReportPolicy(deadband={"tilt_x": -0.1}),
            POINTS,
            ("report.deadband.tilt_x", "must be a finite number >= 0"),
        ),
        (ReportPolicy(heartbeat=math.inf), ["river_level"], ("report.heartbeat", "must be a number > 0")),
        (
            ReportPolicy(fast=FastMode(level=math.nan, interval=60.0)),
            ["river_level"],
            ("report.fast.level", "must be a finite number"),
        ),
        (
            ReportPolicy(fast=FastMode(direction="absolute", level=-1.0, interval=60.0)),
            ["tilt_x"],
            ("report.fast.level", "must be > 0 with direction absolute (it is compared with |value|)"),
        ),
        (
            ReportPolicy(fast=FastMode(rate=0.3, hysteresis=0.1, interval=60.0, rate_window=HOUR)),
            ["river_level"],
            ("report.fast.hysteresis", "has no effect without a level"),
        ),
        (
            ReportPolicy(fast=FastMode(rate=0.3, rate_window=900.0, interval=60.0)),
            ["river_level"],
            (
                "report.fast.rate_window",
                "must cover at least 2 sensor intervals (1200 s) so that the 3 samples a rate needs "
                "fit in it",
            ),
        ),
        (
            ReportPolicy(fast=FastMode(level=1.0, interval=0.0)),
            ["river_level"],
            ("report.fast.interval", "must be a number > 0"),
        ),
        (
            ReportPolicy(fast=FastMode(level=1.0, interval=60.0, hold=-1.0)),
            ["river_level"],
            ("report.fast.hold", "must be a finite number >= 0"),
        ),
    ],
)
def test_policy_problems(policy: ReportPolicy, kinds: list[str], expected: tuple[str, str]) -> None:
    assert policy_problems(policy, kinds, 600.0) == [expected]


def test_a_good_policy_has_no_problems() -> None:
    policy = ReportPolicy(
        deadband={"tilt_x": 0.005, "tilt_y": 0.005},
        heartbeat=DAY,
        fast=FastMode(
            kind="tilt_x", direction="absolute", level=1.0, rate=0.1, rate_window=HOUR, interval=60.0
        ),
    )
    assert policy_problems(policy, POINTS, 600.0) == []


# --- a realistic river ----------------------------------------------------------------------


def test_river_hydrograph_saves_data_but_reports_every_sample_above_the_level() -> None:
    """Two days of a crisis-management gauge: 10-min samples, quiet for a day, then a flash flood
    peaking 0.4 m over the observation-start level (2.0 m)."""
    policy = ReportPolicy(
        deadband=0.1,
        heartbeat=DAY,
        fast=FastMode(level=2.0, hysteresis=0.05, rate=0.3, rate_window=1800.0, interval=120.0, hold=1800.0),
    )
    r = Reporter("gauge-01", 600.0, policy)
    rng = random.Random(42)

    def river(t: float) -> float:
        flood = 1.4 * math.exp(-(((t - 30 * HOUR) / (2 * HOUR)) ** 2))
        return 1.0 + flood + rng.uniform(-0.01, 0.01)

    trace = run(r, river, 2 * DAY)
    above = [(v, d) for _, v, d in trace if v >= 2.0]
    assert len(above) > 30
    assert all(d.report and d.urgent for _, d in above)

    n_reported = sum(d.report for _, _, d in trace)
    assert n_reported == r.reported and r.reported + r.suppressed == len(trace)
    assert n_reported < 0.4 * len(trace)
    assert n_reported < 0.5 * 2 * DAY / 600  # half of what the gauge sent without a policy
    slow = [d for _, _, d in trace if not d.urgent]
    assert len(slow) > 250 and sum(d.report for d in slow) <= 12  # first, heartbeat, deadband, leave
    quiet = [d for t, _, d in trace if t < 24 * HOUR]
    assert sum(d.report for d in quiet) == 1  # the first sample; the heartbeat is due at 24 h
    assert len(quiet) == 144

    changes = [(t, d) for t, _, d in trace if d.entered_fast or d.left_fast]
    assert [d.entered_fast for _, d in changes] == [True, False]
    assert changes[0][1].reason == "enter fast: rate"  # the rise is noticed before the level
    assert r.interval == 600.0 and not r.fast
