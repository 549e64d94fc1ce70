"""`bosai dashboards provision` through the real grafana-client against a small local HTTP server
that answers like Grafana's HTTP API for the endpoints used (folders, data sources by uid,
dashboards by uid and /api/dashboards/db) and records every request.  A stub, because Grafana
cannot run here: this is a unit test of the command's requests, idempotence and secret handling.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bosai.cli import main

TOKEN = "glsa_s3cretServiceAccountToken"
PASSWORD = "pa55-w0rd-admin"
INFLUX_TOKEN = "influx-read-t0ken-xyz"
UIDS = {"bosai-overview", "bosai-rivers", "bosai-snow", "bosai-slopes", "bosai-gateways"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGrafana:
    """Grafana's state and the requests it got."""

    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    fail_dashboards: bool = False

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path.startswith("/api/folders/"):
            uid = path.rsplit("/", 1)[1]
            return (200, self.folders[uid]) if uid in self.folders else (404, {"message": "folder not found"})
        if method == "POST" and path == "/api/folders":
            if body["uid"] in self.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            self.folders[body["uid"]] = {
                "uid": body["uid"],
                "title": body["title"],
                "id": len(self.folders) + 1,
            }
            return 200, self.folders[body["uid"]]
        if method == "PUT" and path.startswith("/api/folders/"):
            uid = path.rsplit("/", 1)[1]
            self.folders[uid]["title"] = body["title"]
            return 200, self.folders[uid]
        if method == "GET" and path.startswith("/api/datasources/uid/"):
            uid = path.rsplit("/", 1)[1]
            if uid not in self.datasources:
                return 404, {"message": "Data source not found"}
            shown = {k: v for k, v in self.datasources[uid].items() if k != "secureJsonData"}
            return 200, shown
        if method == "POST" and path == "/api/datasources":
            if body["uid"] in self.datasources:
                return 409, {"message": "data source with the same uid already exists"}
            self.datasources[body["uid"]] = body
            return 200, {"id": 1, "message": "Datasource added", "datasource": body}
        if method == "PUT" and path.startswith("/api/datasources/uid/"):
            uid = path.rsplit("/", 1)[1]
            self.datasources[uid] = body
            return 200, {"id": 1, "message": "Datasource updated"}
        if method == "GET" and path.startswith("/api/dashboards/uid/"):
            uid = path.rsplit("/", 1)[1]
            if uid not in self.dashboards:
                return 404, {"message": "Dashboard not found"}
            return 200, {"dashboard": self.dashboards[uid]["dashboard"], "meta": {"folderUid": "bosai"}}
        if method == "POST" and path == "/api/dashboards/db":
            if self.fail_dashboards:
                return 400, {"message": "Dashboard title cannot be empty"}
            uid = body["dashboard"]["uid"]
            if uid in self.dashboards and not body.get("overwrite"):
                return 412, {
                    "message": "The dashboard has been changed by someone else",
                    "status": "version-mismatch",
                }
            version = self.dashboards.get(uid, {}).get("version", 0) + 1
            self.dashboards[uid] = {**body, "version": version}
            return 200, {"status": "success", "uid": uid, "version": version}
        return 404, {"message": "Not found"}


