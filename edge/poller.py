"""Polling: one task per physical bus, one request at a time on it, each sensor on its own interval.

A bus (an RS-485 pair, a TCP converter, a serial line) can only carry one request at a time, so
each bus has a single task that owns its driver: that task *is* the bus lock.  Buses run in
parallel and never wait for each other.

On a bus, the sensor that is due earliest goes next.  Every request is cut off after the
driver's budget (its timeouts and retries), so a dead or hung slave costs the others at most
that much delay per cycle and is never allowed to push them out: they are overdue by then and
go first.  Intervals are kept on a fixed grid in clock time (no drift); a slot missed because
the bus was busy is skipped, not made up in a burst.  The interval of a sensor can change while
it runs (fast mode of the report policy), so it is asked for after every poll.

A sensor that keeps failing is asked less often: after `BACKOFF_AFTER` failures in a row its
interval doubles with every further failure, up to `BACKOFF_MAX` seconds (never below its own
interval).  Each attempt still yields flagged readings, and the first success restores the
interval.  A dead slave then costs the bus one timeout a minute instead of one per interval.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from edge.config import Bus, LoadedGateway, SensorConfig
from edge.drivers import Driver, create_driver
from edge.drivers.base import failed
from edge.profiles import Profile
from wire.clock import Clock
from wire.telemetry import Quality, Reading

log = logging.getLogger(__name__)

# Quality flags that mean "the device could not be read" (as opposed to "the device said its
# value is invalid", which is data, not a fault of the link).
COMM_FAILURES = frozenset({Quality.TIMEOUT, Quality.CRC, Quality.EXCEPTION, Quality.ERROR})

RESTART_DELAY = 5.0  # real seconds before a crashed bus task is restarted
BACKOFF_AFTER = 3  # failures in a row before a failing sensor is polled less often
BACKOFF_MAX = 60.0  # clock seconds: the longest interval a failing sensor is backed off to
Sink = Callable[[SensorConfig, list[Reading]], None]
IntervalOf = Callable[[SensorConfig], float]


def configured_interval(sensor: SensorConfig) -> float:
    return sensor.interval


@dataclass(slots=True)
class _Scheduled:
    sensor: SensorConfig
    profile: Profile
    next_due: float
    failing: bool = False
    failures_in_a_row: int = 0


class BusPoller:
    """The single task that talks on one bus."""

    def __init__(
        self,
        bus: Bus,
        driver: Driver,
        sensors: list[tuple[SensorConfig, Profile]],
        clock: Clock,
        sink: Sink,
        errors: dict[str, int],
        interval_of: IntervalOf = configured_interval,
    ) -> None:
        self.bus = bus
        self.driver = driver
        self.clock = clock
        self.sink = sink
        self.errors = errors  # sensor id -> failed requests since start (shared, read live)
        self.interval_of = interval_of
        now = clock.now()
        self._sensors = [_Scheduled(s, p, now) for s, p in sensors]
        for s, _ in sensors:
            errors.setdefault(s.id, 0)

    async def run(self) -> None:
        """Poll forever (until cancelled).  The driver is opened and closed here."""
        await self.driver.open()
        try:
            while True:
                entry = min(self._sensors, key=lambda e: e.next_due)
                wait = entry.next_due - self.clock.now()
                if wait > 0:
                    await self.clock.sleep(wait)
                readings = await self.request(entry.sensor, entry.profile)
                self._account(entry, readings)
                self.sink(entry.sensor, readings)
                self._reschedule(entry)
                await self._pause()
        finally:
            await self.driver.close()

    async def read_each_once(self) -> list[Reading]:
        """Every sensor on this bus once, in config order (for `--once`)."""
        await self.driver.open()
        out: list[Reading] = []
        try:
            for entry in self._sensors:
                readings = await self.request(entry.sensor, entry.profile)
                self._account(entry, readings)
                out += readings
                await self._pause()
        finally:
            await self.driver.close()
        return out

    async def request(self, sensor: SensorConfig, profile: Profile) -> list[Reading]:
        t = self.clock.now()
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that races with the read finishing, and the bus task would never stop.
            async with asyncio.timeout(self.driver.budget(sensor, profile)):
                return await self.driver.read(sensor, profile)
        except TimeoutError:
            return failed(sensor, profile, t, Quality.TIMEOUT)
        except Exception:
            # A driver bug must not take the bus (and its other sensors) down with it.
            log.exception("bus %s: driver failed reading %s", self.bus.id, sensor.id)
            return failed(sensor, profile, t, Quality.ERROR)

    async def _pause(self) -> None:
        # Real seconds: RS-485 turnaround and slave recovery are hardware time, not sensor time.
        if self.bus.pause > 0:
            await asyncio.sleep(self.bus.pause)

    def _reschedule(self, entry: _Scheduled) -> None:
        interval = self.interval_of(entry.sensor)
        extra = entry.failures_in_a_row - BACKOFF_AFTER
        if extra >= 0:
            interval = max(interval, min(interval * 2.0 ** (extra + 1), BACKOFF_MAX))
        entry.next_due += interval
        behind = self.clock.now() - entry.next_due
        if behind > 0:
            entry.next_due += math.ceil(behind / interval) * interval

    def _account(self, entry: _Scheduled, readings: list[Reading]) -> None:
        bad = sorted({r.q.value for r in readings if r.q in COMM_FAILURES})
        sid = entry.sensor.id
        if bad:
            self.errors[sid] = self.errors.get(sid, 0) + 1
            entry.failures_in_a_row += 1
            if not entry.failing:
                entry.failing = True
                log.warning(
                    "sensor %s (bus %s): cannot read: %s (logged at DEBUG until it recovers)",
                    sid,
                    self.bus.id,
                    ", ".join(bad),
                )
            else:
                log.debug("sensor %s (bus %s): still failing: %s", sid, self.bus.id, ", ".join(bad))
        elif entry.failing:
            n = entry.failures_in_a_row
            log.info("sensor %s (bus %s): recovered after %d failed reads", sid, self.bus.id, n)
            entry.failing = False
            entry.failures_in_a_row = 0


class Poller:
    """All buses of a gateway."""

    def __init__(
        self,
        gateway: LoadedGateway,
        clock: Clock,
        sink: Sink,
        errors: dict[str, int] | None = None,
        drivers: dict[str, Driver] | None = None,
        interval_of: IntervalOf = configured_interval,
    ) -> None:
        self.errors: dict[str, int] = {} if errors is None else errors
        self.buses: list[BusPoller] = []
        for bus in gateway.config.buses:
            sensors = [(s, gateway.profiles[s.profile]) for s in gateway.config.sensors if s.bus == bus.id]
            if not sensors:
                continue  # a declared but unused bus is not opened
            driver = drivers[bus.id] if drivers is not None else create_driver(bus, clock)
            self.buses.append(BusPoller(bus, driver, sensors, clock, sink, self.errors, interval_of))

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._supervise(b), name=f"bus-{b.bus.id}") for b in self.buses]
        try:
            await stop.wait()
        finally:
            # A library's asyncio.wait_for can swallow a cancellation on Python 3.11 (when it
            # races with an answer), so cancel again until every bus task has really ended.
            pending = tasks
            while pending:
                for t in pending:
                    t.cancel()
                await asyncio.wait(pending, timeout=0.5)
                pending = [t for t in pending if not t.done()]
            await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    async def _supervise(bus: BusPoller) -> None:
        # Drivers report failures as quality flags; an exception here is a bug.  Keep the bus
        # alive (restart it) rather than silently losing its sensors until the agent restarts.
        while True:
            try:
                await bus.run()
            except Exception:
                log.exception("bus %s: poller crashed; restarting in %.0f s", bus.bus.id, RESTART_DELAY)
                await asyncio.sleep(RESTART_DELAY)

    async def read_once(self) -> list[Reading]:
        """Every sensor once; buses in parallel.  Readings in config order of buses then sensors."""
        per_bus = await asyncio.gather(*(b.read_each_once() for b in self.buses))
        return [r for readings in per_bus for r in readings]
