"""The consumer's paho-mqtt client: TLS, credentials and a persistent session.

The session is persistent (MQTT 5: clean_start False with a session expiry; 3.1.1: clean_session
False) under a stable client id, so QoS 1 telemetry published while the consumer is down waits
in the broker (up to the broker's max_queued_messages) and is delivered on reconnect.
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
from wire import topics
from wire.mqttconf import read_password, tls_context

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 86400  # how long the broker keeps our subscription and queue while we are away


def client_id(config: ConsumerConfig) -> str:
    """Stable across restarts (the session is found again by it).

    Consumers sharing a subscription group need distinct ids: by default the host name is
    added; run several on one host with explicit `mqtt.client_id`s.
    """
    if config.mqtt.client_id:
        return config.mqtt.client_id
    cid = f"bosai-cloud-{config.tenant or 'all'}"
    return f"{cid}-{config.shared_group}-{socket.gethostname()}" if config.shared_group else cid


def subscriptions(config: ConsumerConfig) -> list[str]:
    """Telemetry, and the gateways' status (birth / Last Will) and health for liveness."""
    tenant = config.tenant or "+"
    filters = [topics.telemetry_filter(tenant), topics.status_filter(tenant), topics.health_filter(tenant)]
    if config.shared_group:
        return [f"$share/{config.shared_group}/{f}" for f in filters]
    return filters


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
