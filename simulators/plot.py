"""`bosai sim plot`: a picture of a scenario's ground truth, for people to look at.

One figure, one row of panels per device (shared time axis, hours since the scenario start):

* river stage with the registry's stage thresholds (水防団待機水位 ... 氾濫危険水位, labelled in
  Japanese and English), the times the true stage crossed them (triangles up / down), and the
  rain that drives the flood as inverted bars hanging from the top (a classic hydrograph);
* snow depth with its thresholds, the hourly new snow (JMA 降雪量, the depth increase over each
  hour) as bars, the fresh snow that fell (before settling) as outlines, the snowfall intensity,
  and the largest 24 h new-snow total;
* slope tilt (or displacement) with its thresholds and the failure time, and beneath it the
  inverse velocity 1/v (Fukuzono): a straight line falling to zero at failure for alpha = 2, with
  the line a slope engineer would fit to the last part and where it reaches zero;
* temperatures together in one small panel; any other kind in a panel of its own.

Scheduled faults shade the panels of their device (link loss: every panel), labelled with the
fault type and its note.  Thresholds come from the truth's crossing records; given the scenario
(`plot_truth(..., scenario=...)`, as `bosai sim plot --scenario` does) the registry's thresholds
that were not reached are drawn too (dotted), with site names and the rain or snowfall signal
behind each device.  matplotlib is imported only when drawing: the CLI imports this module at
startup.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import itertools
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bosai.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK

if TYPE_CHECKING:
    from simulators.scenario import Scenario

_REPO_PROFILES = Path(__file__).resolve().parent.parent / "firmware_configs" / "profiles"
DEFAULT_SCENARIO = "demo-storm"
DPI = 110
FIG_WIDTH = 13.0  # inches
_AXES_W_PT = (FIG_WIDTH - 3.9) * 72.0  # width of a panel, about: the legends take the rest
HOUR = 3600.0
JST = timezone(timedelta(hours=9))

# Panel heights in inches (the figure grows with the number of panels).
_HEIGHTS = {
    "river": 3.0,
    "snow": 3.0,
    "slope": 2.7,
    "inverse_velocity": 1.7,
    "temperature": 1.7,
    "other": 2.2,
}
_ROLE_ORDER = ("river", "snow", "slope", "other", "temperature")
_HEADER_IN = 0.9
_LEVEL_FALLBACK = {1: "#f2c200", 2: "#f08c00", 3: "#e03131", 4: "#9c36b5", 5: "#212529"}
_SERIES_COLOURS = ("#1c7ed6", "#2f9e44", "#e8590c", "#7048e8", "#0c8599", "#c2255c")
_VALUE_FAULTS = {"spike", "stuck", "drift"}
_FAULT_COLOURS = {"value": "#ff922b", "transport": "#868e96", "link_loss": "#5c7cfa"}
_RAIN = "#4dabf7"
_SNOW_NEW = "#74c0fc"
_SNOW_FALLEN = "#1864ab"
_FAILURE = "#c92a2a"


# --- command line -----------------------------------------------------------------------------


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
            records = _read_truth_file(args.truth)
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
    from simulators.runner import default_scenario_path, scenario_names
    from simulators.scenario import load_scenario

    given = Path(name_or_file)
    path = (
        given if given.suffix in (".yaml", ".yml") or given.exists() else default_scenario_path(name_or_file)
    )
    if not path.exists():
        raise FileNotFoundError(f"no scenario {name_or_file!r}; shipped: {', '.join(scenario_names())}")
    if registry is not None and not registry.exists():
        raise FileNotFoundError(f"no registry file {registry}")
    return load_scenario(path, registry)


def _compute_truth(scenario: Scenario, profiles_dir: Path) -> list[dict[str, Any]]:
    from edge.profiles import load_profiles
    from simulators.devices import build_devices
    from simulators.truth import scenario_truth

    devices = build_devices(scenario, load_profiles(profiles_dir))
    return list(scenario_truth(scenario, devices))


def _read_truth_file(path: Path) -> list[dict[str, Any]]:
    """simulators.truth.read_truth, with errors that name the file and line."""
    records: list[dict[str, Any]] = []
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {n}: not a JSON object ({exc.msg})") from None
            if not isinstance(row, dict) or "type" not in row:
                raise ValueError(f"{path}: line {n}: not a truth record (no 'type')")
            records.append(row)
    if not records:
        raise ValueError(f"{path}: no truth records")
    return records


# --- the truth, sorted for drawing ------------------------------------------------------------


class TruthError(ValueError):
    """Truth records that cannot be drawn (a record without its fields, no values at all)."""


@dataclass
class _Series:
    t: list[float] = field(default_factory=list)  # hours since the scenario start
    v: list[float] = field(default_factory=list)
    unit: str = ""
    site: str | None = None
    signal: str | None = None

    def at(self, t: float) -> float:
        """Linear interpolation (held at the ends)."""
        if not self.t:
            return math.nan
        k = bisect.bisect_left(self.t, t)
        if k <= 0:
            return self.v[0]
        if k >= len(self.t):
            return self.v[-1]
        t0, t1 = self.t[k - 1], self.t[k]
        if t1 == t0:
            return self.v[k]
        return self.v[k - 1] + (self.v[k] - self.v[k - 1]) * (t - t0) / (t1 - t0)


@dataclass(frozen=True)
class _Threshold:
    level: int
    value: float  # as in the registry (positive for an `absolute` channel)
    name: str
    name_ja: str
    reached: bool


@dataclass
class _Truth:
    name: str
    description: str
    start: float
    duration_h: float
    seed: Any
    series: dict[tuple[str, str], _Series]
    forcings: dict[tuple[str, str], _Series]  # (signal, rain | snowfall)
    crossings: list[dict[str, Any]]
    snowfall: dict[str, list[dict[str, Any]]]  # device -> hourly records
    failures: dict[tuple[str, str], float]  # (device, kind) -> hours
    faults: list[dict[str, Any]]

    def hours(self, t: float) -> float:
        return (float(t) - self.start) / HOUR


def _need(row: dict[str, Any], n: int, *keys: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise TruthError(f"record {n} ({row.get('type')}) lacks {', '.join(repr(k) for k in missing)}")


def _parse(records: Sequence[dict[str, Any]]) -> _Truth:
    try:
        return _parse_records(records)
    except (TypeError, ValueError, AttributeError) as exc:  # a string for a number, a list for a record
        if isinstance(exc, TruthError):
            raise
        raise TruthError(f"truth records do not have the expected form: {exc}") from None


def _parse_records(records: Sequence[dict[str, Any]]) -> _Truth:
    head = next((r for r in records if r.get("type") == "scenario"), None)
    times = [float(r["t"]) for r in records if r.get("type") == "value" and "t" in r]
    if not times:
        raise TruthError("no value records to draw")
    start = float(head.get("start", min(times))) if head else min(times)
    duration_h = (
        float(head["duration"]) / HOUR if head and "duration" in head else (max(times) - start) / HOUR
    )
    truth = _Truth(
        name=str(head.get("name", "truth")) if head else "truth",
        description=str(head.get("description", "")) if head else "",
        start=start,
        duration_h=duration_h,
        seed=head.get("seed") if head else None,
        series={},
        forcings={},
        crossings=[],
        snowfall={},
        failures={},
        faults=[],
    )
    for n, row in enumerate(records, 1):
        kind = row.get("type")
        if kind == "value":
            _need(row, n, "device", "kind", "t", "value")
            s = truth.series.setdefault((row["device"], row["kind"]), _Series())
            s.t.append(truth.hours(row["t"]))
            s.v.append(float(row["value"]) if row["value"] is not None else math.nan)
            s.unit = str(row.get("unit") or s.unit)
            s.site = row.get("site") or s.site
            s.signal = row.get("signal") or s.signal
        elif kind == "forcing":
            _need(row, n, "signal", "name", "t", "value")
            f = truth.forcings.setdefault((row["signal"], row["name"]), _Series())
            f.t.append(truth.hours(row["t"]))
            f.v.append(float(row["value"]))
            f.unit = str(row.get("unit") or f.unit)
        elif kind == "crossing":
            _need(row, n, "device", "kind", "level", "threshold", "direction", "t")
            truth.crossings.append(row)
        elif kind == "snowfall":
            _need(row, n, "device", "t", "new_1h")
            truth.snowfall.setdefault(row["device"], []).append(row)
        elif kind == "failure":
            _need(row, n, "device", "kind", "t")
            truth.failures[(row["device"], row["kind"])] = truth.hours(row["t"])
        elif kind == "fault":
            _need(row, n, "fault", "start", "end")
            truth.faults.append(row)
    for s in [*truth.series.values(), *truth.forcings.values()]:
        if any(b < a for a, b in zip(s.t, s.t[1:], strict=False)):
            order = sorted(range(len(s.t)), key=s.t.__getitem__)
            s.t, s.v = [s.t[k] for k in order], [s.v[k] for k in order]
    return truth


# --- which panels ------------------------------------------------------------------------------


@dataclass
class _Panel:
    role: str  # river | snow | slope | inverse_velocity | temperature | other
    device: str | None  # None: the shared temperature panel
    keys: list[tuple[str, str]]  # (device, kind) drawn in it


def _role(kind: str) -> str:
    if kind == "river_level" or kind.endswith("_level") or kind == "stage":
        return "river"
    if kind.startswith("snow_depth"):
        return "snow"
    if kind.startswith(("tilt", "displacement", "extension", "inclination")):
        return "slope"
    if "temperature" in kind:
        return "temperature"
    return "other"


def _panels(truth: _Truth) -> list[_Panel]:
    by_role: dict[str, list[_Panel]] = {r: [] for r in _ROLE_ORDER}
    temperatures: list[tuple[str, str]] = []
    grouped: dict[tuple[str, str, str], _Panel] = {}
    # Devices in the order of the truth (the scenario's order), grouped by site within a role.
    for device, kind in truth.series:
        role = _role(kind)
        if role == "temperature":
            temperatures.append((device, kind))
            continue
        # One panel per device and unit: tilt_x with tilt_y, a displacement on its own.
        unit = truth.series[(device, kind)].unit if role in ("slope", "other") else ""
        key = (role, device, unit)
        if key not in grouped:
            grouped[key] = _Panel(role, device, [])
            by_role[role].append(grouped[key])
        grouped[key].keys.append((device, kind))
    out: list[_Panel] = []
    for role in _ROLE_ORDER:
        if role == "temperature":
            if temperatures:
                out.append(_Panel("temperature", None, temperatures))
            continue
        panels = by_role[role]
        sites = list(dict.fromkeys(truth.series[p.keys[0]].site or "" for p in panels))
        panels.sort(key=lambda p: sites.index(truth.series[p.keys[0]].site or ""))
        for p in panels:
            out.append(p)
            moving = [
                k for k in p.keys if any(math.isfinite(v) for v in _inverse_velocity(truth.series[k])[1])
            ]
            if role == "slope" and moving:  # a slope that does not move has no 1/v
                out.append(_Panel("inverse_velocity", p.device, moving))
    return out


# --- thresholds, forcings and names from the truth and (optionally) the scenario ----------------


def _thresholds(truth: _Truth, key: tuple[str, str], scenario: Scenario | None) -> list[_Threshold]:
    found: dict[tuple[int, float], _Threshold] = {}
    for c in truth.crossings:
        if (c["device"], c["kind"]) == key:
            found[(int(c["level"]), float(c["threshold"]))] = _Threshold(
                int(c["level"]),
                float(c["threshold"]),
                str(c.get("name", "")),
                str(c.get("name_ja", "")),
                True,
            )
    channel = scenario.channel(*key) if scenario is not None else None
    if channel is not None:
        for th in channel.thresholds:
            found.setdefault(
                (th.level, th.value), _Threshold(th.level, th.value, th.name, th.name_ja, reached=False)
            )
    return sorted(found.values(), key=lambda th: (th.level, th.value))


def _direction(key: tuple[str, str], scenario: Scenario | None) -> str:
    channel = scenario.channel(*key) if scenario is not None else None
    return channel.direction if channel is not None else "rising"


def _forcing(
    truth: _Truth,
    keys: Iterable[tuple[str, str]],
    name: str,
    scenario: Scenario | None,
    guess: bool = True,
) -> _Series | None:
    """The `name` forcing (rain, snowfall) behind a panel's devices: through the scenario's signals
    (and the signals they read) when known; else, if `guess`, a snow depth's snowfall is the
    forcing whose hourly amounts match the device's `fallen_1h`, and any other the only forcing
    of that name in the truth."""
    keys = list(keys)
    signals: set[str] = set()
    known = False
    for device, kind in keys:
        if scenario is not None:
            spec = next((d for d in scenario.devices if d.id == device), None)
            feed = next((f for f in spec.points if f.kind == kind), None) if spec else None
            if feed is not None:
                known = True
                todo = [feed.signal]
                while todo:
                    sig = todo.pop()
                    if sig not in signals and sig in scenario.signals:
                        signals.add(sig)
                        todo.extend(scenario.signals[sig].depends_on())
                continue
        recorded = truth.series[(device, kind)].signal
        if recorded:
            known = True
            signals.add(recorded)
    candidates = [(sig, f) for (sig, n), f in truth.forcings.items() if n == name and any(v > 0 for v in f.v)]
    if known:
        return next((f for sig, f in candidates if sig in signals), None)
    if not guess or not candidates:
        return None
    if name == "snowfall":
        fallen = [
            [
                float(r.get("fallen_1h") or 0.0)
                for r in sorted(truth.snowfall.get(d, []), key=lambda r: float(r["t"]))
            ]
            for d, _ in keys
        ]
        if fallen and any(fallen[0]):
            return _closest(candidates, fallen[0], truth.duration_h)
    return candidates[0][1] if len(candidates) == 1 else None


def _closest(candidates: list[tuple[str, _Series]], hourly: list[float], duration_h: float) -> _Series | None:
    """The forcing whose hourly means have the shape of `hourly` (units aside), if one is close."""
    target = sum(hourly)
    best: tuple[float, _Series | None] = (0.1, None)  # at most 10 % of the amount misplaced
    for _, f in candidates:
        _, means = _binned(f, 1.0, duration_h)
        total = sum(means)
        if total <= 0 or len(means) != len(hourly):
            continue
        misfit = sum(abs(a / total - b / target) for a, b in zip(means, hourly, strict=True))
        if misfit < best[0]:
            best = (misfit, f)
    return best[1]


def _site_label(truth: _Truth, key: tuple[str, str], scenario: Scenario | None) -> str:
    site = truth.series[key].site
    registry = scenario.registry if scenario is not None else None
    tenant = scenario.spec.tenant if scenario is not None else None
    if site and registry is not None and tenant is not None:
        found = registry.sites.get((tenant, site))
        if found is not None and found.name != site:
            return f"{found.name} ({site})"
    return site or ""


def _sensor_name(device: str, scenario: Scenario | None) -> str:
    if scenario is None or scenario.registry is None or scenario.spec.tenant is None:
        return ""
    sensor = scenario.registry.sensors.get((scenario.spec.tenant, device))
    return sensor.name if sensor is not None else ""


def _faults_for(truth: _Truth, keys: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """A device's faults (a value fault only in the panel of its kind), and every link loss."""
    return [
        f
        for f in truth.faults
        if f["fault"] == "link_loss"
        or f.get("device") is None
        or any(f["device"] == d and f.get("kind") in (None, k) for d, k in keys)
    ]


