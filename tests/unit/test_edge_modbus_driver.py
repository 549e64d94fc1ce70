"""Modbus drivers against tiny hand-written slaves (TCP on loopback, RTU on a pseudo-terminal).

The slaves are deliberately minimal and independent of pymodbus' server, and can misbehave on
demand: stay silent, answer with an exception, or corrupt the CRC.
"""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path

import pytest

from edge.config import ModbusRtuBus, ModbusTcpBus, SensorConfig
from edge.drivers import create_driver
from edge.drivers._modbus import Block, plan_reads
from edge.drivers.modbus_rtu import ModbusRtuDriver
from edge.drivers.modbus_tcp import ModbusTcpDriver
from edge.profiles import ModbusPoint, load_profiles
from wire.clock import RealClock
from wire.telemetry import Quality

PROFILES = load_profiles(Path(__file__).resolve().parents[2] / "firmware_configs" / "profiles")

# unit -> {(function code, address): register}
Banks = dict[int, dict[tuple[int, int], int]]


def banks() -> Banks:
    radar = [0x0000, 0x3FC0]  # 1.5 m, CDAB
    temp_badc = [0xC03F, 0x0000]  # 1.5 degC, BADC
    return {
        1: {(3, 0): radar[0], (3, 1): radar[1]},
        # pressure transmitter: decimals (3) = 3, level (4) = 2345 -> 2.345 m
        4: {(3, 3): 3, (3, 4): 2345},
        # inclinometer: tilt x 1.23 deg, tilt y -0.45 deg, temperature float BADC
        3: {(4, 0): 123, (4, 1): (-45) & 0xFFFF, (4, 2): temp_badc[0], (4, 3): temp_badc[1]},
    }


def answer(bank: dict[tuple[int, int], int], pdu: bytes) -> bytes:
    fc, addr, count = struct.unpack(">BHH", pdu[:5])
    try:
        regs = [bank[(fc, a)] for a in range(addr, addr + count)]
    except KeyError:
        return bytes([fc | 0x80, 0x02])  # illegal data address
    return bytes([fc, 2 * count]) + b"".join(struct.pack(">H", r) for r in regs)


def test_plan_reads_one_request_per_contiguous_run() -> None:
    pt = PROFILES["pressure-level-pt"].modbus
    im = PROFILES["inclinometer-modbus-im"].modbus
    assert pt is not None and im is not None
    assert plan_reads(list(pt.points)) == [Block("holding", 3, 2)]  # decimals + value together
    assert plan_reads(list(im.points)) == [Block("input", 0, 4)]
    gap = [
        ModbusPoint(kind="a", unit="m", address=0, type="float32"),
        ModbusPoint(kind="b", unit="m", address=10, type="int16"),
        ModbusPoint(kind="c", unit="m", address=0, type="uint16", function="input"),
    ]
    assert plan_reads(gap) == [Block("holding", 0, 2), Block("holding", 10, 1), Block("input", 0, 1)]
    many = [ModbusPoint(kind=f"k{i}", unit="m", address=i, type="uint16") for i in range(130)]
    assert plan_reads(many) == [Block("holding", 0, 125), Block("holding", 125, 5)]


class TcpSlaves:
    def __init__(self, data: Banks) -> None:
        self.data = data
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                tid, _proto, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                pdu = await reader.readexactly(length - 1)
                if unit not in self.data:
                    continue  # a dead slave behind a converter: silence
                resp = answer(self.data[unit], pdu)
                writer.write(struct.pack(">HHHB", tid, 0, len(resp) + 1, unit) + resp)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


def sensor(profile: str, unit: int, **kw: float) -> SensorConfig:
    return SensorConfig(id=f"s{unit}", profile=profile, bus="b", unit_id=unit, **kw)  # type: ignore[arg-type]


