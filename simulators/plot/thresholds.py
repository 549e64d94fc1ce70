"""A panel's measured curves with their thresholds: the lines (dashed if reached, dotted if not),
their names placed where they hide the least, and the times the truth crossed them.

Every role with a measured quantity (stage, snow depth, tilt, anything else) draws it through
`measured`, so the y range, which thresholds are worth showing and the label placement are the
same in every panel; the roles add their bars, failure lines and summaries around it.
"""

from __future__ import annotations

import math
from typing import Any

from simulators.plot.context import AXES_W_PT, HEIGHTS, SERIES_COLOURS, Ctx
from simulators.plot.faults import fault_marks, fault_rows
from simulators.plot.records import Panel, Threshold, direction_of, thresholds_of

_Box = tuple[float, float, float, float]  # x0, x1 (fractions of the axes), y0, y1 (data)
_Option = tuple[float, str, str, _Box]


def measured(
    ctx: Ctx,
    ax: Any,
    panel: Panel,
    colour: str | None,
    linewidth: float,
    headroom: float = 0.0,
    footroom: float = 0.0,
) -> None:
    """The series of the panel, their thresholds and crossings.  `headroom` / `footroom`:
    free space above / below the curves (for bars), as a fraction of their range."""
    values: list[float] = []
    lines: dict[tuple[float, int], Threshold] = {}
    unit = ""
    for k, key in enumerate(panel.keys):
        s = ctx.truth.series[key]
        unit = unit or s.unit
        line_colour = colour if colour and k == 0 else SERIES_COLOURS[k % len(SERIES_COLOURS)]
        ax.plot(s.t, s.v, color=line_colour, linewidth=linewidth, label=f"{key[1]} ({s.unit})", zorder=4)
        finite = [v for v in s.v if math.isfinite(v)]
        values += finite
        if not finite:
            continue
        direction = direction_of(key, ctx.scenario)
        peak = max(finite, key=abs)
        for th in thresholds_of(ctx.truth, key, ctx.scenario):
            signs = {
                1.0 if s.at(ctx.truth.hours(x["t"])) >= 0 else -1.0
                for x in ctx.truth.crossings
                if (x["device"], x["kind"]) == key and int(x["level"]) == th.level
            }
            if not signs:
                signs = {-1.0 if direction == "absolute" and peak < 0 else 1.0}
            for sign in signs:
                lines.setdefault((sign * th.value, th.level), th)
    ax.set_ylabel(unit, fontsize=9)
    if not values:
        return
    lo, hi = min(values), max(values)
    shown = _visible_thresholds(lines, lo, hi)
    for (y, _), _th in shown:
        lo, hi = min(lo, y), max(hi, y)
    span = hi - lo if hi > lo else max(abs(hi) * 0.1, 0.1)
    bottom = lo - 0.06 * span - footroom * span
    if footroom and lo >= 0:
        bottom = max(bottom, 0.0 if lo - 0.06 * span >= 0 else lo - 0.06 * span)
    # Room at the top for the rows of fault labels, above the curves and threshold labels.
    rows = fault_rows(ctx, panel)
    if rows:
        share = 0.05 + 0.14 * rows  # of the axes' height
        below = (lo - bottom) / span + 1.06
        headroom = max(headroom, share * below / (1.0 - share) + 0.1)
    ax.set_ylim(bottom, hi + 0.06 * span + headroom * span)
    labels = []
    for (y, level), th in shown:
        col = ctx.colours.get(level, "#495057")
        ax.axhline(
            y,
            color=col,
            linestyle="--" if th.reached else ":",
            linewidth=1.2 if th.reached else 1.0,
            zorder=2,
        )
        text = f"L{level} {th.name_ja} / {th.name}" if th.name_ja else f"L{level} {th.name}"
        text += f"  {_number(y)} {unit}" + ("" if th.reached else "  (not reached)")
        labels.append((y, text, "#a07c00" if level == 1 else col))
    _threshold_labels(ctx, ax, panel, labels)
    _crossings(ctx, ax, panel)


