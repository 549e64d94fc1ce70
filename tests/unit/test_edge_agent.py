"""Agent wiring without a broker: readings are batched into the outbox before any publish."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge import drivers
from edge.agent import Agent
from edge.config import Bus, SensorConfig, load_gateway
from edge.outbox import Outbox
from edge.profiles import Profile
from tests.virtual_time import LoopClock, VirtualTimeLoop
from tests.virtual_time import run as run_on
from wire.clock import Clock
from wire.telemetry import Quality, Reading, decode_telemetry, make_reading, utc_from_epoch

PROFILES = Path(__file__).resolve().parents[2] / "firmware_configs" / "profiles"
START = 1_800_000_000.0


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


def run(agent: Agent, loop: VirtualTimeLoop, seconds: float) -> None:
    """Run `agent` for `seconds` of virtual time on `loop` (the loop its clock reads)."""

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(seconds)
        stop.set()
        await task

    run_on(loop, main())


def stored(path: Path) -> list[tuple[int, bytes]]:
    box = Outbox(path)
    try:
        return box.after(0, 10_000)
    finally:
        box.close()


def test_batches_go_to_the_outbox_and_stop_flushes_the_rest(tmp_path: Path, stub_rtu: None) -> None:
    gw = load_gateway(config(tmp_path, max_batch=4))
    loop = VirtualTimeLoop()
    clock = LoopClock(loop, START)
    agent = Agent(gw, clock)
    run(agent, loop, 20.0)

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
    loop = VirtualTimeLoop()
    clock = LoopClock(loop, START + 60.0)
    again = Agent(gw, clock, outbox_path=tmp_path / "outbox.sqlite")
    run(again, loop, 6.0)
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


class Rising(Stub):
    """pt-1's level rises 0.1 m per clock second from 1.0; the others stay at 1.0."""

    async def read(self, sensor: SensorConfig, profile: Profile) -> list[Reading]:
        assert profile.modbus is not None
        now = self.clock.now()
        ts = utc_from_epoch(now)
        level = 1.0 + 0.1 * (now - START) if sensor.id == "pt-1" else 1.0
        q = Quality.OK if sensor.unit_id != 9 else Quality.TIMEOUT
        return [make_reading(sensor.id, p.kind, ts, level, p.unit, q) for p in profile.modbus.points]


def test_report_policy_suppresses_quiet_samples_and_sends_fast_mode_first(tmp_path: Path) -> None:
    drivers.register("modbus_rtu", Rising)
    try:
        path = config(tmp_path, max_batch=200)
        raw = yaml.safe_load(path.read_text())
        policy = {"deadband": 0.5, "heartbeat": 3600, "fast": {"level": 2.0, "interval": 0.5, "hold": 60}}
        for s in raw["sensors"]:
            s["report"] = policy
        path.write_text(yaml.safe_dump(raw))
        loop = VirtualTimeLoop()
        clock = LoopClock(loop, START)
        agent = Agent(load_gateway(path), clock)
        run(agent, loop, 20.0)  # pt-1 reaches 2.0 m after 10 s
    finally:
        drivers._FACTORIES.pop("modbus_rtu")

    box = Outbox(agent.outbox_path)
    try:
        index = box.index()
        messages = {seq: decode_telemetry(box.payload(seq) or b"", now=clock.now()) for seq, _ in index}
    finally:
        box.close()
    urgent = [messages[seq] for seq, is_urgent in index if is_urgent]
    normal = [messages[seq] for seq, is_urgent in index if not is_urgent]
    # Fast mode: every sample of pt-1 at or over 2.0 m, in urgent messages holding nothing else,
    # sealed at once (one poll each, not batched for the 10 s batch interval).
    fast = [r for m in urgent for r in m.readings]
    assert fast and all(r.sensor == "pt-1" for r in fast)
    assert all(len({r.ts for r in m.readings}) == 1 for m in urgent)
    levels = [r.value for r in fast if r.value is not None]
    assert len(levels) == len(fast) and levels == sorted(levels) and min(levels) >= 2.0 - 1e-9
    # fast polls every 0.5 s of clock time instead of 1 s
    times = sorted({r.ts.timestamp() for r in fast})
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([0.5] * (len(times) - 1)), times
    # Quiet: pt-2 and the dead sensor are sent once (first sample) and then never within 20 s.
    quiet = [r for m in normal for r in m.readings if r.sensor in ("pt-2", "pt-dead")]
    assert [r.sensor for r in quiet] == ["pt-2", "pt-dead"]  # the first sample of each
    health = agent.health()
    assert health.sensors["pt-1"].fast and not health.sensors["pt-2"].fast
    assert health.sensors["pt-2"].suppressed >= 10 and health.sensors["pt-2"].reported == 1
    assert health.sensors["pt-dead"].failing and health.sensors["pt-dead"].quality == Quality.TIMEOUT
    assert health.sensors["pt-dead"].last_ok is None and health.sensors["pt-2"].last_ok is not None
    assert agent.stats.readings_reported < agent.stats.readings


