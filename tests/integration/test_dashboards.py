"""The Grafana dashboards (dashboards/) against what the pipeline really writes.

Grafana cannot run here, so every dashboard is checked in two ways:

- by structure, without servers: provisioning files, datasource references, portable InfluxQL
  only, and every measurement, field and tag a query names is one the cloud writer
  (cloud/points.py) produces; the allowed names come from the writer itself, not from a list.
- against a real InfluxDB 1.6 holding the line protocol of one `bosai demo` run (the 12-hour
  storm): every template-variable query and every panel query is interpolated the way Grafana
  does it and must return data; the overview's panels must show the storm (the river above
  氾濫危険水位, the alert escalated to level 4, ...).  The storm has no quality flags, so three
  flagged readings made by the same writer are added for the quality panel.

Grafana's interpolation, as done by its InfluxDB data source for raw InfluxQL:
- `$timeFilter` -> `time >= <from>ms and time <= <to>ms`, `$__interval` -> e.g. `5m`;
- dashboard variables use the "regex" format: each value regex-escaped with escapeRegex
  (packages/grafana-data/src/text/string.ts: `\\ ^ $ * + ? . ( ) | [ ] { } /`), one value
  alone, several (or "All": every option of the variable) as `(a|b|c)`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bosai.paths import DASHBOARDS_DIR, REPO_ROOT
from cloud import lineproto, points
from cloud.detect.series import Snapshot
from cloud.registry import Registry, load_registry
from tests.servers import InfluxDB1, series_rows
from wire.alerts import Alert, Forecast
from wire.telemetry import Quality, Reading

pytestmark = pytest.mark.integration

DB = "bosai"
DATASOURCE_UID = "bosai-influxdb"
REGISTRY_PATH = REPO_ROOT / "deploy" / "cloud" / "registry.demo.yaml"
DATASOURCES_FILE = DASHBOARDS_DIR / "provisioning" / "datasources" / "bosai.yaml"
PROVIDERS_FILE = DASHBOARDS_DIR / "provisioning" / "dashboards" / "bosai.yaml"
DASHBOARD_FILES = sorted((DASHBOARDS_DIR / "json").glob("*.json"))
OVERVIEW_UID = "bosai-overview"
SPEED = "2880"  # the 12-hour storm in about 15 s, as in test_demo.py
INTERVAL = "5m"  # one $__interval Grafana may pick: range / panel width, at least the 1m minimum

# The only Grafana macros the dashboards may use (both are interpolated below).
MACROS = ("$timeFilter", "$__interval")
# Functions every InfluxQL engine (1.x, 2.x v1 API, 3.x) evaluates the same way.
PORTABLE_FUNCTIONS = {"mean", "last", "count", "time", "fill"}
SELECT_SHAPE = re.compile(
    r'SELECT (?P<select>.+?) FROM "(?P<measurement>[^"]+)" WHERE (?P<where>.+?)'
    r"(?: GROUP BY (?P<group>.+?))?(?P<fill> fill\(none\))?"
)
SHOW_SHAPE = re.compile(
    r'SHOW TAG VALUES FROM "(?P<measurement>[^"]+)" WITH KEY = "(?P<key>[^"]+)"(?: WHERE (?P<where>.+))?'
)
AGGREGATE = re.compile(r'(?P<func>\w+)\("(?P<field>[^"]+)"\)')
TAG_CONDITION = re.compile(r"\"(?P<key>[^\"]+)\" (?P<op>=~|!~|=|!=|<>) (?P<rhs>'[^']*'|/(?:\\.|[^/\\])*/)")
FIELD_CONDITION = re.compile(r'"(?P<key>[^"]+)" (?P<op>>=|<=|>|<|=|!=|<>) (?P<rhs>-?\d+(?:\.\d+)?)')
IDENTIFIER = re.compile(r'"([^"]+)"')


# --------------------------------------------------------------------------------------------
# Dashboards and their queries


def load_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


DASHBOARDS = {d["uid"]: d for d in (load_json(p) for p in DASHBOARD_FILES)}


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Panels, with those nested in collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found += panel.get("panels", [])
    return found


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: dict[str, Any]
    target: dict[str, Any]

    @property
    def text(self) -> str:
        query: str = self.target["query"]
        return query

    @property
    def id(self) -> str:
        return f"{self.dashboard}:{self.panel['title']}:{self.target['refId']}"


def panel_queries(uid: str | None = None) -> list[PanelQuery]:
    return [
        PanelQuery(d_uid, panel, target)
        for d_uid, dashboard in DASHBOARDS.items()
        if uid is None or d_uid == uid
        for panel in all_panels(dashboard)
        for target in panel.get("targets", [])
    ]


def variables(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = dashboard.get("templating", {}).get("list", [])
    return found


def variable_query(variable: dict[str, Any]) -> str:
    query = variable["query"]
    text: str = query["query"] if isinstance(query, dict) else query
    return text


def all_query_texts() -> list[tuple[str, str]]:
    """(where, InfluxQL) of every panel target and query variable of every dashboard."""
    found = [(q.id, q.text) for q in panel_queries()]
    for uid, dashboard in DASHBOARDS.items():
        found += [
            (f"{uid}:${v['name']}", variable_query(v)) for v in variables(dashboard) if v["type"] == "query"
        ]
    return found


def panel(uid: str, title: str) -> PanelQuery:
    matches = [q for q in panel_queries(uid) if q.panel["title"] == title]
    assert len(matches) == 1, f"{uid}: expected one query in panel {title!r}, found {len(matches)}"
    return matches[0]


# --------------------------------------------------------------------------------------------
# Grafana's interpolation

_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def grafana_regex_escape(value: str) -> str:
    """Grafana's escapeRegex (@grafana/data)."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def grafana_regex_format(values: list[str]) -> str:
    """Grafana's "regex" variable format: one value escaped, several as (a|b|c)."""
    assert values, "a variable with no value selected"
    escaped = [grafana_regex_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


@dataclass(frozen=True)
class TimeRange:
    start_ms: int
    end_ms: int


def interpolate(query: str, selection: dict[str, list[str]], time_range: TimeRange) -> str:
    text = query.replace("$timeFilter", f"time >= {time_range.start_ms}ms and time <= {time_range.end_ms}ms")
    text = text.replace("$__interval", INTERVAL)

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in selection, f"query uses ${name}, which is not a variable defined before it: {query}"
        return grafana_regex_format(selection[name])

    return _VARIABLE.sub(value, text)


# --------------------------------------------------------------------------------------------
# What the cloud writer produces and what the registry defines


@dataclass(frozen=True)
class Schema:
    tags: frozenset[str]
    fields: frozenset[str]


def writer_schema() -> dict[str, Schema]:
    """Measurements with their tag and field keys, read from lines cloud/points.py writes: a
    reading with a value and a flagged one, a sensor alert and a gateway alert with every
    optional field set, and a series' derived values (measurement `detections`)."""
    registry = load_registry(REGISTRY_PATH)
    sensor = next(s for s in registry.data.sensors if s.name and s.channels)  # sensor_name is set
    site = registry.site_of(sensor)
    kind, channel = next(iter(sensor.channels.items()))
    t = datetime(2025, 2, 1, 6, 0, tzinfo=UTC)
    sensor_alert = Alert(
        v=1,
        id="sample",
        tenant=sensor.tenant,
        condition="level",
        category="disaster",
        event="raised",
        status="active",
        level=1,
        ts=t,
        raised_at=t,
        reason="sample",
        site=site.id,
        site_name=site.name,
        sensor=sensor.id,
        kind=kind,
        gateway=sensor.gateway,
        level_name="sample",
        level_name_ja="見本",
        threshold=1.0,
        value=1.0,
        unit=channel.unit,
        rate=0.1,
        rate_unit=f"{channel.unit}/h",
        forecast=Forecast("next_level", t, t, t, target_level=2, target_value=2.0),
        peak_level=1,
    )
    gateway_alert = Alert(
        v=1,
        id="sample-gw",
        tenant=sensor.tenant,
        condition="gateway_offline",
        category="maintenance",
        event="raised",
        status="active",
        level=1,
        ts=t,
        raised_at=t,
        reason="sample",
        gateway=sensor.gateway,
    )
    snapshot = Snapshot(
        t=t.timestamp(),
        rate=0.1,
        rate_unit=f"{channel.unit}/h",
        next_level=2,
        next_level_eta=t.timestamp(),
        next_level_earliest=t.timestamp(),
        next_level_latest=t.timestamp(),
        new_snow={h: 1.0 for h in (1, 3, 6, 12, 24)},
        failure_time=t.timestamp(),
        failure_earliest=t.timestamp(),
        failure_latest=t.timestamp(),
        velocity_per_day=1.0,
    )
    detection = points.detection_line(snapshot, sensor, site, kind)
    assert detection is not None
    lines = [
        points.reading_line(Reading(sensor.id, kind, t, 1.0, channel.unit), sensor, site),
        points.reading_line(Reading(sensor.id, kind, t, None, channel.unit, Quality.TIMEOUT), sensor, site),
        points.alert_line(sensor_alert),
        points.alert_line(gateway_alert),
        detection,
    ]
    tags: dict[str, set[str]] = {}
    fields: dict[str, set[str]] = {}
    for line in lines:
        parsed = lineproto.parse_line(line)
        tags.setdefault(parsed.measurement, set()).update(parsed.tags)
        fields.setdefault(parsed.measurement, set()).update(parsed.fields)
    return {m: Schema(frozenset(tags[m]), frozenset(fields[m])) for m in tags}


def registry_kinds(registry: Registry) -> set[str]:
    return {kind for sensor in registry.data.sensors for kind in sensor.channels}


@dataclass(frozen=True)
class Reference:
    """The names one query uses, by role."""

    measurement: str
    fields: set[str]  # aggregated, selected or compared with a number
    tags: set[str]  # compared with a string or a regex, grouped by, or listed by SHOW TAG VALUES
    selected: set[str]  # plain SELECT columns: a field or a tag
    tag_values: list[tuple[str, str, str]]  # (tag, operator, string literal or /regex/)


def references(query: str) -> Reference:
    """Parse one dashboard query; fails on anything outside the portable shapes."""
    show = SHOW_SHAPE.fullmatch(query)
    if show:
        where = show["where"] or ""
        conditions = TAG_CONDITION.findall(where)
        return Reference(
            show["measurement"],
            set(),
            {show["key"]} | {k for k, _, _ in conditions},
            set(),
            conditions,
        )
    select = SELECT_SHAPE.fullmatch(query)
    assert select, f"not a plain SELECT ... FROM ... WHERE ... [GROUP BY ...] [fill(none)]: {query}"
    assert select["group"] is None or "time(" not in select["group"] or select["fill"], (
        f"GROUP BY time() without fill(none): {query}"
    )
    fields = {m["field"] for m in AGGREGATE.finditer(select["select"])}
    selected = set(IDENTIFIER.findall(AGGREGATE.sub("", select["select"])))
    conditions = TAG_CONDITION.findall(select["where"])
    fields |= {m["key"] for m in FIELD_CONDITION.finditer(select["where"])}
    tags = {k for k, _, _ in conditions}
    if select["group"]:
        tags |= set(IDENTIFIER.findall(select["group"]))
    return Reference(select["measurement"], fields, tags, selected, conditions)


def expected_thresholds(registry: Registry, kinds: set[str]) -> tuple[set[float], set[str]]:
    """Threshold values to draw for these kinds (mirrored for direction "absolute"), and their names."""
    values: set[float] = set()
    names: set[str] = set()
    for sensor in registry.data.sensors:
        for kind, channel in sensor.channels.items():
            if kind not in kinds:
                continue
            for t in channel.thresholds:
                values.add(t.value)
                if channel.direction == "absolute":
                    values.add(-t.value)
                names.add(t.name_ja or t.name)
    return values, names


def kinds_shown(query: str, all_kinds: set[str]) -> set[str]:
    shown: set[str] = set()
    for key, op, rhs in TAG_CONDITION.findall(query):
        if key != "kind":
            continue
        if op == "=":
            shown.add(rhs.strip("'"))
        elif op == "=~":
            shown |= {k for k in all_kinds if re.search(rhs[1:-1], k)}
    return shown


# --------------------------------------------------------------------------------------------
# Structure (no servers needed)


def test_there_are_dashboards() -> None:
    assert DASHBOARD_FILES, f"no dashboards in {DASHBOARDS_DIR / 'json'}"
    assert OVERVIEW_UID in DASHBOARDS


def test_provisioning_files_follow_grafanas_format() -> None:
    datasources = yaml.safe_load(DATASOURCES_FILE.read_text(encoding="utf-8"))
    assert datasources["apiVersion"] == 1
    [ds] = datasources["datasources"]
    assert ds["uid"] == DATASOURCE_UID and ds["type"] == "influxdb" and ds["access"] == "proxy"
    assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*\}", ds["url"]), "the URL comes from Grafana's environment"
    assert ds["jsonData"]["version"] == "InfluxQL" and ds["jsonData"]["dbName"] == DB
    assert "secureJsonData" not in ds or all(
        re.search(r"\$\{[A-Z][A-Z0-9_]*\}", str(v)) for v in ds["secureJsonData"].values()
    ), "no secret written into the repository"

    providers = yaml.safe_load(PROVIDERS_FILE.read_text(encoding="utf-8"))
    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_is_well_formed(path: Path) -> None:
    d = load_json(path)
    assert d["uid"] == path.stem and d["schemaVersion"] == 39 and d["title"]
    assert d.get("id") is None, "provisioned dashboards carry no database id"
    panels = all_panels(d)
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for p in panels:
        assert p["title"] and p.get("description"), f"panel {p['id']} needs a title and a description"
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, f"{p['title']}: outside the 24-column grid"
        mine = {(g["x"] + i, g["y"] + j) for i in range(g["w"]) for j in range(g["h"])}
        assert not cells & mine, f"{p['title']}: overlaps another panel"
        cells |= mine
        for target in p.get("targets", []):
            assert p["datasource"]["uid"] == target["datasource"]["uid"] == DATASOURCE_UID
            assert target["rawQuery"] is True and target["query"].strip() == target["query"]
    for v in variables(d):
        assert v["datasource"]["uid"] == DATASOURCE_UID
        # Regex matching of several values (and "All") needs both; see the module docstring.
        assert v["multi"] is True and v["includeAll"] is True and not v.get("allValue")
        assert v["refresh"] == 2, "refresh on time range change (3.x lists tag values of that range)"


