"""What the dashboards need besides readings: registry thresholds and current state, as periodic
snapshot points (the consumer writes them every `dashboards_every_s` and once at start).

Grafana can only draw what it can query, so the thresholds of each sensor (drawn as lines and
bands, labelled in Japanese and English) and the state that lives in the consumer's memory and
alert store (gateway liveness, open alerts per site and tenant) are written to the store.  All
points of one snapshot share one timestamp, in milliseconds.

Measurement `thresholds`, one point per threshold of every channel of every registered sensor:
    tags   tenant, site, site_name, sensor, sensor_name, kind, unit, level ("1".."5"), level_name
           ("3 避難判断水位 evacuation judgement"), what, mirror ("0" or "1")
           what "level": Channel.thresholds, in the channel's unit;
           what "rate": Channel.rate.thresholds, unit = the rate unit (e.g. "mm/day");
           what "snow_dispatch": the site's road-class plow dispatch rule on a snowfall channel,
           kind "new_snow_{window_h}h", unit "cm", level "dispatch", level_name "除雪出動 (幹線道路)
           plow dispatch (arterial)".
    fields value (float).  A channel of direction "absolute" gets a second point per threshold with
           mirror "1" and the negated value, so both bands can be drawn.

Measurement `site_status`, one point per registered site:
    tags   tenant, site, site_name, type
    fields lat, lon (floats; absent when unknown), alert_level (highest level of the open disaster
           episodes at the site, 0 if none), active_alerts (open disaster episodes at the site),
           maintenance_alerts (open maintenance episodes at the site)

Measurement `gateway_status`, one point per registered (non-revoked) gateway:
    tags   tenant, gateway, gateway_name
    fields online (int 1/0; a gateway not heard from since the consumer started is 0),
           last_seen_age_s (float; absent when never seen)

Measurement `tenant_status`, one point per tenant:
    tags   tenant, tenant_name
    fields gateways, gateways_offline, sites, active_alerts, maintenance_alerts (open episodes of the
           tenant, gateway alerts included), alert_level (max over its sites)

Sharded consumers (cloud.shard): a shard knows the liveness and alerts of its own gateways only,
so it writes the points of what it owns and no other shard writes them: its gateways, the sensors
on them, the sites and tenants anchored to them (a site's anchor is the gateway of its first
registered sensor, a tenant's its first registered gateway; shard 0 of the tenant takes those
without one).  Counts of a site or tenant spread over several shards are then those of the
anchoring shard.  Without `shard:` every count is complete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cloud import lineproto
from cloud.alerts.store import Episode
from cloud.detect.engine import GatewayState
from cloud.points import ts_ms
from cloud.registry import Channel, Gateway, Registry, RoadClass, Sensor, Site
from cloud.shard import Shard

THRESHOLDS = "thresholds"
SITE_STATUS = "site_status"
GATEWAY_STATUS = "gateway_status"
TENANT_STATUS = "tenant_status"

_EVERYTHING = Shard()


@dataclass
class OpenAlerts:
    """The open episodes of one site or tenant, counted."""

    level: int = 0  # highest level among open disaster episodes
    disaster: int = 0
    maintenance: int = 0


def snapshot_lines(
    registry: Registry,
    gateways: Mapping[tuple[str, str], GatewayState],
    episodes: Iterable[Episode],
    now: float,
    shard: Shard = _EVERYTHING,
    *,
    thresholds: bool = True,
) -> list[str]:
    """Every snapshot point at `now` (epoch seconds, the consumer's clock).

    `gateways` is the liveness engine's state (cloud.detect.engine.Engine.gateways), `episodes`
    the alert store's open episodes (resolved ones are skipped)."""
    t = ts_ms(datetime.fromtimestamp(now, UTC))
    own = _Ownership(registry, shard)
    lines: list[str] = []
    for sensor in registry.data.sensors if thresholds else ():
        if own.gateway(sensor.tenant, sensor.gateway):
            lines.extend(threshold_lines(registry, sensor, t))
    site_alerts, tenant_alerts = _count_episodes(registry, episodes)
    sites_of: dict[str, list[Site]] = {}
    for site in registry.data.sites:
        if own.site(site):
            sites_of.setdefault(site.tenant, []).append(site)
            lines.append(site_status_line(site, site_alerts.get((site.tenant, site.id), OpenAlerts()), t))
    gateways_of: dict[str, list[bool]] = {}  # tenant -> online flag of each gateway written
    for gw in registry.data.gateways:
        if own.gateway(gw.tenant, gw.id):
            state = gateways.get((gw.tenant, gw.id))
            gateways_of.setdefault(gw.tenant, []).append(_online(state))
            lines.append(gateway_status_line(gw, state, now, t))
    for tenant in registry.data.tenants:
        if not own.tenant(tenant.id):
            continue
        sites = sites_of.get(tenant.id, [])
        online = gateways_of.get(tenant.id, [])
        counts = tenant_alerts.get(tenant.id, OpenAlerts())
        fields = {
            "gateways": lineproto.int_field(len(online)),
            "gateways_offline": lineproto.int_field(online.count(False)),
            "sites": lineproto.int_field(len(sites)),
            "active_alerts": lineproto.int_field(counts.disaster),
            "maintenance_alerts": lineproto.int_field(counts.maintenance),
            "alert_level": lineproto.int_field(
                max((site_alerts.get((s.tenant, s.id), OpenAlerts()).level for s in sites), default=0)
            ),
        }
        tags = {"tenant": tenant.id, "tenant_name": tenant.name}
        lines.append(lineproto.line(TENANT_STATUS, tags, fields, t))
    return lines


def level_name(level: int | str, name_ja: str, name: str) -> str:
    """The `level_name` tag: "3 避難判断水位 evacuation judgement" (parts left out when empty)."""
    return " ".join(part for part in (str(level), name_ja, name) if part)


def threshold_lines(registry: Registry, sensor: Sensor, t: int) -> list[str]:
    """The `thresholds` points of one sensor's channels, in registry order."""
    site = registry.site_of(sensor)
    base = {
        "tenant": sensor.tenant,
        "site": site.id,
        "site_name": site.name,
        "sensor": sensor.id,
        "sensor_name": sensor.name,
    }
    lines: list[str] = []

    def add(kind: str, unit: str, what: str, level: str, name: str, value: float, both_signs: bool) -> None:
        tags = {**base, "kind": kind, "unit": unit, "level": level, "level_name": name, "what": what}
        for mirrored in (False, True) if both_signs else (False,):
            tags["mirror"] = "1" if mirrored else "0"
            v = -value if mirrored else value
            lines.append(lineproto.line(THRESHOLDS, tags, {"value": lineproto.float_field(v)}, t))

    for kind, ch in sensor.channels.items():
        both = ch.direction == "absolute"  # dangerous either way: draw the band on both sides
        for th in ch.thresholds:
            name = level_name(th.level, th.name_ja, th.name)
            add(kind, ch.unit, "level", str(th.level), name, th.value, both)
        if ch.rate is not None:
            for rt in ch.rate.thresholds:
                name = level_name(rt.level, rt.name_ja, rt.name)
                add(kind, ch.rate.unit, "rate", str(rt.level), name, rt.value, both)
        road = _dispatch_rule(registry, site, ch)
        if road is not None:
            name = " ".join(part for part in (road.name_ja, road.name) if part)
            kind_h = f"new_snow_{road.window_h}h"
            add(kind_h, "cm", "snow_dispatch", "dispatch", name, road.new_snow_cm, False)
    return lines


def site_status_line(site: Site, alerts: OpenAlerts, t: int) -> str:
    tags = {"tenant": site.tenant, "site": site.id, "site_name": site.name, "type": site.type}
    fields: dict[str, str] = {}
    if site.lat is not None:
        fields["lat"] = lineproto.float_field(site.lat)
    if site.lon is not None:
        fields["lon"] = lineproto.float_field(site.lon)
    fields["alert_level"] = lineproto.int_field(alerts.level)
    fields["active_alerts"] = lineproto.int_field(alerts.disaster)
    fields["maintenance_alerts"] = lineproto.int_field(alerts.maintenance)
    return lineproto.line(SITE_STATUS, tags, fields, t)


def gateway_status_line(gw: Gateway, state: GatewayState | None, now: float, t: int) -> str:
    tags = {"tenant": gw.tenant, "gateway": gw.id, "gateway_name": gw.name}
    fields = {"online": lineproto.int_field(_online(state))}
    if state is not None and state.last_seen is not None:
        # last_seen is capped at arrival times, so it is never ahead of the consumer's clock;
        # max() only guards against a clock stepped back.
        fields["last_seen_age_s"] = lineproto.float_field(max(0.0, now - state.last_seen))
    return lineproto.line(GATEWAY_STATUS, tags, fields, t)


def _online(state: GatewayState | None) -> bool:
    return state is not None and state.last_seen is not None and not state.offline


def _dispatch_rule(registry: Registry, site: Site, ch: Channel) -> RoadClass | None:
    # The same rule detection applies (cloud.detect.series): a snowfall channel at a site with a
    # road class.
    return registry.road_class(site) if ch.snowfall else None


def _count_episodes(
    registry: Registry, episodes: Iterable[Episode]
) -> tuple[dict[tuple[str, str], OpenAlerts], dict[str, OpenAlerts]]:
    """Open episodes per (tenant, site) and per tenant."""
    per_site: dict[tuple[str, str], OpenAlerts] = {}
    per_tenant: dict[str, OpenAlerts] = {}
    for ep in episodes:
        if ep.status == "resolved":
            continue
        alert = ep.alert
        site = alert.site
        if not site and alert.sensor:  # older episodes may lack the site: the registry knows it
            sensor = registry.sensors.get((ep.tenant, alert.sensor))
            site = sensor.site if sensor is not None else ""
        targets = [per_tenant.setdefault(ep.tenant, OpenAlerts())]
        if site:
            targets.append(per_site.setdefault((ep.tenant, site), OpenAlerts()))
        for counts in targets:
            if alert.category == "disaster":
                counts.disaster += 1
                counts.level = max(counts.level, ep.level)
            else:
                counts.maintenance += 1
    return per_site, per_tenant


class _Ownership:
    """Which points this consumer writes (see the module docstring on shards)."""

    def __init__(self, registry: Registry, shard: Shard) -> None:
        self.shard = shard
        self._site_anchor: dict[tuple[str, str], str] = {}
        for s in registry.data.sensors:
            self._site_anchor.setdefault((s.tenant, s.site), s.gateway)
        self._tenant_anchor: dict[str, str] = {}
        for g in registry.data.gateways:
            self._tenant_anchor.setdefault(g.tenant, g.id)

    def gateway(self, tenant: str, gateway: str) -> bool:
        return self.shard.owns(tenant, gateway)

    def site(self, site: Site) -> bool:
        anchor = self._site_anchor.get((site.tenant, site.id))
        return self._anchored(site.tenant, anchor)

    def tenant(self, tenant: str) -> bool:
        return self._anchored(tenant, self._tenant_anchor.get(tenant))

    def _anchored(self, tenant: str, anchor: str | None) -> bool:
        if anchor is not None:
            return self.shard.owns(tenant, anchor)
        return (self.shard.tenant is None or self.shard.tenant == tenant) and self.shard.index == 0
