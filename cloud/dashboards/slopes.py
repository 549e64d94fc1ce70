"""`bosai-slopes` "Slopes — 斜面": tilt and displacement against their thresholds, movement rate
against the landslide rate criteria, and the inverse-velocity (Fukuzono) plot with the failure
forecast.

Inverse velocity: the consumer stores 1/v (`detections.inverse_velocity`, days per unit) next to
the velocity, because portable InfluxQL cannot divide a field.  In tertiary creep it falls on a
straight line that reaches zero at the failure time; the forecast itself (failure time with its
95 % band, from the same fit) is shown as numbers in a table.
"""

from __future__ import annotations

from cloud.dashboards import grafana as g
from cloud.dashboards import influxql as q
from cloud.dashboards.common import (
    AT_SITES,
    DETECTIONS,
    READINGS,
    SLOPE_KINDS,
    latest_table,
    level_lines,
    site_dashboard,
    site_series,
)

UID = "bosai-slopes"
IS_SLOPE = q.tag_matches("kind", SLOPE_KINDS)
DATE_TIME = "time:MM/DD HH:mm"  # a failure forecast may be days ahead


def _right_axis(pattern: str, unit: str, label: str) -> g.Json:
    """Series whose name matches `pattern` (the extensometer's, in mm) on a second axis."""
    return g.override("byRegexp", pattern, unit=unit, custom__axisPlacement="right", custom__axisLabel=label)


def _forecast_table() -> g.Panel:
    return latest_table(
        "Failure forecast — 崩壊予測時刻",
        "Per inclinometer axis and extensometer, the latest inverse-velocity (Fukuzono) forecast "
        "of the failure time with its 95 % band and the current velocity (units per day: deg/day for tilt, "
        "mm/day for displacement). Only made while the movement accelerates (tertiary creep) over the fit "
        "window; 'Forecast made' older than a few minutes means the detector no longer forecasts. "
        "逆速度法による崩壊予測。",
        measurement=DETECTIONS,
        where=[IS_SLOPE, *AT_SITES],
        series_tags=["site_name", "sensor", "kind"],
        fields=["failure_time", "failure_earliest", "failure_latest", "velocity_per_day"],
        names={
            "site_name": "Site 地点",
            "sensor": "Sensor センサー",
            "kind": "Kind 種別",
            "failure_time": "Failure 崩壊予測",
            "failure_earliest": "Earliest 最早",
            "failure_latest": "Latest 最遅",
            "velocity_per_day": "Velocity /day 速度",
            "Time": "Forecast made 予測時刻",
        },
        width=24,
        height=6,
        sort_by="Failure 崩壊予測",
        overrides=[
            *(
                g.override("byName", n, unit=DATE_TIME)
                for n in ("Failure 崩壊予測", "Earliest 最早", "Latest 最遅")
            ),
            g.override("byName", "Velocity /day 速度", decimals=3),
            g.override(
                "byName",
                "Failure 崩壊予測",
                custom__cellOptions={"type": "color-background"},
                color={"mode": "fixed", "fixedColor": "purple"},
            ),
        ],
    )


def _movement_panel() -> g.Panel:
    return g.timeseries_panel(
        "Tilt and displacement — 傾斜・変位",
        "Inclinometer tilt per axis (deg, left axis) and extensometer opening (mm, right axis), "
        "mean per interval, with the registry's level thresholds as dashed lines in their level colour (e.g. "
        "1 変動注意 movement, 2 通行規制 close access, 3 崩壊警戒 collapse likely). Tilt thresholds apply to "
        "the absolute tilt, so their lines are mirrored below zero. 傾斜・変位と基準値。",
        width=12,
        height=10,
        queries=[
            site_series(
                [q.agg("mean", "value")],
                READINGS,
                IS_SLOPE,
                "$tag_sensor $tag_kind ($tag_unit)",
                ["kind", "unit"],
            ),
            level_lines(IS_SLOPE, unit_in_name=True),
            level_lines(IS_SLOPE, mirror=True, unit_in_name=True),
        ],
        unit="suffix:°",
        axis_label="deg",
        decimals=3,
        overrides=[
            *g.threshold_overrides(["B", "C"], hidden_in_legend=["C"]),
            _right_axis(r".*\(mm\).*", "lengthmm", "mm"),
        ],
    )


def _rate_panel() -> g.Panel:
    return g.timeseries_panel(
        "Movement rate — 変動速度",
        "Robust (Theil-Sen) rate of each series over its rate window (detections.rate): tilt in "
        "arc-seconds/day (left axis; natural drift is 3-8″/day), displacement in mm/day (right axis), with "
        "the registry's rate criteria as dashed lines (landslide practice: about 1-20 mm/day movement, 10-80 "
        "close access, 80-400 strict alert, over 10 mm/h collapse likely). 変動速度と基準値。",
        width=12,
        height=10,
        queries=[
            site_series([q.agg("mean", "rate")], DETECTIONS, IS_SLOPE, "$tag_sensor $tag_kind", ["kind"]),
            level_lines(IS_SLOPE, what="rate", unit_in_name=True),
        ],
        unit="suffix:″/day",
        axis_label="arcsec/day",
        decimals=1,
        overrides=[
            *g.threshold_overrides(["B"]),
            _right_axis(r".*(displacement|\(mm/day\)).*", "suffix: mm/day", "mm/day"),
        ],
    )


def _velocity_panel() -> g.Panel:
    return g.timeseries_panel(
        "Inverse velocity — 逆速度",
        "1/velocity of the movement the failure forecast is fitted on "
        "(detections.inverse_velocity, days per unit: day/deg for tilt, day/mm for displacement), written "
        "while a forecast exists. In tertiary creep it falls on a straight line that reaches zero at the "
        "failure time (Fukuzono 1985); the forecast time and its band are in the table above. "
        "逆速度法（福囿）: ゼロに達する時刻が崩壊予測時刻。",
        width=24,
        height=8,
        queries=[
            site_series(
                [q.agg("mean", "inverse_velocity")], DETECTIONS, IS_SLOPE, "$tag_sensor $tag_kind", ["kind"]
            )
        ],
        unit="suffix: day/°",
        axis_label="day/deg",
        decimals=4,
        overrides=[_right_axis(r".*displacement.*", "suffix: day/mm", "day/mm")],
    )


def build() -> g.Dashboard:
    return site_dashboard(
        UID,
        "Slopes — 斜面",
        "Per slope site: tilt and displacement against their thresholds, the movement rate "
        "against the landslide rate criteria, the velocity and the inverse-velocity failure forecast; alert "
        "events as annotations. 斜面変動の監視。",
        site_type="slope",
        kind_condition=IS_SLOPE,
        alerts_name="Slope alerts — 斜面の警報",
        summary=_forecast_table(),
        per_site=[_movement_panel(), _rate_panel(), _velocity_panel()],
    )
