"""The InfluxDB writer and the store thread against a real HTTP server playing a busy database.

VictoriaMetrics never answers 429 or 400 for a batch (it skips unparsable lines with 204), so a
local HTTP server speaking the v2 write endpoint scripts the answers an InfluxDB 2/3 or a proxy
in front of it gives: 503 and 429 with Retry-After, 400 naming a bad line, 401.  influxdb-client
does the real requests.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.config import InfluxStore
from cloud.quarantine import Quarantine
from cloud.sink import StoreSink
from cloud.spool import Spool
from cloud.writers import StoreRejected, StoreUnavailable
from cloud.writers.influx import InfluxWriter

pytestmark = pytest.mark.integration


class BusyDatabase(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: list[tuple[int, dict[str, str]]] = []  # answers to give first, in order
        self.stored: list[str] = []
        self.requests: list[float] = []  # monotonic arrival times
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: BusyDatabase

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        lines = [ln for ln in body.split("\n") if ln]
        with self.server.lock:
            self.server.requests.append(time.monotonic())
            if self.server.script:
                status, headers = self.server.script.pop(0)
            elif any("bad" in ln for ln in lines):
                status, headers = 400, {}
            else:
                status, headers = 204, {}
                self.server.stored += lines
        payload = b'{"code":"invalid","message":"unable to parse \'bad\'"}' if status == 400 else b""
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def database() -> Iterator[BusyDatabase]:
    server = BusyDatabase()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def writer(db: BusyDatabase) -> InfluxWriter:
    return InfluxWriter(
        InfluxStore(url=db.url, org="o", bucket="b", timeout_ms=2000), Path("/nonexistent.yaml")
    )


def test_status_codes_map_onto_retry_or_reject(database: BusyDatabase) -> None:
    w = writer(database)
    database.script = [(429, {"Retry-After": "7"}), (503, {}), (401, {}), (400, {})]
    with pytest.raises(StoreUnavailable) as busy:
        w.write(["m v=1 1"])
    assert busy.value.retry_after == 7.0 and "429" in str(busy.value)
    with pytest.raises(StoreUnavailable) as down:
        w.write(["m v=1 1"])
    assert down.value.retry_after is None
    with pytest.raises(StoreUnavailable, match="401"):  # fix the token; keep the data meanwhile
        w.write(["m v=1 1"])
    with pytest.raises(StoreRejected, match="400"):
        w.write(["m v=1 1"])
    w.write(["m v=1 1"])
    assert database.stored == ["m v=1 1"]
    w.close()


def test_refused_connection_is_unavailable() -> None:
    w = InfluxWriter(InfluxStore(url="http://127.0.0.1:1", org="o", bucket="b"), Path("/x.yaml"))
    with pytest.raises(StoreUnavailable):
        w.write(["m v=1 1"])
    w.close()


def test_the_store_thread_honours_retry_after_and_quarantines_bad_lines(
    database: BusyDatabase, tmp_path: Path
) -> None:
    database.script = [(503, {"Retry-After": "2"}), (429, {"Retry-After": "1"})]
    quarantine = Quarantine(tmp_path / "quarantine.jsonl")
    sink = StoreSink(writer(database), Spool(tmp_path / "spool", fsync=False), quarantine, batch_lines=100)
    lines = [f"m v={i} {i}" for i in range(100)]
    lines[42] = "bad line 42"
    sink.put(lines)
    assert sink.flush(30.0)
    gaps = [b - a for a, b in zip(database.requests, database.requests[1:], strict=False)]
    assert gaps[0] >= 1.9 and gaps[1] >= 0.9, gaps  # waited as told
    assert database.stored == [ln for ln in lines if "bad" not in ln]
    assert sink.retries == 2 and sink.rejected == 1 and sink.written == 99
    quarantine.close()
    assert "bad line 42" in (tmp_path / "quarantine.jsonl").read_text()
    sink.close(5.0)
