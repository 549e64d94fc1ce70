"""Consumer CPU benchmark: what one message costs the consumer's worker, stage by stage.

No broker, no database: the ingest benchmark's messages (benchmarks.loadgen: G gateways x S river
level sensors, R readings per message, a sample per sensor per minute) go straight into a
`Consumer` built from a real config and registry, as its worker thread would hand them over.
What the worker then does is measured, on one core, without MQTT, threads or the GIL in the way:

- `ingest`: decode, validate against the registry, sequence accounting (cloud.ingest);
- `consumer`: all of the worker's work on a message: ingest, the reading lines, detection
  (quality checks, levels, rates and forecasts, alert lifecycle), `detections` points; its lines
  are collected instead of going to the spool (benchmarks.spool measures that).

The first `--warmup` messages per gateway fill every detector's windows; the rest are timed.
Each stage runs `--repeat` times on fresh objects; the best run is reported (the least
disturbed by whatever else the machine is doing).  The readings/s figure is the ceiling of one
consumer process on this machine: the live ingest benchmark (benchmarks.ingest) adds MQTT, the
spool's fsync and the store.

    .venv/bin/python -m benchmarks.consumer_cpu
    .venv/bin/python -m benchmarks.consumer_cpu --profile 25     # also cProfile's top 25

Progress goes to stderr; results to stdout as a Markdown table and one line of JSON.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from benchmarks import loadgen
from benchmarks.edge_agent import describe, machine
from cloud.config import load_consumer_config
from cloud.consumer import Consumer
from cloud.ingest import Ingestor
from cloud.quarantine import Quarantine

Message = tuple[str, bytes]


def progress(msg: str) -> None:
    print(f"[consumer_cpu] {msg}", file=sys.stderr, flush=True)


def build_messages(spec: loadgen.LoadSpec, per_gateway: int) -> list[Message]:
    """Round-robin over the gateways, in sequence order: what the broker delivers."""
    return [
        (loadgen.topic(g), loadgen.payload(spec, g, seq))
        for seq in range(1, per_gateway + 1)
        for g in range(spec.gateways)
    ]


def make_consumer(workdir: Path, registry: Path) -> tuple[Consumer, list[str]]:
    """A consumer as deployed (validation, detection, alerting), with its store lines captured."""
    config = {
        "mqtt": {"url": "mqtt://127.0.0.1:1", "allow_insecure": True},  # never connected
        "registry": str(registry),
        "store": {"type": "lpfile", "path": str(workdir / "store")},
        "spool": {"path": str(workdir / "spool")},
        "alerts": {"log_path": str(workdir / "alerts.jsonl"), "state_path": str(workdir / "state")},
        "quarantine_path": str(workdir / "quarantine.jsonl"),
    }
    path = workdir / "consumer.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    consumer = Consumer(load_consumer_config(path), path)
    lines: list[str] = []

    # The worker hands each message's lines to the spool; here they are only collected.
    def collect(lines_in: list[str], on_durable: Callable[[], None] | None = None) -> None:
        lines.extend(lines_in)

    consumer._sink.put = collect  # type: ignore[method-assign,assignment]
    return consumer, lines


def stages(
    ingestor: Ingestor, consumer: Consumer, messages: list[Message], received: float
) -> dict[str, Callable[[], None]]:
    def ingest() -> None:
        for topic, payload in messages:
            ingestor.process(topic, payload, received)

    def consume() -> None:
        for topic, payload in messages:
            consumer.process_message(topic, payload, received)

    return {"ingest": ingest, "consumer": consume}


def timed(run: Callable[[], None], profile: int) -> tuple[float, str]:
    if not profile:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start, ""
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.runcall(run)
    elapsed = time.perf_counter() - start
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(profile)
    return elapsed, out.getvalue()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    total = args.warmup + args.messages
    spec = loadgen.LoadSpec(
        args.gateways,
        args.sensors,
        args.readings,
        t0_ms=now_ms - (total * args.readings // args.sensors + 2) * 60_000,
        sent_ms=now_ms,
    )
    progress(f"{args.gateways} gateways x {args.sensors} sensors, {args.readings} readings/message")
    messages = build_messages(spec, total)
    split = args.warmup * args.gateways
    warm, timed_part = messages[:split], messages[split:]
    readings = len(timed_part) * args.readings
    results: dict[str, float] = {}
    profiles: dict[str, str] = {}
    lines_per_reading = 0.0
    for attempt in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bosai-cpu-") as tmp:
            workdir = Path(tmp)
            registry = loadgen.write_registry(spec, workdir / "registry.yaml")
            consumer, lines = make_consumer(workdir, registry)
            ingestor = Ingestor(consumer.registry, consumer.config.validation, Quarantine(None))
            received = time.time()
            for topic, payload in warm:
                ingestor.process(topic, payload, received)
                consumer.process_message(topic, payload, received)
            stored_before = len(lines)
            for name, run in stages(ingestor, consumer, timed_part, received).items():
                profile = args.profile if attempt == args.repeat - 1 else 0
                elapsed, text = timed(run, profile)
                if profile:
                    profiles[name] = text
                else:
                    results[name] = min(results.get(name, float("inf")), elapsed)
                per_message = 1e6 * elapsed / len(timed_part)
                progress(f"run {attempt + 1}/{args.repeat}: {name} {per_message:.0f} us/message")
            stats = consumer.stats
            if stats.messages_rejected or stats.readings_rejected:
                raise RuntimeError(f"messages were rejected: {stats.rejected_by_reason}")
            lines_per_reading = (len(lines) - stored_before) / readings
    return {
        "benchmark": "consumer_cpu",
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "messages": len(timed_part),
        "readings": readings,
        "lines_per_reading": lines_per_reading,
        "stages": {
            name: {
                "us_per_message": 1e6 * s / len(timed_part),
                "us_per_reading": 1e6 * s / readings,
                "messages_per_s": len(timed_part) / s,
                "readings_per_s": readings / s,
            }
            for name, s in results.items()
        },
        "profiles": profiles,
    }


def table(result: dict[str, Any]) -> str:
    rows = [
        "| stage | µs / message | µs / reading | messages/s | readings/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in result["stages"].items():
        rows.append(
            f"| {name} | {s['us_per_message']:,.0f} | {s['us_per_reading']:,.1f} "
            f"| {s['messages_per_s']:,.0f} | {s['readings_per_s']:,.0f} |"
        )
    return "\n".join(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.consumer_cpu",
        description="CPU cost per message of the consumer's worker (ingest, then everything), "
        "without broker or database. Progress on stderr; a Markdown table and a JSON line on stdout.",
    )
    p.add_argument("--gateways", type=int, default=20, help="simulated gateways (default 20)")
    p.add_argument("--sensors", type=int, default=10, help="river level sensors per gateway (default 10)")
    p.add_argument("--readings", type=int, default=10, help="readings per message (default 10)")
    p.add_argument("--warmup", type=int, default=60, help="messages per gateway before timing (default 60)")
    p.add_argument("--messages", type=int, default=200, help="timed messages per gateway (default 200)")
    p.add_argument("--repeat", type=int, default=3, help="runs; the best is reported (default 3)")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="also print cProfile's top N")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the JSON line to FILE")
    args = p.parse_args(argv)
    if min(args.gateways, args.sensors, args.readings, args.messages, args.repeat) < 1 or args.warmup < 0:
        p.error("counts must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile:
        args.repeat += 1  # the profiled run is extra: cProfile's overhead must not count
    result = measure(args)
    progress(f"machine: {describe(result['machine'])}")
    print(table(result))
    print(f"\n{result['lines_per_reading']:.2f} stored lines per reading (readings + detections)")
    for name, text in result["profiles"].items():
        print(f"\n### cProfile: {name}\n```\n{text.strip()}\n```")
    line = json.dumps({k: v for k, v in result.items() if k != "profiles"})
    print(line)
    if args.json:
        args.json.write_text(line + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
