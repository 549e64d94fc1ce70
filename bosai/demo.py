"""`bosai demo`: simulators -> edge agent -> MQTT -> cloud consumer -> store, on one machine.

Everything runs on embedded defaults unless told otherwise: an amqtt broker inside this process
and a line-protocol file store.  The simulators play a scenario in compressed time; the scaled
clock starts `duration` before now, so the last sample is taken about when the demo ends and
every sample time is a real, plausible past time that the cloud's validation accepts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

import yaml

from bosai.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from bosai.paths import PROFILES_DIR, REPO_ROOT
from wire.alerts import Alert
from wire.clock import ScaledClock
from wire.configfile import ConfigError

log = logging.getLogger(__name__)

DEMO_REGISTRY = REPO_ROOT / "deploy" / "cloud" / "registry.demo.yaml"
JST = timezone(timedelta(hours=9))
# Demo sampling: every 2 minutes of scenario time, the fast-mode interval of Japanese
# crisis-management river gauges.  At the default speed that is one poll per sensor every 1/6 s.
DEMO_INTERVAL_S = 120.0


@dataclass(frozen=True)
class DemoOptions:
    scenario: str = "demo-storm"
    speed: float = 720.0
    output: Path = Path("demo-output")
    broker_url: str | None = None
    influx_url: str | None = None
    influx_org: str = "bosai"
    influx_bucket: str = "bosai"
    influx_token_file: str | None = None
    plots: bool = True


class Console:
    """Progress on one refreshing line (on a terminal), alerts printed above it as they fire."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._lock = threading.Lock()
        self._last_plain = 0.0

    def status(self, text: str) -> None:
        with self._lock:
            if self.tty:
                self.stream.write("\r\033[K" + text)
                self.stream.flush()
            elif time.monotonic() - self._last_plain >= 5.0:
                self._last_plain = time.monotonic()
                self.stream.write(text + "\n")
                self.stream.flush()

    def line(self, text: str) -> None:
        with self._lock:
            self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
            self.stream.flush()


