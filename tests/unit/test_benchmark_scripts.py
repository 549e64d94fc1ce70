"""The in-process benchmarks run end to end on tiny sizes (so the scripts in BENCHMARKS.md do not
rot): consumer CPU by stage, detection memory per sensor, and the figure drawn from the
committed results (the consumer's and the ceilings')."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import consumer_cpu, detect_memory, plot_consumer


def last_json(out: str) -> dict[str, object]:
    line = [x for x in out.splitlines() if x.startswith("{")][-1]
    result = json.loads(line)
    assert isinstance(result, dict)
    return result


def test_consumer_cpu_measures_both_stages_with_nothing_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--gateways", "2", "--sensors", "3", "--readings", "3", "--warmup", "20", "--messages", "10"]
    assert consumer_cpu.main([*argv, "--repeat", "1"]) == 0
    result = last_json(capsys.readouterr().out)
    stages = result["stages"]
    assert isinstance(stages, dict) and set(stages) == {"ingest", "consumer"}
    assert result["readings"] == 2 * 10 * 3
    # Every reading is stored, plus a detections point now and then.
    assert 1.0 <= float(str(result["lines_per_reading"])) < 2.0


def test_detect_memory_reports_bytes_per_sensor(capsys: pytest.CaptureFixture[str]) -> None:
    assert detect_memory.main(["--sensors", "10,20", "--samples", "30"]) == 0
    out = capsys.readouterr().out
    assert "bytes per sensor" in out
    last_json(out)


def test_the_committed_results_draw_the_figure(tmp_path: Path) -> None:
    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "2026-12-06"
    out = tmp_path / "consumer.png"
    assert plot_consumer.main([str(results), "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def test_the_committed_ceiling_results_draw_the_ceilings_figure(tmp_path: Path) -> None:
    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "2026-12-06-ceilings"
    out = tmp_path / "ceilings.png"
    assert plot_consumer.main(["--ceilings", str(results), "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
