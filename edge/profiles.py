"""Sensor profiles: a device model as data (EdgeX-style), one YAML file per model.

A profile says how to get values out of a device model: for Modbus devices a register map, for
ASCII devices a line format.  Adding a device model is one file in firmware_configs/profiles/,
no code.  The simulators read the same files to know how to serve a virtual device, and the edge
decodes with them; tests pin both sides to known byte vectors so a shared misunderstanding of a
word order cannot hide.

An ASCII line type is written either as a regex with named groups or, for devices whose manual
documents fixed columns ("columns 4-8: distance in mm, right-aligned"), as a `fixed:` column
spec.  Column specs are compiled into an equivalent anchored regex when the file is loaded, so
the loaded `AsciiFormat.patterns` is always a list of regex strings: the driver, the decoder and
the simulators have one representation to deal with, and the group checks below apply to both.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from wire import configfile
from wire.configfile import ConfigError
from wire.ids import Ident
from wire.telemetry import Kind, Unit
from wire.units import LENGTH_UNITS_PER_METRE

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


class FixedLine(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A line type laid out in fixed columns, as vendor manuals document it.

    Columns are 1-based and inclusive (`dist: [4, 8]` is the five characters 4 to 8).  Each field
    holds a number that may be padded with spaces on either side (`"  -4.3"`); columns that no
    field covers may hold anything.
    """

    fields: dict[str, tuple[int, int]]  # group name -> [first column, last column]
    length: int | None = None  # exact line length without the terminator; None: at least to the last field
    prefix: str = ""  # literal at column 1 telling this line type from the device's others


class FixedPattern(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The `- fixed: {...}` form of an entry of `ascii.patterns` in a profile file."""

    fixed: FixedLine


class FixedLineError(ValueError):
    """A fixed-column spec that cannot be compiled; `where` names the offending field."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}")


# A number padded with spaces: "  1523", "-4.3  ", "+.5".  Spaces *inside* it ("- 4.3") are not
# accepted because decoding converts the group with float(), which only ignores outer spaces.
FIXED_NUMBER = r"[ ]*[+-]?(?:\d+(?:\.\d*)?|\.\d+)[ ]*"


def fixed_line_regex(spec: FixedLine) -> str:
    """The anchored regex equivalent to `spec`, or FixedLineError.

    Each field is a named group of the padded-number shape followed by the lookbehind
    `(?<=^.{last})`, which holds only if the group ended exactly at its last column: that pins
    the field's width although the number inside it varies in length.  Columns between fields
    (and after the last one, up to `length`) match any character.
    """
    if not spec.fields:
        raise FixedLineError("field 'fields'", "needs at least one field")
    if spec.length is not None and spec.length < 1:
        raise FixedLineError("field 'length'", "must be at least 1")
    for name, (first, last) in spec.fields.items():
        where = f"fields: field {name!r}"
        if not name.isidentifier():
            raise FixedLineError(
                where, "a field name must be letters, digits and underscores, not starting with a digit"
            )
        if first < 1:
            raise FixedLineError(where, f"column {first}: columns are counted from 1")
        if first > last:
            raise FixedLineError(where, f"first column {first} is after last column {last}")
        if spec.length is not None and last > spec.length:
            raise FixedLineError(where, f"column {last} is beyond the line length {spec.length}")
    ordered = sorted(spec.fields.items(), key=lambda item: item[1])
    for (prev_name, (prev_first, prev_last)), (name, (first, last)) in itertools.pairwise(ordered):
        if first <= prev_last:
            raise FixedLineError(
                f"fields: field {name!r}",
                f"columns {first}-{last} overlap field {prev_name!r} (columns {prev_first}-{prev_last})",
            )
    first_name, (first_column, _) = ordered[0]
    if len(spec.prefix) >= first_column:
        raise FixedLineError(
            "field 'prefix'",
            f"{spec.prefix!r} ({len(spec.prefix)} characters) runs into field {first_name!r}, "
            f"which starts at column {first_column}",
        )
    parts = ["^", re.escape(spec.prefix)]
    done = len(spec.prefix)  # columns matched so far
    for name, (first, last) in ordered:
        parts.append(_any(first - 1 - done))
        parts.append(f"(?P<{name}>{FIXED_NUMBER})(?<=^.{{{last}}})")
        done = last
    parts.append(".*" if spec.length is None else _any(spec.length - done))
    parts.append("$")
    return "".join(parts)


