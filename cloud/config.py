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
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 5000  # lines per write request
    # With less than a batch waiting, write what there is after this long (a backlog after an
    # outage always goes in full batches).
    flush_interval_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 1000
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
    # A gateway whose rejected messages exceed `bad_burst` at `bad_per_s` is throttled: while it
    # floods, at most `throttled_per_s` of its messages are looked at and the rest are rejected
    # unread as `rate_limited`, so one broken or hostile gateway cannot slow the others.
    bad_per_s: Positive = 20.0
    bad_burst: Annotated[int, msgspec.Meta(ge=1)] = 200
    throttled_per_s: Positive = 10.0


class SpoolConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The disk spool in front of the store: a message is acknowledged to the broker only once
    its lines are in the spool (fsync'd), and the spool drains to the store in order, surviving
    database outages and consumer crashes."""

    path: str = "spool"  # directory, relative to the config file
    max_bytes: Annotated[int, msgspec.Meta(ge=1 << 20)] = 1 << 30  # full: intake pauses (no loss)
    segment_bytes: Annotated[int, msgspec.Meta(ge=1 << 16)] = 16 << 20
    fsync: bool = True  # False trades crash safety (power loss) for speed; a kill -9 is still safe


class MetricsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # Prometheus text exposition at http://{listen}/metrics, e.g. "127.0.0.1:9464"; None: off.
    listen: str | None = None
    health_every_s: Positive = 60.0  # consumer health points written to the store this often


class ShardConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """This consumer owns the gateways whose stable hash of "tenant/gateway" modulo `count` is
    `index` (cloud.shard); it subscribes to their topics only, so each sensor's sequence
    accounting and detection live in exactly one process."""

    index: Annotated[int, msgspec.Meta(ge=0)]
    count: Annotated[int, msgspec.Meta(ge=1, le=4096)]


class EscalationConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """While an alert is not acknowledged: send it again every `renotify_after_min`, and hand it
    over to the next recipients tier every `escalate_after_min` (None: never)."""

    renotify_after_min: Positive | None = None
    escalate_after_min: Positive | None = None


class AlertsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    log_path: str = "alerts.jsonl"  # JSON lines, one per alert event
    state_path: str = "alerts.db"  # episodes and maintenance windows (SQLite), kept across restarts
    publish: bool = True  # retained current state on bosai/v1/{tenant}/alerts/...
    # Dashboard link put on every alert; {tenant}, {site}, {site_name}, {sensor}, {kind}, {gateway}
    # and {dashboard} (the uid of the dashboard for the alert's kind) are filled in, URL-encoded.
    dashboard_url: str | None = None
    disaster: EscalationConfig = EscalationConfig(renotify_after_min=15.0, escalate_after_min=30.0)
    maintenance: EscalationConfig = EscalationConfig()
    notifiers: list[NotifierConfig] = []


class SecurityConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Failed logins and ACL denials happen at the broker, which only logs them: with
    `broker_log` (Mosquitto's log file, e.g. /var/log/mosquitto/mosquitto.log, needs
    `connection_messages true`, as the generated broker config has) the consumer follows it and
    counts and logs each event with its source."""

    broker_log: str | None = None  # relative to this file
    from_start: bool = False  # read the log from its start instead of from its end


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
    spool: SpoolConfig = SpoolConfig()
    metrics: MetricsConfig = MetricsConfig()
    shard: ShardConfig | None = None
    # Rejected messages are also published here (QoS 0, not retained) with their reason, e.g.
    # "bosai/v1/{tenant}/quarantine"; {tenant} is the topic's tenant.  None: file only.
    quarantine_topic: str | None = None
    security: SecurityConfig = SecurityConfig()
    # The dashboards' snapshot points (thresholds, site/gateway/tenant status; cloud.dashdata) are
    # written this often, in the consumer's clock, and once at start.
    dashboards_every_s: Positive = 60.0
    # The registry's thresholds go into every snapshot this often (they change only with the
    # registry, and are most of a snapshot's lines).
    thresholds_every_s: Positive = 600.0
    # At most one `detections` point (rate, next-level forecast, new snowfall, failure forecast;
    # cloud.points) per series per this much sample time.  Each costs a fit of the series'
    # windows and a stored line; a rate over a 30 min window barely moves in 5 min.  Series
    # sampled less often get one per sample.
    detections_every_s: Positive = 300.0


def load_consumer_config(path: str | Path) -> ConsumerConfig:
    path = Path(path)
    cfg = configfile.load(path, ConsumerConfig)
    url_problem = check_url(cfg.mqtt)
    if url_problem:
        raise ConfigError(path, "mqtt: field 'url'", url_problem)
    if cfg.shared_group and cfg.mqtt.protocol != "5":
        raise ConfigError(path, "field 'shared_group'", "shared subscriptions need MQTT protocol 5")
    if cfg.shard is not None and cfg.shard.index >= cfg.shard.count:
        raise ConfigError(
            path, "shard: field 'index'", f"{cfg.shard.index} is not below count {cfg.shard.count}"
        )
    if cfg.metrics.listen is not None and _host_port(cfg.metrics.listen) is None:
        raise ConfigError(path, "metrics: field 'listen'", f"{cfg.metrics.listen!r} is not HOST:PORT")
    return cfg


def _host_port(listen: str) -> tuple[str, int] | None:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return None
    return host.strip("[]"), int(port)


def metrics_address(cfg: MetricsConfig) -> tuple[str, int] | None:
    """(host, port) to serve /metrics on; None when off.  Port 0 picks a free port."""
    return _host_port(cfg.listen) if cfg.listen else None
