"""Previews of the dashboards' main panels as PNG, drawn with matplotlib from the very queries the
dashboards run (interpolated as Grafana does, runner.py), because Grafana cannot run here.

    python -m cloud.dashboards.preview --influx-url http://localhost:8086 --out docs/img/dashboards

One image per dashboard, 1200 x 700 px: the overview's map (a scatter of the sites' lat/lon in
their alert level's colour) and alert counts, river level with its stage lines, snow depth and
new snowfall with the dispatch level, slope tilt with mirrored thresholds, movement rate and
inverse velocity with the failure forecast, gateway state and outbox.  The time range is the data's
(first to last reading) unless --start/--end are given.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cloud.dashboards import runner
from cloud.dashboards.generate import dashboards
from cloud.dashboards.grafana import LEVEL_COLOURS, Json
from cloud.dashboards.runner import Query, Series, TimeRange

WIDTH_IN, HEIGHT_IN, DPI = 12.0, 7.0, 100
# Grafana's named colours (its classic palette), so the previews look like the panels.
COLOURS = {
    "green": "#56A64B",
    "blue": "#3274D9",
    "light-blue": "#8AB8FF",
    "yellow": "#F2CC0C",
    "orange": "#FF9830",
    "red": "#E02F44",
    "purple": "#A352CC",
    "dark-purple": "#7C2EA3",
}
WINDOW_COLOURS = {"new_snow_1h": "light-blue", "new_snow_3h": "blue", "new_snow_6h": "green"}
WINDOW_COLOURS |= {"new_snow_12h": "yellow", "new_snow_24h": "orange"}


@dataclass
class Ctx:
    """What every drawing function needs: the dashboard, its variables and the data."""

    plt: Any
    dashboard: Json
    query: Query
    selection: runner.Selection
    time_range: TimeRange
    tz: ZoneInfo

    def series(self, title: str, **one: str) -> list[Series]:
        panel, _ = runner.find_panel(self.dashboard, title)
        selection = {**self.selection, **{k: [v] for k, v in one.items()}}
        return runner.panel_series(panel, self.query, selection, self.time_range)

    def rows(self, title: str, **one: str) -> list[dict[str, Any]]:
        panel, _ = runner.find_panel(self.dashboard, title)
        selection = {**self.selection, **{k: [v] for k, v in one.items()}}
        return runner.panel_rows(panel, self.query, selection, self.time_range)

    def when(self, ms: float) -> datetime:
        return datetime.fromtimestamp(ms / 1000, self.tz)


def level_colour(name: str) -> str:
    """The colour of a threshold line named "N ..." (grafana.threshold_overrides)."""
    head = name.split(" ", 1)[0]
    return COLOURS[LEVEL_COLOURS[int(head)]] if head.isdigit() and int(head) in LEVEL_COLOURS else "grey"


def plot(ctx: Ctx, ax: Any, series: list[Series], threshold_refs: str = "", hide: str = "") -> None:
    """Series as lines; those of `threshold_refs` dashed in their level colour, `hide` unlabelled."""
    for s in series:
        if not s.points:
            continue
        x = [ctx.when(t) for t, _ in s.points]
        y = [v for _, v in s.points]
        label = None if s.ref_id in hide else s.name
        if s.ref_id in threshold_refs:
            ax.plot(x, y, linestyle="--", linewidth=1.2, color=level_colour(s.name), label=label)
        else:
            ax.plot(x, y, linewidth=1.6, label=label)


def finish(
    ctx: Ctx, ax: Any, title: str, ylabel: str, legend: bool = True, legend_loc: str = "upper left"
) -> None:
    import matplotlib.dates as mdates

    ax.set_title(title, fontsize=10, loc="left")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(alpha=0.3, linewidth=0.6)
    ax.tick_params(labelsize=7)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=ctx.tz))  # type: ignore[no-untyped-call]
    ax.set_xlim(ctx.when(ctx.time_range.start_ms), ctx.when(ctx.time_range.end_ms))
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, loc=legend_loc, framealpha=0.7)


# ------------------------------------------------------------------------------------------
# One drawing per dashboard


def draw_overview(ctx: Ctx, fig: Any) -> None:
    grid = fig.add_gridspec(2, 2, width_ratios=[1.1, 1.0])
    ax_map = fig.add_subplot(grid[:, 0])
    for row in ctx.rows("Sites by alert level"):
        if row.get("lat") is None or row.get("lon") is None:
            continue
        level = int(row.get("alert_level") or 0)
        ax_map.scatter(
            row["lon"], row["lat"], s=220, color=COLOURS[LEVEL_COLOURS[level]], edgecolor="black", zorder=3
        )
        ax_map.annotate(
            f"{row['site_name']}\nlevel {level}, {row.get('active_alerts', 0)} open",
            (row["lon"], row["lat"]),
            textcoords="offset points",
            xytext=(0, 12),
            ha="center",
            fontsize=7,
        )
    ax_map.set_title("Sites by alert level — 地点の警戒レベル (now)", fontsize=10, loc="left")
    ax_map.set_xlabel("longitude", fontsize=8)
    ax_map.set_ylabel("latitude", fontsize=8)
    ax_map.margins(0.25)
    ax_map.grid(alpha=0.3)
    ax_map.tick_params(labelsize=7)
    handles = [
        ctx.plt.Line2D([], [], marker="o", linestyle="", color=COLOURS[c], label=f"level {n}")
        for n, c in LEVEL_COLOURS.items()
    ]
    ax_map.legend(handles=handles, fontsize=7, loc="lower right")

    ax_level = fig.add_subplot(grid[0, 1])
    for s in ctx.series("Highest alert level"):
        ax_level.step(
            [ctx.when(t) for t, _ in s.points], [v for _, v in s.points], where="post", color="black"
        )
    for n, c in LEVEL_COLOURS.items():
        ax_level.axhspan(n - 0.5, n + 0.5, color=COLOURS[c], alpha=0.25)
    ax_level.set_ylim(-0.5, 5.5)
    finish(ctx, ax_level, "Highest alert level — 最高警戒レベル", "level", legend=False)

    ax_counts = fig.add_subplot(grid[1, 1])
    plot(ctx, ax_counts, ctx.series("Active alerts") + ctx.series("Gateways offline"))
    finish(ctx, ax_counts, "Active alerts, gateways offline — 発報中の警報・オフライン", "count")


def draw_rivers(ctx: Ctx, fig: Any) -> None:
    sites = ctx.selection["site"]
    axes = fig.subplots(2, len(sites), squeeze=False, gridspec_kw={"height_ratios": [2.4, 1]})
    forecasts = ctx.rows("Next stage forecast")
    for i, site in enumerate(sites):
        ax = axes[0][i]
        plot(ctx, ax, ctx.series("Water level", site=site), threshold_refs="B")
        notes = [
            f"{r['sensor']}: level {r['next_level']} at {ctx.when(r['next_level_eta']):%H:%M} "
            f"({ctx.when(r['next_level_earliest']):%H:%M}-{ctx.when(r['next_level_latest']):%H:%M}), "
            f"forecast made {ctx.when(r['time']):%H:%M}"
            for r in forecasts
            if r.get("site_name") == site and r.get("next_level_eta") is not None
        ]
        if notes:
            ax.text(0.99, 0.03, "\n".join(notes), transform=ax.transAxes, ha="right", fontsize=6.5)
        finish(ctx, ax, f"{site}: water level — 水位 (m), next stage forecast", "m")
        rate = axes[1][i]
        plot(ctx, rate, ctx.series("Rise rate", site=site))
        rate.axhline(0, color="black", linewidth=0.6)
        finish(ctx, rate, "Rise rate — 水位上昇速度 (m/h)", "m/h")


def draw_snow(ctx: Ctx, fig: Any) -> None:
    sites = ctx.selection["site"]
    axes = fig.subplots(2, len(sites), squeeze=False)
    for i, site in enumerate(sites):
        depth = axes[0][i]
        plot(ctx, depth, ctx.series("Snow depth", site=site), threshold_refs="B")
        finish(ctx, depth, f"{site}: snow depth — 積雪深 (cm)", "cm")
        new = axes[1][i]
        for s in ctx.series("New snowfall", site=site):
            window = s.name.rsplit(" ", 1)[-1]
            colour = COLOURS[WINDOW_COLOURS.get(window, "blue")]
            x = [ctx.when(t) for t, _ in s.points]
            style = {"linestyle": "--", "linewidth": 1.4} if s.ref_id == "B" else {"linewidth": 1.4}
            new.plot(x, [v for _, v in s.points], color=colour, label=s.name, **style)
        finish(ctx, new, "New snowfall — 新積雪 1/3/6/12/24 h, dispatch level (dashed)", "cm")


def draw_slopes(ctx: Ctx, fig: Any) -> None:
    site = ctx.selection["site"][0]
    axes = fig.subplots(3, 1, sharex=True)
    plot(ctx, axes[0], ctx.series("Tilt and displacement", site=site), threshold_refs="BC", hide="C")
    finish(ctx, axes[0], f"{site}: tilt — 傾斜 (deg), thresholds mirrored below zero", "deg")

    rate = ctx.series("Movement rate", site=site)
    plot(ctx, axes[1], [s for s in rate if s.ref_id == "A"])
    axes[1].axhline(0, color="black", linewidth=0.6)
    mm = axes[1].twinx()
    plot(ctx, mm, [s for s in rate if s.ref_id == "B"], threshold_refs="B")
    mm.set_ylabel("mm/day (extensometer criteria)", fontsize=7)
    mm.tick_params(labelsize=7)
    mm.legend(fontsize=6, loc="lower right", framealpha=0.7)
    finish(
        ctx, axes[1], "Movement rate — 変動速度 (arcsec/day; rate criteria in mm/day, right)", "arcsec/day"
    )

    velocity = axes[2]
    plot(ctx, velocity, ctx.series("Inverse velocity", site=site))
    velocity.set_ylim(bottom=0)
    notes = []
    for r in ctx.rows("Failure forecast"):
        if r.get("failure_time") is None:
            continue
        velocity.axvspan(
            ctx.when(r["failure_earliest"]), ctx.when(r["failure_latest"]), color="purple", alpha=0.08
        )
        velocity.axvline(ctx.when(r["failure_time"]), color="purple", linestyle="--", linewidth=1)
        notes.append(
            f"{r['sensor']} {r['kind']}: failure {ctx.when(r['failure_time']):%H:%M} "
            f"({ctx.when(r['failure_earliest']):%H:%M}-{ctx.when(r['failure_latest']):%H:%M}), "
            f"forecast made {ctx.when(r['time']):%H:%M}"
        )
    if notes:
        velocity.text(0.01, 0.95, "\n".join(notes), transform=velocity.transAxes, va="top", fontsize=7)
    finish(
        ctx,
        velocity,
        "Inverse velocity and failure forecast — 逆速度と崩壊予測時刻",
        "day/deg",
        legend_loc="center left",
    )


def draw_gateways(ctx: Ctx, fig: Any) -> None:
    axes = fig.subplots(3, 1, sharex=True)
    for s in ctx.series("Online"):
        axes[0].fill_between(
            [ctx.when(t) for t, _ in s.points],
            [v for _, v in s.points],
            step="post",
            color=COLOURS["green"],
            alpha=0.6,
            label=f"{s.name} online",
        )
    axes[0].set_ylim(0, 1.2)
    finish(ctx, axes[0], "Online — 接続状態 (1 online, 0 offline)", "online")
    plot(ctx, axes[1], ctx.series("Outbox depth"))
    age = axes[1].twinx()
    for s in ctx.series("Oldest unsent message"):
        x = [ctx.when(t) for t, _ in s.points]
        age.plot(
            x,
            [v for _, v in s.points],
            color=COLOURS["orange"],
            linewidth=0.8,
            alpha=0.7,
            label=f"{s.name} age",
        )
    age.set_ylabel("oldest unsent (s)", fontsize=7)
    age.tick_params(labelsize=7)
    age.legend(fontsize=6, loc="upper right", framealpha=0.7)
    finish(
        ctx,
        axes[1],
        "Outbox depth — 未送信メッセージ数 (left), oldest unsent message age (s, right)",
        "messages",
    )
    plot(ctx, axes[2], ctx.series("Sensor read errors"))
    finish(ctx, axes[2], "Sensor read errors since start — センサー別読取エラー", "errors")


DRAWINGS: dict[str, Callable[[Ctx, Any], None]] = {
    "bosai-overview": draw_overview,
    "bosai-rivers": draw_rivers,
    "bosai-snow": draw_snow,
    "bosai-slopes": draw_slopes,
    "bosai-gateways": draw_gateways,
}


# ------------------------------------------------------------------------------------------


def data_range(query: Query) -> TimeRange:
    """First to last reading in the database, with a minute either side."""
    first = runner.rows(query('SELECT first("q") FROM "readings"'))
    last = runner.rows(query('SELECT last("q") FROM "readings"'))
    if not first or not last:
        raise ValueError("no readings in the database: nothing to preview")
    return TimeRange(int(first[0]["time"]) - 60_000, int(last[0]["time"]) + 60_000)


def render(
    query: Query, out_dir: Path, time_range: TimeRange | None = None, tz: str = "Asia/Tokyo"
) -> list[Path]:
    """Draw every dashboard's preview into `out_dir`; returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with contextlib.suppress(ImportError):  # a bundled Japanese font: 避難判断水位, not empty boxes
        import matplotlib_fontja  # type: ignore[import-untyped]  # noqa: F401

    out_dir.mkdir(parents=True, exist_ok=True)
    tr = time_range or data_range(query)
    written = []
    for uid, dashboard in dashboards().items():
        ctx = Ctx(plt, dashboard, query, runner.resolve_variables(dashboard, query, tr), tr, ZoneInfo(tz))
        fig = plt.figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
        try:
            DRAWINGS[uid](ctx, fig)
            fig.suptitle(
                f"{dashboard['title']}  ({uid}, preview from the dashboard's queries; {tz})", fontsize=11
            )
            fig.tight_layout()
            path = out_dir / f"{uid}.png"
            fig.savefig(path, dpi=DPI)
            written.append(path)
        finally:
            plt.close(fig)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m cloud.dashboards.preview", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--influx-url", required=True, metavar="URL", help="InfluxDB with the v1 /query API")
    p.add_argument("--db", default="bosai", help="database (default: bosai)")
    p.add_argument("--token-file", type=Path, metavar="FILE", help="InfluxDB 2.x/3.x token (mode 0600)")
    p.add_argument("--out", type=Path, default=Path("docs/img/dashboards"), metavar="DIR")
    p.add_argument(
        "--start", type=datetime.fromisoformat, help="ISO 8601 with offset (default: first reading)"
    )
    p.add_argument("--end", type=datetime.fromisoformat, help="ISO 8601 with offset (default: last reading)")
    p.add_argument("--tz", default="Asia/Tokyo", help="time zone of the time axes (default: Asia/Tokyo)")
    args = p.parse_args(argv)
    token = None
    if args.token_file:
        from wire.configfile import read_secret

        token = read_secret(args.token_file, "--token-file", str(args.token_file.resolve()))
    query = runner.influx_query(args.influx_url, args.db, token)
    time_range = None
    if args.start and args.end:
        time_range = TimeRange(int(args.start.timestamp() * 1000), int(args.end.timestamp() * 1000))
    for path in render(query, args.out, time_range, args.tz):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