# --- drawing -----------------------------------------------------------------------------------


def plot_truth(records: list[dict[str, Any]], out: Path, *, scenario: Scenario | None = None) -> Path:
    """Draw truth records (simulators/truth.py) as one PNG at `out`; returns `out`.  `scenario`
    (optional) adds what the records do not hold: thresholds that were never reached, site names
    and which rain or snowfall drives which device.  Raises TruthError on records it cannot use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MultipleLocator

    with contextlib.suppress(ImportError):  # a bundled Japanese font: 避難判断水位, not empty boxes
        import matplotlib_fontja  # type: ignore[import-untyped]  # noqa: F401

    try:
        from bosai.report import LEVEL_COLOURS

        colours: dict[int, str] = dict(LEVEL_COLOURS)
    except ImportError:  # the report needs the cloud's registry
        colours = dict(_LEVEL_FALLBACK)

    truth = _parse(records)
    panels = _panels(truth)
    heights = [_HEIGHTS[p.role] for p in panels]
    fig_h = _HEADER_IN + sum(heights) + 0.4
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(FIG_WIDTH, fig_h),
        dpi=DPI,
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    x_max = _x_max(truth)
    ctx = _Ctx(fig, truth, scenario, colours, x_max)
    try:
        for panel, ax in zip(panels, axes[:, 0], strict=True):
            ax.set_xlim(0.0, x_max)
            draw = {
                "river": ctx.river,
                "snow": ctx.snow,
                "slope": ctx.slope,
                "inverse_velocity": ctx.inverse_velocity,
                "temperature": ctx.temperature,
                "other": ctx.other,
            }[panel.role]
            draw(ax, panel)
            ctx.faults(ax, panel)
            ax.set_xlim(0.0, x_max)
            ax.xaxis.set_major_locator(MultipleLocator(_hour_step(x_max)))
            ax.tick_params(labelbottom=True, labelsize=8)
            ax.grid(alpha=0.3, linewidth=0.6)
            handles, labels = ax.get_legend_handles_labels()
            for twin in ctx.twins.get(id(ax), []):
                more = twin.get_legend_handles_labels()
                handles, labels = handles + more[0], labels + more[1]
            # the summary (a label without a line) last
            order = sorted(range(len(labels)), key=lambda k: labels[k] in ctx.summaries)
            handles, labels = [handles[k] for k in order], [labels[k] for k in order]
            ax.legend(
                handles,
                labels,
                loc="upper left",
                bbox_to_anchor=(1.06, 1.0),
                fontsize=7.5,
                framealpha=0.9,
                borderaxespad=0.0,
            )
        axes[-1, 0].set_xlabel(_x_label(truth), fontsize=9)
        title = f"{truth.name}: ground truth"
        if truth.seed is not None:
            title += f"  (seed {truth.seed})"
        fig.suptitle(title + (f"\n{truth.description}" if truth.description else ""), fontsize=12)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.55 / fig_h), h_pad=1.2)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=DPI)
    finally:
        plt.close(fig)
    return out


def _x_max(truth: _Truth) -> float:
    """The scenario's end, stretched to show a failure just after it (the scenario must end
    before the failure, so a slope engineer sees where the line is heading)."""
    end = max(truth.duration_h, max((s.t[-1] for s in truth.series.values() if s.t), default=0.0))
    if end <= 0:
        end = 1.0
    near = [t for t in truth.failures.values() if end < t <= end * 1.15]
    return max([end, *(t + 0.03 * end for t in near)])


def _hour_step(span_h: float) -> float:
    for step in (0.25, 0.5, 1, 2, 3, 6, 12, 24, 48, 168):
        if span_h / step <= 16:
            return step
    return 336.0


def _x_label(truth: _Truth) -> str:
    if truth.start > 1e8:  # epoch seconds of a run
        start = datetime.fromtimestamp(truth.start, JST).strftime("%Y-%m-%d %H:%M:%S JST")
        return f"hours since the scenario start ({start})"
    return "scenario time (h)"


class _Ctx:
    """The drawing of each kind of panel."""

    def __init__(
        self, fig: Any, truth: _Truth, scenario: Scenario | None, colours: dict[int, str], x_max: float
    ) -> None:
        self.renderer = fig.canvas.get_renderer()
        self.dpi = float(fig.dpi)
        self.truth = truth
        self.scenario = scenario
        self.colours = colours
        self.x_max = x_max
        self.twins: dict[int, list[Any]] = {}  # id(axes) -> its twin axes (for the legend)
        self.summaries: set[str] = set()  # legend labels without a line, listed last

    def _width(self, text: str, fontsize: float) -> float:
        """Width of a text in points, as it will be drawn."""
        from matplotlib.font_manager import FontProperties

        w, _, _ = self.renderer.get_text_width_height_descent(
            text, FontProperties(size=fontsize), ismath=False
        )
        return float(w) * 72.0 / self.dpi

    def _twin(self, ax: Any, behind: bool = True) -> Any:
        """A second y axis on the right; `behind`: the panel's own curves stay on top (bars)."""
        twin = ax.twinx()
        self.twins.setdefault(id(ax), []).append(twin)
        if behind:
            ax.set_zorder(twin.get_zorder() + 1)
            ax.patch.set_visible(False)
        twin.tick_params(labelsize=8)
        return twin

    # panels

    def river(self, ax: Any, panel: _Panel) -> None:
        self._title(ax, panel)
        rain = _forcing(self.truth, panel.keys, "rain", self.scenario)
        self._measured(ax, panel, "#1c7ed6", linewidth=1.8, headroom=0.6 if rain is not None else 0.0)
        if rain is not None:
            self._rain(ax, rain)
        s = self.truth.series[panel.keys[0]]
        finite = [(v, t) for t, v in zip(s.t, s.v, strict=True) if math.isfinite(v)]
        if finite:
            v, t = max(finite)
            self._stats(ax, "", [f"peak {v:.2f} {s.unit} at {t:.2f} h"])

    def snow(self, ax: Any, panel: _Panel) -> None:
        self._title(ax, panel)
        device = panel.device or ""
        hourly = sorted(self.truth.snowfall.get(device, []), key=lambda r: float(r["t"]))
        if not any(float(r["new_1h"]) > 0 or float(r.get("fallen_1h") or 0.0) > 0 for r in hourly):
            hourly = []  # no snow fell (a melt, or bare ground): no bars of zeros
        snowfall = _forcing(self.truth, panel.keys, "snowfall", self.scenario)
        bars = bool(hourly) or snowfall is not None
        self._measured(ax, panel, "#1c7ed6", linewidth=1.8, footroom=0.75 if bars else 0.0)
        if not bars:
            return
        ax2 = self._twin(ax)
        top = 0.0
        if hourly:
            ends = [self.truth.hours(r["t"]) for r in hourly]
            new_1h = [float(r["new_1h"]) for r in hourly]
            fallen = [float(r.get("fallen_1h", 0.0) or 0.0) for r in hourly]
            width = min((b - a for a, b in itertools.pairwise(ends)), default=1.0)
            mids = [e - width / 2 for e in ends]
            ax2.bar(
                mids,
                new_1h,
                width=width * 0.85,
                color=_SNOW_NEW,
                alpha=0.75,
                label="new snow per hour, 降雪量 (cm, right)",
            )
            top = max([top, *new_1h])
            if any(v > 0 for v in fallen):
                ax2.bar(
                    mids,
                    fallen,
                    width=width * 0.85,
                    fill=False,
                    edgecolor=_SNOW_FALLEN,
                    linewidth=0.8,
                    label="fresh snow fallen per hour (cm, right)",
                )
                top = max([top, *fallen])
            self._stats(ax, "降雪量 (JMA new snow)", self._snow_totals(hourly))
        if snowfall is not None:
            ax2.plot(
                snowfall.t,
                snowfall.v,
                color=_SNOW_FALLEN,
                linewidth=1.0,
                linestyle="-.",
                label=f"snowfall intensity ({snowfall.unit or 'cm/h'}, right)",
            )
            top = max([top, *snowfall.v])
        ax2.set_ylim(0, max(top, 0.5) * 2.6)  # the bars keep to the lower part
        ax2.set_ylabel("new snow (cm/h)", fontsize=8)

    def slope(self, ax: Any, panel: _Panel) -> None:
        self._title(ax, panel)
        rain = _forcing(self.truth, panel.keys, "rain", self.scenario, guess=False)
        self._measured(ax, panel, None, linewidth=1.6, headroom=0.5 if rain is not None else 0.0)
        if rain is not None:
            self._rain(ax, rain)
        self._failure(ax, panel, label=True)

    def inverse_velocity(self, ax: Any, panel: _Panel) -> None:
        """1/v from the truth's differences (Fukuzono 1985): linear to zero at failure for alpha = 2.
        Two series (tilt_x, tilt_y) get an axis each: their speeds differ by far."""
        fits: list[str] = []
        for k, key in enumerate(panel.keys):
            s = self.truth.series[key]
            colour = _SERIES_COLOURS[k % len(_SERIES_COLOURS)]
            own = len(panel.keys) == 2
            target = self._twin(ax, behind=False) if own and k == 1 else ax
            t_mid, inv = _inverse_velocity(s)
            if not t_mid:
                continue
            # dashed: with one failure time the two lines of 1/v often coincide
            style = "--" if target is not ax else "-"
            target.plot(t_mid, inv, color=colour, linewidth=1.5, linestyle=style, label=f"1/v {key[1]}")
            finite = sorted(v for v in inv if math.isfinite(v))
            top = finite[int(0.95 * (len(finite) - 1))] * 1.15 if finite else 1.0
            fit = _fukuzono_fit(t_mid, inv)
            if fit is not None and fit[1] <= 2 * self.x_max:  # else not heading for failure yet
                t0, t_zero, m, b = fit
                t_end = min(t_zero, self.x_max)
                target.plot(
                    [t0, t_end],
                    [m * t0 + b, m * t_end + b],
                    color=colour,
                    linestyle=(0, (1, 1.5)),
                    linewidth=2.2,
                    alpha=0.8,
                    label=f"fit {key[1]} (last 30 %)",
                )
                if t_zero <= self.x_max:
                    target.plot([t_zero], [0.0], marker="x", color=colour, markersize=8, mew=2, clip_on=False)
                fits.append(f"{key[1]} fit {t_zero:.2f} h")
            target.set_ylim(0.0, top if top > 0 else 1.0)
            unit = f"day/{s.unit}" if s.unit else "day/unit"
            if own:
                target.set_ylabel(f"1/v {key[1]}\n({unit})", fontsize=8, color=colour)
                target.tick_params(axis="y", colors=colour)
            elif k == 0:
                ax.set_ylabel(f"1/v ({unit})", fontsize=8)
        ax.set_title(f"{panel.device}: inverse velocity (Fukuzono)", fontsize=9, loc="left")
        failures = [self.truth.failures[k] for k in panel.keys if k in self.truth.failures]
        if failures:
            fits.append(f"true failure {min(failures):.2f} h")
        self._stats(ax, "1/v → 0", fits)
        self._failure(ax, panel, label=False)

    def temperature(self, ax: Any, panel: _Panel) -> None:
        units = set()
        for k, key in enumerate(panel.keys):
            s = self.truth.series[key]
            units.add(s.unit)
            colour = _SERIES_COLOURS[k % len(_SERIES_COLOURS)]
            ax.plot(s.t, s.v, color=colour, linewidth=1.1, label=f"{key[0]} {key[1]}")
        ax.set_ylabel(", ".join(sorted(u for u in units if u)), fontsize=8)
        ax.set_title("temperatures", fontsize=9, loc="left")
        rows = len({m.top for m in self._fault_marks(panel)})
        if rows:  # the fault labels above the curves
            lo, hi = ax.get_ylim()
            share = 0.05 + 0.14 * rows
            ax.set_ylim(lo, lo + (hi - lo) / (1.0 - share))

    def other(self, ax: Any, panel: _Panel) -> None:
        self._title(ax, panel)
        self._measured(ax, panel, None, linewidth=1.4)

    # parts

    def _title(self, ax: Any, panel: _Panel) -> None:
        key = panel.keys[0]
        site = _site_label(self.truth, key, self.scenario)
        sensor = _sensor_name(key[0], self.scenario)
        kinds = ", ".join(k for _, k in panel.keys)
        device = f"{key[0]} ({sensor})" if sensor else key[0]
        title = f"{site}  ·  {device}  ·  {kinds}" if site else f"{device}  ·  {kinds}"
        ax.set_title(title, fontsize=10, loc="left")

    def _stats(self, ax: Any, head: str, parts: list[str]) -> None:
        """A one-line summary at the right of the title, or in the legend if the title is long."""
        if not parts:
            return
        text = f"{head}: {',  '.join(parts)}" if head else ",  ".join(parts)
        title = ax.get_title(loc="left")
        if self._width(title, ax.title.get_fontsize()) + self._width(text, 8.5) + 30 < _AXES_W_PT:
            ax.set_title(text, fontsize=8.5, loc="right", color="#343a40")
        else:
            summary = "\n".join([head, *parts] if head else parts)
            self.summaries.add(summary)
            ax.plot([], [], linestyle="none", label=summary)

    def _measured(
        self,
        ax: Any,
        panel: _Panel,
        colour: str | None,
        linewidth: float,
        headroom: float = 0.0,
        footroom: float = 0.0,
    ) -> None:
        """The series of the panel, their thresholds and crossings.  `headroom` / `footroom`:
        free space above / below the curves (for bars), as a fraction of their range."""
        values: list[float] = []
        lines: dict[tuple[float, int], _Threshold] = {}
        unit = ""
        for k, key in enumerate(panel.keys):
            s = self.truth.series[key]
            unit = unit or s.unit
            line_colour = colour if colour and k == 0 else _SERIES_COLOURS[k % len(_SERIES_COLOURS)]
            ax.plot(s.t, s.v, color=line_colour, linewidth=linewidth, label=f"{key[1]} ({s.unit})", zorder=4)
            finite = [v for v in s.v if math.isfinite(v)]
            values += finite
            if not finite:
                continue
            direction = _direction(key, self.scenario)
            peak = max(finite, key=abs)
            for th in _thresholds(self.truth, key, self.scenario):
                signs = {
                    1.0 if s.at(self.truth.hours(x["t"])) >= 0 else -1.0
                    for x in self.truth.crossings
                    if (x["device"], x["kind"]) == key and int(x["level"]) == th.level
                }
                if not signs:
                    signs = {-1.0 if direction == "absolute" and peak < 0 else 1.0}
                for sign in signs:
                    lines.setdefault((sign * th.value, th.level), th)
        ax.set_ylabel(unit, fontsize=9)
        if not values:
            return
        lo, hi = min(values), max(values)
        shown = _visible_thresholds(lines, lo, hi)
        for (y, _), _th in shown:
            lo, hi = min(lo, y), max(hi, y)
        span = hi - lo if hi > lo else max(abs(hi) * 0.1, 0.1)
        bottom = lo - 0.06 * span - footroom * span
        if footroom and lo >= 0:
            bottom = max(bottom, 0.0 if lo - 0.06 * span >= 0 else lo - 0.06 * span)
        # Room at the top for the rows of fault labels, above the curves and threshold labels.
        rows = len({m.top for m in self._fault_marks(panel)})
        if rows:
            share = 0.05 + 0.14 * rows  # of the axes' height
            below = (lo - bottom) / span + 1.06
            headroom = max(headroom, share * below / (1.0 - share) + 0.1)
        ax.set_ylim(bottom, hi + 0.06 * span + headroom * span)
        labels = []
        for (y, level), th in shown:
            col = self.colours.get(level, "#495057")
            ax.axhline(
                y,
                color=col,
                linestyle="--" if th.reached else ":",
                linewidth=1.2 if th.reached else 1.0,
                zorder=2,
            )
            text = f"L{level} {th.name_ja} / {th.name}" if th.name_ja else f"L{level} {th.name}"
            text += f"  {_number(y)} {unit}" + ("" if th.reached else "  (not reached)")
            labels.append((y, text, "#a07c00" if level == 1 else col))
        self._threshold_labels(ax, panel, labels)
        self._crossings(ax, panel)

    def _threshold_labels(self, ax: Any, panel: _Panel, labels: list[tuple[float, str, str]]) -> None:
        """Write each threshold's name on its line at one end of the panel (left or right, above
        or below the line), wherever it hides the least: curve points, crossing markers, the
        failure line and the labels already placed."""
        if not labels:
            return
        fontsize = 7.5
        lo, hi = ax.get_ylim()
        axes_in = _HEIGHTS.get(panel.role, 2.5) - 0.6
        height = (fontsize * 1.4 / (axes_in * 72.0)) * (hi - lo)
        obstacles: list[tuple[float, float, float]] = [  # (x as a fraction of the axes, y, weight)
            (t / self.x_max, v, 1.0)
            for key in panel.keys
            for t, v in zip(self.truth.series[key].t, self.truth.series[key].v, strict=True)
            if math.isfinite(v)
        ]
        for c in self.truth.crossings:
            key = (c["device"], c["kind"])
            if key in panel.keys:
                t = self.truth.hours(c["t"])
                obstacles.append((t / self.x_max, self.truth.series[key].at(t), 40.0))
                # its time label, down and to the right of the marker
                obstacles.append((t / self.x_max + 0.02, self.truth.series[key].at(t) - 0.6 * height, 20.0))
        # On the right, labels end just before a failure line rather than over it.
        walls = [
            t / self.x_max for k, t in self.truth.failures.items() if k in panel.keys and t <= self.x_max
        ]
        right = min([0.994, *(x - 0.006 for x in walls if x > 0.7)])
        label_h = 7 * 1.5 / (axes_in * 72.0)  # a fault label's height, fraction of the axes
        fixed: list[_Box] = [
            (m.start / self.x_max, m.label_end, lo + (m.top - label_h) * (hi - lo), lo + m.top * (hi - lo))
            for m in self._fault_marks(panel)
        ]
        options: list[list[_Option]] = []  # per label: (cost, side, va, box)
        for y, text, _ in labels:
            w = (self._width(text, fontsize) + 8) / _AXES_W_PT
            mine = []
            for side, va in (("left", "bottom"), ("left", "top"), ("right", "bottom"), ("right", "top")):
                x0, x1 = (0.0, w) if side == "left" else (right - w, right)
                y0, y1 = (y, y + height) if va == "bottom" else (y - height, y)
                cost = sum(wt for x, v, wt in obstacles if x0 <= x <= x1 and y0 <= v <= y1)
                cost += 0.0 if lo <= y0 and y1 <= hi else 300.0
                cost += sum(300.0 for f in fixed if _overlap(f, (x0, x1, y0, y1)))
                mine.append((cost, side, va, (x0, x1, y0, y1)))
            options.append(sorted(mine, key=lambda o: o[0]))
        for (y, text, col), (_, side, va, _) in zip(labels, _place(options), strict=True):
            ax.text(
                0.006 if side == "left" else right,
                y,
                text,
                transform=ax.get_yaxis_transform(),
                ha=side,
                va=va,
                fontsize=fontsize,
                color=col,
                bbox={
                    "boxstyle": "square,pad=0.12",
                    "facecolor": "white",
                    "alpha": 0.75,
                    "edgecolor": "none",
                },
                zorder=5,
            )

    def _crossings(self, ax: Any, panel: _Panel) -> None:
        drawn: set[str] = set()
        for c in self.truth.crossings:
            key = (c["device"], c["kind"])
            if key not in panel.keys:
                continue
            t = self.truth.hours(c["t"])
            y = self.truth.series[key].at(t)
            up = c["direction"] == "up"
            label = "crossing up (into level)" if up else "crossing down (out of level)"
            ax.scatter(
                [t],
                [y],
                marker="^" if up else "v",
                s=55,
                color=self.colours.get(int(c["level"]), "#495057"),
                edgecolors="black",
                linewidths=0.7,
                zorder=6,
                label=None if label in drawn else label,
            )
            drawn.add(label)
            near_end = t > 0.93 * self.x_max
            ax.annotate(
                f"{t:.2f} h",
                (t, y),
                xytext=(-5 if near_end else 5, -10 if up else 5),
                textcoords="offset points",
                ha="right" if near_end else "left",
                fontsize=6.5,
                color="#343a40",
                zorder=6,
            )

    def _rain(self, ax: Any, rain: _Series) -> None:
        """Rain as bars hanging from the top of the panel (a hyetograph over the hydrograph)."""
        width = _bin_hours(self.truth.duration_h)
        mids, means = _binned(rain, width, self.truth.duration_h)
        total = sum(m * width for m in means)
        per = f"{width * 60:.0f}-min" if width < 1 else f"{width:g}-h"
        ax2 = self._twin(ax)
        ax2.bar(
            mids,
            means,
            width=width * 0.9,
            color=_RAIN,
            alpha=0.7,
            label=f"rain, {per} mean (right; total {total:.0f} mm)",
        )
        ax2.set_ylim(max([*means, 1.0]) * 2.8, 0.0)  # inverted: bars from the top, in its upper third
        ax2.set_ylabel(f"rain ({rain.unit or 'mm/h'})", fontsize=8)

    def _failure(self, ax: Any, panel: _Panel, label: bool) -> None:
        times = sorted({self.truth.failures[k] for k in panel.keys if k in self.truth.failures})
        for t in times:
            if t <= self.x_max:
                ax.axvline(
                    t, color=_FAILURE, linewidth=1.6, zorder=3, label="failure (truth)" if label else None
                )
                if label:  # beside the line, in the margin after the scenario's end if there is one
                    after = t > 0.9 * self.x_max
                    ax.text(
                        t,
                        0.97,
                        f" failure 崩壊 {t:.2f} h",
                        transform=ax.get_xaxis_transform(),
                        rotation=90,
                        ha="left" if after else "right",
                        va="top",
                        rotation_mode="default",
                        fontsize=8,
                        color=_FAILURE,
                        zorder=7,
                    )
            elif label:
                ax.annotate(
                    f"failure 崩壊 at {t:.1f} h →",
                    xy=(0.995, 0.03),
                    xycoords="axes fraction",
                    ha="right",
                    fontsize=8,
                    color=_FAILURE,
                )
            label = False

    def _snow_totals(self, hourly: list[dict[str, Any]]) -> list[str]:
        """The largest new-snow totals over 1 h and 24 h, and when their window ended."""
        parts = []
        for window, name in (("new_1h", "1 h"), ("new_24h", "24 h")):
            rows = [r for r in hourly if r.get(window) is not None]
            if rows:
                best = max(rows, key=lambda r: float(r[window]))
                when = self.truth.hours(best["t"])
                parts.append(f"max {name} {float(best[window]):.1f} cm (to {when:.0f} h)")
        return parts

    def _fault_marks(self, panel: _Panel) -> list[_FaultMark]:
        """The fault windows of a panel with their labels, each label in the first of three rows
        at the top where it does not run into the one before."""
        marks: list[_FaultMark] = []
        devices = {d for d, _ in panel.keys}
        row_ends = [-1.0, -1.0, -1.0]  # where the last label of each row ends, fraction of the axes
        for i, f in enumerate(sorted(_faults_for(self.truth, panel.keys), key=lambda f: float(f["start"]))):
            name = str(f["fault"])
            family = "link_loss" if name == "link_loss" else "value" if name in _VALUE_FAULTS else "transport"
            a, b = self.truth.hours(f["start"]), self.truth.hours(f["end"])
            b = max(b, a + 0.004 * self.x_max)  # a one-minute spike stays visible
            text = name
            if name == "link_loss" and f.get("mode"):
                text += f" ({f['mode']})"
            if len(devices) > 1 and f.get("device"):
                text += f" {f['device']}"
            if f.get("kind") and len(panel.keys) > 1:
                text += f" {f['kind']}"
            if f.get("note"):
                text += f": {f['note']}"
            x0 = a / self.x_max
            x1 = x0 + (self._width(text, 7) + 6) / _AXES_W_PT
            row = next((r for r, end in enumerate(row_ends) if end < x0), i % 3)
            row_ends[row] = x1
            marks.append(_FaultMark(family, a, b, text, 0.97 - 0.14 * row, x1))
        return marks

    def faults(self, ax: Any, panel: _Panel) -> None:
        seen: set[str] = set()
        for m in self._fault_marks(panel):
            colour = _FAULT_COLOURS[m.family]
            legend = {"value": "value fault", "transport": "transport fault", "link_loss": "uplink loss"}
            ax.axvspan(
                m.start,
                m.end,
                facecolor=colour,
                edgecolor=colour,
                alpha=0.2,
                hatch="//" if m.family == "link_loss" else None,
                linewidth=0,
                zorder=0,
                label=None if m.family in seen else f"{legend[m.family]} (shaded)",
            )
            seen.add(m.family)
            ax.text(
                m.start,
                m.top,
                m.text,
                transform=ax.get_xaxis_transform(),
                ha="left",
                va="top",
                fontsize=7,
                color="#343a40",
                bbox={"boxstyle": "round,pad=0.2", "facecolor": colour, "alpha": 0.3, "edgecolor": "none"},
                zorder=7,
                clip_on=True,
            )


