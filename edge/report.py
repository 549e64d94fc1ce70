"""Adaptive report policy: which polled samples a gateway sends, and how often it polls.

Modelled on Japanese "crisis-management" river gauges, which measure every 10 min but transmit
once a day below their observation-start level and every 2-10 min above it.  Cellular data is
saved in quiet times without delaying what matters.  One `Reporter` per sensor sees every poll
(`offer`) and decides; it is pure (no I/O, no clock: time is the readings' sample time, so it
follows the simulators' scaled clock too).

Without a `report` section every sample is reported, never urgent, at the sensor's interval.

With a policy, a sample (all readings of one poll, reported together or not at all) is reported
when any of these holds, first match giving the `Decision.reason`:

- the sensor is in fast mode, or the sample enters or leaves it (see below);
- it is the first sample since start ("first");
- `deadband` and `heartbeat` are both absent: every sample ("every sample"; only fast mode is
  configured, for its faster polling and urgent flag);
- a point's quality differs from its last *reported* quality, or the point was never reported
  ("quality <kind>");
- an ok point's value differs from its last *reported* value by at least its deadband
  ("deadband <kind>").  Comparing with the last report, not the last sample, means slow drift is
  reported once it adds up.  A kind without a deadband (no entry in a per-kind dict, or no
  deadband at all) never triggers by change.  A deadband of 0 reports any change.  A relative
  tolerance of 1e-9 makes a decimal deadband behave as written (0.3 - 0.1 moved by 0.2);
- `heartbeat` seconds or more have passed since the last report ("heartbeat").

Fast mode is driven by one point (`fast.kind`, or the only point of the sample), in a direction:
'rising' compares the value and its slope as they are, 'falling' their negatives, 'absolute'
|value| and |slope| (like the cloud registry's channels).  It is entered on a sample whose
driving point is ok and

- the value is at/over `level` ("enter fast: level"), or
- the least-squares slope of that point's ok samples over the last `rate_window` seconds is
  at/over `rate` units per hour ("enter fast: rate").  The fit needs >= 3 samples spanning at
  least half the window, so a single noisy step cannot trigger it.  A sample exactly one window
  old still counts (with 1 % slack for late polls on a busy bus), so a window of two intervals
  reliably holds three samples.

It is left on a sample once, for `hold` seconds since the last sample where one held, neither
stay condition holds: value over `level - hysteresis`, or slope over `rate / 2` (both in the
direction).  Hysteresis keeps a value hovering at the level from flapping; the hold keeps a
short dip from ending the mode.  A sample whose driving point is not ok never enters or leaves
fast mode: the mode is kept while the sensor is failing.

While in fast mode the sensor is polled every `fast.interval` seconds and every sample is
reported and urgent (sent before any backlog), including the sample that entered it.  The
sample that leaves it is reported but not urgent.

If sample time steps back (a clock correction), the rate history is dropped and the heartbeat
and hold timers restart from the new time, rather than stalling until the old time comes back.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec

from wire.telemetry import Kind, Quality, Reading

log = logging.getLogger(__name__)

Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Direction = Literal["rising", "falling", "absolute"]

_DEADBAND_TOLERANCE = 1e-9  # relative; 0.3 - 0.1 is 0.19999999999999998, which must pass 0.2
_WINDOW_SLACK = 0.01  # fraction of rate_window by which a sample may be late and still count
_MIN_FIT_SAMPLES = 3


class FastMode(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # The point whose value drives fast mode; may be left out if the profile has one point.
    kind: Kind | None = None
    # Which way is dangerous: rising (e.g. river level), falling, absolute (|tilt|).
    direction: Direction = "rising"
    # Enter fast mode when the value reaches this (in the direction), e.g. observation-start level.
    level: float | None = None
    # Leave (by level) only once the value is back below level - hysteresis (in the direction).
    hysteresis: NonNegative = 0.0
    # Enter fast mode when the value changes at least this fast, units per hour (in the direction).
    rate: Positive | None = None
    # Seconds of samples the rate is fitted over (least-squares slope).
    rate_window: Positive = 600.0
    # Sampling interval in fast mode, seconds; every fast sample is reported (and urgent).
    interval: Positive
    # Stay in fast mode at least this many seconds after the last sample where a trigger held.
    hold: NonNegative = 600.0


class ReportPolicy(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # Report when a value moved this far from its last reported value: one number for every
    # point, or per kind ({tilt_x: 0.005, temperature: 0.5}; kinds left out never trigger).
    deadband: NonNegative | dict[Kind, NonNegative] | None = None
    # Maximum silence, seconds: report at least this often even if nothing changed.
    heartbeat: Positive | None = None
    # Faster polling with every sample reported and urgent near a level or on a fast change.
    fast: FastMode | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    report: bool
    urgent: bool
    entered_fast: bool = False
    left_fast: bool = False
    reason: str = ""  # short, for DEBUG logs and tests, e.g. "deadband tilt_x", "enter fast: rate"


def policy_problems(policy: ReportPolicy, kinds: list[str], interval: float) -> list[tuple[str, str]]:
    """(field path, message) for every mistake msgspec cannot see, given the profile's point kinds
    and the sensor's interval.  Value constraints are checked again for structs built in code."""
    problems: list[tuple[str, str]] = []
    points = ", ".join(kinds)

    def check_kind(field: str, kind: str) -> None:
        if kind not in kinds:
            problems.append((field, f"no point {kind!r} in the profile (points: {points})"))

    def check_number(field: str, value: float, *, allow_zero: bool) -> None:
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            problems.append((field, "must be a finite number >= 0" if allow_zero else "must be a number > 0"))

    if isinstance(policy.deadband, dict):
        for kind, band in policy.deadband.items():
            check_kind(f"report.deadband.{kind}", kind)
            check_number(f"report.deadband.{kind}", band, allow_zero=True)
    elif policy.deadband is not None:
        check_number("report.deadband", policy.deadband, allow_zero=True)

    if policy.heartbeat is not None:
        check_number("report.heartbeat", policy.heartbeat, allow_zero=False)
        if policy.heartbeat < interval:
            problems.append(("report.heartbeat", f"must be at least the sensor's interval ({interval:g} s)"))

    fast = policy.fast
    if fast is None:
        return problems
    if fast.kind is not None:
        check_kind("report.fast.kind", fast.kind)
    elif len(kinds) != 1:
        problems.append(("report.fast.kind", f"required: the profile has points {points}"))
    if fast.level is None and fast.rate is None:
        problems.append(("report.fast", "give a level, a rate, or both"))
    if fast.level is not None:
        if not math.isfinite(fast.level):
            problems.append(("report.fast.level", "must be a finite number"))
        elif fast.direction == "absolute" and fast.level <= 0:
            problems.append(
                ("report.fast.level", "must be > 0 with direction absolute (it is compared with |value|)")
            )
    elif fast.hysteresis:
        problems.append(("report.fast.hysteresis", "has no effect without a level"))
    check_number("report.fast.hysteresis", fast.hysteresis, allow_zero=True)
    check_number("report.fast.interval", fast.interval, allow_zero=False)
    check_number("report.fast.hold", fast.hold, allow_zero=True)
    check_number("report.fast.rate_window", fast.rate_window, allow_zero=False)
    if fast.rate is not None:
        check_number("report.fast.rate", fast.rate, allow_zero=False)
        if fast.rate_window < 2 * interval:
            problems.append(
                (
                    "report.fast.rate_window",
                    f"must cover at least 2 sensor intervals ({2 * interval:g} s) so that the "
                    f"{_MIN_FIT_SAMPLES} samples a rate needs fit in it",
                )
            )
    if fast.interval > interval:
        problems.append(
            ("report.fast.interval", f"must not be longer than the sensor's interval ({interval:g} s)")
        )
    return problems


