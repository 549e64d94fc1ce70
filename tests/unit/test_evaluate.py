"""`bosai evaluate`: the scoring rules on hand-made truth and alerts, and one real run."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bosai import evaluate_cli
from bosai.evaluate import (
    Band,
    History,
    Truth,
    check_forecast,
    fault_visible,
    judge_alarms,
    judge_alert,
    markdown_table,
    match_crossing,
    score_crossings,
    score_faults,
    summarise_forecasts,
)
from cloud.registry import (
    Channel,
    FailureForecastConfig,
    RateConfig,
    RateThreshold,
    RoadClass,
    Threshold,
)
from wire.alerts import Alert

T0 = 1_768_402_800.0  # the run's start (epoch s)
H = 3600.0

RIVER = Channel(
    unit="m",
    direction="rising",
    clear_margin=0.1,
    thresholds=[Threshold(level=1, value=2.0, name="standby"), Threshold(level=2, value=2.6, name="caution")],
    rate=RateConfig(unit="m/h", window_s=1800.0, thresholds=[RateThreshold(level=1, value=0.5, name="fast")]),
)
TILT = Channel(
    unit="deg",
    direction="absolute",
    failure_forecast=FailureForecastConfig(level=4, alert_within_s=12 * H),
)


def alert(
    t: float,
    level: int,
    event: str = "raised",
    condition: str = "level",
    sensor: str = "gauge",
    kind: str = "river_level",
) -> Alert:
    category = (
        "maintenance" if condition in {"suspect_data", "flatline", "sensor_failing", "stale"} else "disaster"
    )
    ts = datetime.fromtimestamp(t, UTC)
    return Alert(
        v=1,
        id="a",
        tenant="city",
        condition=condition,
        category=category,  # type: ignore[arg-type]
        event=event,  # type: ignore[arg-type]
        status="resolved" if event == "resolved" else "active",
        level=level,
        ts=ts,
        raised_at=ts,
        reason="test",
        sensor=sensor,
        kind=kind,
    )


def crossing(t: float, level: int, direction: str = "up", device: str = "gauge") -> dict[str, Any]:
    return {
        "type": "crossing",
        "device": device,
        "kind": "river_level",
        "level": level,
        "name": f"L{level}",
        "direction": direction,
        "t": t,
    }


def truth_of(*records: dict[str, Any], duration: float = 12 * H) -> Truth:
    head = {"type": "scenario", "name": "t", "start": T0, "duration": duration, "step": 60.0}
    return Truth.from_records([head, *records])


def values(device: str, kind: str, f: Any, duration: float = 12 * H) -> list[dict[str, Any]]:
    """Truth value records every 60 s of f(hours since start)."""
    n = int(duration / 60)
    return [
        {"type": "value", "device": device, "kind": kind, "t": T0 + k * 60.0, "value": f(k / 60.0)}
        for k in range(n + 1)
    ]


# --- crossings ---


def test_crossing_detected_with_delay_and_escalation() -> None:
    t1, t2 = T0 + 3 * H, T0 + 5 * H
    truth = truth_of(crossing(t1, 1), crossing(t2, 2))
    alerts = [alert(t1 + 120, 1), alert(t2 + 300, 2, "escalated")]
    r1, r2 = score_crossings(truth, alerts)
    assert (r1.level, r1.detected, r1.delay_s, r1.held) == (1, True, 120.0, False)
    assert (r2.level, r2.detected, r2.delay_s) == (2, True, 300.0)


def test_crossing_early_by_less_than_10_min_is_detected_with_negative_delay() -> None:
    t = T0 + 3 * H
    (r,) = score_crossings(truth_of(crossing(t, 1)), [alert(t - 300, 1)])
    assert r.detected and r.delay_s == -300.0


def test_crossing_missed_without_alert_or_when_alert_comes_after_truth_drops() -> None:
    t, down = T0 + 3 * H, T0 + 4 * H
    truth = truth_of(crossing(t, 1), crossing(down, 1, "down"))
    (r,) = score_crossings(truth, [])
    assert not r.detected and r.delay_s is None
    (late,) = score_crossings(truth, [alert(down + 60, 1)])
    assert not late.detected
    other_sensor = [alert(t + 60, 1, sensor="backup")]
    (r,) = score_crossings(truth, other_sensor)
    assert not r.detected
    too_low = [alert(t + 60, 1)]
    (r2,) = score_crossings(truth_of(crossing(t, 2)), too_low)
    assert not r2.detected


def test_crossing_held_by_hysteresis_from_an_earlier_excursion() -> None:
    up1, down1, up2 = T0 + 1 * H, T0 + 2 * H, T0 + 2.5 * H
    crossings = [crossing(up1, 1), crossing(down1, 1, "down"), crossing(up2, 1)]
    timeline = [(up1 + 60, 1)]  # raised once, never cleared: the truth dipped within the margin
    r = match_crossing(crossings[2], timeline, crossings, T0 + 12 * H)
    assert r.detected and r.held and r.delay_s is None


def test_crossing_uses_the_run_end_when_the_truth_never_drops() -> None:
    t = T0 + 11.9 * H
    (r,) = score_crossings(truth_of(crossing(t, 1)), [alert(T0 + 11.95 * H, 1)])
    assert r.detected
    (r,) = score_crossings(truth_of(crossing(t, 1)), [alert(T0 + 12.5 * H, 1)])
    assert not r.detected


# --- false alarms ---


def test_level_alert_justified_only_when_truth_reaches_threshold_within_30_min() -> None:
    rising = values("gauge", "river_level", lambda h: 1.0 + 0.25 * h)  # 2.0 m at 4 h
    truth = truth_of(*rising)
    ok, basis = judge_alert(alert(T0 + 3.6 * H, 1), truth, RIVER, None)  # 2.0 m 24 min later
    assert ok, basis
    ok, basis = judge_alert(alert(T0 + 3.0 * H, 1), truth, RIVER, None)  # truth only 1.875 m by 3.5 h
    assert not ok and "1.875" in basis
    ok, _ = judge_alert(alert(T0 + 5 * H, 2), truth, RIVER, None)  # 2.6 m only at 6.4 h
    assert not ok


def test_unjustified_alarm_inside_a_fault_window_is_marked() -> None:
    flat = values("gauge", "river_level", lambda h: 1.3)
    spike = {
        "type": "fault",
        "fault": "spike",
        "device": "gauge",
        "kind": "river_level",
        "start": T0 + H,
        "end": T0 + 1.5 * H,
    }
    truth = truth_of(*flat, spike)
    alarms = judge_alarms(
        truth,
        [alert(T0 + 1.2 * H, 1), alert(T0 + 3 * H, 1), alert(T0 + 3.5 * H, 0, "resolved")],
        lambda s, k: RIVER,
        lambda s: None,
    )
    assert [(a.justified, bool(a.in_fault)) for a in alarms] == [(False, True), (False, False)]
    assert alarms[0].in_fault.startswith("spike 1.00-1.50 h")


def test_rate_alert_justified_at_80_percent_of_threshold() -> None:
    # 0.45 m/h: 90 % of the 0.5 m/h level; 0.3 m/h is 60 %.
    fast = truth_of(*values("gauge", "river_level", lambda h: 1.0 + 0.45 * h))
    slow = truth_of(*values("gauge", "river_level", lambda h: 1.0 + 0.3 * h))
    a = alert(T0 + 4 * H, 1, condition="rate")
    assert judge_alert(a, fast, RIVER, None)[0]
    ok, basis = judge_alert(a, slow, RIVER, None)
    assert not ok and "0.3 m/h" in basis


def test_snow_dispatch_justified_within_one_and_a_half_cm() -> None:
    road = RoadClass(new_snow_cm=10.0, window_h=24)
    snow = [{"type": "snowfall", "device": "snow", "t": T0 + h * H, "new_24h": 1.0 * h} for h in range(1, 13)]
    truth = truth_of(*snow)
    a9 = alert(T0 + 8.5 * H, 1, condition="snow_dispatch", sensor="snow", kind="snow_depth")  # 9.0 by 9 h
    assert judge_alert(a9, truth, Channel(unit="cm", snowfall=True), road)[0]
    a6 = alert(T0 + 5 * H, 1, condition="snow_dispatch", sensor="snow", kind="snow_depth")  # 6.0 by 6 h
    assert not judge_alert(a6, truth, Channel(unit="cm", snowfall=True), road)[0]


def test_failure_alert_justified_by_a_failure_of_the_device_in_time() -> None:
    fail = {"type": "failure", "device": "incl", "kind": "tilt_x", "site": "slope", "t": T0 + 30 * H}
    truth = truth_of(fail)
    near = alert(T0 + 13 * H, 4, condition="failure_forecast", sensor="incl", kind="tilt_y")  # 17 h <= 12 + 6
    far = alert(T0 + 11 * H, 4, condition="failure_forecast", sensor="incl", kind="tilt_y")  # 19 h
    other = alert(T0 + 13 * H, 4, condition="failure_forecast", sensor="incl-b", kind="tilt_y")
    assert judge_alert(near, truth, TILT, None)[0]
    assert not judge_alert(far, truth, TILT, None)[0]
    assert not judge_alert(other, truth, TILT, None)[0]


# --- maintenance and faults ---


def test_faults_caught_missed_and_not_applicable() -> None:
    faults: list[dict[str, Any]] = [
        {
            "type": "fault",
            "fault": "spike",
            "device": "gauge",
            "kind": "river_level",
            "start": T0 + H,
            "end": T0 + 1.1 * H,
        },
        {
            "type": "fault",
            "fault": "dropout",
            "device": "gauge",
            "kind": None,
            "start": T0 + 2 * H,
            "end": T0 + 2.5 * H,
        },
        {
            "type": "fault",
            "fault": "link_loss",
            "device": None,
            "kind": None,
            "start": T0 + 3 * H,
            "end": T0 + 3.2 * H,
        },
        {
            "type": "fault",
            "fault": "slow",
            "device": "gauge",
            "kind": None,
            "delay": 0.3,
            "start": T0 + 4 * H,
            "end": T0 + 4.2 * H,
        },
    ]
    alerts = [
        alert(T0 + 1.2 * H, 1, condition="suspect_data"),  # 6 min after the spike: caught
        alert(T0 + 2.2 * H, 1, condition="suspect_data"),  # not what shows a dropout
        alert(T0 + 4.1 * H, 1, condition="sensor_failing"),  # a slow answer within the timeout
    ]
    results = score_faults(truth_of(*faults), alerts, lambda f: fault_visible(f, {"gauge": 0.5}))
    assert [r.status for r in results] == ["caught", "missed", "n/a", "n/a"]
    assert results[0].alerts == ["suspect_data river_level at 1.20 h"]
    assert fault_visible({"fault": "slow", "device": "gauge", "delay": 3.0}, {"gauge": 1.0})


# --- forecasts ---


def test_lead_time_pick_takes_latest_forecast_at_most_10_min_old() -> None:
    h: History[Band | None] = History()
    for t in (0.0, 300.0, 900.0):
        h.add(T0 + t, Band(T0 + 5000 + t, T0 + 4000, T0 + 6000))
    assert h.at(T0 + 1000) == (T0 + 900, Band(T0 + 5900, T0 + 4000, T0 + 6000))
    assert h.at(T0 + 900) is not None and h.at(T0 + 900)[0] == T0 + 900  # type: ignore[index]
    assert h.at(T0 + 1600) is None  # 700 s old
    assert h.at(T0 - 1) is None


def test_forecast_check_error_band_and_summary() -> None:
    t_true = T0 + 2 * H
    h: History[Band | None] = History()
    h.add(t_true - 65 * 60, Band(t_true + 600, t_true - 600, t_true + 1200))  # for 60 min: +10 min
    h.add(t_true - 31 * 60, None)  # refused: in force at 30 min
    h.add(t_true - 12 * 60, Band(t_true - 120, t_true - 600, t_true - 60))  # for 10 min: -2, band misses
    c60, c30, c10 = (check_forecast("x", t_true, lead, h) for lead in (60, 30, 10))
    assert c60.has_forecast and c60.error_min == pytest.approx(10.0) and c60.in_band
    assert not c30.has_forecast
    assert c10.error_min == pytest.approx(-2.0) and c10.in_band is False
    s60, s30, s10 = summarise_forecasts([c60, c30, c10])
    assert (s60.forecast, s60.median_abs_err_min, s60.in_band) == (1, pytest.approx(10.0), 1)
    assert (s30.eligible, s30.forecast, s30.median_abs_err_min) == (1, 0, None)
    assert s10.max_abs_err_min == pytest.approx(2.0)
    assert not check_forecast("x", t_true, 60, None).has_forecast


# --- the command ---


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    evaluate_cli.register(parser.add_subparsers())
    args = parser.parse_args(["evaluate", *argv])
    code: int = args.handler(args)
    return code


def test_command_on_sensor_faults_reports_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli("sensor-faults", "--json")
    out, err = capsys.readouterr()
    doc = json.loads(out)
    (sc,) = doc["scenarios"]
    assert code == (0 if doc["passed"] else 1) and sc["summary"]["passed"] == doc["passed"]
    assert "sensor-faults" in err  # progress
    assert sc["scenario"] == "sensor-faults" and sc["readings"] > 3000
    s = sc["summary"]
    assert s["crossings"] >= 2 and s["detected"] + s["missed"] == s["crossings"]  # both river gauges
    assert {c["device"] for c in sc["crossings"]} == {"river-radar-01", "river-pt-02"}
    assert all(
        a["condition"] in {"level", "rate", "snow_dispatch", "failure_forecast"}
        for a in sc["disaster_alerts"]
    )
    assert len(sc["faults"]) == 13 and s["faults"] == 13
    assert {f["status"] for f in sc["faults"]} <= {"caught", "missed", "n/a"}
    assert [f["status"] for f in sc["faults"] if f["fault"] == "link_loss"] == ["n/a", "n/a"]
    assert s["maintenance_alerts"] == sum(sc["maintenance_alerts"].values()) > 0
    assert [x["lead_min"] for x in s["next_level"]] == [60, 30, 10]
    assert len(sc["next_level_forecasts"]) == 3 * s["crossings"]
    assert sc["failure_forecasts"] == []  # no slope failure in this scenario


def test_markdown_table_has_a_row_per_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    run_cli("sensor-faults", "--markdown")
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| scenario | crossings detected |") and len(lines) == 3
    assert lines[2].startswith("| sensor-faults | ")
    assert markdown_table([]).count("\n") == 1


def test_unknown_scenario_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("no-such-scenario") == 2
    assert "no scenario 'no-such-scenario'" in capsys.readouterr().err
    assert run_cli("sensor-faults", "--interval", "0") == 2