@dataclass(frozen=True)
class _FaultMark:
    family: str  # value | transport | link_loss
    start: float  # hours
    end: float
    text: str
    top: float  # top of the label, fraction of the axes height
    label_end: float  # right end of the label, fraction of the axes width


_Box = tuple[float, float, float, float]  # x0, x1 (fractions of the axes), y0, y1 (data)
_Option = tuple[float, str, str, _Box]


def _overlap(a: _Box, b: _Box) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def _place(options: list[list[_Option]]) -> list[_Option]:
    """One option per label, least total cost with overlapping labels costing 500 a pair: a
    depth-first search, cheapest options first, pruned by the best total found so far."""
    best: tuple[float, list[_Option]] = (math.inf, [o[0] for o in options])

    def search(i: int, chosen: list[_Option], cost: float) -> None:
        nonlocal best
        if cost >= best[0]:
            return
        if i == len(options):
            best = (cost, list(chosen))
            return
        for opt in options[i]:
            extra = opt[0] + sum(500.0 for c in chosen if _overlap(c[3], opt[3]))
            chosen.append(opt)
            search(i + 1, chosen, cost + extra)
            chosen.pop()

    search(0, [], 0.0)
    return best[1]


def _visible_thresholds(
    lines: dict[tuple[float, int], _Threshold], lo: float, hi: float
) -> list[tuple[tuple[float, int], _Threshold]]:
    """Reached thresholds, those within the data's range, and the next one beyond it on each side
    (how far the next level was): never every level of a channel that stayed quiet."""
    shown = [(k, th) for k, th in lines.items() if th.reached or lo <= k[0] <= hi]
    above = sorted((k for k, th in lines.items() if k[0] > hi and not th.reached))
    below = sorted((k for k, th in lines.items() if k[0] < lo and not th.reached), reverse=True)
    shown += [(k, lines[k]) for k in above[:1] + below[:1]]
    return sorted(shown, key=lambda item: item[0])


