"""Memory of detection state per sensor (issue 9): how much the detection engine keeps per series
once its windows are full, and that it grows linearly with the number of sensors.

    .venv/bin/python -m benchmarks.detect_memory                       # 100, 500, 2000 sensors
    .venv/bin/python -m benchmarks.detect_memory --sensors 5000 --samples 120

In-process, no servers.  For each size N: the ingest benchmark's registry (benchmarks/loadgen.py:
gateways of 10 river level gauges configured as the demo's, with rate and forecast windows) is
written to a temporary file and loaded with cloud.registry.load_registry; a fresh
cloud.detect.engine.Engine is fed K samples per sensor, one minute apart, time step by time step
across all sensors as the consumer sees them (Engine.reading, as cloud/consumer.py calls it).

Measured with tracemalloc, traced from just before the Engine is built: the memory still allocated
after the last sample (after gc.collect()), divided by N, and the peak while feeding (which includes
the transient Reading objects and detector work).  The longest window of these channels is the
forecast's 3600 s (60 samples), and the quality check's memory of past scales fills after about
60 accepted samples, so the default K = 120 is past saturation; the "at 2/3" column is the same
measure two thirds of the way through, equal to the final one (within a few hundred bytes: deques
allocate 64-slot blocks as they rotate) when the state has stopped growing.
tracemalloc slows the feeding down about tenfold, so the time per sample is not the engine's speed.

Results: a Markdown table and one JSON line on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from benchmarks.edge_agent import describe, machine
from benchmarks.latency.plan import SENSORS_PER_GATEWAY, parse_sensor_counts
from benchmarks.loadgen import KIND, TENANT, UNIT, LoadSpec, level, registry_document, sensor_id
from cloud.detect.engine import Engine
from cloud.registry import Channel, Registry, Sensor, Site, load_registry
from wire.telemetry import Reading

SAMPLE_SPACING = timedelta(minutes=1)  # as the demo gateways report
FIRST_SAMPLE = datetime(2026, 1, 1, tzinfo=UTC)
TOP_SITES = 5  # allocation sites listed for the largest size


def progress(line: str) -> None:
    print(f"[detect-memory] {line}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Result:
    sensors: int
    samples_per_sensor: int
    samples_fed: int
    series: int  # detectors the engine holds
    bytes_per_sensor: float  # still allocated after the last sample, per sensor
    bytes_per_sensor_at_two_thirds: float  # the same two thirds of the way through
    total_mib: float
    peak_mib: float  # tracemalloc's peak while feeding
    peak_bytes_per_sensor: float
    feed_s: float  # wall time of the feeding, under tracemalloc
    top_sites: list[str]  # largest allocation sites at the end (file:line, size, count)


@dataclass(frozen=True)
class Target:
    gateway: int
    index: int
    sensor: Sensor
    site: Site
    channel: Channel


def build_registry(sensors: int, directory: Path) -> tuple[Registry, list[Target]]:
    per_gateway = min(SENSORS_PER_GATEWAY, sensors)
    spec = LoadSpec(-(-sensors // per_gateway), per_gateway)
    path = directory / f"registry-{sensors}.yaml"
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path.write_text(yaml.dump(registry_document(spec), Dumper=dumper, sort_keys=False), encoding="utf-8")
    registry = load_registry(path)
    targets: list[Target] = []
    for g in range(spec.gateways):
        for s in range(spec.sensors):
            sensor = registry.sensors[(TENANT, sensor_id(g, s))]
            targets.append(Target(g, s, sensor, registry.site_of(sensor), sensor.channels[KIND]))
    return registry, targets


def _traced_now() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _top_sites(limit: int) -> Iterator[str]:
    stats = tracemalloc.take_snapshot().statistics("lineno")
    root = str(Path(__file__).resolve().parents[1]) + os.sep
    for stat in stats[:limit]:
        frame = stat.traceback[0]
        where = frame.filename.removeprefix(root)
        yield f"{where}:{frame.lineno} {stat.size / 1024:.0f} KiB in {stat.count} blocks"


def measure(sensors: int, samples: int, directory: Path, top: int) -> Result:
    registry, targets = build_registry(sensors, directory)
    times = [FIRST_SAMPLE + n * SAMPLE_SPACING for n in range(samples)]
    checkpoint = max(1, (2 * samples) // 3)
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = _traced_now()
        engine = Engine(registry)
        at_checkpoint = 0
        started = time.perf_counter()
        for n, ts in enumerate(times):
            for t in targets:
                reading = Reading(t.sensor.id, KIND, ts, level(t.gateway, t.index, n), UNIT)
                engine.reading(reading, t.sensor, t.site, t.channel)
            if n + 1 == checkpoint:
                at_checkpoint = _traced_now() - before
        feed_s = time.perf_counter() - started
        after = _traced_now() - before
        peak = tracemalloc.get_traced_memory()[1] - before
        sites = list(_top_sites(top)) if top else []
        series = len(engine.series)
        del engine
    finally:
        tracemalloc.stop()
    n_sensors = len(targets)
    return Result(
        sensors=n_sensors,
        samples_per_sensor=samples,
        samples_fed=n_sensors * samples,
        series=series,
        bytes_per_sensor=round(after / n_sensors, 1),
        bytes_per_sensor_at_two_thirds=round(at_checkpoint / n_sensors, 1),
        total_mib=round(after / 2**20, 2),
        peak_mib=round(peak / 2**20, 2),
        peak_bytes_per_sensor=round(peak / n_sensors, 1),
        feed_s=round(feed_s, 2),
        top_sites=sites,
    )


TABLE_HEADER = (
    "| sensors | samples per sensor | samples fed | bytes per sensor | at 2/3 of the samples "
    "| total MiB | peak MiB (per sensor) |\n"
    "|---:|---:|---:|---:|---:|---:|---:|"
)


def table_row(r: Result) -> str:
    return (
        f"| {r.sensors:,} | {r.samples_per_sensor} | {r.samples_fed:,} | {r.bytes_per_sensor:,.0f} "
        f"| {r.bytes_per_sensor_at_two_thirds:,.0f} | {r.total_mib:.1f} "
        f"| {r.peak_mib:.1f} ({r.peak_bytes_per_sensor:,.0f} B) |"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.detect_memory",
        description="Memory the detection engine keeps per sensor once its windows are full "
        "(tracemalloc, in-process).  Progress on stderr; a Markdown table and a JSON line on stdout.",
    )
    parser.add_argument(
        "--sensors", default="100,500,2000", help="sizes, a comma list (default 100,500,2000)"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=120,
        help="samples per sensor, one minute apart (default 120: past the 60-sample forecast window)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the JSON line to FILE")
    args = parser.parse_args(argv)
    try:
        args.sensors = parse_sensor_counts(args.sensors)
    except ValueError as exc:
        parser.error(f"--sensors: {exc}")
    if args.samples < 1:
        parser.error("--samples must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    progress(f"machine: {describe(info)}")
    results: list[Result] = []
    largest = max(args.sensors)
    with tempfile.TemporaryDirectory(prefix="bench-detect-memory-") as tmp:
        for sensors in args.sensors:
            progress(f"{sensors} sensors x {args.samples} samples")
            r = measure(sensors, args.samples, Path(tmp), TOP_SITES if sensors == largest else 0)
            progress(
                f"  {r.bytes_per_sensor:,.0f} bytes per sensor ({r.total_mib:.1f} MiB), peak "
                f"{r.peak_mib:.1f} MiB, fed in {r.feed_s:.1f} s"
            )
            results.append(r)
    info["loadavg_at_end"] = os.getloadavg()[0]
    print(f"machine: {describe(info)}")
    print()
    print(TABLE_HEADER)
    for r in results:
        print(table_row(r))
    print()
    for site in next((r.top_sites for r in results if r.top_sites), []):
        print(f"- {site}")
    print()
    report = {
        "benchmark": "detect_memory",
        "machine": info,
        "settings": {"sensors": args.sensors, "samples": args.samples},
        "runs": [asdict(r) for r in results],
    }
    line = json.dumps(report, ensure_ascii=False)
    print(line)
    if args.json is not None:
        args.json.write_text(line + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