def _threshold_labels(ctx: Ctx, ax: Any, panel: Panel, labels: list[tuple[float, str, str]]) -> None:
    """Write each threshold's name on its line at one end of the panel (left or right, above
    or below the line), wherever it hides the least: curve points, crossing markers, the
    failure line and the labels already placed."""
    if not labels:
        return
    fontsize = 7.5
    lo, hi = ax.get_ylim()
    axes_in = HEIGHTS.get(panel.role, 2.5) - 0.6
    height = (fontsize * 1.4 / (axes_in * 72.0)) * (hi - lo)
    obstacles: list[tuple[float, float, float]] = [  # (x as a fraction of the axes, y, weight)
        (t / ctx.x_max, v, 1.0)
        for key in panel.keys
        for t, v in zip(ctx.truth.series[key].t, ctx.truth.series[key].v, strict=True)
        if math.isfinite(v)
    ]
    for c in ctx.truth.crossings:
        key = (c["device"], c["kind"])
        if key in panel.keys:
            t = ctx.truth.hours(c["t"])
            obstacles.append((t / ctx.x_max, ctx.truth.series[key].at(t), 40.0))
            # its time label, down and to the right of the marker
            obstacles.append((t / ctx.x_max + 0.02, ctx.truth.series[key].at(t) - 0.6 * height, 20.0))
    # On the right, labels end just before a failure line rather than over it.
    walls = [t / ctx.x_max for k, t in ctx.truth.failures.items() if k in panel.keys and t <= ctx.x_max]
    right = min([0.994, *(x - 0.006 for x in walls if x > 0.7)])
    label_h = 7 * 1.5 / (axes_in * 72.0)  # a fault label's height, fraction of the axes
    fixed: list[_Box] = [
        (m.start / ctx.x_max, m.label_end, lo + (m.top - label_h) * (hi - lo), lo + m.top * (hi - lo))
        for m in fault_marks(ctx, panel)
    ]
    options: list[list[_Option]] = []  # per label: (cost, side, va, box)
    for y, text, _ in labels:
        w = (ctx.width(text, fontsize) + 8) / AXES_W_PT
        mine = []
        for side, va in (("left", "bottom"), ("left", "top"), ("right", "bottom"), ("right", "top")):
            x0, x1 = (0.0, w) if side == "left" else (right - w, right)
            y0, y1 = (y, y + height) if va == "bottom" else (y - height, y)
            cost = sum(wt for x, v, wt in obstacles if x0 <= x <= x1 and y0 <= v <= y1)
            cost += 0.0 if lo <= y0 and y1 <= hi else 300.0
            cost += sum(300.0 for f in fixed if _overlap(f, (x0, x1, y0, y1)))
            mine.append((cost, side, va, (x0, x1, y0, y1)))
        options.append(sorted(mine, key=lambda o: o[0]))
    for (y, text, col), (_, side, va, _) in zip(labels, _place(options), strict=True):
        ax.text(
            0.006 if side == "left" else right,
            y,
            text,
            transform=ax.get_yaxis_transform(),
            ha=side,
            va=va,
            fontsize=fontsize,
            color=col,
            bbox={
                "boxstyle": "square,pad=0.12",
                "facecolor": "white",
                "alpha": 0.75,
                "edgecolor": "none",
            },
            zorder=5,
        )


def _crossings(ctx: Ctx, ax: Any, panel: Panel) -> None:
    drawn: set[str] = set()
    for c in ctx.truth.crossings:
        key = (c["device"], c["kind"])
        if key not in panel.keys:
            continue
        t = ctx.truth.hours(c["t"])
        y = ctx.truth.series[key].at(t)
        up = c["direction"] == "up"
        label = "crossing up (into level)" if up else "crossing down (out of level)"
        ax.scatter(
            [t],
            [y],
            marker="^" if up else "v",
            s=55,
            color=ctx.colours.get(int(c["level"]), "#495057"),
            edgecolors="black",
            linewidths=0.7,
            zorder=6,
            label=None if label in drawn else label,
        )
        drawn.add(label)
        near_end = t > 0.93 * ctx.x_max
        ax.annotate(
            f"{t:.2f} h",
            (t, y),
            xytext=(-5 if near_end else 5, -10 if up else 5),
            textcoords="offset points",
            ha="right" if near_end else "left",
            fontsize=6.5,
            color="#343a40",
            zorder=6,
        )


def _overlap(a: _Box, b: _Box) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def _place(options: list[list[_Option]]) -> list[_Option]:
    """One option per label, least total cost with overlapping labels costing 500 a pair: a
    depth-first search, cheapest options first, pruned by the best total found so far."""
    best: tuple[float, list[_Option]] = (math.inf, [o[0] for o in options])

    def search(i: int, chosen: list[_Option], cost: float) -> None:
        nonlocal best
        if cost >= best[0]:
            return
        if i == len(options):
            best = (cost, list(chosen))
            return
        for opt in options[i]:
            extra = opt[0] + sum(500.0 for c in chosen if _overlap(c[3], opt[3]))
            chosen.append(opt)
            search(i + 1, chosen, cost + extra)
            chosen.pop()

    search(0, [], 0.0)
    return best[1]


def _visible_thresholds(
    lines: dict[tuple[float, int], Threshold], lo: float, hi: float
) -> list[tuple[tuple[float, int], Threshold]]:
    """Reached thresholds, those within the data's range, and the next one beyond it on each side
    (how far the next level was): never every level of a channel that stayed quiet."""
    shown = [(k, th) for k, th in lines.items() if th.reached or lo <= k[0] <= hi]
    above = sorted((k for k, th in lines.items() if k[0] > hi and not th.reached))
    below = sorted((k for k, th in lines.items() if k[0] < lo and not th.reached), reverse=True)
    shown += [(k, lines[k]) for k in above[:1] + below[:1]]
    return sorted(shown, key=lambda item: item[0])


def _number(v: float) -> str:
    """A threshold as people write it: 2.00 m, 0.10 deg, 60.0 cm, 150 mm."""
    digits = 2 if abs(v) < 10 else 1 if abs(v) < 100 else 0
    return f"{v:.{digits}f}"
