"""The registry of tenants, sites, gateways and sensors (file-based).

It is the authority for which gateway may report which sensor, where the sensor stands, its
physical range, and the alert thresholds of each measured kind.  See docs/configuration.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from wire import configfile
from wire.configfile import ConfigError
from wire.ids import Ident


class Tenant(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: Ident
    name: str


class Site(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: Ident
    tenant: Ident
    name: str  # human name, any characters (e.g. 石狩川 旭橋)
    type: Literal["river", "snow", "slope", "other"]
    lat: float | None = None
    lon: float | None = None


class Threshold(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    level: Annotated[int, msgspec.Meta(ge=1, le=5)]
    value: float
    name: str  # e.g. "evacuation judgement"
    name_ja: str = ""  # e.g. 避難判断水位


class Channel(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One measured kind of a sensor, with its range and thresholds."""

    unit: str
    range: tuple[float, float] | None = None
    direction: Literal["rising", "falling", "absolute"] = "rising"  # which way is dangerous
    # Clear a level only once the value is back by this much below its threshold (hysteresis),
    # so a value hovering at a threshold does not flap.
    clear_margin: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    thresholds: list[Threshold] = []


class Sensor(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: Ident
    tenant: Ident
    gateway: Ident
    site: Ident
    name: str = ""
    channels: dict[str, Channel] = {}  # keyed by kind (river_level, snow_depth, tilt_x, ...)


class Gateway(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: Ident
    tenant: Ident
    name: str = ""


class RegistryFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    tenants: list[Tenant]
    sites: list[Site]
    gateways: list[Gateway]
    sensors: list[Sensor]


class Registry:
    """Lookup structure built from a RegistryFile (sensor ids are unique per tenant)."""

    def __init__(self, data: RegistryFile) -> None:
        self.data = data
        self.tenants = {t.id: t for t in data.tenants}
        self.sites = {(s.tenant, s.id): s for s in data.sites}
        self.gateways = {(g.tenant, g.id): g for g in data.gateways}
        self.sensors = {(s.tenant, s.id): s for s in data.sensors}

    def sensor_for(self, tenant: str, gateway: str, sensor: str) -> Sensor | None:
        """The sensor if it is registered to exactly this tenant and gateway, else None."""
        s = self.sensors.get((tenant, sensor))
        if s is None or s.gateway != gateway:
            return None
        return s

    def site_of(self, sensor: Sensor) -> Site:
        return self.sites[(sensor.tenant, sensor.site)]


def load_registry(path: str | Path) -> Registry:
    data = configfile.load(path, RegistryFile)
    tenants = {t.id for t in data.tenants}
    seen: set[tuple[str, str]] = set()

    def check_tenant(where: str, tenant: str) -> None:
        if tenant not in tenants:
            raise ConfigError(path, f"{where}: field 'tenant'", f"no tenant {tenant!r}")

    groups: tuple[tuple[str, Sequence[Site | Gateway | Sensor]], ...] = (
        ("sites", data.sites),
        ("gateways", data.gateways),
        ("sensors", data.sensors),
    )
    for kind, items in groups:
        seen.clear()
        for i, item in enumerate(items):
            where = f"{kind}[{i}] (id {item.id!r})"
            check_tenant(where, item.tenant)
            if (item.tenant, item.id) in seen:
                raise ConfigError(path, f"{where}: field 'id'", f"duplicate id in tenant {item.tenant!r}")
            seen.add((item.tenant, item.id))
    site_ids = {(s.tenant, s.id) for s in data.sites}
    gw_ids = {(g.tenant, g.id) for g in data.gateways}
    for i, s in enumerate(data.sensors):
        where = f"sensors[{i}] (id {s.id!r})"
        if (s.tenant, s.site) not in site_ids:
            raise ConfigError(path, f"{where}: field 'site'", f"no site {s.site!r} in tenant {s.tenant!r}")
        if (s.tenant, s.gateway) not in gw_ids:
            raise ConfigError(
                path, f"{where}: field 'gateway'", f"no gateway {s.gateway!r} in tenant {s.tenant!r}"
            )
        for kind_name, ch in s.channels.items():
            cw = f"{where}: channels: {kind_name}"
            levels = [t.level for t in ch.thresholds]
            if levels != sorted(set(levels)):
                raise ConfigError(path, f"{cw}: field 'thresholds'", "levels must be unique and ascending")
            values = [t.value for t in ch.thresholds]
            ordered = sorted(values, reverse=ch.direction == "falling")
            if values != ordered:
                raise ConfigError(
                    path,
                    f"{cw}: field 'thresholds'",
                    f"values must grow with the level for direction {ch.direction!r}",
                )
            if ch.range is not None and ch.range[0] >= ch.range[1]:
                raise ConfigError(path, f"{cw}: field 'range'", "min must be below max")
    return Registry(data)
