"""The ingest benchmark's run: servers, subject, publishers, measurement window, drain, verification.

See benchmarks/ingest/__init__.py for what is measured and how.  Consumer scaling: `--consumers
1,2,4` measures the bosai subject with 1, 2 and 4 consumer processes in turn (rows "bosai",
"bosai x2 (shard)", ...), each against a fresh broker and database with the same message set;
`--split shard|shared` says how the processes divide the gateways (benchmarks/ingest/subjects.py).
The subject's CPU (summed over its processes, 100 % = one core) is measured over the window and its
resident memory at the window's end (benchmarks/ingest/usage.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.edge_agent import describe, machine
from benchmarks.ingest.control import CONTROL_STEP, BacklogControl
from benchmarks.ingest.infra import BrokerBacklog, KeepingVictoriaMetrics, bench_mosquitto
from benchmarks.ingest.subjects import (
    SPLITS,
    SUBJECTS,
    Environment,
    Subject,
    SubjectFactory,
    bosai_subject,
    subject_label,
)
from benchmarks.ingest.usage import CpuReading, Memory, cpu_percent, read_cpu, read_memory
from benchmarks.ingest.verify import Verdict, verify
from benchmarks.loadgen import (
    TENANT,
    LoadSpec,
    PublisherJob,
    Publishers,
    expected_series,
    samples_of,
    span_ms,
    write_registry,
)

MAX_SPAN_MS = 60 * 86400 * 1000  # sample times stay well inside the consumer's max_past_s (90 days)
END_MARGIN_MS = 600_000  # the newest sample is this long before the run starts
DEFAULT_INTERVAL_MS = 60_000  # sensors sampled once a minute, like the demo gateways
BUDGET_SLACK = 1.1  # messages prepared beyond (rate x run time)
READY_TIMEOUT = 120.0
PREPARE_TIMEOUT = 1200.0  # encoding a few million payloads on a loaded 2-core box


def progress(line: str) -> None:
    print(f"[ingest] {line}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Plan:
    """One row of the results: a subject kind (SUBJECTS), and for bosai its process layout."""

    kind: str
    consumers: int = 1
    split: str | None = None  # for bosai with consumers > 1: "shard" or "shared"

    @property
    def label(self) -> str:
        return self.kind if self.split is None else subject_label(self.consumers, self.split)

    @property
    def slug(self) -> str:
        """Its work directory's name."""
        return self.kind if self.split is None else f"{self.kind}-x{self.consumers}-{self.split}"

    def factory(self) -> SubjectFactory:
        if self.kind == "bosai":
            return bosai_subject(self.consumers, self.split or SPLITS[0])
        return SUBJECTS[self.kind]


def plans(args: argparse.Namespace) -> list[Plan]:
    """The rows in run order: each --subject in turn, bosai once per --consumers count (x --split)."""
    rows: list[Plan] = []
    for kind in args.subject:
        if kind != "bosai":
            rows.append(Plan(kind))
            continue
        for count in args.consumers:
            for split in [None] if count == 1 else args.split:
                rows.append(Plan(kind, count, split))
    return list(dict.fromkeys(rows))  # a subject named twice runs once


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the publishers started
    published: int  # messages handed to the broker (publishers' own counters)
    processed: int | None  # the subject's counter
    backlog: int | None  # messages the broker holds for the subject (baseline subtracted)


