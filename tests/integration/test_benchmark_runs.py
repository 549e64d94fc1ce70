"""The broker-and-database benchmarks run end to end on tiny sizes, so the commands in
BENCHMARKS.md keep working: the ingest benchmark (the bosai consumer, every point verified in a
real VictoriaMetrics), the alert-latency benchmark (every probe notified and queryable) and the
MQTT receive ceiling (paho and mqtt.js take the whole backlog from a real Mosquitto)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import mqtt_receive
from benchmarks.ingest import runner as ingest
from benchmarks.latency import runner as latency

pytestmark = pytest.mark.integration


def last_json(out: str) -> dict[str, object]:
    result = json.loads([x for x in out.splitlines() if x.startswith("{")][-1])
    assert isinstance(result, dict)
    return result


def test_ingest_benchmark_verifies_every_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--subject", "bosai", "--gateways", "2", "--sensors", "2", "--readings", "2"]
    argv += ["--duration", "3", "--warmup", "1", "--max-rate", "300", "--workdir", str(tmp_path)]
    assert ingest.main(argv) == 0
    runs = last_json(capsys.readouterr().out)["runs"]
    assert isinstance(runs, list) and len(runs) == 1
    run: dict[str, Any] = runs[0]
    assert run["verdict"]["missing"] == 0 and run["verdict"]["duplicates"] == 0
    assert run["result"]["verified"] and run["result"]["messages"] > 0


def test_latency_benchmark_notifies_every_probe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--sensors", "20", "--duration", "4", "--warmup", "1", "--probes-every", "1", "--settle", "10"]
    assert latency.main([*argv, "--workdir", str(tmp_path)]) == 0
    assert "notified" in capsys.readouterr().out


def test_mqtt_receive_benchmark_drains_the_backlog_with_both_clients(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--messages", "300", "--readings", "2", "--gateways", "3", "--repeat", "1"]
    argv += ["--subject", "paho-v5", "--subject", "mqttjs-v311"]
    assert mqtt_receive.main(argv) == 0
    runs = last_json(capsys.readouterr().out)["runs"]
    assert isinstance(runs, list)
    assert sorted(r["subject"] for r in runs) == ["mqttjs-v311", "paho-v5"]
    assert all(r["messages"] == 300 and r["messages_per_s"] > 0 for r in runs)