@pytest.mark.parametrize(("where", "query"), all_query_texts(), ids=[w for w, _ in all_query_texts()])
def test_queries_are_portable_influxql(where: str, query: str) -> None:
    """Only InfluxQL that InfluxDB 1.x, 2.x (v1 API) and 3.x all accept (see DESIGN.md)."""
    upper = query.upper()
    for banned in (" INTO ", " ON ", "SLIMIT", "SOFFSET", "|>", "FROM(", "FROM (", "TZ(", "[["):
        assert banned not in upper, f"{where}: {banned.strip()!r} is not portable: {query}"
    functions = {f.lower() for f in re.findall(r"(\w+)\(", query)}
    assert functions <= PORTABLE_FUNCTIONS, f"{where}: functions {functions - PORTABLE_FUNCTIONS}"
    for macro in re.findall(r"\$__\w+|\$timeFilter", query):
        assert macro in MACROS, f"{where}: macro {macro} is not interpolated by these tests"
    assert "$timeFilter" in query, f"{where}: without a time filter the query scans everything"
    references(query)  # fails unless the query has one of the portable shapes


@pytest.mark.parametrize(("where", "query"), all_query_texts(), ids=[w for w, _ in all_query_texts()])
def test_queries_name_only_what_the_writer_produces(where: str, query: str) -> None:
    schema = writer_schema()
    kinds = registry_kinds(load_registry(REGISTRY_PATH))
    ref = references(query)
    assert ref.measurement in schema, f"{where}: measurement {ref.measurement!r} is never written"
    s = schema[ref.measurement]
    assert ref.fields <= s.fields, f"{where}: {ref.fields - s.fields} are not fields of {ref.measurement}"
    assert ref.tags <= s.tags, f"{where}: {ref.tags - s.tags} are not tags of {ref.measurement}"
    assert ref.selected <= s.tags | s.fields, f"{where}: {ref.selected - s.tags - s.fields} unknown"
    named = set(IDENTIFIER.findall(query)) - {ref.measurement}
    assert named <= s.tags | s.fields, f"{where}: {named - s.tags - s.fields} unknown in {ref.measurement}"
    for key, op, rhs in ref.tag_values:
        if key != "kind":
            continue
        if op == "=":
            assert rhs.strip("'") in kinds, f"{where}: no registry channel has kind {rhs}"
        else:
            assert any(re.search(rhs[1:-1], k) for k in kinds), f"{where}: {rhs} matches no registry kind"


