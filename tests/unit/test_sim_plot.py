"""`bosai sim plot`: the ground truth of a scenario drawn as a PNG, from the scenario or a truth file."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulators.plot import TruthError, add_plot_parser, plot_truth
from simulators.truth import write_truth

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOUR = 3600.0


def sim_plot(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_plot_parser(parser.add_subparsers())
    args = parser.parse_args(["plot", *argv])
    code: int = args.handler(args)
    return code


def assert_png(path: Path, min_bytes: int = 20_000) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert min_bytes < len(data) < 5_000_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert 1000 < width < 2000 and height > 800  # one column of panels, taller with more of them


def synthetic_truth(start: float = 0.0) -> list[dict[str, Any]]:
    """Four hours of a river rising through two levels in the rain, a snow site, a slope creeping
    towards failure at 4.1 h, a spike and a dropout, and an uplink loss."""
    step, duration, tf = 60.0, 4 * HOUR, 4.1 * HOUR
    times = [k * step for k in range(int(duration / step) + 1)]

    def stage(t: float) -> float:
        return 1.0 + 2.0 * max(0.0, min(1.0, (t - HOUR) / (2 * HOUR)))

    rows: list[dict[str, Any]] = [
        {"type": "scenario", "name": "synthetic", "description": "a test", "start": start}
        | {"duration": duration, "seed": 1, "step": step}
    ]
    for t in times:
        rows.append(value("gauge-1", "river_level", "river-site", start + t, stage(t), "m"))
        rows.append(value("snow-1", "snow_depth", "snow-site", start + t, 40 + 5 * t / HOUR, "cm"))
        rows.append(value("incl-1", "tilt_x", "slope-site", start + t, 0.5 * (tf / (tf - t) - 1), "deg"))
        rows.append(value("incl-1", "sensor_temperature", "slope-site", start + t, -3.0, "degC"))
        rows.append(
            {"type": "forcing", "signal": "rain", "name": "rain", "t": start + t}
            | {"value": 10.0 if t < 2 * HOUR else 0.0, "unit": "mm/h"}
        )
    levels = ((1, 2.0, "standby", "水防団待機水位"), (2, 2.6, "caution", "氾濫注意水位"))
    for level, threshold, name, name_ja in levels:
        t_up = HOUR + (threshold - 1.0) / 2.0 * 2 * HOUR
        rows.append(
            {"type": "crossing", "device": "gauge-1", "kind": "river_level", "site": "river-site"}
            | {"level": level, "name": name, "name_ja": name_ja, "threshold": threshold}
            | {"direction": "up", "t": start + t_up}
        )
    rows.append(
        {"type": "crossing", "device": "incl-1", "kind": "tilt_x", "site": "slope-site", "level": 1}
        | {"name": "movement", "name_ja": "変動注意", "threshold": 1.0, "direction": "up"}
        | {"t": start + 2.7 * HOUR}
    )
    for h in range(1, 5):
        rows.append(
            {"type": "snowfall", "device": "snow-1", "kind": "snow_depth", "site": "snow-site"}
            | {"t": start + h * HOUR, "fallen_1h": 6.0, "new_1h": 5.0, "new_3h": 15.0, "new_24h": 5.0 * h}
        )
    failure = {"type": "failure", "device": "incl-1", "kind": "tilt_x", "site": "slope-site"}
    rows.append(failure | {"t": start + tf})
    rows.append(
        {"type": "fault", "fault": "spike", "device": "gauge-1", "kind": "river_level"}
        | {"start": start + 1.5 * HOUR, "end": start + 1.5 * HOUR + 60, "magnitude": 1.0, "note": "debris"}
    )
    rows.append(
        {"type": "fault", "fault": "dropout", "device": "snow-1", "kind": None}
        | {"start": start + HOUR, "end": start + 2 * HOUR, "probability": 1.0, "note": ""}
    )
    rows.append(
        {"type": "fault", "fault": "link_loss", "device": None, "kind": None}
        | {"start": start + 3 * HOUR, "end": start + 3.5 * HOUR, "mode": "reset", "note": "dead zone"}
    )
    return rows


def value(device: str, kind: str, site: str, t: float, v: float, unit: str) -> dict[str, Any]:
    return {"type": "value", "device": device, "kind": kind, "site": site, "t": t, "value": v, "unit": unit}


def test_demo_storm_from_the_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "storm.png"
    assert sim_plot("--scenario", "demo-storm", "--out", str(out)) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert_png(out, min_bytes=100_000)


def test_default_out_is_named_after_the_scenario(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = write_truth(iter(synthetic_truth()), tmp_path / "truth.jsonl")
    monkeypatch.chdir(tmp_path)
    assert sim_plot("--truth", str(truth)) == 0
    assert capsys.readouterr().out.strip() == "synthetic-truth.png"
    assert_png(tmp_path / "synthetic-truth.png")


def test_synthetic_truth_with_faults_and_crossings(tmp_path: Path) -> None:
    out = plot_truth(synthetic_truth(), tmp_path / "deep" / "synthetic.png")
    assert out == tmp_path / "deep" / "synthetic.png"
    assert_png(out)


def test_truth_file_of_a_run_in_epoch_seconds(tmp_path: Path) -> None:
    """A truth written by `bosai sim run` has clock times: hours count from the scenario record."""
    truth = write_truth(iter(synthetic_truth(start=1_738_400_000.0)), tmp_path / "truth.jsonl")
    out = tmp_path / "run.png"
    assert sim_plot("--truth", str(truth), "--out", str(out)) == 0
    assert_png(out)


def test_records_without_values_or_fields_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TruthError, match="no value records"):
        plot_truth([{"type": "scenario", "name": "x", "start": 0.0, "duration": 60.0}], tmp_path / "x.png")
    with pytest.raises(TruthError, match="'value'"):
        plot_truth([{"type": "value", "device": "d", "kind": "river_level", "t": 0.0}], tmp_path / "x.png")
    with pytest.raises(TruthError, match="expected form"):
        plot_truth(
            [{"type": "value", "device": "d", "kind": "k", "t": "noon", "value": 1}], tmp_path / "y.png"
        )
    assert not (tmp_path / "y.png").exists()
    assert not (tmp_path / "x.png").exists()


def test_unknown_scenario_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_plot("--scenario", "no-such-storm", "--out", str(tmp_path / "x.png")) == 2
    err = capsys.readouterr().err
    assert "no-such-storm" in err and "demo-storm" in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()


def test_bad_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ndescription: y\nduration: -1\n")
    assert sim_plot("--scenario", str(broken)) == 2
    assert "broken.yaml" in capsys.readouterr().err

    assert sim_plot("--truth", str(tmp_path / "missing.jsonl")) == 2
    assert "no truth file" in capsys.readouterr().err

    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text(json.dumps({"type": "scenario", "name": "x", "start": 0}) + "\nnot json\n")
    assert sim_plot("--truth", str(garbage)) == 2
    assert "garbage.jsonl: line 2" in capsys.readouterr().err

    other = write_truth(iter(synthetic_truth()), tmp_path / "truth.jsonl")
    assert sim_plot("--truth", str(other), "--scenario", "demo-storm") == 2
    assert "'synthetic', not of 'demo-storm'" in capsys.readouterr().err


def test_help_text() -> None:
    parser = argparse.ArgumentParser(prog="bosai sim")
    add_plot_parser(parser.add_subparsers())
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["plot", "--help"])
    assert exc.value.code == 0


def test_the_cli_imports_no_matplotlib() -> None:
    """`bosai` builds every parser at startup: drawing's heavy imports wait for `plot` itself."""
    code = "import sys, simulators.plot; assert 'matplotlib' not in sys.modules, 'imported matplotlib'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
