"""ASCII serial driver against a pseudo-terminal playing the device."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from edge.config import AsciiSerialBus, SensorConfig
from edge.drivers.ascii_serial import AsciiSerialDriver
from edge.profiles import load_profile
from wire.clock import RealClock
from wire.telemetry import Quality

PROFILES = Path(__file__).resolve().parents[2] / "firmware_configs" / "profiles"
US = load_profile(PROFILES / "ultrasonic-snow-us.yaml")
IA = load_profile(PROFILES / "inclinometer-ascii-ia.yaml")


def snow_sensor(interval: float = 0.2) -> SensorConfig:
    return SensorConfig(id="snow-us-02", profile=US.model, bus="snow", interval=interval, mounting_height=2.5)


def test_free_running_latest_value_garbled_and_silence(pty: tuple[int, str]) -> None:
    master, port = pty

    async def scenario() -> None:
        clock = RealClock()
        drv = AsciiSerialDriver(AsciiSerialBus(id="snow", port=port, timeout=0.3), clock)
        await drv.open()
        s = snow_sensor()
        try:
            # a partial line from before we listened, then two full lines: the newest wins
            os.write(master, b"3 -04.25 12.08\r\n01 1.600 168 -04.00 12.08\r\n01 1.523 168 -04.25 12.08\r\n")
            await asyncio.sleep(0.05)
            t0 = clock.now()
            depth, temp = await drv.read(s, US)
            assert (depth.kind, depth.q, depth.value) == ("snow_depth", Quality.OK, pytest.approx(97.7))
            assert (temp.q, temp.value) == (Quality.OK, -4.25)
            assert depth.ts.timestamp() <= t0  # sample time = when the line arrived
            assert drv.garbled_lines == 1

            # bad echo quality: the depth is invalid, the temperature still good
            os.write(master, b"01 1.523 000 -04.25 12.08\r\n")
            await asyncio.sleep(0.05)
            depth, temp = await drv.read(s, US)
            assert depth.q is Quality.INVALID and depth.value is None
            assert temp.q is Quality.OK

            # only garbage for longer than 2 x interval -> crc
            await asyncio.sleep(0.45)
            os.write(master, b"01 1.5#3 16\r\n")
            depth, temp = await drv.read(s, US)
            assert depth.q is Quality.CRC and temp.q is Quality.CRC

            # silence -> timeout (after waiting the bus timeout for a line)
            await asyncio.sleep(0.45)
            start = asyncio.get_running_loop().time()
            depth, _ = await drv.read(s, US)
            assert depth.q is Quality.TIMEOUT
            assert asyncio.get_running_loop().time() - start >= 0.25

            # a line arriving while the read waits is used
            async def late() -> None:
                await asyncio.sleep(0.1)
                os.write(master, b"01 2.000 200 +01.00 12.08\r\n")

            task = asyncio.create_task(late())
            depth, _ = await drv.read(s, US)
            await task
            assert depth.q is Quality.OK and depth.value == pytest.approx(50.0)
        finally:
            await drv.close()

    asyncio.run(scenario())


def test_polled_inclinometer(pty: tuple[int, str]) -> None:
    master, port = pty
    s = SensorConfig(id="slope-incl-02", profile=IA.model, bus="incl", interval=60)
    answers = [b"X=+01.234\r\nY=-00.567\r\n", b"X=+01.300\r\n", b"garbage\r\n"]
    polls: list[bytes] = []

    def device() -> None:  # answers each "R\r\n" with the next canned answer
        data = os.read(master, 100)
        polls.append(data)
        if data == b"R\r\n" and answers:
            os.write(master, answers.pop(0))

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(master, device)
        drv = AsciiSerialDriver(AsciiSerialBus(id="incl", port=port, timeout=0.3), RealClock())
        await drv.open()
        try:
            x, y = await drv.read(s, IA)
            assert (x.kind, x.q, x.value) == ("tilt_x", Quality.OK, 1.234)
            assert (y.kind, y.q, y.value) == ("tilt_y", Quality.OK, -0.567)
            assert x.ts == y.ts  # sample time = when the command was sent

            x, y = await drv.read(s, IA)  # only X answered
            assert (x.q, x.value) == (Quality.OK, 1.3)
            assert y.q is Quality.TIMEOUT and y.value is None

            x, y = await drv.read(s, IA)  # garbage answer
            assert x.q is Quality.CRC and y.q is Quality.CRC

            x, y = await drv.read(s, IA)  # no answer at all
            assert x.q is Quality.TIMEOUT and y.q is Quality.TIMEOUT
        finally:
            await drv.close()
            loop.remove_reader(master)
        assert polls[:4] == [b"R\r\n"] * 4

    asyncio.run(scenario())


def test_missing_port_is_error_without_blocking(tmp_path: Path) -> None:
    async def scenario() -> None:
        drv = AsciiSerialDriver(
            AsciiSerialBus(id="snow", port=str(tmp_path / "ttyUSB9"), timeout=5.0), RealClock()
        )
        await drv.open()
        start = asyncio.get_running_loop().time()
        readings = await drv.read(snow_sensor(), US)
        assert [r.q for r in readings] == [Quality.ERROR, Quality.ERROR]
        assert asyncio.get_running_loop().time() - start < 0.5  # in backoff: fails fast
        await drv.close()

    asyncio.run(scenario())


def test_device_side_gone_then_back(pty: tuple[int, str]) -> None:
    """The port vanishing (USB unplugged) turns into `error`, not a busy loop or a crash."""
    master, port = pty

    async def scenario() -> None:
        drv = AsciiSerialDriver(AsciiSerialBus(id="snow", port=port, timeout=0.2), RealClock())
        await drv.open()
        os.write(master, b"01 1.523 168 -04.25 12.08\r\n")
        await asyncio.sleep(0.05)
        assert (await drv.read(snow_sensor(), US))[0].q is Quality.OK
        os.close(master)  # the slave now reads EIO
        await asyncio.sleep(0.05)
        readings = await drv.read(snow_sensor(interval=0.01), US)
        assert readings[0].q is Quality.ERROR
        await drv.close()

    try:
        asyncio.run(scenario())
    finally:
        os.dup2(os.open(os.devnull, os.O_RDONLY), master)  # keep the fixture's close() valid
