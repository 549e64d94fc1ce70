"""Snow panels: the depth with its thresholds, and on a right axis in the lower part of the panel
the hourly new snow (JMA 降雪量, the depth increase over each hour) as bars, the fresh snow that
fell before settling as outlines, and the snowfall intensity; the largest 1 h and 24 h new-snow
totals go in the panel's summary.  The two bars differ because the pack settles while it snows:
the depth's increase is less than the snow that fell.
"""

from __future__ import annotations

import itertools
from typing import Any

from simulators.plot.context import Ctx
from simulators.plot.records import Panel, forcing
from simulators.plot.thresholds import measured

_SNOW_NEW = "#74c0fc"
_SNOW_FALLEN = "#1864ab"


def draw_snow(ctx: Ctx, ax: Any, panel: Panel) -> None:
    ctx.title(ax, panel)
    device = panel.device or ""
    hourly = sorted(ctx.truth.snowfall.get(device, []), key=lambda r: float(r["t"]))
    if not any(float(r["new_1h"]) > 0 or float(r.get("fallen_1h") or 0.0) > 0 for r in hourly):
        hourly = []  # no snow fell (a melt, or bare ground): no bars of zeros
    snowfall = forcing(ctx.truth, panel.keys, "snowfall", ctx.scenario)
    bars = bool(hourly) or snowfall is not None
    measured(ctx, ax, panel, "#1c7ed6", linewidth=1.8, footroom=0.75 if bars else 0.0)
    if not bars:
        return
    ax2 = ctx.twin(ax)
    top = 0.0
    if hourly:
        ends = [ctx.truth.hours(r["t"]) for r in hourly]
        new_1h = [float(r["new_1h"]) for r in hourly]
        fallen = [float(r.get("fallen_1h", 0.0) or 0.0) for r in hourly]
        width = min((b - a for a, b in itertools.pairwise(ends)), default=1.0)
        mids = [e - width / 2 for e in ends]
        ax2.bar(
            mids,
            new_1h,
            width=width * 0.85,
            color=_SNOW_NEW,
            alpha=0.75,
            label="new snow per hour, 降雪量 (cm, right)",
        )
        top = max([top, *new_1h])
        if any(v > 0 for v in fallen):
            ax2.bar(
                mids,
                fallen,
                width=width * 0.85,
                fill=False,
                edgecolor=_SNOW_FALLEN,
                linewidth=0.8,
                label="fresh snow fallen per hour (cm, right)",
            )
            top = max([top, *fallen])
        ctx.stats(ax, "降雪量 (JMA new snow)", _snow_totals(ctx, hourly))
    if snowfall is not None:
        ax2.plot(
            snowfall.t,
            snowfall.v,
            color=_SNOW_FALLEN,
            linewidth=1.0,
            linestyle="-.",
            label=f"snowfall intensity ({snowfall.unit or 'cm/h'}, right)",
        )
        top = max([top, *snowfall.v])
    ax2.set_ylim(0, max(top, 0.5) * 2.6)  # the bars keep to the lower part
    ax2.set_ylabel("new snow (cm/h)", fontsize=8)


def _snow_totals(ctx: Ctx, hourly: list[dict[str, Any]]) -> list[str]:
    """The largest new-snow totals over 1 h and 24 h, and when their window ended."""
    parts = []
    for window, name in (("new_1h", "1 h"), ("new_24h", "24 h")):
        rows = [r for r in hourly if r.get(window) is not None]
        if rows:
            best = max(rows, key=lambda r: float(r[window]))
            when = ctx.truth.hours(best["t"])
            parts.append(f"max {name} {float(best[window]):.1f} cm (to {when:.0f} h)")
    return parts
