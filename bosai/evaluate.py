"""Detection scored against the simulator scenarios' ground truth: `bosai evaluate`.

Each scenario is run offline (simulators/offline.py: what a gateway polling every device every
`interval_s` would report) through `cloud.replay.Replayer`, i.e. the live detection engine and
alert lifecycle, and the alert events and the detectors' forecasts are compared with the ground
truth (simulators/truth.py) computed for the same time origin.  What is scored, per scenario:

1. Threshold crossings.  A truth up-crossing of level L at t on (device, kind) is *detected* when
   that sensor's `level` alert is at level >= L at some time from t - EARLY_S until the truth
   next drops below L (or the scenario ends).  Delay: when the alert reached L, minus t (negative
   up to EARLY_S is noise).  A level that the detector kept from an earlier excursion (hysteresis:
   the truth dipped below the threshold but not below the clearing margin) counts as detected
   and is marked `held`, without a delay.
2. Disaster false alarms.  Every `raised`/`escalated` disaster event must be justified by the
   truth near its time (see `judge_alert`); unjustified ones are false alarms, and those inside
   an injected fault window of the same sensor are counted apart.  Maintenance alerts are
   counted per condition, and each injected fault is `caught` when a maintenance alert of that
   sensor is raised during it or within FAULT_CATCH_GRACE_S after it; faults the data cannot
   show (a lost uplink: the outbox delivers late; an answer slower than normal but within the
   bus timeout) are `n/a`.
3. Time-to-threshold forecasts: at fixed lead times before every truth up-crossing, the latest
   next-level forecast of that sensor for that level (computed at most FORECAST_MAX_AGE_S
   before), error = eta - truth time, and whether the 95 % band contained the truth.
4. Failure-time forecasts: the same at fixed lead times before every truth slope failure, for
   every series of the failing site that has an inverse-velocity forecast configured.

The scoring functions take plain truth records and `wire.alerts.Alert` lists, so they are unit
tested on hand-made cases; `evaluate_scenario` wires them to the simulators and the engine.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Generic, TypeVar

from cloud.registry import Channel, Registry, RoadClass, rate_factor
from wire import alerts as wa
from wire.alerts import Alert

# 2026-01-15 00:00 JST: an hour-aligned origin, the same for the truth and the readings, so that
# JMA hourly snowfall windows of the truth and of the detector fall on the same hours.
ORIGIN = datetime(2026, 1, 15, tzinfo=timezone(timedelta(hours=9))).timestamp()
LEAD_TIMES_MIN = (60, 30, 10)
EARLY_S = 600.0  # an alert up to this long before the truth crossing still detects it (noise)
LEVEL_JUSTIFY_S = 1800.0  # a level alert needs the truth at that level within +- this
RATE_JUSTIFY_S = 3600.0  # a rate alert needs the truth rate near the threshold within +- this
RATE_JUSTIFY_FRACTION = 0.8  # ... at this fraction of the threshold (a windowed rate lags)
SNOW_JUSTIFY_S = 3600.0  # a dispatch alert needs the truth new snowfall within +- this
SNOW_JUSTIFY_CM = 1.5  # ... at the road class's level minus this (hourly truth vs minute data)
FAILURE_JUSTIFY_EXTRA_S = 6 * 3600.0  # a failure alert needs a failure within alert_within_s + this
FAULT_CATCH_GRACE_S = 900.0  # a maintenance alert this long after a fault still catches it
FORECAST_MAX_AGE_S = 600.0  # a forecast older than this at the lead time does not count
EVENTS_RAISING = frozenset({"raised", "escalated"})


# --- truth ---


@dataclass
class Truth:
    """The ground-truth records of one scenario run, indexed for scoring."""

    start: float
    end: float
    values: dict[tuple[str, str], tuple[list[float], list[float]]] = field(default_factory=dict)
    crossings: list[dict[str, Any]] = field(default_factory=list)
    snowfall: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by device
    failures: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]]) -> Truth:
        truth: Truth | None = None
        for rec in records:
            kind = rec["type"]
            if kind == "scenario":
                truth = cls(start=rec["start"], end=rec["start"] + rec["duration"])
                continue
            if truth is None:
                raise ValueError("truth records must begin with the scenario record")
            if kind == "value":
                times, values = truth.values.setdefault((rec["device"], rec["kind"]), ([], []))
                times.append(rec["t"])
                values.append(rec["value"])
            elif kind == "crossing":
                truth.crossings.append(rec)
            elif kind == "snowfall":
                truth.snowfall.setdefault(rec["device"], []).append(rec)
            elif kind == "failure":
                truth.failures.append(rec)
            elif kind == "fault":
                truth.faults.append(rec)
        if truth is None:
            raise ValueError("no scenario record in the truth")
        return truth

    def hours(self, t: float) -> float:
        """Scenario hours of an epoch time, for people reading the report."""
        return (t - self.start) / 3600.0

    def series(self, device: str, kind: str, lo: float, hi: float) -> tuple[list[float], list[float]]:
        """Truth (times, values) of a series with lo <= t <= hi."""
        times, values = self.values.get((device, kind), ([], []))
        i, j = bisect.bisect_left(times, lo), bisect.bisect_right(times, hi)
        return times[i:j], values[i:j]


def towards_danger(direction: str, value: float) -> float:
    """Larger is more dangerous whatever the channel's direction (as simulators/truth.py)."""
    if direction == "absolute":
        return abs(value)
    return -value if direction == "falling" else value


