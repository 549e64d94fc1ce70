"""InfluxDB line protocol, built as strings (much faster than influxdb-client's Point objects).

Escaping follows https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/:
measurement: comma and space; tag keys/values and field keys: comma, equals sign and space;
string field values: double quote and backslash.  Newlines cannot be escaped at all, so they are
replaced (identifiers cannot contain them; free-text names might).
"""

from __future__ import annotations

_MEAS = str.maketrans({",": r"\,", " ": r"\ ", "\n": " ", "\r": " ", "\\": "\\\\"})
_TAG = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": " ", "\r": " ", "\\": "\\\\"})
_STR = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": " ", "\r": " "})


def measurement(name: str) -> str:
    return name.translate(_MEAS)


def tag(value: str) -> str:
    return value.translate(_TAG)


def string_field(value: str) -> str:
    return '"' + value.translate(_STR) + '"'


def float_field(value: float) -> str:
    # repr() gives the shortest round-tripping form; integers get no "i" suffix -> stay floats.
    return repr(float(value))


def int_field(value: int) -> str:
    return f"{int(value)}i"


def line(meas: str, tags: dict[str, str], fields: dict[str, str], ts_ms: int) -> str:
    """One line; `fields` values must already be formatted with the *_field helpers.

    Tags with empty values are left out (line protocol forbids them); tags are sorted by key as
    InfluxDB recommends for write performance.
    """
    tag_part = "".join(f",{tag(k)}={tag(v)}" for k, v in sorted(tags.items()) if v != "")
    field_part = ",".join(f"{tag(k)}={v}" for k, v in fields.items())
    return f"{measurement(meas)}{tag_part} {field_part} {ts_ms}"
