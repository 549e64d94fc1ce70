"""A gateway flooding garbage does not slow the others (real Mosquitto, consumer in-process).

While the consumer is away, gateway gw66 publishes thousands of messages, each with 200 readings
of sensors that are not its own (the costly kind: every reading is checked, counted and
quarantined), and then gw01 publishes a river level crossing its first stage threshold.  The
broker delivers the backlog in order when the consumer comes back, so the crossing is queued
behind the whole flood.  Its alert must come within seconds, not after the flood has been read
(0.8 s here against 5.8 s with the guard off); gw66 must be throttled (its surplus rejected unread as
`rate_limited`), and the quarantine must hold samples of the flood, not every message.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cloud.config import ConsumerConfig
from cloud.consumer import Consumer
from tests.servers import Mosquitto
from wire import topics
from wire.alerts import Alert

pytestmark = pytest.mark.integration

REGISTRY = Path(__file__).resolve().parents[2] / "deploy" / "cloud" / "registry.demo.yaml"
FLOOD = 3_000  # messages
BAD_READINGS = 200  # per message


def river(seq: int, *points: tuple[float, float]) -> bytes:
    readings = [
        {
            "sensor": "river-radar-01",
            "kind": "river_level",
            "ts": datetime.fromtimestamp(t, tz=UTC).isoformat(),
            "value": v,
            "unit": "m",
        }
        for t, v in points
    ]
    sent = datetime.now(tz=UTC).isoformat()
    return json.dumps(
        {"v": 1, "tenant": "demo-city", "gateway": "gw01", "seq": seq, "sent": sent, "readings": readings}
    ).encode()


def client(broker: Mosquitto, cid: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=MQTTProtocolVersion.MQTTv5)
    c.max_queued_messages_set(0)
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def flood_message(seq: int, ts: str) -> bytes:
    readings = [
        {"sensor": f"stolen-{i}", "kind": "river_level", "ts": ts, "value": 1.0, "unit": "m"}
        for i in range(BAD_READINGS)
    ]
    msg = {"v": 1, "tenant": "demo-city", "gateway": "gw66", "seq": seq, "sent": ts, "readings": readings}
    return json.dumps(msg).encode()


def test_a_flooding_gateway_is_throttled_and_others_keep_their_latency(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    raw: dict[str, Any] = {
        "mqtt": {
            "url": mosquitto.url,
            "protocol": "5",
            "allow_insecure": True,
            "client_id": "flood-consumer",
        },
        "registry": str(REGISTRY),
        "store": {"type": "lpfile", "path": str(tmp_path / "store")},
        "spool": {"path": str(tmp_path / "spool")},
        "alerts": {"log_path": str(tmp_path / "alerts.jsonl"), "state_path": str(tmp_path / "alerts.db")},
        "quarantine_path": str(tmp_path / "quarantine.jsonl"),
    }
    config = msgspec.convert(raw, ConsumerConfig)
    first = Consumer(config, tmp_path / "consumer.yaml")  # creates the persistent session
    first.start()
    assert first.wait_ready(15)
    first.stop()

    good = client(mosquitto, "gw01")
    bad = client(mosquitto, "gw66")
    now = time.time()
    ts = datetime.fromtimestamp(now - 60, tz=UTC).isoformat()
    infos = [good.publish(topics.telemetry("demo-city", "gw01"), river(1, (now - 5 * 3600, 1.0)), qos=1)]
    infos += [
        bad.publish(topics.telemetry("demo-city", "gw66"), flood_message(i, ts), qos=1) for i in range(FLOOD)
    ]
    for info in infos:  # all in the broker's queue for the consumer before the crossing
        info.wait_for_publish(60)
    crossing = good.publish(topics.telemetry("demo-city", "gw01"), river(2, (now - 4 * 3600, 2.1)), qos=1)
    crossing.wait_for_publish(60)

    consumer = Consumer(config, tmp_path / "consumer.yaml")
    alerts: list[tuple[float, Alert]] = []
    consumer.on_alert.append(
        lambda a: alerts.append((time.monotonic(), a)) if a.condition == "level" else None
    )

    def flood_seen() -> int:
        s = consumer.stats.rejected_by_gateway.get("demo-city/gw66", {})
        return s.get("unknown_sensor", 0) // BAD_READINGS + s.get("rate_limited", 0)

    try:
        started = time.monotonic()
        consumer.start()
        deadline = time.monotonic() + 120
        while not alerts:
            assert time.monotonic() < deadline, f"no alert; {consumer.stats.summary()}"
            time.sleep(0.005)
        latency = alerts[0][0] - started
        seen_before = flood_seen()
        consumer.drain(30)
        stats = consumer.stats
    finally:
        for c in (good, bad):
            c.disconnect()
            c.loop_stop()
        consumer.stop()

    assert alerts[0][1].level == 1
    rate_limited = stats.rejected_by_reason.get("rate_limited", 0)
    read = stats.rejected_by_reason.get("unknown_sensor", 0) // BAD_READINGS
    print(
        f"\nflood of {FLOOD} messages x {BAD_READINGS} foreign readings queued ahead of a crossing: "
        f"{read} read, {rate_limited} rejected unread; the crossing alerted {latency:.2f} s after the "
        f"consumer started"
    )
    assert seen_before == FLOOD, "the crossing was not queued behind the flood"
    assert latency < 10.0
    assert stats.readings_accepted == 2
    assert read + rate_limited == FLOOD
    # Read: the default burst of 200 bad messages, then 10 per second while it lasted.
    assert read <= 200 + 10 * (latency + 5), read
    assert stats.rejected_by_gateway["demo-city/gw66"]["rate_limited"] == rate_limited
    quarantined = (tmp_path / "quarantine.jsonl").read_text().splitlines()
    assert len(quarantined) < read * BAD_READINGS + 60  # the unread ones: one sample per second
    assert any("rejected unread" in json.loads(q)["detail"] for q in quarantined)