def _t(alert: Alert) -> float:
    return alert.ts.timestamp()


# --- 1. threshold crossings ---


@dataclass(frozen=True)
class CrossingResult:
    device: str
    kind: str
    level: int
    name: str
    t: float  # truth up-crossing, epoch s
    detected: bool
    alert_t: float | None = None  # when the level alert reached the level
    delay_s: float | None = None  # alert_t - t; None when missed or held
    held: bool = False  # the alert was still at this level from an earlier excursion


def level_timeline(alerts: Sequence[Alert], sensor: str, kind: str) -> list[tuple[float, int]]:
    """(time, level from then on) of a sensor's `level` alert episodes, in time order."""
    return [
        (_t(a), a.level)
        for a in alerts
        if a.condition == wa.LEVEL and a.sensor == sensor and a.kind == kind and a.category == "disaster"
    ]


def _level_at(timeline: Sequence[tuple[float, int]], t: float) -> tuple[int, int]:
    """(level at t, index of the event that set it, -1 before any)."""
    i = bisect.bisect_right([e[0] for e in timeline], t) - 1
    return (timeline[i][1], i) if i >= 0 else (0, -1)


def match_crossing(
    crossing: dict[str, Any],
    timeline: Sequence[tuple[float, int]],
    truth_crossings: Sequence[dict[str, Any]],
    end: float,
) -> CrossingResult:
    """Score one truth up-crossing against its sensor's level alert timeline.

    `truth_crossings`: every truth crossing (to find when the truth drops below the level again,
    and the previous excursion a held alert may come from); `end`: the scenario end."""
    device, kind, level, t = crossing["device"], crossing["kind"], crossing["level"], crossing["t"]
    same = sorted(
        (c for c in truth_crossings if (c["device"], c["kind"], c["level"]) == (device, kind, level)),
        key=lambda c: c["t"],
    )
    later_downs = [c["t"] for c in same if c["direction"] == "down" and c["t"] > t]
    earlier_downs = [c["t"] for c in same if c["direction"] == "down" and c["t"] < t]
    until = later_downs[0] if later_downs else end
    base = dict(device=device, kind=kind, level=level, name=crossing.get("name", ""), t=t)
    lvl, i = _level_at(timeline, t - EARLY_S)
    if lvl >= level:
        # Already at the level 10 min before: find where that stretch began.
        while i > 0 and timeline[i - 1][1] >= level:
            i -= 1
        began = timeline[i][0]
        if earlier_downs and began < earlier_downs[-1]:
            return CrossingResult(**base, detected=True, alert_t=began, held=True)
        return CrossingResult(**base, detected=True, alert_t=began, delay_s=began - t)
    for te, lv in timeline:
        if t - EARLY_S < te < until and lv >= level:
            return CrossingResult(**base, detected=True, alert_t=te, delay_s=te - t)
    return CrossingResult(**base, detected=False)


def score_crossings(truth: Truth, alerts: Sequence[Alert]) -> list[CrossingResult]:
    out: list[CrossingResult] = []
    timelines: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for c in sorted(truth.crossings, key=lambda c: (c["t"], c["device"], c["kind"], c["level"])):
        if c["direction"] != "up":
            continue
        key = (c["device"], c["kind"])
        if key not in timelines:
            timelines[key] = level_timeline(alerts, *key)
        out.append(match_crossing(c, timelines[key], truth.crossings, truth.end))
    return out


# --- 2. disaster false alarms, maintenance alerts, faults ---


@dataclass(frozen=True)
class AlarmResult:
    sensor: str
    kind: str
    condition: str
    level: int
    event: str
    t: float
    justified: bool
    basis: str  # the truth figure that (does not) justify it
    in_fault: str = ""  # the fault window of this sensor the alert fell in, if any
    reason: str = ""  # the alert's own reason text


ChannelOf = Callable[[str, str], Channel | None]
RoadOf = Callable[[str], RoadClass | None]