def run_demo(opts: DemoOptions) -> int:
    from simulators.runner import load_scenario, resolve_scenario

    console = Console()
    if logging.getLogger().getEffectiveLevel() >= logging.INFO:
        # The progress line and the alert lines are the demo's output; component INFO logs
        # (connects, disconnects) would interleave with them.  --log-level DEBUG shows all.
        for name in ("edge", "cloud", "simulators", "influxdb_client"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        scenario = load_scenario(resolve_scenario(opts.scenario))
    except (ConfigError, FileNotFoundError) as exc:
        print(f"bosai demo: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if opts.speed <= 0:
        print("bosai demo: --speed must be positive", file=sys.stderr)
        return EXIT_CONFIG

    out = opts.output.resolve()
    work = out / "work"
    if work.exists():
        shutil.rmtree(work)  # a previous run's outbox and pty links; the report files are overwritten
    work.mkdir(parents=True)

    duration = float(scenario.duration)
    # End the scenario a little before real now: the agent may take one more sample while it
    # stops, and at 720x a second of wall time is 12 minutes of sensor time.  Samples from the
    # "future" would (rightly) be rejected by the cloud.
    margin = 10.0 * opts.speed
    clock = ScaledClock(start=time.time() - duration - margin, speed=opts.speed)
    console.line(
        f"bosai demo: scenario {scenario.name!r}, {duration / 3600:.1f} h of sensor time at {opts.speed:g}x "
        f"(about {duration / opts.speed:.0f} s); output in {out}"
    )

    broker = None
    broker_url = opts.broker_url
    if broker_url is None:
        from bosai.embedded_broker import EmbeddedBroker

        broker = EmbeddedBroker()
        broker.start()
        broker_url = broker.url
        console.line(f"  embedded MQTT broker (amqtt, MQTT 3.1.1) on {broker_url}")
    protocol = "3.1.1" if broker is not None else "5"

    try:
        return _run_pipeline(opts, scenario, clock, broker_url, protocol, out, work, console)
    finally:
        if broker is not None:
            broker.stop()


def _run_pipeline(
    opts: DemoOptions,
    scenario: Any,
    clock: ScaledClock,
    broker_url: str,
    protocol: str,
    out: Path,
    work: Path,
    console: Console,
) -> int:
    from cloud.config import load_consumer_config
    from cloud.consumer import Consumer

    consumer_cfg_path = _write_consumer_config(opts, broker_url, protocol, work)
    consumer = Consumer(load_consumer_config(consumer_cfg_path), consumer_cfg_path, clock=clock)
    alerts: list[Alert] = []

    def on_alert(alert: Alert) -> None:
        alerts.append(alert)
        console.line(_alert_line(alert))

    consumer.on_alert.append(on_alert)
    consumer.start()
    if not consumer.wait_ready(timeout=15):
        console.line("bosai demo: the cloud consumer could not subscribe to the broker")
        consumer.stop()
        return EXIT_FAILURE
    console.line("  cloud consumer subscribed; starting simulators and the edge agent")

    try:
        edge_stats = asyncio.run(
            _run_field(opts, scenario, clock, broker_url, protocol, work, consumer, console)
        )
    finally:
        consumer.drain(timeout=30)
        consumer.stop()
    console.line("")
    summary = _summarize(edge_stats, consumer, alerts, work, out)
    report_path = None
    if opts.plots:
        from bosai.report import write_report

        report_path = write_report(out, work / "store", DEMO_REGISTRY, summary)
    _print_summary(console, summary, report_path)
    return EXIT_OK if summary["ok"] else EXIT_FAILURE


async def _run_field(
    opts: DemoOptions,
    scenario: Any,
    clock: ScaledClock,
    broker_url: str,
    protocol: str,
    work: Path,
    consumer: Any,
    console: Console,
) -> dict[str, Any]:
    from edge.agent import Agent
    from edge.config import load_gateway
    from simulators.gateway_config import write_gateway_config
    from simulators.runner import SimulatorSet
    from simulators.uplink import broker_address, via_proxy

    # A scenario with link loss gets the gateway's uplink through the simulators' proxy.
    uplink = broker_address(broker_url) if scenario.link_losses() else None
    sims = SimulatorSet(scenario, clock, work / "sim", PROFILES_DIR, uplink=uplink)
    async with sims as endpoints:
        if endpoints.uplink is not None:
            console.line("  the gateway's uplink goes through a proxy that cuts it as the scenario says")
        gw_path = write_gateway_config(
            endpoints,
            via_proxy(broker_url, endpoints.uplink) if endpoints.uplink else broker_url,
            work / "gateway.yaml",
            protocol=protocol,
            interval=DEMO_INTERVAL_S,
            batch_interval=60.0,
        )
        agent = Agent(load_gateway(gw_path), clock)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        duration = float(scenario.duration)
        while clock.elapsed() < duration and not task.done():
            s, c = agent.stats, consumer.stats
            now = datetime.fromtimestamp(clock.now(), JST)
            console.status(
                f"  {now:%m-%d %H:%M} JST  sensor time {clock.elapsed() / 3600:5.2f}/{duration / 3600:.0f} h"
                " | "
                f"read {s.readings} (bad {s.readings_bad}) | acked msgs {s.messages_acked} | "
                f"stored {c.lines_written} | rejected {c.readings_rejected} | alerts {c.alerts}"
            )
            await asyncio.sleep(0.25)
        stop.set()
        await task
        sims.write_truth(work / "truth.jsonl", step_s=DEMO_INTERVAL_S)
        s = agent.stats
        return {
            "readings": s.readings,
            "readings_bad": s.readings_bad,
            "messages_queued": s.messages_queued,
            "messages_acked": s.messages_acked,
            "outbox_depth": s.outbox_depth,
            "sensor_errors": dict(s.sensor_errors),
            "requests_served": sims.requests_served,
        }


def _write_consumer_config(opts: DemoOptions, broker_url: str, protocol: str, work: Path) -> Path:
    store: dict[str, Any] = {"type": "lpfile", "path": str(work / "store")}
    if opts.influx_url:
        store = {
            "type": "influxdb",
            "url": opts.influx_url,
            "org": opts.influx_org,
            "bucket": opts.influx_bucket,
            "token_file": opts.influx_token_file,
            "flush_interval_ms": 500,
        }
    raw = {
        "mqtt": {
            "url": broker_url,
            "protocol": protocol,
            "allow_insecure": True,
            "client_id": "bosai-demo-cloud",
        },
        "registry": str(DEMO_REGISTRY),
        "store": store,
        # No reminders: in compressed time they would repeat every few seconds.
        "alerts": {
            "log_path": str(work / "alerts.jsonl"),
            "state_path": str(work / "alerts.db"),
            "disaster": {},
        },
        "quarantine_path": str(work / "quarantine.jsonl"),
    }
    if opts.influx_url:
        # With an external InfluxDB the report still needs the data: keep a local copy too.
        raw["archive"] = {"type": "lpfile", "path": str(work / "store")}
    path = work / "consumer.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _alert_line(a: Alert) -> str:
    when = a.ts.astimezone(JST).strftime("%H:%M")
    icons = {"raised": "ALERT", "escalated": "UP   ", "deescalated": "DOWN ", "resolved": "CLEAR"}
    icon = icons.get(a.event, a.event.upper()[:5])
    if a.category == "maintenance":
        icon = "MAINT" if a.event != "resolved" else "FIXED"
    return f"  {icon} {when} JST  [{a.sensor or a.gateway}] {a.reason}"


def _summarize(
    edge: dict[str, Any], consumer: Any, alerts: list[Alert], work: Path, out: Path
) -> dict[str, Any]:
    from cloud.writers.lpfile import read_lp_dir

    keys: set[tuple[str, str, int]] = set()
    stored_lines = 0
    for line in read_lp_dir(work / "store"):
        if line.measurement == "readings":
            stored_lines += 1
            keys.add((line.tags["sensor"], line.tags["kind"], line.ts_ms))
    c = consumer.stats
    summary: dict[str, Any] = {
        "edge": edge,
        "cloud": {
            "messages": c.messages,
            "readings_accepted": c.readings_accepted,
            "readings_rejected": c.readings_rejected,
            "rejected_by_reason": dict(c.rejected_by_reason),
            "lines_written": c.lines_written,
            "write_errors": c.write_errors,
            "lost": c.lost,
            "duplicated": c.duplicated,
            "alerts": c.alerts,
        },
        "store": {"reading_lines": stored_lines, "distinct_points": len(keys)},
        "alerts": [
            {
                "ts": a.ts.isoformat(),
                "event": a.event,
                "condition": a.condition,
                "category": a.category,
                "level": a.level,
                "site": a.site,
                "sensor": a.sensor,
                "kind": a.kind,
                "reason": a.reason,
            }
            for a in alerts
        ],
    }
    # Nothing lost, nothing invented: every reading the agent took was acknowledged by the
    # broker, accepted by the cloud and stored as exactly one point.  (QoS 1 may deliver a
    # message twice; a duplicate overwrites the same point, so distinct points are compared.)
    summary["ok"] = (
        edge["outbox_depth"] == 0
        and c.readings_rejected == 0
        and c.lost == 0
        and c.readings_accepted >= edge["readings"]
        and len(keys) == edge["readings"]
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    return summary


def _print_summary(console: Console, s: dict[str, Any], report: Path | None) -> None:
    e, c, st = s["edge"], s["cloud"], s["store"]
    console.line("Summary")
    console.line(
        f"  edge:  {e['readings']} readings ({e['readings_bad']} with a quality flag), "
        f"{e['messages_acked']} messages acknowledged by the broker, outbox left {e['outbox_depth']}"
    )
    console.line(
        f"  cloud: {c['messages']} messages, {c['readings_accepted']} readings accepted, "
        f"{c['readings_rejected']} rejected, {c['lost']} lost, {c['duplicated']} duplicated"
    )
    console.line(f"  store: {st['distinct_points']} distinct points ({st['reading_lines']} lines)")
    raised = [a for a in s["alerts"] if a["event"] in ("raised", "escalated") and a["category"] == "disaster"]
    maint = [a for a in s["alerts"] if a["event"] == "raised" and a["category"] == "maintenance"]
    console.line(
        f"  alerts: {len(s['alerts'])} events, {len(raised)} disaster alerts raised or escalated, "
        f"{len(maint)} maintenance alerts"
    )
    if report is not None:
        console.line(f"  report: {report}")
    console.line(
        "  result: " + ("OK - every reading accounted for" if s["ok"] else "PROBLEM - see summary.json")
    )