def test_threshold_lines_match_the_demo_registry() -> None:
    """Until dashboards are generated from the registry, the hand-set steps must not drift."""
    registry = load_registry(REGISTRY_PATH)
    kinds = registry_kinds(registry)
    checked = 0
    for q in panel_queries():
        if q.panel["type"] != "timeseries":
            continue
        shown = kinds_shown(q.text, kinds)
        values, names = expected_thresholds(registry, shown)
        steps = q.panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[0]["value"] is None
        drawn = [s["value"] for s in steps[1:]]
        assert drawn == sorted(drawn), f"{q.id}: threshold steps must ascend"
        assert set(drawn) == values, f"{q.id}: steps {drawn} but the registry has {sorted(values)}"
        for name in names:
            assert name in q.panel["description"], f"{q.id}: the description should name {name}"
        checked += 1
    assert checked >= 3


def test_quality_stat_shows_zero_rather_than_no_data() -> None:
    """count() over no flagged reading returns no series at all (checked against InfluxDB below),
    which Grafana shows as "No data" unless the panel says otherwise."""
    stat = panel(OVERVIEW_UID, "Readings with a quality flag")
    assert stat.panel["fieldConfig"]["defaults"]["noValue"] == "0"


def test_grafana_regex_format() -> None:
    assert grafana_regex_format(["demo-city"]) == "demo-city"
    assert (
        grafana_regex_format(["国道12号 神居 (arterial)", "a.b/c"]) == r"(国道12号 神居 \(arterial\)|a\.b\/c)"
    )
    assert grafana_regex_format(["中央 5条通, residential"]) == "中央 5条通, residential"


