"""cloud.lineproto against a real InfluxDB 1.6: what we write must read back exactly.

Names are free text typed by municipal staff (Japanese, spaces, commas, quotes), so every
escaping rule is checked by a round trip through the real parser and InfluxQL, not by comparing
strings with what we think the server does.
"""

from __future__ import annotations

import pytest

from cloud import lineproto
from tests.servers import InfluxDB1, series_rows

pytestmark = pytest.mark.integration

DB = "bosai"
T0 = 1_700_000_000_123  # ms; a non-round value so a precision mix-up would show

# (written name, what InfluxDB must return).  Equal unless lineproto replaces a character.
NAMES: list[tuple[str, str]] = [
    ("石狩川 旭橋", "石狩川 旭橋"),
    ("中央 5条通, residential", "中央 5条通, residential"),
    ("a=b", "a=b"),
    ("=,  ,=", "=,  ,="),
    (" leading and trailing ", " leading and trailing "),
    ('say "hi"', 'say "hi"'),
    ("O'Brien 橋", "O'Brien 橋"),
    ("#not a comment", "#not a comment"),
    ("tab\there", "tab\there"),
    # Backslashes cannot round-trip in tags (see cloud/lineproto.py), so they become "/".
    ("back\\slash", "back/slash"),
    ("before\\ space\\,comma\\=equals", "before/ space/,comma/=equals"),
    ("trailing\\", "trailing/"),
    # Newlines cannot be escaped in line protocol: they become spaces.
    ("two\nlines\r\n", "two lines  "),
]

# String field values: quotes and backslashes are escaped and come back as written.
NOTES: list[tuple[str, str]] = [
    ('quoted "text"', 'quoted "text"'),
    ("back\\slash", "back\\slash"),
    ("trailing\\", "trailing\\"),
    ('\\"both\\"', '\\"both\\"'),
    ("日本語, with = and spaces", "日本語, with = and spaces"),
    ("", ""),
    ("two\nlines", "two lines"),
]

VALUES = [0.1, -3.5e-7, 123456.789012345, 1e21, 0.0, -0.0, 7.0]


def influxql_string(value: str) -> str:
    """An InfluxQL single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def reading(site_name: str, sensor_name: str, value: float, q: int, note: str, ts: int) -> str:
    return lineproto.line(
        "readings",
        {
            "tenant": "demo-city",
            "site": "site-1",
            "site_name": site_name,
            "sensor": "sensor-1",
            "sensor_name": sensor_name,
            "kind": "water_level",
            "unit": "m",
        },
        {
            "value": lineproto.float_field(value),
            "q": lineproto.int_field(q),
            "note": lineproto.string_field(note),
        },
        ts,
    )


@pytest.fixture
def influx(influxdb1: InfluxDB1) -> InfluxDB1:
    influxdb1.create_db(DB)
    return influxdb1


def test_tag_values_round_trip_exactly(influx: InfluxDB1) -> None:
    lines = [reading(name, name, float(i), i, "", T0 + i) for i, (name, _) in enumerate(NAMES)]
    influx.write_lp(DB, lines)

    for key in ("site_name", "sensor_name"):
        rows = series_rows(influx.query(DB, f'SHOW TAG VALUES FROM "readings" WITH KEY = "{key}"'))
        assert sorted(row["value"] for row in rows) == sorted(expected for _, expected in NAMES)

    for i, (_, expected) in enumerate(NAMES):
        rows = series_rows(
            influx.query(
                DB,
                'SELECT "value", "q", "site_name", "sensor_name" FROM "readings" '
                f'WHERE "site_name" = {influxql_string(expected)}',
            )
        )
        assert rows == [
            {"time": T0 + i, "value": float(i), "q": i, "site_name": expected, "sensor_name": expected}
        ], expected


def test_group_by_tag_returns_exact_names(influx: InfluxDB1) -> None:
    # Dashboards group by site_name: the series tags must be the names, unescaped.
    influx.write_lp(DB, [reading(name, "s", 1.0, 0, "", T0) for name, _ in NAMES])
    result = influx.query(DB, 'SELECT last("value") FROM "readings" GROUP BY "site_name"')
    names = [series["tags"]["site_name"] for series in result["results"][0]["series"]]
    assert sorted(names) == sorted(expected for _, expected in NAMES)


def test_string_and_numeric_fields_round_trip_exactly(influx: InfluxDB1) -> None:
    lines = [
        reading("石狩川 旭橋", "s", VALUES[i % len(VALUES)], i, note, T0 + i)
        for i, (note, _) in enumerate(NOTES)
    ]
    influx.write_lp(DB, lines)

    rows = series_rows(influx.query(DB, 'SELECT "value", "q", "note" FROM "readings"'))
    assert rows == [
        {"time": T0 + i, "value": VALUES[i % len(VALUES)], "q": i, "note": expected}
        for i, (_, expected) in enumerate(NOTES)
    ]


def test_historical_and_precise_timestamps(influx: InfluxDB1) -> None:
    # Two years back (a gateway replaying its outbox after a long outage) and sub-second times.
    old = T0 - 2 * 365 * 86_400_000
    stamps = [old, old + 1, T0, T0 + 999]
    influx.write_lp(DB, [reading("site", "s", float(i), 0, "", ts) for i, ts in enumerate(stamps)])
    rows = series_rows(influx.query(DB, 'SELECT "value" FROM "readings"'))
    assert [(row["time"], row["value"]) for row in rows] == [(ts, float(i)) for i, ts in enumerate(stamps)]


def test_same_series_and_time_overwrites(influx: InfluxDB1) -> None:
    # A replayed telemetry message rewrites the point instead of adding one (the last write wins).
    influx.write_lp(DB, [reading("石狩川 旭橋", "s", 1.5, 0, "first", T0)])
    influx.write_lp(DB, [reading("石狩川 旭橋", "s", 2.5, 0, "second", T0)])
    rows = series_rows(influx.query(DB, 'SELECT "value", "note" FROM "readings"'))
    assert rows == [{"time": T0, "value": 2.5, "note": "second"}]
