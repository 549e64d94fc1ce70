"""`bosai` command line.  Each subsystem registers its own subcommands from a light `cli` module
(argparse only at import time), so `bosai --help` works on a gateway without the cloud extras.

Exit codes: 0 success, 1 runtime failure, 2 usage or config error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from bosai import __version__

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    from bosai import demo_cli, evaluate_cli
    from cloud import cli as cloud_cli
    from cloud.alerts import cli as alerts_cli
    from cloud.dashboards import cli as dashboards_cli
    from edge import cli as edge_cli
    from provision import cli as provision_cli
    from simulators import cli as sim_cli

    parser = argparse.ArgumentParser(
        prog="bosai",
        description="Edge-to-cloud disaster monitoring: snow depth, river stage and slope movement.",
        epilog="Run 'bosai COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"bosai {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: INFO"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo_cli.register(sub)
    sim_cli.register(sub)
    edge_cli.register(sub)
    provision_cli.register(sub)
    cloud_cli.register(sub)
    alerts_cli.register(sub)
    dashboards_cli.register(sub)
    evaluate_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
