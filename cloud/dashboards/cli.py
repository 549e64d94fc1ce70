"""`bosai dashboards`: generate the Grafana dashboards' JSON, or provision them into a Grafana
through its HTTP API.  Only argparse at import time; the work happens in the handlers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dashboards",
        help="Grafana dashboards: generate their JSON, provision them through Grafana's API",
        description="The Grafana dashboards (overview, rivers, snow, slopes, gateways) are generated from "
        "code; their JSON is committed under dashboards/json/ for Grafana's file provisioning. See "
        "dashboards/README.md.",
    )
    cmds = p.add_subparsers(dest="dashboards_command", metavar="COMMAND", required=True)

    gen = cmds.add_parser(
        "generate",
        help="write every dashboard's JSON (one file per uid)",
        description="Write every dashboard's JSON, <uid>.json, into a folder.",
    )
    gen.add_argument(
        "--out", type=Path, metavar="DIR", help="folder (default: the repository's dashboards/json)"
    )
    gen.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the folder's files differ from the generator's",
    )
    gen.set_defaults(handler=_generate)

    prov = cmds.add_parser(
        "provision",
        help="create or update the folder, data source and dashboards in a Grafana (HTTP API)",
        description="Create or update, in a running Grafana, the folder (uid bosai), the InfluxDB data "
        "source (uid bosai-influxdb, InfluxQL) and every dashboard (overwritten).  Idempotent.  "
        "Authenticates with a service account token (--token-file) or a user and password (--user, "
        "--password-file); secret files must be readable by their owner only (chmod 600).  Exit 0 done, 1 "
        "Grafana refused or is unreachable, 2 usage or config error.",
    )
    prov.add_argument("--grafana-url", required=True, metavar="URL", help="e.g. https://grafana.example.jp/")
    auth = prov.add_mutually_exclusive_group()
    auth.add_argument("--token-file", type=Path, metavar="FILE", help="file holding a service account token")
    auth.add_argument("--user", metavar="NAME", help="Grafana user (with --password-file)")
    prov.add_argument("--password-file", type=Path, metavar="FILE", help="file holding the user's password")
    prov.add_argument("--folder", default=None, metavar="NAME", help="folder title (default: 'Bosai 防災')")
    prov.add_argument("--influx-url", required=True, metavar="URL", help="InfluxDB URL as Grafana reaches it")
    prov.add_argument("--influx-db", default="bosai", metavar="NAME", help="database (default: bosai)")
    prov.add_argument(
        "--influx-token-file",
        type=Path,
        metavar="FILE",
        help="InfluxDB 2.x/3.x read token, sent by Grafana as 'Authorization: Token ...'",
    )
    prov.set_defaults(handler=_provision)


def _generate(args: argparse.Namespace) -> int:
    from bosai.paths import DASHBOARDS_DIR
    from cloud.dashboards.generate import stale, write

    out: Path = args.out or DASHBOARDS_DIR / "json"
    if args.check:
        problems = stale(out)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run 'bosai dashboards generate' and commit the result", file=sys.stderr)
        return 1 if problems else 0
    for path in write(out):
        print(f"wrote {path}")
    return 0


def _provision(args: argparse.Namespace) -> int:
    from bosai.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
    from cloud.dashboards.generate import dashboards
    from cloud.dashboards.provision import (
        DEFAULT_FOLDER,
        DatasourceSettings,
        ProvisionError,
        connect,
        provision,
    )
    from wire.configfile import ConfigError

    try:
        credential = _credential(args)
        influx_token = (
            _secret(args.influx_token_file, "--influx-token-file") if args.influx_token_file else None
        )
        api = connect(args.grafana_url, credential)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    secrets = (credential if isinstance(credential, str) else credential[1], influx_token or "")
    try:
        provision(
            api,
            dashboards(),
            DatasourceSettings(influx_url=args.influx_url, database=args.influx_db, token=influx_token),
            args.folder or DEFAULT_FOLDER,
            print,
            secrets,
        )
    except ProvisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _credential(args: argparse.Namespace) -> str | tuple[str, str]:
    if args.token_file:
        if args.password_file:
            raise ValueError("--password-file goes with --user, not with --token-file")
        return _secret(args.token_file, "--token-file")
    if args.user:
        if not args.password_file:
            raise ValueError("--user needs --password-file")
        return (args.user, _secret(args.password_file, "--password-file"))
    raise ValueError("give --token-file, or --user with --password-file")


def _secret(path: Path, option: str) -> str:
    from wire.configfile import read_secret

    return read_secret(path, option, str(path.resolve()))