def judge_alert(
    alert: Alert, truth: Truth, channel: Channel | None, road: RoadClass | None
) -> tuple[bool, str]:
    """Whether the truth justifies a disaster raised/escalated event, and the figure why (not)."""
    t, cond = _t(alert), alert.condition
    if channel is None:
        return False, "sensor/kind not in the registry"
    if cond == wa.LEVEL:
        th = next((x for x in channel.thresholds if x.level == alert.level), None)
        if th is None:
            return False, f"no threshold for level {alert.level}"
        _, values = truth.series(alert.sensor, alert.kind, t - LEVEL_JUSTIFY_S, t + LEVEL_JUSTIFY_S)
        if not values:
            return False, "no truth values near the alert"
        need = towards_danger(channel.direction, th.value)
        worst = max(values, key=lambda v: towards_danger(channel.direction, v))
        ok = towards_danger(channel.direction, worst) >= need
        basis = f"truth extreme {worst:.4g} {channel.unit} vs threshold {th.value:g} within +-30 min"
        if not ok:  # how far off in time: the nearest moment the truth is at the level
            all_t, all_v = truth.series(alert.sensor, alert.kind, truth.start, truth.end)
            at = [
                ti for ti, v in zip(all_t, all_v, strict=True) if towards_danger(channel.direction, v) >= need
            ]
            nearest = min(at, key=lambda ti: abs(ti - t), default=None)
            basis += (
                "; never in the run" if nearest is None else f"; truth at it {(nearest - t) / 60:+.0f} min"
            )
        return ok, basis
    if cond == wa.RATE:
        rc = channel.rate
        factor = rate_factor(channel.unit, rc.unit) if rc is not None else None
        if rc is None or factor is None:
            return False, "no rate configured"
        rth = next((x for x in rc.thresholds if x.level == alert.level), None)
        if rth is None:
            return False, f"no rate threshold for level {alert.level}"
        best = truth_rate_max(truth, alert.sensor, alert.kind, channel.direction, rc.window_s, factor, t)
        if best is None:
            return False, "no truth rate near the alert"
        need = RATE_JUSTIFY_FRACTION * rth.value
        return best >= need, f"truth rate max {best:.4g} {rc.unit} vs 80 % of {rth.value:g} within +-1 h"
    if cond == wa.SNOW_DISPATCH:
        if road is None:
            return False, "no road class"
        key = f"new_{road.window_h}h"
        near = [r[key] for r in truth.snowfall.get(alert.sensor, []) if abs(r["t"] - t) <= SNOW_JUSTIFY_S]
        if not near:
            return False, "no truth snowfall near the alert"
        best = max(near)
        ok = best >= road.new_snow_cm - SNOW_JUSTIFY_CM
        return ok, f"truth {key} max {best:.3g} cm vs {road.new_snow_cm:g} - 1.5 cm within +-1 h"
    if cond == wa.FAILURE_FORECAST:
        ff = channel.failure_forecast
        if ff is None:
            return False, "no failure forecast configured"
        limit = t + ff.alert_within_s + FAILURE_JUSTIFY_EXTRA_S
        fails = [f["t"] for f in truth.failures if f["device"] == alert.sensor]
        if any(f <= limit for f in fails):
            return True, f"truth failure in {(min(fails) - t) / 3600:.1f} h"
        if fails:
            return False, f"truth failure only in {(min(fails) - t) / 3600:.1f} h"
        return False, "no truth failure of this device"
    return False, f"unknown condition {cond!r}"


def truth_rate_max(
    truth: Truth, device: str, kind: str, direction: str, window_s: float, factor: float, t: float
) -> float | None:
    """Highest truth rate towards danger, over `window_s` windows ending within +-RATE_JUSTIFY_S
    of t, in the rate unit (`factor` from cloud.registry.rate_factor)."""
    times, values = truth.series(device, kind, t - RATE_JUSTIFY_S - window_s, t + RATE_JUSTIFY_S)
    best: float | None = None
    for j, tj in enumerate(times):
        if tj < t - RATE_JUSTIFY_S:
            continue
        i = bisect.bisect_left(times, max(tj - window_s, truth.start))
        if tj - times[i] < window_s / 4:  # as RateWindow: too short a span says nothing
            continue
        d = towards_danger(direction, values[j]) - towards_danger(direction, values[i])
        rate = d / (tj - times[i]) * factor
        best = rate if best is None else max(best, rate)
    return best


def fault_window(truth: Truth, sensor: str, t: float) -> str:
    """ "type start-end h" of the injected fault of this sensor active at t, or ""."""
    for f in truth.faults:
        if f.get("device") == sensor and f["start"] <= t < f["end"]:
            return f"{f['fault']} {truth.hours(f['start']):.2f}-{truth.hours(f['end']):.2f} h"
    return ""