@dataclass(frozen=True)
class Result:
    subject: str  # the row's label, e.g. "bosai x2 (shard)"
    kind: str  # SUBJECTS key
    consumers: int  # processes of the subject
    split: str | None  # how several bosai processes divide the gateways; None for one
    gateways: int
    sensors: int
    readings_per_message: int
    batch_size: int
    publishers: int
    rate: float | None  # offered messages/s; None: saturation
    window_s: float
    measured_by: str  # "subject counter" or "database count"
    messages_per_s: float
    readings_per_s: float
    offered_messages_per_s: float  # what the publishers sent in the window
    db_readings_per_s: float  # samples landing in the database in the window
    backlog_min: int | None  # fewest messages waiting at the broker during the window
    publishers_exhausted: bool  # ran out of prepared messages before the window ended
    messages: int  # acknowledged by the broker in all
    readings: int
    drain_s: float  # from the end of publishing until the database held everything
    verified: bool
    missing: int
    duplicates: int
    wrong_values: int
    unexpected: int
    bad_tags: int
    cpu_percent: float | None  # the subject's processes over the window; 100 = one core
    rss_mib: float | None  # resident memory of its processes at the window's end, summed
    rss_peak_mib: float | None  # the most each process was resident at, summed
    notes: list[str]  # what the subject says after the drain (benchmarks/ingest/subjects.py)


