"""The benchmark's servers: Mosquitto configured as deployed, VictoriaMetrics that keeps duplicates.

- Mosquitto: the queue and packet limits of deploy/mosquitto/bosai.conf (max_queued_messages,
  max_queued_bytes, max_packet_size; max_inflight_messages left at its default of 20, as there;
  persistence with autosave every 30 s), but a plain loopback listener without authentication and
  `sys_interval 1`, so the runner can watch the broker's backlog ($SYS/broker/store/messages/count).
- VictoriaMetrics: as tests.servers.VictoriaMetrics but without `-dedup.minScrapeInterval`, so a
  point written twice is stored (and exported) twice, and the zero-duplicates check can see it.
"""

from __future__ import annotations

import json
import math
import os
import pwd
import threading
import time
import urllib.parse
from pathlib import Path

from tests.servers import GeneratedMosquitto, ServerError, VictoriaMetrics, free_port, http_request

BACKLOG_TOPIC = "$SYS/broker/store/messages/count"


def mosquitto_conf(workdir: Path, port: int) -> str:
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    lines = [
        # As in tests.servers: as root Mosquitto would drop to a user that cannot write here.
        f"user {pwd.getpwuid(os.getuid()).pw_name}",
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence true",
        f"persistence_location {data}/",
        "autosave_interval 30",
        f"log_dest file {GeneratedMosquitto.log_file(workdir)}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "max_queued_messages 1000000",
        "max_queued_bytes 2000000000",
        "max_packet_size 266240",
        "sys_interval 1",
    ]
    return "\n".join(lines) + "\n"


def bench_mosquitto(workdir: Path) -> GeneratedMosquitto:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    return GeneratedMosquitto(workdir, mosquitto_conf(workdir, port), port)


class KeepingVictoriaMetrics(VictoriaMetrics):
    """VictoriaMetrics without deduplication: duplicates are stored and counted."""

    def _argv(self) -> list[str]:
        return [a for a in super()._argv() if not a.startswith("-dedup.")]

    def sample_count(self, metric: str, since_ms: int) -> int:
        """Samples of `metric` stored so far with times after `since_ms` (made visible with a flush
        first).  A look-behind reaching back before 1970 (e.g. [100y]) finds nothing."""
        self.force_flush()
        days = math.ceil((time.time() * 1000 - since_ms) / 86_400_000) + 1
        query = urllib.parse.urlencode({"query": f"sum(count_over_time({metric}[{days}d]))", "nocache": "1"})
        status, body = http_request(f"{self.url}/api/v1/query?{query}")
        if status != 200:
            raise ServerError(f"count {metric}: HTTP {status}: {body[:300]!r}")
        result = json.loads(body)["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0


class BrokerBacklog:
    """Messages the broker holds (queued or in flight to subscribers), from $SYS every second."""

    def __init__(self, host: str, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.value: int | None = None
        self._seen = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-backlog", protocol=mqtt.MQTTv5
        )
        self._client.on_connect = lambda c, *_: c.subscribe(BACKLOG_TOPIC, qos=0)
        self._client.on_message = self._on_message
        self._client.connect(host, port)
        self._client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: object) -> None:
        try:
            self.value = int(getattr(msg, "payload", b"").decode())
        except ValueError:
            return
        self._seen.set()

    def wait(self, timeout: float) -> bool:
        return self._seen.wait(timeout)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
