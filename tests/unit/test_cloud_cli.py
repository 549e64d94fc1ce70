"""`bosai cloud` commands: config errors exit 2 with a message naming file and field."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from cloud import cli

REPO = Path(__file__).resolve().parents[2]
REGISTRY = REPO / "deploy" / "cloud" / "registry.demo.yaml"


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="bosai")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.handler(args)
    return code


def write_config(
    tmp_path: Path,
    extra: str = "",
    mqtt: str = "",
    registry: str = str(REGISTRY),
    store: str = "{type: lpfile, path: store}",
) -> Path:
    path = tmp_path / "consumer.yaml"
    path.write_text(
        f"mqtt:\n  url: mqtt://127.0.0.1:1883\n  allow_insecure: true\n{mqtt}"
        f"registry: {registry}\nstore: {store}\n{extra}",
        encoding="utf-8",
    )
    return path


def secret(path: Path, mode: int) -> Path:
    path.write_text("s3cret\n", encoding="utf-8")
    os.chmod(path, mode)
    return path


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("cloud", "check-config", "--config", str(write_config(tmp_path))) == 0
    out = capsys.readouterr().out
    assert "bosai/v1/+/+/telemetry" in out and "7 sensors" in out and "line-protocol files" in out


def test_example_config_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    example = REPO / "deploy" / "cloud" / "consumer.example.yaml"
    assert run("cloud", "check-config", "--config", str(example), "--skip-secrets") == 0
    assert "InfluxDB" in capsys.readouterr().out


def test_shared_subscription_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, "tenant: demo-city\nshared_group: ingest\n")
    assert run("cloud", "check-config", "--config", str(cfg)) == 0
    assert "$share/ingest/bosai/v1/demo-city/+/telemetry" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"extra": "storage: {}\n"}, "consumer.yaml: field 'storage': unknown field"),
        ({"mqtt": "  keepalive: 1\n"}, "consumer.yaml: mqtt: field 'keepalive'"),
        ({"registry": "missing.yaml"}, "missing.yaml: file not found"),
        ({"store": "{type: s3, path: x}"}, "consumer.yaml: store: field 'type'"),
        ({"extra": "shared_group: g\n", "mqtt": "  protocol: '3.1.1'\n"}, "need MQTT protocol 5"),
    ],
)
def test_config_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], over: dict[str, str], message: str
) -> None:
    cfg = write_config(tmp_path, **over)
    for command in ("check-config", "run"):
        assert run("cloud", command, "--config", str(cfg)) == 2
        err = capsys.readouterr().err
        assert message in err, err


def test_plain_mqtt_needs_allow_insecure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"mqtt: {{url: 'mqtt://h:1883'}}\nregistry: {REGISTRY}\nstore: {{type: lpfile, path: s}}\n"
    )
    assert run("cloud", "run", "--config", str(cfg)) == 2
    assert "c.yaml: mqtt: field 'url': plain mqtt://" in capsys.readouterr().err


def test_password_file_must_be_private(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pw = secret(tmp_path / "pw", 0o644)
    cfg = write_config(tmp_path, mqtt=f"  username: cloud\n  password_file: {pw}\n")
    assert run("cloud", "run", "--config", str(cfg)) == 2
    err = capsys.readouterr().err
    assert "mqtt: field 'password_file'" in err and "chmod 600" in err and "s3cret" not in err
    os.chmod(pw, 0o600)
    assert run("cloud", "check-config", "--config", str(cfg)) == 0


def test_influx_token_file_must_be_private(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = secret(tmp_path / "token", 0o640)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "mqtt: {url: 'mqtt://h:1883', allow_insecure: true}\n"
        f"registry: {REGISTRY}\n"
        "store: {type: influxdb, url: 'http://127.0.0.1:1', org: o, bucket: b, token_file: token}\n",
        encoding="utf-8",
    )
    assert run("cloud", "run", "--config", str(cfg)) == 2
    assert "store: field 'token_file'" in capsys.readouterr().err
    assert run("cloud", "check-config", "--config", str(cfg)) == 2
    os.chmod(token, 0o600)
    assert run("cloud", "check-config", "--config", str(cfg)) == 0
    missing = tmp_path / "c2.yaml"
    missing.write_text(cfg.read_text().replace("token_file: token", "token_file: nope"), encoding="utf-8")
    assert run("cloud", "check-config", "--config", str(missing)) == 2
    assert "not found" in capsys.readouterr().err


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["cloud", "--help"], ["cloud", "run", "--help"], ["cloud", "check-config", "--help"]):
        with pytest.raises(SystemExit) as exc:
            run(*argv)
        assert exc.value.code == 0
    assert "--config" in capsys.readouterr().out


@pytest.mark.parametrize("which", ["consumer", "registry"])
def test_committed_json_schemas_are_up_to_date(which: str) -> None:
    from cloud.cli import schema_json

    committed = Path(__file__).resolve().parents[2] / "docs" / "schemas" / f"{which}.schema.json"
    assert committed.read_text(encoding="utf-8") == schema_json(which), (
        f"regenerate with: bosai cloud schema {which} > docs/schemas/{which}.schema.json"
    )


def test_quarantine_summary_groups_by_gateway_and_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cloud.quarantine import Quarantine

    config = write_config(tmp_path)
    assert run("cloud", "quarantine", "--config", str(config)) == 0
    assert "nothing has been rejected" in capsys.readouterr().out
    q = Quarantine(tmp_path / "quarantine.jsonl")  # the default path, next to the config
    t = 1_763_700_000.0
    for i in range(3):
        q.add(
            topic="bosai/v1/c/gw01/telemetry",
            reason="malformed",
            detail=f"bad {i}",
            received=t + i,
            payload=b"x",
        )
    q.add(
        topic="bosai/v1/c/gw02/telemetry", reason="unknown_sensor", detail="s9", received=t + 9, payload=b"{}"
    )
    q.close()
    with open(tmp_path / "quarantine.jsonl", "a") as f:
        f.write('{"torn": ')
    assert run("cloud", "quarantine", "--config", str(config)) == 0
    captured = capsys.readouterr()
    rows = captured.out.splitlines()
    assert "4 rejections" in rows[0]
    assert rows[2].split()[:3] == ["3", "c/gw01", "malformed"] and rows[2].endswith("bad 2")
    assert rows[3].split()[:3] == ["1", "c/gw02", "unknown_sensor"]
    assert "1 lines were not quarantine entries" in captured.err
    assert (
        run("cloud", "quarantine", "--config", str(config), "--json", "--since", "2025-11-21T04:40:05") == 0
    )
    groups = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(g["gateway"], g["count"]) for g in groups] == [("c/gw02", 1)]
