"""Plain-words reasons for alerts, e.g.

石狩川 旭橋: river_level 3.24 m reached 避難判断水位 / evacuation judgement (3.20 m), level 3;
rising 0.32 m/h; 氾濫危険水位 / flood danger (3.80 m) expected 14:05 (13:50-14:30)
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from wire.alerts import Forecast


def fmt(x: float) -> str:
    """A number as people write it: 3.2 -> "3.20", 0.0123 -> "0.0123", 12.0 -> "12.00"."""
    s = f"{x:.2f}"
    return s if float(s) == x or abs(x) >= 1 else f"{x:.4f}".rstrip("0")


def label(name: str, name_ja: str) -> str:
    return f"{name_ja} / {name}" if name_ja else name


def clock(t: datetime | float, tz: tzinfo) -> str:
    """14:05, or 11-23 14:05 when not today in `tz` (relative to nothing: callers add context)."""
    when = t if isinstance(t, datetime) else datetime.fromtimestamp(t, UTC)
    return when.astimezone(tz).strftime("%H:%M")


def span(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def forecast_text(f: Forecast, tz: tzinfo, what: str, now: datetime) -> str:
    lead = (f.eta - now).total_seconds()
    band = f"{clock(f.earliest, tz)}-{clock(f.latest, tz)}"
    return f"{what} expected {clock(f.eta, tz)} ({band}), in {span(max(lead, 0.0))}"
