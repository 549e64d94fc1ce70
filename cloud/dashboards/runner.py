"""Run a dashboard's queries against InfluxDB the way Grafana's InfluxDB data source does, for the
previews (preview.py): the variables resolved in order with "All" selected, each panel query
interpolated, each repeated row run once per value of its variable, series named by the alias.

Grafana's interpolation for raw InfluxQL:
- `$timeFilter` -> `time >= <from>ms and time <= <to>ms`, `$__interval` -> e.g. `2m`;
- dashboard variables in the "regex" format: each value escaped with escapeRegex
  (@grafana/data: `\\ ^ $ * + ? . ( ) | [ ] { } /`), one value alone, several (or "All":
  every option of the variable) as `(a|b|c)`.
tests/integration/test_dashboards.py has its own copy of these rules and checks that both agree.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from cloud.dashboards.grafana import Json

MIN_INTERVAL_S = 60  # the data source's timeInterval: gateways poll every 60 s
MAX_POINTS = 600  # about a panel's width in pixels, as Grafana's maxDataPoints

_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_ALIAS = re.compile(r"\$tag_(\w+)|\$col|\$measurement|\$m\b")


class TimeRange(msgspec.Struct, frozen=True):
    start_ms: int
    end_ms: int

    def interval(self) -> str:
        """Grafana's $__interval: range / max points, at least the data source's minimum."""
        seconds = max(MIN_INTERVAL_S, (self.end_ms - self.start_ms) / 1000 / MAX_POINTS)
        return f"{math.ceil(seconds / 60)}m"


class Series(msgspec.Struct, frozen=True):
    """One drawn series: its legend name, tags, and (time ms, value) points."""

    name: str
    ref_id: str
    tags: dict[str, str]
    points: list[tuple[int, float]]


Selection = dict[str, list[str]]
Query = Callable[[str], Json]  # InfluxQL -> the /query JSON result


def regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def regex_format(values: list[str]) -> str:
    if not values:
        raise ValueError("a variable with no value selected")
    escaped = [regex_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(query: str, selection: Selection, time_range: TimeRange) -> str:
    text = query.replace("$timeFilter", f"time >= {time_range.start_ms}ms and time <= {time_range.end_ms}ms")
    text = text.replace("$__interval", time_range.interval())

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in selection:
            raise ValueError(f"query uses ${name}, which is not a variable defined before it: {query}")
        return regex_format(selection[name])

    return _VARIABLE.sub(value, text)


def influx_query(url: str, database: str, token: str | None = None, timeout_s: float = 30.0) -> Query:
    """GET /query of InfluxDB's v1 API (1.x; 2.x and 3.x with a token), times in ms."""

    def run(influxql: str) -> Json:
        params = urllib.parse.urlencode({"db": database, "q": influxql, "epoch": "ms"})
        request = urllib.request.Request(f"{url.rstrip('/')}/query?{params}")
        if token:
            request.add_header("Authorization", f"Token {token}")
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            result: Json = json.loads(response.read())
        errors = [r["error"] for r in result.get("results", []) if "error" in r]
        if errors:
            raise ValueError(f"InfluxDB refused {influxql!r}: {errors[0]}")
        return result

    return run


def rows(result: Json) -> list[dict[str, Any]]:
    """One dict per row, with the tags of its series."""
    out: list[dict[str, Any]] = []
    for statement in result.get("results", []):
        for series in statement.get("series", []):
            tags = series.get("tags", {})
            out += [
                {**tags, **dict(zip(series["columns"], values, strict=True))} for values in series["values"]
            ]
    return out


def resolve_variables(dashboard: Json, query: Query, time_range: TimeRange) -> Selection:
    """Every variable's options with "All" selected, resolved in order as Grafana does."""
    selection: Selection = {}
    for variable in dashboard["templating"]["list"]:
        found = rows(query(interpolate(variable["query"], selection, time_range)))
        selection[variable["name"]] = sorted({str(r["value"]) for r in found})
    return selection


def panels_with_repeat(dashboard: Json) -> Iterator[tuple[Json, str]]:
    """Every panel with targets, and the variable its row repeats over ("" if none)."""
    repeat = ""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            repeat = panel.get("repeat", "")
            continue
        if panel.get("targets"):
            yield panel, panel.get("repeat", repeat)


def find_panel(dashboard: Json, title_start: str) -> tuple[Json, str]:
    for panel, repeat in panels_with_repeat(dashboard):
        if panel["title"].startswith(title_start):
            return panel, repeat
    raise KeyError(f"{dashboard['uid']}: no panel titled {title_start!r}...")


def panel_series(panel: Json, query: Query, selection: Selection, time_range: TimeRange) -> list[Series]:
    """The time series a panel draws (its time_series targets), named as Grafana names them."""
    out: list[Series] = []
    for target in panel["targets"]:
        result = query(interpolate(target["query"], selection, time_range))
        for statement in result.get("results", []):
            for s in statement.get("series", []):
                tags = s.get("tags", {})
                for i, column in enumerate(s["columns"]):
                    if column == "time":
                        continue
                    points = [(int(v[0]), float(v[i])) for v in s["values"] if v[i] is not None]
                    name = _alias(target.get("alias", ""), s["name"], column, tags)
                    out.append(Series(name, target["refId"], tags, points))
    return out


def panel_rows(
    panel: Json, query: Query, selection: Selection, time_range: TimeRange
) -> list[dict[str, Any]]:
    """A table panel's rows, merged per series as Grafana's "merge" transformation does."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for target in panel["targets"]:
        result = query(interpolate(target["query"], selection, time_range))
        for statement in result.get("results", []):
            for s in statement.get("series", []):
                tags = s.get("tags", {})
                for values in s["values"]:
                    row = dict(zip(s["columns"], values, strict=True))
                    key = (*sorted(tags.items()), row.get("time"))  # same series and time: one row
                    merged.setdefault(key, dict(tags)).update(row)
    return list(merged.values())


def _alias(alias: str, measurement: str, column: str, tags: dict[str, str]) -> str:
    if not alias:
        return f"{measurement}.{column} " + " ".join(f"{k}={v}" for k, v in sorted(tags.items()))

    def part(m: re.Match[str]) -> str:
        if m.group(1):
            return tags.get(m.group(1), "")
        return column if m.group(0) == "$col" else measurement

    return _ALIAS.sub(part, alias).strip()
