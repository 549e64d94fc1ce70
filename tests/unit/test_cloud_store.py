"""Points, line protocol round trip through the reader, and the line-protocol file store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud import lineproto, points
from cloud.lineproto import parse_line
from cloud.registry import Sensor, Site
from cloud.writers import StoreUnavailable
from cloud.writers.lpfile import LpFileWriter, read_lp_dir, read_lp_file
from wire.alerts import Alert
from wire.telemetry import Quality, Reading

T = datetime(2025, 1, 15, 23, 59, 59, 999000, tzinfo=UTC)
TS = 1736985599999

NASTY_NAMES = [
    "石狩川 旭橋",
    "中央 5条通, residential",
    "a=b, c=d",
    "back\\slash\\",
    'quote "x"',
    "trailing space ",
    "=",
    ",",
]


@pytest.mark.parametrize("name", NASTY_NAMES)
def test_round_trip_escaping(name: str) -> None:
    text = lineproto.line(
        f"m {name}",
        {"site_name": name, f"k {name}": "v", "plain": "x"},
        {"reason": lineproto.string_field(name), f"f {name}": lineproto.float_field(1.25), "n": "3i"},
        TS,
    )
    p = parse_line(text)
    key = name.replace("\\", "/")  # lineproto replaces backslashes outside string fields
    assert p.measurement == f"m {key}"
    assert p.tags == {"site_name": key, f"k {key}": "v", "plain": "x"}
    assert p.fields == {"reason": name, f"f {key}": 1.25, "n": 3}
    assert p.ts_ms == TS


def test_newlines_become_spaces() -> None:
    p = parse_line(lineproto.line("m", {"t": "a\nb"}, {"s": lineproto.string_field("x\r\ny")}, 1))
    assert p.tags["t"] == "a b" and p.fields["s"] == "x  y"


@pytest.mark.parametrize("bad", ["", "m", "m f=1", "m,t f=1 1", 'm s="open 1', "m f=1 x"])
def test_parse_errors(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_line(bad)


SITE = Site(id="chuo-residential5", tenant="demo-city", name="中央 5条通, residential", type="snow")
SENSOR = Sensor(id="snow-us-02", tenant="demo-city", gateway="gw01", site=SITE.id)


def test_reading_line_schema() -> None:
    p = parse_line(points.reading_line(Reading("snow-us-02", "snow_depth", T, 42.0, "cm"), SENSOR, SITE))
    assert p.measurement == "readings"
    assert p.tags == {
        "tenant": "demo-city",
        "site": "chuo-residential5",
        "site_name": "中央 5条通, residential",
        "gateway": "gw01",
        "sensor": "snow-us-02",
        "kind": "snow_depth",
        "unit": "cm",
    }
    assert p.fields == {"q": 0, "value": 42.0} and isinstance(p.fields["value"], float)
    assert p.ts_ms == TS


def test_bad_quality_reading_has_no_value() -> None:
    r = Reading("snow-us-02", "snow_depth", T, None, "cm", Quality.OUT_OF_RANGE)
    assert parse_line(points.reading_line(r, SENSOR, SITE)).fields == {"q": 5}


@pytest.mark.parametrize("name", NASTY_NAMES)
@pytest.mark.parametrize("q", list(Quality))
def test_reading_line_with_its_cached_series_key_equals_the_generic_line(name: str, q: Quality) -> None:
    """reading_line builds each sensor's series key once (points._reading_series); the line must
    be byte for byte what the generic lineproto.line writes."""
    sensor = Sensor(id="s-1", tenant="demo-city", gateway="gw01", site=SITE.id, name=name)
    site = Site(id=SITE.id, tenant=SITE.tenant, name=name, type=SITE.type)
    value = 1.25 if q is Quality.OK else None
    r = Reading("s-1", "river_level", T, value, "m", q)
    fields = {"q": lineproto.int_field(points.QUALITY_CODES[q])}
    if value is not None:
        fields["value"] = lineproto.float_field(value)
    tags = {"tenant": "demo-city", "site": SITE.id, "site_name": name, "gateway": "gw01", "sensor": "s-1"}
    tags |= {"sensor_name": name, "kind": "river_level", "unit": "m"}
    assert points.reading_line(r, sensor, site) == lineproto.line(points.READINGS, tags, fields, TS)


def test_quality_codes_are_fixed() -> None:
    assert {q.value: c for q, c in points.QUALITY_CODES.items()} == {
        "ok": 0,
        "timeout": 1,
        "crc": 2,
        "exception": 3,
        "invalid": 4,
        "out_of_range": 5,
        "error": 6,
    }


def alert(event: str = "raised", threshold: float | None = 60.0) -> Alert:
    return Alert(
        v=1,
        id="ep-1",
        tenant="demo-city",
        condition="level",
        category="disaster",
        site=SITE.id,
        site_name=SITE.name,
        sensor=SENSOR.id,
        gateway="gw01",
        kind="snow_depth",
        event=event,  # type: ignore[arg-type]
        status="resolved" if event == "resolved" else "active",
        level=1 if threshold else 0,
        peak_level=1,
        level_name="heavy snow caution",
        level_name_ja="大雪注意",
        threshold=threshold,
        value=61.5,
        unit="cm",
        ts=T,
        raised_at=T,
        reason='中央 5条通, residential: snow_depth 61.50 cm reached 大雪注意 "x"',
    )


def test_alert_line_schema() -> None:
    p = parse_line(points.alert_line(alert()))
    assert p.measurement == "alerts"
    assert p.tags == {
        "tenant": "demo-city",
        "site": SITE.id,
        "site_name": SITE.name,
        "sensor": SENSOR.id,
        "kind": "snow_depth",
        "gateway": "gw01",
        "condition": "level",
        "category": "disaster",
        "event": "raised",
    }
    assert p.fields == {
        "level": 1,
        "peak_level": 1,
        "value": 61.5,
        "threshold": 60.0,
        "reason": alert().reason,
        "id": "ep-1",
        "status": "active",
    }
    assert "threshold" not in parse_line(points.alert_line(alert("resolved", None))).fields


def test_lpfile_writer_splits_by_utc_day_and_round_trips(tmp_path: Path) -> None:
    store = tmp_path / "store"
    w = LpFileWriter(store)
    r1 = Reading("snow-us-02", "snow_depth", T, 42.0, "cm")
    r2 = Reading("snow-us-02", "snow_depth", T + timedelta(milliseconds=1), 43.0, "cm")  # next UTC day
    lines = [
        points.reading_line(r1, SENSOR, SITE),
        points.reading_line(r2, SENSOR, SITE),
        points.alert_line(alert()),
    ]
    w.write(lines)
    assert sorted(p.name for p in store.iterdir()) == ["readings-20250115.lp", "readings-20250116.lp"]
    day1 = list(read_lp_file(store / "readings-20250115.lp"))
    assert [p.measurement for p in day1] == ["readings", "alerts"]
    assert day1[0].tags["site_name"] == "中央 5条通, residential"
    w.write(lines[:1])  # appends; a duplicate point is the same line (idempotent in InfluxDB)
    w.close()
    assert [p.fields.get("value") for p in read_lp_dir(store)] == [42.0, 61.5, 42.0, 43.0]
    # a new writer appends to existing files
    w2 = LpFileWriter(store)
    w2.write(lines[1:2])
    w2.close()
    assert len(list(read_lp_file(store / "readings-20250116.lp"))) == 2


def test_lpfile_writer_reports_a_failing_disk_as_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    w = LpFileWriter(blocker / "store")
    with pytest.raises(StoreUnavailable, match="not-a-dir"):
        w.write([points.alert_line(alert())])
    w.close()


def test_reader_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "readings-20250101.lp"
    f.write_text("# comment\n\nm f=1 1\nbroken\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"readings-20250101.lp:4"):
        list(read_lp_file(f))
