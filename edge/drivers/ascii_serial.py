"""ASCII sensors on a serial line (RS-232/485): free-running or polled, per the profile.

The port is opened non-blocking and watched by the event loop (`add_reader`), so no thread is
needed and closing is immediate.  Incoming bytes are split into lines with their clock time of
arrival; a read parses the lines that came in since the last read against the profile's
patterns.  A line that matches no pattern (partial, garbled, wrong speed) is counted and dropped.

- free_running: the freshest value of each point is used if it is younger than twice the
  sensor's interval (the device keeps talking on its own); otherwise the read waits up to the
  bus timeout for a new line.  Sample time = when the line arrived.
- polled: the poll command is written and lines are read until every pattern has matched or
  the bus timeout passes.  Sample time = when the command was sent.

A point with no fresh value is `crc` if only garbled lines arrived, `timeout` if nothing did,
`error` if the port cannot be opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections import deque
from dataclasses import dataclass

import serial

from edge.config import AsciiSerialBus, Bus, SensorConfig
from edge.decode import Sample, ascii_sample, match_line, reading
from edge.drivers.base import Backoff, failed
from edge.profiles import Profile
from wire.clock import Clock
from wire.telemetry import Quality, Reading, utc_from_epoch

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 512  # a "line" longer than this without a terminator is noise
KEEP_LINES = 64  # only the newest lines matter; older ones are superseded anyway


@dataclass(slots=True)
class _Latest:
    sample: Sample
    t: float  # clock time the line arrived
    line_no: int


class AsciiSerialDriver:
    def __init__(self, bus: AsciiSerialBus, clock: Clock) -> None:
        self.bus = bus
        self.clock = clock
        self.backoff = Backoff()
        self.garbled_lines = 0  # since start, for diagnostics
        self._ser: serial.Serial | None = None
        self._buf = bytearray()
        self._line_no = 0
        self._lines: deque[tuple[int, float, bytes]] = deque(maxlen=KEEP_LINES)
        self._parsed_up_to = 0
        self._latest: dict[str, _Latest] = {}
        self._garbled_t = float("-inf")  # clock time of the last garbled line
        self._garbled_line_no = 0
        self._new_lines = asyncio.Event()
        self._patterns: dict[str, list[re.Pattern[str]]] = {}
        # The terminator comes with the profile; one ASCII line serves one device, so the
        # profile of the last read is the one in use ("\r\n" until the first read).
        self._term = b"\r\n"

    # -- port handling -------------------------------------------------------------------

    async def open(self) -> None:
        await self._ensure_open()

    async def _ensure_open(self) -> bool:
        if self._ser is not None:
            return True
        if not self.backoff.ready():
            return False
        b = self.bus
        try:
            # exclusive: a second program on the same port would steal half the bytes.
            ser = await asyncio.to_thread(
                serial.Serial,
                b.port,
                baudrate=b.baudrate,
                bytesize=b.bytesize,
                parity=b.parity,
                stopbits=b.stopbits,
                timeout=0,
                exclusive=True,
            )
        except (OSError, ValueError, serial.SerialException) as exc:
            log.debug("bus %s: cannot open %s: %s", b.id, b.port, exc)
            self.backoff.failure()
            return False
        self._ser = ser
        self._buf.clear()
        asyncio.get_running_loop().add_reader(ser.fileno(), self._on_readable)
        self.backoff.success()
        return True

    async def close(self) -> None:
        self._close_port()

    def _close_port(self) -> None:
        if self._ser is None:
            return
        try:
            asyncio.get_running_loop().remove_reader(self._ser.fileno())
        finally:
            self._ser.close()
            self._ser = None

    def _on_readable(self) -> None:
        assert self._ser is not None
        try:
            data = os.read(self._ser.fileno(), 4096)
        except BlockingIOError:
            return
        except OSError as exc:  # USB adapter unplugged, pty master gone
            data = b""
            log.debug("bus %s: read failed: %s", self.bus.id, exc)
        if not data:  # readable but empty: the device side is gone; reopen later
            self._close_port()
            self.backoff.failure()
            self._new_lines.set()
            return
        self._buf += data
        now = self.clock.now()
        while (i := self._buf.find(self._term)) >= 0:
            if i:  # blank lines are keep-alives, not data
                self._add_line(now, bytes(self._buf[:i]))
            del self._buf[: i + len(self._term)]
        if len(self._buf) > MAX_LINE_BYTES:
            self._add_line(now, b"\x00")  # never matches: counted as garbled
            self._buf.clear()
        self._new_lines.set()

    def _add_line(self, t: float, raw: bytes) -> None:
        self._line_no += 1
        self._lines.append((self._line_no, t, raw))

    # -- reading -------------------------------------------------------------------------

    def budget(self, sensor: SensorConfig, profile: Profile) -> float:
        return self.bus.timeout + 2.0  # the wait for lines, plus opening the port

    async def read(self, sensor: SensorConfig, profile: Profile) -> list[Reading]:
        fmt = profile.ascii
        assert fmt is not None
        self._term = fmt.line_terminator.encode()
        t_request = self.clock.now()
        if not await self._ensure_open():
            return failed(sensor, profile, t_request, Quality.ERROR)
        mark = self._line_no
        if fmt.mode == "polled":
            assert fmt.poll_command is not None
            self._buf.clear()  # a half line left from before would prefix the answer
            try:
                assert self._ser is not None
                self._ser.write(fmt.poll_command.encode(fmt.encoding))
            except (OSError, serial.SerialException) as exc:
                log.debug("bus %s: write failed: %s", self.bus.id, exc)
                self._close_port()
                self.backoff.failure()
                return failed(sensor, profile, t_request, Quality.ERROR)

        def fresh(kind: str) -> bool:
            latest = self._latest.get(kind)
            if latest is None:
                return False
            if fmt.mode == "polled":
                return latest.line_no > mark
            return t_request - latest.t <= 2 * sensor.interval

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.bus.timeout
        while True:
            self._parse_new_lines(sensor, profile)
            if all(fresh(p.kind) for p in fmt.points) or self._ser is None:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._new_lines.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._new_lines.wait()

        if fmt.mode == "polled":
            garbled = self._garbled_line_no > mark
        else:
            garbled = self._garbled_t >= t_request - 2 * sensor.interval
        stale = Quality.ERROR if self._ser is None else Quality.CRC if garbled else Quality.TIMEOUT
        out = []
        for p in fmt.points:
            latest = self._latest.get(p.kind)
            if latest is not None and fresh(p.kind):
                ts = t_request if fmt.mode == "polled" else latest.t
                out.append(reading(sensor, p, utc_from_epoch(ts), latest.sample))
            else:
                out.append(reading(sensor, p, utc_from_epoch(t_request), (None, stale)))
        return out

    def _parse_new_lines(self, sensor: SensorConfig, profile: Profile) -> None:
        fmt = profile.ascii
        assert fmt is not None
        patterns = self._patterns.get(profile.model)
        if patterns is None:
            patterns = self._patterns[profile.model] = [re.compile(p) for p in fmt.patterns]
        for line_no, t, raw in self._lines:
            if line_no <= self._parsed_up_to:
                continue
            self._parsed_up_to = line_no
            try:
                groups = match_line(fmt, raw.decode(fmt.encoding), patterns)
            except UnicodeDecodeError:
                groups = None
            if groups is None:
                self.garbled_lines += 1
                self._garbled_t = t
                self._garbled_line_no = line_no
                continue
            for p in fmt.points:
                if p.group in groups:
                    sample = ascii_sample(p, groups, sensor.mounting_height)
                    self._latest[p.kind] = _Latest(sample, t, line_no)


def create(bus: Bus, clock: Clock) -> AsciiSerialDriver:
    assert isinstance(bus, AsciiSerialBus)
    return AsciiSerialDriver(bus, clock)
