"""What the ingest benchmark measures: a subject taking telemetry from the broker into the database.

A subject is started against an `Environment` (broker, VictoriaMetrics, registry, work directory,
batch size) by its factory, `SUBJECTS[name](env)`, and used as a context manager:

    with SUBJECTS["bosai"](env) as subject:
        subject.wait_ready(60)      # subscribed: the broker queues everything published from now on
        subject.processed()         # messages handled so far, or None if it cannot tell

A peer plugs in by adding a factory to SUBJECTS.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import yaml

from bosai.paths import REPO_ROOT
from tests.servers import free_port, stop_process

PROCESSED_METRIC = "bosai_consumer_messages_received_total"
READY_LOG_LINE = "subscribed to"  # cloud/consumer.py logs it once the broker granted every filter


@dataclass(frozen=True)
class Environment:
    broker_host: str
    broker_port: int
    victoria_url: str  # speaks the InfluxDB v2 write API (and v1 /write)
    registry: Path
    workdir: Path  # the subject's own directory (configs, logs, state)
    batch_size: int = 5000  # lines per write request
    flush_interval_ms: int = 1000  # write what is waiting after this long (the consumer's default)

    @property
    def broker_url(self) -> str:
        return f"mqtt://{self.broker_host}:{self.broker_port}"


class Subject(Protocol):
    name: str

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def wait_ready(self, timeout: float) -> bool: ...

    def processed(self) -> int | None: ...


SubjectFactory = Callable[[Environment], Subject]


class BosaiConsumer:
    """`python -m bosai cloud run` as a process: the influxdb store to VictoriaMetrics, validation,
    detection, alerting and the fsync'd spool as deployed, `/metrics` on a free loopback port."""

    name = "bosai"

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.workdir = env.workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "consumer.yaml"
        self.log_path = self.workdir / "consumer.log"
        self.metrics_port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def config(self) -> dict[str, Any]:
        env = self.env
        return {
            "mqtt": {
                "url": env.broker_url,
                "protocol": "5",
                "allow_insecure": True,
                "client_id": "bosai-bench-consumer",
            },
            "registry": str(env.registry),
            "store": {
                "type": "influxdb",
                "url": env.victoria_url,
                "org": "bosai",
                "bucket": "bosai",
                "batch_size": env.batch_size,
                "flush_interval_ms": env.flush_interval_ms,
            },
            "alerts": {"log_path": str(self.workdir / "alerts.jsonl")},
            "quarantine_path": str(self.workdir / "quarantine.jsonl"),
            "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
        }

    def __enter__(self) -> Self:
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False), encoding="utf-8")
        argv = [sys.executable, "-m", "bosai", "--log-level", "INFO", "cloud", "run"]
        argv += ["--config", str(self.config_path)]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, timeout=60)

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            if READY_LOG_LINE in self.log_path.read_text(errors="replace") and self.processed() is not None:
                return True
            time.sleep(0.1)
        return False

    def processed(self) -> int | None:
        """Messages the consumer's worker has handled (`bosai_consumer_messages_received_total`)."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
                text = resp.read().decode()
        except (OSError, urllib.error.URLError):
            return None
        for line in text.splitlines():
            if line.startswith(PROCESSED_METRIC):
                return int(float(line.rsplit(" ", 1)[1]))
        return None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class NodeRedSubject:
    """The Node-RED peer (benchmarks/nodered): MQTT in, JSON, points, InfluxDB out.  It keeps no
    counter we can read, so the runner measures it from the database."""

    name = "nodered"

    def __init__(self, env: Environment) -> None:
        self.env = env
        self._peer: Any = None

    def __enter__(self) -> Self:
        from benchmarks.nodered.flow import FlowSettings
        from benchmarks.nodered.peer import NodeRedPeer, install
        from cloud.registry import load_registry

        env = self.env
        settings = FlowSettings(
            broker_host=env.broker_host,
            broker_port=env.broker_port,
            influx_url=env.victoria_url,
            batch_size=env.batch_size,
            flush_interval_ms=env.flush_interval_ms,
        )
        self._peer = NodeRedPeer(
            settings, load_registry(env.registry), install_dir=install(), workdir=env.workdir / "nodered"
        )
        self._peer.start()  # returns once the flow's MQTT node is connected
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._peer is not None:
            self._peer.stop()

    @property
    def pid(self) -> int | None:
        return int(self._peer.pid) if self._peer is not None and self._peer.running else None

    def wait_ready(self, timeout: float) -> bool:
        # Connected is logged before the SUBSCRIBE is granted: give the broker a moment.
        time.sleep(min(1.0, timeout))
        return self._peer is not None and bool(self._peer.running)

    def processed(self) -> int | None:
        return None


SUBJECTS: dict[str, SubjectFactory] = {"bosai": BosaiConsumer, "nodered": NodeRedSubject}