def judge_alarms(
    truth: Truth, alerts: Sequence[Alert], channel_of: ChannelOf, road_of: RoadOf
) -> list[AlarmResult]:
    """Every disaster raised/escalated event, judged against the truth."""
    out: list[AlarmResult] = []
    for a in alerts:
        if a.category != "disaster" or a.event not in EVENTS_RAISING:
            continue
        ok, basis = judge_alert(a, truth, channel_of(a.sensor, a.kind), road_of(a.sensor))
        out.append(
            AlarmResult(
                sensor=a.sensor,
                kind=a.kind,
                condition=a.condition,
                level=a.level,
                event=a.event,
                t=_t(a),
                justified=ok,
                basis=basis,
                in_fault=fault_window(truth, a.sensor, _t(a)),
                reason=a.reason,
            )
        )
    return out


def maintenance_counts(alerts: Sequence[Alert]) -> dict[str, int]:
    """Maintenance episodes raised, per condition."""
    counts = Counter(a.condition for a in alerts if a.category == "maintenance" and a.event == "raised")
    return dict(sorted(counts.items()))


@dataclass(frozen=True)
class FaultResult:
    fault: str
    device: str
    kind: str
    start: float
    end: float
    status: str  # caught | missed | n/a
    alerts: list[str]  # "condition kind at h" of the maintenance alerts that caught it
    note: str = ""


# What can catch a fault: a value fault (the protocol is healthy, the value is wrong) only the
# plausibility checks; a transport fault (no value) only the missing-data conditions.
VALUE_FAULTS = frozenset({"spike", "stuck", "drift"})
VALUE_CONDITIONS = frozenset({wa.SUSPECT_DATA, wa.FLATLINE, wa.OUT_OF_RANGE})
TRANSPORT_CONDITIONS = frozenset({wa.SENSOR_FAILING, wa.STALE})


def score_faults(
    truth: Truth, alerts: Sequence[Alert], visible: Callable[[dict[str, Any]], bool]
) -> list[FaultResult]:
    """Whether each injected fault raised a maintenance alert of its sensor (of its kind, and
    from the plausibility checks, for a value fault; from missing data for a transport fault)
    during its window or within FAULT_CATCH_GRACE_S after.  `visible(fault)` False marks faults
    the readings cannot show: n/a, whatever alerts fell in their window (listed all the same)."""
    out: list[FaultResult] = []
    maint = [a for a in alerts if a.category == "maintenance" and a.event == "raised"]
    for f in truth.faults:
        device, kind = f.get("device") or "", f.get("kind") or ""
        conditions = VALUE_CONDITIONS if f["fault"] in VALUE_FAULTS else TRANSPORT_CONDITIONS
        hits = [
            f"{a.condition} {a.kind} at {truth.hours(_t(a)):.2f} h"
            for a in maint
            if a.sensor == device
            and a.condition in conditions
            and (not kind or a.kind == kind)
            and f["start"] <= _t(a) <= f["end"] + FAULT_CATCH_GRACE_S
        ]
        status = "n/a" if not visible(f) else ("caught" if hits else "missed")
        out.append(
            FaultResult(f["fault"], device, kind, f["start"], f["end"], status, hits, f.get("note", ""))
        )
    return out


# --- 3./4. forecasts at lead times ---

T = TypeVar("T")


@dataclass
class History(Generic[T]):
    """Forecasts of one series over time: (time computed or in force, forecast)."""

    times: list[float] = field(default_factory=list)
    items: list[T] = field(default_factory=list)

    def add(self, t: float, item: T) -> None:
        self.times.append(t)
        self.items.append(item)

    def at(self, t: float, max_age_s: float = FORECAST_MAX_AGE_S) -> tuple[float, T] | None:
        """The latest entry at or before t, if it is at most max_age_s old."""
        i = bisect.bisect_right(self.times, t) - 1
        if i < 0 or t - self.times[i] > max_age_s:
            return None
        return self.times[i], self.items[i]


@dataclass(frozen=True)
class Band:
    """A forecast time with its band, epoch s (trend.Crossing or inverse_velocity.FailureForecast)."""

    eta: float
    earliest: float
    latest: float


@dataclass(frozen=True)
class ForecastCheck:
    target: str  # "device kind level N" or "device kind failure"
    t_true: float
    lead_min: int
    has_forecast: bool
    computed_at: float | None = None
    eta: float | None = None
    earliest: float | None = None
    latest: float | None = None
    error_min: float | None = None  # eta - t_true
    in_band: bool | None = None


