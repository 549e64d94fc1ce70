"""A pseudo-terminal standing in for a serial line, with a stable symlink for the edge to open.

The simulator owns the master side; the edge opens the slave side (through the symlink) with
pyserial exactly as it would open /dev/ttyUSB0.  The simulator keeps its own slave fd open, so
the edge closing and reopening the port never makes the master hit EIO or lose the pty.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import struct
import termios
import tty
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class PtyLink:
    def __init__(self, link: Path) -> None:
        self.link = link
        self._master = -1
        self._slave = -1
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self, on_data: Callable[[bytes], None] | None = None) -> Path:
        """Create the pty and the symlink; call `on_data` with whatever the edge writes."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave, termios.TCSANOW)  # no echo, no line editing, 8-bit clean
        os.set_blocking(self._master, False)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        self.link.symlink_to(os.ttyname(self._slave))
        if on_data is not None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._master, self._readable, on_data)
        return self.link

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._master)
            self._loop = None
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()

    def write(self, data: bytes) -> bool:
        """Send to the edge.  False if the line's buffer is full (the bytes are lost, as on a
        real line with nobody reading)."""
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            return False
        return written == len(data)

    def pending_for_edge(self) -> int:
        """Bytes sent but not yet read by the edge."""
        buf = fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0")
        count: int = struct.unpack("i", buf)[0]
        return count

    def discard_pending(self) -> None:
        """Drop what the edge has not read (a real receiver overruns; a closed port hears nothing)."""
        termios.tcflush(self._slave, termios.TCIFLUSH)

    def _readable(self, on_data: Callable[[bytes], None]) -> None:
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            # EIO: no slave open.  We hold one, so this should not happen; keep serving anyway.
            if exc.errno != errno.EIO:
                raise
            log.debug("%s: EIO on the pty master", self.link)
            return
        if data:
            on_data(data)
