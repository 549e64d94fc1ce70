"""Two consumer shards on one real Mosquitto (MQTT 5) split the gateways between them.

Shard 0 of 2 and shard 1 of 2 run in-process side by side with the same configured client id
(the shard suffix must keep their broker sessions apart), each with its own line-protocol store,
spool, alert state and quarantine.  Eight registered gateways in two tenants (the same gateway
ids in both: the tenant is part of the hash) publish valid telemetry over paho, and a gateway the
registry does not know publishes first.  Then:

- each consumer received and accounted exactly its own gateways' messages (sequence accounting
  keyed by gateway, message count), and nothing of the unknown gateway: a shard subscribes to
  its registered gateways' topics, not to wildcards;
- no gateway's readings are in both stores, and the two stores together hold every published
  reading exactly once, with its sample time and value.

A second test gives one shard a registry of 1500 gateways: it subscribes to over two thousand
exact topics, 100 per SUBSCRIBE packet, and hears its own gateways and only those.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from cloud.config import load_consumer_config
from cloud.consumer import Consumer
from cloud.points import READINGS
from cloud.shard import shard_of
from cloud.writers.lpfile import read_lp_dir
from tests.servers import Mosquitto
from tests.waiting import wait_for
from wire import topics
from wire.telemetry import Reading, Telemetry, encode

pytestmark = pytest.mark.integration

WAIT_S = 60.0  # generous: each step takes well under a second on an idle machine
SHARDS = 2
TENANTS = ("city-a", "city-b")
GATEWAY_IDS = ("gw-01", "gw-02", "gw-03", "gw-04")
MESSAGES_PER_GATEWAY = 6
READINGS_PER_MESSAGE = 3
KIND, UNIT = "river_level", "m"

Key = tuple[str, str]  # (tenant, gateway)
Point = tuple[str, str, str, int]  # (tenant, sensor, kind, sample time in ms)


def _sensor(gateway: str) -> str:
    return f"{gateway}-level"


def _registry(gateway_ids: tuple[str, ...] = GATEWAY_IDS) -> dict[str, Any]:
    gateways = [{"id": g, "tenant": t} for t in TENANTS for g in gateway_ids]
    return {
        "tenants": [{"id": t, "name": t} for t in TENANTS],
        "sites": [{"id": "river", "tenant": t, "name": f"{t} river", "type": "river"} for t in TENANTS],
        "gateways": gateways,
        "sensors": [
            {
                "id": _sensor(g["id"]),
                "tenant": g["tenant"],
                "gateway": g["id"],
                "site": "river",
                "channels": {KIND: {"unit": UNIT, "range": [-2.0, 30.0]}},
            }
            for g in gateways
        ],
    }


def _owner(key: Key) -> int:
    return shard_of(key[0], key[1], SHARDS)


def _config(directory: Path, mosquitto: Mosquitto, registry: Path, index: int, count: int = SHARDS) -> Path:
    """A consumer config with every file of its own in `directory` (paths relative to it)."""
    directory.mkdir()
    raw = {
        # The same configured id for both: the "-s{index}of{count}" suffix must tell them apart,
        # or the broker would hand one session back and forth between the two.
        "mqtt": {"url": mosquitto.url, "protocol": "5", "allow_insecure": True, "client_id": "it-shard"},
        "registry": str(registry),
        "store": {"type": "lpfile", "path": "store"},
        "spool": {"path": "spool"},
        "alerts": {"log_path": "alerts.jsonl", "state_path": "alerts.db", "publish": False},
        "quarantine_path": "quarantine.jsonl",
        "shard": {"index": index, "count": count},
    }
    path = directory / "consumer.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def _messages(t0: datetime) -> tuple[list[tuple[str, bytes]], dict[Point, float]]:
    """(topic, payload) of every gateway's telemetry, interleaved across gateways as live
    traffic is, and the readings they carry: point -> value."""
    published: list[tuple[str, bytes]] = []
    expected: dict[Point, float] = {}
    for seq in range(1, MESSAGES_PER_GATEWAY + 1):
        for g_index, (tenant, gateway) in enumerate((t, g) for t in TENANTS for g in GATEWAY_IDS):
            readings = []
            for r in range(READINGS_PER_MESSAGE):
                ts = t0 + timedelta(minutes=(seq - 1) * READINGS_PER_MESSAGE + r)
                value = round(1.0 + g_index + seq / 100 + r / 1000, 3)
                readings.append(Reading(_sensor(gateway), KIND, ts, value, UNIT))
                expected[(tenant, _sensor(gateway), KIND, int(ts.timestamp() * 1000))] = value
            message = Telemetry(1, tenant, gateway, seq, datetime.now(UTC), readings)
            published.append((topics.telemetry(tenant, gateway), encode(message)))
    return published, expected


def _publish(mosquitto: Mosquitto, messages: list[tuple[str, bytes]]) -> None:
    """QoS 1 from one connection, in order; returns once the broker acknowledged every one."""
    acked: set[int] = set()
    lock = threading.Lock()
    done = threading.Event()

    def on_publish(_c: Any, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        with lock:
            acked.add(mid)
            if len(acked) == len(messages):
                done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="it-shard-gateways", protocol=mqtt.MQTTv5)
    client.on_publish = on_publish
    client.max_inflight_messages_set(100)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1)
        assert done.wait(WAIT_S), f"broker acknowledged {len(acked)} of {len(messages)} publishes"
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def consumers(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[list[Consumer]]:
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump(_registry(), allow_unicode=True), encoding="utf-8")
    started: list[Consumer] = []
    try:
        for index in range(SHARDS):
            path = _config(tmp_path / f"shard-{index}", mosquitto, registry, index)
            consumer = Consumer(load_consumer_config(path), path)
            consumer.start()
            started.append(consumer)
        for consumer in started:
            assert consumer.wait_ready(WAIT_S), f"{consumer.client_id} did not subscribe"
        yield started
    finally:
        for consumer in started:
            consumer.stop()


def test_each_gateway_is_handled_by_exactly_one_shard(
    tmp_path: Path, mosquitto: Mosquitto, consumers: list[Consumer]
) -> None:
    keys = [(t, g) for t in TENANTS for g in GATEWAY_IDS]
    owned = {i: {k for k in keys if _owner(k) == i} for i in range(SHARDS)}
    assert all(owned.values()), f"the fixture's gateways must spread over both shards: {owned}"
    assert len({c.client_id for c in consumers}) == SHARDS
    assert consumers[0].client_id == "it-shard-s0of2"
    for i, consumer in enumerate(consumers):
        assert len(consumer.subscriptions) == 3 * len(owned[i])

    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    messages, expected = _messages(t0)
    # First: a gateway the registry does not know.  Wildcard subscribers would receive (and
    # reject) it; a shard subscribes only to registered gateways, so neither hears of it.
    rogue = Telemetry(1, "city-a", "gw-rogue", 1, datetime.now(UTC), [Reading("x", KIND, t0, 1.0, UNIT)])
    _publish(mosquitto, [(topics.telemetry("city-a", "gw-rogue"), encode(rogue)), *messages])

    want = {i: MESSAGES_PER_GATEWAY * len(owned[i]) for i in range(SHARDS)}
    wait_for(
        lambda: all(c.stats.messages >= want[i] for i, c in enumerate(consumers)),
        f"messages {want} (have {[c.stats.messages for c in consumers]})",
    )
    for consumer in consumers:
        consumer.drain(WAIT_S)
    stats = [c.stats for c in consumers]
    for consumer in consumers:
        consumer.stop()  # closes the store files; the fixture's stop() is then a no-op

    stores: list[Counter[Point]] = []
    for i, st in enumerate(stats):
        gateways = {f"{t}/{g}" for t, g in owned[i]}
        assert st.messages == want[i], (i, st.summary())
        assert st.messages_rejected == 0 and st.readings_rejected == 0, (i, st.rejected_by_reason)
        assert st.readings_accepted == want[i] * READINGS_PER_MESSAGE
        assert set(st.sequences) == gateways, (i, sorted(st.sequences))
        assert all(q.lost == q.duplicated == q.reordered == 0 for q in st.sequences.values())

        points: Counter[Point] = Counter()
        stored_gateways: set[str] = set()
        for line in read_lp_dir(tmp_path / f"shard-{i}" / "store"):
            if line.measurement != READINGS:
                continue
            tags = line.tags
            stored_gateways.add(f"{tags['tenant']}/{tags['gateway']}")
            point = (tags["tenant"], tags["sensor"], tags["kind"], line.ts_ms)
            points[point] += 1
            assert line.fields["value"] == expected[point], point
        assert stored_gateways == gateways, i
        stores.append(points)

    assert not set(stores[0]) & set(stores[1]), "a reading stored by both shards"
    union = stores[0] + stores[1]
    assert set(union) == set(expected), "readings missing from both stores"
    assert max(union.values()) == 1, [p for p, n in union.items() if n > 1][:5]


def test_a_shard_of_a_large_registry_subscribes_in_batches(tmp_path: Path, mosquitto: Mosquitto) -> None:
    gateway_ids = tuple(f"gw-{i:04d}" for i in range(750))  # in each of the two tenants
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump(_registry(gateway_ids)), encoding="utf-8")
    keys = [(t, g) for t in TENANTS for g in gateway_ids]
    owned = [k for k in keys if _owner(k) == 0]
    path = _config(tmp_path / "shard-0", mosquitto, registry, 0)
    consumer = Consumer(load_consumer_config(path), path)
    assert len(consumer.subscriptions) == 3 * len(owned) > 2000
    consumer.start()
    try:
        assert consumer.wait_ready(WAIT_S), "not every SUBSCRIBE batch was acknowledged"
        # One message from each of 40 gateways spread over the registry, the ones it does not
        # own first: had it subscribed to them, they would arrive before its own last one.
        sample = sorted(keys[:: len(keys) // 40][:40], key=lambda k: _owner(k) == 0)
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
        messages = [
            (
                topics.telemetry(t, g),
                encode(Telemetry(1, t, g, 1, datetime.now(UTC), [Reading(_sensor(g), KIND, t0, 1.5, UNIT)])),
            )
            for t, g in sample
        ]
        _publish(mosquitto, messages)
        mine = {f"{t}/{g}" for t, g in sample if _owner((t, g)) == 0}
        assert 0 < len(mine) < len(sample)
        wait_for(lambda: consumer.stats.messages >= len(mine), f"{len(mine)} messages")
        consumer.drain(WAIT_S)
        stats = consumer.stats
    finally:
        consumer.stop()
    assert stats.messages == len(mine) and stats.readings_accepted == len(mine), stats.summary()
    assert set(stats.sequences) == mine
