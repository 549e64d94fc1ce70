"""Decoding pinned to known byte vectors, so a word-order mix-up cannot hide on both sides."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Any

import pytest

from edge.config import SensorConfig
from edge.decode import ascii_sample, match_line, modbus_sample, raw_from_registers, reading
from edge.profiles import AsciiFormat, AsciiPoint, ModbusPoint
from wire.telemetry import Quality


def point(**kw: Any) -> ModbusPoint:
    base: dict[str, Any] = {"kind": "river_level", "unit": "m", "address": 0, "type": "float32"}
    return ModbusPoint(**(base | kw))


@pytest.mark.parametrize(
    ("order", "regs"),
    [
        ("ABCD", [0x3FC0, 0x0000]),
        ("CDAB", [0x0000, 0x3FC0]),
        ("BADC", [0xC03F, 0x0000]),
        ("DCBA", [0x0000, 0xC03F]),
    ],
)
def test_float32_word_orders(order: str, regs: list[int]) -> None:
    assert raw_from_registers(point(word_order=order), regs) == 1.5


@pytest.mark.parametrize(
    ("order", "regs"),
    [
        # 0x01020304: A=01 B=02 C=03 D=04
        ("ABCD", [0x0102, 0x0304]),
        ("CDAB", [0x0304, 0x0102]),
        ("BADC", [0x0201, 0x0403]),
        ("DCBA", [0x0403, 0x0201]),
    ],
)
def test_int32_word_orders(order: str, regs: list[int]) -> None:
    assert raw_from_registers(point(type="uint32", word_order=order), regs) == 0x01020304
    assert raw_from_registers(point(type="int32", word_order=order), regs) == 0x01020304


def test_signed_and_unsigned() -> None:
    assert raw_from_registers(point(type="int16"), [0xFFFE]) == -2
    assert raw_from_registers(point(type="uint16"), [0xFFFE]) == 65534
    assert raw_from_registers(point(type="int32"), [0xFFFF, 0xFFFF]) == -1
    assert raw_from_registers(point(type="uint32"), [0xFFFF, 0xFFFF]) == 2**32 - 1
    # a 16-bit value in a byte-swapped order: the two bytes of the register are swapped
    assert raw_from_registers(point(type="int16", word_order="BADC"), [0xFEFF]) == -2
    with pytest.raises(ValueError):
        raw_from_registers(point(type="int32"), [1])


def test_scale_offset_and_range() -> None:
    p = point(type="int16", scale=0.01, offset=1.0, range=(-90.0, 90.0))
    assert modbus_sample(p, {0: 1234}) == (pytest.approx(13.34), Quality.OK)
    assert modbus_sample(p, {0: (-12345) & 0xFFFF}) == (None, Quality.OUT_OF_RANGE)
    assert modbus_sample(p, {}) == (None, Quality.ERROR)


def test_invalid_markers_compare_raw_values() -> None:
    # laser snow sensor: 65535 = no echo, 32767 = rejected jump, before the mm -> cm scaling
    p = point(
        kind="snow_depth",
        unit="cm",
        type="uint16",
        scale=0.1,
        invalid=[65535, 32767],
        distance_to_depth=True,
        range=(0.0, 600.0),
    )
    assert modbus_sample(p, {0: 65535}, mounting_height=3.0) == (None, Quality.INVALID)
    assert modbus_sample(p, {0: 32767}, mounting_height=3.0) == (None, Quality.INVALID)
    # distance 2500 mm = 250 cm below a 3 m mount -> 50 cm of snow
    assert modbus_sample(p, {0: 2500}, mounting_height=3.0) == (pytest.approx(50.0), Quality.OK)
    # distance longer than the mount (a hole, a reflection): negative depth is out of range
    assert modbus_sample(p, {0: 3100}, mounting_height=3.0) == (None, Quality.OUT_OF_RANGE)
    assert modbus_sample(p, {0: 2500}, mounting_height=None) == (None, Quality.ERROR)


def test_distance_to_depth_units() -> None:
    mm = point(kind="snow_depth", unit="mm", type="uint16", distance_to_depth=True)
    assert modbus_sample(mm, {0: 2000}, mounting_height=2.5) == (pytest.approx(500.0), Quality.OK)
    m = point(kind="snow_depth", unit="m", distance_to_depth=True)
    regs = list(struct.unpack(">HH", struct.pack(">f", 2.0)))
    assert modbus_sample(m, dict(enumerate(regs)), mounting_height=2.5) == (pytest.approx(0.5), Quality.OK)


def test_decimals_register() -> None:
    # pressure transmitter: 2345 with 3 decimals = 2.345 m
    p = point(type="int16", address=4, decimals_register=3, range=(0.0, 20.0))
    assert modbus_sample(p, {3: 3, 4: 2345}) == (pytest.approx(2.345), Quality.OK)
    assert modbus_sample(p, {3: 1, 4: 2345}) == (None, Quality.OUT_OF_RANGE)  # 234.5 m
    assert modbus_sample(p, {3: 0, 4: 12}) == (12.0, Quality.OK)
    assert modbus_sample(p, {3: 40, 4: 12}) == (None, Quality.INVALID)  # nonsense decimals
    assert modbus_sample(p, {4: 12}) == (None, Quality.ERROR)


def test_non_finite_float_is_invalid() -> None:
    nan = list(struct.unpack(">HH", struct.pack(">f", float("nan"))))
    assert modbus_sample(point(), dict(enumerate(nan))) == (None, Quality.INVALID)


def test_float_invalid_marker() -> None:
    p = point(invalid=[-9999.0])
    regs = list(struct.unpack(">HH", struct.pack(">f", -9999.0)))
    assert modbus_sample(p, dict(enumerate(regs))) == (None, Quality.INVALID)


US = AsciiFormat(
    mode="free_running",
    patterns=[
        r"^(?P<addr>\d{2}) (?P<dist>\d\.\d{3}) (?P<qqq>\d{3}) "
        r"(?P<temp>[+-]?\d{2}\.\d{2}) (?P<volt>\d{2}\.\d{2})$"
    ],
    points=[
        AsciiPoint(
            kind="snow_depth",
            unit="cm",
            group="dist",
            scale=100.0,
            distance_to_depth=True,
            quality_group="qqq",
            quality_ok=(152, 300),
            range=(0.0, 600.0),
        ),
        AsciiPoint(kind="air_temperature", unit="degC", group="temp", range=(-50.0, 50.0)),
    ],
)


def test_ascii_ultrasonic_line() -> None:
    groups = match_line(US, "01 1.523 168 -04.25 12.08")
    assert groups is not None
    depth, temp = US.points
    # exact: the binary noise of 250 - 152.3 is rounded away
    assert ascii_sample(depth, groups, mounting_height=2.5) == (97.7, Quality.OK)
    assert ascii_sample(temp, groups) == (-4.25, Quality.OK)


def test_ascii_quality_number_outside_ok_range_is_invalid() -> None:
    depth, temp = US.points
    for qqq in ("000", "151", "301"):
        groups = match_line(US, f"01 1.523 {qqq} -04.25 12.08")
        assert groups is not None
        assert ascii_sample(depth, groups, mounting_height=2.5) == (None, Quality.INVALID)
        assert ascii_sample(temp, groups)[1] is Quality.OK  # the temperature is not affected


def test_ascii_garbled_and_partial_lines_do_not_match() -> None:
    assert match_line(US, "01 1.523 168 -04.25") is None
    assert match_line(US, "1 1.523 168 -04.25 12.08") is None
    assert match_line(US, "") is None


def test_ascii_inclinometer_two_patterns() -> None:
    fmt = AsciiFormat(
        mode="polled",
        poll_command="R\r\n",
        patterns=[r"^X=(?P<x>[+-]\d{2}\.\d{3})$", r"^Y=(?P<y>[+-]\d{2}\.\d{3})$"],
        points=[
            AsciiPoint(kind="tilt_x", unit="deg", group="x", range=(-30.0, 30.0)),
            AsciiPoint(kind="tilt_y", unit="deg", group="y", range=(-30.0, 30.0), invalid=[-99.999]),
        ],
    )
    assert match_line(fmt, "X=+01.234") == {"x": "+01.234"}
    gy = match_line(fmt, "Y=-00.567")
    assert gy == {"y": "-00.567"}
    assert ascii_sample(fmt.points[1], gy) == (-0.567, Quality.OK)
    assert ascii_sample(fmt.points[1], {"y": "-99.999"}) == (None, Quality.INVALID)
    assert ascii_sample(fmt.points[0], {"x": "+45.000"}) == (None, Quality.OUT_OF_RANGE)


def test_reading_carries_value_only_when_ok() -> None:
    s = SensorConfig(id="river-01", profile="radar-level-rl", bus="b", unit_id=1)
    ts = datetime(2025, 1, 1, tzinfo=UTC)
    p = point()
    ok = reading(s, p, ts, (1.5, Quality.OK))
    assert (ok.sensor, ok.kind, ok.value, ok.unit, ok.q) == ("river-01", "river_level", 1.5, "m", Quality.OK)
    bad = reading(s, p, ts, (None, Quality.TIMEOUT))
    assert bad.value is None and bad.q is Quality.TIMEOUT
