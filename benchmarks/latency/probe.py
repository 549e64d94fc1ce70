"""The probe: a registered river gauge whose readings cross its first threshold every few
seconds, the webhook server that timestamps the notifications, and the poller that sees when a
probe reading becomes queryable in VictoriaMetrics.

The probe's channel accepts a 1.2 m step within a second (`quality.k` x `min_scale` of 100 m, no
`max_rate_per_h`, no flatline check): the benchmark measures the pipeline, not the spike filter,
which would rightly hold such a step back as SUSPECT on a real gauge.  Each crossing is resolved
half a period later by a reading below threshold - clear_margin, so the next crossing raises a
new episode and a new notification.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import msgspec
import yaml

from benchmarks.ingest.subjects import BosaiConsumer, Environment
from benchmarks.loadgen import KIND, UNIT, LoadSpec, registry_document
from tests.servers import http_request
from wire import topics
from wire.alerts import Alert, alert_decoder
from wire.telemetry import Reading, Telemetry, encode

PROBE_TENANT = "bench-probe"
PROBE_SITE = "probe-site"
PROBE_GATEWAY = "probe-gw"
PROBE_SENSOR = "probe-rl01"
PROBE_STREAM = "b0be"
THRESHOLD, CLEAR_MARGIN = 2.00, 0.10
PROBE_HIGH = 2.20  # level 1 (standby) reached, level 2 not
PROBE_LOW = 1.00  # below THRESHOLD - CLEAR_MARGIN: the episode resolves
WEBHOOK_ID = "bench-webhook"
POLL_EVERY_S = 0.010  # how often the poller asks VictoriaMetrics for pending probe points


def probe_channel() -> dict[str, Any]:
    return {
        "unit": UNIT,
        "range": [-2.0, 30.0],
        "direction": "rising",
        "clear_margin": CLEAR_MARGIN,
        # A step is the probe's signal, not a spike to hold back.  The floor of the scale matters:
        # alternating values make the robust scale 0, and then any step would be an outlier.
        "quality": {"k": 100.0, "min_scale": 1.0},
        "stale_after_s": None,
        "thresholds": [
            {"level": 1, "value": THRESHOLD, "name": "standby"},
            {"level": 2, "value": 2.60, "name": "flood caution"},
        ],
    }


def registry_with_probe(spec: LoadSpec) -> dict[str, Any]:
    """The background load's registry (benchmarks.loadgen) plus the probe's own tenant, site,
    gateway and sensor."""
    doc = registry_document(spec)
    doc["tenants"].append({"id": PROBE_TENANT, "name": "latency probe"})
    doc["sites"].append({"id": PROBE_SITE, "tenant": PROBE_TENANT, "name": "probe river", "type": "river"})
    doc["gateways"].append(
        {"id": PROBE_GATEWAY, "tenant": PROBE_TENANT, "name": "probe gateway", "offline_after_s": 86400}
    )
    doc["sensors"].append(
        {
            "id": PROBE_SENSOR,
            "tenant": PROBE_TENANT,
            "gateway": PROBE_GATEWAY,
            "site": PROBE_SITE,
            "name": "probe gauge",
            "channels": {KIND: probe_channel()},
        }
    )
    return doc


def write_registry_with_probe(spec: LoadSpec, path: Path) -> Path:
    # libyaml's dumper when present: 10k sensors take pure-Python yaml seconds to write.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path.write_text(yaml.dump(registry_with_probe(spec), Dumper=dumper, sort_keys=False), encoding="utf-8")
    return path


class NotifyingConsumer(BosaiConsumer):
    """The benchmark's consumer with one generic webhook notifier that hears the probe's
    `raised` events only (so resolves and any background alert do not queue before them)."""

    def __init__(self, env: Environment, webhook_url: str) -> None:
        super().__init__(env)
        self.webhook_url = webhook_url

    @property
    def alerts_path(self) -> Path:
        return self.workdir / "alerts.jsonl"

    def config(self) -> dict[str, Any]:
        config = super().config()
        config["alerts"]["notifiers"] = [
            {
                "type": "webhook",
                "id": WEBHOOK_ID,
                "url": self.webhook_url,
                "format": "generic",
                "tenants": [PROBE_TENANT],
                "categories": ["disaster"],
                "events": ["raised"],
            }
        ]
        return config


# -- the webhook receiver -----------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    arrived: float  # time.time() when the POST's handler started
    alert: Alert | None  # None: the body was not an Alert


class WebhookRecorder:
    """A ThreadingHTTPServer on a free loopback port answering 200 to every POST and keeping
    each one's arrival time and decoded Alert."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                try:
                    alert: Alert | None = alert_decoder.decode(body)
                except msgspec.MsgspecError:
                    alert = None
                recorder._add(Delivery(arrived, alert))

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: progress goes through the runner

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def _add(self, delivery: Delivery) -> None:
        with self._lock:
            self._deliveries.append(delivery)

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- publishing the probe -----------------------------------------------------------------------


