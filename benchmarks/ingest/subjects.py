"""What the ingest benchmark measures: a subject taking telemetry from the broker into the database.

A subject is started against an `Environment` (broker, VictoriaMetrics, registry, work directory,
batch size) by its factory, `SUBJECTS[name](env)`, and used as a context manager:

    with SUBJECTS["bosai"](env) as subject:
        subject.wait_ready(60)      # subscribed: the broker queues everything published from now on
        subject.processed()         # messages handled so far, or None if it cannot tell

A peer plugs in by adding a factory to SUBJECTS.

Scaling (`bosai_subject(count, split)`): `count` consumer processes against the same broker and
database, each with its own directory (config, spool, alert store, log), metrics port and client
id, splitting the gateways by `shard: {index, count}` (docs/scaling.md: each gateway's messages
reach one process) or sharing one MQTT 5 `shared_group` (the broker hands each message to the next
member, so every member sees part of each gateway's stream: its sequence accounting counts the
rest as lost, and detection sees part of each series).
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from cloud.registry import Registry, load_registry
from cloud.shard import Shard
from tests.servers import free_port, stop_process
from wire.configfile import ConfigError

PROCESSED_METRIC = "bosai_consumer_messages_received_total"
LOST_METRIC = "bosai_consumer_messages_lost"  # gauge: sequence numbers skipped and not (yet) arrived
# cloud/consumer.py logs one of these once the broker granted every filter (or there are none).
READY_LOG_LINES = ("subscribed to", "owns no registered gateway")
CLIENT_ID = "bosai-bench-consumer"
SPLITS = ("shard", "shared")
SHARED_GROUP = "bench"


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

    def pids(self) -> list[int]:
        """The processes doing the subject's work (their CPU and memory are measured)."""
        ...

    def notes(self) -> list[str]:
        """Remarks for the result, read after the drain (e.g. sequence gaps the subject counted)."""
        ...


SubjectFactory = Callable[[Environment], Subject]


def metric_value(exposition: str, name: str) -> float | None:
    """Sum of the samples of metric `name` (any labels) in a Prometheus text exposition; None if
    it has none."""
    total: float | None = None
    for line in exposition.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