def choose_spec(args: argparse.Namespace, per_gateway: int, now_ms: int) -> LoadSpec:
    spec = LoadSpec(args.gateways, args.sensors, args.readings, DEFAULT_INTERVAL_MS)
    samples = samples_of(spec, per_gateway, 0)
    interval = args.interval_ms or min(DEFAULT_INTERVAL_MS, MAX_SPAN_MS // max(1, samples))
    if interval < 1:
        raise RuntimeError(f"{samples} samples per sensor do not fit in {MAX_SPAN_MS // 86_400_000} days")
    spec = LoadSpec(args.gateways, args.sensors, args.readings, interval)
    first = now_ms - END_MARGIN_MS - span_ms(spec, per_gateway)
    return LoadSpec(args.gateways, args.sensors, args.readings, interval, first - first % 1000, now_ms)


def window_rate(samples: list[Sample], start: float, end: float, key: str) -> float:
    """Increase of `key` per second between the samples nearest to `start` and `end`."""
    a = min(samples, key=lambda s: abs(s.t - start))
    b = min(samples, key=lambda s: abs(s.t - end))
    va, vb = getattr(a, key), getattr(b, key)
    if va is None or vb is None or b.t <= a.t:
        return 0.0
    return float(vb - va) / (b.t - a.t)


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Each subject in turn, with the same message set, each against a fresh broker and database."""
    info = machine()
    progress(f"machine: {describe(info)}")
    run_s = args.warmup + args.duration
    offered = args.rate if args.rate is not None else args.max_rate
    per_gateway = math.ceil(offered * run_s * BUDGET_SLACK / args.gateways)
    spec = choose_spec(args, per_gateway, int(time.time() * 1000))
    registry = write_registry(spec, workdir / "registry.yaml")
    progress(
        f"load: {args.gateways} gateways x {args.sensors} sensors, {args.readings} readings/message, "
        f"{per_gateway} messages prepared per gateway, samples every {spec.interval_ms / 1000:g} s "
        f"from {time.strftime('%Y-%m-%d %H:%M', time.gmtime(spec.t0_ms / 1000))} UTC"
    )
    runs: list[dict[str, Any]] = []
    for plan in plans(args):
        result, verdict = run_subject(args, plan, spec, per_gateway, registry, workdir / plan.slug)
        runs.append({"result": asdict(result), "verdict": asdict(verdict)})
    info["loadavg_at_end"] = os.getloadavg()[0]
    return {
        "benchmark": "ingest",
        "machine": info,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "workdir")},
        "load": asdict(spec) | {"messages_prepared_per_gateway": per_gateway},
        "runs": runs,
    }


def run_subject(
    args: argparse.Namespace, plan: Plan, spec: LoadSpec, per_gateway: int, registry: Path, workdir: Path
) -> tuple[Result, Verdict]:
    with (
        bench_mosquitto(workdir / "mosquitto") as broker,
        KeepingVictoriaMetrics(workdir / "victoria-metrics") as vm,
    ):
        env = Environment(
            "127.0.0.1",  # the broker listens on loopback only
            broker.port,
            vm.url,
            registry,
            workdir / plan.kind,
            batch_size=args.batch_size,
        )
        progress(f"{plan.label}: broker {env.broker_url}, VictoriaMetrics {vm.url}, workdir {workdir}")
        with plan.factory()(env) as subject:
            if not subject.wait_ready(READY_TIMEOUT):
                raise RuntimeError(f"{subject.name} not ready after {READY_TIMEOUT:.0f} s{_tail(subject)}")
            progress(f"{subject.name}: ready")
            return measure(args, plan, spec, per_gateway, env, subject, vm)


def measure(
    args: argparse.Namespace,
    plan: Plan,
    spec: LoadSpec,
    per_gateway: int,
    env: Environment,
    subject: Subject,
    vm: KeepingVictoriaMetrics,
) -> tuple[Result, Verdict]:
    def stored() -> int:
        return vm.sample_count(f'readings_value{{tenant="{TENANT}"}}', spec.t0_ms)

    backlog = BrokerBacklog(env.broker_host, env.broker_port)
    try:
        if not backlog.wait(10):
            raise RuntimeError("the broker publishes no $SYS backlog count")
        jobs = [
            PublisherJob(
                i,
                spec,
                args.publishers,
                per_gateway,
                env.broker_host,
                env.broker_port,
                args.rate / args.publishers if args.rate is not None else None,
                args.inflight,
            )
            for i in range(args.publishers)
        ]
        publishers = Publishers(jobs)
        progress(
            f"publishers: encoding {per_gateway * args.gateways} messages in {args.publishers} processes"
        )
        prepared_at = time.monotonic()
        publishers.start(PREPARE_TIMEOUT)
        progress(f"publishers: ready after {time.monotonic() - prepared_at:.1f} s; go")
        time.sleep(1.5)  # a fresh $SYS count without our traffic
        baseline = backlog.value or 0
        samples: list[Sample] = []
        window = (args.warmup, args.warmup + args.duration)
        edges = Edges()
        started = time.monotonic()
        publishers.go()
        try:
            samples = _sample(args, subject, publishers, backlog, baseline, started, window, stored, edges)
        finally:
            results = publishers.stop()
        stopped = time.monotonic() - started
    finally:
        backlog.close()
    errors = [r.error for r in results if r.error]
    if errors:
        raise RuntimeError("; ".join(errors))
    if any(r.exhausted for r in results):
        progress("WARNING: publishers ran out of prepared messages before the window ended: raise --max-rate")
    acknowledged = {g: n for r in results for g, n in r.counts.items()}
    messages = sum(acknowledged.values())
    expected = expected_series(spec, acknowledged)
    readings = sum(e.count for e in expected.values())
    progress(
        f"publishing stopped after {stopped:.1f} s: {messages} messages, {readings} readings acknowledged"
    )
    drain_s = _drain(args, subject, stored, messages, readings)
    notes = subject.notes()
    for note in notes:
        progress(f"{subject.name}: {note}")
    progress("verifying every series in the database")
    verdict = verify(vm.url, spec, expected, TENANT)
    for line in verdict.examples:
        progress(f"  {line}")
    counts = Counts(messages, readings, drain_s)
    result = _result(args, plan, subject, samples, window, edges, results, counts, verdict, notes)
    return result, verdict


@dataclass
class Edges:
    """What is read at the window's start and end: the database's count (with when it was taken),
    the subject's CPU, and its memory at the end."""

    db_counts: dict[str, tuple[float, int]] = field(default_factory=dict)
    cpu: dict[str, CpuReading] = field(default_factory=dict)
    memory: Memory | None = None

    def reached(self, edge: str) -> bool:
        return edge in self.db_counts

    def read(self, edge: str, subject: Subject, t: float, stored: Callable[[], int]) -> None:
        pids = subject.pids()
        self.cpu[edge] = read_cpu(pids)
        if edge == "end":
            self.memory = read_memory(pids)
        self.db_counts[edge] = (t, stored())

    def cpu_percent(self) -> float | None:
        if "start" not in self.cpu or "end" not in self.cpu or not self.cpu["end"].seconds:
            return None
        return cpu_percent(self.cpu["start"], self.cpu["end"])


@dataclass(frozen=True)
class Counts:
    messages: int  # acknowledged by the broker
    readings: int
    drain_s: float


def _sample(
    args: argparse.Namespace,
    subject: Subject,
    publishers: Publishers,
    backlog: BrokerBacklog,
    baseline: int,
    started: float,
    window: tuple[float, float],
    stored: Callable[[], int],
    edges: Edges,
) -> list[Sample]:
    """Until the window's end: backlog control every CONTROL_STEP s; once a second a sample of the
    counters; the database's count and the subject's CPU at both edges of the window."""
    samples: list[Sample] = []
    control = BacklogControl(publishers.control.pause, args.backlog_seconds, args.backlog_cap)
    step = 0
    per_second = round(1 / CONTROL_STEP)
    while True:
        step += 1
        time.sleep(max(0.0, started + step * CONTROL_STEP - time.monotonic()))
        t = time.monotonic() - started
        published, processed = publishers.published(), subject.processed()
        held = None if backlog.value is None else max(0, backlog.value - baseline)
        waiting = published - processed if processed is not None else held
        if waiting is not None:
            control.update(t, published, waiting)
        if step % per_second:
            continue
        samples.append(Sample(t, published, processed, held))
        for edge, at in (("start", window[0]), ("end", window[1])):
            if not edges.reached(edge) and t >= at:
                edges.read(edge, subject, time.monotonic() - started, stored)
        if step % (5 * per_second) == 0:
            phase = "warm-up" if t < window[0] else "window"
            paused = " (publishers paused)" if control.pause.is_set() else ""
            progress(
                f"{t:5.0f} s ({phase}): published {published}, processed {processed}, broker backlog "
                f"{held}, taking {control.taking:.0f}/s{paused}"
            )
        if t >= window[1]:
            return samples


def _drain(
    args: argparse.Namespace, subject: Subject, stored: Callable[[], int], messages: int, readings: int
) -> float:
    """Seconds until the subject processed every message and the database holds every reading."""
    start = time.monotonic()
    deadline = start + args.drain_timeout
    last = -1.0
    while True:
        processed = subject.processed()
        in_db = stored()
        done = in_db >= readings and (processed is None or processed >= messages)
        elapsed = time.monotonic() - start
        if done or time.monotonic() > deadline:
            progress(f"drain: {in_db} of {readings} readings stored, processed {processed} ({elapsed:.1f} s)")
            return elapsed
        if elapsed - last >= 5:
            last = elapsed
            progress(f"drain: {in_db} of {readings} readings stored, processed {processed} of {messages}")
        time.sleep(1.0)


def _result(
    args: argparse.Namespace,
    plan: Plan,
    subject: Subject,
    samples: list[Sample],
    window: tuple[float, float],
    edges: Edges,
    results: list[Any],
    counts: Counts,
    verdict: Verdict,
    notes: list[str],
) -> Result:
    start, end = window
    in_window = [s for s in samples if start <= s.t <= end]
    db_rate = 0.0
    db_counts = edges.db_counts
    if "start" in db_counts and "end" in db_counts:
        (ta, ca), (tb, cb) = db_counts["start"], db_counts["end"]
        db_rate = (cb - ca) / (tb - ta) if tb > ta else 0.0
    counter = all(s.processed is not None for s in in_window) and bool(in_window)
    if counter:
        msg_rate = window_rate(samples, start, end, "processed")
        reading_rate = msg_rate * args.readings
    else:
        reading_rate = db_rate
        msg_rate = db_rate / args.readings
    backlogs = [s.backlog for s in in_window if s.backlog is not None]
    return Result(
        subject=subject.name,
        kind=plan.kind,
        consumers=plan.consumers,
        split=plan.split,
        gateways=args.gateways,
        sensors=args.sensors,
        readings_per_message=args.readings,
        batch_size=args.batch_size,
        publishers=args.publishers,
        rate=args.rate,
        window_s=end - start,
        measured_by="subject counter" if counter else "database count",
        messages_per_s=msg_rate,
        readings_per_s=reading_rate,
        offered_messages_per_s=window_rate(samples, start, end, "published"),
        db_readings_per_s=db_rate,
        backlog_min=min(backlogs) if backlogs else None,
        publishers_exhausted=any(r.exhausted for r in results),
        messages=counts.messages,
        readings=counts.readings,
        drain_s=counts.drain_s,
        verified=verdict.ok and verdict.expected_points > 0,
        missing=verdict.missing,
        duplicates=verdict.duplicates,
        wrong_values=verdict.wrong_values,
        unexpected=verdict.unexpected,
        bad_tags=verdict.bad_tags,
        cpu_percent=edges.cpu_percent(),
        rss_mib=None if edges.memory is None else edges.memory.rss_mib,
        rss_peak_mib=None if edges.memory is None else edges.memory.peak_mib,
        notes=notes,
    )


def _tail(subject: Subject) -> str:
    tail = getattr(subject, "log_tail", None)
    return f"\n{tail()}" if callable(tail) else ""


TABLE_HEADER = (
    "| subject | processes | gateways x sensors | readings/msg | batch | messages/s | readings/s "
    "| offered msg/s | CPU % | RSS MiB | backlog min | messages | readings | loss / duplicates |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def table_row(r: Result) -> str:
    check = (
        "none / none (verified)"
        if r.verified
        else f"{r.missing} missing, {r.duplicates} duplicated, {r.wrong_values} wrong, "
        f"{r.unexpected} unexpected, {r.bad_tags} bad tags"
    )
    rate_note = "" if r.rate is None else f" (at {r.rate:g} msg/s)"
    cpu = "-" if r.cpu_percent is None else f"{r.cpu_percent:.0f}"
    rss = "-" if r.rss_mib is None else f"{r.rss_mib:.0f}"
    backlog = "-" if r.backlog_min is None else str(r.backlog_min)
    return (
        f"| {r.subject}{rate_note} | {r.consumers} | {r.gateways} x {r.sensors} | {r.readings_per_message} "
        f"| {r.batch_size} | {r.messages_per_s:,.0f} | {r.readings_per_s:,.0f} "
        f"| {r.offered_messages_per_s:,.0f} | {cpu} | {rss} | {backlog} | {r.messages} | {r.readings} "
        f"| {check} |"
    )


def ratio_lines(results: list[Result]) -> list[str]:
    """The first row against each peer row, and each further bosai row against the first bosai row
    (the scaling factor of more consumer processes)."""
    lines: list[str] = []
    first = results[0]
    base = next((r for r in results if r.kind == "bosai"), None)
    for other in results[1:]:
        if other.kind == "bosai" and base is not None and other is not base:
            if base.messages_per_s > 0:
                ratio = other.messages_per_s / base.messages_per_s
                lines.append(f"{other.subject} / {base.subject}: {ratio:.2f}x the messages/s")
        elif other.messages_per_s > 0:
            ratio = first.messages_per_s / other.messages_per_s
            lines.append(f"{first.subject} / {other.subject}: {ratio:.2f}x the messages/s")
    return lines


def counts_list(text: str) -> list[int]:
    """ "1,2,4" -> [1, 2, 4]: consumer process counts, each at least 1."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every count must be at least 1")
    return counts


def splits_list(text: str) -> list[str]:
    splits = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [s for s in splits if s not in SPLITS]
    if not splits or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: each split must be one of {', '.join(SPLITS)}")
    return splits


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ingest",
        description="Ingest throughput of a subject (the bosai consumer or a peer) from a real Mosquitto "
        "into a real VictoriaMetrics, with zero loss and zero duplicates verified afterwards.  Progress on "
        "stderr; a Markdown table and a JSON line on stdout.",
    )
    parser.add_argument(
        "--subject",
        choices=sorted(SUBJECTS),
        action="append",
        help="what to measure (default bosai); repeat to measure several one after another with the "
        "same messages, each against a fresh broker and database, e.g. --subject bosai --subject nodered",
    )
    parser.add_argument(
        "--consumers",
        type=counts_list,
        action="append",
        metavar="N[,N...]",
        help="bosai consumer processes against the same broker and database (default 1); a list, e.g. "
        "1,2,4 (or repeated), measures each count in turn with the same messages",
    )
    parser.add_argument(
        "--split",
        type=splits_list,
        action="append",
        metavar="|".join(SPLITS),
        help="how several bosai processes divide the gateways: shard (default: each owns a hash share "
        "of the gateways, docs/scaling.md) or shared (one MQTT 5 shared subscription group); "
        "shard,shared measures both",
    )
    parser.add_argument("--gateways", type=int, default=100, help="simulated gateways (default 100)")
    parser.add_argument(
        "--sensors", type=int, default=10, help="river level sensors per gateway (default 10)"
    )
    parser.add_argument("--readings", type=int, default=10, help="readings per message (default 10)")
    parser.add_argument("--duration", type=float, default=60.0, metavar="S", help="window (default 60)")
    parser.add_argument("--warmup", type=float, default=10.0, metavar="S", help="before it (default 10)")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes (default 2)")
    parser.add_argument(
        "--batch-size", type=int, default=5000, help="lines per database write (default 5000)"
    )
    parser.add_argument(
        "--rate", type=float, default=None, metavar="MSG/S", help="offered load in all; default: saturation"
    )
    parser.add_argument(
        "--max-rate",
        type=float,
        default=25_000.0,
        metavar="MSG/S",
        help="saturation: prepare enough messages for this rate over warm-up + window (default 25000)",
    )
    parser.add_argument("--inflight", type=int, default=100, help="QoS 1 messages in flight per publisher")
    parser.add_argument(
        "--backlog-seconds",
        type=float,
        default=10.0,
        metavar="S",
        help="saturation: keep this many seconds of the subject's work queued at the broker (default 10)",
    )
    parser.add_argument(
        "--backlog-cap",
        type=int,
        default=200_000,
        help="never queue more messages than this at the broker (default 200000; it keeps 1000000)",
    )
    parser.add_argument(
        "--interval-ms", type=int, default=0, help="sample spacing per sensor (default: auto)"
    )
    parser.add_argument("--drain-timeout", type=float, default=600.0, metavar="S", help="default 600")
    parser.add_argument("--workdir", type=Path, metavar="DIR", help="keep configs and logs here")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the JSON line to FILE")
    args = parser.parse_args(argv)
    args.subject = args.subject or ["bosai"]
    args.consumers = list(dict.fromkeys(n for ns in args.consumers or [[1]] for n in ns))
    args.split = list(dict.fromkeys(s for ss in args.split or [[SPLITS[0]]] for s in ss))
    if min(args.gateways, args.sensors, args.readings, args.publishers, args.inflight) < 1:
        parser.error("--gateways, --sensors, --readings, --publishers and --inflight must be positive")
    if args.publishers > args.gateways:
        parser.error("--publishers cannot exceed --gateways (each publisher owns whole gateways)")
    if args.duration <= 0 or args.warmup < 0 or (args.rate is not None and args.rate <= 0):
        parser.error("--duration and --rate must be positive and --warmup not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers, the subject and the publishers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with contextlib.ExitStack() as stack:
        if args.workdir is not None:
            workdir = args.workdir.resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ingest-")))
        try:
            report = run(args, workdir)
        except RuntimeError as exc:
            progress(f"benchmark failed: {exc}")
            return 1
    results = [Result(**r["result"]) for r in report["runs"]]
    print(f"machine: {describe(report['machine'])}")
    print()
    print(TABLE_HEADER)
    for result in results:
        print(table_row(result))
    print()
    for result in results:
        for note in result.notes:
            print(f"{result.subject}: {note}")
    lines = ratio_lines(results)
    for text in lines:
        print(text)
    if lines or any(r.notes for r in results):
        print()
    line = json.dumps(report, ensure_ascii=False)
    print(line)
    if args.json is not None:
        args.json.write_text(line + "\n", encoding="utf-8")
    return 0 if all(r.verified for r in results) else 1