def check_forecast(
    target: str, t_true: float, lead_min: int, history: History[Band | None] | None
) -> ForecastCheck:
    picked = history.at(t_true - lead_min * 60.0) if history is not None else None
    at, band = picked if picked is not None else (None, None)
    if band is None:
        return ForecastCheck(target, t_true, lead_min, False)
    return ForecastCheck(
        target,
        t_true,
        lead_min,
        True,
        computed_at=at,
        eta=band.eta,
        earliest=band.earliest,
        latest=band.latest,
        error_min=(band.eta - t_true) / 60.0,
        in_band=band.earliest <= t_true <= band.latest,
    )


@dataclass(frozen=True)
class ForecastSummary:
    lead_min: int
    eligible: int  # targets whose lead time falls inside the run
    forecast: int  # of those, with a forecast
    median_abs_err_min: float | None
    max_abs_err_min: float | None
    in_band: int


def summarise_forecasts(checks: Sequence[ForecastCheck]) -> list[ForecastSummary]:
    out: list[ForecastSummary] = []
    for lead in LEAD_TIMES_MIN:
        mine = [c for c in checks if c.lead_min == lead]
        errs = [abs(c.error_min) for c in mine if c.error_min is not None]
        out.append(
            ForecastSummary(
                lead,
                len(mine),
                len(errs),
                statistics.median(errs) if errs else None,
                max(errs) if errs else None,
                sum(1 for c in mine if c.in_band),
            )
        )
    return out


def _in_run(truth: Truth, t: float) -> bool:
    """A lead time is eligible only inside the run: before it or after it there are no data."""
    return truth.start <= t <= truth.end


def next_level_checks(
    truth: Truth,
    histories: dict[tuple[str, str, int], History[Band | None]],
    configured: Callable[[str, str], bool],
) -> tuple[list[ForecastCheck], list[str]]:
    """Time-to-threshold forecasts at each lead time before every truth up-crossing of a channel
    with a `forecast` configured; and "device kind level N" of the crossings on channels without."""
    out: list[ForecastCheck] = []
    unconfigured: list[str] = []
    for c in sorted(truth.crossings, key=lambda c: c["t"]):
        if c["direction"] != "up":
            continue
        key = (c["device"], c["kind"], c["level"])
        target = f"{key[0]} {key[1]} level {key[2]}"
        if not configured(c["device"], c["kind"]):
            unconfigured.append(target)
            continue
        for lead in LEAD_TIMES_MIN:
            if _in_run(truth, c["t"] - lead * 60.0):
                out.append(check_forecast(target, c["t"], lead, histories.get(key)))
    return out, unconfigured


def failure_checks(
    truth: Truth,
    series: dict[str, list[tuple[str, str]]],
    histories: dict[tuple[str, str], History[Band | None]],
) -> list[ForecastCheck]:
    """Failure-time forecasts at each lead time (inside the run) before every truth failure, of
    every series of the failing site with a failure forecast (`series`: site -> [(sensor, kind)])."""
    events = sorted({(f["site"], f["t"]) for f in truth.failures if f.get("site")}, key=lambda e: e[1])
    out: list[ForecastCheck] = []
    for site, t_fail in events:
        for sensor, kind in series.get(site, []):
            for lead in LEAD_TIMES_MIN:
                if _in_run(truth, t_fail - lead * 60.0):
                    out.append(
                        check_forecast(
                            f"{sensor} {kind} failure", t_fail, lead, histories.get((sensor, kind))
                        )
                    )
    return out


# --- one scenario ---


