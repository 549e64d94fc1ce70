"""One latency run per sensor count: servers, consumer, background load, probes, measurement.

See benchmarks/latency/__init__.py for what is measured and how.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.edge_agent import cpu_seconds, describe, machine, memory_kib
from benchmarks.ingest.infra import KeepingVictoriaMetrics, bench_mosquitto
from benchmarks.ingest.subjects import Environment
from benchmarks.latency.plan import (
    BackgroundPlan,
    background_plan,
    cpu_percent,
    parse_sensor_counts,
    percentile,
    probe_slots,
)
from benchmarks.latency.probe import (
    PROBE_HIGH,
    PROBE_LOW,
    PROBE_SENSOR,
    NotifyingConsumer,
    ProbeClient,
    QueryablePoller,
    WebhookRecorder,
    write_registry_with_probe,
)
from benchmarks.loadgen import LoadSpec, PublisherJob, Publishers
from cloud.metrics import latency_quantile
from cloud.stats import LatencySummary

READY_TIMEOUT = 180.0  # the consumer loads the registry (10k sensors: seconds of YAML) first
PREPARE_TIMEOUT = 300.0
INFLIGHT = 100
ALERT_LATENCY_METRIC = "bosai_consumer_alert_latency_seconds"


def progress(line: str) -> None:
    print(f"[latency] {line}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ConsumerLatency:
    """The consumer's own histogram: message arrival -> alert event handed to the outputs."""

    count: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class RunResult:
    sensors: int
    gateways: int
    rate: float | None  # --rate, if given
    interval_s: float
    window_s: float
    offered_messages_per_s: float  # planned
    messages_per_s: float  # background messages handed to the broker in the window
    readings_per_s: float
    consumer_start_s: float  # process start -> subscribed (includes loading the registry)
    consumer_cpu_percent: float  # of one core, over the window
    consumer_rss_mib: float  # VmRSS at the window's end
    consumer_hwm_mib: float  # peak VmRSS since start
    probes: int
    notified: int
    notify_ms: dict[str, float | None]  # p50, p95, p99, max
    missed: list[str]  # probes without a notification: "#index at T"
    queryable: int
    queryable_ms: dict[str, float | None]  # p50, p99, max
    consumer_latency: ConsumerLatency | None
    notify_each_ms: list[float | None]  # per probe, in order (None: not notified)
    queryable_each_ms: list[float | None]
    other_alerts: dict[str, int] = field(default_factory=dict)  # condition/event -> count, not the probe's
    poll_errors: int = 0

    @property
    def ok(self) -> bool:
        return self.notified == self.probes and self.queryable == self.probes


