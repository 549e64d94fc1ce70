"""`bosai alerts` (duty officers) and `bosai replay` (detection over history).

The alert commands work on the consumer's alert store (its config's `alerts.state_path`); an
ack or resolve is carried out, published and notified by the running consumer within a second
(cloud.alerts.store explains why).  Heavy imports happen in handlers.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cloud.alerts.store import AlertStore


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "alerts",
        help="list, acknowledge and resolve alerts; maintenance windows",
        description="Duty officers' commands on the consumer's alert store.  Acks and resolves are carried "
        "out by the running consumer (published on MQTT and notified) within a second.",
    )
    p.add_argument("--config", type=Path, required=True, metavar="FILE", help="consumer config (YAML)")
    cmds = p.add_subparsers(dest="alerts_command", metavar="COMMAND", required=True)

    ls = cmds.add_parser("list", help="open alerts, newest first", description="Open alerts, newest first.")
    ls.add_argument("--all", action="store_true", help="resolved ones too")
    ls.add_argument("--tenant", metavar="ID", help="only this tenant")
    ls.add_argument("--json", action="store_true", help="one JSON object per line (the latest Alert message)")
    ls.add_argument("--limit", type=int, default=200, metavar="N", help="at most N alerts (default: 200)")
    ls.set_defaults(handler=_list)

    for name, what in (("ack", "acknowledge an alert"), ("resolve", "resolve an alert by hand")):
        c = cmds.add_parser(name, help=what, description=f"{what.capitalize()}.")
        c.add_argument("id", metavar="ID", help="alert id (or a unique prefix of at least 4 characters)")
        c.add_argument("--by", default=getpass.getuser(), metavar="NAME", help="who (default: your login)")
        c.set_defaults(handler=_action, action=name)

    sil = cmds.add_parser(
        "silence",
        help="add a maintenance window (alerts recorded, not notified)",
        description="Add a maintenance window: alerts of the site, sensor or gateway are recorded and "
        "published but not notified until it ends; alerts still open then are notified.",
    )
    sil.add_argument("--tenant", required=True, metavar="ID")
    target = sil.add_mutually_exclusive_group(required=True)
    target.add_argument("--site", metavar="ID")
    target.add_argument("--sensor", metavar="ID")
    target.add_argument("--gateway", metavar="ID")
    sil.add_argument("--until", required=True, metavar="TIME", help="end, ISO 8601 with offset")
    sil.add_argument("--start", metavar="TIME", help="start, ISO 8601 with offset (default: now)")
    sil.add_argument("--reason", default="", help="shown in `alerts windows`")
    sil.add_argument("--by", default=getpass.getuser(), metavar="NAME")
    sil.set_defaults(handler=_silence)

    win = cmds.add_parser("windows", help="list maintenance windows not yet over", description="List them.")
    win.set_defaults(handler=_windows)
    uns = cmds.add_parser("unsilence", help="remove a maintenance window", description="Remove one by id.")
    uns.add_argument("window_id", type=int, metavar="WINDOW_ID")
    uns.set_defaults(handler=_unsilence)

    rp = sub.add_parser(
        "replay",
        help="run detection over a readings CSV and print the alerts as JSON lines",
        description="Run the same detection engine and alert lifecycle as the live consumer over "
        "history, to tune thresholds on past events.  READINGS.csv has columns time,sensor,value "
        "(ISO 8601 times with offset; optional kind, tenant, q); see docs/detection.md.",
    )
    rp.add_argument("--sites", type=Path, required=True, metavar="SITES_FILE", help="registry YAML")
    rp.add_argument("readings", type=Path, metavar="READINGS.csv")
    rp.add_argument(
        "--maintenance", action="store_true", help="include maintenance alerts (default: disaster)"
    )
    rp.set_defaults(handler=_replay)


def _open_store(args: argparse.Namespace) -> AlertStore:
    from cloud.alerts.store import AlertStore
    from cloud.config import load_consumer_config, resolve

    cfg = load_consumer_config(args.config)
    return AlertStore(resolve(args.config, cfg.alerts.state_path))


def _guard(fn: Callable[[], int]) -> int:
    """Run a handler body, mapping the expected errors to exit code 2 with a one-line message."""
    from bosai.cli import EXIT_CONFIG
    from cloud.alerts.store import AlertStoreError
    from wire.configfile import ConfigError

    try:
        return fn()
    except (ConfigError, AlertStoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _list(args: argparse.Namespace) -> int:
    import msgspec

    def body() -> int:
        store = _open_store(args)
        eps = list(store.episodes(tenant=args.tenant, include_resolved=args.all, limit=args.limit))
        if args.json:
            for ep in eps:
                print(msgspec.json.encode(ep.alert).decode())
            return 0
        if not eps:
            print("no open alerts" if not args.all else "no alerts")
            return 0
        for ep in eps:
            a = ep.alert
            what = f"{a.sensor}/{a.kind}" if a.sensor else f"gateway {a.gateway}"
            level = f"L{a.level} {a.level_name_ja or a.level_name}".strip() if a.level else "-"
            status = ep.status + (f" by {a.acked_by}" if ep.status == "acknowledged" else "")
            status += f" (pending {ep.pending})" if ep.pending else ""
            status += " [silenced]" if ep.silenced else ""
            raised = a.raised_at.isoformat(timespec="minutes")
            print(f"{ep.id[:8]}  {raised}  {a.category:11}  {a.condition:16} {level:24} {what:32} {status}")
            print(f"          {a.reason}")
        return 0

    return _guard(body)


def _action(args: argparse.Namespace) -> int:
    def body() -> int:
        ep = _open_store(args).request(args.id, args.action, args.by)
        done = "acknowledgement" if args.action == "ack" else "resolution"
        print(f"{done} of {ep.id} recorded; the consumer publishes and notifies it")
        return 0

    return _guard(body)


def _parse_time(text: str) -> float:
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset (write e.g. +09:00)")
    return t.timestamp()


def _silence(args: argparse.Namespace) -> int:
    def body() -> int:
        start = _parse_time(args.start) if args.start else time.time()
        wid = _open_store(args).add_window(
            args.tenant,
            start,
            _parse_time(args.until),
            site=args.site or "",
            sensor=args.sensor or "",
            gateway=args.gateway or "",
            reason=args.reason,
            created_by=args.by,
        )
        print(f"maintenance window {wid} added")
        return 0

    return _guard(body)


def _windows(args: argparse.Namespace) -> int:
    def body() -> int:
        for w in _open_store(args).windows(time.time()):
            target = (
                (w.site and f"site {w.site}") or (w.sensor and f"sensor {w.sensor}") or f"gateway {w.gateway}"
            )
            span = f"{datetime.fromtimestamp(w.start).astimezone().isoformat(timespec='minutes')} .. "
            span += datetime.fromtimestamp(w.end).astimezone().isoformat(timespec="minutes")
            print(f"{w.id:4}  {w.tenant}  {target:30} {span}  {w.reason} ({w.created_by})")
        return 0

    return _guard(body)


def _unsilence(args: argparse.Namespace) -> int:
    from bosai.cli import EXIT_FAILURE

    def body() -> int:
        if not _open_store(args).remove_window(args.window_id):
            print(f"no maintenance window {args.window_id}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"maintenance window {args.window_id} removed")
        return 0

    return _guard(body)


def _replay(args: argparse.Namespace) -> int:
    from bosai.cli import EXIT_CONFIG
    from cloud.registry import load_registry
    from cloud.replay import ReadingsFileError, Replayer, read_readings
    from wire.configfile import ConfigError

    try:
        registry = load_registry(args.sites)
        rows = read_readings(args.readings, registry)
    except (ConfigError, ReadingsFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    import msgspec

    rp = Replayer(registry)
    out = sys.stdout
    shown = 0
    for row in rows:
        for alert in rp.feed(row.sensor, row.reading):
            if alert.category == "disaster" or args.maintenance:
                out.write(msgspec.json.encode(alert).decode() + "\n")
                shown += 1
    print(json.dumps({"readings": len(rows), "alert_events": shown}), file=sys.stderr)
    return 0
