"""MQTT receive ceiling: how many QoS 1 messages a subscriber takes per second doing nothing else.

Whatever a consumer does with a message, it cannot go faster than its MQTT client receives and
acknowledges them.  This measures that ceiling for the consumer's client (paho-mqtt, configured
as cloud/mqtt.py configures it: persistent session, manual acknowledgement, paho's logger on) and
for Node-RED's (mqtt.js, from the pinned Node-RED install of benchmarks/nodered), on the same
broker and the same messages, in one run:

1. a persistent session subscribed to every gateway's telemetry is made for each subject and left;
2. `--messages` telemetry messages of the ingest benchmark (benchmarks.loadgen: `--readings`
   readings each, round-robin over `--gateways` gateways) are published into it at QoS 1 and
   stored by the broker (a Mosquitto with the deployment's queue limits, as in benchmarks.ingest);
3. the subject connects as its own process, receives and acknowledges the backlog, and reports
   the time from the first message to the last, its CPU time and its RSS.

The subject does no work with a message, so the figure is an upper bound for any consumer built on
that client; the ingest benchmark measures the consumer itself (benchmarks.ingest) and
benchmarks.consumer_cpu the worker without MQTT.

    .venv/bin/python -m benchmarks.mqtt_receive                        # paho and mqtt.js, MQTT 5
    .venv/bin/python -m benchmarks.mqtt_receive --subject paho-v5 --subject paho-v311

Progress goes to stderr; results to stdout as a Markdown table and one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from benchmarks import loadgen
from benchmarks.edge_agent import describe, machine
from benchmarks.ingest import usage
from benchmarks.ingest.infra import bench_mosquitto
from benchmarks.nodered.peer import PeerError, install
from cloud.mqtt import SESSION_EXPIRY_S
from wire import topics

SUBJECTS = ("paho-v5", "paho-v311", "mqttjs-v5", "mqttjs-v311")
DEFAULT_SUBJECTS = ("paho-v5", "mqttjs-v5")
QUEUE_AHEAD = 10_000  # publisher: PUBACKs awaited beyond this many (paho's message ids are 16-bit)
DRAIN_TIMEOUT_S = 600.0
DRAIN_JS = Path(__file__).resolve().parent / "nodered" / "drain.js"


def progress(msg: str) -> None:
    print(f"[mqtt_receive] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Drained:
    """What a subject reports after taking the whole backlog."""

    count: int
    elapsed_s: float  # first message to last
    cpu_s: float  # the subject's CPU time, from before connecting to the last message
    rss_bytes: int


@dataclass(frozen=True)
class Result:
    subject: str
    run: int
    messages: int
    readings_per_message: int
    payload_bytes: float  # mean
    messages_per_s: float
    cpu_us_per_message: float
    rss_mib: float


def _version(subject: str) -> MQTTProtocolVersion:
    return MQTTProtocolVersion.MQTTv5 if subject.endswith("-v5") else MQTTProtocolVersion.MQTTv311


def _client(client_id: str, version: MQTTProtocolVersion, *, manual_ack: bool = False) -> mqtt.Client:
    return mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=version,
        clean_session=None if version == MQTTProtocolVersion.MQTTv5 else False,
        manual_ack=manual_ack,
    )


def _connect(client: mqtt.Client, host: str, port: int, version: MQTTProtocolVersion) -> None:
    """Connect to the persistent session (MQTT 5: clean start off with an expiry, as cloud/mqtt.py)."""
    if version == MQTTProtocolVersion.MQTTv5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        client.connect(host, port, clean_start=False, properties=props)
    else:
        client.connect(host, port)


def make_session(host: str, port: int, client_id: str, version: MQTTProtocolVersion) -> None:
    """Subscribe `client_id` to every telemetry topic at QoS 1 and leave: the broker queues for it."""
    client = _client(client_id, version)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_a: subscribed.set()
    _connect(client, host, port, version)
    client.loop_start()
    try:
        client.subscribe(topics.telemetry_filter(), qos=1)
        if not subscribed.wait(10):
            raise RuntimeError(f"{client_id}: no SUBACK in 10 s")
    finally:
        client.disconnect()
        client.loop_stop()


def publish(host: str, port: int, messages: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 1 and wait for every PUBACK: then the broker holds them all."""
    client = _client("bench-receive-publisher", MQTTProtocolVersion.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.connect(host, port)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError("publisher did not connect")
        pending: deque[mqtt.MQTTMessageInfo] = deque()
        for topic, payload in messages:
            pending.append(client.publish(topic, payload, qos=1))
            while len(pending) > QUEUE_AHEAD:
                pending.popleft().wait_for_publish(60)
        for info in pending:
            info.wait_for_publish(60)
    finally:
        client.disconnect()
        client.loop_stop()


def _rss_bytes() -> int:
    return usage.parse_status_kib(Path("/proc/self/status").read_text(), "VmRSS") * 1024


def drain_paho(host: str, port: int, client_id: str, count: int, version: MQTTProtocolVersion) -> Drained:
    """The consumer's client set-up (cloud/mqtt.make_client, without TLS and credentials): receive
    on paho's network thread, acknowledge each message in the callback, nothing else."""
    cpu0 = time.process_time()
    client = _client(client_id, version, manual_ack=True)
    quiet = logging.getLogger("paho.mqtt.bench")
    quiet.setLevel(logging.WARNING)
    client.enable_logger(quiet)
    done = threading.Event()
    received = 0
    first = last = 0.0

    def on_message(c: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        nonlocal received, first, last
        c.ack(msg.mid, msg.qos)
        received += 1
        if received == 1:
            first = time.perf_counter()
        if received == count:
            last = time.perf_counter()
            done.set()

    client.on_message = on_message
    _connect(client, host, port, version)
    client.loop_start()
    try:
        if not done.wait(DRAIN_TIMEOUT_S):
            raise RuntimeError(f"paho: only {received} of {count} messages in {DRAIN_TIMEOUT_S:.0f} s")
        cpu = time.process_time() - cpu0
    finally:
        client.disconnect()
        client.loop_stop()
    return Drained(received, last - first, cpu, _rss_bytes())


def run_subject(subject: str, host: str, port: int, client_id: str, count: int) -> Drained:
    """The subject as its own process, so its CPU time and RSS are its own."""
    version = _version(subject)
    if subject.startswith("paho"):
        argv = [sys.executable, "-m", "benchmarks.mqtt_receive", "--drain-paho"]
        argv += [host, str(port), client_id, str(count), str(int(version))]
    else:
        node = shutil.which("node")
        if node is None:
            raise PeerError("node is needed for the mqtt.js subjects (Node.js 18.5 or newer)")
        argv = [node, str(DRAIN_JS), str(install()), f"mqtt://{host}:{port}", client_id, str(count)]
        argv.append(str(int(version)))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=DRAIN_TIMEOUT_S + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"{subject} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return Drained(**json.loads(proc.stdout.strip().splitlines()[-1]))


def build_messages(spec: loadgen.LoadSpec, count: int) -> list[tuple[str, bytes]]:
    per_gateway = -(-count // spec.gateways)
    pairs = loadgen.schedule(spec, range(spec.gateways), per_gateway)
    return [(loadgen.topic(g), loadgen.payload(spec, g, seq)) for g, seq in pairs][:count]


def measure(args: argparse.Namespace, workdir: Path) -> list[Result]:
    spec = loadgen.LoadSpec(args.gateways, args.sensors, args.readings)
    messages = build_messages(spec, args.messages)
    size = sum(len(p) for _, p in messages) / len(messages)
    progress(f"{len(messages)} messages of {args.readings} readings, {size:.0f} bytes each on average")
    results: list[Result] = []
    with bench_mosquitto(workdir / "mosquitto") as broker:
        host, port = "127.0.0.1", broker.port
        for run in range(1, args.repeat + 1):
            # Alternate the order between runs, so neither subject always goes first.
            order = args.subjects if run % 2 else list(reversed(args.subjects))
            for subject in order:
                client_id = f"bench-receive-{subject}-{run}"
                make_session(host, port, client_id, _version(subject))
                progress(f"run {run}: publishing the backlog for {subject}")
                publish(host, port, messages)
                progress(f"run {run}: {subject} drains it")
                drained = run_subject(subject, host, port, client_id, len(messages))
                if drained.count != len(messages):
                    raise RuntimeError(f"{subject}: {drained.count} of {len(messages)} messages")
                result = Result(
                    subject,
                    run,
                    drained.count,
                    args.readings,
                    size,
                    drained.count / drained.elapsed_s,
                    drained.cpu_s / drained.count * 1e6,
                    drained.rss_bytes / 2**20,
                )
                progress(
                    f"run {run}: {subject} {result.messages_per_s:,.0f} messages/s, "
                    f"{result.cpu_us_per_message:.1f} µs CPU per message"
                )
                results.append(result)
    return results


def best(results: list[Result]) -> dict[str, Result]:
    """Each subject's fastest run: the one least disturbed by whatever else the machine did."""
    out: dict[str, Result] = {}
    for r in results:
        if r.subject not in out or r.messages_per_s > out[r.subject].messages_per_s:
            out[r.subject] = r
    return out


def table(results: list[Result], baseline: str) -> str:
    tops = best(results)
    base = tops.get(baseline)
    lines = [
        f"| subject | messages/s (best of {max(r.run for r in results)}) | ratio to {baseline} "
        "| CPU µs per message | RSS MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in tops.items():
        ratio = f"{r.messages_per_s / base.messages_per_s:.2f}" if base else "–"
        lines.append(
            f"| {name} | {r.messages_per_s:,.0f} | {ratio} | {r.cpu_us_per_message:.1f} | {r.rss_mib:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.mqtt_receive",
        description="How fast paho (the consumer's MQTT client) and mqtt.js (Node-RED's) take a QoS 1 "
        "backlog off the broker, doing nothing else with the messages.",
    )
    parser.add_argument(
        "--subject",
        dest="subjects",
        action="append",
        choices=SUBJECTS,
        help=f"repeatable (default: {' and '.join(DEFAULT_SUBJECTS)})",
    )
    parser.add_argument("--messages", type=int, default=50_000, help="backlog per run (50000)")
    parser.add_argument("--readings", type=int, default=10, help="readings per message (10)")
    parser.add_argument("--gateways", type=int, default=100, help="gateways the messages come from (100)")
    parser.add_argument("--sensors", type=int, default=10, help="sensors per gateway (10)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per subject; the best is reported (2)")
    parser.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="also write the JSON line to FILE"
    )
    parser.add_argument("--drain-paho", nargs=5, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drain_paho is not None:  # the paho subject's own process (run_subject)
        host, port, client_id, count, version = args.drain_paho
        drained = drain_paho(host, int(port), client_id, int(count), MQTTProtocolVersion(int(version)))
        print(json.dumps(asdict(drained)))
        return 0
    args.subjects = args.subjects or list(DEFAULT_SUBJECTS)
    if min(args.messages, args.readings, args.gateways, args.sensors, args.repeat) < 1:
        parser.error("--messages, --readings, --gateways, --sensors and --repeat must be positive")
    info = machine()
    progress(describe(info))
    with tempfile.TemporaryDirectory(prefix="bench-receive-") as tmp:
        try:
            results = measure(args, Path(tmp))
        except PeerError as exc:
            print(f"mqtt_receive: {exc}", file=sys.stderr)
            return 2
    print(f"MQTT receive ceiling, {describe(info)}\n")
    print(table(results, args.subjects[0]))
    line = json.dumps(
        {
            "benchmark": "mqtt_receive",
            "machine": info,
            "settings": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "drain_paho"
            },
            "runs": [asdict(r) for r in results],
            "best": {k: asdict(v) for k, v in best(results).items()},
        }
    )
    print(line)
    if args.json is not None:
        args.json.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
