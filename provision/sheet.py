"""Site sheets: what a technician fills in for one gateway, turned into its two halves.

A sheet names the gateway, the sites it serves, its buses and its sensors, and for each sensor
both what the gateway needs (profile, bus, unit id, interval) and what the cloud needs (the
channels' ranges and alert thresholds).  `build` splits it into the gateway config (which goes
into the signed bundle) and the registry fragment (which the consumer loads), so thresholds are
written once and the two sides cannot disagree about which sensor belongs to which gateway.
Examples: firmware_configs/sites/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import yaml

from cloud.registry import Channel, Gateway, RegistryFragment, Sensor, Site
from edge.config import Bus, OutboxConfig, PublishConfig
from edge.report import ReportPolicy
from wire import configfile
from wire.ids import Ident
from wire.mqttconf import TlsConfig


class SheetSite(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A site to create; a site that already exists in the registry is named by id only."""

    id: Ident
    name: str | None = None
    type: str | None = None
    lat: float | None = None
    lon: float | None = None
    road_class: Ident | None = None


class SheetSensor(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: Ident
    site: Ident
    profile: Ident
    bus: Ident
    unit_id: int | None = None
    interval: float = 60.0
    mounting_height: float | None = None
    report: ReportPolicy | None = None
    name: str = ""
    channels: dict[str, Channel] = {}  # the cloud's side: range, thresholds, detection


class Sheet(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    tenant: Ident
    gateway: Ident
    buses: list[Bus]
    sensors: list[SheetSensor]
    name: str = ""
    sites: list[SheetSite] = []
    broker_url: str | None = None  # default: the authority's
    offline_after_s: float | None = 600.0
    outbox: OutboxConfig = OutboxConfig()
    publish: PublishConfig = PublishConfig()


def load_sheet(path: Path) -> Sheet:
    from provision.mosquitto import RESERVED_GATEWAY_IDS

    sheet = configfile.load(path, Sheet)
    if sheet.gateway in RESERVED_GATEWAY_IDS:
        raise configfile.ConfigError(
            path,
            "field 'gateway'",
            f"{sheet.gateway!r} is reserved (its topics would overlap the alert topics)",
        )
    return sheet


def mqtt_section(
    sheet: Sheet, *, broker_url: str, username: str, password: bool, certificate: bool
) -> dict[str, Any]:
    """The gateway's MQTT settings, pointing at the files the bundle carries."""
    tls = TlsConfig(
        ca_file="ca.crt",
        cert_file="client.crt" if certificate else None,
        key_file="client.key" if certificate else None,
    )
    section: dict[str, Any] = {
        "url": broker_url,
        "client_id": f"bosai-{sheet.tenant}-{sheet.gateway}",
        "tls": msgspec.to_builtins(tls),
    }
    if password:
        section["username"] = username
        section["password_file"] = "mqtt-password"
    return section


def gateway_config(sheet: Sheet, mqtt: dict[str, Any]) -> dict[str, Any]:
    """The gateway.yaml of the bundle, as plain data (profiles sit next to it in `profiles/`)."""
    sensors = [
        {
            "id": s.id,
            "site": s.site,
            "profile": s.profile,
            "bus": s.bus,
            "unit_id": s.unit_id,
            "interval": s.interval,
            "mounting_height": s.mounting_height,
            "report": msgspec.to_builtins(s.report) if s.report is not None else None,
        }
        for s in sheet.sensors
    ]
    config: dict[str, Any] = without_nulls(
        {
            "tenant": sheet.tenant,
            "gateway": sheet.gateway,
            "mqtt": mqtt,
            "buses": msgspec.to_builtins(sheet.buses),
            "sensors": sensors,
            "outbox": msgspec.to_builtins(sheet.outbox),
            "publish": msgspec.to_builtins(sheet.publish),
            "profiles_dir": "profiles",
        }
    )
    return config


def registry_fragment(sheet: Sheet, sheet_path: Path, existing_sites: set[str]) -> RegistryFragment:
    """The gateway, its new sites and its sensors for the registry; sites already registered in
    the tenant (`existing_sites`) are referenced, not repeated."""
    sites = []
    for i, s in enumerate(sheet.sites):
        if s.id in existing_sites:
            continue
        if s.name is None or s.type is None:
            raise configfile.ConfigError(
                sheet_path,
                f"sites[{i}] (id {s.id!r}): field {'name' if s.name is None else 'type'!r}",
                "a new site needs a name and a type (river, snow, slope or other)",
            )
        sites.append(configfile.convert({**msgspec.to_builtins(s), "tenant": sheet.tenant}, Site, sheet_path))
    known = existing_sites | {s.id for s in sheet.sites}
    for i, sensor in enumerate(sheet.sensors):
        if sensor.site not in known:
            raise configfile.ConfigError(
                sheet_path,
                f"sensors[{i}] (id {sensor.id!r}): field 'site'",
                f"no site {sensor.site!r} in the sheet nor in tenant {sheet.tenant!r}",
            )
    gateway = Gateway(
        id=sheet.gateway, tenant=sheet.tenant, name=sheet.name, offline_after_s=sheet.offline_after_s
    )
    sensors = [
        Sensor(
            id=s.id, tenant=sheet.tenant, gateway=sheet.gateway, site=s.site, name=s.name, channels=s.channels
        )
        for s in sheet.sensors
    ]
    return RegistryFragment(sites=sites, gateways=[gateway], sensors=sensors)


def without_nulls(value: Any) -> Any:
    """Plain data with None values left out, so generated YAML shows only what is set."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


EXAMPLE_BROKER = "mqtts://broker.example.jp:8883"


def example_gateway_yaml(sheet: Sheet, sheet_name: str) -> str:
    """The gateway config a bundle made from `sheet` carries, for reading in the repository
    (firmware_configs/gateways/): the same text, except that profiles are the shipped folder."""
    from provision.mosquitto import gateway_username

    mqtt = mqtt_section(
        sheet,
        broker_url=sheet.broker_url or EXAMPLE_BROKER,
        username=gateway_username(sheet.tenant, sheet.gateway),
        password=True,
        certificate=False,
    )
    config = {**gateway_config(sheet, mqtt), "profiles_dir": "../profiles"}
    header = (
        f"# GENERATED from ../sites/{sheet_name} (python -m provision.sheet): the gateway config that\n"
        "# `bosai gateway provision` puts in this gateway's signed bundle, next to the CA certificate\n"
        "# (ca.crt) and its unique password (mqtt-password, 0600), which exist only in the bundle.\n"
    )
    return header + yaml.safe_dump(config, allow_unicode=True, sort_keys=False)


def write_examples(repo: Path) -> list[Path]:
    written = []
    for sheet_path in sorted((repo / "firmware_configs" / "sites").glob("*.yaml")):
        out = repo / "firmware_configs" / "gateways" / sheet_path.name
        out.write_text(example_gateway_yaml(load_sheet(sheet_path), sheet_path.name), encoding="utf-8")
        written.append(out)
    return written


if __name__ == "__main__":
    from bosai.paths import REPO_ROOT

    for path in write_examples(REPO_ROOT):
        print(path)
