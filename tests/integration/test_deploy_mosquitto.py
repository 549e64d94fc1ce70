"""The shipped broker config (deploy/mosquitto/) in a real Mosquitto: TLS only, no anonymous
access, and a gateway can write only its own topics.  Paths and the port are the only changes."""

from __future__ import annotations

import os
import pwd
import secrets
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from bosai.paths import REPO_ROOT
from tests.servers import Mosquitto, write_password_file
from wire import topics

pytestmark = pytest.mark.integration

DEPLOY = REPO_ROOT / "deploy" / "mosquitto"


class DeployedMosquitto(Mosquitto):
    """Mosquitto running deploy/mosquitto/bosai.conf with test paths and a free port."""

    def __init__(self, workdir: Path, passwords: Path, acl: Path) -> None:
        self._passwords, self._acl = passwords, acl
        super().__init__(workdir, tls=True)

    def _config(self, **_: Any) -> str:
        assert self.tls is not None
        replace = {
            "password_file": f"password_file {self._passwords}",
            "acl_file": f"acl_file {self._acl}",
            "listener": f"listener {self.port} 127.0.0.1",
            "certfile": f"certfile {self.tls.cert_file}",
            "keyfile": f"keyfile {self.tls.key_file}",
            "cafile": f"cafile {self.tls.ca_file}",
            "persistence_location": f"persistence_location {self.workdir}/",
        }
        # As root, Mosquitto would drop to user "mosquitto", which cannot read the test's files.
        user = pwd.getpwuid(os.getuid()).pw_name
        out = [f"user {user}", f"log_dest file {self.log_path}", "log_type all"]
        for line in (DEPLOY / "bosai.conf").read_text().splitlines():
            key = line.split(" ", 1)[0]
            out.append(replace.get(key, line))
        return "\n".join(out) + "\n"


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    users = {"gw01": secrets.token_urlsafe(16), "gw02": secrets.token_urlsafe(16)}
    users["bosai-cloud"] = secrets.token_urlsafe(16)
    passwords = write_password_file(tmp_path / "passwords", users)
    acl = tmp_path / "acl"
    acl.write_text(
        (DEPLOY / "acl.example").read_text() + "\nuser gw02\ntopic write bosai/v1/demo-city/gw02/telemetry\n"
    )
    with DeployedMosquitto(tmp_path / "broker", passwords, acl) as server:
        yield server, users


def _client(server: Mosquitto, user: str | None, password: str | None) -> tuple[mqtt.Client, ReasonCode]:
    connected = threading.Event()
    result: list[ReasonCode] = []

    def on_connect(_c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        result.append(rc)
        connected.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user or "anon", protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(server.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if user:
        client.username_pw_set(user, password)
    client.on_connect = on_connect
    client.connect("127.0.0.1", server.port)
    client.loop_start()
    assert connected.wait(10), "no CONNACK"
    return client, result[0]


def _publish(client: mqtt.Client, topic: str) -> ReasonCode:
    done = threading.Event()
    codes: list[ReasonCode] = []

    def on_publish(_c: Any, _u: Any, _mid: int, rc: ReasonCode, _p: Any) -> None:
        codes.append(rc)
        done.set()

    client.on_publish = on_publish
    client.publish(topic, b"{}", qos=1)
    assert done.wait(10), "no PUBACK"
    return codes[0]


def test_anonymous_and_wrong_password_are_refused(broker: Any) -> None:
    server, users = broker
    anon, rc = _client(server, None, None)
    anon.loop_stop()
    assert rc.is_failure
    wrong, rc = _client(server, "gw01", users["gw02"])
    wrong.loop_stop()
    assert rc.is_failure


def test_gateway_writes_only_its_own_topics(broker: Any) -> None:
    server, users = broker
    received: list[str] = []
    subscribed = threading.Event()
    cloud, rc = _client(server, "bosai-cloud", users["bosai-cloud"])
    assert not rc.is_failure
    cloud.on_message = lambda _c, _u, m: received.append(m.topic)
    cloud.on_subscribe = lambda *_a: subscribed.set()
    cloud.subscribe(topics.telemetry_filter(), qos=1)
    assert subscribed.wait(10)

    gw, rc = _client(server, "gw01", users["gw01"])
    assert not rc.is_failure
    own = topics.telemetry("demo-city", "gw01")
    other = topics.telemetry("demo-city", "gw02")
    assert not _publish(gw, own).is_failure
    denied = _publish(gw, other)
    assert denied.is_failure, denied  # MQTT 5 tells the gateway: not authorized

    # A gateway subscribing to everything gets nothing it may not read.  (Mosquitto grants the
    # SUBACK for "#" and enforces the ACL on every delivery.)
    snooped: list[str] = []
    sub_done = threading.Event()
    gw.on_message = lambda _c, _u, m: snooped.append(m.topic)
    gw.on_subscribe = lambda *_a: sub_done.set()
    gw.subscribe("#", qos=1)
    assert sub_done.wait(10)
    gw2, rc = _client(server, "gw02", users["gw02"])
    assert not rc.is_failure
    assert not _publish(gw2, other).is_failure
    # The cloud publishes alert state (sensor and gateway alerts); no gateway may read it.
    for alert_topic in (
        topics.alert("demo-city", "site-1", "sensor-1", "river_level", "level"),
        topics.gateway_alert("demo-city", "gw02", "gateway_offline"),
    ):
        assert not _publish(cloud, alert_topic).is_failure
    gw2.loop_stop()

    _publish(gw, own)  # a marker: once it is delivered, everything before it has been routed
    deadline = time.monotonic() + 10
    while received.count(own) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    for client in (gw, cloud):
        client.loop_stop()
    assert received.count(own) == 2
    assert received.count(other) == 1  # gw02's own message, not gw01's forged one
    assert snooped == [], snooped
