"""ASCII serial devices on a pseudo-terminal, one device per line (RS-232 is point to point).

Free-running devices print their lines every `interval` seconds of scenario time, aligned to
multiples of the interval.  Polled devices answer the profile's `poll_command` with their lines;
other bytes are ignored.  If the edge is not reading, at most `BACKLOG_BYTES` of old lines stay
queued, like a receiver's buffer; older ones are lost.  Transport faults: `dropout` sends nothing,
`garbled`/`partial_line` damage the lines (AsciiDevice.payload), `slow` answers a poll late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from pathlib import Path

from simulators.devices import AsciiDevice
from simulators.faults import Dropout, Slow
from simulators.pty_link import PtyLink
from wire.clock import Clock

log = logging.getLogger(__name__)
BACKLOG_BYTES = 1024


class AsciiSerialServer:
    def __init__(
        self, device: AsciiDevice, link: Path, clock: Clock, scenario_time: Callable[[], float]
    ) -> None:
        self.device = device
        self._clock = clock
        self._scenario_time = scenario_time
        self._pty = PtyLink(link)
        self._task: asyncio.Task[None] | None = None
        self._inbox = b""
        self.requests_served = 0

    def start(self) -> Path:
        """Open the pty (and start sending, for a free-running device).  Needs a running loop."""
        fmt = self.device.fmt
        if fmt.mode == "polled":
            return self._pty.open(self._on_data)
        link = self._pty.open()
        self._task = asyncio.get_running_loop().create_task(self._free_run())
        return link

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._pty.close()

    def _reply(self) -> tuple[bytes | None, float]:
        """(bytes to send or None for silence, wall-clock delay) at the current scenario time."""
        t = self._scenario_time()
        fault = self.device.transport_fault(t)
        if isinstance(fault, Dropout):
            return None, 0.0
        return self.device.payload(t, fault), fault.delay if isinstance(fault, Slow) else 0.0

    async def _free_run(self) -> None:
        interval = self.device.spec.interval
        while True:
            t = self._scenario_time()
            await self._clock.sleep((math.floor(t / interval) + 1) * interval - t)
            if self._pty.pending_for_edge() > BACKLOG_BYTES:
                self._pty.discard_pending()
            payload, delay = self._reply()
            if payload is None:
                continue
            if delay > 0:
                await asyncio.sleep(delay)
            if not self._pty.write(payload):
                log.debug("%s: line lost (nobody reading)", self.device.id)

    def _on_data(self, data: bytes) -> None:
        command = (self.device.fmt.poll_command or "").encode(self.device.fmt.encoding)
        self._inbox += data
        while command in self._inbox:
            self._inbox = self._inbox.split(command, 1)[1]
            payload, delay = self._reply()
            if payload is None:
                continue
            self.requests_served += 1
            if delay > 0:
                asyncio.get_running_loop().call_later(delay, self._pty.write, payload)
            else:
                self._pty.write(payload)
        self._inbox = self._inbox[-(len(command) - 1) :] if len(command) > 1 else b""
