"""The truth, sorted for drawing: truth records (simulators/truth.py) parsed into series, crossings,
failures and faults (`parse`), grouped into the figure's panels (`panels_of`), and what the
records alone do not say looked up in the scenario when there is one: the thresholds that were
never reached, the rain or snowfall behind a device, site and sensor names.

Nothing here draws, so none of it needs matplotlib: the figure's modules take these plain
structures, and the rules for what is shown where can be read apart from how it is drawn.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulators.scenario import Scenario

HOUR = 3600.0
_ROLE_ORDER = ("river", "snow", "slope", "other", "temperature")


class TruthError(ValueError):
    """Truth records that cannot be drawn (a record without its fields, no values at all)."""


@dataclass
class Series:
    t: list[float] = field(default_factory=list)  # hours since the scenario start
    v: list[float] = field(default_factory=list)
    unit: str = ""
    site: str | None = None
    signal: str | None = None

    def at(self, t: float) -> float:
        """Linear interpolation (held at the ends)."""
        if not self.t:
            return math.nan
        k = bisect.bisect_left(self.t, t)
        if k <= 0:
            return self.v[0]
        if k >= len(self.t):
            return self.v[-1]
        t0, t1 = self.t[k - 1], self.t[k]
        if t1 == t0:
            return self.v[k]
        return self.v[k - 1] + (self.v[k] - self.v[k - 1]) * (t - t0) / (t1 - t0)


@dataclass(frozen=True)
class Threshold:
    level: int
    value: float  # as in the registry (positive for an `absolute` channel)
    name: str
    name_ja: str
    reached: bool


@dataclass
class Truth:
    name: str
    description: str
    start: float
    duration_h: float
    seed: Any
    series: dict[tuple[str, str], Series]
    forcings: dict[tuple[str, str], Series]  # (signal, rain | snowfall)
    crossings: list[dict[str, Any]]
    snowfall: dict[str, list[dict[str, Any]]]  # device -> hourly records
    failures: dict[tuple[str, str], float]  # (device, kind) -> hours
    faults: list[dict[str, Any]]

    def hours(self, t: float) -> float:
        return (float(t) - self.start) / HOUR


def _need(row: dict[str, Any], n: int, *keys: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise TruthError(f"record {n} ({row.get('type')}) lacks {', '.join(repr(k) for k in missing)}")


def parse(records: Sequence[dict[str, Any]]) -> Truth:
    try:
        return _parse_records(records)
    except (TypeError, ValueError, AttributeError) as exc:  # a string for a number, a list for a record
        if isinstance(exc, TruthError):
            raise
        raise TruthError(f"truth records do not have the expected form: {exc}") from None


def _parse_records(records: Sequence[dict[str, Any]]) -> Truth:
    head = next((r for r in records if r.get("type") == "scenario"), None)
    times = [float(r["t"]) for r in records if r.get("type") == "value" and "t" in r]
    if not times:
        raise TruthError("no value records to draw")
    start = float(head.get("start", min(times))) if head else min(times)
    duration_h = (
        float(head["duration"]) / HOUR if head and "duration" in head else (max(times) - start) / HOUR
    )
    truth = Truth(
        name=str(head.get("name", "truth")) if head else "truth",
        description=str(head.get("description", "")) if head else "",
        start=start,
        duration_h=duration_h,
        seed=head.get("seed") if head else None,
        series={},
        forcings={},
        crossings=[],
        snowfall={},
        failures={},
        faults=[],
    )
    for n, row in enumerate(records, 1):
        kind = row.get("type")
        if kind == "value":
            _need(row, n, "device", "kind", "t", "value")
            s = truth.series.setdefault((row["device"], row["kind"]), Series())
            s.t.append(truth.hours(row["t"]))
            s.v.append(float(row["value"]) if row["value"] is not None else math.nan)
            s.unit = str(row.get("unit") or s.unit)
            s.site = row.get("site") or s.site
            s.signal = row.get("signal") or s.signal
        elif kind == "forcing":
            _need(row, n, "signal", "name", "t", "value")
            f = truth.forcings.setdefault((row["signal"], row["name"]), Series())
            f.t.append(truth.hours(row["t"]))
            f.v.append(float(row["value"]))
            f.unit = str(row.get("unit") or f.unit)
        elif kind == "crossing":
            _need(row, n, "device", "kind", "level", "threshold", "direction", "t")
            truth.crossings.append(row)
        elif kind == "snowfall":
            _need(row, n, "device", "t", "new_1h")
            truth.snowfall.setdefault(row["device"], []).append(row)
        elif kind == "failure":
            _need(row, n, "device", "kind", "t")
            truth.failures[(row["device"], row["kind"])] = truth.hours(row["t"])
        elif kind == "fault":
            _need(row, n, "fault", "start", "end")
            truth.faults.append(row)
    for s in [*truth.series.values(), *truth.forcings.values()]:
        if any(b < a for a, b in zip(s.t, s.t[1:], strict=False)):
            order = sorted(range(len(s.t)), key=s.t.__getitem__)
            s.t, s.v = [s.t[k] for k in order], [s.v[k] for k in order]
    return truth


# --- series arithmetic (for choosing panels and for drawing them) ------------------------------


def inverse_velocity(s: Series) -> tuple[list[float], list[float]]:
    """(midpoint hours, 1/|v| in days per unit) from successive truth values."""
    t_mid: list[float] = []
    inv: list[float] = []
    for k in range(1, len(s.t)):
        t0, v0, t1, v1 = s.t[k - 1], s.v[k - 1], s.t[k], s.v[k]
        dt_days = (t1 - t0) / 24.0
        if dt_days <= 0 or not (math.isfinite(v0) and math.isfinite(v1)):
            continue
        speed = abs(v1 - v0) / dt_days
        t_mid.append((t0 + t1) / 2)
        inv.append(1.0 / speed if speed > 1e-12 else math.nan)
    return t_mid, inv


def binned(s: Series, width: float, end: float) -> tuple[list[float], list[float]]:
    """Mean of the samples in each [k w, (k+1) w) bin before `end`: (bin middles, means)."""
    sums: dict[int, tuple[float, int]] = {}
    for t, v in zip(s.t, s.v, strict=True):
        k = math.floor(t / width + 1e-9)
        if k * width >= end - 1e-9:
            continue
        total, n = sums.get(k, (0.0, 0))
        sums[k] = (total + v, n + 1)
    keys = sorted(sums)
    return [(k + 0.5) * width for k in keys], [sums[k][0] / sums[k][1] for k in keys]


# --- which panels ------------------------------------------------------------------------------


@dataclass
class Panel:
    role: str  # river | snow | slope | inverse_velocity | temperature | other
    device: str | None  # None: the shared temperature panel
    keys: list[tuple[str, str]]  # (device, kind) drawn in it


def _role(kind: str) -> str:
    if kind == "river_level" or kind.endswith("_level") or kind == "stage":
        return "river"
    if kind.startswith("snow_depth"):
        return "snow"
    if kind.startswith(("tilt", "displacement", "extension", "inclination")):
        return "slope"
    if "temperature" in kind:
        return "temperature"
    return "other"


def panels_of(truth: Truth) -> list[Panel]:
    by_role: dict[str, list[Panel]] = {r: [] for r in _ROLE_ORDER}
    temperatures: list[tuple[str, str]] = []
    grouped: dict[tuple[str, str, str], Panel] = {}
    # Devices in the order of the truth (the scenario's order), grouped by site within a role.
    for device, kind in truth.series:
        role = _role(kind)
        if role == "temperature":
            temperatures.append((device, kind))
            continue
        # One panel per device and unit: tilt_x with tilt_y, a displacement on its own.
        unit = truth.series[(device, kind)].unit if role in ("slope", "other") else ""
        key = (role, device, unit)
        if key not in grouped:
            grouped[key] = Panel(role, device, [])
            by_role[role].append(grouped[key])
        grouped[key].keys.append((device, kind))
    out: list[Panel] = []
    for role in _ROLE_ORDER:
        if role == "temperature":
            if temperatures:
                out.append(Panel("temperature", None, temperatures))
            continue
        panels = by_role[role]
        sites = list(dict.fromkeys(truth.series[p.keys[0]].site or "" for p in panels))
        panels.sort(key=lambda p: sites.index(truth.series[p.keys[0]].site or ""))
        for p in panels:
            out.append(p)
            moving = [
                k for k in p.keys if any(math.isfinite(v) for v in inverse_velocity(truth.series[k])[1])
            ]
            if role == "slope" and moving:  # a slope that does not move has no 1/v
                out.append(Panel("inverse_velocity", p.device, moving))
    return out


# --- thresholds, forcings and names from the truth and (optionally) the scenario ----------------


def thresholds_of(truth: Truth, key: tuple[str, str], scenario: Scenario | None) -> list[Threshold]:
    found: dict[tuple[int, float], Threshold] = {}
    for c in truth.crossings:
        if (c["device"], c["kind"]) == key:
            found[(int(c["level"]), float(c["threshold"]))] = Threshold(
                int(c["level"]),
                float(c["threshold"]),
                str(c.get("name", "")),
                str(c.get("name_ja", "")),
                True,
            )
    channel = scenario.channel(*key) if scenario is not None else None
    if channel is not None:
        for th in channel.thresholds:
            found.setdefault(
                (th.level, th.value), Threshold(th.level, th.value, th.name, th.name_ja, reached=False)
            )
    return sorted(found.values(), key=lambda th: (th.level, th.value))


def direction_of(key: tuple[str, str], scenario: Scenario | None) -> str:
    channel = scenario.channel(*key) if scenario is not None else None
    return channel.direction if channel is not None else "rising"


def forcing(
    truth: Truth,
    keys: Iterable[tuple[str, str]],
    name: str,
    scenario: Scenario | None,
    guess: bool = True,
) -> Series | None:
    """The `name` forcing (rain, snowfall) behind a panel's devices: through the scenario's signals
    (and the signals they read) when known; else, if `guess`, a snow depth's snowfall is the
    forcing whose hourly amounts match the device's `fallen_1h`, and any other the only forcing
    of that name in the truth."""
    keys = list(keys)
    signals: set[str] = set()
    known = False
    for device, kind in keys:
        if scenario is not None:
            spec = next((d for d in scenario.devices if d.id == device), None)
            feed = next((f for f in spec.points if f.kind == kind), None) if spec else None
            if feed is not None:
                known = True
                todo = [feed.signal]
                while todo:
                    sig = todo.pop()
                    if sig not in signals and sig in scenario.signals:
                        signals.add(sig)
                        todo.extend(scenario.signals[sig].depends_on())
                continue
        recorded = truth.series[(device, kind)].signal
        if recorded:
            known = True
            signals.add(recorded)
    candidates = [(sig, f) for (sig, n), f in truth.forcings.items() if n == name and any(v > 0 for v in f.v)]
    if known:
        return next((f for sig, f in candidates if sig in signals), None)
    if not guess or not candidates:
        return None
    if name == "snowfall":
        fallen = [
            [
                float(r.get("fallen_1h") or 0.0)
                for r in sorted(truth.snowfall.get(d, []), key=lambda r: float(r["t"]))
            ]
            for d, _ in keys
        ]
        if fallen and any(fallen[0]):
            return _closest(candidates, fallen[0], truth.duration_h)
    return candidates[0][1] if len(candidates) == 1 else None


def _closest(candidates: list[tuple[str, Series]], hourly: list[float], duration_h: float) -> Series | None:
    """The forcing whose hourly means have the shape of `hourly` (units aside), if one is close."""
    target = sum(hourly)
    best: tuple[float, Series | None] = (0.1, None)  # at most 10 % of the amount misplaced
    for _, f in candidates:
        _, means = binned(f, 1.0, duration_h)
        total = sum(means)
        if total <= 0 or len(means) != len(hourly):
            continue
        misfit = sum(abs(a / total - b / target) for a, b in zip(means, hourly, strict=True))
        if misfit < best[0]:
            best = (misfit, f)
    return best[1]


def site_label(truth: Truth, key: tuple[str, str], scenario: Scenario | None) -> str:
    site = truth.series[key].site
    registry = scenario.registry if scenario is not None else None
    tenant = scenario.spec.tenant if scenario is not None else None
    if site and registry is not None and tenant is not None:
        found = registry.sites.get((tenant, site))
        if found is not None and found.name != site:
            return f"{found.name} ({site})"
    return site or ""


def sensor_name(device: str, scenario: Scenario | None) -> str:
    if scenario is None or scenario.registry is None or scenario.spec.tenant is None:
        return ""
    sensor = scenario.registry.sensors.get((scenario.spec.tenant, device))
    return sensor.name if sensor is not None else ""


def faults_for(truth: Truth, keys: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """A device's faults (a value fault only in the panel of its kind), and every link loss."""
    return [
        f
        for f in truth.faults
        if f["fault"] == "link_loss"
        or f.get("device") is None
        or any(f["device"] == d and f.get("kind") in (None, k) for d, k in keys)
    ]