# --------------------------------------------------------------------------------------------
# Against a real InfluxDB 1.6 with the demo's data


@dataclass(frozen=True)
class Loaded:
    server: InfluxDB1
    lines: list[lineproto.ParsedLine]  # everything written, flagged readings included
    time_range: TimeRange
    flagged: int


def _run_demo(out: Path) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bosai.cli", "demo", "--speed", SPEED, "--no-plots", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted((out / "work" / "store").glob("*.lp"))
    assert files, f"the demo wrote no line protocol under {out / 'work' / 'store'}"
    return [line for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]


def _flagged_readings(registry: Registry, demo: list[lineproto.ParsedLine]) -> list[str]:
    """A few readings with quality flags, written by the real writer: the demo storm has none."""
    sensor = registry.sensors[("demo-city", "river-pt-02")]
    taken = {p.ts_ms for p in demo if p.tags.get("sensor") == sensor.id}
    start = min(p.ts_ms for p in demo)
    lines = []
    for i, q in enumerate((Quality.TIMEOUT, Quality.CRC, Quality.OUT_OF_RANGE)):
        ts = start + (i + 1) * 3_600_000
        while ts in taken:  # a point with the same series and time would merge with a demo reading
            ts += 1
        when = datetime.fromtimestamp(ts / 1000, UTC)
        lines.append(
            points.reading_line(
                Reading(sensor.id, "river_level", when, None, "m", q), sensor, registry.site_of(sensor)
            )
        )
    return lines


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    demo_lines = _run_demo(tmp_path_factory.mktemp("demo") / "out")
    demo = [lineproto.parse_line(line) for line in demo_lines]
    flagged = _flagged_readings(load_registry(REGISTRY_PATH), demo)
    parsed = demo + [lineproto.parse_line(line) for line in flagged]
    ts = [p.ts_ms for p in parsed]
    time_range = TimeRange(min(ts) - 60_000, max(ts) + 60_000)
    with InfluxDB1(tmp_path_factory.mktemp("influxdb")) as server:
        server.create_db(DB)
        server.write_lp(DB, demo_lines + flagged)
        yield Loaded(server, parsed, time_range, len(flagged))


