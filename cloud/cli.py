"""`bosai cloud`: run the cloud consumer or check its config.  Heavy imports happen in handlers."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

STATS_EVERY_S = 10.0
SHOWN_FILTERS = 6  # check-config lists this many topic filters; a shard can have thousands


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "cloud",
        help="the cloud consumer: validate telemetry, store it, raise alerts",
        description="The cloud consumer: subscribes to gateway telemetry, validates it against the registry, "
        "writes it to the time-series store and raises alerts at the registered thresholds.",
    )
    cmds = p.add_subparsers(dest="cloud_command", metavar="COMMAND", required=True)

    run = cmds.add_parser(
        "run",
        help="run the consumer until SIGTERM or Ctrl-C",
        description="Run the consumer until SIGTERM or Ctrl-C, logging a one-line summary every 10 s.",
    )
    run.add_argument("--config", type=Path, required=True, metavar="FILE", help="consumer config (YAML)")
    run.set_defaults(handler=_run)

    check = cmds.add_parser(
        "check-config",
        help="load the consumer config and registry and print a summary",
        description="Load and validate the consumer config, its registry and its secret files, then print "
        "a summary.  Connects to nothing.  Exit code 2 if anything is wrong.",
    )
    check.add_argument("--config", type=Path, required=True, metavar="FILE", help="consumer config (YAML)")
    check.add_argument(
        "--skip-secrets",
        action="store_true",
        help="do not check password/token/certificate files (to check a config away from its server)",
    )
    check.set_defaults(handler=_check_config)

    quarantine = cmds.add_parser(
        "quarantine",
        help="summarize the quarantine file: rejections by gateway and reason",
        description="Summarize the consumer's quarantine file: how many messages or readings each "
        "gateway had rejected, for which reason, when first and last, with the latest detail.  For "
        "technicians tracking down a misconfigured gateway or a probing client.",
    )
    quarantine.add_argument(
        "--config", type=Path, required=True, metavar="FILE", help="consumer config (YAML)"
    )
    quarantine.add_argument(
        "--since",
        metavar="TIME",
        help="only entries received since this ISO 8601 UTC time, e.g. 2026-11-22T06:00",
    )
    quarantine.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    quarantine.set_defaults(handler=_quarantine)

    schema = cmds.add_parser(
        "schema",
        help="print the JSON Schema of the registry or the consumer config",
        description="Print the JSON Schema of a registry file or a consumer config, for editors "
        "(e.g. a '# yaml-language-server: $schema=...' line) and for checks in other tools.  The "
        "schemas are also committed in docs/schemas/.",
    )
    schema.add_argument("which", choices=sorted(SCHEMAS), help="which file's schema")
    schema.set_defaults(handler=_schema)


SCHEMAS = ("consumer", "registry")


def schema_json(which: str) -> str:
    """The JSON Schema of a consumer config or a registry file, as committed in docs/schemas/."""
    import json

    import msgspec

    from cloud.config import ConsumerConfig
    from cloud.registry import RegistryFile

    kind: type = ConsumerConfig if which == "consumer" else RegistryFile
    schema = _clean_descriptions(msgspec.json.schema(kind))
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def _clean_descriptions(node: Any) -> Any:
    """Docstrings dedented (inspect.cleandoc): msgspec 0.19 did it, later versions keep the
    source's indentation, and the committed schema must not depend on the installed version."""
    import inspect

    if isinstance(node, dict):
        return {
            k: inspect.cleandoc(v) if k == "description" and isinstance(v, str) else _clean_descriptions(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_clean_descriptions(v) for v in node]
    return node


def _schema(args: argparse.Namespace) -> int:
    from bosai.cli import EXIT_OK

    sys.stdout.write(schema_json(args.which))
    return EXIT_OK


def _quarantine(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from bosai.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
    from cloud.config import load_consumer_config, resolve
    from cloud.quarantine import summarize
    from wire.configfile import ConfigError

    try:
        cfg = load_consumer_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    if cfg.quarantine_path is None:
        print(f"{args.config}: the quarantine file is off (quarantine_path)", file=sys.stderr)
        return EXIT_CONFIG
    path = resolve(args.config, cfg.quarantine_path)
    try:
        groups, unreadable = summarize(path, args.since)
    except FileNotFoundError:
        print(f"no quarantine file yet at {path}: nothing has been rejected")
        return EXIT_OK
    except OSError as exc:
        print(f"cannot read {path}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        for g in groups:
            print(json.dumps(asdict(g), ensure_ascii=False))
    else:
        total = sum(g.count for g in groups)
        print(f"{path}: {total} rejections" + (f" since {args.since}" if args.since else ""))
        if groups:
            print(f"{'count':>7}  {'gateway':<28} {'reason':<22} {'last received':<24} latest detail")
        for g in groups:
            print(f"{g.count:>7}  {g.gateway:<28} {g.reason:<22} {g.last:<24} {g.example[:80]}")
    if unreadable:
        print(f"({unreadable} lines were not quarantine entries)", file=sys.stderr)
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from bosai.cli import EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_OK
    from cloud.config import load_consumer_config
    from cloud.consumer import Consumer
    from wire.configfile import ConfigError

    try:
        consumer = Consumer(load_consumer_config(args.config), args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG

    stop = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    consumer.start()
    interrupted = False
    try:
        while not stop.wait(STATS_EVERY_S):
            log.info("stats: %s", consumer.stats.summary())
    except KeyboardInterrupt:
        interrupted = True
    finally:
        consumer.stop()
        signal.signal(signal.SIGTERM, previous)
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def _check_config(args: argparse.Namespace) -> int:
    from bosai.cli import EXIT_CONFIG, EXIT_OK
    from cloud.config import InfluxStore, Store, load_consumer_config, resolve
    from cloud.mqtt import client_id, make_client, subscriptions
    from cloud.registry import load_registry
    from cloud.shard import Shard
    from wire.configfile import ConfigError, read_secret

    try:
        cfg = load_consumer_config(args.config)
        registry = load_registry(resolve(args.config, cfg.registry))
        if not args.skip_secrets:
            make_client(cfg, args.config)  # checks the password file and certificates; connects nothing
            for name, st in (("store", cfg.store), ("archive", cfg.archive)):
                if isinstance(st, InfluxStore) and st.token_file:
                    read_secret(args.config, f"{name}: field 'token_file'", st.token_file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG

    def describe(store: Store) -> str:
        if isinstance(store, InfluxStore):
            return f"InfluxDB {store.url} org {store.org} bucket {store.bucket}"
        return f"line-protocol files in {resolve(args.config, store.path)}"

    data = registry.data
    channels = [ch for s in data.sensors for ch in s.channels.values()]
    print(f"config:       {args.config} OK")
    print(f"broker:       {cfg.mqtt.url} (MQTT {cfg.mqtt.protocol}, client id {client_id(cfg)})")
    shard = Shard.of(cfg)
    if cfg.shard is not None:
        owned = len(shard.owned_gateways(registry))
        of = sum(1 for g in data.gateways if shard.tenant in (None, g.tenant))
        print(f"sharding:     {shard.describe()}: {owned} of {of} gateways")
    filters = subscriptions(cfg, registry)
    shown = ", ".join(filters[:SHOWN_FILTERS]) + (
        f", ... ({len(filters) - SHOWN_FILTERS} more)" if len(filters) > SHOWN_FILTERS else ""
    )
    print(f"subscriptions: {len(filters)} topic filters: {shown or '(none: this shard owns no gateway)'}")
    print(f"store:        {describe(cfg.store)}")
    if cfg.archive is not None:
        print(f"archive:      {describe(cfg.archive)}")
    print(
        f"registry:     {resolve(args.config, cfg.registry)}: "
        f"{len(data.tenants)} tenants, {len(data.sites)} sites, "
        f"{len(data.gateways)} gateways, {len(data.sensors)} sensors, {len(channels)} channels "
        f"({sum(1 for ch in channels if ch.thresholds)} with alert thresholds)"
    )
    alerts = f"{resolve(args.config, cfg.alerts.log_path)}" + (
        ", published on MQTT" if cfg.alerts.publish else ""
    )
    print(f"alerts:       {alerts}")
    quarantine = resolve(args.config, cfg.quarantine_path) if cfg.quarantine_path else "off"
    print(f"quarantine:   {quarantine}")
    return EXIT_OK
