"""Modbus slave logic shared by the TCP and RTU transports: register banks and PDU handling.

Written by hand rather than with pymodbus's server on purpose: the edge's pymodbus client is then
tested against a second, independent implementation, and faults can later be injected at frame
level.  Supported: FC3 (read holding registers) and FC4 (read input registers).  Anything else
gets exception 01; an address the device does not map gets 02; a bad count gets 03.  A device's
scheduled transport faults (simulators/faults.py) shape the `Reply`: silence, an exception, a
corrupted CRC or a late answer; the transports carry that out.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from edge.profiles import REGISTER_COUNT, ModbusPoint
from simulators.devices import VirtualDevice
from simulators.encoding import encode_modbus
from simulators.faults import BadCrc, Dropout, ModbusException, Slow

READ_HOLDING = 3
READ_INPUT = 4
FUNCTIONS = {READ_HOLDING: "holding", READ_INPUT: "input"}
ILLEGAL_FUNCTION = 0x01
ILLEGAL_DATA_ADDRESS = 0x02
ILLEGAL_DATA_VALUE = 0x03
GATEWAY_TARGET_FAILED = 0x0B  # what a TCP-to-RTU gateway answers for a silent unit
MAX_READ = 125  # registers per read, by the spec (response fits a 256-byte RTU frame)


class ModbusError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"Modbus exception {code:#04x}")
        self.code = code


class RegisterBank:
    """The registers of one unit, computed on demand from the device's measured values.

    Each read evaluates every point it touches once, so the two registers of a 32-bit value
    always belong together.
    """

    def __init__(self, device: VirtualDevice) -> None:
        self.device = device
        # (function, address) -> (point, register index within it); the point is None for a
        # decimals register, which the owning point's decimals fill.
        self._map: dict[tuple[str, int], tuple[ModbusPoint, int | None]] = {}
        for point in device.points():
            assert isinstance(point, ModbusPoint)
            for k in range(REGISTER_COUNT[point.type]):
                self._map[(point.function, point.address + k)] = (point, k)
            if point.decimals_register is not None:
                self._map[(point.function, point.decimals_register)] = (point, None)

    def read(self, function: str, address: int, count: int, t: float) -> list[int]:
        """Registers [address, address + count) of `function` ('holding'/'input') at scenario time t."""
        cells = [self._map.get((function, a)) for a in range(address, address + count)]
        if any(c is None for c in cells):
            raise ModbusError(ILLEGAL_DATA_ADDRESS)
        encoded: dict[str, list[int]] = {}
        out: list[int] = []
        for cell in cells:
            assert cell is not None
            point, index = cell
            decimals = (
                self.device.spec.feed(point.kind).decimals if point.decimals_register is not None else 0
            )
            if index is None:
                out.append(decimals)
                continue
            if point.kind not in encoded:
                encoded[point.kind] = encode_modbus(point, self.device.measured(point.kind, t), decimals)
            out.append(encoded[point.kind][index])
        return out


@dataclass(frozen=True)
class Reply:
    pdu: bytes | None  # None: the unit stays silent (the master times out)
    corrupt_crc: bool = False  # RTU: send the frame with a wrong CRC
    delay: float = 0.0  # wall-clock seconds before answering


class ModbusSlaves:
    """The units on one bus.  `handle` turns a request PDU into a `Reply`."""

    def __init__(self, banks: dict[int, RegisterBank], scenario_time: Callable[[], float]) -> None:
        self.banks = banks
        self._scenario_time = scenario_time
        self.requests_served = 0

    def handle(self, unit: int, pdu: bytes) -> Reply | None:
        """The reply to `pdu` addressed to `unit`; None if there is no such unit."""
        bank = self.banks.get(unit)
        if bank is None or not pdu:
            return None
        t = self._scenario_time()
        function = pdu[0]
        fault = bank.device.transport_fault(t)
        if isinstance(fault, Dropout):
            return Reply(None)
        self.requests_served += 1
        if isinstance(fault, ModbusException):
            return Reply(bytes([function | 0x80, fault.code]))
        try:
            response = _read(bank, pdu, t)
        except ModbusError as exc:
            response = bytes([function | 0x80, exc.code])
        return Reply(
            response,
            corrupt_crc=isinstance(fault, BadCrc),
            delay=fault.delay if isinstance(fault, Slow) else 0.0,
        )


def _read(bank: RegisterBank, pdu: bytes, t: float) -> bytes:
    function = pdu[0]
    if function not in FUNCTIONS:
        raise ModbusError(ILLEGAL_FUNCTION)
    if len(pdu) != 5:
        raise ModbusError(ILLEGAL_DATA_VALUE)
    address, count = struct.unpack(">HH", pdu[1:5])
    if not 1 <= count <= MAX_READ:
        raise ModbusError(ILLEGAL_DATA_VALUE)
    if address + count > 0x10000:
        raise ModbusError(ILLEGAL_DATA_ADDRESS)
    registers = bank.read(FUNCTIONS[function], address, count, t)
    return bytes([function, 2 * count]) + struct.pack(f">{count}H", *registers)