def run(loaded: Loaded, query: str, selection: dict[str, list[str]]) -> list[dict[str, Any]]:
    return series_rows(loaded.server.query(DB, interpolate(query, selection, loaded.time_range)))


def select_all(loaded: Loaded, dashboard: dict[str, Any]) -> dict[str, list[str]]:
    """Each variable's options (its query run with the variables before it on "All"), as Grafana
    resolves them in order; "All" then stands for every option."""
    selection: dict[str, list[str]] = {}
    for v in variables(dashboard):
        rows = run(loaded, variable_query(v), selection)
        options = sorted({row["value"] for row in rows})
        assert options, f"variable {v['name']} has no options"
        selection[v["name"]] = options
    return selection


def values_of(rows: list[dict[str, Any]], column: str) -> list[Any]:
    return [row[column] for row in rows if row.get(column) is not None]


def test_variables_list_the_demo_tenant_and_all_its_sites(loaded: Loaded) -> None:
    registry = load_registry(REGISTRY_PATH)
    selection = select_all(loaded, DASHBOARDS[OVERVIEW_UID])
    assert selection["tenant"] == ["demo-city"]
    # Japanese, spaces, a comma and parentheses, exactly as the registry spells them
    assert set(selection["site"]) == {s.name for s in registry.data.sites if s.tenant == "demo-city"}


