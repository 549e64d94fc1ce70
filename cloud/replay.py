"""Run the live detection engine and alert lifecycle over history: `bosai replay`, evaluation
and tests all go through `Replayer`, so what staff tune on past events is what runs live.

Readings file (CSV, UTF-8, header row; see docs/detection.md):

    time,sensor,value[,kind][,tenant][,q]
    2026-07-03T14:00:00+09:00,river-radar-01,2.31

- `time`: ISO 8601 with a UTC offset (naive times are refused: a reading's instant must be known);
- `sensor`: the registry's sensor id; `kind` is needed only when the sensor has several channels,
  `tenant` only when the id exists in several tenants;
- `value`: a number, or empty for a reading the sensor did not deliver (then `q` says why:
  timeout, crc, exception, invalid, error; default timeout);
- rows may come in any order; they are replayed in time order.

Output: every alert event as one JSON line (wire.alerts.Alert), in order.  Time advances with the
data: silence checks run every minute of data time, reminders and handovers are not replayed.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cloud.alerts.manager import AlertManager
from cloud.alerts.store import AlertStore
from cloud.detect.engine import Engine
from cloud.registry import Registry, Sensor
from wire.alerts import Alert
from wire.telemetry import Quality, Reading

TICK_S = 60.0


class ReadingsFileError(Exception):
    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")


@dataclass(frozen=True, slots=True)
class Row:
    sensor: Sensor
    reading: Reading


class Replayer:
    """Engine + alert manager on an in-memory store; collects the alert events it emits."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.engine = Engine(registry)
        self.alerts: list[Alert] = []
        self.manager = AlertManager(AlertStore(":memory:"), self._emit)
        self._next_tick: float | None = None

    def _emit(self, alert: Alert, notify: bool) -> None:
        self.alerts.append(alert)

    def feed(self, sensor: Sensor, reading: Reading) -> list[Alert]:
        """One reading (in time order); returns the alert events it caused."""
        start = len(self.alerts)
        t = reading.ts.timestamp()
        self.advance(t)
        channel = sensor.channels[reading.kind]
        site = self.registry.site_of(sensor)
        if channel.out_of_range(reading):  # what ingest rejects; detection hears of it
            observations = self.engine.out_of_range(reading, sensor, site, channel)
        else:
            observations = self.engine.reading(reading, sensor, site, channel)
        for obs in observations:
            self.manager.observe(obs, t)
        return self.alerts[start:]

    def advance(self, t: float) -> None:
        """Let data time pass to t: run the silence checks due on the way."""
        if self._next_tick is None:
            self._next_tick = math.floor(t / TICK_S) * TICK_S + TICK_S
        while self._next_tick <= t:
            for obs in self.engine.tick(self._next_tick):
                self.manager.observe(obs, self._next_tick)
            self.manager.tick(self._next_tick)
            self._next_tick += TICK_S


_FLAGS = {q.value: q for q in Quality if q is not Quality.OK}


def read_readings(path: Path, registry: Registry) -> list[Row]:
    """Parse and check the whole file, sorted by time; ReadingsFileError names the line."""
    rows: list[Row] = []
    by_id: dict[str, list[Sensor]] = {}
    for s in registry.data.sensors:
        by_id.setdefault(s.id, []).append(s)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = {"time", "sensor", "value"} - set(reader.fieldnames or [])
            if missing:
                raise ReadingsFileError(path, 1, f"missing column(s) {', '.join(sorted(missing))}")
            for line, rec in enumerate(reader, start=2):
                rows.append(_row(path, line, rec, by_id))
    except (OSError, UnicodeDecodeError) as exc:
        raise ReadingsFileError(path, 0, str(exc)) from exc
    rows.sort(key=lambda r: r.reading.ts)
    return rows


def _row(path: Path, line: int, rec: dict[str, str], by_id: dict[str, list[Sensor]]) -> Row:
    def fail(msg: str) -> ReadingsFileError:
        return ReadingsFileError(path, line, msg)

    try:
        ts = datetime.fromisoformat((rec.get("time") or "").strip())
    except ValueError:
        raise fail(f"time {rec.get('time')!r} is not ISO 8601") from None
    if ts.tzinfo is None:
        raise fail(f"time {rec['time']!r} has no UTC offset (write e.g. +09:00)")
    sensor_id = (rec.get("sensor") or "").strip()
    candidates = by_id.get(sensor_id, [])
    tenant = (rec.get("tenant") or "").strip()
    if tenant:
        candidates = [s for s in candidates if s.tenant == tenant]
    if not candidates:
        raise fail(f"sensor {sensor_id!r} is not in the sites file")
    if len(candidates) > 1:
        raise fail(f"sensor {sensor_id!r} exists in several tenants: add a tenant column")
    sensor = candidates[0]
    kind = (rec.get("kind") or "").strip()
    if not kind:
        if len(sensor.channels) != 1:
            raise fail(f"sensor {sensor_id!r} has channels {', '.join(sensor.channels)}: add a kind column")
        kind = next(iter(sensor.channels))
    channel = sensor.channels.get(kind)
    if channel is None:
        raise fail(f"sensor {sensor_id!r} has no channel {kind!r}")
    text = (rec.get("value") or "").strip()
    flag = (rec.get("q") or "").strip()
    if text:
        try:
            value: float | None = float(text)
        except ValueError:
            raise fail(f"value {text!r} is not a number") from None
        assert value is not None
        if not math.isfinite(value):
            raise fail(f"value {text!r} is not finite")
        q = Quality.OK
        if flag and flag != "ok":
            raise fail(f"q {flag!r} with a value: only ok readings carry one")
    else:
        value = None
        q = _FLAGS.get(flag or "timeout", Quality.ERROR)
        if flag and flag not in _FLAGS:
            raise fail(f"q {flag!r} is not one of {', '.join(_FLAGS)}")
    return Row(sensor, Reading(sensor.id, kind, ts, value, channel.unit, q))


def replay(registry: Registry, rows: Iterable[Row]) -> Iterator[Alert]:
    """Every alert event the rows cause, in order."""
    rp = Replayer(registry)
    for row in rows:
        yield from rp.feed(row.sensor, row.reading)
