"""Ground truth of a scenario: what happened in the world, for tests and detection scoring.

The truth is computed from the scenario alone (signals, devices, faults and the registry's
thresholds), never from what was served, so it is the same whether the devices ran at 1x or
1000x, and `bosai sim plot` can draw it without serving anything.  Records (JSON lines, times
in epoch seconds of the run, i.e. `origin` + scenario time):

    scenario  name, description, start, duration, seed, step
    value     device, kind, site, t, value, unit          noise-free, every `step` seconds
    forcing   signal, name (rain | snowfall), t, value, unit      what drives a signal
    crossing  device, kind, site, level, name, name_ja, threshold, direction (up | down), t
              "up" enters the level (more dangerous); exact to 0.01 s of scenario time
    snowfall  device, kind, site, t (end of each hour), fallen_1h (fresh snow that fell, cm),
              new_1h (JMA: depth increase over the hour if positive), new_3h ... new_24h
              (sums of new_1h over the window, the JMA 降雪量 definition)
    failure   device, kind, site, t                       slope failure time (Fukuzono/Voight),
              when it falls before the scenario end + FAILURE_HORIZON_S
    fault     fault, device, kind, start, end, and the fault's parameters

Crossings are of the threshold itself (the true value reaching it), not of the detector's
clearing margin: that hysteresis is the detector's business, and scoring allows for it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from simulators.devices import VirtualDevice
from simulators.physics import SlopeCreep
from simulators.scenario import Scenario

TRUTH_STEP_S = 60.0
CROSSING_SCAN_S = 10.0  # crossings are bracketed at this step, then bisected
SNOW_WINDOWS_H = (1, 3, 6, 12, 24)
# A slope whose creep law puts failure farther than this past the scenario end is background
# creep, not an event: no failure record (a forecaster should decline to forecast there).
FAILURE_HORIZON_S = 86400.0
HOUR = 3600.0


def scenario_truth(
    scenario: Scenario,
    devices: dict[str, VirtualDevice],
    origin: float = 0.0,
    step: float = TRUTH_STEP_S,
) -> Iterator[dict[str, Any]]:
    """Every truth record of the scenario, in the order described above."""
    yield {
        "type": "scenario",
        "name": scenario.name,
        "description": scenario.description,
        "start": origin,
        "duration": scenario.duration,
        "seed": scenario.seed,
        "step": step,
    }
    steps = math.floor(scenario.duration / step + 1e-9)
    times = [k * step for k in range(steps + 1)]
    for dev in devices.values():
        for feed in dev.spec.points:
            unit = dev.point(feed.kind).unit
            site = scenario.site_of(dev.id)
            for s in times:
                yield {
                    "type": "value",
                    "device": dev.id,
                    "kind": feed.kind,
                    "site": site,
                    "t": origin + s,
                    "value": dev.truth(feed.kind, s),
                    "unit": unit,
                }
    for sig in scenario.spec.signals:
        for name, unit in sig.forcings().items():
            for s in times:
                yield {
                    "type": "forcing",
                    "signal": sig.id,
                    "name": name,
                    "t": origin + s,
                    "value": sig.forcing_at(name, s),
                    "unit": unit,
                }
    for dev in devices.values():
        yield from sorted(_crossings(scenario, dev, origin), key=lambda r: (r["kind"], r["t"]))
        yield from _snowfall(scenario, dev, origin)
        for feed in dev.spec.points:
            signal = scenario.signal(feed.signal)
            if (
                isinstance(signal, SlopeCreep)
                and signal.failure_time <= scenario.duration + FAILURE_HORIZON_S
            ):
                yield {
                    "type": "failure",
                    "device": dev.id,
                    "kind": feed.kind,
                    "site": scenario.site_of(dev.id),
                    "t": origin + signal.failure_time,
                }
    for fault in scenario.faults:
        params: dict[str, Any] = msgspec.to_builtins(fault)
        del params["type"]  # the fault's tag; the record's type is "fault"
        row: dict[str, Any] = {"type": "fault", "fault": fault.type_name, "device": None, "kind": None}
        row.update(params)
        row["start"] = origin + fault.start
        row["end"] = origin + fault.end
        yield row


def write_truth(records: Iterator[dict[str, Any]], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in records:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def read_truth(path: Path) -> list[dict[str, Any]]:
    """The records of a truth file; ValueError naming the file and line for anything that is
    not a truth record (OSError if it cannot be read)."""
    records: list[dict[str, Any]] = []
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {n}: not a JSON object ({exc.msg})") from None
            if not isinstance(row, dict) or "type" not in row:
                raise ValueError(f"{path}: line {n}: not a truth record (no 'type')")
            records.append(row)
    if not records:
        raise ValueError(f"{path}: no truth records")
    return records


def _crossings(scenario: Scenario, dev: VirtualDevice, origin: float) -> Iterator[dict[str, Any]]:
    n = max(1, math.ceil(scenario.duration / CROSSING_SCAN_S))
    grid = [min(scenario.duration, k * CROSSING_SCAN_S) for k in range(n + 1)]
    for feed in dev.spec.points:
        channel = scenario.channel(dev.id, feed.kind)
        if channel is None or not channel.thresholds:
            continue
        direction = channel.direction

        def danger(s: float, kind: str = feed.kind, direction: str = direction) -> float:
            return _towards_danger(direction, dev.truth(kind, s))

        values = [danger(t) for t in grid]  # once per point, shared by its thresholds
        for th in channel.thresholds:
            level = _towards_danger(direction, th.value)
            for s, up in _level_crossings(danger, grid, values, level):
                yield {
                    "type": "crossing",
                    "device": dev.id,
                    "kind": feed.kind,
                    "site": scenario.site_of(dev.id),
                    "level": th.level,
                    "name": th.name,
                    "name_ja": th.name_ja,
                    "threshold": th.value,
                    "direction": "up" if up else "down",
                    "t": origin + s,
                }


def _towards_danger(direction: str, v: float) -> float:
    """How far towards danger a value is, so that larger is worse whatever the channel's
    direction: -v for falling, |v| for absolute."""
    if direction == "absolute":
        return abs(v)
    return -v if direction == "falling" else v


def _level_crossings(
    f: Callable[[float], float], grid: list[float], values: list[float], level: float
) -> Iterator[tuple[float, bool]]:
    """(time, upward) where f crosses `level`: bracketed by its `values` on the `grid`, then
    bisected to 0.01 s.  Reaching the level counts as crossing it (f >= level is "in")."""
    for k in range(1, len(grid)):
        was_in, now_in = values[k - 1] >= level, values[k] >= level
        if now_in == was_in:
            continue
        lo, hi = grid[k - 1], grid[k]
        while hi - lo > 0.01:
            mid = (lo + hi) / 2
            if (f(mid) >= level) == was_in:
                lo = mid
            else:
                hi = mid
        yield hi, now_in


def _snowfall(scenario: Scenario, dev: VirtualDevice, origin: float) -> Iterator[dict[str, Any]]:
    feed = next((f for f in dev.spec.points if f.kind == "snow_depth"), None)
    if feed is None:
        return
    signal = scenario.signal(feed.signal)
    to_point = dev.unit_factor(feed.kind)
    hours = math.floor(scenario.duration / HOUR + 1e-9)
    new_1h: list[float] = []
    for h in range(1, hours + 1):
        t0, t1 = (h - 1) * HOUR, h * HOUR
        new_1h.append(max(0.0, dev.truth(feed.kind, t1) - dev.truth(feed.kind, t0)))
        fallen = 0.0
        if "snowfall" in signal.forcings():
            fallen = _integrate(lambda s: signal.forcing_at("snowfall", s) / HOUR, t0, t1) * to_point
        row: dict[str, Any] = {
            "type": "snowfall",
            "device": dev.id,
            "kind": feed.kind,
            "site": scenario.site_of(dev.id),
            "t": origin + t1,
            "fallen_1h": fallen,
        }
        for w in SNOW_WINDOWS_H:
            row[f"new_{w}h"] = sum(new_1h[-w:])
        yield row


def _integrate(f: Callable[[float], float], a: float, b: float, n: int = 60) -> float:
    """Simpson's rule; the snowfall intensity is piecewise linear, so this is exact enough."""
    h = (b - a) / n
    total = f(a) + f(b)
    for k in range(1, n):
        total += f(a + k * h) * (4 if k % 2 else 2)
    return total * h / 3