def summarise(seconds: list[float], quantiles: tuple[tuple[str, float], ...]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, q in quantiles:
        v = percentile(seconds, q)
        out[name] = None if v is None else round(v * 1000, 2)
    out["max"] = round(max(seconds) * 1000, 2) if seconds else None
    return out


def consumer_latency(metrics_text: str) -> ConsumerLatency | None:
    """The consumer's alert latency histogram from its /metrics text, with its p50/p99 estimated
    as PromQL's histogram_quantile would (cloud.metrics.latency_quantile)."""
    for family in text_string_to_metric_families(metrics_text):
        if family.name != ALERT_LATENCY_METRIC:
            continue
        buckets: list[tuple[float, int]] = []
        count, total = 0, 0.0
        for s in family.samples:
            if s.name.endswith("_bucket") and s.labels.get("le") != "+Inf":
                buckets.append((float(s.labels["le"]), int(s.value)))
            elif s.name.endswith("_count"):
                count = int(s.value)
            elif s.name.endswith("_sum"):
                total = s.value
        buckets.sort()
        counts = (*(n for _, n in buckets), count)
        summary = LatencySummary(tuple(b for b, _ in buckets), counts, count, total)
        return ConsumerLatency(count, _quantile_ms(summary, 0.5), _quantile_ms(summary, 0.99))
    return None


def _quantile_ms(summary: LatencySummary, q: float) -> float | None:
    v = latency_quantile(summary, q)
    return None if v is None else round(v * 1000, 2)


def fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text: str = resp.read().decode()
            return text
    except (OSError, urllib.error.URLError):
        return None


def other_alerts(path: Path) -> dict[str, int]:
    """Alert events in the consumer's log other than the probe's level episodes, by condition and
    event ("probe " first for the probe's own, e.g. a step held back as suspect_data).  There
    should be none: the background sensors stay well below their thresholds."""
    counts: Counter[str] = Counter()
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            alert = json.loads(line)
            probe = alert.get("sensor") == PROBE_SENSOR
            if not (probe and alert.get("condition") == "level"):
                counts[f"{'probe ' if probe else ''}{alert.get('condition')}/{alert.get('event')}"] += 1
    return dict(counts)


def run_one(args: argparse.Namespace, sensors: int, workdir: Path) -> RunResult:
    slots = probe_slots(args.duration, args.probes_every)
    run_s = args.warmup + args.duration + args.settle
    plan = background_plan(sensors, args.interval, args.rate, run_s)
    now_ms = int(time.time() * 1000)
    spec = LoadSpec(
        plan.gateways,
        plan.sensors_per_gateway,
        plan.sensors_per_gateway,  # one message carries one sample of each of the gateway's sensors
        max(1, round(plan.period_s * 1000)),  # sample spacing = the gateway's publishing period
        now_ms - now_ms % 1000,
    )
    workdir.mkdir(parents=True, exist_ok=True)
    registry = write_registry_with_probe(spec, workdir / "registry.yaml")
    progress(
        f"{plan.sensors} sensors: {plan.gateways} gateways x {plan.sensors_per_gateway}, "
        f"{plan.messages_per_s:.2f} msg/s ({plan.readings_per_s:.1f} readings/s) in the background, "
        f"{len(slots)} probes every {args.probes_every:g} s"
    )
    with (
        bench_mosquitto(workdir / "mosquitto") as broker,
        KeepingVictoriaMetrics(workdir / "victoria-metrics") as vm,
        WebhookRecorder() as hook,
    ):
        env = Environment("127.0.0.1", broker.port, vm.url, registry, workdir / "bosai")
        started = time.monotonic()
        with NotifyingConsumer(env, hook.url) as consumer:
            if not consumer.wait_ready(READY_TIMEOUT):
                raise RuntimeError(f"consumer not ready after {READY_TIMEOUT:.0f} s\n{consumer.log_tail()}")
            start_s = time.monotonic() - started
            progress(f"consumer ready after {start_s:.1f} s (registry loaded, subscribed)")
            return measure(args, plan, spec, slots, env, consumer, vm, hook, start_s)


def measure(
    args: argparse.Namespace,
    plan: BackgroundPlan,
    spec: LoadSpec,
    slots: list[Any],
    env: Environment,
    consumer: NotifyingConsumer,
    vm: KeepingVictoriaMetrics,
    hook: WebhookRecorder,
    start_s: float,
) -> RunResult:
    pid = consumer.pid
    assert pid is not None
    publishers_n = min(args.publishers, plan.gateways)
    jobs = [
        PublisherJob(
            i,
            spec,
            publishers_n,
            plan.per_gateway,
            env.broker_host,
            env.broker_port,
            plan.messages_per_s / publishers_n,
            INFLIGHT,
        )
        for i in range(publishers_n)
    ]
    publishers = Publishers(jobs)
    publishers.start(PREPARE_TIMEOUT)
    probe = ProbeClient(env.broker_host, env.broker_port)
    sent: dict[int, tuple[int, float]] = {}  # probe index -> (sample time ms, publish time)
    try:
        if not probe.wait_connected(30):
            raise RuntimeError("the probe could not connect to the broker")
        with QueryablePoller(vm.url) as poller:
            publishers.go()
            # The probe's series exists before the first probe, as a deployed gauge's does: a new
            # series takes VictoriaMetrics seconds longer to show in queries than a new point.
            probe.send(PROBE_LOW)
            progress(f"background publishing; warm-up {args.warmup:g} s")
            time.sleep(args.warmup)
            t0, cpu0, published0 = time.monotonic(), cpu_seconds(pid), publishers.published()
            for slot in slots:
                _sleep_until(t0 + slot.high_at)
                ts_ms, published = probe.send(PROBE_HIGH)
                sent[slot.index] = (ts_ms, published)
                poller.expect(ts_ms, published)
                _sleep_until(t0 + slot.low_at)
                probe.send(PROBE_LOW)
                if (slot.index + 1) % 10 == 0:
                    progress(
                        f"  {slot.index + 1} of {len(slots)} probes sent, {len(hook.deliveries())} notified"
                    )
            _sleep_until(t0 + args.duration)
            wall = time.monotonic() - t0
            try:
                cpu1, memory = cpu_seconds(pid), memory_kib(pid)
            except OSError:  # /proc/PID is gone
                raise RuntimeError(f"the consumer exited during the window\n{consumer.log_tail()}") from None
            published1 = publishers.published()
            # Late notifications and points still count (and show in the maximum), up to --settle s.
            deadline = time.monotonic() + args.settle
            while time.monotonic() < deadline and (len(_matched(hook, sent)) < len(sent) or poller.pending()):
                time.sleep(0.05)
            visible = dict(poller.visible)
            poll_errors = poller.errors
    finally:
        probe.close()
        results = publishers.stop()
    errors = [r.error for r in results if r.error]
    if errors:
        raise RuntimeError("; ".join(errors))
    matched = _matched(hook, sent)
    notify = [matched[i] - sent[i][1] for i in sorted(matched)]
    queryable = [visible[ts] for ts, _ in sent.values() if ts in visible]
    missed = [f"#{i} at {sent[i][0] / 1000:.3f}" for i in sorted(sent) if i not in matched]
    metrics_text = fetch(consumer.metrics_url)
    messages_per_s = (published1 - published0) / wall
    return RunResult(
        sensors=plan.sensors,
        gateways=plan.gateways,
        rate=args.rate,
        interval_s=args.interval,
        window_s=round(wall, 3),
        offered_messages_per_s=round(plan.messages_per_s, 3),
        messages_per_s=round(messages_per_s, 3),
        readings_per_s=round(messages_per_s * plan.sensors_per_gateway, 2),
        consumer_start_s=round(start_s, 2),
        consumer_cpu_percent=round(cpu_percent(cpu0, cpu1, wall), 1),
        consumer_rss_mib=round(memory["VmRSS"] / 1024, 1),
        consumer_hwm_mib=round(memory["VmHWM"] / 1024, 1),
        probes=len(sent),
        notified=len(matched),
        notify_ms=summarise(notify, (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))),
        missed=missed,
        queryable=len(queryable),
        queryable_ms=summarise(queryable, (("p50", 0.5), ("p99", 0.99))),
        consumer_latency=consumer_latency(metrics_text) if metrics_text else None,
        notify_each_ms=[_round_ms(matched[i] - sent[i][1]) if i in matched else None for i in sorted(sent)],
        queryable_each_ms=[_round_ms(visible[ts]) if ts in visible else None for ts, _ in sent.values()],
        other_alerts=other_alerts(consumer.alerts_path),
        poll_errors=poll_errors,
    )


