"""Readings and alerts as InfluxDB line protocol (the schema dashboards query).

Measurement `readings`, one point per reading:
    tags   tenant, site, site_name, gateway, sensor, sensor_name, kind, unit
           (site_name and sensor_name are the registry's human names, for legends; left out when empty)
    fields value (float; only when q is ok), q (int quality code, below)
    time   the sample time at the edge, in milliseconds

Measurement `alerts`, one point per alert event (wire.alerts), for dashboard annotations:
    tags   tenant, site, site_name, sensor, kind, gateway (each left out when empty), condition,
           category (disaster|maintenance), event (raised|escalated|deescalated|acknowledged|
           reminder|handover|resolved)
    fields level (int), peak_level (int), value, threshold, rate (floats; each absent when unknown),
           forecast_eta (ms since the epoch; absent without a forecast), reason, id, status (strings)
    time   the time of the event (the sample time of the reading behind it), in milliseconds

Measurement `detections`, derived values of a series, at most one point per `detections_every_s`
(consumer config, default 300 s) of sample time:
    tags   tenant, site, site_name, sensor, kind
    fields rate (float, in rate_unit), rate_unit (string), next_level (int), next_level_eta,
           next_level_earliest, next_level_latest (ms since the epoch), new_snow_1h ... new_snow_24h
           (cm), failure_time, failure_earliest, failure_latest (ms), velocity_per_day (float) and
           inverse_velocity (days per unit, 1/velocity_per_day); each only when known

Measurement `gateway_health`, one point per accepted health message (wire.status.Health):
    tags   tenant, gateway
    fields uptime_s, outbox_oldest_age_s (floats), outbox_depth, outbox_bytes, outbox_dropped,
           outbox_dropped_readings, messages_acked, reconnects, unrouted (ints), clock_synced (int 1/0;
           absent when unknown), config_hash, agent_version (strings)
    time   the health message's ts, capped at its arrival time (as liveness is), in milliseconds

Measurement `gateway_sensor_health`, one point per sensor of an accepted health message:
    tags   tenant, gateway, sensor, site, site_name (site and site_name only when the sensor is
           registered to that gateway)
    fields polls, errors, reported, suppressed (ints), failing, fast (int 1/0), quality (int quality
           code; absent when unknown), last_ok (ms since the epoch; absent when never ok)
    time   that of its `gateway_health` point

Snapshot measurements (`thresholds`, `site_status`, `gateway_status`, `tenant_status`): see
cloud/dashdata.py.

Quality codes (`q` field), fixed forever because stored data and dashboards depend on them:
    0 ok, 1 timeout, 2 crc, 3 exception, 4 invalid, 5 out_of_range, 6 error

Because the timestamp is the sample time, a replayed or duplicated message rewrites the same
point (same measurement, tags and time) instead of adding one.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

from cloud import lineproto
from cloud.detect.series import Snapshot
from cloud.registry import Registry, Sensor, Site
from wire.alerts import Alert
from wire.status import Health
from wire.telemetry import Quality, Reading

QUALITY_CODES: dict[Quality, int] = {
    Quality.OK: 0,
    Quality.TIMEOUT: 1,
    Quality.CRC: 2,
    Quality.EXCEPTION: 3,
    Quality.INVALID: 4,
    Quality.OUT_OF_RANGE: 5,
    Quality.ERROR: 6,
}

READINGS = "readings"
ALERTS = "alerts"
DETECTIONS = "detections"
GATEWAY_HEALTH = "gateway_health"
GATEWAY_SENSOR_HEALTH = "gateway_sensor_health"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def ts_ms(t: datetime) -> int:
    """Milliseconds since the epoch, exactly (no float rounding)."""
    return (t - _EPOCH) // _MS


# Series keys are cached: escaping eight tags took as long as the rest of a reading's ingest.
# Keyed by the tag values (bounded by the registry: unknown sensors and units are rejected).
SERIES_CACHE = 1 << 16


@functools.lru_cache(maxsize=SERIES_CACHE)
def _reading_series(
    tenant: str, site: str, site_name: str, gateway: str, sensor: str, sensor_name: str, kind: str, unit: str
) -> str:
    tags = {
        "tenant": tenant,
        "site": site,
        "site_name": site_name,
        "gateway": gateway,
        "sensor": sensor,
        "sensor_name": sensor_name,
        "kind": kind,
        "unit": unit,
    }
    return lineproto.series(READINGS, tags)


# The q field of an OK reading, formatted once (the hot path writes the line without a dict).
_OK_FIELD = f"q={lineproto.int_field(QUALITY_CODES[Quality.OK])}"


def reading_line(reading: Reading, sensor: Sensor, site: Site) -> str:
    key = _reading_series(
        sensor.tenant, site.id, site.name, sensor.gateway, sensor.id, sensor.name, reading.kind, reading.unit
    )
    ts = ts_ms(reading.ts)
    if reading.q is Quality.OK and reading.value is not None:
        return f"{key} {_OK_FIELD},value={lineproto.float_field(reading.value)} {ts}"
    return f"{key} q={lineproto.int_field(QUALITY_CODES[reading.q])} {ts}"


def alert_line(alert: Alert) -> str:
    tags = {
        "tenant": alert.tenant,
        "site": alert.site,
        "site_name": alert.site_name,
        "sensor": alert.sensor,
        "kind": alert.kind,
        "gateway": alert.gateway,
        "condition": alert.condition,
        "category": alert.category,
        "event": alert.event,
    }
    fields = {"level": lineproto.int_field(alert.level), "peak_level": lineproto.int_field(alert.peak_level)}
    for name, x in (("value", alert.value), ("threshold", alert.threshold), ("rate", alert.rate)):
        if x is not None:
            fields[name] = lineproto.float_field(x)
    if alert.forecast is not None:
        fields["forecast_eta"] = lineproto.int_field(ts_ms(alert.forecast.eta))
    fields["reason"] = lineproto.string_field(alert.reason)
    fields["id"] = lineproto.string_field(alert.id)
    fields["status"] = lineproto.string_field(alert.status)
    return lineproto.line(ALERTS, tags, fields, ts_ms(alert.ts))


def detection_line(snap: Snapshot, sensor: Sensor, site: Site, kind: str) -> str | None:
    """The `detections` point of a series snapshot; None when nothing is known yet."""
    fields: dict[str, str] = {}
    if snap.rate is not None:
        fields["rate"] = lineproto.float_field(snap.rate)
        fields["rate_unit"] = lineproto.string_field(snap.rate_unit)
    if snap.next_level is not None:
        fields["next_level"] = lineproto.int_field(snap.next_level)
    for name, t in (
        ("next_level_eta", snap.next_level_eta),
        ("next_level_earliest", snap.next_level_earliest),
        ("next_level_latest", snap.next_level_latest),
        ("failure_time", snap.failure_time),
        ("failure_earliest", snap.failure_earliest),
        ("failure_latest", snap.failure_latest),
    ):
        if t is not None:
            fields[name] = lineproto.int_field(round(t * 1000))
    if snap.velocity_per_day is not None:
        fields["velocity_per_day"] = lineproto.float_field(snap.velocity_per_day)
        # Stored as well because it is what the Fukuzono plot shows (a line falling to zero at
        # failure) and portable InfluxQL cannot divide a field.
        if snap.velocity_per_day > 0:
            fields["inverse_velocity"] = lineproto.float_field(1.0 / snap.velocity_per_day)
    for hours, cm in (snap.new_snow or {}).items():
        fields[f"new_snow_{hours}h"] = lineproto.float_field(cm)
    if not fields:
        return None
    key = _detection_series(sensor.tenant, site.id, site.name, sensor.id, kind)
    return lineproto.series_line(key, fields, round(snap.t * 1000))


@functools.lru_cache(maxsize=SERIES_CACHE)
def _detection_series(tenant: str, site: str, site_name: str, sensor: str, kind: str) -> str:
    tags = {"tenant": tenant, "site": site, "site_name": site_name, "sensor": sensor, "kind": kind}
    return lineproto.series(DETECTIONS, tags)


def gateway_health_lines(health: Health, registry: Registry, received: float) -> list[str]:
    """The `gateway_health` point of an accepted health message and one `gateway_sensor_health`
    point per sensor in it.  `received` is the arrival time (epoch seconds, the consumer's clock):
    a gateway clock running ahead must not place its health in the future."""
    t = ts_ms(min(health.ts, datetime.fromtimestamp(received, UTC)))
    gw_tags = {"tenant": health.tenant, "gateway": health.gateway}
    fields = {
        "uptime_s": lineproto.float_field(health.uptime_s),
        "outbox_depth": lineproto.int_field(health.outbox_depth),
        "outbox_bytes": lineproto.int_field(health.outbox_bytes),
        "outbox_oldest_age_s": lineproto.float_field(health.outbox_oldest_age_s),
        "outbox_dropped": lineproto.int_field(health.outbox_dropped),
        "outbox_dropped_readings": lineproto.int_field(health.outbox_dropped_readings),
        "messages_acked": lineproto.int_field(health.messages_acked),
        "reconnects": lineproto.int_field(health.reconnects),
        "unrouted": lineproto.int_field(health.unrouted),
    }
    if health.clock_synced is not None:
        fields["clock_synced"] = lineproto.int_field(health.clock_synced)
    fields["config_hash"] = lineproto.string_field(health.config_hash)
    fields["agent_version"] = lineproto.string_field(health.agent_version)
    lines = [lineproto.line(GATEWAY_HEALTH, gw_tags, fields, t)]
    for sensor_id, sh in health.sensors.items():
        if not sensor_id:
            continue  # an empty tag value cannot be written; no registered sensor has that id
        tags = {**gw_tags, "sensor": sensor_id}
        sensor = registry.sensor_for(health.tenant, health.gateway, sensor_id)
        if sensor is not None:
            site = registry.site_of(sensor)
            tags["site"], tags["site_name"] = site.id, site.name
        sf = {
            "polls": lineproto.int_field(sh.polls),
            "errors": lineproto.int_field(sh.errors),
            "failing": lineproto.int_field(sh.failing),
            "fast": lineproto.int_field(sh.fast),
            "reported": lineproto.int_field(sh.reported),
            "suppressed": lineproto.int_field(sh.suppressed),
        }
        if sh.quality is not None:
            sf["quality"] = lineproto.int_field(QUALITY_CODES[sh.quality])
        if sh.last_ok is not None:
            sf["last_ok"] = lineproto.int_field(ts_ms(sh.last_ok))
        lines.append(lineproto.line(GATEWAY_SENSOR_HEALTH, tags, sf, t))
    return lines
