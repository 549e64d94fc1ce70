"""Sensor profiles: a device model as data (EdgeX-style), one YAML file per model.

A profile says how to get values out of a device model: for Modbus devices a register map, for
ASCII devices a line format.  Adding a device model is one file in firmware_configs/profiles/,
no code.  The simulators read the same files to know how to serve a virtual device, and the edge
decodes with them; tests pin both sides to known byte vectors so a shared misunderstanding of a
word order cannot hide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from wire import configfile
from wire.configfile import ConfigError
from wire.ids import Ident
from wire.telemetry import Kind, Unit

DataType = Literal["int16", "uint16", "int32", "uint32", "float32"]
WordOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
REGISTER_COUNT: dict[str, int] = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}


class ModbusPoint(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One value read from registers.  physical = raw * scale / 10**decimals + offset."""

    kind: Kind  # what is measured, e.g. river_level, snow_depth, tilt_x
    unit: Unit
    address: Annotated[int, msgspec.Meta(ge=0, le=65535)]
    type: DataType
    function: Literal["holding", "input"] = "holding"  # FC3 / FC4
    word_order: WordOrder = "ABCD"  # A = most significant byte; ABCD is plain big-endian
    scale: float = 1.0
    offset: float = 0.0
    # Address of a register (same function) holding the number of decimals, for transmitters
    # that report an int16 together with "how many digits are after the point".
    decimals_register: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None
    invalid: list[int | float] = []  # raw values the device uses to mean "no valid reading"
    range: tuple[float, float] | None = None  # physical range (after scaling); outside -> out_of_range
    # Snow sensors measure the distance down to the surface; depth = mounting height - distance.
    # The mounting height is per installation, so it comes from the gateway config (in metres,
    # converted to this point's unit, which must then be m, cm or mm).
    distance_to_depth: bool = False


LENGTH_UNITS_PER_METRE: dict[str, float] = {"m": 1.0, "cm": 100.0, "mm": 1000.0}


class AsciiPoint(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One value taken from a named regex group of a line."""

    kind: Kind
    unit: Unit
    group: str  # regex group holding the number
    scale: float = 1.0
    offset: float = 0.0
    invalid: list[float] = []
    range: tuple[float, float] | None = None
    distance_to_depth: bool = False
    # Devices that report their own quality number in the same line (e.g. ultrasonic "QQQ"):
    # the group holding it and the inclusive range that counts as good.
    quality_group: str | None = None
    quality_ok: tuple[float, float] | None = None


class AsciiFormat(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # free_running: the device sends lines on its own; polled: send `poll_command`, read the answer.
    mode: Literal["free_running", "polled"]
    # One regex per line type; each must match a whole line (without the terminator).  A device
    # like an inclinometer that sends `X=...` and `Y=...` on separate lines has two patterns.
    patterns: Annotated[list[str], msgspec.Meta(min_length=1)]
    points: Annotated[list[AsciiPoint], msgspec.Meta(min_length=1)]
    poll_command: str | None = None  # with escapes already decoded by YAML, e.g. "R\r\n"
    line_terminator: str = "\r\n"
    encoding: str = "ascii"


class ModbusMap(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    points: Annotated[list[ModbusPoint], msgspec.Meta(min_length=1)]


class Profile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    model: Ident
    description: str
    protocol: Literal["modbus", "ascii"]
    manufacturer: str = ""
    modbus: ModbusMap | None = None
    ascii: AsciiFormat | None = None


def load_profile(path: str | Path) -> Profile:
    profile = configfile.load(path, Profile)
    _check(profile, path)
    return profile


def _check(p: Profile, path: str | Path) -> None:
    import re

    if p.protocol == "modbus":
        if p.modbus is None:
            raise ConfigError(path, "field 'modbus'", "required when protocol is modbus")
        kinds = [pt.kind for pt in p.modbus.points]
        for i, pt in enumerate(p.modbus.points):
            if pt.decimals_register is not None and pt.type not in ("int16", "uint16", "int32", "uint32"):
                raise ConfigError(
                    path, f"modbus: points[{i}]: field 'decimals_register'", "only for integer types"
                )
            if pt.range is not None and pt.range[0] >= pt.range[1]:
                raise ConfigError(path, f"modbus: points[{i}]: field 'range'", "min must be below max")
    else:
        if p.ascii is None:
            raise ConfigError(path, "field 'ascii'", "required when protocol is ascii")
        if p.ascii.mode == "polled" and not p.ascii.poll_command:
            raise ConfigError(path, "ascii: field 'poll_command'", "required when mode is polled")
        groups: set[str] = set()
        for i, pattern in enumerate(p.ascii.patterns):
            try:
                groups |= set(re.compile(pattern).groupindex)
            except re.error as exc:
                raise ConfigError(path, f"ascii: patterns[{i}]", f"invalid regex: {exc}") from None
        kinds = [pt.kind for pt in p.ascii.points]
        for i, apt in enumerate(p.ascii.points):
            for field in ("group", "quality_group"):
                g = getattr(apt, field)
                if g is not None and g not in groups:
                    raise ConfigError(
                        path, f"ascii: points[{i}]: field {field!r}", f"no regex group named {g!r}"
                    )
    points: list[ModbusPoint | AsciiPoint] = list(
        p.modbus.points if p.modbus else p.ascii.points if p.ascii else []
    )
    for i, point in enumerate(points):
        if point.distance_to_depth and point.unit not in LENGTH_UNITS_PER_METRE:
            raise ConfigError(path, f"points[{i}]: field 'unit'", "distance_to_depth needs unit m, cm or mm")
    if len(set(kinds)) != len(kinds):
        raise ConfigError(path, "points", "each point of a profile needs its own kind")


def load_profiles(directory: str | Path) -> dict[str, Profile]:
    """All profiles in a folder, keyed by model id (which must match the file name)."""
    out: dict[str, Profile] = {}
    for f in sorted(Path(directory).glob("*.yaml")):
        prof = load_profile(f)
        if prof.model != f.stem:
            raise ConfigError(f, "field 'model'", f"{prof.model!r} must match the file name {f.stem!r}")
        out[prof.model] = prof
    return out
