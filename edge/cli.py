"""`bosai edge ...`: run the gateway agent, or check a gateway config.

Only argparse at import time; the agent (pymodbus, paho, pyserial) is imported by the handlers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.agent import Agent
    from edge.config import LoadedGateway, SensorConfig
    from wire.telemetry import Reading

from bosai.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK

log = logging.getLogger(__name__)


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
    add_source_arguments(run)
    run.add_argument("--once", action="store_true", help="read every sensor once, print a table, exit")
    run.add_argument(
        "--outbox",
        type=Path,
        metavar="PATH",
        help="outbox database (default: the config's; with --bundle, STATE_DIR/outbox.sqlite)",
    )
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
    register_check(cmds)
    # The first release's spelling, kept for scripts; not advertised.
    check = cmds.add_parser("check-config", description="Same as `validate CONFIG`.")
    check.add_argument("--config", required=True, type=Path, metavar="FILE", help="gateway config (YAML)")
    check.set_defaults(handler=_validate)


def register_check(
    cmds: argparse._SubParsersAction[argparse.ArgumentParser], *, gateway_form: bool = False
) -> None:
    """`bosai edge check --config|--bundle`, and `bosai gateway check [BUNDLE]` (provision/cli.py),
    which checks the installed bundle by default."""
    check = cmds.add_parser(
        "check",
        help=("(on the gateway) " if gateway_form else "")
        + "on-site checklist: ports, bus scan, every sensor once, broker login",
        description="The technician's on-site checklist, printed as it goes: the config and its secret "
        "files (present, owner-only), the system clock, every bus (the port opens; which Modbus unit "
        "ids answer at which baud, or whether an ASCII device sends clean lines), every sensor read "
        "once with its decoded value and quality flag, and the broker (DNS, TCP, TLS with "
        "certificate verification, login with the gateway's credentials).  Each line says PASS, "
        "WARN, FAIL or SKIP and, for a FAIL, what to do next.  Run it with the agent stopped: it "
        "opens the serial ports itself, and a port the agent holds is reported as busy.  Nothing is "
        "published: the broker login is tested and the connection closed.  No password or key is "
        "ever printed.  Exit 0 if nothing failed, 1 if any check failed, 2 if the config cannot "
        "be loaded.",
    )
    if gateway_form:
        check.add_argument(
            "bundle",
            nargs="?",
            type=Path,
            default=Path("/etc/bosai/gateway.bundle"),
            metavar="BUNDLE",
            help="the bundle to check (default: the installed /etc/bosai/gateway.bundle)",
        )
        add_trust_arguments(check)
        check.set_defaults(config=None)
    else:
        add_source_arguments(check)
    check.add_argument(
        "--no-scan",
        dest="scan",
        action="store_false",
        help="only open each port and read each sensor; do not scan unit ids and baud rates",
    )
    check.add_argument(
        "--scan-bauds",
        type=_bauds,
        default=[9600, 19200, 38400, 4800, 115200],
        metavar="LIST",
        help="baud rates to scan, the configured one first anyway (default: 9600,19200,38400,4800,115200)",
    )
    check.add_argument(
        "--scan-units",
        type=_units,
        default=list(range(1, 17)),
        metavar="RANGES",
        help="Modbus unit ids to scan besides the configured ones, e.g. 1-16,20 (default: 1-16)",
    )
    check.add_argument("--json", action="store_true", help="print the checklist as JSON at the end")
    check.add_argument(
        "--broker-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="time allowed for each broker step: DNS, TCP, TLS, login (default: 10)",
    )
    check.set_defaults(handler=_check)


def _bauds(text: str) -> list[int]:
    from edge.check import parse_bauds

    try:
        return parse_bauds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _units(text: str) -> list[int]:
    from edge.check import parse_units

    try:
        return parse_units(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _check(args: argparse.Namespace) -> int:
    import tempfile

    from edge.check import run_and_print

    with tempfile.TemporaryDirectory(prefix="bosai-check-") as tmp:
        # A bundle is verified and unpacked into a private temporary folder: checking must not
        # change what the agent runs nor raise its rollback floor.
        gw = _load_source(args, unpack_to=Path(tmp) / "config")
        if gw is None:
            return EXIT_CONFIG
        title = None
        if args.bundle is not None:
            from wire.bundle import signer_of

            title = (
                f"on-site check of bundle {args.bundle}: signature valid "
                f"({signer_of(args.bundle.read_bytes())}), not older than the installed one"
            )
        return run_and_print(
            gw,
            scan=args.scan,
            scan_bauds=args.scan_bauds,
            scan_units=args.scan_units,
            broker_timeout=args.broker_timeout,
            as_json=args.json,
            title=title,
        )


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the gateway config comes from: a signed bundle (production) or a plain file."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--config", type=Path, metavar="FILE", help="gateway config (YAML), unsigned: bench use"
    )
    source.add_argument(
        "--bundle",
        type=Path,
        metavar="FILE",
        help="signed config bundle from provisioning (e.g. /etc/bosai/gateway.bundle), verified first",
    )
    add_trust_arguments(parser)


def add_trust_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-key",
        type=Path,
        default=Path("/etc/bosai/signing.pub"),
        metavar="FILE",
        help="the authority's public key(s), a .pub file or a folder (default: /etc/bosai/signing.pub)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path("/var/lib/bosai"),
        metavar="DIR",
        help="where the accepted bundle version, the unpacked config and the outbox live "
        "(default: /var/lib/bosai)",
    )


def _load_source(args: argparse.Namespace, unpack_to: Path | None = None) -> LoadedGateway | None:
    """The gateway config of `--config`, or of `--bundle` once verified (refusals printed)."""
    if args.bundle is None:
        return _load(args.config)
    from edge.bundled import accept
    from wire.bundle import BundleError
    from wire.configfile import ConfigError

    try:
        return accept(args.bundle, args.trust_key, args.state_dir, config_dir=unpack_to).gateway
    except BundleError as exc:
        print(f"bundle refused: {exc}", file=sys.stderr)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
    return None


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

    gw = _load_source(args)
    if gw is None:
        return EXIT_CONFIG
    outbox = args.outbox
    if outbox is None and args.bundle is not None:
        outbox = args.state_dir / "outbox.sqlite"
    if args.bundle is None:
        log.warning(
            "running from an unsigned config file (%s): production gateways run from a bundle", args.config
        )
    agent = Agent(gw, outbox_path=outbox)
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
