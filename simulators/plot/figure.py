"""The figure: one column of panels on a shared time axis (hours since the scenario start), each
drawn by its role (river, snow, slope, inverse velocity, temperature, other), then shaded with
its faults and given its legend on the right.

The layout lives here and the drawing of each role in its own module, so that adding a kind of
sensor means a panel function, not a change to how the figure is put together.  matplotlib is
imported only inside `plot_truth`: the CLI imports this package at startup.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulators.plot.context import DPI, FIG_WIDTH, HEIGHTS, SERIES_COLOURS, Ctx
from simulators.plot.faults import draw_faults, fault_rows
from simulators.plot.records import Panel, Truth, panels_of, parse
from simulators.plot.river import draw_river
from simulators.plot.slope import draw_inverse_velocity, draw_slope
from simulators.plot.snow import draw_snow
from simulators.plot.thresholds import measured

if TYPE_CHECKING:
    from simulators.scenario import Scenario

JST = timezone(timedelta(hours=9))
_HEADER_IN = 0.9
_LEVEL_FALLBACK = {1: "#f2c200", 2: "#f08c00", 3: "#e03131", 4: "#9c36b5", 5: "#212529"}


def draw_temperature(ctx: Ctx, ax: Any, panel: Panel) -> None:
    units = set()
    for k, key in enumerate(panel.keys):
        s = ctx.truth.series[key]
        units.add(s.unit)
        colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
        ax.plot(s.t, s.v, color=colour, linewidth=1.1, label=f"{key[0]} {key[1]}")
    ax.set_ylabel(", ".join(sorted(u for u in units if u)), fontsize=8)
    ax.set_title("temperatures", fontsize=9, loc="left")
    rows = fault_rows(ctx, panel)
    if rows:  # the fault labels above the curves
        lo, hi = ax.get_ylim()
        share = 0.05 + 0.14 * rows
        ax.set_ylim(lo, lo + (hi - lo) / (1.0 - share))


def draw_other(ctx: Ctx, ax: Any, panel: Panel) -> None:
    ctx.title(ax, panel)
    measured(ctx, ax, panel, None, linewidth=1.4)


_DRAW: dict[str, Callable[[Ctx, Any, Panel], None]] = {
    "river": draw_river,
    "snow": draw_snow,
    "slope": draw_slope,
    "inverse_velocity": draw_inverse_velocity,
    "temperature": draw_temperature,
    "other": draw_other,
}


def plot_truth(records: list[dict[str, Any]], out: Path, *, scenario: Scenario | None = None) -> Path:
    """Draw truth records (simulators/truth.py) as one PNG at `out`; returns `out`.  `scenario`
    (optional) adds what the records do not hold: thresholds that were never reached, site names
    and which rain or snowfall drives which device.  Raises TruthError on records it cannot use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MultipleLocator

    with contextlib.suppress(ImportError):  # a bundled Japanese font: 避難判断水位, not empty boxes
        import matplotlib_fontja  # type: ignore[import-untyped]  # noqa: F401

    try:
        from bosai.report import LEVEL_COLOURS

        colours: dict[int, str] = dict(LEVEL_COLOURS)
    except ImportError:  # the report needs the cloud's registry
        colours = dict(_LEVEL_FALLBACK)

    truth = parse(records)
    panels = panels_of(truth)
    heights = [HEIGHTS[p.role] for p in panels]
    fig_h = _HEADER_IN + sum(heights) + 0.4
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(FIG_WIDTH, fig_h),
        dpi=DPI,
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    x_max = _x_max(truth)
    ctx = Ctx(fig, truth, scenario, colours, x_max)
    try:
        for panel, ax in zip(panels, axes[:, 0], strict=True):
            ax.set_xlim(0.0, x_max)
            _DRAW[panel.role](ctx, ax, panel)
            draw_faults(ctx, ax, panel)
            ax.set_xlim(0.0, x_max)
            ax.xaxis.set_major_locator(MultipleLocator(_hour_step(x_max)))
            ax.tick_params(labelbottom=True, labelsize=8)
            ax.grid(alpha=0.3, linewidth=0.6)
            handles, labels = ax.get_legend_handles_labels()
            for twin in ctx.twins.get(id(ax), []):
                more = twin.get_legend_handles_labels()
                handles, labels = handles + more[0], labels + more[1]
            # the summary (a label without a line) last
            order = sorted(range(len(labels)), key=lambda k: labels[k] in ctx.summaries)
            handles, labels = [handles[k] for k in order], [labels[k] for k in order]
            ax.legend(
                handles,
                labels,
                loc="upper left",
                bbox_to_anchor=(1.06, 1.0),
                fontsize=7.5,
                framealpha=0.9,
                borderaxespad=0.0,
            )
        axes[-1, 0].set_xlabel(_x_label(truth), fontsize=9)
        title = f"{truth.name}: ground truth"
        if truth.seed is not None:
            title += f"  (seed {truth.seed})"
        fig.suptitle(title + (f"\n{truth.description}" if truth.description else ""), fontsize=12)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.55 / fig_h), h_pad=1.2)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=DPI)
    finally:
        plt.close(fig)
    return out


def _x_max(truth: Truth) -> float:
    """The scenario's end, stretched to show a failure just after it (the scenario must end
    before the failure, so a slope engineer sees where the line is heading)."""
    end = max(truth.duration_h, max((s.t[-1] for s in truth.series.values() if s.t), default=0.0))
    if end <= 0:
        end = 1.0
    near = [t for t in truth.failures.values() if end < t <= end * 1.15]
    return max([end, *(t + 0.03 * end for t in near)])


def _hour_step(span_h: float) -> float:
    for step in (0.25, 0.5, 1, 2, 3, 6, 12, 24, 48, 168):
        if span_h / step <= 16:
            return step
    return 336.0


def _x_label(truth: Truth) -> str:
    if truth.start > 1e8:  # epoch seconds of a run
        start = datetime.fromtimestamp(truth.start, JST).strftime("%Y-%m-%d %H:%M:%S JST")
        return f"hours since the scenario start ({start})"
    return "scenario time (h)"
