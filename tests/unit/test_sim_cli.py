"""`bosai sim` command line: list, a short run, config errors, Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from simulators import cli

RUN_CLI = (
    "import argparse, sys\n"
    "from simulators import cli\n"
    "p = argparse.ArgumentParser(); cli.register(p.add_subparsers())\n"
    "a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(a))\n"
)


def bosai_sim(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["sim", *argv])
    code: int = args.handler(args)
    return code


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert bosai_sim("list") == 0
    out = capsys.readouterr().out
    assert "demo-storm" in out and "quiet-day" in out and "12.0 h" in out


def test_short_run_prints_endpoints_and_writes_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bosai_sim(
        "run", "--speed", "3600", "--duration", "600", "--workdir", str(tmp_path), "--start-at", "3600"
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "plc-tcp" in out and "port:" in out and str(tmp_path / "dev" / "rs485-1") in out
    assert (tmp_path / "truth.jsonl").stat().st_size > 0


def test_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bosai_sim("run", "--scenario", "no-such-storm") == 2
    assert "demo-storm" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ndescription: y\nduration: -1\n")
    assert bosai_sim("run", "--scenario", str(broken)) == 2
    assert "broken.yaml: field 'duration'" in capsys.readouterr().err


def test_ctrl_c_exits_130(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, "sim", "run", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Ctrl-C" in line:
            break
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=10) == 130
    assert (tmp_path / "truth.jsonl").exists() and not (tmp_path / "dev" / "rs485-1").exists()


def test_fault_scenario_prints_its_schedule_and_uplink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = tmp_path / "elsewhere" / "truth.jsonl"
    code = bosai_sim(
        "run", "--scenario", "sensor-faults", "--speed", "3600", "--duration", "60",
        "--workdir", str(tmp_path), "--truth", str(truth), "--broker", "mqtt://127.0.0.1:1",
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "uplink" in out and "-> mqtt://127.0.0.1:1" in out
    assert "Faults (scenario time):" in out and "bad_crc" in out and "gateway uplink" in out
    assert truth.stat().st_size > 0 and str(truth) in out


def test_bad_broker_for_an_uplink_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert bosai_sim("run", "--scenario", "sensor-faults", "--broker", "http://x") == 2
    assert "--broker 'http://x'" in capsys.readouterr().err


def test_list_counts_faults(capsys: pytest.CaptureFixture[str]) -> None:
    assert bosai_sim("list") == 0
    out = capsys.readouterr().out
    assert "sensor-faults" in out and "[13 faults]" in out and "typhoon-flood" in out
