"""The MQTT features the pipeline relies on, with paho-mqtt against a real Mosquitto.

Each test runs on a plain listener and on a TLS listener whose certificate is verified against
the throwaway CA (hostname included), as gateways connect in production.
"""

from __future__ import annotations

import queue
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.servers import Mosquitto, make_tls_files

pytestmark = pytest.mark.integration

TIMEOUT = 10.0


@pytest.fixture(params=["plain", "tls"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "mosquitto", tls=request.param == "tls") as server:
        yield server


class Client:
    """A paho MQTT 5 client running its network loop in a thread, with received messages queued."""

    def __init__(self, broker: Mosquitto, client_id: str, ca_file: Path | None = None) -> None:
        self.broker = broker
        self.paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if broker.tls is not None:
            self.paho.tls_set(ca_certs=str(ca_file or broker.ca_file))  # verifies chain and hostname
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.session_present: bool | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.paho.on_connect = self._on_connect
        self.paho.on_subscribe = lambda *_: self._subscribed.set()
        self.paho.on_message = lambda _c, _u, msg: self.messages.put(msg)

    def _on_connect(self, _c: Any, _u: Any, flags: mqtt.ConnectFlags, reason: Any, _p: Any) -> None:
        assert not reason.is_failure, reason
        self.session_present = flags.session_present
        self._connected.set()

    def connect(self, *, clean_start: bool = True, session_expiry: int = 0) -> Client:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry
        self._connected.clear()
        self.paho.connect(
            self.broker.host, self.broker.port, keepalive=30, clean_start=clean_start, properties=props
        )
        self.paho.loop_start()
        assert self._connected.wait(TIMEOUT), "no CONNACK"
        return self

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self._subscribed.clear()
        self.paho.subscribe(topic, qos=qos)
        assert self._subscribed.wait(TIMEOUT), "no SUBACK"

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.paho.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(TIMEOUT)  # QoS 1: returns once the broker sent PUBACK
        assert info.is_published()

    def receive(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=TIMEOUT)

    def disconnect(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()

    def drop_connection(self) -> None:
        """Vanish without DISCONNECT, as a gateway losing power or its link does."""
        self.paho.loop_stop()
        sock = self.paho.socket()
        assert sock is not None
        sock.close()


def test_qos1_publish_subscribe(broker: Mosquitto) -> None:
    sub = Client(broker, "consumer").connect()
    sub.subscribe("bosai/v1/demo-city/+/telemetry")
    pub = Client(broker, "gw01").connect()
    payload = '{"gateway": "gw01", "seq": 1, "site": "石狩川 旭橋"}'.encode()
    pub.publish("bosai/v1/demo-city/gw01/telemetry", payload)

    msg = sub.receive()
    assert (msg.topic, msg.payload, msg.qos) == ("bosai/v1/demo-city/gw01/telemetry", payload, 1)
    pub.disconnect()
    sub.disconnect()


def test_retained_message_reaches_late_subscriber(broker: Mosquitto) -> None:
    pub = Client(broker, "gw01").connect()
    pub.publish("bosai/v1/demo-city/gw01/status", b'{"state": "online"}', retain=True)
    pub.disconnect()

    late = Client(broker, "dashboard").connect()
    late.subscribe("bosai/v1/demo-city/+/status")
    msg = late.receive()
    assert (msg.payload, msg.retain) == (b'{"state": "online"}', True)
    late.disconnect()


def test_last_will_on_abrupt_disconnect(broker: Mosquitto) -> None:
    watcher = Client(broker, "consumer").connect()
    watcher.subscribe("bosai/v1/demo-city/+/status")
    gw = Client(broker, "gw01")
    gw.paho.will_set("bosai/v1/demo-city/gw01/status", b'{"state": "offline"}', qos=1, retain=True)
    gw.connect()
    gw.drop_connection()

    msg = watcher.receive()
    assert (msg.topic, msg.payload) == ("bosai/v1/demo-city/gw01/status", b'{"state": "offline"}')
    # Retained, so a dashboard connecting later also sees the gateway as offline.
    late = Client(broker, "dashboard").connect()
    late.subscribe("bosai/v1/demo-city/gw01/status")
    assert late.receive().payload == b'{"state": "offline"}'
    late.disconnect()
    watcher.disconnect()


def test_queued_qos1_message_survives_broker_restart(broker: Mosquitto) -> None:
    # The consumer keeps a persistent session, goes away, and a gateway publishes meanwhile.
    consumer = Client(broker, "consumer-1").connect(clean_start=False, session_expiry=3600)
    consumer.subscribe("bosai/v1/demo-city/+/telemetry")
    consumer.disconnect()
    gw = Client(broker, "gw01").connect()
    gw.publish("bosai/v1/demo-city/gw01/telemetry", b"queued while away")
    gw.disconnect()

    broker.stop()
    broker.start()

    consumer = Client(broker, "consumer-1").connect(clean_start=False, session_expiry=3600)
    assert consumer.session_present is True
    msg = consumer.receive()
    assert (msg.topic, msg.payload, msg.qos) == ("bosai/v1/demo-city/gw01/telemetry", b"queued while away", 1)
    consumer.disconnect()


def test_tls_rejects_a_broker_signed_by_another_ca(mosquitto_tls: Mosquitto, tmp_path: Path) -> None:
    # Proves the TLS tests above really verify the broker certificate.
    other_ca = make_tls_files(tmp_path / "other").ca_file
    client = Client(mosquitto_tls, "gw01", ca_file=other_ca)
    with pytest.raises(ssl.SSLCertVerificationError):
        client.paho.connect(mosquitto_tls.host, mosquitto_tls.port)
