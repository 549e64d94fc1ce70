"""Readings and alerts as InfluxDB line protocol (the schema dashboards query).

Measurement `readings`, one point per reading:
    tags   tenant, site, site_name, gateway, sensor, sensor_name, kind, unit
           (site_name and sensor_name are the registry's human names, for legends; left out when empty)
    fields value (float; only when q is ok), q (int quality code, below)
    time   the sample time at the edge, in milliseconds

Measurement `alerts`, one point per alert state change:
    tags   tenant, site, site_name, sensor, kind, state (raised|escalated|deescalated|resolved)
    fields level (int), value (float), threshold (float; absent when resolved), reason, id (strings)
    time   the sample time of the reading that changed the state, in milliseconds

Quality codes (`q` field), fixed forever because stored data and dashboards depend on them:
    0 ok, 1 timeout, 2 crc, 3 exception, 4 invalid, 5 out_of_range, 6 error

Because the timestamp is the sample time, a replayed or duplicated message rewrites the same
point (same measurement, tags and time) instead of adding one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloud import lineproto
from cloud.registry import Sensor, Site
from wire.alerts import Alert
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

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def ts_ms(t: datetime) -> int:
    """Milliseconds since the epoch, exactly (no float rounding)."""
    return (t - _EPOCH) // _MS


def reading_line(reading: Reading, sensor: Sensor, site: Site) -> str:
    tags = {
        "tenant": sensor.tenant,
        "site": site.id,
        "site_name": site.name,
        "gateway": sensor.gateway,
        "sensor": sensor.id,
        "sensor_name": sensor.name,
        "kind": reading.kind,
        "unit": reading.unit,
    }
    fields = {"q": lineproto.int_field(QUALITY_CODES[reading.q])}
    if reading.q is Quality.OK and reading.value is not None:
        fields["value"] = lineproto.float_field(reading.value)
    return lineproto.line(READINGS, tags, fields, ts_ms(reading.ts))


def alert_line(alert: Alert) -> str:
    tags = {
        "tenant": alert.tenant,
        "site": alert.site,
        "site_name": alert.site_name,
        "sensor": alert.sensor,
        "kind": alert.kind,
        "state": alert.state,
    }
    fields = {"level": lineproto.int_field(alert.level), "value": lineproto.float_field(alert.value)}
    if alert.threshold is not None:
        fields["threshold"] = lineproto.float_field(alert.threshold)
    fields["reason"] = lineproto.string_field(alert.reason)
    fields["id"] = lineproto.string_field(alert.id)
    return lineproto.line(ALERTS, tags, fields, ts_ms(alert.ts))