def test_modbus_tcp_decodes_maps_errors_and_reconnects() -> None:
    async def scenario() -> None:
        slaves = TcpSlaves(banks())
        await slaves.start()
        bus = ModbusTcpBus(id="b", host="127.0.0.1", port=slaves.port, timeout=0.3, retries=0)
        drv = create_driver(bus, RealClock())
        assert isinstance(drv, ModbusTcpDriver)
        await drv.open()
        try:
            [level] = await drv.read(sensor("radar-level-rl", 1), PROFILES["radar-level-rl"])
            assert (level.q, level.value) == (Quality.OK, 1.5)
            [level] = await drv.read(sensor("pressure-level-pt", 4), PROFILES["pressure-level-pt"])
            assert level.q is Quality.OK and level.value == pytest.approx(2.345)
            x, y, t = await drv.read(sensor("inclinometer-modbus-im", 3), PROFILES["inclinometer-modbus-im"])
            assert (x.value, y.value, t.value) == (pytest.approx(1.23), pytest.approx(-0.45), 1.5)

            # a silent unit: timeout, and the live ones on the same connection keep working
            [dead] = await drv.read(sensor("radar-level-rl", 7), PROFILES["radar-level-rl"])
            assert dead.q is Quality.TIMEOUT and dead.value is None
            # an unmapped register: the device's exception
            [exc] = await drv.read(sensor("radar-level-rl", 4), PROFILES["radar-level-rl"])
            assert exc.q is Quality.EXCEPTION
            for _ in range(6):  # more silent requests than pymodbus' own give-up count
                await drv.read(sensor("radar-level-rl", 7), PROFILES["radar-level-rl"])
                [level] = await drv.read(sensor("radar-level-rl", 1), PROFILES["radar-level-rl"])
                assert level.q is Quality.OK

            # the converter goes away: error, fast (no blocking on the dead link)
            await slaves.stop()
            await asyncio.sleep(0.05)
            qs = set()
            for _ in range(3):
                start = asyncio.get_running_loop().time()
                [level] = await drv.read(sensor("radar-level-rl", 1), PROFILES["radar-level-rl"])
                qs.add(level.q)
                assert asyncio.get_running_loop().time() - start < 0.7
            assert Quality.ERROR in qs
            # ... and comes back: the driver reconnects after its backoff
            await slaves.start()
            for _ in range(40):
                [level] = await drv.read(sensor("radar-level-rl", 1), PROFILES["radar-level-rl"])
                if level.q is Quality.OK:
                    break
                await asyncio.sleep(0.1)
            assert level.q is Quality.OK
        finally:
            await drv.close()
            await slaves.stop()

    asyncio.run(scenario())


def crc16(data: bytes) -> bytes:
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


def test_modbus_rtu_ok_timeout_and_crc(pty: tuple[int, str]) -> None:
    master, port = pty
    data = banks()
    mode = {"corrupt": False}

    def slave() -> None:  # RTU requests are 8 bytes for FC3/FC4
        frame = os.read(master, 256)
        if len(frame) != 8 or crc16(frame[:6]) != frame[6:]:
            return
        unit = frame[0]
        if unit not in data:
            return
        body = bytes([unit]) + answer(data[unit], frame[1:6])
        crc = crc16(body)
        if mode["corrupt"]:
            crc = bytes([crc[0] ^ 0xFF, crc[1]])
        os.write(master, body + crc)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(master, slave)
        bus = ModbusRtuBus(id="b", port=port, baudrate=19200, timeout=0.3, retries=0)
        drv = create_driver(bus, RealClock())
        assert isinstance(drv, ModbusRtuDriver)
        await drv.open()
        try:
            [level] = await drv.read(sensor("pressure-level-pt", 4), PROFILES["pressure-level-pt"])
            assert level.q is Quality.OK and level.value == pytest.approx(2.345)
            [dead] = await drv.read(sensor("pressure-level-pt", 9), PROFILES["pressure-level-pt"])
            assert dead.q is Quality.TIMEOUT
            mode["corrupt"] = True
            [bad] = await drv.read(sensor("pressure-level-pt", 4), PROFILES["pressure-level-pt"])
            assert bad.q is Quality.CRC and bad.value is None
            mode["corrupt"] = False
            await asyncio.sleep(0.05)
            [level] = await drv.read(sensor("pressure-level-pt", 4), PROFILES["pressure-level-pt"])
            assert level.q is Quality.OK
        finally:
            await drv.close()
            loop.remove_reader(master)

    asyncio.run(scenario())


def test_missing_serial_port_is_error() -> None:
    async def scenario() -> None:
        drv = create_driver(ModbusRtuBus(id="b", port="/dev/ttyNOPE9", timeout=0.2), RealClock())
        await drv.open()
        [level] = await drv.read(sensor("pressure-level-pt", 4), PROFILES["pressure-level-pt"])
        assert level.q is Quality.ERROR
        await drv.close()

    asyncio.run(scenario())