class BosaiConsumer:
    """`python -m bosai cloud run` as a process: the influxdb store to VictoriaMetrics, validation,
    detection, alerting and the fsync'd spool as deployed, `/metrics` on a free loopback port.

    As member `index` of `count` (count > 1) it owns shard `index` (split "shard") or joins the
    shared subscription group SHARED_GROUP (split "shared") under a client id of its own."""

    name = "bosai"

    def __init__(self, env: Environment, index: int = 0, count: int = 1, split: str = "shard") -> None:
        if split not in SPLITS or not 0 <= index < count:
            raise ValueError(f"member {index} of {count} with split {split!r}: not a consumer layout")
        self.env = env
        self.index, self.count, self.split = index, count, split
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

    def pids(self) -> list[int]:
        return [self._proc.pid] if self._proc is not None else []

    def client_id(self) -> str:
        """A shard adds "-s{index}of{count}" itself (cloud.mqtt.client_id); the members of a
        shared group need distinct ids."""
        return f"{CLIENT_ID}-m{self.index}" if self.count > 1 and self.split == "shared" else CLIENT_ID

    def config(self) -> dict[str, Any]:
        env = self.env
        config: dict[str, Any] = {
            "mqtt": {
                "url": env.broker_url,
                "protocol": "5",
                "allow_insecure": True,
                "client_id": self.client_id(),
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
        if self.count > 1 and self.split == "shard":
            config["shard"] = {"index": self.index, "count": self.count}
        elif self.count > 1:
            config["shared_group"] = SHARED_GROUP
        return config

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

    def ask_to_stop(self) -> None:
        """SIGTERM without waiting, so several members stop at once (__exit__ then waits)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            log = self.log_path.read_text(errors="replace")
            if any(line in log for line in READY_LOG_LINES) and self.processed() is not None:
                return True
            time.sleep(0.1)
        return False

    def metrics(self) -> str | None:
        """The consumer's /metrics text, or None while it does not answer."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
                return str(resp.read().decode())
        except (OSError, urllib.error.URLError):
            return None

    def processed(self) -> int | None:
        """Messages the consumer's worker has handled (`bosai_consumer_messages_received_total`)."""
        text = self.metrics()
        value = metric_value(text, PROCESSED_METRIC) if text is not None else None
        return None if value is None else int(value)

    def sequence_lost(self) -> int | None:
        """Sequence numbers the consumer counts as skipped and not arrived (LOST_METRIC)."""
        text = self.metrics()
        value = metric_value(text, LOST_METRIC) if text is not None else None
        return None if value is None else int(value)

    def notes(self) -> list[str]:
        lost = self.sequence_lost()
        return [f"{LOST_METRIC}: {lost}"] if lost else []

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def subject_label(count: int, split: str) -> str:
    """The row's name: "bosai" for one process, e.g. "bosai x2 (shard)" for several."""
    return "bosai" if count == 1 else f"bosai x{count} ({split})"


def gateways_per_shard(registry: Registry, count: int) -> list[int]:
    """How many registered gateways each shard of `count` owns: the busiest shard bounds the
    throughput of a saturated run."""
    return [len(Shard(i, count).owned_gateways(registry)) for i in range(count)]


class BosaiConsumers:
    """`count` BosaiConsumer processes against one broker and database, as one subject: each in
    its own directory (member-0, member-1, ...) under the environment's; processed = their sum."""

    def __init__(self, env: Environment, count: int, split: str) -> None:
        if count < 2:
            raise ValueError(f"BosaiConsumers is for 2 or more processes, not {count}: use BosaiConsumer")
        self.env = env
        self.name = subject_label(count, split)
        self.split = split
        self.members = [
            BosaiConsumer(dataclasses.replace(env, workdir=env.workdir / f"member-{i}"), i, count, split)
            for i in range(count)
        ]
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Self:
        with contextlib.ExitStack() as stack:  # a member that fails to start stops the others
            for member in self.members:
                stack.enter_context(member)
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for member in self.members:
            member.ask_to_stop()
        self._stack.close()

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(m.wait_ready(max(0.0, deadline - time.monotonic())) for m in self.members)

    def processed(self) -> int | None:
        counts = [m.processed() for m in self.members]
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)

    def pids(self) -> list[int]:
        return [pid for m in self.members for pid in m.pids()]

    def notes(self) -> list[str]:
        lost = [m.sequence_lost() for m in self.members]
        shown = "/".join("?" if n is None else str(n) for n in lost)
        notes = []
        if self.split == "shard":
            try:
                shares = gateways_per_shard(load_registry(self.env.registry), len(self.members))
                notes.append(f"gateways per shard: {'/'.join(map(str, shares))}")
            except (OSError, ConfigError) as exc:
                notes.append(f"gateways per shard: unknown ({exc})")
        if any(lost):
            why = " (false gaps: each member of a shared group sees part of every gateway's stream)"
            notes.append(f"{LOST_METRIC} per member: {shown}" + (why if self.split == "shared" else ""))
        return notes

    def log_tail(self, lines: int = 30) -> str:
        return "\n\n".join(f"member {m.index}:\n{m.log_tail(lines)}" for m in self.members)


def bosai_subject(count: int, split: str) -> SubjectFactory:
    """The factory for `count` consumer processes splitting the gateways by `split` (SPLITS)."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    if count == 1:
        return BosaiConsumer
    return lambda env: BosaiConsumers(env, count, split)


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

    def pids(self) -> list[int]:
        return [] if self.pid is None else [self.pid]

    def notes(self) -> list[str]:
        return []

    def wait_ready(self, timeout: float) -> bool:
        # Connected is logged before the SUBSCRIBE is granted: give the broker a moment.
        time.sleep(min(1.0, timeout))
        return self._peer is not None and bool(self._peer.running)

    def processed(self) -> int | None:
        return None


SUBJECTS: dict[str, SubjectFactory] = {"bosai": BosaiConsumer, "nodered": NodeRedSubject}
