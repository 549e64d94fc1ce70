"""Calibration of the data-quality checks (cloud/detect/quality.py) and of the JMA new-snowfall
detector (cloud/detect/snow.py) on the shipped simulator scenarios.

Quality: every series of every scenario goes through SeriesQuality with the settings recommended
per kind (RECOMMENDED below, the figures for the registry).  Counted: SUSPECT and FLATLINE
verdicts outside the injected fault windows of the sensor (target 0: real signals, however steep,
are never held back), and whether the faults that must be caught are caught (the +2.5 m spike
on river-pt-02: every spike sample SUSPECT; the stuck radar: FLATLINE within flatline_s of the
start).  The offline samples are truth + noise + value faults; with `--quantise` they are also
rounded to each device's resolution (int16 0.01 deg inclinometer, 0.1 cm snow sensors, ...), as
the served path would deliver them.  Also reported: the fastest real rate of each kind, from the
noise-free truth (10-min differences), the margin max_rate_per_h has over it.

Snow: NewSnowfall (defaults) over both snow sensors of every scenario, against the truth's
"snowfall" records (JMA new_1h ... new_24h from the noise-free depth): the largest error at any
hour per window; and the phantom snow a constant depth with gaussian noise accumulates over 30 days.

    .venv/bin/python -m benchmarks.calibrate_quality [--quantise]

Results go to stdout as Markdown tables.
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field

from bosai.paths import PROFILES_DIR
from cloud.detect.quality import QualityConfig, SeriesQuality, Verdict
from cloud.detect.snow import SNOW_WINDOWS_H, NewSnowfall
from edge.profiles import load_profiles
from simulators.devices import build_devices
from simulators.offline import scenario_samples
from simulators.runner import default_scenario_path, load_scenario
from simulators.truth import scenario_truth

SCENARIOS = ("blizzard", "demo-storm", "quiet-day", "sensor-faults", "slope-failure", "typhoon-flood")
ORIGIN = 1_700_000_400 // 3600 * 3600  # an hour boundary, as the truth's snowfall hours are
HOUR = 3600.0

# The settings recommended per kind (series unit in the comments); window 15, k 6 and
# shift_confirm_s 1800 s (the defaults) everywhere.  Real signals use at most ~2/3 of the outlier
# tolerance with these (largest |residual| / tolerance on the scenarios: river 0.58, snow 0.62,
# tilt 0.60, displacement 0.67), and min_scale must not be left at 0 (see the report).
RECOMMENDED: dict[str, QualityConfig] = {
    # m: 0.01 m = the pressure gauge's noise.  A Japanese flash flood rose 1.34 m in 10 min (Toga
    # River, Kobe, 2008: 8 m/h) and the scenarios' fastest is ~1 m/h: 10 m/h never flags a real
    # river and still flags 2.5 m in a minute.  A stuck output is the classic radar failure.
    "river_level": QualityConfig(min_scale=0.01, max_rate_per_h=10.0, flatline_s=1800.0),
    # cm: 1 cm, twice the ultrasonic sensor's noise: with 0.5 cm, the laser's return from its
    # 4.5 cm fogged-lens drift (sensor-faults) is flagged for 14 min after the fault ends.
    # 20 cm/h: nearly three times the fastest real change in the scenarios (7.3 cm/h).  No
    # flatline check: bare ground reads a constant 0 for months.
    "snow_depth": QualityConfig(min_scale=1.0, max_rate_per_h=20.0),
    # deg: 0.01 deg = one step of the int16 inclinometer.  No max rate and no flatline: a slope
    # about to fail moves arbitrarily fast, and that inclinometer holds one value for hours on a
    # quiet slope (4.2 h in sensor-faults).
    "tilt": QualityConfig(min_scale=0.01),
    # mm: the wire extensometer has 0.02 mm of noise at 0.01 mm resolution; 0.05 mm leaves room
    # for the curvature of the last minutes before failure.  Same reasoning as tilt otherwise.
    "displacement": QualityConfig(min_scale=0.05),
}
KIND_GROUP = {"tilt_x": "tilt", "tilt_y": "tilt"}

# Resolution each device delivers on the served path (profile register scale / ASCII format).
RESOLUTION = {
    ("river-pt-02", "river_level"): 0.001,  # int16, decimals register 3
    ("snow-laser-01", "snow_depth"): 0.1,  # uint16 mm
    ("snow-us-02", "snow_depth"): 0.1,  # distance "%.3f" m
    ("slope-incl-01", "tilt_x"): 0.01,  # int16 0.01 deg
    ("slope-incl-01", "tilt_y"): 0.01,
    ("slope-incl-02", "tilt_x"): 0.001,  # "X=+01.234"
    ("slope-incl-02", "tilt_y"): 0.001,
    ("slope-ext-01", "displacement"): 0.01,  # int32 0.01 mm
}


@dataclass
class SeriesCount:
    samples: int = 0
    suspect: int = 0
    flatline: int = 0
    suspect_in_fault: int = 0
    flatline_in_fault: int = 0
    verdicts: list[tuple[float, Verdict]] = field(default_factory=list)


def config_for(kind: str) -> QualityConfig | None:
    return RECOMMENDED.get(KIND_GROUP.get(kind, kind))


def quality_run(quantise: bool, check_s: list[float]) -> dict[tuple[str, str, str], SeriesCount]:
    """Verdict counts per (scenario, device, kind); the time spent in check() is added to
    check_s[0]."""
    out: dict[tuple[str, str, str], SeriesCount] = {}
    for name in SCENARIOS:
        scenario = load_scenario(default_scenario_path(name))
        windows: dict[tuple[str | None, str | None], list[tuple[float, float]]] = defaultdict(list)
        for fault in scenario.faults:
            device = getattr(fault, "device", None)
            windows[(device, getattr(fault, "kind", None))].append((fault.start, fault.end))
        checkers: dict[tuple[str, str], SeriesQuality] = {}
        for s in scenario_samples(scenario, PROFILES_DIR):
            cfg = config_for(s.kind)
            if cfg is None or s.value is None:
                continue
            key = (s.device, s.kind)
            q = checkers.setdefault(key, SeriesQuality(cfg))
            value = s.value
            res = RESOLUTION.get(key)
            if quantise and res:
                value = round(value / res) * res
            started = time.perf_counter()
            verdict = q.check(ORIGIN + s.t, value)
            check_s[0] += time.perf_counter() - started
            c = out.setdefault((name, s.device, s.kind), SeriesCount())
            c.samples += 1
            c.verdicts.append((s.t, verdict))
            spans = windows.get((s.device, s.kind), []) + windows.get((s.device, None), [])
            in_fault = any(a <= s.t < b for a, b in spans)
            if verdict is Verdict.SUSPECT:
                c.suspect += 1
                c.suspect_in_fault += in_fault
            elif verdict is Verdict.FLATLINE:
                c.flatline += 1
                c.flatline_in_fault += in_fault
    return out


def fastest_real_rates() -> dict[str, float]:
    """Largest |10-min change| per hour of the noise-free truth, per kind group."""
    fastest: dict[str, float] = defaultdict(float)
    profiles = load_profiles(PROFILES_DIR)
    for name in SCENARIOS:
        scenario = load_scenario(default_scenario_path(name))
        for dev in build_devices(scenario, profiles).values():
            for feed in dev.spec.points:
                group = KIND_GROUP.get(feed.kind, feed.kind)
                if group not in RECOMMENDED:
                    continue
                step = 600.0
                n = int(scenario.duration // step)
                vals = [dev.truth(feed.kind, k * step) for k in range(n + 1)]
                rate = max(abs(b - a) for a, b in itertools.pairwise(vals)) * HOUR / step
                fastest[group] = max(fastest[group], rate)
    return fastest


def snow_run() -> list[tuple[str, str, dict[int, float], float, float]]:
    """(scenario, device, max |error| per window, detected and true new_24h at the end)."""
    rows = []
    profiles = load_profiles(PROFILES_DIR)
    for name in SCENARIOS:
        scenario = load_scenario(default_scenario_path(name))
        truth = [
            r
            for r in scenario_truth(scenario, build_devices(scenario, profiles), ORIGIN)
            if r["type"] == "snowfall"
        ]
        detectors: dict[str, NewSnowfall] = {}
        got: dict[str, dict[float, dict[int, float]]] = defaultdict(dict)
        last: dict[str, float] = {}
        for s in scenario_samples(scenario, PROFILES_DIR):
            if s.kind != "snow_depth" or s.value is None:
                continue
            d = detectors.setdefault(s.device, NewSnowfall())
            before = d.hour_end
            d.add(ORIGIN + s.t, s.value)
            last[s.device] = s.value
            if d.hour_end is not None and d.hour_end != before:
                got[s.device][d.hour_end] = d.totals()
        for device, d in detectors.items():  # one more sample completes the last hour
            d.add(ORIGIN + scenario.duration + 1.0, last[device])
            assert d.hour_end is not None
            got[device][d.hour_end] = d.totals()
        for device in sorted(detectors):
            errors = dict.fromkeys(SNOW_WINDOWS_H, 0.0)
            mine = [r for r in truth if r["device"] == device]
            for r in mine:
                for w in SNOW_WINDOWS_H:
                    errors[w] = max(errors[w], abs(got[device][r["t"]][w] - r[f"new_{w}h"]))
            end = mine[-1]
            rows.append((name, device, errors, got[device][end["t"]][24], end["new_24h"]))
    return rows


def phantom(sigma: float, days: int = 30, seed: int = 1) -> tuple[float, float]:
    """(largest 24 h total, mean 24 h total) of a constant depth with gaussian noise, 60 s samples."""
    rng = random.Random(seed)
    d = NewSnowfall()
    worst, total, n = 0.0, 0.0, 0
    for k in range(days * 1440):
        d.add(ORIGIN + 60.0 * k, 50.0 + rng.gauss(0.0, sigma))
        if k % 60 == 1:
            t24 = d.totals()[24]
            worst, total, n = max(worst, t24), total + t24, n + 1
    return worst, total / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quantise", action="store_true", help="round values to each device's resolution")
    args = ap.parse_args()

    check_s = [0.0]
    counts = quality_run(args.quantise, check_s)
    elapsed = check_s[0]
    checked = sum(c.samples for c in counts.values())
    print(f"## Quality checks ({'quantised' if args.quantise else 'raw'} offline samples)\n")
    print("| scenario | series | samples | suspect (outside faults) | flatline (outside faults) |")
    print("|---|---|---:|---:|---:|")
    for (name, device, kind), c in sorted(counts.items()):
        if c.suspect or c.flatline:
            print(
                f"| {name} | {device} {kind} | {c.samples} | {c.suspect} ({c.suspect - c.suspect_in_fault}) "
                f"| {c.flatline} ({c.flatline - c.flatline_in_fault}) |"
            )
    outside = sum(c.suspect - c.suspect_in_fault for c in counts.values())
    flat_outside = sum(c.flatline - c.flatline_in_fault for c in counts.values())
    print(
        f"\nall other series: no suspect, no flatline.  Outside fault windows: {outside} suspect, "
        f"{flat_outside} flatline, over {checked} samples ({elapsed / checked * 1e6:.1f} us per check)\n"
    )

    spike = counts[("sensor-faults", "river-pt-02", "river_level")].verdicts
    in_spike = [v for t, v in spike if 3240 <= t < 3420]
    print(
        f"spike on river-pt-02 (t 3240-3420 s): {sum(v is Verdict.SUSPECT for v in in_spike)}"
        f"/{len(in_spike)} samples SUSPECT"
    )
    radar = counts[("sensor-faults", "river-radar-01", "river_level")].verdicts
    first_flat = next((t for t, v in radar if v is Verdict.FLATLINE), None)
    last_flat = max((t for t, v in radar if v is Verdict.FLATLINE), default=None)
    print(f"stuck radar (t 7200-10800 s): FLATLINE from t = {first_flat} s to {last_flat} s\n")

    print("fastest real change (noise-free truth, 10-min differences) vs recommended max_rate_per_h:")
    for group, rate in sorted(fastest_real_rates().items()):
        print(f"  {group}: {rate:.3g} per h, max_rate_per_h {RECOMMENDED[group].max_rate_per_h}")

    print("\n## New snowfall (NewSnowfall defaults) vs truth: largest |error| at any hour, cm\n")
    print(
        "| scenario | sensor | " + " | ".join(f"{w} h" for w in SNOW_WINDOWS_H) + " | 24 h at end (truth) |"
    )
    print("|---|---|" + "---:|" * (len(SNOW_WINDOWS_H) + 1))
    for name, device, errors, end, true_end in snow_run():
        cells = " | ".join(f"{errors[w]:.2f}" for w in SNOW_WINDOWS_H)
        print(f"| {name} | {device} | {cells} | {end:.2f} ({true_end:.2f}) |")
    print("\nphantom snow, constant depth + gaussian noise, 60 s samples, 30 days:")
    for sigma in (0.3, 0.5):
        worst, mean = phantom(sigma)
        print(f"  noise {sigma} cm: 24 h total at most {worst:.2f} cm, mean {mean:.2f} cm")


if __name__ == "__main__":
    main()
