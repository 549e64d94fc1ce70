"""Gateway-level link loss from the `sensor-faults` scenario, end to end: the real edge agent
publishes through the simulators' uplink proxy to a real Mosquitto.  During the blackhole the
broker hears nothing from the gateway; afterwards every message arrives, none lost."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bosai.paths import PROFILES_DIR
from edge.agent import Agent
from edge.config import load_gateway
from simulators.gateway_config import write_gateway_config
from simulators.runner import SimulatorSet, default_scenario_path, load_scenario
from tests.servers import Mosquitto
from wire import topics
from wire.clock import ScaledClock
from wire.telemetry import decode_telemetry

SPEED = 120.0  # the 20 min blackhole lasts 10 s


def test_blackhole_silences_the_gateway_and_nothing_is_lost(tmp_path: Path, mosquitto: Mosquitto) -> None:
    scenario = load_scenario(default_scenario_path("sensor-faults"))
    (blackhole, *_) = scenario.link_losses()
    assert blackhole.mode == "blackhole"
    arrivals: list[tuple[float, int]] = []  # (scenario time of arrival, seq)
    lock = threading.Lock()
    start_at = blackhole.start - 300
    clock = ScaledClock(start=time.time() - 86400, speed=SPEED)  # samples safely in the past
    sims = SimulatorSet(
        scenario,
        clock,
        tmp_path / "sim",
        PROFILES_DIR,
        start_at=start_at,
        uplink=(mosquitto.host, mosquitto.port),
    )

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        t = decode_telemetry(bytes(msg.payload), max_past_s=10 * 86400)
        with lock:
            arrivals.append((sims.scenario_time(), t.seq))

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="link-loss-recorder", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    sub.subscribe(topics.telemetry_filter(), qos=1)
    assert subscribed.wait(10)

    async def field() -> Agent:
        async with sims as endpoints:
            assert endpoints.uplink is not None
            host, port = endpoints.uplink
            gw = write_gateway_config(
                endpoints, f"mqtt://{host}:{port}", tmp_path / "gw.yaml", interval=60.0, batch_interval=60.0
            )
            agent = Agent(load_gateway(gw), clock)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            while sims.scenario_time() < blackhole.end + 600 and not task.done():
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.wait_for(task, 30)
            assert sims.uplink is not None
            assert sims.uplink.stats.held > 0  # the agent kept sending into the dead link
        return agent

    try:
        agent = asyncio.run(field())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with lock:
                if len({seq for _, seq in arrivals}) >= agent.stats.messages_acked:
                    break
            time.sleep(0.1)
    finally:
        sub.loop_stop()
        sub.disconnect()

    assert agent.stats.messages_queued == agent.stats.messages_acked  # the outbox emptied
    seqs = sorted({seq for _, seq in arrivals})
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) == agent.stats.messages_acked >= 10
    # Nothing reaches the broker inside the window (a little slack for scheduling at 120x)...
    inside = [seq for t, seq in arrivals if blackhole.start + 30 < t < blackhole.end]
    assert inside == []
    # ...and what was measured during it arrives afterwards.
    assert any(t >= blackhole.end for t, _ in arrivals)
