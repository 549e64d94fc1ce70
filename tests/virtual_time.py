"""Virtual time for timing tests: an event loop whose clock jumps to the next timer.

Tests that check a schedule (a 0.02 s interval, a back-off that doubles, fast mode every 0.5 s)
fail on wall time when a shared CI machine loses the CPU for 30 ms.  On `VirtualTimeLoop` the
loop's clock stands still while callbacks run and, when nothing is ready, jumps to the next
timer instead of sleeping.  `asyncio.sleep`, `asyncio.timeout` and `call_later` all read that
clock, so a schedule is exact however slow the machine, and a minute of it runs in
milliseconds.  `LoopClock` is the `wire.clock.Clock` on the same time line, so the code under
test stamps its samples in it.

Real I/O still works: the selector is always polled (without blocking) first.  A loop with no
timer at all blocks on its selector as a real loop does, which is what awaiting a thread needs.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self._virtual_now = 0.0
        selector: selectors.BaseSelector = self._selector  # type: ignore[attr-defined]
        real_select = selector.select

        def select(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            events = real_select(0)
            if events:
                return events
            if timeout is None:
                return real_select(None)
            self._virtual_now += max(0.0, timeout)
            return []

        selector.select = select  # type: ignore[method-assign]

    def time(self) -> float:
        return self._virtual_now


class LoopClock:
    """A `wire.clock.Clock` that reads `loop`'s time, starting at `epoch` (Unix seconds)."""

    speed = 1.0

    def __init__(self, loop: asyncio.AbstractEventLoop, epoch: float) -> None:
        self.loop = loop
        self.epoch = epoch

    def now(self) -> float:
        return self.epoch + self.loop.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


def run(loop: VirtualTimeLoop, main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on `loop` (closed afterwards; its clock still reads)."""
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        return runner.run(main)