def _number(v: float) -> str:
    """A threshold as people write it: 2.00 m, 0.10 deg, 60.0 cm, 150 mm."""
    digits = 2 if abs(v) < 10 else 1 if abs(v) < 100 else 0
    return f"{v:.{digits}f}"


def _inverse_velocity(s: _Series) -> tuple[list[float], list[float]]:
    """(midpoint hours, 1/|v| in days per unit) from successive truth values."""
    t_mid: list[float] = []
    inv: list[float] = []
    for k in range(1, len(s.t)):
        t0, v0, t1, v1 = s.t[k - 1], s.v[k - 1], s.t[k], s.v[k]
        dt_days = (t1 - t0) / 24.0
        if dt_days <= 0 or not (math.isfinite(v0) and math.isfinite(v1)):
            continue
        speed = abs(v1 - v0) / dt_days
        t_mid.append((t0 + t1) / 2)
        inv.append(1.0 / speed if speed > 1e-12 else math.nan)
    return t_mid, inv


def _fukuzono_fit(t: list[float], inv: list[float]) -> tuple[float, float, float, float] | None:
    """Least-squares line through the last 30 % of 1/v: (fit start, time it reaches 0, slope,
    intercept), or None if it does not head for zero."""
    if not t:
        return None
    t_from = t[0] + 0.7 * (t[-1] - t[0])
    pts = [(x, y) for x, y in zip(t, inv, strict=True) if x >= t_from and math.isfinite(y)]
    if len(pts) < 3:
        return None
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx <= 0:
        return None
    m = sum((x - mx) * (y - my) for x, y in pts) / sxx
    b = my - m * mx
    if m >= 0:
        return None
    return pts[0][0], -b / m, m, b


def _bin_hours(duration_h: float) -> float:
    """Bars of 1 h (the hydrologist's hourly rain) unless the scenario is short."""
    for width in (1.0, 0.5, 1 / 6):
        if duration_h / width >= 6:
            return width
    return 1 / 12


def _binned(s: _Series, width: float, end: float) -> tuple[list[float], list[float]]:
    """Mean of the samples in each [k w, (k+1) w) bin before `end`: (bin middles, means)."""
    sums: dict[int, tuple[float, int]] = {}
    for t, v in zip(s.t, s.v, strict=True):
        k = math.floor(t / width + 1e-9)
        if k * width >= end - 1e-9:
            continue
        total, n = sums.get(k, (0.0, 0))
        sums[k] = (total + v, n + 1)
    keys = sorted(sums)
    return [(k + 0.5) * width for k in keys], [sums[k][0] / sums[k][1] for k in keys]
