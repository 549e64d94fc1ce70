"""InfluxDB line protocol, built as strings (much faster than influxdb-client's Point objects).

Escaping follows https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/:
measurement: comma and space; tag keys/values and field keys: comma, equals sign and space;
string field values: double quote and backslash.  Newlines cannot be escaped at all, so they are
replaced (identifiers cannot contain them; free-text names might).

Two characters cannot round-trip everywhere, so they are replaced deterministically (checked
against the real servers in tests/integration/test_lineproto_influxdb1.py and
test_victoriametrics_write.py):
- a backslash in a measurement, tag key/value or field key becomes "/": InfluxDB 1.x reads a
  doubled backslash back as two backslashes and cannot express a backslash before a comma, an
  equals sign or a space at all, while VictoriaMetrics reads a doubled backslash as one; no
  spelling reads back the same on both.
- a newline (CR or LF) anywhere becomes a space: InfluxDB 1.6 would keep it inside a string
  field, but VictoriaMetrics splits the body on newlines first and silently drops the point.
"""

from __future__ import annotations

from typing import NamedTuple

# One pass each: a replacement is not escaped again, so a newline must map to an escaped space.
_MEAS = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\ ", "\r": r"\ ", "\\": "/"})
_TAG = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\ ", "\r": r"\ ", "\\": "/"})
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


def series(meas: str, tags: dict[str, str]) -> str:
    """The series key, `measurement,tag=value,...`: the part of a line before its fields.

    Tags with empty values are left out (line protocol forbids them); tags are sorted by key as
    InfluxDB recommends for write performance.  A series' key does not change from one point to
    the next, so hot paths compute it once (cloud.points caches it per sensor).
    """
    tag_part = "".join(f",{tag(k)}={tag(v)}" for k, v in sorted(tags.items()) if v != "")
    return f"{measurement(meas)}{tag_part}"


def line(meas: str, tags: dict[str, str], fields: dict[str, str], ts_ms: int) -> str:
    """One line; `fields` values must already be formatted with the *_field helpers."""
    return series_line(series(meas, tags), fields, ts_ms)


def series_line(key: str, fields: dict[str, str], ts_ms: int) -> str:
    """One line of the series `key` (from `series`); field values formatted as for `line`."""
    field_part = ",".join(f"{tag(k)}={v}" for k, v in fields.items())
    return f"{key} {field_part} {ts_ms}"


# --- Reading line protocol back (the embedded store's files, the demo report, tests) ---

FieldValue = float | int | str | bool


class ParsedLine(NamedTuple):
    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    ts_ms: int


def parse_line(text: str) -> ParsedLine:
    """Parse one line written by `line()`; raise ValueError if it is not valid line protocol.

    Un-escaping is the inverse of the writer above: outside string fields a backslash escapes the
    next character (the writer emits no other backslashes there); inside string fields only `\\"`
    and `\\\\` are escapes.  The timestamp is required (every line this package writes has one).
    """
    p = _Cursor(text)
    meas = p.token(", ")
    if not meas:
        raise ValueError("missing measurement")
    tags: dict[str, str] = {}
    while p.peek() == ",":
        p.pos += 1
        key = p.token("=")
        p.expect("=")
        tags[key] = p.token(", ")
    p.expect(" ")
    fields: dict[str, FieldValue] = {}
    while True:
        key = p.token("=")
        p.expect("=")
        fields[key] = p.field_value()
        if p.peek() != ",":
            break
        p.pos += 1
    p.expect(" ")
    ts = text[p.pos :].strip()
    if not ts.lstrip("-").isdigit():
        raise ValueError(f"bad or missing timestamp {ts!r}")
    return ParsedLine(meas, tags, fields, int(ts))


class _Cursor:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise ValueError(f"expected {ch!r} at column {self.pos + 1}")
        self.pos += 1

    def token(self, stops: str) -> str:
        """Read up to an unescaped character in `stops`, un-escaping on the way."""
        out: list[str] = []
        text, i, n = self.text, self.pos, len(self.text)
        while i < n and text[i] not in stops:
            if text[i] == "\\" and i + 1 < n:
                i += 1
            out.append(text[i])
            i += 1
        self.pos = i
        return "".join(out)

    def field_value(self) -> FieldValue:
        if self.peek() == '"':
            out: list[str] = []
            text, i, n = self.text, self.pos + 1, len(self.text)
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] in '"\\':
                    i += 1
                out.append(text[i])
                i += 1
            if i >= n:
                raise ValueError("unterminated string field")
            self.pos = i + 1
            return "".join(out)
        raw = self.token(", ")
        if raw in ("t", "T", "true", "True", "TRUE"):
            return True
        if raw in ("f", "F", "false", "False", "FALSE"):
            return False
        if raw.endswith(("i", "u")):
            return int(raw[:-1])
        return float(raw)