class Repeating(Stub):
    """A free-running device polled faster than it talks: the same sample (same time) again."""

    async def read(self, sensor: SensorConfig, profile: Profile) -> list[Reading]:
        assert profile.modbus is not None
        line_time = START + 5.0 * ((self.clock.now() - START) // 5.0)  # a new line every 5 s
        ts = utc_from_epoch(line_time)
        return [make_reading(sensor.id, p.kind, ts, 1.0, p.unit) for p in profile.modbus.points]


def test_a_sample_seen_again_is_not_sent_again(tmp_path: Path) -> None:
    drivers.register("modbus_rtu", Repeating)
    try:
        loop = VirtualTimeLoop()
        clock = LoopClock(loop, START)
        agent = Agent(load_gateway(config(tmp_path, max_batch=200)), clock)
        run(agent, loop, 20.0)  # polled every second: 4 or 5 distinct samples per sensor
    finally:
        drivers._FACTORIES.pop("modbus_rtu")
    messages = [decode_telemetry(p, now=clock.now()) for _, p in stored(agent.outbox_path)]
    box = Outbox(agent.outbox_path)
    assert {m.stream for m in messages} == {box.stream}  # every message names its counter
    box.close()
    sent = [(r.sensor, r.ts) for m in messages for r in m.readings]
    assert len(sent) == len(set(sent)) and 3 * 4 <= len(sent) <= 3 * 5
    health = agent.health()
    assert health.sensors["pt-1"].polls >= 15 and health.sensors["pt-1"].reported <= 5


def test_readings_wait_in_memory_while_the_outbox_cannot_be_written(
    tmp_path: Path, stub_rtu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge import outbox as outbox_module

    real_stage = outbox_module.Outbox.stage
    broken = {"on": True}

    def stage(self: Outbox, readings: list[bytes], *, urgent: bool, created: float) -> None:
        if broken["on"] and readings:
            raise outbox_module.OutboxError("cannot write the outbox: disk I/O error")
        real_stage(self, readings, urgent=urgent, created=created)

    monkeypatch.setattr(outbox_module.Outbox, "stage", stage)
    loop = VirtualTimeLoop()
    clock = LoopClock(loop, START)
    agent = Agent(load_gateway(config(tmp_path, max_batch=200)), clock)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(10.0)  # 10 polls per sensor, none stored
        assert agent._unstaged_count > 0
        broken["on"] = False  # the card works again: the held readings go in with the next ones
        await asyncio.sleep(6.0)
        stop.set()
        await task

    run_on(loop, main())
    messages = [decode_telemetry(p, now=clock.now()) for _, p in stored(agent.outbox_path)]
    assert sum(len(m.readings) for m in messages) == agent.stats.readings_reported == agent.stats.readings
    assert agent._unstaged == []
