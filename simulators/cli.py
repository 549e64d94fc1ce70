"""`bosai sim`: run virtual sensors for a technician or a developer to point an edge agent at."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulators.scenario import Scenario

from bosai.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK

_REPO_PROFILES = Path(__file__).resolve().parent.parent / "firmware_configs" / "profiles"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sim",
        help="virtual sensors speaking Modbus TCP, Modbus RTU and ASCII, driven by a scenario",
        description="Virtual sensors that speak the real protocols (Modbus TCP on a local port, Modbus RTU "
        "and ASCII on pseudo-terminals), driven by a physical scenario with known ground truth.",
    )
    group = p.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)

    run = group.add_parser(
        "run",
        help="serve a scenario's devices until it ends or Ctrl-C",
        description="Serve every device of a scenario and print where (TCP port, pty paths), so that a "
        "gateway config's buses can be pointed at them for `bosai edge run`.  Faults scheduled in "
        "the scenario are injected on the wire; a scenario with link loss also opens an uplink "
        "proxy to --broker that the gateway must connect through.  Writes the ground truth "
        "(values, threshold crossings, snowfall, failure times, faults) on exit.",
    )
    run.add_argument(
        "--scenario", default="demo-storm", help="shipped scenario name or YAML file (default: demo-storm)"
    )
    run.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="time compression (default: 1, real time; the edge must then run on the same scaled clock)",
    )
    run.add_argument(
        "--workdir", type=Path, help="folder for the pty links and truth.jsonl (default: a new temp folder)"
    )
    run.add_argument(
        "--truth",
        type=Path,
        metavar="FILE",
        help="write the ground truth here (default: WORKDIR/truth.jsonl)",
    )
    run.add_argument(
        "--registry",
        type=Path,
        metavar="FILE",
        help="cloud registry whose thresholds the truth's crossings use (default: the scenario's own)",
    )
    run.add_argument(
        "--tcp-port", type=int, metavar="N", help="port of the first Modbus TCP bus (next buses N+1, ...)"
    )
    run.add_argument(
        "--host", default="127.0.0.1", help="address for the Modbus TCP servers (default: 127.0.0.1)"
    )
    run.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help="stop after S seconds of scenario time (default: to the end)",
    )
    run.add_argument(
        "--start-at",
        type=float,
        default=0.0,
        metavar="S",
        help="begin S seconds into the scenario (default: 0)",
    )
    run.add_argument(
        "--write-gateway-config",
        type=Path,
        metavar="FILE",
        help="write the example gateway config with its buses pointed at these simulators, for "
        "`bosai edge run --config FILE` (a site rehearsal; use with --speed 1)",
    )
    run.add_argument(
        "--broker",
        default="mqtt://127.0.0.1:1883",
        metavar="URL",
        help="broker for --write-gateway-config and the uplink proxy of a scenario with link loss "
        "(default: mqtt://127.0.0.1:1883)",
    )
    run.add_argument(
        "--profiles-dir",
        type=Path,
        default=_REPO_PROFILES,
        help=f"sensor profiles (default: {_REPO_PROFILES})",
    )
    run.set_defaults(handler=_run)

    lst = group.add_parser(
        "list", help="list the shipped scenarios", description="List the shipped scenarios."
    )
    lst.set_defaults(handler=_list)

    from simulators.plot import add_plot_parser

    add_plot_parser(group)


def _list(args: argparse.Namespace) -> int:
    from simulators.runner import default_scenario_path, load_scenario, scenario_names
    from wire.configfile import ConfigError

    for name in scenario_names():
        try:
            sc = load_scenario(default_scenario_path(name))
            faults = f"  [{len(sc.faults)} faults]" if sc.faults else ""
            print(f"{name:16} {sc.duration / 3600:5.1f} h  {sc.description}{faults}")
        except ConfigError as exc:
            print(f"{name:16} (broken: {exc})")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import tempfile

    from simulators.runner import load_scenario, resolve_scenario
    from simulators.uplink import broker_address
    from wire.configfile import ConfigError

    try:
        path = resolve_scenario(args.scenario)
    except FileNotFoundError as exc:
        print(f"bosai sim: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.speed <= 0 or (args.duration is not None and args.duration <= 0) or args.start_at < 0:
        print("bosai sim: --speed and --duration must be positive, --start-at not negative", file=sys.stderr)
        return EXIT_CONFIG
    try:
        scenario = _with_tcp_port(load_scenario(path, args.registry), args.tcp_port)
        args.uplink = broker_address(args.broker) if scenario.link_losses() else None
    except (ConfigError, ValueError) as exc:  # ValueError: a bad --broker
        print(f"bosai sim: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bosai-sim-"))
        return asyncio.run(_serve(scenario, args, workdir))
    except ConfigError as exc:  # a profile that does not fit the scenario
        print(f"bosai sim: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:  # port in use, no ptys
        print(f"bosai sim: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _with_tcp_port(scenario: Scenario, port: int | None) -> Scenario:
    import msgspec

    from simulators.scenario import Scenario

    if port is None:
        return scenario
    buses, k = [], 0
    for bus in scenario.buses:
        if bus.type == "modbus_tcp":
            bus = msgspec.structs.replace(bus, port=port + k)
            k += 1
        buses.append(bus)
    return Scenario(scenario.path, msgspec.structs.replace(scenario.spec, buses=buses), scenario.registry)


def _hours(s: float) -> str:
    return f"{s / 3600:6.2f} h"


async def _serve(scenario: Scenario, args: argparse.Namespace, workdir: Path) -> int:
    import time

    from simulators.runner import SimulatorSet
    from simulators.uplink import via_proxy
    from wire.clock import Clock, RealClock, ScaledClock

    clock: Clock = RealClock() if args.speed == 1 else ScaledClock(time.time(), args.speed)
    # Beyond the scenario end the world stands still, so a longer --duration is allowed.
    duration = args.duration or max(0.0, scenario.duration - args.start_at)
    sims = SimulatorSet(
        scenario,
        clock,
        workdir,
        args.profiles_dir,
        host=args.host,
        start_at=args.start_at,
        truth_path=args.truth,
        uplink=args.uplink,
    )
    async with sims as endpoints:
        print(
            f"bosai sim: scenario {scenario.name!r}: {duration / 3600:.2f} h of scenario time "
            f"at {args.speed:g}x"
        )
        for bus in scenario.buses:
            if bus.id in endpoints.modbus_tcp:
                host, port = endpoints.modbus_tcp[bus.id]
                print(f"  {bus.id:14} {bus.type:13} host: {host}  port: {port}")
            elif bus.id in endpoints.serial:
                link = Path(endpoints.serial[bus.id])
                print(f"  {bus.id:14} {bus.type:13} port: {link}  (-> {link.resolve()})")
        broker = args.broker
        if endpoints.uplink is not None:
            host, port = endpoints.uplink
            broker = via_proxy(args.broker, endpoints.uplink)
            print(f"  {'uplink':14} {'tcp proxy':13} host: {host}  port: {port}  -> {args.broker}")
        if scenario.faults:
            print("Faults (scenario time):")
            for f in scenario.faults:
                target = " ".join(x for x in (getattr(f, "device", ""), getattr(f, "kind", "")) if x)
                print(f"  {_hours(f.start)} - {_hours(f.end)}  {f.type_name:13} {target or 'gateway uplink'}")
        if args.write_gateway_config:
            from simulators.gateway_config import write_gateway_config

            gw = write_gateway_config(endpoints, broker, args.write_gateway_config)
            print(f"Gateway config for these devices: {gw}\n  bosai edge run --config {gw} --once")
            if args.speed != 1:
                print(
                    "  (the edge agent runs in real time: sample times follow the scenario only at --speed 1)"
                )
        else:
            where = " and its broker to the uplink proxy" if endpoints.uplink else ""
            print(f"Set these in the gateway config's buses{where} and run `bosai edge run`.")
        print("Ctrl-C stops.", flush=True)
        await clock.sleep(args.start_at + duration - sims.scenario_time())
    print(f"bosai sim: done; {sims.requests_served} requests served; ground truth in {sims.truth_path}")
    return EXIT_OK
