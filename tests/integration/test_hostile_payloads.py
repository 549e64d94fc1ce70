"""A hostile gateway floods a real broker while a good one reports: nothing good is lost, nothing
bad gets in, and every bad message is accounted for.

Real Mosquitto; the consumer runs in-process (`Consumer`, lpfile store, disk spool).  At the same
time, from two MQTT clients:
- the good gateway publishes valid telemetry (numbered, 5 readings a message);
- the hostile gateway publishes, on its own telemetry topic, the whole corpus of tests/hostile.py
  (bad encodings, 100k-bracket nesting, NaN, oversize, injections, spoofed identities ...) and a
  few thousand random byte payloads.
Then the good gateway publishes once more: the consumer must still be working.

Checked afterwards: every good reading is in the store exactly once and no hostile one is; every
hostile message is counted under exactly one reason, the counts per reason match what was sent
(the corpus says each entry's reason; a random payload's is what the decoder says of it), the
quarantine file holds each rejection with its reason, and the good gateway has no rejection.

The flood guard (cloud/throttle.py) would throttle the hostile gateway after `bad_burst`
rejections; the burst is set out of reach here so that every payload is read, and a
`rate_limited` count is still accepted as an account of a message (not of its content).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cloud.config import ConsumerConfig
from cloud.consumer import Consumer
from cloud.points import READINGS
from cloud.writers.lpfile import read_lp_dir
from tests import hostile
from tests.hostile import GOOD_GATEWAY, GOOD_SENSOR, HOSTILE_GATEWAY, KIND, TENANT, UNIT
from tests.servers import Mosquitto
from tests.waiting import wait_for
from wire import topics
from wire.telemetry import DecodeError, RejectReason, decode_telemetry

pytestmark = pytest.mark.integration

GOOD_MESSAGES = 200
READINGS_PER_MESSAGE = 5
RANDOM_PAYLOADS = 3000
WAIT_S = 120.0  # generous: a loaded 2-core box, fsync'd spool
GOOD_KEY = f"{TENANT}/{GOOD_GATEWAY}"
HOSTILE_KEY = f"{TENANT}/{HOSTILE_GATEWAY}"
RATE_LIMITED = RejectReason.RATE_LIMITED.value


class Client:
    """An MQTT 5 publisher (QoS 1) that remembers its publishes to wait for their PUBACKs."""

    def __init__(self, broker: Mosquitto, client_id: str) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        connected = threading.Event()
        self.client.on_connect = lambda *_a: connected.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert connected.wait(30), f"{client_id}: no CONNACK"
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self.infos.append(self.client.publish(topic, payload, qos=1))

    def wait_acknowledged(self) -> None:
        wait_for(lambda: all(i.is_published() for i in self.infos), "PUBACKs from the broker", WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def good_message(seq: int, t0: float, now: float) -> bytes:
    """Valid telemetry of the good gateway: 5 readings one second apart, unique sample times."""
    readings = [
        {
            "sensor": GOOD_SENSOR,
            "kind": KIND,
            "ts": hostile.iso(t0 + seq * READINGS_PER_MESSAGE + i),
            "value": round(1.0 + ((seq * READINGS_PER_MESSAGE + i) % 11) / 100, 2),  # a calm river
            "unit": UNIT,
        }
        for i in range(READINGS_PER_MESSAGE)
    ]
    msg = {"v": 1, "tenant": TENANT, "gateway": GOOD_GATEWAY, "seq": seq, "sent": hostile.iso(now)}
    return json.dumps({**msg, "readings": readings, "stream": "a1"}).encode()


def random_payloads(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.choice((0, 1, 2, 8, 64, 512, rng.randrange(1024)))) for _ in range(count)]


def reason_of(payload: bytes, now: float) -> str:
    """What the consumer must count a random payload under: the decoder's verdict (random bytes
    never pass it; whatever is neither JSON nor UTF-8 is malformed by the contract)."""
    try:
        decode_telemetry(payload, now=now)
    except DecodeError as exc:
        return exc.reason.value
    except Exception:
        return RejectReason.MALFORMED.value
    raise AssertionError(f"a random payload decoded: {payload!r}")


@pytest.fixture
def consumer(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Consumer]:
    raw: dict[str, Any] = {
        "mqtt": {
            "url": mosquitto.url,
            "protocol": "5",
            "allow_insecure": True,
            "client_id": "hostile-test-consumer",
        },
        "registry": str(hostile.write_registry(tmp_path)),
        "store": {"type": "lpfile", "path": str(tmp_path / "store")},
        "spool": {"path": str(tmp_path / "spool")},
        "alerts": {"log_path": str(tmp_path / "alerts.jsonl"), "publish": False},
        "quarantine_path": str(tmp_path / "quarantine.jsonl"),
        "validation": {"bad_burst": 1_000_000},
    }
    c = Consumer(msgspec.convert(raw, ConsumerConfig), tmp_path / "consumer.yaml")
    c.start()
    try:
        assert c.wait_ready(30), "the consumer did not subscribe"
        yield c
    finally:
        c.stop()


def test_hostile_flood_next_to_a_good_gateway(
    tmp_path: Path, mosquitto: Mosquitto, consumer: Consumer
) -> None:
    now = time.time()
    t0 = int(now) - 2 * 3600  # sample times of the good gateway: recent, one second apart
    corpus = hostile.corpus(now)
    noise = random_payloads(seed=6, count=RANDOM_PAYLOADS)
    expected: Counter[str] = Counter(c.reason.value for c in corpus)
    expected.update(reason_of(p, now) for p in noise)
    hostile_topic = topics.telemetry(TENANT, HOSTILE_GATEWAY)
    good_topic = topics.telemetry(TENANT, GOOD_GATEWAY)

    good = Client(mosquitto, GOOD_GATEWAY)
    bad = Client(mosquitto, HOSTILE_GATEWAY)

    def flood() -> None:
        for case in corpus:
            bad.publish(case.topic, case.payload)
        for payload in noise:
            bad.publish(hostile_topic, payload)

    flooder = threading.Thread(target=flood, name="hostile-publisher")
    flooder.start()
    for seq in range(1, GOOD_MESSAGES + 1):
        good.publish(good_topic, good_message(seq, t0, now))
        time.sleep(0.002)  # spread over the flood
    flooder.join(WAIT_S)
    assert not flooder.is_alive()
    good.wait_acknowledged()
    bad.wait_acknowledged()
    sent_bad = len(corpus) + len(noise)

    # Still working after the flood: one more good message gets through.
    last = GOOD_MESSAGES + 1
    good.publish(good_topic, good_message(last, t0, time.time()))
    good.wait_acknowledged()
    total = sent_bad + last
    wait_for(lambda: consumer.stats.messages >= total, f"the consumer to read {total} messages", WAIT_S)
    consumer.drain(WAIT_S)
    good.close()
    bad.close()
    stats = consumer.stats

    # Every good reading stored exactly once; nothing of the hostile gateway's.
    points = [p for p in read_lp_dir(tmp_path / "store") if p.measurement == READINGS]
    stored = Counter((p.tags["gateway"], p.tags["sensor"], p.ts_ms) for p in points)
    want = {
        (GOOD_GATEWAY, GOOD_SENSOR, (t0 + seq * READINGS_PER_MESSAGE + i) * 1000)
        for seq in range(1, last + 1)
        for i in range(READINGS_PER_MESSAGE)
    }
    assert set(stored) == want, f"missing {len(want - set(stored))}, unexpected {set(stored) - want}"
    assert all(n == 1 for n in stored.values()), [k for k, n in stored.items() if n > 1][:5]
    assert stats.readings_accepted == len(want)
    assert stats.messages == total

    # Every hostile message counted once, under the reason it was sent for; the good gateway clean.
    assert GOOD_KEY not in stats.rejected_by_gateway, stats.rejected_by_gateway[GOOD_KEY]
    by_reason = Counter(stats.rejected_by_gateway.get(HOSTILE_KEY, {}))
    assert sum(by_reason.values()) == sent_bad, by_reason
    assert Counter(stats.rejected_by_reason) == by_reason, "no rejection counted under another gateway"
    quarantine = Counter(e["reason"] for e in quarantined(tmp_path / "quarantine.jsonl"))
    if RATE_LIMITED in by_reason:  # throttled after all: those messages were not read
        assert all(by_reason[r] <= expected[r] for r in expected), (by_reason, expected)
        assert all(quarantine[r] == by_reason[r] for r in expected), (quarantine, by_reason)
    else:
        assert by_reason == expected, diff(by_reason, expected)
        assert quarantine == expected, diff(quarantine, expected)
    per_reading = sum(1 for c in corpus if c.per_reading)
    assert (stats.messages_rejected, stats.readings_rejected) == (sent_bad - per_reading, per_reading)


def quarantined(path: Path) -> list[dict[str, Any]]:
    """Entries of the quarantine file, split on "\\n" only (see test_decoder_fuzz.quarantined)."""
    return [json.loads(x) for x in path.read_text(encoding="utf-8").split("\n") if x]


def diff(got: Counter[str], want: Counter[str]) -> str:
    keys = sorted(set(got) | set(want))
    return "; ".join(f"{k}: got {got[k]}, sent {want[k]}" for k in keys if got[k] != want[k])
