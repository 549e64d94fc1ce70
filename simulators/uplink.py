"""Gateway-level link loss: a TCP proxy standing in for a field gateway's cellular uplink.

    proxy = UplinkProxy((broker_host, broker_port), windows, clock, sims.scenario_time)
    host, port = await proxy.start()  # point the edge agent's MQTT connection here
    ...
    await proxy.close()

The edge agent connects to the proxy, the proxy connects to the broker, and bytes pass both ways
unchanged.  During a `LinkWindow` (scenario seconds, half-open [start, end); windows may touch but
not overlap) the link is down in one of two ways:

`blackhole` (the default: a cellular dead zone, the radio lost the cell or the carrier drops
packets; nobody sends a FIN or an RST):
  - No bytes flow either way, but no connection is closed.  Bytes sent meanwhile are *held* and
    delivered in order when the link returns, as TCP's retransmissions would deliver them, so an
    MQTT client whose keepalive outlasts the window only sees a delay.
  - A close is held like the bytes: when one end gives up (paho closes after one to two
    keepalive periods without an answer; a broker drops a silent client after 1.5 x keepalive,
    Mosquitto 2.0.11 some seconds later, and publishes its will) the other end learns it only
    when the link returns, after the bytes the closed end had sent (its kernel keeps
    retransmitting them), or when it gives up by itself.  So a QoS 1 PUBLISH held in a
    connection paho abandoned still reaches the broker when the link returns, and paho sends it
    again on its new connection: a duplicate, as on a real link.  Bytes held towards an end that
    has closed are dropped; once both ends have closed, the connection and all it held are gone.
  - A new connection is accepted (a listening socket cannot stay silent to a SYN) but not
    forwarded: the proxy connects to the broker only when the link returns and then delivers
    what the client sent meanwhile, like a SYN retransmitted until it gets through.  A client
    that gives up before that (paho waits one keepalive for CONNACK) never reaches the broker.
  - Memory is bounded: a connection holding more than `max_held` bytes (1 MiB) in one direction
    is reset, both sides, and counted in `stats.overflows`.

`reset` (the modem re-attaches, or the carrier's NAT forgets the flow): at the window start every
open connection is reset (RST to both sides, so the broker sees the client vanish at once and
publishes its will), and a connection arriving during the window is reset as soon as it is
accepted (the client sees its connection attempt fail).  Nothing is held.

Transitions happen at the window boundaries in scenario time: a task sleeps with `clock.sleep`
until the next boundary (so a ScaledClock compresses the windows too), and the state is also
checked against `scenario_time()` whenever bytes or connections arrive, so a late wake-up never
lets a byte through a window.  Not modelled: latency, bandwidth, packet loss outside windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from wire.clock import Clock

__all__ = ["MAX_HELD_BYTES", "LinkWindow", "UplinkProxy", "UplinkStats", "broker_address", "via_proxy"]

log = logging.getLogger(__name__)

MAX_HELD_BYTES = 1 << 20  # per connection and direction
CHUNK = 65536
CLOSE_TIMEOUT = 5.0  # wall seconds for connection handlers to finish on close()
UP, DOWN = 0, 1  # edge -> broker, broker -> edge
Mode = Literal["blackhole", "reset"]


def broker_address(url: str) -> tuple[str, int]:
    """(host, port) of an mqtt:// or mqtts:// URL: what the proxy connects to.  ValueError if
    it is neither."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"--broker {url!r}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    return parts.hostname, parts.port or (8883 if parts.scheme == "mqtts" else 1883)


def via_proxy(url: str, proxy: tuple[str, int]) -> str:
    """The broker URL a gateway uses to go through the proxy (same scheme: TLS passes through)."""
    return f"{urlsplit(url).scheme}://{proxy[0]}:{proxy[1]}"


@dataclass(frozen=True)
class LinkWindow:
    """The uplink is down from `start` to `end` (scenario seconds, end excluded)."""

    start: float
    end: float
    mode: Mode = "blackhole"

    def __post_init__(self) -> None:
        if not self.end > self.start:
            raise ValueError(f"link window must end after it starts: {self}")
        if self.mode not in ("blackhole", "reset"):
            raise ValueError(f"link window mode must be 'blackhole' or 'reset', not {self.mode!r}")


