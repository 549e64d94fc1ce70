"""Bus scanning for the on-site check: does the port open, which unit ids answer, at which baud.

Mechanism only; edge/check.py turns the results into a technician's checklist.  One bus at a
time, one request at a time on it, with the same pymodbus clients and pyserial settings as the
drivers (exclusive open), so a port the agent holds is reported as busy instead of shared.

A Modbus probe is "read holding register 0, count 1".  Any reply means a device is there, an
exception response included (most devices do not map register 0); a converter's "gateway target
failed to respond" (0x0B) or "path unavailable" (0x0A) means the opposite.  Bytes that arrive
without making a valid frame are reported as garbled: typically a parity or baud mismatch.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import serial
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse

from edge.config import AsciiSerialBus, ModbusRtuBus, ModbusTcpBus
from edge.decode import match_line
from edge.drivers._modbus import quiet_pymodbus
from edge.profiles import AsciiFormat

PROBE_TIMEOUT = 0.15  # seconds: a present RTU slave answers a one-register read well within this
PROBE_REGISTER = 0
GATEWAY_NO_TARGET = frozenset({0x0A, 0x0B})  # a TCP-to-RTU converter saying "nobody there"
MAX_UNIT_ID = 247
SHOWN_LINE_CHARS = 60
AGENT_SERVICE = "bosai-agent"  # the agent's systemd unit, named in the "port is busy" advice

SerialBus = ModbusRtuBus | AsciiSerialBus


class Probe(enum.Enum):
    ANSWERED = "answered"  # a reply, normal or exception: a device with this unit id is there
    SILENT = "silent"  # nothing within the timeout
    GARBLED = "garbled"  # bytes arrived, but no valid frame
    NO_TARGET = "no target"  # a converter answered for a unit behind it that did not


class PortError(Exception):
    """The port cannot be used; `str()` says why in a technician's words."""


# -- opening ports ------------------------------------------------------------------------------


def serial_open_problem(port: str, exc: BaseException) -> str:
    """Why a serial port did not open, with what to do about it."""
    text = str(exc)
    code = getattr(exc, "errno", None)
    if "exclusively lock" in text or code == errno.EBUSY:
        return (
            f"{port} is in use by another program (is the bosai agent running? stop it first, "
            f"e.g. 'systemctl stop {AGENT_SERVICE}': the check needs the port to itself)"
        )
    if code == errno.ENOENT or "No such file" in text:
        return (
            f"{port} does not exist: is the USB-RS485/RS-232 adapter plugged in? "
            "('ls /dev/ttyUSB* /dev/ttyS*' lists the ports)"
        )
    if code == errno.EACCES or "Permission denied" in text:
        return f"no permission to open {port}: run as the agent's user, or add this user to group 'dialout'"
    return f"cannot open {port}: {text or type(exc).__name__}"


def _open_serial(bus: SerialBus, baudrate: int, timeout: float) -> serial.Serial:
    return serial.Serial(
        bus.port,
        baudrate=baudrate,
        bytesize=bus.bytesize,
        parity=bus.parity,
        stopbits=bus.stopbits,
        timeout=timeout,
        exclusive=True,  # as the drivers do: a second program would steal half the bytes
    )


async def open_serial(bus: SerialBus) -> None:
    """Open and close the bus's port with its configured settings; PortError with the reason."""

    def attempt() -> None:
        try:
            _open_serial(bus, bus.baudrate, 0).close()
        except (OSError, ValueError, serial.SerialException) as exc:
            raise PortError(serial_open_problem(bus.port, exc)) from None

    await asyncio.to_thread(attempt)


async def connect_tcp(host: str, port: int, timeout: float) -> float:
    """Seconds a TCP connection took; PortError naming the likely cause."""
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            _reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        raise PortError(
            f"no answer from {host}:{port} within {timeout:g} s: check the cable, the device's IP "
            "address and that this gateway is on the same network"
        ) from None
    except socket.gaierror as exc:
        raise PortError(f"cannot resolve {host!r}: {exc.strerror}") from None
    except ConnectionRefusedError:
        raise PortError(
            f"connection refused by {host}:{port}: nothing listens there (wrong port, or the "
            "device's Modbus TCP server is off)"
        ) from None
    except OSError as exc:
        raise PortError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return time.monotonic() - start


