"""A gateway with valid credentials tries to write as another one: the broker's ACL and the
consumer's checks stop it at every layer, and its own data still gets through.

Real Mosquitto with a password file and a topic ACL in the style of deploy/mosquitto/acl.example
(each gateway may publish only under bosai/v1/{tenant}/{its id}/#; the consumer has its own user
that reads all gateways' topics), the consumer in-process with an lpfile store.  Two gateways,
A and B, of one tenant; A is the attacker:

1. A publishes on B's telemetry topic: the broker refuses it (MQTT 5 PUBACK "not authorized"),
   so the consumer never sees it and B's store holds only what B itself sent;
2. A publishes on its own topic a payload claiming to be B (or another tenant): `topic_mismatch`;
3. A publishes on its own topic readings of B's sensors: each is rejected as `unknown_sensor`,
   counted as a security event under A, and not stored, while
4. A's own valid readings in the same message are stored.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from cloud.config import ConsumerConfig
from cloud.consumer import Consumer
from cloud.lineproto import ParsedLine
from cloud.points import READINGS
from cloud.writers.lpfile import read_lp_dir
from tests.servers import Mosquitto, write_password_file
from tests.waiting import wait_for
from wire import topics

pytestmark = pytest.mark.integration

TENANT = "spoof-city"
GW_A, GW_B = "gw-a", "gw-b"
SENSOR_A, SENSOR_B = "level-a", "level-b"
CLOUD_USER = "bosai-cloud"
WAIT_S = 60.0
NOT_AUTHORIZED = 135  # MQTT 5 reason code 0x87

REGISTRY = f"""\
tenants:
  - {{id: {TENANT}, name: なりすまし試験市}}
sites:
  - {{id: river-1, tenant: {TENANT}, name: 試験川, type: river}}
gateways:
  - {{id: {GW_A}, tenant: {TENANT}}}
  - {{id: {GW_B}, tenant: {TENANT}}}
sensors:
  - id: {SENSOR_A}
    tenant: {TENANT}
    gateway: {GW_A}
    site: river-1
    channels:
      river_level: {{unit: m, range: [-2.0, 30.0]}}
  - id: {SENSOR_B}
    tenant: {TENANT}
    gateway: {GW_B}
    site: river-1
    channels:
      river_level: {{unit: m, range: [-2.0, 30.0]}}
"""

# As deploy/mosquitto/acl.example: one block per gateway (provisioning writes them), and the
# consumer reading every gateway's topics.
ACL = f"""\
user {GW_A}
topic write bosai/v1/{TENANT}/{GW_A}/#

user {GW_B}
topic write bosai/v1/{TENANT}/{GW_B}/#

user {CLOUD_USER}
topic read bosai/v1/+/+/telemetry
topic read bosai/v1/+/+/status
topic read bosai/v1/+/+/health
topic readwrite bosai/v1/+/alerts/#
"""


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t))


def reading(sensor: str, t: float, value: float) -> dict[str, Any]:
    return {"sensor": sensor, "kind": "river_level", "ts": iso(t), "value": value, "unit": "m"}


def telemetry(gateway: str, seq: int, *readings: dict[str, Any], tenant: str = TENANT) -> bytes:
    msg = {"v": 1, "tenant": tenant, "gateway": gateway, "seq": seq, "sent": iso(time.time())}
    return json.dumps({**msg, "readings": list(readings)}).encode()


class Gateway:
    """An MQTT 5 client logged in with one gateway's credentials; publishes at QoS 1 and returns
    the broker's PUBACK reason code."""

    def __init__(self, broker: Mosquitto, user: str, password: str) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{user}-test", protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.username_pw_set(user, password)
        self._acks: dict[int, ReasonCode] = {}
        self._acked = threading.Condition()
        connected: list[ReasonCode] = []
        self.client.on_connect = lambda _c, _u, _f, rc, _p: connected.append(rc)
        self.client.on_publish = self._on_publish
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        wait_for(lambda: bool(connected), f"{user}: CONNACK")
        assert not connected[0].is_failure, f"{user} could not log in: {connected[0]}"

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        with self._acked:
            self._acks[mid] = rc
            self._acked.notify_all()

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        info = self.client.publish(topic, payload, qos=1)
        with self._acked:
            assert self._acked.wait_for(lambda: info.mid in self._acks, WAIT_S), "no PUBACK"
            return self._acks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Setup:
    consumer: Consumer
    a: Gateway
    b: Gateway
    store: Path
    quarantine: Path

    def wait_processed(self, messages: int) -> None:
        """Wait until the consumer has read `messages` telemetry messages, and stored them."""
        wait_for(lambda: self.consumer.stats.messages >= messages, f"{messages} messages read")
        self.consumer.drain(WAIT_S)

    def readings(self) -> list[ParsedLine]:
        return (
            [p for p in read_lp_dir(self.store) if p.measurement == READINGS] if self.store.exists() else []
        )

    def quarantined(self) -> list[dict[str, Any]]:
        if not self.quarantine.exists():
            return []
        return [json.loads(x) for x in self.quarantine.read_text(encoding="utf-8").split("\n") if x]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    users = {name: secrets.token_urlsafe(16) for name in (GW_A, GW_B, CLOUD_USER)}
    passwords = write_password_file(tmp_path / "passwords", users)
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    registry = tmp_path / "registry.yaml"
    registry.write_text(REGISTRY, encoding="utf-8")
    secret = tmp_path / "cloud.password"
    secret.write_text(users[CLOUD_USER] + "\n")
    secret.chmod(0o600)
    with Mosquitto(
        tmp_path / "mosquitto", password_file=passwords, acl_file=acl, allow_anonymous=False
    ) as broker:
        raw: dict[str, Any] = {
            "mqtt": {
                "url": broker.url,
                "protocol": "5",
                "allow_insecure": True,
                "client_id": "spoof-test-consumer",
                "username": CLOUD_USER,
                "password_file": str(secret),
            },
            "registry": str(registry),
            "store": {"type": "lpfile", "path": str(tmp_path / "store")},
            "spool": {"path": str(tmp_path / "spool")},
            "alerts": {"log_path": str(tmp_path / "alerts.jsonl"), "publish": False},
            "quarantine_path": str(tmp_path / "quarantine.jsonl"),
        }
        consumer = Consumer(msgspec.convert(raw, ConsumerConfig), tmp_path / "consumer.yaml")
        consumer.start()
        a = b = None
        try:
            assert consumer.wait_ready(30), "the consumer did not subscribe (check its ACL)"
            a = Gateway(broker, GW_A, users[GW_A])
            b = Gateway(broker, GW_B, users[GW_B])
            yield Setup(consumer, a, b, tmp_path / "store", tmp_path / "quarantine.jsonl")
        finally:
            for gw in (a, b):
                if gw is not None:
                    gw.close()
            consumer.stop()


