"""Clocks.  Production uses wall time; the demo and tests run whole storms in compressed time.

The simulator and the edge agent must agree on "now" so that sample times follow the simulated
physics; both take a `Clock`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch in this clock's time."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` of this clock's time."""
        ...

    @property
    def speed(self) -> float: ...


class RealClock:
    speed = 1.0

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """Time that starts at `start` (epoch seconds) and runs `speed` times faster than real time."""

    def __init__(self, start: float, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = start
        self._speed = speed
        self._t0 = time.monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> float:
        return self.start + (time.monotonic() - self._t0) * self._speed

    def elapsed(self) -> float:
        """Clock seconds since start."""
        return self.now() - self.start

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self._speed)
