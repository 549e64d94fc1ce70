"""Simulator encoding pinned to known byte vectors, and cross-checked against pymodbus's decoder."""

from __future__ import annotations

import struct

import pytest
from pymodbus.client.mixin import ModbusClientMixin

from edge.profiles import ModbusPoint, WordOrder
from simulators.encoding import ascii_number, encode_modbus, to_registers


def point(**kw: object) -> ModbusPoint:
    base: dict[str, object] = {"kind": "river_level", "unit": "m", "address": 0, "type": "float32"}
    base.update(kw)
    return ModbusPoint(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("order", "regs"),
    [
        ("ABCD", [0x3FC0, 0x0000]),
        ("CDAB", [0x0000, 0x3FC0]),
        ("BADC", [0xC03F, 0x0000]),
        ("DCBA", [0x0000, 0xC03F]),
    ],
)
def test_float32_1_5_in_every_word_order(order: WordOrder, regs: list[int]) -> None:
    assert encode_modbus(point(word_order=order), 1.5) == regs


def test_word_orders_on_distinct_bytes() -> None:
    data = bytes([0x11, 0x22, 0x33, 0x44])
    assert to_registers(data, "ABCD") == [0x1122, 0x3344]
    assert to_registers(data, "CDAB") == [0x3344, 0x1122]
    assert to_registers(data, "BADC") == [0x2211, 0x4433]
    assert to_registers(data, "DCBA") == [0x4433, 0x2211]


@pytest.mark.parametrize("value", [0.0, 1.5, 2.345, -7.25, 3.999, 1234.5678])
@pytest.mark.parametrize(("order", "pymodbus_order"), [("ABCD", "big"), ("CDAB", "little")])
def test_float32_round_trips_through_pymodbus(value: float, order: WordOrder, pymodbus_order: str) -> None:
    regs = encode_modbus(point(word_order=order), value)
    decoded = ModbusClientMixin.convert_from_registers(
        regs,
        ModbusClientMixin.DATATYPE.FLOAT32,
        word_order=pymodbus_order,  # type: ignore[arg-type]
    )
    assert decoded == pytest.approx(value, rel=1e-6)


@pytest.mark.parametrize(("type_", "dt"), [("int32", "INT32"), ("uint32", "UINT32")])
@pytest.mark.parametrize(("order", "pymodbus_order"), [("ABCD", "big"), ("CDAB", "little")])
def test_int32_round_trips_through_pymodbus(
    type_: str, dt: str, order: WordOrder, pymodbus_order: str
) -> None:
    regs = encode_modbus(point(type=type_, word_order=order, scale=0.001), 123456.789)
    raw = ModbusClientMixin.convert_from_registers(
        regs,
        ModbusClientMixin.DATATYPE[dt],
        word_order=pymodbus_order,  # type: ignore[arg-type]
    )
    assert raw == 123456789


def test_int16_with_decimals_register() -> None:
    # pressure-level-pt: physical = raw / 10**decimals; with 3 decimals 2.345 m is 2345.
    p = point(type="int16", address=4, decimals_register=3)
    assert encode_modbus(p, 2.345, decimals=3) == [2345]
    assert encode_modbus(p, -1.5, decimals=3) == [(-1500) & 0xFFFF]


def test_scale_and_offset_are_inverted() -> None:
    p = point(type="int16", scale=0.01, offset=-10.0)  # physical = raw * 0.01 - 10
    assert encode_modbus(p, 2.5) == [1250]


def test_unrepresentable_value_serves_first_invalid_marker() -> None:
    laser = point(kind="snow_depth", unit="cm", type="uint16", scale=0.1, invalid=[65535, 32767])
    assert encode_modbus(laser, 123.4) == [1234]
    assert encode_modbus(laser, -5.0) == [65535]  # negative distance cannot be a uint16
    assert encode_modbus(laser, 1e9) == [65535]
    temp = point(kind="sensor_temperature", unit="degC", type="int16", scale=0.1, invalid=[-32768])
    assert encode_modbus(temp, float("nan")) == [0x8000]


def test_without_markers_values_saturate() -> None:
    tilt = point(kind="tilt_x", unit="deg", type="int16", scale=0.01)
    assert encode_modbus(tilt, 400.0) == [0x7FFF]
    assert encode_modbus(tilt, -400.0) == [0x8000]
    assert encode_modbus(point(), 1e39) == list(
        struct.unpack(">HH", struct.pack(">f", 3.4028234663852886e38))
    )


def test_ascii_number_inverts_scale() -> None:
    from edge.profiles import AsciiPoint

    p = AsciiPoint(kind="snow_depth", unit="cm", group="dist", scale=100.0)
    assert ascii_number(p, 152.3) == pytest.approx(1.523)
