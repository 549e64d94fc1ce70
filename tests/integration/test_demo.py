"""`bosai demo` as a user runs it: on embedded defaults (the Quickstart), and against a real
Mosquitto and VictoriaMetrics with --broker and --influx-url.  Faster than the default speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Mosquitto, VictoriaMetrics

pytestmark = pytest.mark.integration

SPEED = "2880"  # the 12-hour storm in 15 s


def _demo(out: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "bosai.cli", "demo", "--speed", SPEED, "--output", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads((out / "summary.json").read_text(encoding="utf-8"))


def _check_accounting(summary: dict[str, Any]) -> None:
    edge, cloud, store = summary["edge"], summary["cloud"], summary["store"]
    assert summary["ok"] is True
    assert edge["readings"] > 1000
    assert edge["outbox_depth"] == 0
    assert cloud["readings_rejected"] == 0 and cloud["lost"] == 0
    assert store["distinct_points"] == edge["readings"]
    events = [(a["sensor"], a["condition"], a["category"], a["event"], a["level"]) for a in summary["alerts"]]
    # the flood reaches 氾濫危険水位
    assert ("river-radar-01", "level", "disaster", "escalated", 4) in events


def test_demo_on_embedded_defaults(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc, summary = _demo(out)
    _check_accounting(summary)
    assert "result: OK - every reading accounted for" in proc.stdout
    assert "氾濫危険水位" in proc.stdout  # alerts are printed as they fire
    html = (out / "report.html").read_text(encoding="utf-8")
    plots = sorted(p.name for p in out.glob("*.png"))
    assert len(plots) == 11 and "river-radar-01.river_level.png" in plots
    for name in plots:
        assert name in html
        assert (out / name).stat().st_size > 10_000  # a drawn figure, not an empty canvas


def test_demo_against_real_broker_and_store(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    out = tmp_path / "demo"
    proc, summary = _demo(out, "--broker", mosquitto.url, "--influx-url", victoria.url, "--no-plots")
    _check_accounting(summary)
    assert "embedded MQTT broker" not in proc.stdout
    points = victoria.wait_for_samples('{__name__="readings_q"}', summary["edge"]["readings"])
    assert points == summary["edge"]["readings"]