def probe_payload(seq: int, value: float, ts_ms: int) -> bytes:
    ts = datetime.fromtimestamp(ts_ms / 1000, UTC)
    reading = Reading(PROBE_SENSOR, KIND, ts, value, UNIT)
    return encode(Telemetry(1, PROBE_TENANT, PROBE_GATEWAY, seq, ts, [reading], PROBE_STREAM))


class ProbeClient:
    """The probe gateway's MQTT 5 connection; `send` publishes one reading with QoS 1 and returns
    (sample time in ms, time.time() just before the publish)."""

    def __init__(self, host: str, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._mqtt = mqtt
        self._connected = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-probe", protocol=mqtt.MQTTv5)
        self._client.on_connect = lambda *_: self._connected.set()
        self._client.connect(host, port, keepalive=60)
        self._client.loop_start()
        self._seq = 0
        self._topic = topics.telemetry(PROBE_TENANT, PROBE_GATEWAY)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def send(self, value: float) -> tuple[int, float]:
        self._seq += 1
        published = time.time()
        ts_ms = int(published * 1000)
        info = self._client.publish(self._topic, probe_payload(self._seq, value, ts_ms), qos=1)
        if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"probe publish failed: {self._mqtt.error_string(info.rc)}")
        return ts_ms, published

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# -- publish -> queryable -------------------------------------------------------------------------


class QueryablePoller:
    """Asks VictoriaMetrics every POLL_EVERY_S, while probe points are pending, for the probe's
    `readings_value` points in their time span (`/api/v1/export`, which is not subject to the
    query API's latency offset), and records when each pending point first shows up."""

    def __init__(self, victoria_url: str) -> None:
        self.url = victoria_url
        self._lock = threading.Lock()
        self._pending: dict[int, float] = {}  # sample time ms -> publish time
        self.visible: dict[int, float] = {}  # sample time ms -> seconds from publish to visible
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queryable-poller", daemon=True)

    def expect(self, ts_ms: int, published: float) -> None:
        with self._lock:
            self._pending[ts_ms] = published

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def _run(self) -> None:
        while not self._stop.wait(POLL_EVERY_S):
            with self._lock:
                if not self._pending:
                    continue
                lo, hi = min(self._pending), max(self._pending)
            try:
                found = set(self._export(lo, hi))
            except OSError:
                self.errors += 1
                continue
            now = time.time()
            with self._lock:
                for ts_ms in found & self._pending.keys():
                    self.visible[ts_ms] = now - self._pending.pop(ts_ms)

    def _export(self, lo_ms: int, hi_ms: int) -> Iterator[int]:
        match = f'{{__name__="readings_value",tenant="{PROBE_TENANT}",sensor="{PROBE_SENSOR}"}}'
        query = urllib.parse.urlencode(
            {"match[]": match, "start": f"{lo_ms / 1000:.3f}", "end": f"{hi_ms / 1000:.3f}"}
        )
        status, body = http_request(f"{self.url}/api/v1/export?{query}", timeout=5.0)
        if status != 200:
            raise OSError(f"export: HTTP {status}")
        for line in body.decode().splitlines():
            if line.strip():
                yield from json.loads(line)["timestamps"]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(5)