@pytest.mark.parametrize("query", panel_queries(), ids=lambda q: q.id)
def test_every_panel_query_returns_data(loaded: Loaded, query: PanelQuery) -> None:
    text = interpolate(query.text, select_all(loaded, DASHBOARDS[query.dashboard]), loaded.time_range)
    result = loaded.server.query(DB, text)
    series = [s for r in result["results"] for s in r.get("series", [])]
    assert series, f"no series for {query.id}: {text}"
    values = [
        v
        for s in series
        for row in s["values"]
        for c, v in zip(s["columns"], row, strict=True)
        if c != "time"
    ]
    assert any(v is not None for v in values), f"only nulls for {query.id}: {text}"


def test_overview_river_panel_shows_both_gauges_above_flood_danger(loaded: Loaded) -> None:
    rows = run(
        loaded, panel(OVERVIEW_UID, "River level (m)").text, select_all(loaded, DASHBOARDS[OVERVIEW_UID])
    )
    assert {(r["site_name"], r["sensor"]) for r in rows} == {
        ("石狩川 旭橋", "river-radar-01"),
        ("石狩川 旭橋", "river-pt-02"),
    }
    danger = next(
        t.value
        for t in load_registry(REGISTRY_PATH)
        .sensors[("demo-city", "river-radar-01")]
        .channels["river_level"]
        .thresholds
        if t.name_ja == "氾濫危険水位"
    )
    for sensor in ("river-radar-01", "river-pt-02"):
        assert max(values_of([r for r in rows if r["sensor"] == sensor], "mean")) > danger


def test_overview_snow_and_slope_panels_show_the_storm(loaded: Loaded) -> None:
    selection = select_all(loaded, DASHBOARDS[OVERVIEW_UID])
    snow = run(loaded, panel(OVERVIEW_UID, "Snow depth (cm)").text, selection)
    assert {(r["site_name"], r["sensor"]) for r in snow} == {
        ("国道12号 神居 (arterial)", "snow-laser-01"),
        ("中央 5条通, residential", "snow-us-02"),
    }
    assert max(values_of(snow, "mean")) > 75.0  # 大雪警戒
    tilt = run(loaded, panel(OVERVIEW_UID, "Slope tilt (deg)").text, selection)
    assert {(r["sensor"], r["kind"]) for r in tilt} == {
        (s, k) for s in ("slope-incl-01", "slope-incl-02") for k in ("tilt_x", "tilt_y")
    }
    assert max(values_of([r for r in tilt if r["kind"] == "tilt_x"], "mean")) > 1.5  # 崩壊警戒


