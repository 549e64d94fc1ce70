"""Streaming threshold detection with hysteresis, per (tenant, sensor, kind), in memory.

Levels come from the registry channel's thresholds.  For a value v and a threshold T:
- "reached":  rising v >= T,  falling v <= T,  absolute |v| >= T
- "held":     the same against T - clear_margin (falling: T + clear_margin)
The level rises as soon as a higher threshold is reached and falls only when the value is back
past the current level's threshold by more than the margin, to the highest level still held.  A
value hovering at a threshold therefore does not flap.

Each change of level is an alert state change: 0->n raised, n->m>n escalated, m->k (0<k<m)
deescalated, ->0 resolved; one episode id from raise to resolve.

Only `ok` readings are evaluated.  Readings of a series may arrive out of order (an outbox
replaying after an outage while fresh readings flow); a reading not newer than the last one
evaluated for its series is ignored, so late data never moves the current state backwards in
time.  (Issue 5 refines this: rates of change, forecasts, late data re-evaluation.)

State is lost on restart; the retained alert topics hold the last published state per series.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from cloud.registry import Channel, Sensor, Site, Threshold
from wire.alerts import Alert, AlertState
from wire.telemetry import Quality, Reading


@dataclass
class SeriesState:
    level: int = 0
    episode: str = ""
    raised_at: datetime | None = None
    last_ts: datetime | None = None


def reached_level(channel: Channel, value: float, margin: float = 0.0) -> int:
    """Highest level whose threshold `value` reaches (with `margin` in the safe direction)."""
    level = 0
    for t in channel.thresholds:
        if channel.direction == "rising":
            hit = value >= t.value - margin
        elif channel.direction == "falling":
            hit = value <= t.value + margin
        else:
            hit = abs(value) >= t.value - margin
        if hit:
            level = max(level, t.level)
    return level


def next_level(channel: Channel, current: int, value: float) -> int:
    reached = reached_level(channel, value)
    if reached > current:
        return reached
    return min(current, reached_level(channel, value, channel.clear_margin))


class Detector:
    def __init__(self) -> None:
        self.series: dict[tuple[str, str, str], SeriesState] = {}
        self.evaluated = 0
        self.skipped_old = 0

    def evaluate(self, reading: Reading, sensor: Sensor, site: Site, channel: Channel) -> Alert | None:
        """The alert state change this reading causes, if any."""
        if reading.q is not Quality.OK or reading.value is None or not channel.thresholds:
            return None
        key = (sensor.tenant, sensor.id, reading.kind)
        st = self.series.get(key)
        if st is None:
            st = self.series[key] = SeriesState()
        if st.last_ts is not None and reading.ts <= st.last_ts:
            self.skipped_old += 1
            return None
        st.last_ts = reading.ts
        self.evaluated += 1
        value = reading.value
        new = next_level(channel, st.level, value)
        if new == st.level:
            return None
        previous = st.level
        state: AlertState
        if previous == 0:
            state = "raised"
            st.episode = str(uuid.uuid4())
            st.raised_at = reading.ts
        elif new > previous:
            state = "escalated"
        elif new > 0:
            state = "deescalated"
        else:
            state = "resolved"
        st.level = new
        assert st.raised_at is not None
        alert = Alert(
            v=1,
            id=st.episode,
            tenant=sensor.tenant,
            site=site.id,
            site_name=site.name,
            sensor=sensor.id,
            kind=reading.kind,
            state=state,
            level=new,
            level_name=_threshold(channel, new).name if new else "",
            level_name_ja=_threshold(channel, new).name_ja if new else "",
            threshold=_threshold(channel, new).value if new else None,
            value=value,
            unit=reading.unit,
            ts=reading.ts,
            raised_at=st.raised_at,
            reason=_reason(site, reading.kind, value, reading.unit, channel, state, new, previous),
            previous_level=previous,
        )
        if new == 0:
            st.episode, st.raised_at = "", None
        return alert


def _threshold(channel: Channel, level: int) -> Threshold:
    return next(t for t in channel.thresholds if t.level == level)


def _label(t: Threshold) -> str:
    return f"{t.name_ja} / {t.name}" if t.name_ja else t.name


def _fmt(x: float) -> str:
    s = f"{x:.2f}"
    return s if float(s) == x else f"{x:.4f}".rstrip("0")


def _reason(
    site: Site,
    kind: str,
    value: float,
    unit: str,
    channel: Channel,
    state: AlertState,
    new: int,
    previous: int,
) -> str:
    """Plain words for the duty officer, e.g.
    石狩川 旭橋: river_level 3.24 m reached 避難判断水位 / evacuation judgement (3.20 m), level 3
    """
    shown = f"|{_fmt(value)}|" if channel.direction == "absolute" else _fmt(value)
    head = f"{site.name}: {kind} {shown} {unit}"
    if new > previous:
        t = _threshold(channel, new)
        return f"{head} reached {_label(t)} ({_fmt(t.value)} {unit}), level {new}"
    left = _threshold(channel, previous)
    back = "above" if channel.direction == "falling" else "below"
    margin = f" - {_fmt(channel.clear_margin)}" if channel.clear_margin else ""
    if channel.direction == "falling" and channel.clear_margin:
        margin = f" + {_fmt(channel.clear_margin)}"
    cleared = f"back {back} {_label(left)} ({_fmt(left.value)}{margin} {unit})"
    if new == 0:
        return f"{head} {cleared}, resolved"
    return f"{head} {cleared}, now level {new} {_label(_threshold(channel, new))}"
