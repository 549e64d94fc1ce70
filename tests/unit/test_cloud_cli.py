"""`bosai cloud` commands: config errors exit 2 with a message naming file and field."""

from __future__ import annotations

import argparse
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