def test_overview_alerts_table_lists_every_alert_event(loaded: Loaded) -> None:
    rows = run(loaded, panel(OVERVIEW_UID, "Alerts").text, select_all(loaded, DASHBOARDS[OVERVIEW_UID]))
    # Every event of every site's alerts; a gateway's alerts (gateway_offline) have no site.
    written = [p for p in loaded.lines if p.measurement == points.ALERTS and "site_name" in p.tags]
    assert len(rows) == len(written) > 0
    assert ("river-radar-01", "river_level", "escalated", 4) in {
        (r["sensor"], r["kind"], r.get("event"), r["level"]) for r in rows
    }
    assert all(r["reason"] and r["site_name"] for r in rows)


def test_overview_quality_stat_counts_the_flagged_readings(loaded: Loaded) -> None:
    stat = panel(OVERVIEW_UID, "Readings with a quality flag").text
    rows = run(loaded, stat, select_all(loaded, DASHBOARDS[OVERVIEW_UID]))
    assert sum(values_of(rows, "count")) == loaded.flagged
    # Where nothing is flagged, count() returns no series at all, hence the panel's noValue "0".
    assert run(loaded, stat, {"tenant": ["demo-city"], "site": ["神居古潭 斜面3"]}) == []


DEMO_SITES = {s.id: s.name for s in load_registry(REGISTRY_PATH).data.sites if s.tenant == "demo-city"}


@pytest.mark.parametrize("site_id", sorted(DEMO_SITES))
def test_selecting_one_site_shows_exactly_that_sites_data(loaded: Loaded, site_id: str) -> None:
    """Grafana's regex escaping of a single value must match the tag exactly: parentheses, commas,
    spaces and Japanese included (an unescaped "(arterial)" would be a regex group and match nothing)."""
    site = DEMO_SITES[site_id]
    selection = {"tenant": ["demo-city"], "site": [site]}
    kinds = registry_kinds(load_registry(REGISTRY_PATH))
    mine = [p for p in loaded.lines if p.tags.get("site_name") == site]
    drawn: set[tuple[str, str]] = set()
    drawable: set[str] = set()
    for q in panel_queries(OVERVIEW_UID):
        rows = run(loaded, q.text, selection)
        kind = q.panel["type"]
        if kind == "timeseries":
            panel_kinds = kinds_shown(q.text, kinds)
            drawable |= panel_kinds
            for r in rows:
                assert r["site_name"] == site, q.id
                drawn.add((r["sensor"], r["kind"] if "kind" in r else only(panel_kinds)))
        elif kind == "table":
            assert all(r["site_name"] == site for r in rows), q.id
            assert len(rows) == sum(p.measurement == points.ALERTS for p in mine), q.id
        elif kind == "stat":
            flagged = sum(p.measurement == points.READINGS and p.fields["q"] != 0 for p in mine)
            assert sum(values_of(rows, "count")) == flagged, q.id
        else:
            pytest.fail(f"{q.id}: no check for panel type {kind}")
    # Every sensor and kind of the site that a time-series panel draws, and nothing else.
    expected = {
        (p.tags["sensor"], p.tags["kind"])
        for p in mine
        if p.measurement == points.READINGS and p.tags["kind"] in drawable and "value" in p.fields
    }
    assert expected and drawn == expected


def only(items: set[str]) -> str:
    assert len(items) == 1, items
    return next(iter(items))


def test_queried_names_exist_in_the_loaded_database(loaded: Loaded) -> None:
    """The writer-derived schema agrees with what InfluxDB itself reports for the demo's data."""
    for where, query in all_query_texts():
        ref = references(query)
        tag_keys = set(
            values_of(
                series_rows(loaded.server.query(DB, f'SHOW TAG KEYS FROM "{ref.measurement}"')), "tagKey"
            )
        )
        field_keys = set(
            values_of(
                series_rows(loaded.server.query(DB, f'SHOW FIELD KEYS FROM "{ref.measurement}"')), "fieldKey"
            )
        )
        assert ref.tags <= tag_keys and ref.fields <= field_keys, where
        assert ref.selected <= tag_keys | field_keys, where