@dataclass
class ScenarioResult:
    name: str
    start: float
    duration_s: float
    interval_s: float
    readings: int
    registry: str
    crossings: list[CrossingResult]
    alarms: list[AlarmResult]  # every disaster raised/escalated event, justified or not
    maintenance: dict[str, int]
    faults: list[FaultResult]
    next_level: list[ForecastCheck]
    failure: list[ForecastCheck]
    no_forecast_configured: list[str] = field(default_factory=list)  # crossings of channels without
    seconds: float = 0.0  # wall time of the run

    @property
    def missed(self) -> list[CrossingResult]:
        return [c for c in self.crossings if not c.detected]

    @property
    def false_alarms(self) -> list[AlarmResult]:
        return [a for a in self.alarms if not a.justified]

    @property
    def delays_min(self) -> list[float]:
        return [c.delay_s / 60.0 for c in self.crossings if c.delay_s is not None]

    @property
    def passed(self) -> bool:
        return not self.missed and not self.false_alarms

    def summary(self) -> dict[str, Any]:
        delays = self.delays_min
        faults = Counter(f.status for f in self.faults)
        return {
            "crossings": len(self.crossings),
            "detected": len(self.crossings) - len(self.missed),
            "missed": len(self.missed),
            "held": sum(1 for c in self.crossings if c.held),
            "delay_median_min": statistics.median(delays) if delays else None,
            "delay_max_min": max(delays) if delays else None,
            "disaster_events": len(self.alarms),
            "false_alarms": len(self.false_alarms),
            "false_alarms_in_faults": sum(1 for a in self.false_alarms if a.in_fault),
            "maintenance_alerts": sum(self.maintenance.values()),
            "faults": len(self.faults),
            "faults_caught": faults["caught"],
            "faults_missed": faults["missed"],
            "faults_na": faults["n/a"],
            "next_level": [asdict(s) for s in summarise_forecasts(self.next_level)],
            "crossings_without_forecast_config": len(self.no_forecast_configured),
            "failure": [asdict(s) for s in summarise_forecasts(self.failure)],
            "passed": self.passed,
        }

    def to_json(self) -> dict[str, Any]:
        def hours(rows: Iterable[Any], *keys: str) -> list[dict[str, Any]]:
            out = []
            for row in rows:
                d = asdict(row)
                for k in keys:
                    if d.get(k) is not None:
                        d[f"{k}_h"] = round((d[k] - self.start) / 3600.0, 4)
                out.append(d)
            return out

        return {
            "scenario": self.name,
            "start": self.start,
            "start_iso": datetime.fromtimestamp(self.start, UTC).isoformat(),
            "duration_h": self.duration_s / 3600.0,
            "interval_s": self.interval_s,
            "readings": self.readings,
            "registry": self.registry,
            "seconds": round(self.seconds, 2),
            "summary": self.summary(),
            "crossings": hours(self.crossings, "t", "alert_t"),
            "disaster_alerts": hours(self.alarms, "t"),
            "maintenance_alerts": self.maintenance,
            "faults": hours(self.faults, "start", "end"),
            "next_level_forecasts": hours(self.next_level, "t_true", "computed_at", "eta"),
            "crossings_without_forecast_config": self.no_forecast_configured,
            "failure_forecasts": hours(self.failure, "t_true", "computed_at", "eta"),
        }


class EvaluationError(Exception):
    """A scenario that cannot be evaluated (no registry, unknown file): a usage error."""


_FLAG_OF_FAULT = {
    "dropout": "timeout",
    "slow": "timeout",
    "exception": "exception",
    "bad_crc": "crc",
    "garbled": "crc",
    "partial_line": "crc",
}


def evaluate_scenario(
    scenario_path: Path,
    *,
    interval_s: float = 60.0,
    origin: float = ORIGIN,
    profiles_dir: Path | None = None,
    gateway_config: Path | None = None,
) -> ScenarioResult:
    """Replay one scenario through the detection engine and score it against its truth."""
    import time

    from bosai.paths import GATEWAYS_DIR, PROFILES_DIR
    from edge.profiles import load_profiles
    from simulators.devices import build_devices
    from simulators.offline import scenario_samples
    from simulators.scenario import load_scenario
    from simulators.truth import scenario_truth

    started = time.monotonic()
    profiles_dir = profiles_dir or PROFILES_DIR
    scenario = load_scenario(scenario_path)
    registry, tenant = scenario.registry, scenario.spec.tenant
    if registry is None or tenant is None:
        raise EvaluationError(f"{scenario_path}: no 'registry' and 'tenant': nothing to score against")
    profiles = load_profiles(profiles_dir)
    truth = Truth.from_records(scenario_truth(scenario, build_devices(scenario, profiles), origin))
    samples = scenario_samples(scenario, profiles_dir, interval_s, build_devices(scenario, profiles))
    replayed = _replay(registry, tenant, samples, origin)

    def channel_of(sensor: str, kind: str) -> Channel | None:
        s = registry.sensors.get((tenant, sensor))
        return s.channels.get(kind) if s is not None else None

    def road_of(sensor: str) -> RoadClass | None:
        s = registry.sensors.get((tenant, sensor))
        return registry.road_class(registry.site_of(s)) if s is not None else None

    timeouts = _bus_timeouts(gateway_config or GATEWAYS_DIR / "demo-city-gw01.yaml", scenario)
    devices = {d.id for d in scenario.devices}
    ff_series: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for s in registry.data.sensors:
        if s.tenant == tenant and s.id in devices:
            for kind, ch in s.channels.items():
                if ch.failure_forecast is not None:
                    ff_series[s.site].append((s.id, kind))

    def forecast_configured(sensor: str, kind: str) -> bool:
        ch = channel_of(sensor, kind)
        return ch is not None and ch.forecast is not None

    alerts = replayed.alerts
    next_level, unconfigured = next_level_checks(truth, replayed.next_level, forecast_configured)
    return ScenarioResult(
        name=scenario.name,
        start=origin,
        duration_s=scenario.duration,
        interval_s=interval_s,
        readings=replayed.readings,
        registry=str(scenario.spec.registry),
        crossings=score_crossings(truth, alerts),
        alarms=judge_alarms(truth, alerts, channel_of, road_of),
        maintenance=maintenance_counts(alerts),
        faults=score_faults(truth, alerts, lambda f: fault_visible(f, timeouts)),
        next_level=next_level,
        failure=failure_checks(truth, ff_series, replayed.failure),
        no_forecast_configured=unconfigured,
        seconds=time.monotonic() - started,
    )


