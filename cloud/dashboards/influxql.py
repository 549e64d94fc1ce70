"""Portable InfluxQL, built from parts so that every dashboard query has the same few shapes.

Only what InfluxDB 1.x, 2.x (v1 compatibility API) and 3.x all evaluate alike is offered: plain
`SELECT` of fields or of `mean`/`last`/`count`/`max`/`min` of fields, `=` and `=~` tag conditions,
numeric field comparisons, Grafana's `$timeFilter` last in the WHERE clause, `GROUP BY` time and
tags with `fill(none)` or `fill(previous)`, and `SHOW TAG VALUES ... WHERE ... AND $timeFilter` for
template variables.  No subqueries, INTO, math on fields, or Flux.  tests/integration/
test_dashboards.py checks the shapes and runs every query against a real InfluxDB.

Dashboard variables appear as `=~ /^$var$/`: Grafana substitutes each selected value
regex-escaped, several as `(a|b)`, so names with spaces, commas, brackets and Japanese match
exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

TIME_FILTER = "$timeFilter"
INTERVAL = "$__interval"
Aggregate = Literal["mean", "last", "count", "max", "min"]
Fill = Literal["none", "previous"]


def ident(name: str) -> str:
    """A double-quoted identifier (measurement, tag key, field key)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> str:
    """A single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def agg(func: Aggregate, field: str, alias: str | None = None) -> str:
    """`func("field")`, optionally `AS "alias"` (needed when one query selects several)."""
    text = f"{func}({ident(field)})"
    return f"{text} AS {ident(alias)}" if alias else text


def column(field: str) -> str:
    return ident(field)


def tag_is(key: str, value: str) -> str:
    return f"{ident(key)} = {literal(value)}"


def tag_in_variable(key: str, variable: str) -> str:
    """The tag equals one of the values selected in a multi-value dashboard variable."""
    return f"{ident(key)} =~ /^${variable}$/"


def tag_matches(key: str, pattern: str) -> str:
    """A fixed regex; `pattern` must not contain an unescaped slash."""
    return f"{ident(key)} =~ /{pattern}/"


def field_above(key: str, number: float) -> str:
    return f"{ident(key)} > {number:g}"


def select(
    columns: Sequence[str],
    measurement: str,
    where: Sequence[str],
    *,
    by_time: bool = False,
    group_by: Sequence[str] = (),
    fill: Fill = "none",
) -> str:
    """`SELECT columns FROM "m" WHERE cond AND ... AND $timeFilter [GROUP BY ...] [fill(..)]`."""
    text = f"SELECT {', '.join(columns)} FROM {ident(measurement)} WHERE {_where(where)}"
    groups = ([f"time({INTERVAL})"] if by_time else []) + [ident(t) for t in group_by]
    if groups:
        text += " GROUP BY " + ", ".join(groups)
    if by_time:
        text += f" fill({fill})"  # without it, empty intervals come back as nulls and break lines
    return text


def show_tag_values(measurement: str, key: str, where: Sequence[str] = ()) -> str:
    """Values of a tag in the time range (InfluxDB 3.x lists only the last day without a time
    condition, so one is always there)."""
    return f"SHOW TAG VALUES FROM {ident(measurement)} WITH KEY = {ident(key)} WHERE {_where(where)}"


def _where(conditions: Sequence[str]) -> str:
    return " AND ".join([*conditions, TIME_FILTER])
