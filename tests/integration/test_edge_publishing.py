"""The edge agent's publishing against a real Mosquitto: send order after an outage (live first,
urgent backlog next, the rest at the bounded replay rate), no deletion while nobody subscribes,
the birth message and health, and adaptive reporting on a simulated flood."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge.agent import Agent
from edge.config import config_hash, load_gateway
from edge.outbox import Outbox
from edge.publisher import Publisher
from simulators.gateway_config import write_gateway_config
from tests.servers import Mosquitto
from tests.simulated import serve
from wire import topics
from wire.clock import RealClock
from wire.mqttconf import MqttConfig
from wire.status import Status, health_decoder, status_decoder
from wire.telemetry import Quality, Telemetry, decode_telemetry

pytestmark = pytest.mark.integration

TENANT, GATEWAY = "demo-city", "gw01"


class Recorder:
    """An independent subscriber: every message on `topic_filter`, with its arrival time."""

    def __init__(self, broker: Mosquitto, topic_filter: str, client_id: str = "recorder") -> None:
        self.messages: list[tuple[float, str, bytes, bool]] = []  # (monotonic, topic, payload, retain)
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_a: subscribed.set()
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        self._client.subscribe(topic_filter, qos=1)
        assert subscribed.wait(10)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((time.monotonic(), msg.topic, bytes(msg.payload), bool(msg.retain)))

    def snapshot(self) -> list[tuple[float, str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def payload(seq: int, readings: list[bytes]) -> bytes:
    return json.dumps({"seq": seq, "n": [json.loads(r)["n"] for r in readings]}).encode()


def put(box: Outbox, n: int, urgent: bool) -> list[Any]:
    box.stage([json.dumps({"n": n}).encode()], urgent=urgent, created=float(n))
    return box.seal(payload, max_readings=10, max_bytes=10**6, created=float(n))


def publisher(broker: Mosquitto, box: Outbox, tmp_path: Path, **kw: Any) -> Publisher:
    cfg = MqttConfig(url=broker.url, allow_insecure=True, keepalive=10, client_id="test-gw")
    return Publisher(cfg, TENANT, GATEWAY, box, RealClock(), config_path=tmp_path / "gw.yaml", **kw)


def test_live_first_then_urgent_backlog_then_the_rest_at_the_replay_rate(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    normal_early = [s.seq for n in range(5) for s in put(box, n, urgent=False)]
    urgent = [s.seq for n in range(5, 8) for s in put(box, n, urgent=True)]
    normal_late = [s.seq for n in range(8, 68) for s in put(box, n, urgent=False)]
    recorder = Recorder(mosquitto, topics.telemetry(TENANT, GATEWAY))
    rate = 20.0
    live: list[tuple[float, int]] = []  # (monotonic when sealed, seq)

    async def main() -> Publisher:
        pub = publisher(mosquitto, box, tmp_path, replay_rate=rate)
        pub.start()
        while not pub.connected:
            await asyncio.sleep(0.01)
        for n in range(100, 115):  # a live message every 0.1 s while the backlog replays
            (sealed,) = put(box, n, urgent=False)
            live.append((time.monotonic(), sealed.seq))
            pub.enqueue([sealed])
            await asyncio.sleep(0.1)
        assert await pub.drain(30)
        await pub.stop()
        return pub

    try:
        asyncio.run(main())
        wait_until(lambda: len(recorder.snapshot()) >= 83, 10, "every message")
    finally:
        recorder.close()
    arrivals = [(t, json.loads(p)["seq"]) for t, _, p, _ in recorder.snapshot()]
    order = [seq for _, seq in arrivals]
    assert sorted(order) == sorted(normal_early + urgent + normal_late + [s for _, s in live])  # each once
    backlog = [seq for seq in order if seq not in {s for _, s in live}]
    assert backlog == urgent + normal_early + normal_late  # urgent first, then oldest first
    # Live messages do not wait for the backlog: each arrives promptly, most before it ends.
    arrived = dict((seq, t) for t, seq in arrivals)
    assert all(arrived[seq] - sealed_at < 1.0 for sealed_at, seq in live)
    last_backlog = max(arrived[s] for s in backlog)
    assert sum(arrived[seq] < last_backlog for _, seq in live) >= 10
    # Bounded replay: beyond the first second's burst, at most `rate` backlog messages a second.
    span = last_backlog - min(arrived[s] for s in backlog)
    assert span >= (len(backlog) - rate) / rate * 0.9
    assert box.depth == 0


def test_nothing_is_deleted_while_no_consumer_subscribes(tmp_path: Path, mosquitto: Mosquitto) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    seqs = [s.seq for n in range(3) for s in put(box, n, urgent=False)]
    recorder: Recorder | None = None

    async def main() -> Publisher:
        nonlocal recorder
        pub = publisher(mosquitto, box, tmp_path)
        pub.start()
        await asyncio.sleep(2.0)
        # The broker said "no matching subscribers": everything is still in the outbox.
        assert pub.unrouted >= 3 and box.depth == 3
        recorder = Recorder(mosquitto, topics.telemetry(TENANT, GATEWAY))
        deadline = time.monotonic() + 20
        while box.depth and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            pub.flush_acks()
        await pub.stop()
        return pub

    try:
        asyncio.run(main())
        assert recorder is not None
        wait_until(lambda: recorder is not None and len(recorder.snapshot()) >= 3, 5, "the held messages")
        got = sorted(json.loads(p)["seq"] for _, _, p, _ in recorder.snapshot())
    finally:
        if recorder is not None:
            recorder.close()
    assert box.depth == 0
    assert got == seqs


def _gateway_yaml(path: Path, **publish: Any) -> None:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["publish"] = {**raw.get("publish", {}), **publish}
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_birth_message_health_and_will(tmp_path: Path, mosquitto: Mosquitto) -> None:
    recorder = Recorder(mosquitto, f"bosai/v1/{TENANT}/{GATEWAY}/+")
    agents: list[Agent] = []

    async def body(sims: Any, endpoints: Any, clock: Any) -> None:
        gw_path = write_gateway_config(endpoints, mosquitto.url, tmp_path / "gw.yaml", interval=60.0)
        _gateway_yaml(gw_path, health_interval=120.0, batch_interval=30.0)  # 2 s / 0.5 s real at 60x
        agent = Agent(load_gateway(gw_path), clock)
        agents.append(agent)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            healths = [p for _, t, p, _ in recorder.snapshot() if t.endswith("/health")]
            if len(healths) >= 2:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await task

    try:
        serve("quiet-day", body, tmp_path, at=3600.0, speed=60.0, timeout=60)
        wait_until(
            lambda: any(
                status_decoder.decode(p).state == "offline"
                for _, t, p, _ in recorder.snapshot()
                if t.endswith("/status")
            ),
            5,
            "the offline status",
        )
        messages = recorder.snapshot()
    finally:
        recorder.close()
    (agent,) = agents
    statuses: list[Status] = [status_decoder.decode(p) for _, t, p, _ in messages if t.endswith("/status")]
    assert statuses[0].state == "online" and statuses[-1].state == "offline"
    assert statuses[0].config_hash == config_hash(agent.gateway) == agent.config_hash
    assert statuses[0].config_hash.startswith("sha256:") and statuses[0].agent_version
    healths = [health_decoder.decode(p) for _, t, p, _ in messages if t.endswith("/health")]
    assert len(healths) >= 2
    h = healths[-1]
    assert (h.tenant, h.gateway, h.config_hash) == (TENANT, GATEWAY, agent.config_hash)
    assert set(h.sensors) == {s.id for s in agent.gateway.config.sensors}
    for sensor_id, s in h.sensors.items():
        assert s.polls >= 1 and s.errors == 0 and not s.failing, sensor_id
        assert s.quality == Quality.OK and s.last_ok is not None, sensor_id
        assert s.reported == s.polls and s.suppressed == 0 and not s.fast  # no report policy
    assert h.outbox_dropped == 0 and h.uptime_s > 0
    # Retained: a late subscriber gets the latest health and the offline status at once.
    late = Recorder(mosquitto, f"bosai/v1/{TENANT}/{GATEWAY}/+", client_id="late")
    try:
        wait_until(lambda: len(late.snapshot()) >= 2, 5, "retained messages")
        assert all(retain for *_, retain in late.snapshot())
    finally:
        late.close()


FLOOD_SENSOR = "river-pt-02"
CROSSING_S = 8.4 * 3600  # typhoon-flood: the river reaches 2.0 m (standby) at 8.4 h


def test_adaptive_reporting_on_a_simulated_flood(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Quiet river: reported on change or on the heartbeat only.  Once the stage nears the standby
    level: fast mode, every 2 min, every sample sent and urgent."""
    recorder = Recorder(mosquitto, topics.telemetry(TENANT, GATEWAY))
    start_at = CROSSING_S - 3 * 3600

    async def body(sims: Any, endpoints: Any, clock: Any) -> None:
        gw_path = write_gateway_config(endpoints, mosquitto.url, tmp_path / "gw.yaml", interval=600.0)
        raw = yaml.safe_load(gw_path.read_text(encoding="utf-8"))
        for sensor in raw["sensors"]:
            if sensor["id"] == FLOOD_SENSOR:
                sensor["report"] = {
                    "deadband": 0.10,
                    "heartbeat": 3600,
                    "fast": {"level": 1.9, "hysteresis": 0.1, "interval": 120, "hold": 1800},
                }
        raw["publish"] = {"batch_interval": 60.0}
        gw_path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        agent = Agent(load_gateway(gw_path), clock)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        while sims.scenario_time() < CROSSING_S + 3600 and not task.done():
            await asyncio.sleep(0.1)
        stop.set()
        await task

    try:
        sims = serve("typhoon-flood", body, tmp_path, at=start_at, speed=300.0, timeout=120)
        time.sleep(0.5)
        messages = [decode_telemetry(p, now=time.time() + 10 * 86400) for _, _, p, _ in recorder.snapshot()]
    finally:
        recorder.close()
    origin = sims._origin  # clock time of scenario time 0
    samples = sorted(
        {
            (r.ts.timestamp() - origin, r.value)
            for m in messages
            for r in m.readings
            if r.sensor == FLOOD_SENSOR and r.kind == "river_level"
        }
    )
    quiet = [(t, v) for t, v in samples if t < CROSSING_S - 1800 and v is not None and v < 1.7]
    assert quiet
    # Quiet: 2.5 h polled every 10 min = 15 samples, a handful sent.
    assert len(quiet) <= 8
    # From the first sample at the level on: fast mode, every 2 min, every sample sent (the
    # scaled clock makes scheduling jitter of 0.1 s real look like 30 s).
    entered = next(t for t, v in samples if v is not None and v >= 1.9)
    fast = [t for t, _ in samples if t >= entered]
    gaps = [b - a for a, b in itertools.pairwise(fast)]
    assert len(fast) >= 0.8 * (samples[-1][0] - entered) / 120 and max(gaps) <= 2.5 * 120
    urgent_msgs = [m for m in messages if all(r.sensor == FLOOD_SENSOR for r in m.readings)]
    assert urgent_msgs  # fast-mode readings travel in messages of their own
    telemetry: list[Telemetry] = messages
    assert sorted(m.seq for m in telemetry) == list(range(1, len(telemetry) + 1))