def fault_visible(fault: dict[str, Any], bus_timeout_of_device: dict[str, float]) -> bool:
    """Whether the readings can show a fault: a lost uplink only delays data (the outbox keeps
    it), and an answer slower than usual but within the bus timeout is still a good reading."""
    if fault["fault"] == "link_loss":
        return False
    if fault["fault"] == "slow":
        timeout = bus_timeout_of_device.get(fault.get("device") or "")
        return timeout is None or float(fault.get("delay", 0.0)) > timeout
    return True


def _bus_timeouts(gateway_config: Path, scenario: Any) -> dict[str, float]:
    """Device id -> its bus's request timeout in the gateway config the scenarios mirror (bus
    ids match the scenario's); {} if the file cannot be read."""
    import msgspec
    import yaml

    from edge.config import Bus

    try:
        raw = yaml.safe_load(gateway_config.read_text(encoding="utf-8"))
        buses = msgspec.convert(raw.get("buses", []), list[Bus])
    except (OSError, yaml.YAMLError, msgspec.ValidationError, AttributeError):
        return {}
    timeout = {b.id: b.timeout for b in buses}
    return {d.id: timeout[d.bus] for d in scenario.devices if d.bus in timeout}


@dataclass
class _Replayed:
    alerts: list[Alert]
    readings: int
    next_level: dict[tuple[str, str, int], History[Band | None]]
    failure: dict[tuple[str, str], History[Band | None]]


def _replay(registry: Registry, tenant: str, samples: Iterable[Any], origin: float) -> _Replayed:
    """Feed the samples to a Replayer; record each series' forecasts as they are computed.

    Next-level forecasts: the detector replaces `crossing` with a new object whenever it computes
    one, so a new object is a new forecast, stamped with its reading's time.  Failure forecasts:
    the one in force after each good reading (None when the detector refuses), so the pick at a
    lead time is what a duty officer would have seen then."""
    from cloud.replay import Replayer
    from wire.telemetry import Quality, Reading

    rp = Replayer(registry)
    next_level: dict[tuple[str, str, int], History[Band | None]] = defaultdict(History)
    failure: dict[tuple[str, str], History[Band | None]] = defaultdict(History)
    last_crossing: dict[tuple[str, str], object] = {}
    n = 0
    for x in samples:
        sensor = registry.sensors.get((tenant, x.device))
        if sensor is None or x.kind not in sensor.channels:
            continue
        t = origin + x.t
        q = Quality.OK if x.value is not None else Quality(_FLAG_OF_FAULT.get(x.fault, "error"))
        rp.feed(sensor, Reading(x.device, x.kind, datetime.fromtimestamp(t, UTC), x.value, x.unit, q))
        n += 1
        det = rp.engine.series.get((tenant, x.device, x.kind))
        if det is None:
            continue
        cr = det.crossing
        if cr is not None and cr is not last_crossing.get((x.device, x.kind)):
            last_crossing[(x.device, x.kind)] = cr
            if det.crossing_level is not None:
                next_level[(x.device, x.kind, det.crossing_level)].add(
                    t, Band(cr.eta, cr.earliest, cr.latest)
                )
        if det.channel.failure_forecast is not None and x.value is not None:
            f = det.failure
            failure[(x.device, x.kind)].add(t, Band(f.t_failure, f.earliest, f.latest) if f else None)
    return _Replayed(list(rp.alerts), n, dict(next_level), dict(failure))


# --- output ---


def _num(x: float | None, fmt: str = ".1f") -> str:
    return "–" if x is None else format(x, fmt)


def _forecast_cell(checks: Sequence[ForecastCheck]) -> str:
    """ "median |err| (forecast/eligible)" per lead time, joined by " / "."""
    parts = []
    for s in summarise_forecasts(checks):
        if s.eligible == 0:
            parts.append("–")
        else:
            parts.append(f"{_num(s.median_abs_err_min)} ({s.forecast}/{s.eligible})")
    return " / ".join(parts)