@pytest.fixture
def grafana() -> Iterator[tuple[FakeGrafana, str]]:
    state = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            state.requests.append(Request(self.command, self.path, dict(self.headers), body))
            status, answer = state.answer(self.command, self.path, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def secret(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text + "\n", encoding="utf-8")
    os.chmod(path, mode)
    return path


def token_args(tmp_path: Path) -> list[str]:
    """The options of a run with a Grafana token and an InfluxDB token, each in its own file."""
    token = secret(tmp_path / "grafana.token", TOKEN)
    influx = secret(tmp_path / "influx.token", INFLUX_TOKEN)
    return ["--token-file", str(token), "--influx-token-file", str(influx)]


def provision(url: str, *extra: str) -> int:
    return main(
        ["dashboards", "provision", "--grafana-url", url, "--influx-url", "http://influxdb:8086", *extra]
    )


def test_first_run_creates_second_run_updates_without_duplicates(
    grafana: tuple[FakeGrafana, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, url = grafana
    args = token_args(tmp_path)

    assert provision(url, *args) == 0
    out = capsys.readouterr().out
    assert "folder bosai 'Bosai 防災': created" in out
    assert "datasource bosai-influxdb (http://influxdb:8086, database bosai, token header): created" in out
    assert out.count(": created") == 7 and "updated" not in out
    assert (
        set(state.dashboards) == UIDS
        and list(state.folders) == ["bosai"]
        and list(state.datasources) == ["bosai-influxdb"]
    )

    assert provision(url, *args) == 0
    out = capsys.readouterr().out
    assert "folder bosai 'Bosai 防災': unchanged" in out
    assert out.count(": updated") == 6 and "created" not in out
    assert set(state.dashboards) == UIDS and len(state.folders) == 1 and len(state.datasources) == 1
    assert all(d["version"] == 2 for d in state.dashboards.values())
    creations = [
        r for r in state.requests if r.method == "POST" and r.path in ("/api/folders", "/api/datasources")
    ]
    assert len(creations) == 2, "folder and data source created once, then updated"


def test_what_grafana_receives(grafana: tuple[FakeGrafana, str], tmp_path: Path) -> None:
    state, url = grafana
    assert provision(url, *token_args(tmp_path), "--folder", "防災 Bosai") == 0
    assert state.requests and all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in state.requests)
    assert state.folders["bosai"]["title"] == "防災 Bosai"
    ds = state.datasources["bosai-influxdb"]
    assert ds["type"] == "influxdb" and ds["access"] == "proxy" and ds["url"] == "http://influxdb:8086"
    assert ds["jsonData"]["version"] == "InfluxQL" and ds["jsonData"]["dbName"] == "bosai"
    assert ds["jsonData"]["httpHeaderName1"] == "Authorization"
    assert ds["secureJsonData"] == {"httpHeaderValue1": f"Token {INFLUX_TOKEN}"}
    committed = Path(__file__).resolve().parents[2] / "dashboards" / "json"
    for uid, saved in state.dashboards.items():
        assert saved["folderUid"] == "bosai" and saved["overwrite"] is True
        assert saved["dashboard"] == json.loads((committed / f"{uid}.json").read_text(encoding="utf-8"))


def test_basic_auth_and_no_influx_token(
    grafana: tuple[FakeGrafana, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, url = grafana
    password = secret(tmp_path / "grafana.pw", PASSWORD)
    assert provision(url, "--user", "admin", "--password-file", str(password), "--influx-db", "city") == 0
    expected = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    assert all(r.headers.get("Authorization") == expected for r in state.requests)
    ds = state.datasources["bosai-influxdb"]
    assert "secureJsonData" not in ds and ds["jsonData"]["dbName"] == "city"
    assert "database city)" in capsys.readouterr().out


def test_secrets_are_never_printed(
    grafana: tuple[FakeGrafana, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, url = grafana
    args = token_args(tmp_path)
    assert provision(url, *args) == 0
    state.fail_dashboards = True
    assert provision(url, *args) == 1
    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert TOKEN not in text and INFLUX_TOKEN not in text


def test_grafana_error_exits_1_with_its_message(
    grafana: tuple[FakeGrafana, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, url = grafana
    state.fail_dashboards = True
    assert provision(url, "--token-file", str(secret(tmp_path / "t", TOKEN))) == 1
    err = capsys.readouterr().err
    assert "Dashboard title cannot be empty" in err and url.rstrip("/") in err


def test_unreachable_grafana_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert provision("http://127.0.0.1:9/", "--token-file", str(secret(tmp_path / "t", TOKEN))) == 1
    err = capsys.readouterr().err
    assert "cannot reach Grafana" in err and TOKEN not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --token-file, or --user with --password-file"),
        (["--user", "admin"], "--user needs --password-file"),
        (["--token-file", "{token}", "--password-file", "{token}"], "--password-file goes with --user"),
        (["--token-file", "{loose}"], "can be read by group or others"),
        (["--token-file", "{missing}"], "not found"),
    ],
)
def test_usage_and_secret_file_errors_exit_2(
    grafana: tuple[FakeGrafana, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    state, url = grafana
    files = {
        "token": str(secret(tmp_path / "token", TOKEN)),
        "loose": str(secret(tmp_path / "loose", TOKEN, 0o644)),
        "missing": str(tmp_path / "missing"),
    }
    assert provision(url, *[a.format(**files) for a in args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and TOKEN not in captured.err + captured.out
    assert state.requests == []


def test_credentials_in_the_url_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = secret(tmp_path / "t", TOKEN)
    assert provision(f"http://admin:{PASSWORD}@127.0.0.1:3000/", "--token-file", str(token)) == 2
    assert "must not carry credentials" in capsys.readouterr().err