def test_publishing_on_another_gateways_topic_is_refused_by_the_broker(setup: Setup) -> None:
    t = time.time() - 600
    forged = telemetry(GW_B, 1, reading(SENSOR_B, t, 29.9))  # a fake flood level "from" B
    for channel in (topics.telemetry, topics.status, topics.health):
        rc = setup.a.publish(channel(TENANT, GW_B), forged)
        assert rc.is_failure and rc.value == NOT_AUTHORIZED, rc

    # B's genuine report, then A's own: once A's is read, the broker has routed everything before.
    genuine_b = telemetry(GW_B, 1, reading(SENSOR_B, t, 1.25))
    assert not setup.b.publish(topics.telemetry(TENANT, GW_B), genuine_b).is_failure
    own_a = telemetry(GW_A, 1, reading(SENSOR_A, t, 1.5))
    assert not setup.a.publish(topics.telemetry(TENANT, GW_A), own_a).is_failure
    setup.wait_processed(2)

    stats = setup.consumer.stats
    assert stats.messages == 2, "the consumer saw a forged message"
    assert stats.rejected_by_reason == {} and stats.security_events == 0
    assert stats.readings_accepted == 2
    stored = {(p.tags["gateway"], p.tags["sensor"], p.fields["value"]) for p in setup.readings()}
    assert stored == {(GW_B, SENSOR_B, 1.25), (GW_A, SENSOR_A, 1.5)}  # not the forged 29.9
    assert setup.quarantined() == []


def test_payload_claiming_another_gateway_is_rejected(setup: Setup) -> None:
    t = time.time() - 600
    own_topic = topics.telemetry(TENANT, GW_A)
    as_b = telemetry(GW_B, 1, reading(SENSOR_B, t, 29.9))
    as_other_tenant = telemetry(GW_A, 2, reading(SENSOR_A, t, 29.9), tenant="other-city")
    for payload in (as_b, as_other_tenant):
        assert not setup.a.publish(own_topic, payload).is_failure  # the broker cannot read payloads
    setup.wait_processed(2)

    stats = setup.consumer.stats
    assert stats.rejected_by_reason == {"topic_mismatch": 2}
    assert stats.rejected_by_gateway == {f"{TENANT}/{GW_A}": {"topic_mismatch": 2}}
    assert (stats.messages_rejected, stats.readings_accepted) == (2, 0)
    assert setup.readings() == []
    entries = setup.quarantined()
    assert [(e["reason"], e["topic"]) for e in entries] == [("topic_mismatch", own_topic)] * 2


def test_readings_of_another_gateways_sensors_are_rejected_and_its_own_kept(setup: Setup) -> None:
    t = time.time() - 600
    own_topic = topics.telemetry(TENANT, GW_A)
    mixed = telemetry(
        GW_A,
        7,
        reading(SENSOR_A, t, 1.5),
        reading(SENSOR_B, t + 1, 29.9),  # B's sensor, reported by A
        reading(SENSOR_A, t + 2, 1.6),
    )
    assert not setup.a.publish(own_topic, mixed).is_failure
    setup.wait_processed(1)

    stats = setup.consumer.stats
    assert stats.rejected_by_reason == {"unknown_sensor": 1}
    assert stats.security_events == 1
    assert stats.rejected_by_gateway == {f"{TENANT}/{GW_A}": {"unknown_sensor": 1}}
    assert (stats.messages_rejected, stats.readings_rejected, stats.readings_accepted) == (0, 1, 2)
    stored = sorted((p.tags["gateway"], p.tags["sensor"], p.fields["value"]) for p in setup.readings())
    assert stored == [(GW_A, SENSOR_A, 1.5), (GW_A, SENSOR_A, 1.6)]
    [entry] = setup.quarantined()
    assert (entry["reason"], entry["topic"], entry["seq"]) == ("unknown_sensor", own_topic, 7)
    assert json.loads(entry["payload"])["sensor"] == SENSOR_B
