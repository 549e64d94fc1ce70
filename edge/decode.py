"""Raw device data -> physical values with a quality flag, driven by the sensor profile.

Pure functions, no I/O: the drivers hand in registers or text lines, this module applies the
profile (word order, invalid markers, scaling, decimals, distance-to-depth, range).  Invalid
markers are compared on the raw value because that is how vendors document them ("65535 = no
echo"), before any scaling could make them inexact.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from pymodbus.client.mixin import ModbusClientMixin

from edge.config import SensorConfig
from edge.profiles import REGISTER_COUNT, AsciiFormat, AsciiPoint, ModbusPoint
from wire.telemetry import Quality, Reading, make_reading
from wire.units import LENGTH_UNITS_PER_METRE

# (value, quality): value is None unless quality is OK.
Sample = tuple[float | None, Quality]

_DATATYPE = {
    "int16": ModbusClientMixin.DATATYPE.INT16,
    "uint16": ModbusClientMixin.DATATYPE.UINT16,
    "int32": ModbusClientMixin.DATATYPE.INT32,
    "uint32": ModbusClientMixin.DATATYPE.UINT32,
    "float32": ModbusClientMixin.DATATYPE.FLOAT32,
}
MAX_DECIMALS = 9  # a decimals register beyond this is a device fault, not a real resolution


def raw_from_registers(point: ModbusPoint, registers: Sequence[int]) -> int | float:
    """The raw number in `registers` (exactly REGISTER_COUNT[point.type] of them).

    Word orders name bytes with A as the most significant: ABCD is plain big-endian, CDAB has
    the low word first, BADC/DCBA additionally swap the two bytes inside each register.
    """
    regs = list(registers)
    if len(regs) != REGISTER_COUNT[point.type]:
        raise ValueError(f"{point.type} needs {REGISTER_COUNT[point.type]} registers, got {len(regs)}")
    if point.word_order in ("BADC", "DCBA"):
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    order: Literal["big", "little"] = "big" if point.word_order in ("ABCD", "BADC") else "little"
    value = ModbusClientMixin.convert_from_registers(regs, _DATATYPE[point.type], word_order=order)
    assert isinstance(value, int | float)
    return value


def modbus_sample(
    point: ModbusPoint, registers: Mapping[int, int], mounting_height: float | None = None
) -> Sample:
    """Decode one point from a map of address -> register value (all reads of one request)."""
    count = REGISTER_COUNT[point.type]
    try:
        regs = [registers[point.address + i] for i in range(count)]
    except KeyError:
        return None, Quality.ERROR
    raw = raw_from_registers(point, regs)
    if isinstance(raw, float) and not math.isfinite(raw):
        return None, Quality.INVALID
    if raw in point.invalid:
        return None, Quality.INVALID
    decimals = 0
    if point.decimals_register is not None:
        if point.decimals_register not in registers:
            return None, Quality.ERROR
        decimals = registers[point.decimals_register]
        if decimals > MAX_DECIMALS:
            return None, Quality.INVALID
    value = raw * point.scale / 10**decimals + point.offset
    return _finish(value, point.unit, point.distance_to_depth, point.range, mounting_height)


def _finish(
    value: float,
    unit: str,
    distance_to_depth: bool,
    range_: tuple[float, float] | None,
    mounting_height: float | None,
) -> Sample:
    if distance_to_depth:
        if mounting_height is None:  # load_gateway refuses this; guard against direct callers
            return None, Quality.ERROR
        value = mounting_height * LENGTH_UNITS_PER_METRE[unit] - value
    if not math.isfinite(value):
        return None, Quality.INVALID
    # Scaling leaves binary noise (2.5 * 100 - 150.2 = 99.80000000000001); 12 significant digits
    # keep every digit a 32-bit register or an ASCII field can carry.
    value = float(f"{value:.12g}")
    if range_ is not None and not range_[0] <= value <= range_[1]:
        return None, Quality.OUT_OF_RANGE
    return value, Quality.OK


def match_line(
    fmt: AsciiFormat, line: str, compiled: Sequence[re.Pattern[str]] | None = None
) -> dict[str, str] | None:
    """Named groups of the first pattern that matches the whole line, or None (garbled line)."""
    for pattern in compiled if compiled is not None else [re.compile(p) for p in fmt.patterns]:
        m = pattern.fullmatch(line)
        if m is not None:
            return {k: v for k, v in m.groupdict().items() if v is not None}
    return None


def ascii_sample(
    point: AsciiPoint, groups: Mapping[str, str], mounting_height: float | None = None
) -> Sample:
    """Decode one point from the named groups of a matched line (caller checks the group is there)."""
    try:
        raw = float(groups[point.group])
    except (KeyError, ValueError):
        return None, Quality.INVALID
    if raw in point.invalid:
        return None, Quality.INVALID
    if point.quality_group is not None and point.quality_ok is not None:
        try:
            qnum = float(groups[point.quality_group])
        except (KeyError, ValueError):
            return None, Quality.INVALID
        if not point.quality_ok[0] <= qnum <= point.quality_ok[1]:
            return None, Quality.INVALID
    value = raw * point.scale + point.offset
    return _finish(value, point.unit, point.distance_to_depth, point.range, mounting_height)


def reading(sensor: SensorConfig, point: ModbusPoint | AsciiPoint, ts: datetime, sample: Sample) -> Reading:
    value, q = sample
    return make_reading(sensor.id, point.kind, ts, value, point.unit, q)
