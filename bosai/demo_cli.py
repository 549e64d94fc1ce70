"""`bosai demo`: the whole chain on one machine, on embedded defaults."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="run simulators, edge agent and cloud consumer together on embedded defaults",
        description=(
            "Run the whole pipeline on this machine: virtual sensors (Modbus TCP, Modbus RTU and "
            "ASCII over pseudo-terminals) play a blizzard, a flood rise and an accelerating slope "
            "in compressed time; an edge agent reads them and publishes over MQTT; a cloud "
            "consumer validates, stores and raises alerts.  Needs no server: an embedded MQTT "
            "broker and a line-protocol file store are used unless --broker / --influx-url are "
            "given.  Ends by itself and writes a report with a plot per sensor."
        ),
    )
    p.add_argument("--scenario", default="demo-storm", help="scenario name or file (default: demo-storm)")
    p.add_argument(
        "--speed",
        type=float,
        default=720.0,
        help="time compression; 720 plays the 12-hour storm in one minute (default: 720)",
    )
    p.add_argument(
        "--output", type=Path, default=Path("demo-output"), help="report folder (default: ./demo-output)"
    )
    p.add_argument(
        "--broker", metavar="URL", help="use this MQTT broker (mqtt://host:port) instead of the embedded one"
    )
    p.add_argument("--influx-url", metavar="URL", help="also write to this InfluxDB (v2 write API)")
    p.add_argument("--influx-org", default="bosai", help="InfluxDB organisation (default: bosai)")
    p.add_argument("--influx-bucket", default="bosai", help="InfluxDB bucket (default: bosai)")
    p.add_argument("--influx-token-file", metavar="FILE", help="file holding the InfluxDB token (mode 0600)")
    p.add_argument("--no-plots", action="store_true", help="skip the plots (faster, no matplotlib needed)")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from bosai.demo import DemoOptions, run_demo

    return run_demo(
        DemoOptions(
            scenario=args.scenario,
            speed=args.speed,
            output=args.output,
            broker_url=args.broker,
            influx_url=args.influx_url,
            influx_org=args.influx_org,
            influx_bucket=args.influx_bucket,
            influx_token_file=args.influx_token_file,
            plots=not args.no_plots,
        )
    )
