"""Agent wiring without a broker: readings are batched into the outbox before any publish."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge import drivers
from edge.agent import Agent
from edge.config import Bus, SensorConfig, load_gateway
from edge.outbox import Outbox
from edge.profiles import Profile
from wire.clock import Clock, ScaledClock
from wire.telemetry import Quality, Reading, decode_telemetry, make_reading, utc_from_epoch

PROFILES = Path(__file__).resolve().parents[2] / "firmware_configs" / "profiles"


class Stub:
    def __init__(self, bus: Bus, clock: Clock) -> None:
        self.clock = clock

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def budget(self, sensor: SensorConfig, profile: Profile) -> float:
        return 1.0

    async def read(self, sensor: SensorConfig, profile: Profile) -> list[Reading]:
        assert profile.modbus is not None
        ts = utc_from_epoch(self.clock.now())
        q = Quality.OK if sensor.unit_id != 9 else Quality.TIMEOUT
        return [make_reading(sensor.id, p.kind, ts, 1.0, p.unit, q) for p in profile.modbus.points]


@pytest.fixture
def stub_rtu() -> Iterator[None]:
    drivers.register("modbus_rtu", Stub)
    yield
    drivers._FACTORIES.pop("modbus_rtu")


def config(tmp_path: Path, max_batch: int) -> Path:
    raw = {
        "tenant": "demo-city",
        "gateway": "gw01",
        # nothing listens here: the agent must keep everything in the outbox
        "mqtt": {"url": "mqtt://127.0.0.1:9", "allow_insecure": True},
        "profiles_dir": str(PROFILES),
        "outbox": {"path": "outbox.sqlite"},
        "publish": {"batch_interval": 10.0, "max_batch": max_batch},
        "buses": [{"id": "rs485", "type": "modbus_rtu", "port": "/dev/null", "pause": 0.0}],
        "sensors": [
            {"id": "pt-1", "profile": "pressure-level-pt", "bus": "rs485", "unit_id": 1, "interval": 1.0},
            {"id": "pt-2", "profile": "pressure-level-pt", "bus": "rs485", "unit_id": 2, "interval": 1.0},
            {"id": "pt-dead", "profile": "pressure-level-pt", "bus": "rs485", "unit_id": 9, "interval": 1.0},
        ],
    }
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run(agent: Agent, seconds: float) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(seconds)
        stop.set()
        await task

    asyncio.run(main())


def stored(path: Path) -> list[tuple[int, bytes]]:
    box = Outbox(path)
    try:
        return box.after(0, 10_000)
    finally:
        box.close()


def test_batches_go_to_the_outbox_and_stop_flushes_the_rest(tmp_path: Path, stub_rtu: None) -> None:
    gw = load_gateway(config(tmp_path, max_batch=4))
    clock = ScaledClock(1_800_000_000.0, 20.0)  # 1 s sensor interval = 50 ms real
    agent = Agent(gw, clock)
    run(agent, 1.0)

    assert agent.outbox_path == tmp_path / "outbox.sqlite"  # relative to the config file
    rows = stored(agent.outbox_path)
    messages = [decode_telemetry(p, now=clock.now()) for _, p in rows]
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
    assert all(1 <= len(m.readings) <= 4 for m in messages)
    total = sum(len(m.readings) for m in messages)
    s = agent.stats
    assert total == s.readings >= 3 * 10
    assert s.readings_bad == sum(1 for m in messages for r in m.readings if r.q is not Quality.OK) > 0
    assert s.messages_queued == len(messages) == s.outbox_depth
    assert s.messages_acked == 0
    assert s.sensor_errors["pt-dead"] > 0 and s.sensor_errors["pt-1"] == 0

    # a restart continues the sequence after the stored messages
    again = Agent(gw, clock, outbox_path=tmp_path / "outbox.sqlite")
    run(again, 0.3)
    seqs = [s for s, _ in stored(agent.outbox_path)]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) > len(messages)


def test_read_once_does_not_touch_the_outbox(tmp_path: Path, stub_rtu: None) -> None:
    gw = load_gateway(config(tmp_path, max_batch=200))
    agent = Agent(gw)
    readings = asyncio.run(agent.read_once())
    assert [(r.sensor, r.q) for r in readings] == [
        ("pt-1", Quality.OK),
        ("pt-2", Quality.OK),
        ("pt-dead", Quality.TIMEOUT),
    ]
    assert not (tmp_path / "outbox.sqlite").exists()
    assert agent.stats.readings == 3 and agent.stats.readings_bad == 1
