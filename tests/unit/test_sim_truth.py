"""The ground truth of the shipped scenarios: crossings, snowfall totals, failure and faults,
computed from the scenario alone and consistent with its own value series."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from bosai.paths import PROFILES_DIR
from edge.profiles import load_profiles
from simulators.devices import build_devices
from simulators.runner import default_scenario_path, load_scenario
from simulators.truth import read_truth, scenario_truth, write_truth

HOUR = 3600.0


def truth(name: str, origin: float = 0.0) -> list[dict[str, Any]]:
    scenario = load_scenario(default_scenario_path(name))
    return list(scenario_truth(scenario, build_devices(scenario, load_profiles(PROFILES_DIR)), origin))


def of(rows: list[dict[str, Any]], type_: str, **match: Any) -> list[dict[str, Any]]:
    return [r for r in rows if r["type"] == type_ and all(r[k] == v for k, v in match.items())]


def test_demo_storm_river_crossings_in_order() -> None:
    rows = truth("demo-storm")
    river = of(rows, "crossing", device="river-radar-01")
    assert [(r["level"], r["direction"]) for r in river] == [
        (1, "up"), (2, "up"), (3, "up"), (4, "up"), (4, "down"), (3, "down"), (2, "down"),
    ]  # fmt: skip
    assert [r["name_ja"] for r in river[:4]] == [
        "水防団待機水位",
        "氾濫注意水位",
        "避難判断水位",
        "氾濫危険水位",
    ]
    assert all(r["site"] == "ishikari-asahibashi" for r in river)
    # both gauges watch the same river: same true crossings
    pt = of(rows, "crossing", device="river-pt-02")
    assert [r["t"] for r in pt] == pytest.approx([r["t"] for r in river])


def test_crossing_times_bracket_the_threshold_in_the_value_series() -> None:
    rows = truth("demo-storm")
    for c in of(rows, "crossing"):
        series = {r["t"]: r["value"] for r in of(rows, "value", device=c["device"], kind=c["kind"])}
        before = max(t for t in series if t <= c["t"])
        after = min(t for t in series if t > c["t"])
        a, b = abs(series[before]), abs(series[after])  # tilt thresholds are on |tilt|
        lo, hi = (a, b) if c["direction"] == "up" else (b, a)
        assert lo < c["threshold"] <= hi + 1e-9, c


def test_snowfall_totals_follow_the_jma_definition() -> None:
    rows = truth("demo-storm")
    snow = of(rows, "snowfall", device="snow-laser-01")
    assert len(snow) == 12
    depth = {r["t"]: r["value"] for r in of(rows, "value", device="snow-laser-01", kind="snow_depth")}
    for k, row in enumerate(snow):
        assert row["new_1h"] == pytest.approx(max(0.0, depth[row["t"]] - depth[row["t"] - HOUR]))
        assert row["new_3h"] == pytest.approx(sum(r["new_1h"] for r in snow[max(0, k - 2) : k + 1]))
        # settling: the pack grows by less than the fresh snow that fell
        assert row["new_1h"] <= row["fallen_1h"] + 1e-9
    assert sum(r["fallen_1h"] for r in snow) == pytest.approx(7.5 * 5, rel=0.01)  # trapezoid: 5 h at peak
    assert snow[-1]["new_12h"] == pytest.approx(sum(r["new_1h"] for r in snow))


def test_failure_only_where_the_slope_really_fails() -> None:
    failures = of(truth("demo-storm"), "failure")
    assert len(failures) == 4 and all(r["t"] == pytest.approx(12.2 * HOUR) for r in failures)
    assert of(truth("quiet-day"), "failure") == []  # creep towards a failure 30 days away


def test_quiet_day_has_no_crossing_and_faults_are_listed() -> None:
    assert of(truth("quiet-day"), "crossing") == []
    faults = Counter(r["fault"] for r in of(truth("sensor-faults"), "fault"))
    assert faults["slow"] == 2 and faults["link_loss"] == 2 and faults["dropout"] == 2


def test_truth_is_reproducible_and_shifts_with_the_origin(tmp_path: Any) -> None:
    a, b = truth("typhoon-flood"), truth("typhoon-flood", origin=1000.0)
    assert [r["type"] for r in a] == [r["type"] for r in b]
    for x, y in zip(a, b, strict=True):
        if "t" in x:
            assert y["t"] == pytest.approx(x["t"] + 1000.0)
    path = write_truth(iter(a), tmp_path / "t.jsonl")
    assert read_truth(path) == a
