"""River panels: the stage with its thresholds (水防団待機水位 ... 氾濫危険水位) and crossings, the
peak, and the rain that drives the flood as bars hanging from the top, the classic hydrograph
with its hyetograph.  Slope panels hang their rain the same way (`draw_rain`).
"""

from __future__ import annotations

import math
from typing import Any

from simulators.plot.context import Ctx
from simulators.plot.records import Panel, Series, binned, forcing
from simulators.plot.thresholds import measured

_RAIN = "#4dabf7"


def draw_river(ctx: Ctx, ax: Any, panel: Panel) -> None:
    ctx.title(ax, panel)
    rain = forcing(ctx.truth, panel.keys, "rain", ctx.scenario)
    measured(ctx, ax, panel, "#1c7ed6", linewidth=1.8, headroom=0.6 if rain is not None else 0.0)
    if rain is not None:
        draw_rain(ctx, ax, rain)
    s = ctx.truth.series[panel.keys[0]]
    finite = [(v, t) for t, v in zip(s.t, s.v, strict=True) if math.isfinite(v)]
    if finite:
        v, t = max(finite)
        ctx.stats(ax, "", [f"peak {v:.2f} {s.unit} at {t:.2f} h"])


def draw_rain(ctx: Ctx, ax: Any, rain: Series) -> None:
    """Rain as bars hanging from the top of the panel (a hyetograph over the hydrograph)."""
    width = _bin_hours(ctx.truth.duration_h)
    mids, means = binned(rain, width, ctx.truth.duration_h)
    total = sum(m * width for m in means)
    per = f"{width * 60:.0f}-min" if width < 1 else f"{width:g}-h"
    ax2 = ctx.twin(ax)
    ax2.bar(
        mids,
        means,
        width=width * 0.9,
        color=_RAIN,
        alpha=0.7,
        label=f"rain, {per} mean (right; total {total:.0f} mm)",
    )
    ax2.set_ylim(max([*means, 1.0]) * 2.8, 0.0)  # inverted: bars from the top, in its upper third
    ax2.set_ylabel(f"rain ({rain.unit or 'mm/h'})", fontsize=8)


def _bin_hours(duration_h: float) -> float:
    """Bars of 1 h (the hydrologist's hourly rain) unless the scenario is short."""
    for width in (1.0, 0.5, 1 / 6):
        if duration_h / width >= 6:
            return width
    return 1 / 12
