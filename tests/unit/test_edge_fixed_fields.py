"""Fixed-column ASCII line formats: a `fixed:` spec in a profile compiles to an anchored regex.

Vendor manuals for dataloggers and older sensors document columns ("columns 4-8: distance in
mm, right-aligned"), so a technician writes those columns instead of a regex.  These tests pin
the compiled regex to the columns (padding, signs, decimals, exact widths, length and prefix),
show it equals a hand-written regex for the same layout, that the driver uses it unchanged, and
that every mistake in a spec is a ConfigError naming the file and the field.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from edge.config import AsciiSerialBus, SensorConfig
from edge.decode import ascii_sample, match_line
from edge.drivers.ascii_serial import AsciiSerialDriver
from edge.profiles import (
    AsciiFormat,
    AsciiPoint,
    FixedLine,
    FixedLineError,
    Profile,
    fixed_line_regex,
    load_profile,
    load_profiles,
)
from wire.clock import RealClock
from wire.configfile import ConfigError
from wire.telemetry import Quality

PROFILES = Path(__file__).resolve().parents[2] / "firmware_configs" / "profiles"
SD = load_profile(PROFILES / "snow-depth-fixed-sd.yaml")


def ascii_format(profile: Profile) -> AsciiFormat:
    assert profile.ascii is not None
    return profile.ascii


SD_FORMAT = ascii_format(SD)

# The shipped profile's layout written as a regex by hand: columns 3, 9, 13, 20 are blanks,
# columns 21-24 hex status flags.
HAND_WRITTEN = re.compile(r"^SD (?P<dist>[ \d]{5}) (?P<qqq>[ \d]{3}) (?P<temp>[ +\-.\d]{6}) [0-9A-F]{4}$")


def vendor_line(dist: int, qqq: int, temp: float, flags: int = 0xA0) -> str:
    """A line as the device's firmware prints it (the manual's printf layout)."""
    return f"SD {dist:5d} {qqq:3d} {temp:6.1f} {flags:04X}"


def fmt_of(spec: FixedLine, *groups: str) -> AsciiFormat:
    kinds = ("snow_depth", "tilt_x")
    points = [AsciiPoint(kind=kind, unit="m", group=g) for kind, g in zip(kinds, groups, strict=False)]
    return AsciiFormat(mode="free_running", patterns=[fixed_line_regex(spec)], points=points)


# -- decoding ----------------------------------------------------------------------------


def test_shipped_profile_decodes_vendor_lines() -> None:
    groups = match_line(SD_FORMAT, "SD  1523 168   -4.3 00A0")
    assert groups == {"dist": " 1523", "qqq": "168", "temp": "  -4.3"}
    depth, temp = SD_FORMAT.points
    # mounted at 2.0 m: depth = 200 cm - 152.3 cm
    assert ascii_sample(depth, groups, mounting_height=2.0) == (pytest.approx(47.7), Quality.OK)
    assert ascii_sample(temp, groups) == (-4.3, Quality.OK)


def test_shipped_profile_invalid_marker_and_quality() -> None:
    depth, temp = SD_FORMAT.points
    no_echo = match_line(SD_FORMAT, "SD 99999   0   -4.3 0001")
    assert no_echo is not None
    assert ascii_sample(depth, no_echo, mounting_height=2.0) == (None, Quality.INVALID)
    assert ascii_sample(temp, no_echo) == (-4.3, Quality.OK)  # the rest of the line still counts
    weak = match_line(SD_FORMAT, vendor_line(1523, 42, 1.0))
    assert weak is not None
    assert ascii_sample(depth, weak, mounting_height=2.0) == (None, Quality.INVALID)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("  -4.3", -4.3),  # right-aligned, signed, one decimal
        ("-4.3  ", -4.3),  # left-aligned
        (" +12.5", 12.5),  # explicit plus
        ("-12.50", -12.5),  # the field filled completely
        ("000042", 42.0),  # zero-padded integer
        ("    .5", 0.5),  # no digit before the point
        ("    7.", 7.0),  # no digit after it
        ("     0", 0.0),
    ],
)
def test_padded_signed_decimal_field(text: str, number: float) -> None:
    fmt = fmt_of(FixedLine(fields={"v": (3, 8)}, prefix="T="), "v")
    groups = match_line(fmt, f"T={text}")
    assert groups == {"v": text}
    assert ascii_sample(fmt.points[0], groups) == (number, Quality.OK)


@pytest.mark.parametrize(
    "text",
    [
        "      ",  # blank: the device printed no number
        " -----",  # dashes as "no reading"
        "- 4.3 ",  # space inside the number
        " 1 2 3",  # two numbers
        " 4.3.1",
        "  +-43",
        "  12a ",
        "    . ",  # no digits
    ],
)
def test_field_that_is_not_one_padded_number_does_not_match(text: str) -> None:
    fmt = fmt_of(FixedLine(fields={"v": (3, 8)}, prefix="T=", length=8), "v")
    assert match_line(fmt, f"T={text}") is None


def test_adjacent_fields_are_split_by_column_not_by_spaces() -> None:
    # Columns 1-4 and 5-8 with no blank between them, as in many packed datalogger records.
    fmt = fmt_of(FixedLine(fields={"a": (1, 4), "b": (5, 8)}), "a", "b")
    assert match_line(fmt, "12345678") == {"a": "1234", "b": "5678"}
    assert match_line(fmt, "  12  34") == {"a": "  12", "b": "  34"}
    assert match_line(fmt, "-1.5+2.5") == {"a": "-1.5", "b": "+2.5"}
    assert match_line(fmt, "1234567") is None  # b is one column short


def test_wrong_length_or_prefix_does_not_match() -> None:
    good = vendor_line(1523, 168, -4.3)
    assert match_line(SD_FORMAT, good) is not None
    assert match_line(SD_FORMAT, good + " ") is None  # one column too many
    assert match_line(SD_FORMAT, good[:-1]) is None  # one too few (a cut line)
    assert match_line(SD_FORMAT, " " + good[:-1]) is None  # shifted right: prefix gone
    assert match_line(SD_FORMAT, "SX" + good[2:]) is None
    assert match_line(SD_FORMAT, "sd" + good[2:]) is None  # the prefix is case-sensitive
    assert match_line(SD_FORMAT, "") is None


def test_without_length_the_line_may_go_on_after_the_last_field() -> None:
    fmt = fmt_of(FixedLine(fields={"v": (4, 8)}, prefix="SD"), "v")
    assert match_line(fmt, "SD  1523") == {"v": " 1523"}
    assert match_line(fmt, "SD  1523 168 anything") == {"v": " 1523"}
    assert match_line(fmt, "SD  152") is None  # but must reach the field's last column


def test_columns_between_fields_may_hold_anything() -> None:
    fmt = fmt_of(FixedLine(fields={"a": (1, 3), "b": (7, 9)}, length=10), "a", "b")
    assert match_line(fmt, "123,OK,456") is None  # "456" ends at column 10, b is columns 7-9
    assert match_line(fmt, "123,OK456X") == {"a": "123", "b": "456"}
    assert match_line(fmt, "123\tOK456X") == {"a": "123", "b": "456"}


def test_fixed_and_regex_line_types_in_one_profile(tmp_path: Path) -> None:
    path = write_profile(
        tmp_path,
        patterns=[
            {"fixed": {"prefix": "X", "length": 7, "fields": {"x": [2, 7]}}},
            r"^Y=(?P<y>[+-]\d{2}\.\d{3})$",
        ],
        points=[
            {"kind": "tilt_x", "unit": "deg", "group": "x"},
            {"kind": "tilt_y", "unit": "deg", "group": "y"},
        ],
    )
    fmt = load_profile(path).ascii
    assert fmt is not None
    assert match_line(fmt, "X +1.234") is None  # 8 columns
    assert match_line(fmt, "X+1.234") == {"x": "+1.234"}
    assert match_line(fmt, "Y=-00.567") == {"y": "-00.567"}


# -- equivalence with a hand-written regex ------------------------------------------------


def test_same_matches_and_groups_as_a_hand_written_regex() -> None:
    rng = random.Random(20240601)
    lines = [
        vendor_line(
            rng.randint(0, 99999), rng.randint(0, 999), rng.randint(-499, 499) / 10, rng.randrange(65536)
        )
        for _ in range(500)
    ]
    lines += [vendor_line(0, 0, 0.0), vendor_line(99999, 999, -49.9), vendor_line(7, 5, 0.5)]
    assert len({len(line) for line in lines}) == 1  # the printf layout keeps every column in place
    for line in lines:
        hand = HAND_WRITTEN.fullmatch(line)
        assert hand is not None, line
        assert match_line(SD_FORMAT, line) == hand.groupdict(), line
    rejected = [
        lines[0][:-1],
        lines[0] + "0",
        "XD" + lines[0][2:],
        lines[0][:5] + "#" + lines[0][6:],  # line noise inside the distance field
        lines[0][:14] + "ab" + lines[0][16:],  # letters inside the temperature field
    ]
    for line in rejected:
        assert HAND_WRITTEN.fullmatch(line) is None, line
        assert match_line(SD_FORMAT, line) is None, line


def test_compiled_regex_is_anchored_and_reads_like_the_spec() -> None:
    regex = fixed_line_regex(FixedLine(fields={"b": (7, 9), "a": (3, 4)}, prefix="S", length=12))
    assert regex.startswith("^S") and regex.endswith("$")
    assert regex.index("(?P<a>") < regex.index("(?P<b>")  # fields in column order, not YAML order
    assert "(?<=^.{4})" in regex and "(?<=^.{9})" in regex  # each field ends at its last column
    assert re.compile(regex).groupindex.keys() == {"a", "b"}


# -- the driver needs no change ----------------------------------------------------------


def test_ascii_driver_reads_a_fixed_column_device(pty: tuple[int, str]) -> None:
    master, port = pty
    sensor = SensorConfig(id="snow-sd-01", profile=SD.model, bus="snow", interval=60, mounting_height=2.5)

    async def scenario() -> None:
        # A generous bus timeout: the read returns as soon as the good line is parsed.
        drv = AsciiSerialDriver(AsciiSerialBus(id="snow", port=port, timeout=10.0), RealClock())
        await drv.open()
        try:
            cut = vendor_line(1523, 168, -4.3)[:-1]
            os.write(master, f"{cut}\r\n{vendor_line(1600, 200, 1.0)}\r\n".encode())
            depth, temp = await drv.read(sensor, SD)
            assert (depth.kind, depth.q, depth.value) == ("snow_depth", Quality.OK, pytest.approx(90.0))
            assert (temp.kind, temp.q, temp.value) == ("air_temperature", Quality.OK, 1.0)
            assert drv.garbled_lines == 1  # the line one column short
        finally:
            await drv.close()

    asyncio.run(scenario())


# -- validation at load --------------------------------------------------------------------

SD_FIELDS: dict[str, Any] = {"dist": [4, 8], "qqq": [10, 12], "temp": [14, 19]}
SD_POINTS: list[dict[str, Any]] = [
    {"kind": "snow_depth", "unit": "cm", "group": "dist", "quality_group": "qqq", "quality_ok": [100, 999]},
    {"kind": "air_temperature", "unit": "degC", "group": "temp"},
]


def write_profile(
    tmp_path: Path, patterns: list[Any], points: list[dict[str, Any]] | None = None, name: str = "fixed-x"
) -> Path:
    path = tmp_path / f"{name}.yaml"
    doc = {
        "model": name,
        "description": "test",
        "protocol": "ascii",
        "ascii": {"mode": "free_running", "patterns": patterns, "points": points or SD_POINTS},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def fixed(**spec: Any) -> list[Any]:
    return [{"fixed": {"fields": SD_FIELDS} | spec}]


def test_shipped_profiles_all_load() -> None:
    profiles = load_profiles(PROFILES)
    assert "snow-depth-fixed-sd" in profiles
    assert "ultrasonic-snow-us" in profiles  # regex profiles load unchanged


def test_valid_spec_loads(tmp_path: Path) -> None:
    fmt = load_profile(write_profile(tmp_path, fixed(length=24, prefix="SD"))).ascii
    assert fmt is not None
    spec = FixedLine(fields={k: (a, b) for k, (a, b) in SD_FIELDS.items()}, length=24, prefix="SD")
    assert fmt.patterns == [fixed_line_regex(spec)]


@pytest.mark.parametrize(
    ("patterns", "where", "message"),
    [
        (
            fixed(fields={"dist": [4, 8], "qqq": [8, 12]}),
            "ascii: patterns[0]: fixed: fields: field 'qqq'",
            "columns 8-12 overlap field 'dist' (columns 4-8)",
        ),
        (
            fixed(fields={"dist": [4, 8], "qqq": [5, 6]}),  # wholly inside another field
            "ascii: patterns[0]: fixed: fields: field 'qqq'",
            "columns 5-6 overlap field 'dist' (columns 4-8)",
        ),
        (
            fixed(fields={"dist": [8, 4], "qqq": [10, 12]}),
            "ascii: patterns[0]: fixed: fields: field 'dist'",
            "first column 8 is after last column 4",
        ),
        (
            fixed(fields={"dist": [0, 4], "qqq": [10, 12]}),
            "ascii: patterns[0]: fixed: fields: field 'dist'",
            "column 0: columns are counted from 1",
        ),
        (
            fixed(length=18),
            "ascii: patterns[0]: fixed: fields: field 'temp'",
            "column 19 is beyond the line length 18",
        ),
        (
            fixed(length=0),
            "ascii: patterns[0]: fixed: field 'length'",
            "must be at least 1",
        ),
        (
            fixed(prefix="SDX1"),
            "ascii: patterns[0]: fixed: field 'prefix'",
            "'SDX1' (4 characters) runs into field 'dist', which starts at column 4",
        ),
        (
            fixed(fields={}),
            "ascii: patterns[0]: fixed: field 'fields'",
            "needs at least one field",
        ),
        (
            fixed(fields={"dist-mm": [4, 8]}),
            "ascii: patterns[0]: fixed: fields: field 'dist-mm'",
            "a field name must be letters, digits and underscores, not starting with a digit",
        ),
        (
            fixed(lenght=24),
            "ascii: patterns[0]: fixed: field 'lenght'",
            "unknown field (check spelling)",
        ),
        (
            [{"fixed": {"fields": SD_FIELDS}, "prefix": "SD"}],  # prefix one level too high
            "ascii: patterns[0]: field 'prefix'",
            "unknown field (check spelling)",
        ),
        (
            [{"fields": SD_FIELDS}],  # `fixed:` forgotten
            "ascii: patterns[0]: field 'fields'",
            "unknown field (check spelling)",
        ),
        (
            fixed(fields={"dist": [4], "qqq": [10, 12]}),
            "ascii: patterns[0]: fixed: fields: field 'dist'",
            "Expected `array` of length 2, got 1",
        ),
        (
            fixed(fields={"dist": "4-8"}),
            "ascii: patterns[0]: fixed: fields: field 'dist'",
            "Expected `array`, got `str`",
        ),
        (
            fixed(fields={"dist": [4, 8], "qqq": [10, "12"]}),
            "ascii: patterns[0]: fixed: fields: field 'qqq'",
            "Expected `int`, got `str`",
        ),
        (
            fixed(fields={1: [4, 8]}),
            "ascii: patterns[0]: fixed: fields: field 1",
            "Expected `str`, got `int`",
        ),
        (
            fixed(fields=[[4, 8]]),
            "ascii: patterns[0]: fixed: field 'fields'",
            "Expected `object`, got `array`",
        ),
        (
            fixed(length="24"),
            "ascii: patterns[0]: fixed: field 'length'",
            "Expected `int | null`, got `str`",
        ),
        (
            ["^SD(?P<x>\\d+)$", {"fixed": "SD 4-8"}],  # the second entry is the broken one
            "ascii: patterns[1]: field 'fixed'",
            "Expected `object`, got `str`",
        ),
    ],
)
def test_spec_errors_name_file_and_field(
    tmp_path: Path, patterns: list[Any], where: str, message: str
) -> None:
    path = write_profile(tmp_path, patterns)
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert (err.value.path, err.value.where, err.value.message) == (str(path), where, message)
    assert str(err.value).startswith(f"{path}: ascii: patterns[")


def test_point_group_missing_from_the_fixed_fields(tmp_path: Path) -> None:
    path = write_profile(tmp_path, fixed(fields={"dist": [4, 8], "qqq": [10, 12]}))  # no temp
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert err.value.where == "ascii: points[1]: field 'group'"
    assert err.value.message == "no regex group (or fixed field) named 'temp'"


def test_fixed_line_error_outside_a_file() -> None:
    with pytest.raises(FixedLineError) as err:
        fixed_line_regex(FixedLine(fields={"a": (3, 1)}))
    assert (err.value.where, err.value.message) == (
        "fields: field 'a'",
        "first column 3 is after last column 1",
    )
    assert isinstance(err.value, ValueError)


def test_spec_struct_rejects_unknown_keys_directly() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"fields": {"a": [1, 2]}, "width": 3}, FixedLine, strict=True)
