"""Slope panels: the tilt (or displacement) with its thresholds, the rain behind it and the failure
time; and beneath it the inverse velocity 1/v (Fukuzono 1985), which for alpha = 2 falls on a
straight line to zero at failure, with the line a slope engineer would fit to its last part and
where that line reaches zero.  The truth is what a failure-time forecast should find, so the
picture shows both the fitted time and the true one.
"""

from __future__ import annotations

import math
from typing import Any

from simulators.plot.context import SERIES_COLOURS, Ctx
from simulators.plot.records import Panel, forcing, inverse_velocity
from simulators.plot.river import draw_rain
from simulators.plot.thresholds import measured

_FAILURE = "#c92a2a"


def draw_slope(ctx: Ctx, ax: Any, panel: Panel) -> None:
    ctx.title(ax, panel)
    rain = forcing(ctx.truth, panel.keys, "rain", ctx.scenario, guess=False)
    measured(ctx, ax, panel, None, linewidth=1.6, headroom=0.5 if rain is not None else 0.0)
    if rain is not None:
        draw_rain(ctx, ax, rain)
    _failure(ctx, ax, panel, label=True)


def draw_inverse_velocity(ctx: Ctx, ax: Any, panel: Panel) -> None:
    """1/v from the truth's differences (Fukuzono 1985): linear to zero at failure for alpha = 2.
    Two series (tilt_x, tilt_y) get an axis each: their speeds differ by far."""
    fits: list[str] = []
    for k, key in enumerate(panel.keys):
        s = ctx.truth.series[key]
        colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
        own = len(panel.keys) == 2
        target = ctx.twin(ax, behind=False) if own and k == 1 else ax
        t_mid, inv = inverse_velocity(s)
        if not t_mid:
            continue
        # dashed: with one failure time the two lines of 1/v often coincide
        style = "--" if target is not ax else "-"
        target.plot(t_mid, inv, color=colour, linewidth=1.5, linestyle=style, label=f"1/v {key[1]}")
        finite = sorted(v for v in inv if math.isfinite(v))
        top = finite[int(0.95 * (len(finite) - 1))] * 1.15 if finite else 1.0
        fit = _fukuzono_fit(t_mid, inv)
        if fit is not None and fit[1] <= 2 * ctx.x_max:  # else not heading for failure yet
            t0, t_zero, m, b = fit
            t_end = min(t_zero, ctx.x_max)
            target.plot(
                [t0, t_end],
                [m * t0 + b, m * t_end + b],
                color=colour,
                linestyle=(0, (1, 1.5)),
                linewidth=2.2,
                alpha=0.8,
                label=f"fit {key[1]} (last 30 %)",
            )
            if t_zero <= ctx.x_max:
                target.plot([t_zero], [0.0], marker="x", color=colour, markersize=8, mew=2, clip_on=False)
            fits.append(f"{key[1]} fit {t_zero:.2f} h")
        target.set_ylim(0.0, top if top > 0 else 1.0)
        unit = f"day/{s.unit}" if s.unit else "day/unit"
        if own:
            target.set_ylabel(f"1/v {key[1]}\n({unit})", fontsize=8, color=colour)
            target.tick_params(axis="y", colors=colour)
        elif k == 0:
            ax.set_ylabel(f"1/v ({unit})", fontsize=8)
    ax.set_title(f"{panel.device}: inverse velocity (Fukuzono)", fontsize=9, loc="left")
    failures = [ctx.truth.failures[k] for k in panel.keys if k in ctx.truth.failures]
    if failures:
        fits.append(f"true failure {min(failures):.2f} h")
    ctx.stats(ax, "1/v → 0", fits)
    _failure(ctx, ax, panel, label=False)


def _failure(ctx: Ctx, ax: Any, panel: Panel, label: bool) -> None:
    times = sorted({ctx.truth.failures[k] for k in panel.keys if k in ctx.truth.failures})
    for t in times:
        if t <= ctx.x_max:
            ax.axvline(t, color=_FAILURE, linewidth=1.6, zorder=3, label="failure (truth)" if label else None)
            if label:  # beside the line, in the margin after the scenario's end if there is one
                after = t > 0.9 * ctx.x_max
                ax.text(
                    t,
                    0.97,
                    f" failure 崩壊 {t:.2f} h",
                    transform=ax.get_xaxis_transform(),
                    rotation=90,
                    ha="left" if after else "right",
                    va="top",
                    rotation_mode="default",
                    fontsize=8,
                    color=_FAILURE,
                    zorder=7,
                )
        elif label:
            ax.annotate(
                f"failure 崩壊 at {t:.1f} h →",
                xy=(0.995, 0.03),
                xycoords="axes fraction",
                ha="right",
                fontsize=8,
                color=_FAILURE,
            )
        label = False


def _fukuzono_fit(t: list[float], inv: list[float]) -> tuple[float, float, float, float] | None:
    """Least-squares line through the last 30 % of 1/v: (fit start, time it reaches 0, slope,
    intercept), or None if it does not head for zero."""
    if not t:
        return None
    t_from = t[0] + 0.7 * (t[-1] - t[0])
    pts = [(x, y) for x, y in zip(t, inv, strict=True) if x >= t_from and math.isfinite(y)]
    if len(pts) < 3:
        return None
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx <= 0:
        return None
    m = sum((x - mx) * (y - my) for x, y in pts) / sxx
    b = my - m * mx
    if m >= 0:
        return None
    return pts[0][0], -b / m, m, b