MARKDOWN_HEADER = (
    "| scenario | crossings detected | delay median / max (min) | disaster false alarms (in faults) "
    "| maintenance alerts | faults caught | TTT forecast \\|err\\| at 60 / 30 / 10 min "
    "| failure \\|err\\| at 60 / 30 / 10 min |\n"
    "|---|---|---|---|---|---|---|---|"
)


def markdown_row(r: ScenarioResult) -> str:
    s = r.summary()
    faults = f"{s['faults_caught']}/{s['faults'] - s['faults_na']}" if s["faults"] else "–"
    if s["faults_na"]:
        faults += f" ({s['faults_na']} n/a)"
    return (
        f"| {r.name} | {s['detected']}/{s['crossings']} "
        f"| {_num(s['delay_median_min'])} / {_num(s['delay_max_min'])} "
        f"| {s['false_alarms']} ({s['false_alarms_in_faults']}) "
        f"| {s['maintenance_alerts']} | {faults} "
        f"| {_forecast_cell(r.next_level)} | {_forecast_cell(r.failure)} |"
    )


def markdown_table(results: Sequence[ScenarioResult]) -> str:
    return "\n".join([MARKDOWN_HEADER, *(markdown_row(r) for r in results)])


def text_report(r: ScenarioResult) -> str:
    """A scenario's scores with every miss, false alarm and fault, for people."""
    s = r.summary()

    def h(t: float | None) -> str:
        return "–" if t is None else f"{(t - r.start) / 3600:.2f} h"

    lines = [
        f"{r.name}: {r.duration_s / 3600:.4g} h, {r.readings} readings every {r.interval_s:g} s "
        f"({r.seconds:.1f} s) - {'PASS' if r.passed else 'FAIL'}",
        f"  threshold crossings: {s['detected']}/{s['crossings']} detected"
        + (f" ({s['held']} held from an earlier excursion)" if s["held"] else "")
        + f", delay median {_num(s['delay_median_min'])} min, max {_num(s['delay_max_min'])} min",
    ]
    for c in r.crossings:
        if not c.detected:
            lines.append(f"    MISSED {c.device} {c.kind} level {c.level} ({c.name}) at {h(c.t)}")
        elif c.delay_s is not None and abs(c.delay_s) > 30 * 60:
            lines.append(
                f"    late/early {c.device} {c.kind} level {c.level} at {h(c.t)}: {c.delay_s / 60:+.1f} min"
            )
    lines.append(
        f"  disaster alerts: {s['disaster_events']} raised/escalated, {s['false_alarms']} unjustified "
        f"({s['false_alarms_in_faults']} during injected faults)"
    )
    for a in r.false_alarms:
        fault = f" [during {a.in_fault}]" if a.in_fault else ""
        lines.append(
            f"    FALSE {a.condition} L{a.level} {a.event} {a.sensor} {a.kind} at {h(a.t)}{fault}: {a.basis}"
        )
        lines.append(f"      alert: {a.reason}")
    maint = ", ".join(f"{k} {v}" for k, v in r.maintenance.items()) or "none"
    lines.append(f"  maintenance alerts raised: {maint}")
    lines.append(
        f"  injected faults: {s['faults_caught']} caught, {s['faults_missed']} missed, {s['faults_na']} n/a"
    )
    for f in r.faults:
        what = f"{f.device or 'uplink'} {f.kind}".rstrip()
        got = f" ({'; '.join(f.alerts)})" if f.alerts else ""
        lines.append(f"    {f.status:6} {f.fault} {what} {h(f.start)}-{h(f.end)}{got}")
    for title, checks in (("time-to-threshold", r.next_level), ("failure-time", r.failure)):
        if title == "time-to-threshold" and r.no_forecast_configured:
            lines.append(
                f"  {len(r.no_forecast_configured)} crossings on channels without a forecast configured: "
                + ", ".join(sorted({" ".join(x.split()[:2]) for x in r.no_forecast_configured}))
            )
        if not checks:
            lines.append(f"  {title} forecasts: no targets")
            continue
        lines.append(f"  {title} forecasts (|eta - truth| in min):")
        for fs in summarise_forecasts(checks):
            if fs.eligible == 0:
                lines.append(f"    {fs.lead_min:2d} min before: no target (lead time outside the run)")
                continue
            lines.append(
                f"    {fs.lead_min:2d} min before: {fs.forecast}/{fs.eligible} forecast, median "
                f"{_num(fs.median_abs_err_min)}, max {_num(fs.max_abs_err_min)}, "
                f"band held the truth {fs.in_band}/{fs.forecast}"
            )
    return "\n".join(lines)
