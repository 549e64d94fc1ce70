"""The driver interface: one object per physical bus, one request at a time (the poller's job).

A driver turns "read this sensor" into readings, one per profile point, always: a failed read
gives readings with a quality flag (timeout, crc, exception, error) and no value, so the cloud
sees that a device went quiet instead of guessing from missing rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from edge.config import Bus, SensorConfig
from edge.decode import reading
from edge.profiles import Profile, points_of
from wire.clock import Clock
from wire.telemetry import Quality, Reading, utc_from_epoch


class Driver(Protocol):
    async def open(self) -> None:
        """Prepare the bus.  Must not raise for an absent device: reads report it instead."""
        ...

    async def read(self, sensor: SensorConfig, profile: Profile) -> list[Reading]:
        """One reading per profile point; failures are quality flags, not exceptions."""
        ...

    def budget(self, sensor: SensorConfig, profile: Profile) -> float:
        """Real seconds a read may take when the device is slow but alive (timeouts, retries).

        The poller cancels a read that exceeds it, so a hung driver costs at most this much.
        """
        ...

    async def close(self) -> None: ...


DriverFactory = Callable[[Bus, Clock], Driver]


def failed(sensor: SensorConfig, profile: Profile, ts: float, q: Quality) -> list[Reading]:
    """Every point of the sensor flagged `q`, without values."""
    when = utc_from_epoch(ts)
    return [reading(sensor, p, when, (None, q)) for p in points_of(profile)]


class Backoff:
    """Reconnect pacing for one bus: 1 s, 2 s, 4 s ... up to `maximum`, reset on success.

    Real (monotonic) time on purpose: it paces a network or a serial port, not the sensors, so it
    must not speed up with the demo's scaled clock.  While waiting, reads fail fast with `error`
    instead of blocking the bus.
    """

    def __init__(self, initial: float = 1.0, maximum: float = 60.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._delay = 0.0
        self._retry_at = 0.0

    def ready(self) -> bool:
        return time.monotonic() >= self._retry_at

    def failure(self) -> None:
        self._delay = min(self.maximum, self._delay * 2 if self._delay else self.initial)
        self._retry_at = time.monotonic() + self._delay

    def success(self) -> None:
        self._delay = 0.0
        self._retry_at = 0.0