# -- Modbus -------------------------------------------------------------------------------------


@dataclass
class Sweep:
    """One pass over unit ids on one bus at one speed."""

    baudrate: int | None  # None on Modbus TCP
    tried: list[int]
    results: dict[int, Probe] = field(default_factory=dict)

    def units(self, outcome: Probe) -> list[int]:
        return sorted(u for u, p in self.results.items() if p is outcome)

    @property
    def answered(self) -> list[int]:
        return self.units(Probe.ANSWERED)


class _Prober:
    """A pymodbus client that tells silence from garbled answers (as the drivers' trace does)."""

    def __init__(self) -> None:
        self.rx_bytes = 0

    def trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self.rx_bytes += len(data)
        return data

    async def probe(self, client: ModbusBaseClient, unit: int) -> Probe:
        self.rx_bytes = 0
        try:
            rr = await client.read_holding_registers(PROBE_REGISTER, count=1, device_id=unit)
        except ModbusIOException:  # timeout, or an answer from another unit (a late one)
            return Probe.GARBLED if self.rx_bytes else Probe.SILENT
        except (ConnectionException, OSError) as exc:
            raise PortError(f"the connection was lost while scanning: {exc}") from None
        except ModbusException:
            return Probe.GARBLED
        if isinstance(rr, ExceptionResponse) and rr.exception_code in GATEWAY_NO_TARGET:
            return Probe.NO_TARGET
        return Probe.ANSWERED


def rtu_units(scan_units: Sequence[int], configured: Sequence[int]) -> list[int]:
    """Unit ids to probe on RTU: 0 is broadcast (never answered), above 247 is reserved."""
    return sorted({u for u in (*scan_units, *configured) if 1 <= u <= MAX_UNIT_ID})


def baud_order(configured: int, bauds: Sequence[int]) -> list[int]:
    """The configured speed first, then the others in the given order, each once."""
    return list(dict.fromkeys([configured, *bauds]))


async def sweep_rtu(bus: ModbusRtuBus, baudrate: int, units: Sequence[int], timeout: float) -> Sweep:
    """Probe `units` on an RTU bus at `baudrate` (the bus's framing otherwise)."""
    quiet_pymodbus()
    prober = _Prober()
    client = AsyncModbusSerialClient(
        bus.port,
        framer=FramerType.RTU,
        baudrate=baudrate,
        bytesize=bus.bytesize,
        parity=bus.parity,
        stopbits=bus.stopbits,
        timeout=timeout,
        retries=0,
        reconnect_delay=0,
        name=f"{bus.id}-scan",
        trace_packet=prober.trace,
    )
    client.set_max_no_responses(2**31)  # a silent unit must not close the port
    result = Sweep(baudrate, list(units))
    try:
        if not await client.connect():
            raise PortError(f"cannot open {bus.port} at {baudrate} baud")
        for unit in units:
            outcome = await prober.probe(client, unit)
            result.results[unit] = outcome
            if outcome is not Probe.SILENT and bus.pause > 0:
                await asyncio.sleep(bus.pause)  # slave recovery, as between the agent's requests
    finally:
        client.close()
    return result


@dataclass
class RtuScan:
    sweeps: list[Sweep]  # in the order scanned: the configured speed first
    seconds: float

    def where(self, unit: int) -> list[int]:
        """Speeds at which `unit` answered."""
        return [s.baudrate for s in self.sweeps if s.baudrate is not None and unit in s.answered]