@dataclass
class UplinkStats:
    connections: int = 0  # accepted from the edge (refused ones included)
    bytes_up: int = 0  # delivered to the broker
    bytes_down: int = 0  # delivered to the edge
    held: int = 0  # bytes that arrived during a blackhole (delivered later, or dropped)
    dropped: int = 0  # held bytes never delivered (an end closed, a reset, an overflow)
    resets: int = 0  # open connections reset at the start of a reset window
    refused: int = 0  # connections reset on arrival during a reset window
    overflows: int = 0  # connections reset because they held more than max_held bytes


class _Pipe:
    """One direction of a connection: bytes not yet delivered, and whether its source closed."""

    __slots__ = ("eof", "held")

    def __init__(self) -> None:
        self.held = bytearray()
        self.eof = False


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.client = (reader, writer)
        self.upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.pipes = (_Pipe(), _Pipe())
        self.closed = False
        self.wake = asyncio.Event()  # set when the link returns or the connection closes

    def source(self, direction: int) -> asyncio.StreamReader | None:
        if direction == UP:
            return self.client[0]
        return self.upstream[0] if self.upstream else None

    def dest(self, direction: int) -> asyncio.StreamWriter | None:
        if direction == DOWN:
            return self.client[1]
        return self.upstream[1] if self.upstream else None

    def writers(self) -> list[asyncio.StreamWriter]:
        return [self.client[1]] + ([self.upstream[1]] if self.upstream else [])


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a broken link's endpoints see it."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class UplinkProxy:
    def __init__(
        self,
        target: tuple[str, int],
        windows: Sequence[LinkWindow],
        clock: Clock,
        scenario_time: Callable[[], float],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_held: int = MAX_HELD_BYTES,
    ) -> None:
        """`target`: the broker; `windows`: when the link is down (scenario seconds)."""
        self.windows = sorted(windows, key=lambda w: w.start)
        for a, b in zip(self.windows, self.windows[1:], strict=False):
            if b.start < a.end:
                raise ValueError(f"link windows overlap: {a} and {b}")
        self.stats = UplinkStats()
        self._target = target
        self._clock = clock
        self._scenario_time = scenario_time
        self._host = host
        self._port = port
        self._max_held = max_held
        self._state: Mode | None = None  # applied state: None while the link is up
        self._server: asyncio.Server | None = None
        self._timer: asyncio.Task[None] | None = None
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- public -------------------------------------------------------------------------------

    def window_at(self, t: float) -> LinkWindow | None:
        """The window covering scenario time t, if any."""
        return next((w for w in self.windows if w.start <= t < w.end), None)

    def link_up(self) -> bool:
        """Whether the link is up at the current scenario time."""
        return self.window_at(self._scenario_time()) is None

    async def start(self) -> tuple[str, int]:
        """Listen; return (host, port) actually bound (port 0 picks a free one)."""
        self._sync()
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        self._timer = asyncio.get_running_loop().create_task(self._boundaries())
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def close(self) -> None:
        """Stop listening and close every connection (gracefully; held bytes are dropped)."""
        if self._server is not None:
            self._server.close()
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        for conn in list(self._conns):
            self._close(conn)
        # Closed connections end their handlers by themselves.  Cancelling a handler instead
        # makes Python 3.11's start_server log the CancelledError as an error.
        if self._tasks:
            _, stuck = await asyncio.wait(set(self._tasks), timeout=CLOSE_TIMEOUT)
            for task in stuck:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- link state ---------------------------------------------------------------------------

    async def _boundaries(self) -> None:
        """Apply each window boundary when scenario time reaches it."""
        while True:
            self._sync()
            t = self._scenario_time()
            upcoming = [b for w in self.windows for b in (w.start, w.end) if b > t]
            if not upcoming:
                return
            await self._clock.sleep(min(upcoming) - t)

    def _sync(self) -> None:
        """Bring the applied state up to the current scenario time."""
        window = self.window_at(self._scenario_time())
        state = window.mode if window else None
        if state == self._state:
            return
        self._state = state
        if window is None:
            log.info("uplink up")
            for conn in list(self._conns):
                conn.wake.set()
                if conn.upstream is not None:
                    self._flush(conn)
        elif window.mode == "reset":
            log.info("uplink reset until t=%.0f s: %d connection(s) reset", window.end, len(self._conns))
            for conn in list(self._conns):
                self.stats.resets += 1
                self._close(conn, reset=True)
        else:
            log.info("uplink blackholed until t=%.0f s", window.end)

    # -- connections --------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        self._sync()
        if self._state == "reset":
            self.stats.refused += 1
            _reset(writer)
            return
        conn = _Conn(reader, writer)
        self._conns.add(conn)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        loop = asyncio.get_running_loop()
        up_pump: asyncio.Task[None] = loop.create_task(self._pump(conn, UP))
        try:
            # Connect to the broker only once the link is up: in a blackhole the SYN is lost.
            while self._state is not None and not conn.closed:
                conn.wake.clear()
                await conn.wake.wait()
                self._sync()
            if conn.closed:
                return
            try:
                upstream = await asyncio.open_connection(*self._target)
            except OSError as e:
                log.warning("uplink: cannot reach the broker at %s:%d: %s", *self._target, e)
                self._close(conn, reset=True)
                return
            if conn.closed:  # reset or given up while connecting
                _reset(upstream[1])
                return
            conn.upstream = upstream
            self._sync()
            if self._state is None:
                self._flush(conn)
            await self._pump(conn, DOWN)
            await up_pump
        except Exception:
            log.exception("uplink: connection failed")
        finally:
            up_pump.cancel()
            self._close(conn)
            self._tasks.discard(task)

    async def _pump(self, conn: _Conn, direction: int) -> None:
        """Read one direction until its source closes; forward or hold what arrives."""
        reader = conn.source(direction)
        assert reader is not None
        while not conn.closed:
            try:
                data = await reader.read(CHUNK)
            except OSError:
                data = b""
            self._sync()
            if conn.closed:
                return
            if not data:
                self._source_closed(conn, direction)
                return
            dest = self._forward(conn, direction, data)
            if dest is not None:
                try:
                    await dest.drain()
                except OSError:
                    self._close(conn)
                    return

    def _forward(self, conn: _Conn, direction: int, data: bytes) -> asyncio.StreamWriter | None:
        """Deliver `data` now if the link allows, else hold it; returns the writer written to."""
        pipe = conn.pipes[direction]
        dest = conn.dest(direction)
        if self._state is None and dest is not None and not pipe.held:
            self._deliver(direction, dest, data)
            return dest
        pipe.held += data
        if self._state is not None:
            self.stats.held += len(data)
        if len(pipe.held) > self._max_held:
            log.warning("uplink: connection held more than %d bytes; reset", self._max_held)
            self.stats.overflows += 1
            self._close(conn, reset=True)
        return None

    def _deliver(self, direction: int, dest: asyncio.StreamWriter, data: bytes | bytearray) -> None:
        if direction == UP:
            self.stats.bytes_up += len(data)
        else:
            self.stats.bytes_down += len(data)
        dest.write(data)

    def _source_closed(self, conn: _Conn, direction: int) -> None:
        conn.pipes[direction].eof = True
        if conn.upstream is None:
            self._close(conn)  # gave up before its SYN got through: the broker never knew
        elif self._state is None:
            self._flush(conn)  # closes the other side too
        elif all(p.eof for p in conn.pipes):
            self._close(conn)  # both ends gave up during the blackhole

    def _flush(self, conn: _Conn) -> None:
        """Link up: deliver what was held, then pass on a close that was held."""
        if conn.closed:
            return
        for direction, pipe in enumerate(conn.pipes):
            dest = conn.dest(direction)
            if dest is None or not pipe.held:
                continue
            if conn.pipes[1 - direction].eof or dest.is_closing():  # that end is gone
                self.stats.dropped += len(pipe.held)
            else:
                self._deliver(direction, dest, pipe.held)
            pipe.held = bytearray()
        if any(p.eof for p in conn.pipes):
            self._close(conn)

    def _close(self, conn: _Conn, *, reset: bool = False) -> None:
        """Close both sides: FIN after what is already written, or an RST (reset=True)."""
        if conn.closed:
            return
        conn.closed = True
        conn.wake.set()
        self._conns.discard(conn)
        for pipe in conn.pipes:
            self.stats.dropped += len(pipe.held)
            pipe.held = bytearray()
        for writer in conn.writers():
            if reset:
                _reset(writer)
            else:
                writer.close()
