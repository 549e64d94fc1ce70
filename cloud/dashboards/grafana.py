"""Small typed builders for Grafana 10.4+ dashboard JSON (schemaVersion 39).

A dashboard is described by msgspec Structs (`Dashboard`, `Section`, `Panel`, `Query`,
`Variable`, `Annotation`) and turned into Grafana's JSON by `render`, which lays the panels out
on the 24-column grid and numbers them.  Panel-type specifics (field config, options) are built
by the helper functions here, so that the five dashboards look and behave alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

Json = dict[str, Any]

DATASOURCE_UID = "bosai-influxdb"
DATASOURCE: Json = {"type": "influxdb", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39  # Grafana 10.4
GRID_COLUMNS = 24

# Alert levels 1-5 in the colours of Japan's five-level scheme (警戒レベル, Cabinet Office 2021 /
# MLIT river stages / JMA キキクル): 2 yellow, 3 red, 4 purple as published; level 1 (white there)
# is blue and level 5 (black there) dark purple, so that both stay visible on Grafana's dark
# theme; 0 (nothing open) green.  dashboards/README.md says the same.
LEVEL_COLOURS: dict[int, str] = {0: "green", 1: "blue", 2: "yellow", 3: "red", 4: "purple", 5: "dark-purple"}
DISPATCH_COLOUR = "orange"
THRESHOLD_DASH = [10, 6]


class Query(msgspec.Struct, frozen=True, kw_only=True):
    """One InfluxQL target of a panel."""

    text: str
    alias: str = ""
    table: bool = False  # resultFormat "table" instead of "time_series"


class Panel(msgspec.Struct, kw_only=True):
    type: str
    title: str
    description: str
    width: int
    height: int
    queries: list[Query] = []
    field_config: Json = {}
    options: Json = {}
    transformations: list[Json] = []


class Section(msgspec.Struct, kw_only=True):
    """Panels under an (optional) row header; a row with `repeat` is copied for every selected
    value of that variable, with the variable set to that one value inside the copy."""

    panels: list[Panel]
    title: str = ""
    description: str = ""
    repeat: str = ""


class Variable(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    label: str
    query: str
    description: str = ""


class Annotation(msgspec.Struct, frozen=True, kw_only=True):
    """An InfluxQL annotation query: events drawn on every time-series panel of the dashboard."""

    name: str
    query: str
    text_column: str
    tags_column: str
    colour: str = "red"


class Dashboard(msgspec.Struct, kw_only=True):
    uid: str
    title: str
    description: str
    variables: list[Variable]
    sections: list[Section]
    annotations: list[Annotation] = []
    time_from: str = "now-24h"
    refresh: str = "1m"


# ------------------------------------------------------------------------------------------
# Rendering


def render(d: Dashboard) -> Json:
    """The dashboard's Grafana JSON (the form Grafana's file provisioning and API take)."""
    return {
        "id": None,
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": ["bosai", "防災"],
        "editable": False,
        "graphTooltip": 1,
        "timezone": "browser",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": d.time_from, "to": "now"},
        "timepicker": {},
        "refresh": d.refresh,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": _LINKS,
        "annotations": {"list": [_BUILT_IN_ANNOTATIONS, *(_annotation(a) for a in d.annotations)]},
        "templating": {"list": [_variable(v) for v in d.variables]},
        "panels": _layout(d.sections),
    }


_BUILT_IN_ANNOTATIONS: Json = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}


# Links to the other bosai dashboards (by tag), keeping the time range and variables.
_LINKS: list[Json] = [
    {
        "title": "bosai",
        "type": "dashboards",
        "tags": ["bosai"],
        "asDropdown": True,
        "includeVars": True,
        "keepTime": True,
        "icon": "external link",
        "targetBlank": False,
        "tooltip": "",
        "url": "",
    }
]


def _variable(v: Variable) -> Json:
    return {
        "name": v.name,
        "label": v.label,
        "description": v.description,
        "type": "query",
        "datasource": DATASOURCE,
        "query": v.query,
        "definition": v.query,
        "refresh": 2,  # on time range change: 3.x lists the tag values of that range only
        "multi": True,
        "includeAll": True,  # "All" = every option as (a|b|c); no allValue, see influxql.py
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "sort": 1,
        "hide": 0,
        "skipUrlSync": False,
    }


def _annotation(a: Annotation) -> Json:
    # Grafana 10 keeps an InfluxQL annotation's query in `target`; the same fields at the top
    # level are what older versions read (and what Grafana migrates from).
    return {
        "name": a.name,
        "datasource": DATASOURCE,
        "enable": True,
        "hide": False,
        "iconColor": a.colour,
        "query": a.query,
        "textColumn": a.text_column,
        "tagsColumn": a.tags_column,
        "target": {
            "refId": "Anno",
            "query": a.query,
            "rawQuery": True,
            "resultFormat": "table",
            "fromAnnotations": True,
            "textEditor": True,
            "textColumn": a.text_column,
            "tagsColumn": a.tags_column,
        },
    }


def _layout(sections: Sequence[Section]) -> list[Json]:
    """Flow layout: panels left to right, a new line when the 24 columns are full; a section
    with a title starts with a row header."""
    out: list[Json] = []
    y = 0
    next_id = 1
    for section in sections:
        if section.title:
            row: Json = {
                "id": next_id,
                "type": "row",
                "title": section.title,
                "description": section.description or section.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_COLUMNS, "x": 0, "y": y},
                "panels": [],
            }
            if section.repeat:
                row["repeat"] = section.repeat
            out.append(row)
            next_id += 1
            y += 1
        x, line_height = 0, 0
        for p in section.panels:
            if p.width > GRID_COLUMNS:
                raise ValueError(f"panel {p.title!r} is wider than the grid")
            if x + p.width > GRID_COLUMNS:
                y, x, line_height = y + line_height, 0, 0
            out.append(_panel(p, next_id, {"h": p.height, "w": p.width, "x": x, "y": y}))
            next_id += 1
            x += p.width
            line_height = max(line_height, p.height)
        y += line_height
    return out


def _panel(p: Panel, panel_id: int, grid: Json) -> Json:
    out: Json = {
        "id": panel_id,
        "type": p.type,
        "title": p.title,
        "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": grid,
        "targets": [_target(q, chr(ord("A") + i)) for i, q in enumerate(p.queries)],
    }
    if p.transformations:
        out["transformations"] = p.transformations
    out["fieldConfig"] = {
        "defaults": p.field_config.get("defaults", {}),
        "overrides": p.field_config.get("overrides", []),
    }
    out["options"] = p.options
    return out


def _target(q: Query, ref_id: str) -> Json:
    target: Json = {
        "refId": ref_id,
        "datasource": DATASOURCE,
        "rawQuery": True,
        "resultFormat": "table" if q.table else "time_series",
        "query": q.text,
    }
    if q.alias:
        target["alias"] = q.alias
    return target


# ------------------------------------------------------------------------------------------
# Field config and options


def steps(*pairs: tuple[str, float | None]) -> Json:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in pairs]}


def level_steps(base: str = "green") -> Json:
    """Thresholds colouring an alert level 1-5 (LEVEL_COLOURS); below 1 `base`."""
    return steps((base, None), *((LEVEL_COLOURS[n], float(n)) for n in range(1, 6)))


def override(matcher: str, options: str, **properties: Any) -> Json:
    """One field override; property ids use dots (custom.lineStyle), written here as __."""
    return {
        "matcher": {"id": matcher, "options": options},
        "properties": [{"id": k.replace("__", "."), "value": v} for k, v in properties.items()],
    }


def threshold_overrides(ref_ids: Sequence[str], hidden_in_legend: Sequence[str] = ()) -> list[Json]:
    """Threshold series (the queries `ref_ids`, one series per level named "N name_ja name")
    drawn as thin dashed lines in their level's colour; `hidden_in_legend` (mirror lines below
    zero) are drawn but not listed twice in the legend."""
    out = [
        override(
            "byFrameRefID",
            ref,
            custom__lineStyle={"fill": "dash", "dash": THRESHOLD_DASH},
            custom__lineWidth=1,
            custom__fillOpacity=0,
            custom__spanNulls=True,
        )
        for ref in ref_ids
    ]
    out += [
        override("byFrameRefID", ref, custom__hideFrom={"legend": True, "tooltip": False, "viz": False})
        for ref in hidden_in_legend
    ]
    # Series names of readings start with the sensor id, which has no spaces: "^N " only
    # matches a level name.
    out += [
        override("byRegexp", f"^{n} .*", color={"mode": "fixed", "fixedColor": LEVEL_COLOURS[n]})
        for n in range(1, 6)
    ]
    return out


def timeseries_field_config(
    unit: str,
    axis_label: str,
    *,
    decimals: int | None = None,
    log_scale: bool = False,
    overrides: Sequence[Json] = (),
) -> Json:
    custom: Json = {
        "axisLabel": axis_label,
        "drawStyle": "line",
        "lineWidth": 2,
        "fillOpacity": 0,
        "showPoints": "never",
        "spanNulls": False,
        "thresholdsStyle": {"mode": "off"},
        "scaleDistribution": {"type": "log", "log": 10} if log_scale else {"type": "linear"},
    }
    defaults: Json = {"unit": unit, "color": {"mode": "palette-classic"}, "custom": custom}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {"defaults": defaults, "overrides": list(overrides)}


TIMESERIES_OPTIONS: Json = {
    "legend": {
        "displayMode": "table",
        "placement": "bottom",
        "showLegend": True,
        "calcs": ["lastNotNull", "max"],
    },
    "tooltip": {"mode": "multi", "sort": "desc"},
}


def stat_options(calc: str = "lastNotNull", graph: bool = True, text_mode: str = "value_and_name") -> Json:
    return {
        "reduceOptions": {"calcs": [calc], "fields": "", "values": False},
        "colorMode": "background",
        "graphMode": "area" if graph else "none",
        "justifyMode": "center",
        "orientation": "auto",
        "textMode": text_mode,
    }


def state_field_config(mappings: dict[int, tuple[str, str]]) -> Json:
    """A 0/1 (or small integer) state shown as words in colours, for state-timeline and stat."""
    return {
        "defaults": {
            "color": {"mode": "thresholds"},
            "mappings": [
                {
                    "type": "value",
                    "options": {
                        str(v): {"text": text, "color": colour, "index": i}
                        for i, (v, (text, colour)) in enumerate(mappings.items())
                    },
                }
            ],
            "thresholds": steps(("text", None)),
        },
        "overrides": [],
    }


STATE_TIMELINE_OPTIONS: Json = {
    "showValue": "auto",
    "mergeValues": True,
    "alignValue": "left",
    "rowHeight": 0.9,
    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
    "tooltip": {"mode": "single", "sort": "none"},
}


def table_options(sort_by: str = "", descending: bool = True) -> Json:
    options: Json = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": descending}]
    return options


def organize(order: Sequence[str], names: dict[str, str], hidden: Sequence[str] = ()) -> list[Json]:
    """Table transformations: one table from all series, columns in `order`, renamed."""
    return [
        {"id": "merge", "options": {}},
        {
            "id": "organize",
            "options": {
                "excludeByName": {h: True for h in hidden},
                "indexByName": {name: i for i, name in enumerate(order)},
                "renameByName": names,
            },
        },
    ]


# ------------------------------------------------------------------------------------------
# Panels of the kinds every dashboard uses

TABLE_CELLS: Json = {"custom": {"align": "auto", "cellOptions": {"type": "auto"}}}


def timeseries_panel(
    title: str,
    description: str,
    *,
    width: int,
    height: int,
    queries: list[Query],
    unit: str,
    axis_label: str,
    decimals: int | None = None,
    overrides: Sequence[Json] = (),
) -> Panel:
    """Lines in `unit` on the left axis, with a legend table of the last and highest values."""
    return Panel(
        type="timeseries",
        title=title,
        description=description,
        width=width,
        height=height,
        queries=queries,
        field_config=timeseries_field_config(unit, axis_label, decimals=decimals, overrides=overrides),
        options=TIMESERIES_OPTIONS,
    )


def table_panel(
    title: str,
    description: str,
    *,
    width: int,
    height: int,
    queries: list[Query],
    columns: Sequence[str],
    names: dict[str, str],
    sort_by: str,
    descending: bool = False,
    hidden: Sequence[str] = (),
    overrides: Sequence[Json] = (),
) -> Panel:
    """One table merged from `queries` (see `organize`), sorted by the column shown as `sort_by`,
    ascending unless `descending`."""
    return Panel(
        type="table",
        title=title,
        description=description,
        width=width,
        height=height,
        queries=queries,
        transformations=organize(columns, names, hidden),
        field_config={"defaults": TABLE_CELLS, "overrides": list(overrides)},
        options=table_options(sort_by=sort_by, descending=descending),
    )