def _matched(hook: WebhookRecorder, sent: dict[int, tuple[int, float]]) -> dict[int, float]:
    """Probe index -> arrival time of its `raised` notification (matched on the sample time the
    alert carries, which is the crossing reading's own: raised on any later reading, it would
    not match)."""
    by_ts = {ts: i for i, (ts, _) in sent.items()}
    out: dict[int, float] = {}
    for d in hook.deliveries():
        a = d.alert
        if a is None or a.sensor != PROBE_SENSOR or a.event != "raised":
            continue
        i = by_ts.get(round(a.ts.timestamp() * 1000))
        if i is not None and i not in out:
            out[i] = d.arrived
    return out


def _round_ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.monotonic()))


def run(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], list[RunResult]]:
    info = machine()
    progress(f"machine: {describe(info)}")
    results: list[RunResult] = []
    for sensors in args.sensors:
        result = run_one(args, sensors, workdir / f"sensors-{sensors}")
        progress(
            f"{result.sensors} sensors: {result.notified}/{result.probes} notified, p50 "
            f"{result.notify_ms['p50']} ms, p99 {result.notify_ms['p99']} ms; queryable p50 "
            f"{result.queryable_ms['p50']} ms"
        )
        results.append(result)
    info["loadavg_at_end"] = os.getloadavg()[0]
    report = {
        "benchmark": "latency",
        "machine": info,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "workdir")},
        "runs": [asdict(r) for r in results],
    }
    return report, results


