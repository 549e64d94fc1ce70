"""Scheduled faults on the figure: each fault window of a panel's devices shaded (link loss in every
panel, hatched) and labelled with the fault type and its note.

The labels are laid out (`fault_marks`) apart from the shading because the rest of the panel
makes room for them: the y range leaves rows free at the top, and threshold labels avoid them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simulators.plot.context import AXES_W_PT, Ctx
from simulators.plot.records import Panel, faults_for

_VALUE_FAULTS = {"spike", "stuck", "drift"}
_FAULT_COLOURS = {"value": "#ff922b", "transport": "#868e96", "link_loss": "#5c7cfa"}


@dataclass(frozen=True)
class FaultMark:
    family: str  # value | transport | link_loss
    start: float  # hours
    end: float
    text: str
    top: float  # top of the label, fraction of the axes height
    label_end: float  # right end of the label, fraction of the axes width


def fault_marks(ctx: Ctx, panel: Panel) -> list[FaultMark]:
    """The fault windows of a panel with their labels, each label in the first of three rows
    at the top where it does not run into the one before."""
    marks: list[FaultMark] = []
    devices = {d for d, _ in panel.keys}
    row_ends = [-1.0, -1.0, -1.0]  # where the last label of each row ends, fraction of the axes
    for i, f in enumerate(sorted(faults_for(ctx.truth, panel.keys), key=lambda f: float(f["start"]))):
        name = str(f["fault"])
        family = "link_loss" if name == "link_loss" else "value" if name in _VALUE_FAULTS else "transport"
        a, b = ctx.truth.hours(f["start"]), ctx.truth.hours(f["end"])
        b = max(b, a + 0.004 * ctx.x_max)  # a one-minute spike stays visible
        text = name
        if name == "link_loss" and f.get("mode"):
            text += f" ({f['mode']})"
        if len(devices) > 1 and f.get("device"):
            text += f" {f['device']}"
        if f.get("kind") and len(panel.keys) > 1:
            text += f" {f['kind']}"
        if f.get("note"):
            text += f": {f['note']}"
        x0 = a / ctx.x_max
        x1 = x0 + (ctx.width(text, 7) + 6) / AXES_W_PT
        row = next((r for r, end in enumerate(row_ends) if end < x0), i % 3)
        row_ends[row] = x1
        marks.append(FaultMark(family, a, b, text, 0.97 - 0.14 * row, x1))
    return marks


def fault_rows(ctx: Ctx, panel: Panel) -> int:
    """How many rows of fault labels the top of a panel needs."""
    return len({m.top for m in fault_marks(ctx, panel)})


def draw_faults(ctx: Ctx, ax: Any, panel: Panel) -> None:
    seen: set[str] = set()
    for m in fault_marks(ctx, panel):
        colour = _FAULT_COLOURS[m.family]
        legend = {"value": "value fault", "transport": "transport fault", "link_loss": "uplink loss"}
        ax.axvspan(
            m.start,
            m.end,
            facecolor=colour,
            edgecolor=colour,
            alpha=0.2,
            hatch="//" if m.family == "link_loss" else None,
            linewidth=0,
            zorder=0,
            label=None if m.family in seen else f"{legend[m.family]} (shaded)",
        )
        seen.add(m.family)
        ax.text(
            m.start,
            m.top,
            m.text,
            transform=ax.get_xaxis_transform(),
            ha="left",
            va="top",
            fontsize=7,
            color="#343a40",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": colour, "alpha": 0.3, "edgecolor": "none"},
            zorder=7,
            clip_on=True,
        )
