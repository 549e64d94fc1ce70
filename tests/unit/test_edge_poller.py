"""Poller scheduling with stub drivers: a hung slave must not stall or drop the others."""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path

import pytest

from edge.config import GatewayConfig, LoadedGateway, ModbusRtuBus, ModbusTcpBus, SensorConfig
from edge.drivers.base import failed
from edge.poller import Poller
from edge.profiles import Profile, load_profiles
from tests.virtual_time import LoopClock, VirtualTimeLoop, run
from wire.clock import Clock
from wire.mqttconf import MqttConfig
from wire.telemetry import Quality, Reading, make_reading, utc_from_epoch

PROFILES = Path(__file__).resolve().parents[2] / "firmware_configs" / "profiles"
EPOCH = 1_800_000_000.0


class StubDriver:
    """Answers at once, except units listed in `hang` (never answer) or `fail_times`."""

    def __init__(
        self, clock: Clock, hang: frozenset[int] = frozenset(), fail_times: int = 0, budget: float = 0.2
    ) -> None:
        self.clock = clock
        self.hang = hang
        self.fail_times = fail_times
        self._budget = budget
        self.reads: list[tuple[str, float]] = []
        self.opened = self.closed = False
        self.active = 0
        self.max_active = 0

    async def open(self) -> None:
        self.opened = True

    async def close(self) -> None:
        self.closed = True

    def budget(self, sensor: SensorConfig, profile: Profile) -> float:
        return self._budget

    async def read(self, sensor: SensorConfig, profile: Profile) -> list[Reading]:
        t = self.clock.now()
        self.reads.append((sensor.id, t))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            assert sensor.unit_id is not None
            if sensor.unit_id in self.hang:
                await asyncio.Event().wait()
            if self.fail_times > 0:
                self.fail_times -= 1
                return failed(sensor, profile, t, Quality.CRC)
            await asyncio.sleep(0.005)
            assert profile.modbus is not None
            return [
                make_reading(sensor.id, p.kind, utc_from_epoch(t), 1.0, p.unit) for p in profile.modbus.points
            ]
        finally:
            self.active -= 1


def gateway(sensors: list[SensorConfig], buses: list[ModbusTcpBus | ModbusRtuBus]) -> LoadedGateway:
    cfg = GatewayConfig(
        tenant="t",
        gateway="g",
        mqtt=MqttConfig(url="mqtt://localhost", allow_insecure=True),
        buses=list(buses),
        sensors=sensors,
    )
    return LoadedGateway("gw.yaml", cfg, load_profiles(PROFILES))


def sensor(sid: str, unit: int, bus: str = "rs485", interval: float = 0.3) -> SensorConfig:
    return SensorConfig(id=sid, profile="pressure-level-pt", bus=bus, unit_id=unit, interval=interval)


async def run_for(poller: Poller, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def test_hung_slave_does_not_stall_or_drop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    loop = VirtualTimeLoop()
    clock = LoopClock(loop, EPOCH)
    bus = ModbusRtuBus(id="rs485", port="/dev/null", pause=0.01)
    gw = gateway([sensor("dead", 1), sensor("a", 2), sensor("b", 3)], [bus])
    driver = StubDriver(clock, hang=frozenset({1}), budget=0.2)
    got: dict[str, list[Reading]] = {"dead": [], "a": [], "b": []}
    poller = Poller(gw, clock, lambda s, r: got[s.id].extend(r), drivers={"rs485": driver})

    with caplog.at_level(logging.DEBUG, logger="edge.poller"):
        run(loop, run_for(poller, 2.0))

    assert driver.opened and driver.closed
    assert driver.max_active == 1  # one request at a time on the bus
    for sid in ("a", "b"):
        times = [t for s, t in driver.reads if s == sid]
        assert len(times) >= 5, (sid, times)
        # each cycle costs at most the dead slave's budget on top of the interval
        assert max(gaps(times)) < 0.3 + 0.2 + 0.15, (sid, gaps(times))
        assert all(r.q is Quality.OK for r in got[sid])
        assert poller.errors[sid] == 0
    assert got["dead"] and all(r.q is Quality.TIMEOUT and r.value is None for r in got["dead"])
    assert poller.errors["dead"] >= 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "dead" in warnings[0].getMessage()


def test_buses_run_in_parallel() -> None:
    loop = VirtualTimeLoop()
    clock = LoopClock(loop, EPOCH)
    slow_bus = ModbusTcpBus(id="slow", host="x")
    fast_bus = ModbusRtuBus(id="fast", port="/dev/null", pause=0.0)
    gw = gateway([sensor("dead", 1, "slow"), sensor("live", 2, "fast", interval=0.1)], [slow_bus, fast_bus])
    slow, fast = StubDriver(clock, hang=frozenset({1}), budget=5.0), StubDriver(clock)
    poller = Poller(gw, clock, lambda s, r: None, drivers={"slow": slow, "fast": fast})
    run(loop, run_for(poller, 1.0))
    live = [t for s, t in fast.reads if s == "live"]
    assert len(live) >= 8
    assert max(gaps(live)) < 0.2


def test_failing_device_logs_once_then_recovered(caplog: pytest.LogCaptureFixture) -> None:
    loop = VirtualTimeLoop()
    clock = LoopClock(loop, EPOCH)
    gw = gateway([sensor("flaky", 1, interval=0.05)], [ModbusRtuBus(id="rs485", port="/dev/null", pause=0.0)])
    driver = StubDriver(clock, fail_times=4)
    poller = Poller(gw, clock, lambda s, r: None, drivers={"rs485": driver})
    with caplog.at_level(logging.DEBUG, logger="edge.poller"):
        run(loop, run_for(poller, 0.6))
    levels = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "edge.poller"]
    assert [lvl for lvl, _ in levels].count(logging.WARNING) == 1
    assert [lvl for lvl, _ in levels].count(logging.DEBUG) == 3
    info = [m for lvl, m in levels if lvl == logging.INFO]
    assert len(info) == 1 and "recovered" in info[0]
    assert poller.errors["flaky"] == 4


