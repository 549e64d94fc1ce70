"""The demo report: one plot per sensor series with threshold lines and alert markers, and an
HTML page that a person can open.  Plots are drawn from what the store holds, not from what the
simulators meant to send, so a reading lost on the way would show as a gap.
"""

from __future__ import annotations

import contextlib
import html
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cloud.registry import Registry, load_registry

JST = timezone(timedelta(hours=9))
LEVEL_COLOURS = {1: "#f2c200", 2: "#f08c00", 3: "#e03131", 4: "#9c36b5", 5: "#212529"}
STATE_MARKERS = {"raised": "^", "escalated": "^", "deescalated": "v", "resolved": "o"}


def _series_from_store(
    store_dir: Path,
) -> tuple[dict[tuple[str, str], list[tuple[int, float | None, int]]], list[Any]]:
    from cloud.writers.lpfile import read_lp_dir

    series: dict[tuple[str, str], list[tuple[int, float | None, int]]] = defaultdict(list)
    alerts: list[Any] = []
    for line in read_lp_dir(store_dir):
        if line.measurement == "readings":
            value = line.fields.get("value")
            q = int(line.fields.get("q", 0))
            series[(line.tags["sensor"], line.tags["kind"])].append(
                (line.ts_ms, float(value) if value is not None else None, q)
            )
        elif line.measurement == "alerts":
            alerts.append(line)
    for points in series.values():
        points.sort()
    return series, alerts


def write_report(out: Path, store_dir: Path, registry_path: Path, summary: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    with contextlib.suppress(ImportError):  # a bundled Japanese font: 避難判断水位, not empty boxes
        import matplotlib_fontja  # type: ignore[import-untyped]  # noqa: F401

    registry = load_registry(registry_path)
    series, alert_lines = _series_from_store(store_dir)
    plots: list[tuple[str, str]] = []
    for (sensor_id, kind), points in sorted(series.items()):
        name = f"{sensor_id}.{kind}.png"
        _plot_series(plt, mdates, registry, sensor_id, kind, points, alert_lines, out / name)
        plots.append((f"{sensor_id} / {kind}", name))
    index = out / "report.html"
    index.write_text(_html(summary, plots), encoding="utf-8")
    return index


def _plot_series(
    plt: Any,
    mdates: Any,
    registry: Registry,
    sensor_id: str,
    kind: str,
    points: list[tuple[int, float | None, int]],
    alert_lines: list[Any],
    path: Path,
) -> None:
    tenant_sensor = next((s for s in registry.data.sensors if s.id == sensor_id), None)
    channel = tenant_sensor.channels.get(kind) if tenant_sensor else None
    site = registry.site_of(tenant_sensor).name if tenant_sensor else ""
    times = [datetime.fromtimestamp(t / 1000, JST) for t, _, _ in points]
    values = [v if v is not None else float("nan") for _, v, _ in points]

    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    ax.plot(times, values, color="#1c7ed6", linewidth=1.4, label=kind)
    bad = [(t, q) for t, (_, v, q) in zip(times, points, strict=True) if v is None]
    if bad:
        ymin = min((v for v in values if v == v), default=0.0)
        ax.scatter(
            [t for t, _ in bad],
            [ymin] * len(bad),
            marker="x",
            color="#868e96",
            s=18,
            label=f"no value (quality flag) x{len(bad)}",
        )
    if channel is not None:
        for th in channel.thresholds:
            colour = LEVEL_COLOURS.get(th.level, "#495057")
            label = f"L{th.level} {th.value:g} {channel.unit} {th.name_ja} / {th.name}"
            for sign in (1, -1) if channel.direction == "absolute" else (1,):
                ax.axhline(
                    sign * th.value,
                    color=colour,
                    linestyle="--",
                    linewidth=0.9,
                    label=label if sign == 1 else None,
                )
    for a in alert_lines:
        if a.tags.get("sensor") == sensor_id and a.tags.get("kind") == kind:
            t = datetime.fromtimestamp(a.ts_ms / 1000, JST)
            if a.tags.get("condition", "level") != "level":
                continue  # rate, snow and failure alerts have values in other units than the series
            state = a.tags.get("event", "raised")
            colour = LEVEL_COLOURS.get(int(a.fields.get("level", 0)), "#2f9e44")
            ax.scatter(
                [t],
                [float(a.fields.get("value", 0.0))],
                marker=STATE_MARKERS.get(state, "o"),
                s=70,
                color=colour,
                edgecolors="black",
                zorder=5,
            )
    unit = channel.unit if channel else ""
    ax.set_title(f"{site}  {sensor_id}  {kind}")
    ax.set_ylabel(unit)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=JST))
    ax.set_xlabel("JST (sample time at the edge)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=7, framealpha=0.85)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _html(summary: dict[str, Any], plots: list[tuple[str, str]]) -> str:
    e, c, st = summary["edge"], summary["cloud"], summary["store"]
    rows = "".join(
        f"<tr><td>{html.escape(a['ts'])}</td><td>{html.escape(a['event'])}</td><td>{a['level']}</td>"
        f"<td>{html.escape(a['reason'])}</td></tr>"
        for a in summary["alerts"]
    )
    figures = "".join(
        f"<figure><img src='{html.escape(name)}' alt='{html.escape(title)}'>"
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
        for title, name in plots
    )
    verdict = "every reading accounted for" if summary["ok"] else "PROBLEM: see summary.json"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bosai demo report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1000px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:90%}} img{{max-width:100%}}</style></head>
<body><h1>bosai demo report</h1>
<p><b>Result:</b> {verdict}.</p>
<ul>
<li>Edge: {e["readings"]} readings ({e["readings_bad"]} with a quality flag),
 {e["messages_acked"]} messages acknowledged</li>
<li>Cloud: {c["messages"]} messages, {c["readings_accepted"]} readings accepted,
 {c["readings_rejected"]} rejected, {c["lost"]} lost, {c["duplicated"]} duplicated</li>
<li>Store: {st["distinct_points"]} distinct points</li>
</ul>
<h2>Alerts</h2><table><tr><th>sample time</th><th>event</th><th>level</th><th>reason</th></tr>{rows}</table>
<h2>Series</h2>{figures}
</body></html>
"""
