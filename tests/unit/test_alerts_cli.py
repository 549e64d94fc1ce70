"""`bosai replay` over a CSV and `bosai alerts list|ack|resolve|silence` on a consumer's store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bosai.cli import main
from cloud.alerts.manager import AlertManager
from cloud.alerts.store import AlertStore
from cloud.detect.observation import AlertKey, Observation
from wire.alerts import alert_decoder

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = ROOT / "deploy" / "cloud" / "registry.demo.yaml"


def write_csv(path: Path, rows: list[str], header: str = "time,sensor,value,kind") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_replay_prints_alerts_as_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = datetime(2026, 7, 3, 14, 0, tzinfo=UTC)
    levels = [1.5 + 0.02 * i for i in range(60)] + [2.7 - 0.05 * i for i in range(40)]  # up past 2.6, down
    rows = [
        f"{(t0 + timedelta(minutes=5 * i)).isoformat()},river-radar-01,{v:.3f},river_level"
        for i, v in enumerate(levels)
    ]
    rows.reverse()  # any order: replayed in time order
    csv = write_csv(tmp_path / "r.csv", rows)
    assert main(["replay", "--sites", str(REGISTRY), str(csv)]) == 0
    out = capsys.readouterr()
    alerts = [alert_decoder.decode(line) for line in out.out.splitlines()]
    assert [(a.event, a.level) for a in alerts] == [
        ("raised", 1),
        ("escalated", 2),
        ("deescalated", 1),
        ("resolved", 0),
    ]
    assert alerts[0].level_name_ja == "水防団待機水位" and len({a.id for a in alerts}) == 1
    assert json.loads(out.err.splitlines()[-1]) == {"readings": 100, "alert_events": 4}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "2026-07-03T14:00:00,river-radar-01,1.0,river_level",
            "r.csv:2: time '2026-07-03T14:00:00' has no UTC offset",
        ),
        ("2026-07-03T14:00:00+09:00,nope,1.0,river_level", "r.csv:2: sensor 'nope' is not in the sites file"),
        ("2026-07-03T14:00:00+09:00,snow-laser-01,1.0,", "r.csv:2: sensor 'snow-laser-01' has channels"),
        (
            "2026-07-03T14:00:00+09:00,river-radar-01,high,river_level",
            "r.csv:2: value 'high' is not a number",
        ),
    ],
)
def test_replay_file_errors_name_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], row: str, message: str
) -> None:
    csv = write_csv(tmp_path / "r.csv", [row])
    assert main(["replay", "--sites", str(REGISTRY), str(csv)]) == 2
    assert message in capsys.readouterr().err


def consumer_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "consumer.yaml"
    cfg.write_text(
        f"mqtt: {{url: 'mqtt://127.0.0.1:1', allow_insecure: true}}\nregistry: {REGISTRY}\n"
        "store: {type: lpfile, path: store}\nalerts: {state_path: state/alerts.db}\n",
        encoding="utf-8",
    )
    return cfg


def test_list_ack_resolve_and_windows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = consumer_config(tmp_path)
    store = AlertStore(tmp_path / "state" / "alerts.db")
    sent: list[str] = []
    mgr = AlertManager(store, lambda a, n: sent.append(a.event))
    key = AlertKey("demo-city", "level", "river-radar-01", "river_level", "gw01")
    now = datetime.now(UTC)
    mgr.observe(
        Observation(
            key,
            2,
            now,
            "石狩川 旭橋: river_level 2.70 m reached 氾濫注意水位",
            site="ishikari-asahibashi",
            level_name="flood caution",
            level_name_ja="氾濫注意水位",
        ),
        now.timestamp(),
    )
    episode = store.unresolved()[0].id

    assert main(["alerts", "--config", str(cfg), "list"]) == 0
    out = capsys.readouterr().out
    assert episode[:8] in out and "L2 氾濫注意水位" in out and "river-radar-01/river_level" in out

    assert main(["alerts", "--config", str(cfg), "ack", episode[:8], "--by", "sato"]) == 0
    assert "recorded" in capsys.readouterr().out
    mgr.tick(now.timestamp() + 1)
    assert sent == ["raised", "acknowledged"]
    assert main(["alerts", "--config", str(cfg), "ack", episode, "--by", "sato"]) == 2
    assert "already acknowledged by sato" in capsys.readouterr().err

    assert main(["alerts", "--config", str(cfg), "resolve", episode, "--by", "sato"]) == 0
    mgr.tick(now.timestamp() + 2)
    assert sent[-1] == "resolved"
    assert main(["alerts", "--config", str(cfg), "list"]) == 0
    assert "no open alerts" in capsys.readouterr().out
    assert main(["alerts", "--config", str(cfg), "list", "--all", "--json"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert alert_decoder.decode(line).resolved_by == "sato"

    until = (now + timedelta(hours=2)).isoformat()
    args = [
        "alerts",
        "--config",
        str(cfg),
        "silence",
        "--tenant",
        "demo-city",
        "--site",
        "ishikari-asahibashi",
    ]
    assert main([*args, "--until", until, "--reason", "calibration"]) == 0
    assert main(["alerts", "--config", str(cfg), "windows"]) == 0
    assert "site ishikari-asahibashi" in capsys.readouterr().out
    assert main(["alerts", "--config", str(cfg), "unsilence", "1"]) == 0
    assert main(["alerts", "--config", str(cfg), "unsilence", "1"]) == 1
    assert main([*args, "--until", "2026-01-01T00:00:00"]) == 2
    assert "no UTC offset" in capsys.readouterr().err
