"""`bosai evaluate`: score detection against the simulator scenarios' ground truth.

Only argparse at import time (bosai.cli imports every command's `register` on a gateway too);
the engine, numpy and the simulators are imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bosai.evaluate import ScenarioResult

DESCRIPTION = """\
Run each scenario's readings (what a gateway polling every --interval seconds reports) through
the live detection engine and alert lifecycle, and score alerts and forecasts against the
scenario's ground truth: threshold crossings detected and their delay, disaster false alarms
(also during injected sensor faults), maintenance alerts and faults caught, time-to-threshold
and failure-time forecast errors at 60/30/10 min lead.  Thresholds come from the scenario's own
registry (its `registry:` and `tenant:`); the time origin is 2026-01-15 00:00 +09:00 for both
the truth and the readings.  Progress goes to stderr; a full run takes about a minute.
"""

COLUMNS = """\
Columns of the table (--markdown; the default report says the same in words):
  crossings detected   truth up-crossings of a registry level detected / all.  Detected: the
                       sensor's level alert is at that level or higher at some time from 10 min
                       before the truth crossing until the truth drops below the level again
                       (or the run ends); a level kept from an earlier excursion by the
                       detector's hysteresis counts ("held").
  delay median / max   alert time - truth crossing time, in minutes (negative: early, noise),
                       over the detected, non-held crossings.
  disaster false       raised/escalated disaster events the truth does not justify; in
  alarms (in faults)   brackets, how many of them fell inside an injected fault of that sensor.
                       Justified: level - the truth value reaches the level's threshold within
                       +-30 min; rate - the truth rate over the channel's window reaches 80 % of
                       the threshold within +-1 h; snow_dispatch - truth new snowfall over the
                       road class's window reaches its level - 1.5 cm within +-1 h;
                       failure_forecast - a truth failure of that device within the alert's
                       alert_within_s + 6 h.
  maintenance alerts   maintenance episodes raised (per condition in the report / --json).
  faults caught        injected faults during which (or within 15 min after) a maintenance
                       alert of that sensor was raised / faults the readings can show; uplink
                       loss and answers slow but within the bus timeout are n/a.
  TTT forecast |err|   time-to-threshold: at 60, 30 and 10 min before each truth up-crossing,
                       the latest next-level forecast of that sensor for that level (at most
                       10 min old): median |eta - truth| in minutes, and (forecast/eligible)
                       crossings.  "–": no forecast or no crossing.
  failure |err|        the same for the inverse-velocity failure time, at 60, 30 and 10 min
                       before each truth slope failure, over every series of the site with a
                       failure forecast configured.

Exit status: 0 when every scenario has no missed crossing and no disaster false alarm, 1
otherwise, 2 on usage errors (unknown scenario, scenario without a registry).
"""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "evaluate",
        help="score detection against the simulator scenarios' ground truth",
        description=DESCRIPTION,
        epilog=COLUMNS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help="shipped scenario names or scenario files (default: every shipped scenario)",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=60.0,
        metavar="S",
        help="gateway polling interval in seconds (default: 60)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON document with every item scored")
    out.add_argument("--markdown", action="store_true", help="only the summary table, for BENCHMARKS.md")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from bosai.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
    from bosai.evaluate import EvaluationError, evaluate_scenario, markdown_table, text_report
    from simulators.runner import resolve_scenario, scenario_names
    from wire.configfile import ConfigError

    if not args.interval > 0:
        print("bosai evaluate: --interval must be > 0", file=sys.stderr)
        return EXIT_CONFIG
    names: list[str] = args.scenarios or scenario_names()
    try:
        paths = [resolve_scenario(n) for n in names]
    except FileNotFoundError as exc:
        print(f"bosai evaluate: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    results: list[ScenarioResult] = []
    for name, path in zip(names, paths, strict=True):
        print(f"evaluate: {name} ...", file=sys.stderr, flush=True)
        try:
            r = evaluate_scenario(path, interval_s=args.interval)
        except (EvaluationError, ConfigError) as exc:
            print(f"bosai evaluate: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        s = r.summary()
        print(
            f"evaluate: {name}: {r.readings} readings in {r.seconds:.1f} s, "
            f"{s['detected']}/{s['crossings']} crossings, {s['false_alarms']} false alarms",
            file=sys.stderr,
            flush=True,
        )
        results.append(r)
    if args.json:
        doc = {
            "passed": all(r.passed for r in results),
            "scenarios": [r.to_json() for r in results],
        }
        print(json.dumps(doc, ensure_ascii=False, indent=1))
    elif args.markdown:
        print(markdown_table(results))
    else:
        for r in results:
            print(text_report(r))
            print()
        print(markdown_table(results))
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAILURE
