"""The consumer's paho-mqtt client: TLS, credentials and a persistent session.

The session is persistent (MQTT 5: clean_start False with a session expiry; 3.1.1: clean_session
False) under a stable client id, so QoS 1 telemetry published while the consumer is down waits
in the broker (up to the broker's max_queued_messages) and is delivered on reconnect.

Subscriptions follow the consumer's part of the registry (cloud.shard, docs/scaling.md):
- without `shard:`, wildcards for every gateway of `tenant` (or of all tenants), so a gateway
  added to the broker's ACL is heard at once (and rejected as unknown until it is registered);
- with `shard:`, the exact telemetry, status and health topics of each registered gateway the shard
  owns, so each gateway's messages reach one process and its sequence and detection state stay
  whole.  A gateway registered later is heard after a restart (the registry is read at start);
- with `shared_group`, every filter becomes `$share/{group}/...`: the group's members are replicas
  of each other.  Mosquitto hands each message to the next connected member in turn, which splits
  a gateway's series between them, so on Mosquitto run one member per group (per shard); brokers
  with sticky or topic-hash strategies (EMQX `sticky`, `hash_topic`) keep a topic on one member.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud.config import ConsumerConfig
from cloud.registry import Registry
from cloud.shard import Shard
from wire import topics
from wire.mqttconf import read_password, tls_context
from wire.pahologs import paho_logger

log = logging.getLogger(__name__)
PAHO_LOG = "paho.mqtt.cloud"  # paho's own log (packets at DEBUG)

SESSION_EXPIRY_S = 7 * 86400  # how long the broker keeps our subscription and queue while we are away
# Topic filters per SUBSCRIBE packet: a shard of a registry with thousands of gateways subscribes
# to three topics each, and one packet of 10 000 filters would be large (and refused by brokers
# with a maximum packet size); a SUBACK per batch also says which batch a refusal came from.
SUBSCRIBE_BATCH = 100


def client_id(config: ConsumerConfig) -> str:
    """Stable across restarts (the session is found again by it).

    Consumers sharing a subscription group need distinct ids: by default the host name is
    added; run several on one host with explicit `mqtt.client_id`s.  A shard adds
    "-s{index}of{count}", to an explicit id too: a new shard layout then starts new broker
    sessions instead of inheriting the subscriptions (and queued messages) of the old layout.
    """
    shard = f"-s{config.shard.index}of{config.shard.count}" if config.shard is not None else ""
    if config.mqtt.client_id:
        return config.mqtt.client_id + shard
    cid = f"bosai-cloud-{config.tenant or 'all'}{shard}"
    return f"{cid}-{config.shared_group}-{socket.gethostname()}" if config.shared_group else cid


def subscriptions(config: ConsumerConfig, registry: Registry | None = None) -> list[str]:
    """Telemetry, and the gateways' status (birth / Last Will) and health for liveness.

    Without a shard: three wildcard filters (`registry` is not needed).  With a shard: three
    topics per owned registered gateway, which needs the registry (ValueError without it).  The
    list may be empty: a shard that owns no registered gateway.
    """
    if config.shard is None:
        tenant = config.tenant or "+"
        filters = [
            topics.telemetry_filter(tenant),
            topics.status_filter(tenant),
            topics.health_filter(tenant),
        ]
    elif registry is None:
        raise ValueError("a sharded consumer subscribes to its own gateways' topics: pass the registry")
    else:
        filters = [
            topic(g.tenant, g.id)
            for g in Shard.of(config).owned_gateways(registry)
            for topic in (topics.telemetry, topics.status, topics.health)
        ]
    if config.shared_group:
        return [f"$share/{config.shared_group}/{f}" for f in filters]
    return filters


def subscription_batches(filters: list[str], size: int = SUBSCRIBE_BATCH) -> list[list[str]]:
    """The filters in order, `size` per SUBSCRIBE packet (one packet per batch)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, not {size}")
    return [filters[i : i + size] for i in range(0, len(filters), size)]


def make_client(config: ConsumerConfig, config_path: Path) -> mqtt.Client:
    """A configured, not yet connected client.  Raises ConfigError for unusable secrets/certs."""
    m = config.mqtt
    v5 = m.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id(config),
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        clean_session=None if v5 else False,
        manual_ack=True,  # acknowledge only once processed: unprocessed messages are redelivered
    )
    # paho's packet log at DEBUG (flags, topics and sizes; never passwords or payloads).
    client.enable_logger(paho_logger(PAHO_LOG))
    if m.username:
        client.username_pw_set(m.username, read_password(m, config_path))
    if m.use_tls:
        client.tls_set_context(tls_context(m.tls, config_path))
    else:
        log.info("MQTT without TLS (%s, allow_insecure is set): bench tests only", m.url)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def connect(client: mqtt.Client, config: ConsumerConfig) -> None:
    """Start connecting in the background; paho keeps retrying until it succeeds."""
    m = config.mqtt
    if m.protocol == "5":
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        client.connect_async(m.host, m.port, keepalive=m.keepalive, clean_start=False, properties=props)
    else:
        client.connect_async(m.host, m.port, keepalive=m.keepalive)
