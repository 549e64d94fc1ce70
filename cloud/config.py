"""Cloud consumer config (YAML), validated at load.  See deploy/cloud/consumer.example.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from cloud.notify.config import NotifierConfig
from wire import configfile
from wire.configfile import ConfigError, resolve
from wire.ids import Ident
from wire.mqttconf import MqttConfig, check_url

__all__ = ["ConsumerConfig", "load_consumer_config", "resolve"]

Positive = Annotated[float, msgspec.Meta(gt=0)]


class InfluxStore(msgspec.Struct, tag="influxdb", forbid_unknown_fields=True, frozen=True):
    """InfluxDB 2.x/3.x (or anything speaking the v2 write API) through influxdb-client."""

    url: str
    org: str
    bucket: str
    token_file: str | None = None  # 0600 file holding the API token; None for servers without auth
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 5000
    flush_interval_ms: Annotated[int, msgspec.Meta(ge=10)] = 1000
    timeout_ms: Annotated[int, msgspec.Meta(ge=100)] = 10_000


class LineProtocolFileStore(msgspec.Struct, tag="lpfile", forbid_unknown_fields=True, frozen=True):
    """Embedded default store: the same line protocol, appended to files (one per UTC day).

    Needs no server; the files can be loaded into any InfluxDB later.
    """

    path: str


Store = InfluxStore | LineProtocolFileStore


class ValidationConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    max_future_s: Positive = 300.0  # gateway clocks drift; more than this is a broken clock
    max_past_s: Positive = 90 * 86400.0  # outbox backlog after a long outage is still accepted


class EscalationConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """While an alert is not acknowledged: send it again every `renotify_after_min`, and hand it
    over to the next recipients tier every `escalate_after_min` (None: never)."""

    renotify_after_min: Positive | None = None
    escalate_after_min: Positive | None = None


class AlertsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    log_path: str = "alerts.jsonl"  # JSON lines, one per alert event
    state_path: str = "alerts.db"  # episodes and maintenance windows (SQLite), kept across restarts
    publish: bool = True  # retained current state on bosai/v1/{tenant}/alerts/...
    # Dashboard link put on every alert; {tenant}, {site}, {sensor}, {kind} are filled in.
    dashboard_url: str | None = None
    disaster: EscalationConfig = EscalationConfig(renotify_after_min=15.0, escalate_after_min=30.0)
    maintenance: EscalationConfig = EscalationConfig()
    notifiers: list[NotifierConfig] = []


class ConsumerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    mqtt: MqttConfig
    registry: str  # path, relative to this file
    store: Store
    tenant: Ident | None = None  # serve only this tenant (a shard); None: all tenants
    shared_group: Ident | None = None  # MQTT 5 shared subscription group to spread load
    validation: ValidationConfig = ValidationConfig()
    alerts: AlertsConfig = AlertsConfig()
    quarantine_path: str | None = "quarantine.jsonl"  # rejected messages with their reason
    # A second store receiving the same lines, e.g. a local lpfile copy next to InfluxDB.
    archive: Store | None = None


def load_consumer_config(path: str | Path) -> ConsumerConfig:
    path = Path(path)
    cfg = configfile.load(path, ConsumerConfig)
    url_problem = check_url(cfg.mqtt)
    if url_problem:
        raise ConfigError(path, "mqtt: field 'url'", url_problem)
    if cfg.shared_group and cfg.mqtt.protocol != "5":
        raise ConfigError(path, "field 'shared_group'", "shared subscriptions need MQTT protocol 5")
    return cfg
