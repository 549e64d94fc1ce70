"""`bosai edge ...`: run the gateway agent, or check a gateway config.

Only argparse at import time; the agent (pymodbus, paho, pyserial) is imported by the handlers.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.agent import Agent
    from edge.config import LoadedGateway, SensorConfig
    from wire.telemetry import Reading

from bosai.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    edge = sub.add_parser(
        "edge",
        help="the gateway agent: poll sensors, publish over MQTT",
        description="The gateway agent: poll field sensors, decode them by profile, publish over MQTT.",
    )
    cmds = edge.add_subparsers(dest="edge_command", metavar="COMMAND", required=True)

    run = cmds.add_parser(
        "run",
        help="run the agent (or read every sensor once with --once)",
        description="Run the gateway agent until Ctrl-C / SIGTERM.  With --once, read every sensor "
        "once, print a table and exit (0 if every sensor answered, 1 if any failed).",
    )
    run.add_argument("--config", required=True, type=Path, metavar="FILE", help="gateway config (YAML)")
    run.add_argument("--once", action="store_true", help="read every sensor once, print a table, exit")
    run.add_argument("--outbox", type=Path, metavar="PATH", help="outbox database (overrides the config)")
    run.set_defaults(handler=_run)

    validate = cmds.add_parser(
        "validate",
        help="validate a gateway config and its profiles",
        description="Validate a gateway config, the profiles it uses and the MQTT credential and TLS "
        "files, without touching any port; print each sensor's polling and report policy and the "
        "config hash the agent announces in its birth message.  Exit 0 if valid, 2 with the first "
        "problem otherwise.",
    )
    validate.add_argument("config", type=Path, metavar="CONFIG", help="gateway config (YAML)")
    validate.set_defaults(handler=_validate)
    outbox = cmds.add_parser(
        "outbox",
        help="show what the outbox holds (safe while the agent runs)",
        description="Show what the gateway's outbox holds: messages waiting for the broker's "
        "acknowledgement (urgent ones among them), their size and age, readings not yet sealed, "
        "the next sequence number and what the size bound dropped.  Read-only: safe while the "
        "agent runs.  Exit 0, or 1 if the outbox cannot be read.",
    )
    outbox.add_argument("--config", required=True, type=Path, metavar="FILE", help="gateway config (YAML)")
    outbox.add_argument("--outbox", type=Path, metavar="PATH", help="outbox database (overrides the config)")
    outbox.set_defaults(handler=_outbox)
    # The first release's spelling, kept for scripts; not advertised.
    check = cmds.add_parser("check-config", description="Same as `validate CONFIG`.")
    check.add_argument("--config", required=True, type=Path, metavar="FILE", help="gateway config (YAML)")
    check.set_defaults(handler=_validate)


def _load(path: Path) -> LoadedGateway | None:
    from edge.config import load_gateway
    from wire.configfile import ConfigError

    try:
        return load_gateway(path)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return None


def _validate(args: argparse.Namespace) -> int:
    from edge.config import config_hash
    from wire.configfile import ConfigError
    from wire.mqttconf import read_password, tls_context

    gw = _load(args.config)
    if gw is None:
        return EXIT_CONFIG
    cfg = gw.config
    try:
        read_password(cfg.mqtt, gw.path)
        if cfg.mqtt.use_tls:
            tls_context(cfg.mqtt.tls, gw.path)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    counts = f"{len(cfg.buses)} buses, {len(cfg.sensors)} sensors"
    print(f"{gw.path}: ok ({counts}, tenant {cfg.tenant}, gateway {cfg.gateway})")
    print(f"config hash {config_hash(gw)}")
    print(format_policies(gw))
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from edge.agent import Agent
    from edge.outbox import OutboxError
    from wire.configfile import ConfigError

    gw = _load(args.config)
    if gw is None:
        return EXIT_CONFIG
    agent = Agent(gw, outbox_path=args.outbox)
    if args.once:
        readings = asyncio.run(agent.read_once())
        print(format_table(readings))
        return EXIT_OK if all(r.q == "ok" for r in readings) else EXIT_FAILURE
    try:
        interrupted = asyncio.run(_run_until_signal(agent))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OutboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


async def _run_until_signal(agent: Agent) -> bool:
    """Run until SIGINT (-> True, exit 130) or SIGTERM (-> False, a normal service stop)."""
    stop = asyncio.Event()
    got: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: int) -> None:
        got.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    await agent.run(stop)
    return signal.SIGINT in got


def _outbox(args: argparse.Namespace) -> int:
    import time

    from edge.outbox import OutboxError, summarize

    gw = _load(args.config)
    if gw is None:
        return EXIT_CONFIG
    path = args.outbox if args.outbox is not None else gw.resolve(gw.config.outbox.path)
    if not path.exists():
        print(f"{path}: no outbox yet (the agent has not run with this config)")
        return EXIT_OK
    try:
        s = summarize(path)
    except OutboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    age = "" if s.oldest_created is None else f", oldest {time.time() - s.oldest_created:.0f} s old"
    print(f"{path}")
    print(f"  waiting for PUBACK  {s.messages} messages ({s.urgent} urgent), {s.bytes} bytes{age}")
    print(f"  not yet sealed      {s.staged} readings")
    print(f"  next sequence no.   {s.next_seq}")
    print(f"  dropped (bound)     {s.dropped} messages, {s.dropped_readings} readings")
    return EXIT_OK


def format_policies(gw: LoadedGateway) -> str:
    """One line per sensor: where it is, how often it is polled and what is sent."""
    rows = [("SENSOR", "PROFILE", "BUS", "EVERY", "REPORTS")]
    for s in gw.config.sensors:
        rows.append((s.id, s.profile, s.bus, f"{s.interval:g} s", describe_policy(s)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[4]]) for row in rows
    )


def describe_policy(sensor: SensorConfig) -> str:
    p = sensor.report
    if p is None:
        return "every sample"
    parts = []
    if isinstance(p.deadband, dict):
        parts.append("on change " + ", ".join(f"{k} >= {v:g}" for k, v in p.deadband.items()))
    elif p.deadband is not None:
        parts.append(f"on change >= {p.deadband:g}")
    if p.heartbeat is not None:
        parts.append(f"at least every {p.heartbeat:g} s")
    if p.deadband is None and p.heartbeat is None:
        parts.append("every sample")
    if p.fast is not None:
        f = p.fast
        when = []
        if f.level is not None:
            when.append(
                f"{f.kind or 'value'} {'|x| ' if f.direction == 'absolute' else ''}"
                f"{'<=' if f.direction == 'falling' else '>='} {f.level:g}"
            )
        if f.rate is not None:
            verb = {"rising": "rises", "falling": "falls", "absolute": "changes"}[f.direction]
            when.append(f"{verb} >= {f.rate:g}/h")
        parts.append(f"fast (every {f.interval:g} s, all sent) when {' or '.join(when)}")
    return "; ".join(parts)


def format_table(readings: list[Reading]) -> str:
    """Readings as an aligned table: sensor, kind, value, unit, quality."""
    rows = [("SENSOR", "KIND", "VALUE", "UNIT", "QUALITY")]
    for r in readings:
        value = "" if r.value is None else f"{r.value:.6g}"
        rows.append((r.sensor, r.kind, value, r.unit, str(r.q)))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for row in rows:
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [c.rjust(w) if i == 2 else c.ljust(w) for i, (c, w) in pairs]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
