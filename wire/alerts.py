"""Alert messages: one per event of an alert episode.

An episode is one (sensor, kind, condition) - or (gateway, condition) - from the moment it is
raised until it is resolved, with one stable `id`.  Every event of the episode is one message:

    raised        the condition began (level >= 1)
    escalated     the level went up (clears an acknowledgement: there is news to look at)
    deescalated   the level went down but not to zero
    acknowledged  a duty officer took it (`bosai alerts ack ID`)
    reminder      still active and not acknowledged after `renotify_after`: sent again
    handover      still not acknowledged after `escalate_after`: sent to the next recipients
    resolved      the condition cleared (or a duty officer resolved it by hand)

The latest message is published retained on the episode's topic (wire.topics.alert_topic), so a
client connecting late sees the current state of everything; a resolved episode's retained
message stays until the next episode of the same condition replaces it.

`category` separates disaster alerts (river stage, snow dispatch, slope movement: they wake duty
officers) from maintenance alerts (sensor faults, stale data, gateway offline: they go to the
technicians).  A sensor under a maintenance alert does not raise disaster alerts from the data
that caused it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from wire.telemetry import AwareDatetime

AlertEvent = Literal["raised", "escalated", "deescalated", "acknowledged", "reminder", "handover", "resolved"]
AlertStatus = Literal["active", "acknowledged", "resolved"]
Category = Literal["disaster", "maintenance"]

# Conditions (the `condition` field).  Disaster: the data say the world is dangerous.
LEVEL = "level"  # value past a configured threshold (river stage, snow depth, tilt)
RATE = "rate"  # rate of change past a configured threshold (mm/day, m/h)
SNOW_DISPATCH = "snow_dispatch"  # new snowfall reached the road class's plowing level
FAILURE_FORECAST = "failure_forecast"  # inverse-velocity forecast of slope failure
DISASTER_CONDITIONS = frozenset({LEVEL, RATE, SNOW_DISPATCH, FAILURE_FORECAST})
# Maintenance: the data (or their source) cannot be trusted.
SUSPECT_DATA = "suspect_data"  # spikes or impossible jumps held back from detection
FLATLINE = "flatline"  # the same value for too long: a stuck sensor
OUT_OF_RANGE = "out_of_range"  # values outside the sensor's physical range
SENSOR_FAILING = "sensor_failing"  # only quality-flagged readings (timeout, CRC, ...) for a while
STALE = "stale"  # no reading at all for a while
GATEWAY_OFFLINE = "gateway_offline"  # Last Will, or silence past the expected health interval
MAINTENANCE_CONDITIONS = frozenset(
    {SUSPECT_DATA, FLATLINE, OUT_OF_RANGE, SENSOR_FAILING, STALE, GATEWAY_OFFLINE}
)


class Forecast(msgspec.Struct, frozen=True, omit_defaults=True):
    """When the series will reach `target` (next level) or the slope will fail, with a band.

    `earliest`..`latest` is the band from the confidence interval of the fitted trend (95 %)."""

    kind: Literal["next_level", "failure"]
    eta: AwareDatetime
    earliest: AwareDatetime
    latest: AwareDatetime
    target_level: int | None = None  # next_level: the level the series is heading for
    target_value: float | None = None  # next_level: that level's threshold


class Alert(msgspec.Struct, frozen=True, omit_defaults=True):
    v: Literal[1]
    id: str  # stable for the whole episode
    tenant: str
    condition: str  # one of the constants above
    category: Category
    event: AlertEvent  # what this message reports
    status: AlertStatus  # the episode after this event
    level: int  # current level, 0 when resolved
    ts: AwareDatetime  # sample time of the reading behind the event (or the time of the event)
    raised_at: AwareDatetime  # when the episode began
    reason: str  # plain words for the duty officer
    site: str = ""  # "" for gateway alerts
    site_name: str = ""
    sensor: str = ""  # "" for gateway alerts
    kind: str = ""  # measured kind (river_level, ...), "" for gateway alerts
    gateway: str = ""
    level_name: str = ""  # English name of the level ("" when resolved)
    level_name_ja: str = ""  # Japanese name of the level, e.g. 避難判断水位
    threshold: float | None = None
    value: float | None = None
    unit: str = ""
    rate: float | None = None  # rate of change, in `rate_unit`
    rate_unit: str = ""  # e.g. m/h, mm/day, arcsec/day
    forecast: Forecast | None = None
    previous_level: int = 0
    peak_level: int = 0  # highest level of the episode so far
    acked_by: str = ""
    acked_at: datetime | None = None
    resolved_by: str = ""  # "" when the data resolved it
    silenced: bool = False  # inside a maintenance window: recorded, not notified
    notify_tier: int = 0  # recipients tier the notification went to (0 = first)
    links: list[str] = []  # dashboards to open


alert_decoder = msgspec.json.Decoder(Alert)