TABLE_HEADER = (
    "| sensors (gateways) | background msg/s | readings/s | consumer CPU % | RSS MiB | start s "
    "| notified | notify p50 / p95 / p99 / max ms | queryable p50 / p99 ms | consumer p50 / p99 ms |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def table_row(r: RunResult) -> str:
    n, q, c = r.notify_ms, r.queryable_ms, r.consumer_latency
    own = f"{_ms(c.p50_ms)} / {_ms(c.p99_ms)}" if c is not None else "-"
    return (
        f"| {r.sensors:,} ({r.gateways:,}) | {r.messages_per_s:,.1f} | {r.readings_per_s:,.0f} "
        f"| {r.consumer_cpu_percent:.1f} | {r.consumer_rss_mib:.0f} | {r.consumer_start_s:.1f} "
        f"| {r.notified}/{r.probes} | {_ms(n['p50'])} / {_ms(n['p95'])} / {_ms(n['p99'])} / {_ms(n['max'])} "
        f"| {_ms(q['p50'])} / {_ms(q['p99'])} | {own} |"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.latency",
        description="Alert latency under load: a probe crossing a threshold every few seconds while "
        "background gateways report, through a real Mosquitto, the consumer (its own process) and a "
        "webhook notifier; also publish -> queryable in VictoriaMetrics, and the consumer's CPU and "
        "memory as the number of sensors grows.  Progress on stderr; a Markdown table and a JSON "
        "line on stdout.",
    )
    parser.add_argument(
        "--sensors",
        default="100,1000,10000",
        help="background sensors, a comma list run one after another, each with a fresh broker, "
        "database and consumer (default 100,1000,10000); gateways of 10 sensors",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=60.0,
        metavar="S",
        help="reporting interval of each background sensor: readings/s = sensors / S (default 60)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="MSG/S",
        help="background messages/s in all instead of sensors / interval / 10 (e.g. half of saturation)",
    )
    parser.add_argument("--duration", type=float, default=60.0, metavar="S", help="window (default 60)")
    parser.add_argument(
        "--warmup", type=float, default=5.0, metavar="S", help="background load before it (default 5)"
    )
    parser.add_argument(
        "--probes-every", type=float, default=2.0, metavar="S", help="one crossing every S s (default 2)"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=15.0,
        metavar="S",
        help="after the window, wait up to S s for late notifications and points (default 15)",
    )
    parser.add_argument(
        "--publishers", type=int, default=2, help="background publisher processes (default 2)"
    )
    parser.add_argument("--workdir", type=Path, metavar="DIR", help="keep configs and logs here")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the JSON line to FILE")
    args = parser.parse_args(argv)
    try:
        args.sensors = parse_sensor_counts(args.sensors)
    except ValueError as exc:
        parser.error(f"--sensors: {exc}")
    if min(args.interval, args.duration, args.probes_every) <= 0 or (
        args.rate is not None and args.rate <= 0
    ):
        parser.error("--interval, --duration, --probes-every and --rate must be positive")
    if args.warmup < 0 or args.settle < 0 or args.publishers < 1:
        parser.error("--warmup and --settle must not be negative, --publishers positive")
    if args.probes_every > args.duration:
        parser.error("--probes-every must not exceed --duration")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: servers and consumer stop
    with contextlib.ExitStack() as stack:
        if args.workdir is not None:
            workdir = args.workdir.resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-latency-")))
        try:
            report, results = run(args, workdir)
        except RuntimeError as exc:
            progress(f"benchmark failed: {exc}")
            return 1
    print(f"machine: {describe(report['machine'])}")
    print()
    print(TABLE_HEADER)
    for r in results:
        print(table_row(r))
    print()
    for r in results:
        if r.missed:
            print(f"{r.sensors} sensors: probes not notified: {', '.join(r.missed)}")
        if r.queryable < r.probes:
            print(f"{r.sensors} sensors: {r.probes - r.queryable} probe points never queryable")
        if r.other_alerts:
            print(f"{r.sensors} sensors: other alert events: {r.other_alerts}")
    line = json.dumps(report, ensure_ascii=False)
    print(line)
    if args.json is not None:
        args.json.write_text(line + "\n", encoding="utf-8")
    return 0 if all(r.ok for r in results) else 1
