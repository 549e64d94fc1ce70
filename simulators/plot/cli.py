"""The `bosai sim plot` command: its arguments, and where the truth comes from (computed from a
scenario, or read from a truth.jsonl that `bosai sim run` wrote) before `plot_truth` draws it.

`bosai` registers every subcommand's parser at startup, so this module imports nothing heavy:
matplotlib, the scenario loader and the device models are imported by the handler when it runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bosai.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from simulators.plot.figure import plot_truth
from simulators.plot.records import TruthError

if TYPE_CHECKING:
    from simulators.scenario import Scenario

_REPO_PROFILES = Path(__file__).resolve().parents[2] / "firmware_configs" / "profiles"
DEFAULT_SCENARIO = "demo-storm"


def add_plot_parser(group: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `plot` in the `bosai sim` subcommands."""
    p = group.add_parser(
        "plot",
        help="draw a scenario's ground truth (stage, snow, tilt, thresholds, faults) as a PNG",
        description="Draw the ground truth of a scenario as one PNG for people to look at: river stage "
        "with its Japanese stage thresholds, crossing times and the rain behind it; snow depth with "
        "hourly new snow (降雪量); slope tilt with the failure time and its inverse velocity; "
        "scheduled faults shaded.  Computed from the scenario (nothing is served), or read from a "
        "truth.jsonl written by `bosai sim run`.",
    )
    p.add_argument(
        "--scenario",
        metavar="NAME|FILE",
        help=f"shipped scenario name or YAML file (default: {DEFAULT_SCENARIO}, unless --truth is given; "
        "with --truth, adds the registry's unreached thresholds, site names and forcings)",
    )
    p.add_argument(
        "--truth",
        type=Path,
        metavar="FILE",
        help="plot this truth.jsonl (from `bosai sim run`) instead of computing the truth",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE.png",
        help="where to write the picture (default: ./SCENARIO-truth.png)",
    )
    p.add_argument(
        "--registry",
        type=Path,
        metavar="FILE",
        help="cloud registry for the thresholds and site names (default: the scenario's own)",
    )
    p.add_argument(
        "--profiles-dir",
        type=Path,
        default=_REPO_PROFILES,
        metavar="DIR",
        help=f"sensor profiles (default: {_REPO_PROFILES})",
    )
    p.set_defaults(handler=_plot)


def _plot(args: argparse.Namespace) -> int:
    from simulators.truth import read_truth
    from wire.configfile import ConfigError

    def fail(message: str, code: int = EXIT_CONFIG) -> int:
        print(f"bosai sim plot: {message}", file=sys.stderr)
        return code

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return fail("drawing needs matplotlib (pip install 'bosai[dev]')", EXIT_FAILURE)
    scenario = None
    if args.scenario is not None or args.truth is None:
        try:
            scenario = _load_scenario(args.scenario or DEFAULT_SCENARIO, args.registry)
        except (ConfigError, FileNotFoundError) as exc:
            return fail(str(exc))
    elif args.registry is not None:
        return fail("--registry needs --scenario (the truth file's crossings already hold the thresholds)")
    if args.truth is not None:
        try:
            records = read_truth(args.truth)
        except FileNotFoundError:
            return fail(f"no truth file {args.truth}")
        except (OSError, ValueError) as exc:
            return fail(str(exc))
        name = next((str(r.get("name")) for r in records if r.get("type") == "scenario"), args.truth.stem)
        if scenario is not None and scenario.name != name:
            return fail(f"{args.truth} is the truth of scenario {name!r}, not of {scenario.name!r}")
    else:
        assert scenario is not None
        try:
            records = _compute_truth(scenario, args.profiles_dir)
        except ConfigError as exc:
            return fail(str(exc))
        name = scenario.name
    out: Path = args.out or Path(f"{name}-truth.png")
    try:
        plot_truth(records, out, scenario=scenario)
    except TruthError as exc:
        return fail(f"{args.truth or name}: {exc}")
    except OSError as exc:
        return fail(f"cannot write {out}: {exc}", EXIT_FAILURE)
    print(out)
    return EXIT_OK


def _load_scenario(name_or_file: str, registry: Path | None) -> Scenario:
    from simulators.runner import resolve_scenario
    from simulators.scenario import load_scenario

    path = resolve_scenario(name_or_file)
    if registry is not None and not registry.exists():
        raise FileNotFoundError(f"no registry file {registry}")
    return load_scenario(path, registry)


def _compute_truth(scenario: Scenario, profiles_dir: Path) -> list[dict[str, Any]]:
    from edge.profiles import load_profiles
    from simulators.devices import build_devices
    from simulators.truth import scenario_truth

    devices = build_devices(scenario, load_profiles(profiles_dir))
    return list(scenario_truth(scenario, devices))
