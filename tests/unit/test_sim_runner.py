"""SimulatorSet end to end on one machine: every demo device read once over its real protocol
(pymodbus over TCP and over a pty for RTU, pyserial for the ASCII ptys), values within noise of
the ground truth."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import struct
import termios
from pathlib import Path
from typing import Any

import pytest
import serial
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from simulators.ascii_serial import BACKLOG_BYTES
from simulators.modbus_rtu import with_crc
from simulators.runner import Endpoints, SimulatorSet
from tests.simulated import Body, serve
from wire.clock import ScaledClock

HOUR = 3600.0


def run(
    body: Body,
    tmp_path: Path,
    at: float = 6.5 * HOUR,
    speed: float = 60.0,
) -> SimulatorSet:
    """Run `body` against the demo storm, starting `at` seconds into the scenario."""
    return serve("demo-storm", body, tmp_path, at, speed, timeout=10)


def check(sims: SimulatorSet, device: str, kind: str, t0: float, t1: float, value: float, tol: float) -> None:
    lo = min(sims.truth(device, kind, t0), sims.truth(device, kind, t1)) - tol
    hi = max(sims.truth(device, kind, t0), sims.truth(device, kind, t1)) + tol
    assert lo <= value <= hi, (device, kind, value, lo, hi)


def test_modbus_tcp_radar(tmp_path: Path) -> None:
    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        host, port = ep.modbus_tcp["plc-tcp"]
        client = AsyncModbusTcpClient(host, port=port, timeout=2, retries=0)
        assert await client.connect()
        try:
            t0 = clock.now()
            rr = await client.read_holding_registers(0, count=2, device_id=1)
            t1 = clock.now()
            assert not rr.isError()
            level = client.convert_from_registers(rr.registers, client.DATATYPE.FLOAT32, word_order="little")
            assert isinstance(level, float)
            check(sims, "river-radar-01", "river_level", t0, t1, level, 0.03)
            assert 3.8 < level < 4.1  # near the peak at 6.5 h
            bad = await client.read_holding_registers(10, count=1, device_id=1)
            assert bad.isError() and bad.exception_code == 2
            other = await client.read_holding_registers(0, count=2, device_id=7)  # no such unit
            assert other.isError() and other.exception_code == 0x0B
        finally:
            client.close()

    sims = run(body, tmp_path)
    assert sims.requests_served == 2  # the 0x0B answer comes from the "converter", not a device


def test_modbus_rtu_three_slaves_on_one_pty(tmp_path: Path) -> None:
    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        link = ep.serial["rs485-1"]
        assert Path(link).is_symlink()
        client = AsyncModbusSerialClient(link, framer=FramerType.RTU, baudrate=9600, timeout=2, retries=0)
        assert await client.connect()
        try:
            t0 = clock.now()
            laser = await client.read_input_registers(0, count=2, device_id=2)
            incl = await client.read_input_registers(0, count=4, device_id=3)
            pt = await client.read_holding_registers(3, count=2, device_id=4)
            t1 = clock.now()
        finally:
            client.close()
        for rr in (laser, incl, pt):
            assert not rr.isError(), rr
        # laser-snow-ls: distance in mm (uint16), depth = 300 cm - distance; temperature int16 * 0.1
        distance_mm, temp = laser.registers[0], struct.unpack(">h", struct.pack(">H", laser.registers[1]))[0]
        check(sims, "snow-laser-01", "snow_depth", t0, t1, 300.0 - distance_mm * 0.1, 1.6)
        check(sims, "snow-laser-01", "sensor_temperature", t0, t1, temp * 0.1, 0.6)
        # inclinometer-modbus-im: int16 * 0.01 deg, then float32 BADC temperature
        tx, ty = struct.unpack(">hh", struct.pack(">HH", *incl.registers[:2]))
        check(sims, "slope-incl-01", "tilt_x", t0, t1, tx * 0.01, 0.02)
        check(sims, "slope-incl-01", "tilt_y", t0, t1, ty * 0.01, 0.02)
        badc = struct.pack(">HH", *incl.registers[2:])
        (enclosure,) = struct.unpack(">f", bytes([badc[1], badc[0], badc[3], badc[2]]))
        check(sims, "slope-incl-01", "sensor_temperature", t0, t1, enclosure, 0.3)
        # pressure-level-pt: decimals register 3 holds 3, level int16 at 4
        decimals, raw = pt.registers
        assert decimals == 3
        check(sims, "river-pt-02", "river_level", t0, t1, raw / 10**decimals, 0.06)

    sims = run(body, tmp_path)
    assert sims.requests_served == 3


def _raw_exchange(link: str, data: bytes, expect: int) -> bytes:
    with serial.Serial(link, 9600, timeout=0.3) as port:
        port.reset_input_buffer()
        port.write(data)
        return bytes(port.read(expect))


def test_rtu_silent_for_other_units_and_resyncs_after_garbage(tmp_path: Path) -> None:
    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        link = ep.serial["rs485-1"]
        request = with_crc(bytes([4, 3]) + struct.pack(">HH", 3, 1))
        assert await asyncio.to_thread(_raw_exchange, link, with_crc(bytes.fromhex("090300030001")), 5) == b""
        answer = await asyncio.to_thread(_raw_exchange, link, b"\xff\x00\x17" + request, 7)
        assert answer == with_crc(bytes([4, 3, 2, 0, 3]))  # unit 4, FC3, 2 bytes: decimals = 3

    sims = run(body, tmp_path)
    assert sims.requests_served == 1


def _read_lines(link: str, poll: bytes | None, count: int) -> list[str]:
    with serial.Serial(link, 9600, timeout=2) as port:
        port.reset_input_buffer()
        if poll is not None:
            port.write(poll)
        return [port.readline().decode("ascii") for _ in range(count)]


def test_ascii_free_running_and_polled(tmp_path: Path) -> None:
    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        for _ in range(2):  # the edge may close and reopen the port: the device keeps serving
            t0 = clock.now()
            (line,) = await asyncio.to_thread(_read_lines, ep.serial["snow-serial"], None, 1)
            t1 = clock.now()
            assert line.endswith("\r\n")
            addr, dist, qqq, temp, volt = line.split()
            assert addr == "01" and volt == "12.08" and 160 <= int(qqq) <= 200
            check(sims, "snow-us-02", "snow_depth", t0, t1, 250.0 - float(dist) * 100, 2.6)
            check(sims, "snow-us-02", "air_temperature", t0, t1, float(temp), 0.6)

            t0 = clock.now()
            x, y = await asyncio.to_thread(_read_lines, ep.serial["incl-serial"], b"R\r\n", 2)
            t1 = clock.now()
            assert x.startswith("X=") and y.startswith("Y=") and x.endswith("\r\n")
            check(sims, "slope-incl-02", "tilt_x", t0, t1, float(x[2:]), 0.015)
            check(sims, "slope-incl-02", "tilt_y", t0, t1, float(y[2:]), 0.015)

    sims = run(body, tmp_path)
    assert sims.requests_served == 2  # the two polls


def test_truth_file_and_cleanup(tmp_path: Path) -> None:
    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        assert sims.truth("slope-incl-01", "tilt_x", sims.origin) == pytest.approx(0.02, abs=1e-3)

    sims = run(body, tmp_path, at=0.0)
    assert not (tmp_path / "sim" / "dev" / "rs485-1").exists()
    rows: list[dict[str, Any]] = [json.loads(line) for line in (tmp_path / "sim" / "truth.jsonl").open()]
    assert rows[0]["type"] == "scenario" and rows[0]["name"] == "demo-storm"
    failures = [r for r in rows if r["type"] == "failure"]
    assert {(r["device"], r["kind"]) for r in failures} == {
        (d, k) for d in ("slope-incl-01", "slope-incl-02") for k in ("tilt_x", "tilt_y")
    }
    assert all(r["t"] == pytest.approx(sims.origin + 12.2 * HOUR) for r in failures)
    river = [r for r in rows if r["type"] == "value" and r["device"] == "river-radar-01"]
    assert len(river) == 721 and river[-1]["t"] == pytest.approx(sims.origin + 12 * HOUR)
    peak = max(river, key=lambda r: r["value"])
    assert 3.8 < peak["value"] < 4.6


def _waiting(link: str) -> int:
    # Not pyserial: it flushes the input on open.
    fd = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])
    finally:
        os.close(fd)


def test_free_running_backlog_is_bounded_when_nobody_reads(tmp_path: Path) -> None:
    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        await asyncio.sleep(0.5)  # ~ 180 lines of 27 bytes at this speed
        waiting = await asyncio.to_thread(_waiting, ep.serial["snow-serial"])
        assert 0 < waiting <= BACKLOG_BYTES + 64

    run(body, tmp_path, speed=3600.0)