async def scan_rtu(
    bus: ModbusRtuBus,
    bauds: Sequence[int],
    units: Sequence[int],
    configured: Sequence[int],
    *,
    timeout: float = PROBE_TIMEOUT,
    on_sweep: Callable[[Sweep], None] | None = None,
) -> RtuScan:
    """Sweep the unit ids at each speed, the configured one first.

    A configured unit not found yet is asked once more at each speed with the bus's own timeout
    (a slow device is not a missing one).  Stops after the sweep in which every configured unit
    has been found somewhere; a bus without configured units gets every speed.
    """
    start = time.monotonic()
    probe_units = rtu_units(units, configured)
    sweeps: list[Sweep] = []
    located: set[int] = set()
    wanted = set(configured)
    for baud in baud_order(bus.baudrate, bauds):
        sweep = await sweep_rtu(bus, baud, probe_units, timeout)
        slow = [u for u in sorted(wanted - located) if sweep.results.get(u) is not Probe.ANSWERED]
        if slow and bus.timeout > timeout:
            again = await sweep_rtu(bus, baud, slow, bus.timeout)
            sweep.results.update({u: p for u, p in again.results.items() if p is not Probe.SILENT})
        sweeps.append(sweep)
        if on_sweep is not None:
            on_sweep(sweep)
        located |= set(sweep.answered)
        if wanted and wanted <= located:
            break
    return RtuScan(sweeps, time.monotonic() - start)


async def scan_tcp(bus: ModbusTcpBus, units: Sequence[int]) -> Sweep:
    """Probe `units` on a Modbus TCP bus.

    With the bus's own timeout, not the short RTU one: behind a TCP-to-RTU converter the answer
    (or its 0x0B) takes the converter's serial timeout, and a request sent before that arrives
    would collide with it.
    """
    quiet_pymodbus()
    prober = _Prober()
    client = AsyncModbusTcpClient(
        bus.host,
        port=bus.port,
        timeout=bus.timeout,
        retries=0,
        reconnect_delay=0,
        name=f"{bus.id}-scan",
        trace_packet=prober.trace,
    )
    client.set_max_no_responses(2**31)
    result = Sweep(None, sorted({u for u in units if 0 <= u <= MAX_UNIT_ID}))
    try:
        if not await client.connect():
            raise PortError(f"cannot connect to {bus.host}:{bus.port}")
        for unit in result.tried:
            result.results[unit] = await prober.probe(client, unit)
            if bus.pause > 0:
                await asyncio.sleep(bus.pause)
    finally:
        client.close()
    return result


# -- ASCII --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineProbe:
    baudrate: int
    clean: str | None  # the first line that matched the profile, as received
    garbled: int  # lines (or unterminated noise) that did not match
    received: int  # bytes received


def listen_ascii(bus: AsciiSerialBus, fmt: AsciiFormat, baudrate: int, wait: float) -> LineProbe:
    """Open the port at `baudrate`, send the poll command (polled devices) and wait up to `wait`
    seconds for a line matching the profile.  Blocking (run it in a thread); PortError."""
    patterns = [re.compile(p) for p in fmt.patterns]
    term = fmt.line_terminator.encode()
    try:
        ser = _open_serial(bus, baudrate, 0.05)
    except (OSError, ValueError, serial.SerialException) as exc:
        raise PortError(serial_open_problem(bus.port, exc)) from None
    buf = bytearray()
    garbled = received = 0
    try:
        ser.reset_input_buffer()  # what arrived at another speed is noise
        if fmt.mode == "polled" and fmt.poll_command is not None:
            ser.write(fmt.poll_command.encode(fmt.encoding))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            data = ser.read(4096)
            received += len(data)
            buf += data
            while (i := buf.find(term)) >= 0:
                raw, buf = bytes(buf[:i]), buf[i + len(term) :]
                if not raw:
                    continue  # blank lines are keep-alives
                try:
                    line = raw.decode(fmt.encoding)
                except UnicodeDecodeError:
                    line = None
                if line is not None and match_line(fmt, line, patterns) is not None:
                    return LineProbe(baudrate, line, garbled, received)
                garbled += 1
            if len(buf) > 512:  # a "line" this long without a terminator is noise
                garbled += 1
                buf.clear()
    except (OSError, serial.SerialException) as exc:
        raise PortError(f"{bus.port} failed while listening: {exc}") from None
    finally:
        ser.close()
    if buf:
        garbled += 1  # an unterminated fragment: noise at this speed, or a cut-off line
    return LineProbe(baudrate, None, garbled, received)


def shown_line(line: str) -> str:
    """A received line for the checklist: printable and short."""
    text = line if len(line) <= SHOWN_LINE_CHARS else line[: SHOWN_LINE_CHARS - 3] + "..."
    return repr(text)
