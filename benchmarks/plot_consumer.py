"""One figure of the consumer's benchmarks, drawn from the JSON lines the benchmarks wrote (`--json`).

    .venv/bin/python -m benchmarks.plot_consumer benchmarks/results/2026-12-06 \\
        --out docs/img/benchmarks/consumer-2026-12-06.png

The folder holds the files of one session's runs, named as in benchmarks/results/2026-12-06:
ingest-10-readings.json, ingest-1-reading.json (benchmarks.ingest with Node-RED),
consumer-cpu-{10-readings,1-reading}-{before,now,now-mypyc}.json (benchmarks.consumer_cpu),
scaling-shards.json, scaling-shared.json (benchmarks.ingest --consumers) and
latency-half-saturation.json (benchmarks.latency).  Four panels: messages/s against the peer,
CPU per message before and after, messages/s over consumer processes, and the distribution of
alert latency.

With `--ceilings`, the figure of issue 9's throughput targets against the ceilings instead:

    .venv/bin/python -m benchmarks.plot_consumer --ceilings benchmarks/results/2026-12-06-ceilings \\
        --out docs/img/benchmarks/ceilings-2026-12-06.png

from mqtt-receive-{10-readings,1-reading}.json (benchmarks.mqtt_receive),
ingest-{10-readings,1-reading}.json and consumer-cpu-{10-readings,1-reading}.json of one session.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

BOSAI, PEER, GREY = "#1f77b4", "#ff7f0e", "#999999"


def load(folder: Path, name: str) -> dict[str, Any]:
    data = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def ingest_panel(ax: Axes, folder: Path) -> None:
    shapes = [("10-readings", "10 readings / message"), ("1-reading", "1 reading / message")]
    width = 0.38
    for i, (name, _) in enumerate(shapes):
        runs = {r["result"]["subject"]: r["result"] for r in load(folder, f"ingest-{name}")["runs"]}
        for offset, subject, colour in ((-width / 2, "bosai", BOSAI), (width / 2, "nodered", PEER)):
            rate = runs[subject]["messages_per_s"]
            ax.bar(i + offset, rate, width, color=colour, label=subject if i == 0 else None)
            ax.annotate(f"{rate:,.0f}", (i + offset, rate), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(shapes)), [label for _, label in shapes])
    ax.set_ylabel("messages/s at saturation")
    ax.set_title("Ingest, same messages, same run\n(bosai validates and detects; Node-RED only maps)")
    ax.legend(["bosai consumer", "Node-RED 4.1 flow"], loc="upper left")


def cpu_panel(ax: Axes, folder: Path) -> None:
    trees = [
        ("before", "aebdd8c\n(before)", GREY),
        ("now", "now", BOSAI),
        ("now-mypyc", "now, mypyc\n(experiment)", "#2ca02c"),
    ]
    width = 0.27
    for i, shape in enumerate(("10-readings", "1-reading")):
        for k, (tree, label, colour) in enumerate(trees):
            stage = load(folder, f"consumer-cpu-{shape}-{tree}")["stages"]["consumer"]
            us = stage["us_per_reading"]
            x = i + (k - 1) * width
            ax.bar(x, us, width, color=colour, label=label if i == 0 else None)
            ax.annotate(f"{us:,.0f}", (x, us), ha="center", va="bottom", fontsize=8)
    ax.set_xticks([0, 1], ["10 readings / message", "1 reading / message"])
    ax.set_ylabel("worker CPU, µs per reading")
    ax.set_title("Where the time went: one core, no broker\n(benchmarks.consumer_cpu)")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.3)  # room for the legend above the bars
    ax.legend(loc="upper center", fontsize=8, ncol=3)


def scaling_panel(ax: Axes, folder: Path) -> None:
    for name, label, colour in (
        ("scaling-shards", "shards", BOSAI),
        ("scaling-shared", "shared subscription", GREY),
    ):
        rows = sorted(
            (r["result"]["consumers"], r["result"]["messages_per_s"]) for r in load(folder, name)["runs"]
        )
        ax.plot([n for n, _ in rows], [m for _, m in rows], "o-", color=colour, label=label)
    ax.set_xticks([1, 2, 4])
    ax.set_xlabel("consumer processes (2-core machine, shared with broker and database)")
    ax.set_ylabel("messages/s (10 readings each)")
    ax.set_ylim(bottom=0)
    ax.set_title("Scaling over processes")
    ax.legend(loc="lower right")


def latency_panel(ax: Axes, folder: Path) -> None:
    run = load(folder, "latency-half-saturation")["runs"][0]
    each = sorted(run["notify_each_ms"])
    share = [(k + 1) / len(each) for k in range(len(each))]
    ax.step(each, share, where="post", color=BOSAI)
    ax.axvline(250, color="#d62728", linestyle="--", label="target p99 250 ms")
    p99 = run["notify_ms"]["p99"]
    ax.axvline(p99, color=BOSAI, linestyle=":", label=f"p99 {p99:.0f} ms")
    ax.set_xlabel("publish -> webhook notification, ms")
    ax.set_ylabel("share of threshold crossings")
    ax.set_title(
        f"Alert latency at half of saturation\n({run['messages_per_s']:.0f} msg/s of 10 readings, "
        f"{run['notified']}/{run['probes']} notified)"
    )
    ax.legend(loc="lower right")


TARGET_MSG_S = 20_000  # issue 9: one consumer process, validation and detection on
TARGET_PEER_RATIO = 2.0  # issue 9: at least twice the Node-RED flow's rate on the same run


def ceilings_panel(ax: Axes, folder: Path, shape: str, title: str) -> None:
    """Messages/s on a log scale: the two MQTT clients doing nothing, the peer, the consumer's worker
    without MQTT, the consumer live; the targets as lines."""
    receive = load(folder, f"mqtt-receive-{shape}")["best"]
    ingest = {r["result"]["subject"]: r["result"] for r in load(folder, f"ingest-{shape}")["runs"]}
    worker = load(folder, f"consumer-cpu-{shape}")["stages"]["consumer"]
    peer = ingest["nodered"]["messages_per_s"]
    bars = [
        ("mqtt.js, receive only\n(Node-RED's client)", receive["mqttjs-v5"]["messages_per_s"], PEER),
        ("paho, receive only\n(the consumer's client)", receive["paho-v5"]["messages_per_s"], BOSAI),
        ("Node-RED flow\n(parse, map, write)", peer, PEER),
        ("bosai worker, no MQTT\n(validate, detect, lines)", worker["messages_per_s"], GREY),
        ("bosai consumer, live\n(everything)", ingest["bosai"]["messages_per_s"], BOSAI),
    ]
    ys = range(len(bars))[::-1]
    for y, (_, rate, colour) in zip(ys, bars, strict=True):
        ax.barh(y, rate, color=colour, height=0.6)
        ax.annotate(f" {rate:,.0f}", (rate, y), va="center", fontsize=8)
    ax.set_yticks(list(ys), [label for label, _, _ in bars], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(300, 300_000)
    ax.axvline(TARGET_MSG_S, color="#d62728", linestyle="--", label=f"target {TARGET_MSG_S:,} msg/s")
    ax.axvline(
        TARGET_PEER_RATIO * peer,
        color=PEER,
        linestyle=":",
        label=f"target {TARGET_PEER_RATIO:g}x Node-RED ({TARGET_PEER_RATIO * peer:,.0f})",
    )
    ax.set_xlabel("messages/s (log scale)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)


def ceilings_figure(folder: Path) -> Figure:
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8))
    ceilings_panel(axes[0], folder, "10-readings", "10 readings per message")
    ceilings_panel(axes[1], folder, "1-reading", "1 reading per message")
    fig.suptitle(
        f"Issue 9's throughput targets against the ceilings, {folder.name} (2-core machine)", fontsize=12
    )
    fig.tight_layout()
    return fig


def consumer_figure(folder: Path) -> Figure:
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    ingest_panel(axes[0][0], folder)
    cpu_panel(axes[0][1], folder)
    scaling_panel(axes[1][0], folder)
    latency_panel(axes[1][1], folder)
    fig.suptitle(f"bosai cloud consumer, {folder.name}", fontsize=13)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.plot_consumer",
        description="Draw the consumer benchmarks' results (JSON lines in FOLDER) into one PNG.",
    )
    parser.add_argument("folder", type=Path, help="e.g. benchmarks/results/2026-12-06")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument(
        "--ceilings", action="store_true", help="draw the targets against the ceilings (see the docstring)"
    )
    args = parser.parse_args(argv)
    # Matplotlib's own font, whatever a Japanese font package imported earlier made the default
    # (IPAexGothic has no µ, which these labels use).
    with plt.rc_context({"font.family": "DejaVu Sans"}):
        fig = ceilings_figure(args.folder) if args.ceilings else consumer_figure(args.folder)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out, dpi=110)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
