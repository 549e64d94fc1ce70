"""Spool benchmark: what the consumer's durability (append + fsync before the MQTT ack) costs.

`--messages` messages of `--readings` line-protocol lines each (real reading lines, ~200 bytes)
are put into the spool one message at a time, each with an acknowledgement callback, while a
reader thread drains it as the store thread does (read, then `done`).  Measured: the time until
every acknowledgement has run and every line has been read back.  Three runs, same data:

- `spool, fsync`: the consumer's default (`spool.fsync: true`);
- `spool, no fsync`: `spool.fsync: false` (survives a process crash, not a power cut);
- `append only`: the floor, the same lines appended to one file with a flush per message and no
  reader, no fsync, no acknowledgements.  The ratios are what the spool costs.

    .venv/bin/python -m benchmarks.spool --messages 20000

Progress goes to stderr; results to stdout as a Markdown table and one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.edge_agent import describe, machine
from cloud import points
from cloud.registry import load_registry
from cloud.spool import Spool
from wire.telemetry import Reading

REGISTRY = Path(__file__).resolve().parents[1] / "deploy" / "cloud" / "registry.demo.yaml"


def progress(msg: str) -> None:
    print(f"[spool] {msg}", file=sys.stderr, flush=True)


def messages(n: int, readings: int) -> list[list[str]]:
    registry = load_registry(REGISTRY)
    sensor = registry.sensors[("demo-city", "river-radar-01")]
    site = registry.site_of(sensor)
    t0 = 1_763_700_000.0
    return [
        [
            points.reading_line(
                Reading(
                    sensor.id, "river_level", datetime.fromtimestamp(t0 + m * readings + i, tz=UTC), 1.5, "m"
                ),
                sensor,
                site,
            )
            for i in range(readings)
        ]
        for m in range(n)
    ]


def run_spool(batches: list[list[str]], directory: Path, fsync: bool) -> float:
    spool = Spool(directory, fsync=fsync)
    acked = threading.Event()
    count = [0]
    total = len(batches)

    def on_durable() -> None:
        count[0] += 1
        if count[0] == total:
            acked.set()

    lines_total = sum(len(b) for b in batches)
    read = [0]

    def reader() -> None:
        while read[0] < lines_total:
            batch = spool.read(5000, 0.5)
            if batch is not None:
                read[0] += len(batch.lines)
                spool.done(batch)

    drain = threading.Thread(target=reader)
    start = time.perf_counter()
    drain.start()
    for b in batches:
        spool.put(b, on_durable)
    acked.wait()
    drain.join()
    elapsed = time.perf_counter() - start
    spool.close()
    spool.close_reader()
    return elapsed


def run_append(batches: list[list[str]], path: Path) -> float:
    start = time.perf_counter()
    with open(path, "ab") as f:
        for b in batches:
            f.write("".join(ln + "\n" for ln in b).encode())
            f.flush()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages to spool (default 20000)")
    parser.add_argument("--readings", type=int, default=10, help="lines per message (default 10)")
    args = parser.parse_args(argv)
    info = machine()
    progress(f"building {args.messages} messages of {args.readings} lines")
    batches = messages(args.messages, args.readings)
    lines = args.messages * args.readings
    size = sum(len(ln) + 1 for b in batches for ln in b)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bosai-spool-bench-") as tmp:
        runs: list[tuple[str, Callable[[], float]]] = [
            ("spool, fsync", lambda: run_spool(batches, Path(tmp) / "fsync", True)),
            ("spool, no fsync", lambda: run_spool(batches, Path(tmp) / "nofsync", False)),
            ("append only", lambda: run_append(batches, Path(tmp) / "append.lp")),
        ]
        for name, fn in runs:
            progress(f"run: {name}")
            results[name] = fn()
    floor = results["append only"]
    print(
        f"Spool: {args.messages} messages x {args.readings} lines ({size / 1e6:.1f} MB); {describe(info)}\n"
    )
    print("| run | seconds | messages/s | lines/s | time vs append only |")
    print("|---|---|---|---|---|")
    for name, secs in results.items():
        rates = f"{args.messages / secs:,.0f} | {lines / secs:,.0f}"
        print(f"| {name} | {secs:.2f} | {rates} | {secs / floor:.1f}x |")
    out: dict[str, Any] = {
        "machine": info,
        "messages": args.messages,
        "readings": args.readings,
        "seconds": results,
    }
    print("\n" + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
