"""`bosai edge check`: the checklist's formatting and JSON, option parsing, reading verdicts, and a
run against a site where nothing is reachable (no servers: ports that do not exist, a refused
broker) to show what a technician sees then, and that no secret is ever shown."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge import cli
from edge.check import (
    CheckItem,
    Status,
    _judge_readings,
    checklist_json,
    column_widths,
    exit_code,
    format_checklist,
    format_item,
    format_summary,
    parse_bauds,
    parse_units,
    run_checks,
)
from edge.config import AsciiSerialBus, ModbusRtuBus, SensorConfig, load_gateway
from edge.profiles import load_profiles
from wire.telemetry import Quality, Reading

PROFILES_DIR = Path(__file__).resolve().parents[2] / "firmware_configs" / "profiles"
SECRET = "pw-unit-test-6f1d0a9c2b7e"

ITEMS = [
    CheckItem("config", "valid", Status.PASS, "gateway gw01, tenant demo-city"),
    CheckItem("bus rs485-1", "answers at 9600 baud", Status.PASS, "units 2, 3, 4"),
    CheckItem("bus rs485-1", "unit 5", Status.FAIL, "unit 5 does not answer"),
    CheckItem("clock", "synchronized", Status.WARN, "not synchronized"),
    CheckItem("broker", "login", Status.SKIP, "not tried"),
]


def test_checklist_is_aligned_with_status_words_and_a_summary() -> None:
    text = format_checklist(ITEMS, color=False)
    lines = text.splitlines()
    assert "\033" not in text
    assert [line.split()[0] for line in lines[:5]] == ["PASS", "PASS", "FAIL", "WARN", "SKIP"]
    detail_columns = {line.index(item.detail) for line, item in zip(lines, ITEMS, strict=False)}
    assert len(detail_columns) == 1  # every detail starts in the same column
    assert lines[1].startswith("PASS  bus rs485-1  answers at 9600 baud  units 2, 3, 4")
    assert lines[5] == ""
    assert lines[6] == "2 passed, 1 failed, 1 warning, 1 skipped"


def test_colour_is_added_to_the_words_not_instead_of_them() -> None:
    line = format_item(ITEMS[2], color=True, section_width=12, name_width=6)
    assert "\033[" in line and "FAIL" in line and line.endswith("unit 5 does not answer")
    plain = format_item(ITEMS[2], color=False, section_width=12, name_width=6)
    assert plain == "FAIL  bus rs485-1   unit 5  unit 5 does not answer"


def test_summary_counts_in_words() -> None:
    passed = [ITEMS[0]] * 12
    warn = ITEMS[3]
    assert format_summary([*passed, ITEMS[2], warn], color=False) == "12 passed, 1 failed, 1 warning"
    assert format_summary([*passed, warn, warn], color=False) == "12 passed, 0 failed, 2 warnings"
    assert format_summary([], color=False) == "0 passed, 0 failed"


def test_json_has_every_item_the_counts_and_the_verdict() -> None:
    doc = json.loads(checklist_json(ITEMS))
    assert doc["ok"] is False
    assert doc["summary"] == {"passed": 2, "failed": 1, "warnings": 1, "skipped": 1}
    assert doc["items"][2] == {
        "section": "bus rs485-1",
        "name": "unit 5",
        "status": "FAIL",
        "detail": "unit 5 does not answer",
    }
    assert json.loads(checklist_json([ITEMS[0], ITEMS[3]]))["ok"] is True


def test_exit_code_is_1_only_with_a_failure() -> None:
    assert exit_code(ITEMS) == 1
    assert exit_code([i for i in ITEMS if i.status is not Status.FAIL]) == 0


def test_baud_and_unit_options() -> None:
    assert parse_bauds("9600, 19200,9600") == [9600, 19200]
    assert parse_units("1-4,10,3") == [1, 2, 3, 4, 10]
    assert parse_units("0") == [0]
    for bad in ("fast", "9600,", "12"):
        with pytest.raises(ValueError, match="not a baud rate"):
            parse_bauds(bad)
    with pytest.raises(ValueError, match="not a unit id or range"):
        parse_units("1-x")
    with pytest.raises(ValueError, match="0 to 247"):
        parse_units("240-250")
    with pytest.raises(ValueError, match="low to high"):
        parse_units("9-3")


def _reading(kind: str, value: float | None, unit: str, q: Quality = Quality.OK) -> Reading:
    return Reading("s1", kind, datetime(2025, 1, 1, tzinfo=UTC), value, unit, q)


def test_a_reading_verdict_says_value_unit_and_flag_with_a_hint() -> None:
    profiles = load_profiles(PROFILES_DIR)
    sensor = SensorConfig(id="s1", profile="pressure-level-pt", bus="rs485-1", unit_id=4)
    rtu = ModbusRtuBus(id="rs485-1", port="/dev/ttyUSB0", timeout=0.5)
    pt = profiles["pressure-level-pt"]
    ok = _judge_readings(sensor, rtu, pt, [_reading("river_level", 2.345, "m")])
    assert ok == (Status.PASS, "river_level 2.345 m; quality ok")
    status, detail = _judge_readings(sensor, rtu, pt, [_reading("river_level", None, "m", Quality.TIMEOUT)])
    assert status is Status.FAIL
    assert detail.startswith("no value (timeout): no answer from unit 4 on /dev/ttyUSB0 at 9600 baud")
    status, detail = _judge_readings(sensor, rtu, pt, [_reading("river_level", None, "m", Quality.EXCEPTION)])
    assert status is Status.FAIL and "profile pressure-level-pt" in detail
    # The device talks but flags its own value: a warning about the sensor, not the link.
    laser = profiles["laser-snow-ls"]
    mixed = [
        _reading("snow_depth", None, "cm", Quality.INVALID),
        _reading("sensor_temperature", -3.0, "degC"),
    ]
    status, detail = _judge_readings(sensor, rtu, laser, mixed)
    assert status is Status.WARN
    assert detail.startswith("snow_depth invalid, sensor_temperature -3 degC: the device answers")
    polled = profiles["inclinometer-ascii-ia"]
    line = AsciiSerialBus(id="incl", port="/dev/ttyS2", timeout=2.0)
    _, detail = _judge_readings(sensor, line, polled, [_reading("tilt_x", None, "deg", Quality.CRC)])
    assert "only garbled lines from /dev/ttyS2 at 9600 baud" in detail


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def offline_site(tmp_path: Path, *, secret_mode: int = 0o644) -> Path:
    """A gateway whose buses and broker are all unreachable, with a badly protected password."""
    secret = tmp_path / "mqtt-password"
    secret.write_text(SECRET + "\n")
    secret.chmod(secret_mode)
    raw: dict[str, Any] = {
        "tenant": "demo-city",
        "gateway": "gw01",
        "mqtt": {
            "url": f"mqtt://127.0.0.1:{_free_port()}",
            "allow_insecure": True,
            "username": "gw01",
            "password_file": str(secret),
        },
        "profiles_dir": str(PROFILES_DIR),
        "buses": [
            {"id": "plc-tcp", "type": "modbus_tcp", "host": "127.0.0.1", "port": _free_port()},
            {"id": "rs485-1", "type": "modbus_rtu", "port": str(tmp_path / "ttyUSB-missing")},
        ],
        "sensors": [
            {"id": "river-radar-01", "profile": "radar-level-rl", "bus": "plc-tcp", "unit_id": 1},
            {"id": "river-pt-02", "profile": "pressure-level-pt", "bus": "rs485-1", "unit_id": 4},
        ],
    }
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_an_unreachable_site_fails_each_step_with_what_to_do_and_never_shows_the_secret(
    tmp_path: Path,
) -> None:
    gw = load_gateway(offline_site(tmp_path))
    items = asyncio.run(run_checks(gw, broker_timeout=2))
    by_key = {(i.section, i.name): i for i in items}
    assert [i.section for i in items][:3] == ["config", "secrets", "clock"]
    assert by_key[("config", "valid")].status is Status.PASS
    secret = by_key[("secrets", "password file")]
    assert secret.status is Status.FAIL and "chmod 600" in secret.detail
    tcp = by_key[("bus plc-tcp", "connects")]
    assert tcp.status is Status.FAIL and "connection refused" in tcp.detail
    rtu = by_key[("bus rs485-1", "port opens")]
    assert rtu.status is Status.FAIL and "does not exist" in rtu.detail and "adapter plugged in" in rtu.detail
    for sensor in ("river-radar-01", "river-pt-02"):
        assert by_key[(f"sensor {sensor}", "reads")].status is Status.SKIP
    assert by_key[("broker", "DNS")].status is Status.PASS
    assert "connection refused" in by_key[("broker", "TCP connect")].detail
    assert [by_key[("broker", n)].status for n in ("TLS", "login")] == [Status.SKIP, Status.SKIP]
    assert all(SECRET not in i.detail for i in items)
    assert column_widths(gw)[0] == max(len(i.section) for i in items)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bosai")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register(sub)
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def test_command_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = offline_site(tmp_path, secret_mode=0o600)
    assert main(["edge", "check", "--config", str(path), "--json", "--no-scan", "--broker-timeout", "2"]) == 1
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["ok"] is False and doc["summary"]["failed"] >= 3
    assert SECRET not in out + err
    assert main(["edge", "check", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config error" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["edge", "check", "--config", str(path), "--scan-units", "1-300"])
    assert exc.value.code == 2


def test_text_output_streams_items_then_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = offline_site(tmp_path, secret_mode=0o600)
    assert main(["edge", "check", "--config", str(path), "--no-scan", "--broker-timeout", "2"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("on-site check of gateway gw01 (tenant demo-city)")
    assert lines[1].startswith("PASS  config ")
    assert lines[-2] == ""
    assert lines[-1].split(", ")[1] == "3 failed"  # plc-tcp, rs485-1, broker TCP


def test_help_says_to_stop_the_agent(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["edge", "check", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Run it with the agent stopped" in text and "reported as busy" in text