def _any(columns: int) -> str:
    return "" if columns == 0 else "." if columns == 1 else f".{{{columns}}}"


class AsciiFormat(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # free_running: the device sends lines on its own; polled: send `poll_command`, read the answer.
    mode: Literal["free_running", "polled"]
    # One regex per line type; each must match a whole line (without the terminator).  A device
    # like an inclinometer that sends `X=...` and `Y=...` on separate lines has two patterns.
    # A profile file may give a line type as a `fixed:` column spec instead; load_profile
    # compiles it (fixed_line_regex), so here every entry is a regex.
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


def points_of(profile: Profile) -> list[ModbusPoint | AsciiPoint]:
    """The profile's points, whichever protocol it speaks."""
    if profile.modbus is not None:
        return list(profile.modbus.points)
    return list(profile.ascii.points) if profile.ascii is not None else []


def load_profile(path: str | Path) -> Profile:
    raw = configfile.read_yaml(path)
    if raw is None:
        raise ConfigError(path, "", "file is empty")
    profile = configfile.convert(_compile_fixed_lines(raw, path), Profile, path)
    _check(profile, path)
    return profile


def _compile_fixed_lines(raw: Any, path: str | Path) -> Any:
    """`raw` with every `fixed:` entry of `ascii.patterns` replaced by its regex.

    Done on the raw YAML, before conversion, so that `AsciiFormat.patterns` keeps a single type.
    Anything not shaped like a profile is passed through for the conversion to report.
    """
    section = raw.get("ascii") if isinstance(raw, dict) else None
    if not isinstance(section, dict):
        return raw
    entries = section.get("patterns")
    if not isinstance(entries, list) or not any(isinstance(e, dict) for e in entries):
        return raw
    compiled: list[Any] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            compiled.append(entry)
            continue
        try:
            spec = msgspec.convert(entry, FixedPattern, strict=True).fixed
        except msgspec.ValidationError as exc:
            raise _fixed_entry_error(path, raw, i, entry, exc) from None
        try:
            compiled.append(fixed_line_regex(spec))
        except FixedLineError as exc:
            raise ConfigError(path, f"ascii: patterns[{i}]: fixed: {exc.where}", exc.message) from None
    return {**raw, "ascii": {**section, "patterns": compiled}}


def _fixed_entry_error(
    path: str | Path, raw: Any, i: int, entry: dict[Any, Any], exc: msgspec.ValidationError
) -> ConfigError:
    """`exc` (raised converting patterns[i]) as a ConfigError that names the field."""
    text = str(exc)
    spec = entry.get("fixed")
    fields = spec.get("fields") if isinstance(spec, dict) else None
    if isinstance(fields, dict) and ".fixed.fields" in text:
        # msgspec writes a mapping's keys as `[...]`; find the offending one so the message names it.
        for name, columns in fields.items():
            try:
                msgspec.convert({name: columns}, dict[str, tuple[int, int]], strict=True)
            except msgspec.ValidationError as field_exc:
                message = str(field_exc).split(" - at ")[0]
                return ConfigError(path, f"ascii: patterns[{i}]: fixed: fields: field {name!r}", message)
    # msgspec locates the error inside the entry (`$.fixed.length`); relocate it in the file.
    message, at, rest = text.rpartition(" - at `$")
    if not at:
        message, rest = text, "`"
    return configfile.located_error(path, raw, f"{message} - at `$.ascii.patterns[{i}]{rest}")


def _check(p: Profile, path: str | Path) -> None:
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
                        path,
                        f"ascii: points[{i}]: field {field!r}",
                        f"no regex group (or fixed field) named {g!r}",
                    )
    for i, point in enumerate(points_of(p)):
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
