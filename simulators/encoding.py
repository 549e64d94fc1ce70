"""Physical values -> what a device puts on the wire, per profile (the inverse of edge decoding).

Modbus:  physical = raw * scale / 10**decimals + offset
    =>   raw = (physical - offset) / scale * 10**decimals
Integer raws are rounded to the nearest step.  A 32-bit value is four bytes A B C D (A most
significant) laid into two registers by the point's word order:

    ABCD -> [AB, CD]   CDAB -> [CD, AB]   BADC -> [BA, DC]   DCBA -> [DC, BA]

16-bit values are plain big-endian (word order does not apply).  A value the type cannot hold
(or NaN) is served as the profile's first `invalid` marker, as real sensors do; a profile
without markers saturates at the type's limits instead.

ASCII: the number printed in a line is (physical - offset) / scale; the line template formats it.
"""

from __future__ import annotations

import math
import struct

from edge.profiles import AsciiPoint, ModbusPoint, WordOrder

INT_LIMITS: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}
FLOAT32_MAX = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]


def to_registers(data: bytes, word_order: WordOrder = "ABCD") -> list[int]:
    """Big-endian bytes (2 or 4) -> 16-bit registers in the given word order."""
    if len(data) == 2:
        return [int.from_bytes(data, "big")]
    if len(data) != 4:
        raise ValueError(f"expected 2 or 4 bytes, got {len(data)}")
    a, b, c, d = data
    words = {
        "ABCD": [(a, b), (c, d)],
        "CDAB": [(c, d), (a, b)],
        "BADC": [(b, a), (d, c)],
        "DCBA": [(d, c), (b, a)],
    }[word_order]
    return [hi << 8 | lo for hi, lo in words]


def raw_bytes(type_: str, raw: int | float) -> bytes:
    """The big-endian bytes of `raw` in a register type.  Integers wrap to the type's width, so a
    marker like 65535 means 0xFFFF whether the type is signed or not."""
    if type_ == "float32":
        return struct.pack(">f", float(raw))
    bits = 16 if type_.endswith("16") else 32
    return (int(raw) & ((1 << bits) - 1)).to_bytes(bits // 8, "big")


def encode_modbus(point: ModbusPoint, physical: float, decimals: int = 0) -> list[int]:
    """Registers holding `physical` for this point.  `decimals` is what the device's decimals
    register says (only for points that have one)."""
    raw = (physical - point.offset) / point.scale * 10**decimals
    if point.type == "float32":
        if math.isfinite(raw) and abs(raw) <= FLOAT32_MAX:
            return to_registers(raw_bytes("float32", raw), point.word_order)
        return to_registers(_unrepresentable(point, raw), point.word_order)
    lo, hi = INT_LIMITS[point.type]
    if math.isfinite(raw) and lo <= round(raw) <= hi:
        return to_registers(raw_bytes(point.type, round(raw)), point.word_order)
    return to_registers(_unrepresentable(point, raw), point.word_order)


def _unrepresentable(point: ModbusPoint, raw: float) -> bytes:
    if point.invalid:
        return raw_bytes(point.type, point.invalid[0])
    if point.type == "float32":
        return raw_bytes("float32", math.copysign(FLOAT32_MAX, raw) if not math.isnan(raw) else raw)
    lo, hi = INT_LIMITS[point.type]
    return raw_bytes(point.type, lo if raw < 0 or math.isnan(raw) else hi)


def ascii_number(point: AsciiPoint, physical: float) -> float:
    """The number an ASCII device prints for `physical`."""
    return (physical - point.offset) / point.scale
