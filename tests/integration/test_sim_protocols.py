"""Every device of every shipped scenario, read the way a commissioning engineer would: pymodbus's
own client and its register conversion over the simulators' real TCP port and RTU pty, pyserial
and the profile's regex on the ASCII ptys (never the edge's decoder), compared with the ground
truth file the run writes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
import serial
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient

from edge.profiles import REGISTER_COUNT, AsciiPoint, ModbusPoint
from simulators.devices import AsciiDevice, VirtualDevice
from simulators.runner import Endpoints, SimulatorSet, default_scenario_path, load_scenario, scenario_names
from tests.simulated import TruthFile, serve
from wire.clock import ScaledClock
from wire.units import LENGTH_UNITS_PER_METRE

DATATYPES = {
    "int16": ModbusBaseClient.DATATYPE.INT16,
    "uint16": ModbusBaseClient.DATATYPE.UINT16,
    "int32": ModbusBaseClient.DATATYPE.INT32,
    "uint32": ModbusBaseClient.DATATYPE.UINT32,
    "float32": ModbusBaseClient.DATATYPE.FLOAT32,
}


def convert(client: ModbusBaseClient, point: ModbusPoint, registers: Sequence[int]) -> float:
    """pymodbus's conversion; it knows big/little word order, so BADC and DCBA (bytes swapped
    within each register) are swapped back first."""
    if point.word_order in ("BADC", "DCBA"):
        registers = [((r & 0xFF) << 8) | (r >> 8) for r in registers]
    word_order: Literal["big", "little"] = "big" if point.word_order in ("ABCD", "BADC") else "little"
    value = client.convert_from_registers(list(registers), DATATYPES[point.type], word_order=word_order)
    assert isinstance(value, int | float)
    return float(value)


def physical(device: VirtualDevice, point: ModbusPoint | AsciiPoint, raw: float, decimals: int = 0) -> float:
    value = float(raw * point.scale / 10**decimals + point.offset)
    if point.distance_to_depth:
        assert device.spec.mounting_height is not None
        value = device.spec.mounting_height * LENGTH_UNITS_PER_METRE[point.unit] - value
    return value


async def read_modbus(
    client: ModbusBaseClient, device: VirtualDevice, clock: ScaledClock
) -> list[tuple[str, float, float, float]]:
    """(kind, value, clock time before, after) for every point of a Modbus device."""
    out = []
    for point in device.points():
        assert isinstance(point, ModbusPoint)
        read = client.read_input_registers if point.function == "input" else client.read_holding_registers
        t0 = clock.now()
        decimals = 0
        if point.decimals_register is not None:
            rr = await read(point.decimals_register, count=1, device_id=device.spec.unit_id or 0)
            assert not rr.isError(), (device.id, rr)
            decimals = rr.registers[0]
        rr = await read(point.address, count=REGISTER_COUNT[point.type], device_id=device.spec.unit_id or 0)
        assert not rr.isError(), (device.id, point.kind, rr)
        raw = convert(client, point, rr.registers)
        assert raw not in point.invalid, (device.id, point.kind, raw)
        out.append((point.kind, physical(device, point, raw, decimals), t0, clock.now()))
    return out


def read_ascii(link: str, device: AsciiDevice, clock: ScaledClock) -> list[tuple[str, float, float, float]]:
    fmt = device.fmt
    patterns = [re.compile(p) for p in fmt.patterns]
    found: dict[str, str] = {}
    term = fmt.line_terminator.encode(fmt.encoding)
    with serial.Serial(link, 9600, timeout=3) as port:
        port.reset_input_buffer()
        if fmt.mode == "free_running":
            port.read_until(term)  # the rest of a line already under way
        t0 = clock.now()
        if fmt.poll_command is not None:
            port.write(fmt.poll_command.encode(fmt.encoding))
        matched: set[int] = set()
        while len(matched) < len(patterns):
            line = port.read_until(term)
            assert line.endswith(term), (device.id, line)
            text = line[: -len(term)].decode(fmt.encoding)
            hits = [n for n, p in enumerate(patterns) if p.fullmatch(text)]
            assert hits, (device.id, text)
            matched.update(hits)
            match = patterns[hits[0]].fullmatch(text)
            assert match is not None
            found.update(match.groupdict())
        t1 = clock.now()
    out = []
    for point in fmt.points:
        raw = float(found[point.group])
        out.append((point.kind, physical(device, point, raw), t0, t1))
    return out


def tolerance(device: VirtualDevice, point: ModbusPoint | AsciiPoint) -> float:
    """Five standard deviations of the device's noise plus one quantisation step."""
    noise = device.spec.feed(point.kind).noise
    decimals = device.spec.feed(point.kind).decimals if isinstance(point, ModbusPoint) else 0
    step = (
        abs(point.scale) / 10**decimals if isinstance(point, ModbusPoint) and point.type != "float32" else 0
    )
    return 5 * noise + step + 1e-3 * abs(point.scale)


def clean_time(name: str) -> float:
    """Middle of the scenario, or the first hour of a fault parade (no fault until 0.9 h)."""
    scenario = load_scenario(default_scenario_path(name))
    t = scenario.duration / 2
    if any(f.start <= t < f.end for f in scenario.faults):
        t = min(f.start for f in scenario.faults) / 2
    return t


@pytest.mark.parametrize("name", scenario_names())
def test_every_device_reads_the_truth_over_its_protocol(name: str, tmp_path: Path) -> None:
    readings: dict[str, list[tuple[str, float, float, float]]] = {}

    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        clients: dict[str, ModbusBaseClient] = {}
        for bus in sims.scenario.buses:
            if bus.type == "modbus_tcp":
                host, port = ep.modbus_tcp[bus.id]
                clients[bus.id] = AsyncModbusTcpClient(host, port=port, timeout=2, retries=0)
            elif bus.type == "modbus_rtu":
                clients[bus.id] = AsyncModbusSerialClient(
                    ep.serial[bus.id], framer=FramerType.RTU, baudrate=9600, timeout=2, retries=0
                )
        try:
            for client in clients.values():
                assert await client.connect()
            for dev in sims.devices.values():
                if isinstance(dev, AsciiDevice):
                    readings[dev.id] = await asyncio.to_thread(
                        read_ascii, ep.serial[dev.spec.bus], dev, clock
                    )
                else:
                    readings[dev.id] = await read_modbus(clients[dev.spec.bus], dev, clock)
        finally:
            for client in clients.values():
                client.close()

    sims = serve(name, body, tmp_path, at=clean_time(name), speed=10.0, timeout=30)
    truth = TruthFile(sims.truth_path)
    checked: list[Any] = []
    for dev in sims.devices.values():
        assert {k for k, *_ in readings[dev.id]} == {p.kind for p in dev.points()}, dev.id
        for kind, value, t0, t1 in readings[dev.id]:
            point = dev.point(kind)
            lo = min(truth.value(dev.id, kind, t0), truth.value(dev.id, kind, t1))
            hi = max(truth.value(dev.id, kind, t0), truth.value(dev.id, kind, t1))
            tol = tolerance(dev, point)
            assert lo - tol <= value <= hi + tol, (dev.id, kind, value, lo, hi, tol)
            checked.append((dev.id, kind))
    assert len(checked) == sum(len(d.points()) for d in sims.devices.values())
