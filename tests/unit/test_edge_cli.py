"""`bosai edge` command line: config errors exit 2 naming file, entity and field."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import yaml

from edge import cli
from edge.config import config_hash, load_gateway
from wire.configfile import ConfigError
from wire.mqttconf import read_password

PROFILES = Path(__file__).resolve().parents[2] / "firmware_configs" / "profiles"


def base_config() -> dict[str, object]:
    return {
        "tenant": "demo-city",
        "gateway": "gw01",
        "mqtt": {"url": "mqtt://127.0.0.1:1883", "allow_insecure": True},
        "profiles_dir": str(PROFILES),
        "buses": [{"id": "rs485-1", "type": "modbus_rtu", "port": "/dev/null"}],
        "sensors": [
            {"id": "river-pt-02", "profile": "pressure-level-pt", "bus": "rs485-1", "unit_id": 4},
            {
                "id": "snow-laser-01",
                "profile": "laser-snow-ls",
                "bus": "rs485-1",
                "unit_id": 2,
                "mounting_height": 3.0,
            },
        ],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bosai")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register(sub)
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def write(tmp_path: Path, raw: object, text: str | None = None) -> Path:
    path = tmp_path / "gw.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_validate_ok_prints_policies_and_config_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = base_config()
    sensors = raw["sensors"]
    assert isinstance(sensors, list)
    sensors[0]["interval"] = 600
    sensors[0]["report"] = {
        "deadband": 0.02,
        "heartbeat": 86400,
        "fast": {"level": 2.0, "hysteresis": 0.05, "rate": 0.3, "rate_window": 1800, "interval": 120},
    }
    path = write(tmp_path, raw)
    assert main(["edge", "validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and f"config hash {config_hash(load_gateway(path))}" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    want = (
        "on change >= 0.02; at least every 86400 s; "
        "fast (every 120 s, all sent) when value >= 2 or rises >= 0.3/h"
    )
    assert want in lines["river-pt-02"]
    assert lines["snow-laser-01"].endswith("every sample")
    # the first release's spelling still works
    assert main(["edge", "check-config", "--config", str(path)]) == 0


def test_config_hash_ignores_comments_but_not_settings(tmp_path: Path) -> None:
    path = write(tmp_path, base_config())
    h = config_hash(load_gateway(path))
    path.write_text("# a comment\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    assert config_hash(load_gateway(path)) == h
    raw = base_config()
    raw["sensors"][0]["interval"] = 30  # type: ignore[index]
    assert config_hash(load_gateway(write(tmp_path, raw))) != h


@pytest.mark.parametrize(
    ("report", "field", "message"),
    [
        ({"fast": {"kind": "nope", "level": 1.0, "interval": 10}}, "report.fast.kind", "no point 'nope'"),
        ({"fast": {"interval": 10}}, "report.fast", "level"),
        ({"fast": {"level": 1.0, "interval": 600}}, "report.fast.interval", "must not be longer"),
        ({"heartbeat": 5}, "report.heartbeat", "at least"),
    ],
)
def test_report_policy_errors_name_the_sensor_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], report: dict[str, object], field: str, message: str
) -> None:
    raw = base_config()
    raw["sensors"][0]["interval"] = 60  # type: ignore[index]
    raw["sensors"][0]["report"] = report  # type: ignore[index]
    path = write(tmp_path, raw)
    assert main(["edge", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: sensors[0] (id 'river-pt-02'): field '{field}'" in err and message in err, err


def test_example_gateway_config_loads() -> None:
    gw = load_gateway(PROFILES.parent / "gateways" / "demo-city-gw01.yaml")
    assert len(gw.config.sensors) == 6


def mutate(raw: dict[str, object], dotted: str, value: object) -> None:
    node: object = raw
    keys = dotted.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]  # type: ignore[index]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        assert isinstance(node, dict)
        node[last] = value


@pytest.mark.parametrize(
    ("dotted", "value", "expected"),
    [
        ("sensors.0.unit_idd", 3, ["sensors[0] (id 'river-pt-02')", "field 'unit_idd'", "unknown field"]),
        ("sensors.1.unit_id", "two", ["sensors[1] (id 'snow-laser-01')", "field 'unit_id'", "Expected `int"]),
        (
            "sensors.0.bus",
            "rs485-9",
            ["sensors[0] (id 'river-pt-02')", "field 'bus'", "no bus with id 'rs485-9'"],
        ),
        (
            "sensors.1.profile",
            "no-such-model",
            ["sensors[1] (id 'snow-laser-01')", "field 'profile'", "no profile 'no-such-model'"],
        ),
        ("buses.0.timeout", -1, ["buses[0] (id 'rs485-1')", "field 'timeout'"]),
        ("sensors.1.id", "river-pt-02", ["sensors[1] (id 'river-pt-02')", "field 'id'", "duplicate id"]),
    ],
)
def test_config_errors_exit_2_with_file_entity_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dotted: str, value: object, expected: list[str]
) -> None:
    raw = base_config()
    mutate(raw, dotted, value)
    path = write(tmp_path, raw)
    for argv in (
        ["edge", "run", "--config", str(path), "--once"],
        ["edge", "check-config", "--config", str(path)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert str(path) in err
        for part in expected:
            assert part in err, (part, err)


def test_malformed_yaml_exit_2_with_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, None, text="tenant: demo\nbuses: [\n  - id: x\n")
    assert main(["edge", "run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "invalid YAML" in err and "line" in err


def test_missing_config_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["edge", "check-config", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_password_file_readable_by_others_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret\n")
    os.chmod(secret, 0o644)
    raw = base_config()
    mutate(raw, "mqtt.username", "gw01")
    mutate(raw, "mqtt.password_file", "mqtt-password")  # relative to the config file
    path = write(tmp_path, raw)

    gw = load_gateway(path)
    with pytest.raises(ConfigError) as exc:
        read_password(gw.config.mqtt, gw.path)
    message = str(exc.value)
    assert str(path) in message and "password_file" in message and "chmod 600" in message
    assert "s3cret" not in message

    assert main(["edge", "check-config", "--config", str(path)]) == 2
    assert "chmod 600" in capsys.readouterr().err
    # `run` refuses before connecting (the outbox is on tmp_path; nothing is listening anyway)
    assert main(["edge", "run", "--config", str(path), "--outbox", str(tmp_path / "o.sqlite")]) == 2

    os.chmod(secret, 0o600)
    assert read_password(gw.config.mqtt, gw.path) == "s3cret"
    assert main(["edge", "check-config", "--config", str(path)]) == 0


def test_password_file_missing_or_empty(tmp_path: Path) -> None:
    raw = base_config()
    mutate(raw, "mqtt.password_file", str(tmp_path / "missing"))
    gw = load_gateway(write(tmp_path, raw))
    with pytest.raises(ConfigError, match="does not exist"):
        read_password(gw.config.mqtt, gw.path)
    empty = tmp_path / "missing"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(ConfigError, match="empty"):
        read_password(gw.config.mqtt, gw.path)


def test_once_prints_a_table_and_exits_1_when_sensors_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = base_config()
    # nothing listens on this TCP port: every sensor fails with `error`, fast
    raw["buses"] = [{"id": "rs485-1", "type": "modbus_tcp", "host": "127.0.0.1", "port": 9, "timeout": 0.3}]
    path = write(tmp_path, raw)
    assert main(["edge", "run", "--config", str(path), "--once"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["SENSOR", "KIND", "VALUE", "UNIT", "QUALITY"]
    assert out[1].split() == ["river-pt-02", "river_level", "m", "error"]
    assert len(out) == 1 + 3  # river level, snow depth, sensor temperature


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["edge", "--help"], ["edge", "run", "--help"], ["edge", "validate", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    assert "--outbox" in capsys.readouterr().out


def test_outbox_summary_while_another_connection_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge.outbox import Outbox

    raw = base_config()
    raw["outbox"] = {"path": "box.sqlite"}
    path = write(tmp_path, raw)
    assert main(["edge", "outbox", "--config", str(path)]) == 0
    assert "no outbox yet" in capsys.readouterr().out
    box = Outbox(tmp_path / "box.sqlite")  # the agent, still running
    box.stage([b'{"n":1}'], urgent=True, created=1.0)
    box.seal(lambda seq, rs: b"x" * 10, max_readings=10, max_bytes=1000, created=1.0)
    box.stage([b'{"n":2}'], urgent=False, created=2.0)
    assert main(["edge", "outbox", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 messages (1 urgent), 10 bytes" in out and "1 readings" in out and "next sequence no.   2" in out
    box.close()
