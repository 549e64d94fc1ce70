"""What the drawing of every panel shares: the figure's geometry, the colours of extra series, and
the drawing context `Ctx` passed from panel to panel.

Labels are placed before they are drawn (threshold names where they hide the least, fault labels
in rows that do not run into each other), so the context measures text with the figure's own
renderer.  It also remembers each panel's twin axes and its line-less legend entries, because
`plot_truth` builds a panel's legend only after the panel's role has drawn it.  matplotlib is
imported here only inside `Ctx.width`, when there is a figure to measure on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simulators.plot.records import Panel, Truth, sensor_name, site_label

if TYPE_CHECKING:
    from simulators.scenario import Scenario

DPI = 110
FIG_WIDTH = 13.0  # inches
AXES_W_PT = (FIG_WIDTH - 3.9) * 72.0  # width of a panel, about: the legends take the rest

# Panel heights in inches (the figure grows with the number of panels).
HEIGHTS = {
    "river": 3.0,
    "snow": 3.0,
    "slope": 2.7,
    "inverse_velocity": 1.7,
    "temperature": 1.7,
    "other": 2.2,
}
SERIES_COLOURS = ("#1c7ed6", "#2f9e44", "#e8590c", "#7048e8", "#0c8599", "#c2255c")


class Ctx:
    """The figure, the truth and the scenario, as every panel's drawing needs them."""

    def __init__(
        self, fig: Any, truth: Truth, scenario: Scenario | None, colours: dict[int, str], x_max: float
    ) -> None:
        self.renderer = fig.canvas.get_renderer()
        self.dpi = float(fig.dpi)
        self.truth = truth
        self.scenario = scenario
        self.colours = colours
        self.x_max = x_max
        self.twins: dict[int, list[Any]] = {}  # id(axes) -> its twin axes (for the legend)
        self.summaries: set[str] = set()  # legend labels without a line, listed last

    def width(self, text: str, fontsize: float) -> float:
        """Width of a text in points, as it will be drawn."""
        from matplotlib.font_manager import FontProperties

        w, _, _ = self.renderer.get_text_width_height_descent(
            text, FontProperties(size=fontsize), ismath=False
        )
        return float(w) * 72.0 / self.dpi

    def twin(self, ax: Any, behind: bool = True) -> Any:
        """A second y axis on the right; `behind`: the panel's own curves stay on top (bars)."""
        twin = ax.twinx()
        self.twins.setdefault(id(ax), []).append(twin)
        if behind:
            ax.set_zorder(twin.get_zorder() + 1)
            ax.patch.set_visible(False)
        twin.tick_params(labelsize=8)
        return twin

    def title(self, ax: Any, panel: Panel) -> None:
        key = panel.keys[0]
        site = site_label(self.truth, key, self.scenario)
        sensor = sensor_name(key[0], self.scenario)
        kinds = ", ".join(k for _, k in panel.keys)
        device = f"{key[0]} ({sensor})" if sensor else key[0]
        title = f"{site}  ·  {device}  ·  {kinds}" if site else f"{device}  ·  {kinds}"
        ax.set_title(title, fontsize=10, loc="left")

    def stats(self, ax: Any, head: str, parts: list[str]) -> None:
        """A one-line summary at the right of the title, or in the legend if the title is long."""
        if not parts:
            return
        text = f"{head}: {',  '.join(parts)}" if head else ",  ".join(parts)
        title = ax.get_title(loc="left")
        if self.width(title, ax.title.get_fontsize()) + self.width(text, 8.5) + 30 < AXES_W_PT:
            ax.set_title(text, fontsize=8.5, loc="right", color="#343a40")
        else:
            summary = "\n".join([head, *parts] if head else parts)
            self.summaries.add(summary)
            ax.plot([], [], linestyle="none", label=summary)