def _slope_per_hour(samples: deque[tuple[float, float]]) -> float:
    """Least-squares slope of (time, value) pairs, per hour.  Centred on the means, because
    epoch seconds squared would lose all precision in a float."""
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    sxx = sum((t - mean_t) ** 2 for t, _ in samples)
    sxy = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    return sxy / sxx * 3600.0


class Reporter:
    """The report decisions and polling interval of one sensor."""

    def __init__(self, sensor_id: str, interval: float, policy: ReportPolicy | None) -> None:
        self.sensor_id = sensor_id
        self._interval = interval
        self._policy = policy
        self._fast = False
        self.reported = 0  # samples reported since start
        self.suppressed = 0  # samples not reported since start
        self._last_t: float | None = None  # time of the previous sample
        self._last_report_t: float | None = None
        self._last_stay_t = 0.0  # last sample time at which a fast-mode stay condition held
        self._reported_q: dict[str, Quality] = {}  # kind -> quality in the last report
        self._reported_value: dict[str, float] = {}  # kind -> value in the last ok report
        self._history: deque[tuple[float, float]] = deque()  # (t, value) of the driving point

    @property
    def interval(self) -> float:
        """Current sampling interval, seconds."""
        fast = self._policy.fast if self._policy else None
        return fast.interval if self._fast and fast is not None else self._interval

    @property
    def fast(self) -> bool:
        return self._fast

    def offer(self, readings: list[Reading]) -> Decision:
        """Decide on the readings of one poll (one sample time) and update the state."""
        if not readings:  # nothing was sampled; not counted either way
            return Decision(False, False, reason="empty")
        if self._policy is None:
            self.reported += 1
            return Decision(True, False, reason="every sample")
        t = readings[0].ts.timestamp()
        if self._last_t is not None and t < self._last_t:  # clock stepped back
            self._history.clear()
            if self._last_report_t is not None:
                self._last_report_t = min(self._last_report_t, t)
            self._last_stay_t = min(self._last_stay_t, t)
        self._last_t = t

        decision = self._fast_mode(self._policy.fast, readings, t)
        if decision is None:
            reason = self._change(self._policy, readings, t)
            decision = Decision(reason is not None, False, reason=reason or "")
        if decision.report:
            self.reported += 1
            self._last_report_t = t
            for r in readings:
                self._reported_q[r.kind] = r.q
                if r.value is not None:
                    self._reported_value[r.kind] = r.value
        else:
            self.suppressed += 1
        return decision

    def _fast_mode(self, fast: FastMode | None, readings: list[Reading], t: float) -> Decision | None:
        """The decision if fast mode applies to this sample (in it, entering, leaving), else None."""
        if fast is None:
            return None
        point = self._driving_reading(fast, readings)
        if point is None or point.value is None:  # failing: keep the mode, whichever it is
            return Decision(True, True, reason="fast") if self._fast else None

        sign = -1.0 if fast.direction == "falling" else 1.0
        value = abs(point.value) if fast.direction == "absolute" else sign * point.value
        level = None if fast.level is None else sign * fast.level
        slope = self._slope(fast, t, point.value)
        if slope is not None:
            slope = abs(slope) if fast.direction == "absolute" else sign * slope

        if not self._fast:
            if level is not None and value >= level:
                trigger = "level"
            elif fast.rate is not None and slope is not None and slope >= fast.rate:
                trigger = "rate"
            else:
                return None
            self._fast = True
            self._last_stay_t = t
            log.debug("%s: enter fast mode (%s), polling every %g s", self.sensor_id, trigger, fast.interval)
            return Decision(True, True, entered_fast=True, reason=f"enter fast: {trigger}")

        stays = (level is not None and value >= level - fast.hysteresis) or (
            fast.rate is not None and slope is not None and slope >= fast.rate / 2
        )
        if stays:
            self._last_stay_t = t
        elif t - self._last_stay_t >= fast.hold:
            self._fast = False
            log.debug("%s: leave fast mode, polling every %g s", self.sensor_id, self._interval)
            return Decision(True, False, left_fast=True, reason="leave fast")
        return Decision(True, True, reason="fast")

    @staticmethod
    def _driving_reading(fast: FastMode, readings: list[Reading]) -> Reading | None:
        if fast.kind is None:
            return readings[0] if len(readings) == 1 else None
        return next((r for r in readings if r.kind == fast.kind), None)

    def _slope(self, fast: FastMode, t: float, value: float) -> float | None:
        """Add an ok sample of the driving point; the fitted slope per hour, if the window allows."""
        if fast.rate is None:
            return None
        history = self._history
        history.append((t, value))
        oldest = t - fast.rate_window * (1 + _WINDOW_SLACK)
        while history[0][0] < oldest:
            history.popleft()
        if len(history) < _MIN_FIT_SAMPLES or t - history[0][0] < fast.rate_window / 2:
            return None
        return _slope_per_hour(history)

    def _change(self, policy: ReportPolicy, readings: list[Reading], t: float) -> str | None:
        """Why this sample is reported outside fast mode, or None to suppress it."""
        if self._last_report_t is None:
            return "first"
        if policy.deadband is None and policy.heartbeat is None:
            return "every sample"
        for r in readings:
            if self._reported_q.get(r.kind) is not r.q:
                return f"quality {r.kind}"
        if policy.deadband is not None:
            for r in readings:
                band = policy.deadband.get(r.kind) if isinstance(policy.deadband, dict) else policy.deadband
                last = self._reported_value.get(r.kind)
                if band is None or r.value is None or last is None:
                    continue
                moved = abs(r.value - last)
                if moved != 0 and (moved >= band or math.isclose(moved, band, rel_tol=_DEADBAND_TOLERANCE)):
                    return f"deadband {r.kind}"
        if policy.heartbeat is not None and t - self._last_report_t >= policy.heartbeat:
            return "heartbeat"
        return None