def test_schedule_keeps_grid_and_skips_missed_slots() -> None:
    loop = VirtualTimeLoop()
    clock = LoopClock(loop, EPOCH)
    gw = gateway([sensor("s", 1, interval=0.1)], [ModbusRtuBus(id="rs485", port="/dev/null", pause=0.0)])
    driver = StubDriver(clock)
    poller = Poller(gw, clock, lambda s, r: None, drivers={"rs485": driver})
    run(loop, run_for(poller, 1.05))
    times = [t for _, t in driver.reads]
    # on a 0.1 s grid from the first read (each read takes 5 ms): no drift, no burst
    assert len(times) == 11
    assert gaps(times) == pytest.approx([0.1] * 10), gaps(times)


def test_read_once_reads_every_sensor_and_times_out_the_hung_one() -> None:
    loop = VirtualTimeLoop()
    clock = LoopClock(loop, EPOCH)
    gw = gateway([sensor("a", 1), sensor("dead", 2)], [ModbusRtuBus(id="rs485", port="/dev/null")])
    driver = StubDriver(clock, hang=frozenset({2}), budget=0.1)
    poller = Poller(gw, clock, lambda s, r: None, drivers={"rs485": driver})
    readings = run(loop, poller.read_once())
    assert [(r.sensor, r.q) for r in readings] == [("a", Quality.OK), ("dead", Quality.TIMEOUT)]
    assert driver.closed


def test_a_sensor_that_keeps_failing_is_polled_less_often_and_recovers_its_interval() -> None:
    from edge import poller as poller_module

    loop = VirtualTimeLoop()
    clock = LoopClock(loop, EPOCH)
    gw = gateway([sensor("flaky", 1, interval=0.02)], [ModbusRtuBus(id="rs485", port="/dev/null", pause=0.0)])
    driver = StubDriver(clock, fail_times=6)
    poller = Poller(gw, clock, lambda s, r: None, drivers={"rs485": driver})
    saved = poller_module.BACKOFF_MAX
    poller_module.BACKOFF_MAX = 0.2
    try:
        run(loop, run_for(poller, 1.5))
    finally:
        poller_module.BACKOFF_MAX = saved
    times = [t for _, t in driver.reads]
    g = gaps(times)
    # after failures 1 and 2 the interval, after the 3rd 2x, then 4x, 8x, capped at 0.2 s ...
    assert g[:6] == pytest.approx([0.02, 0.02, 0.04, 0.08, 0.16, 0.2]), g
    # ... and after the first success (the 7th read) back to the interval.
    assert g[6:] == pytest.approx([0.02] * len(g[6:])), g
    assert len(times) > 20


def test_interval_of_follows_the_report_policy() -> None:
    loop = VirtualTimeLoop()
    clock = LoopClock(loop, EPOCH)
    gw = gateway([sensor("s", 1, interval=0.2)], [ModbusRtuBus(id="rs485", port="/dev/null", pause=0.0)])
    driver = StubDriver(clock)
    fast = {"on": False}
    poller = Poller(
        gw,
        clock,
        lambda s, r: None,
        drivers={"rs485": driver},
        interval_of=lambda s: 0.02 if fast["on"] else 0.2,
    )

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        await asyncio.sleep(0.5)
        fast["on"] = True
        await asyncio.sleep(0.5)
        stop.set()
        await task

    run(loop, main())
    times = [t for _, t in driver.reads]
    t0 = times[0]
    slow = [t for t in times if t - t0 < 0.5]
    quick = [t for t in times if t - t0 > 0.75]
    assert len(slow) <= 4 and len(quick) >= 8
