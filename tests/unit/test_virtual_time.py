"""The virtual-time loop the schedule tests run on: exact timers, real I/O and threads still work."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from tests.virtual_time import LoopClock, VirtualTimeLoop, run


def test_an_hour_of_timers_runs_at_once_and_exactly() -> None:
    loop = VirtualTimeLoop()
    clock = LoopClock(loop, 1_800_000_000.0)
    fired: list[float] = []

    async def main() -> None:
        for _ in range(3600):
            await clock.sleep(1.0)
            fired.append(clock.now())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.25):
                await asyncio.Event().wait()

    began = time.monotonic()
    run(loop, main())
    assert time.monotonic() - began < 5.0
    assert fired == [1_800_000_000.0 + n for n in range(1, 3601)]
    assert clock.now() == pytest.approx(1_800_003_600.25)


def slow_answer() -> str:
    time.sleep(0.05)
    return "done"


def test_real_sockets_and_threads_are_still_served() -> None:
    loop = VirtualTimeLoop()

    async def main() -> tuple[bytes, str]:
        a, b = socket.socketpair()
        with a, b:
            reader, writer = await asyncio.open_connection(sock=a)
            b.sendall(b"line\n")
            line = await reader.readline()
            writer.close()
        # no timer pending: the loop blocks on its selector until the thread's result arrives
        answer = await asyncio.to_thread(slow_answer)
        return line, answer

    assert run(loop, main()) == (b"line\n", "done")
