"""`bosai-snow` "Snow — 積雪": snow depth against its thresholds, JMA new snowfall over 1/3/6/12/24 h
and the plow dispatch level of each site's road class."""

from __future__ import annotations

from cloud.dashboards import grafana as g
from cloud.dashboards import influxql as q
from cloud.dashboards.common import (
    AT_SITES,
    DETECTIONS,
    SNOW_DEPTH,
    THRESHOLDS,
    level_panel,
    site_dashboard,
    site_series,
)

UID = "bosai-snow"
IS_SNOW = q.tag_is("kind", SNOW_DEPTH)
WINDOWS_H = (1, 3, 6, 12, 24)  # cloud/detect/snow.py
# One colour per window; a dispatch line (kind new_snow_{window}h) takes its window's colour.
WINDOW_COLOURS = {1: "light-blue", 3: "blue", 6: "green", 12: "yellow", 24: "orange"}
IS_DISPATCH = q.tag_is("what", "snow_dispatch")


def _dispatch_table() -> g.Panel:
    return g.table_panel(
        "Plow dispatch levels — 除雪出動基準",
        "The plow dispatch rule of each selected snow site: the new snowfall over the window "
        "(kind new_snow_{window}h) at which plows go out, from the site's road class in the registry "
        "(Asahikawa practice: about 10 cm on arterial roads, 15 cm on residential roads in 24 h). "
        "道路区分ごとの除雪出動基準。",
        width=24,
        height=5,
        queries=[
            g.Query(
                text=q.select(
                    [q.agg("last", "value", "value")],
                    THRESHOLDS,
                    [IS_DISPATCH, *AT_SITES],
                    group_by=["site_name", "level_name", "kind", "unit"],
                ),
                table=True,
            )
        ],
        columns=["site_name", "level_name", "kind", "value", "unit"],
        names={
            "site_name": "Site 地点",
            "level_name": "Rule 基準",
            "kind": "New snow over 新積雪の期間",
            "value": "Dispatch at 出動",
            "unit": "Unit 単位",
        },
        hidden=["Time"],
        sort_by="Site 地点",
    )


def _depth_panel() -> g.Panel:
    return level_panel(
        "Snow depth — 積雪深 (cm)",
        "Snow depth of each sensor at the site (mean per interval, cm) with the site's snow "
        "depth thresholds from the registry as dashed lines in their level colour (e.g. 1 大雪注意 heavy "
        "snow caution, 2 大雪警戒 heavy snow warning). 積雪深と基準値。",
        IS_SNOW,
        width=12,
        unit="suffix: cm",
        axis_label="cm",
        decimals=1,
    )


def _new_snow_panel() -> g.Panel:
    window_fields = [f"new_snow_{h}h" for h in WINDOWS_H]
    colours = [
        g.override("byRegexp", f".*new_snow_{h}h$", color={"mode": "fixed", "fixedColor": WINDOW_COLOURS[h]})
        for h in WINDOWS_H
    ]
    dashed = g.override(
        "byFrameRefID",
        "B",
        custom__lineStyle={"fill": "dash", "dash": g.THRESHOLD_DASH},
        custom__lineWidth=2,
        custom__spanNulls=True,
    )
    return g.timeseries_panel(
        "New snowfall — 新積雪 (1/3/6/12/24 h)",
        "JMA-style new snowfall of each sensor over the last 1, 3, 6, 12 and 24 hours (sum of "
        "the positive hour-to-hour depth changes; settling and melt ignored; detections new_snow_*h, cm). "
        "The dashed line is the site's plow dispatch level by road class, in the colour of the window it "
        "applies to (usually 24 h). 新積雪と除雪出動基準。",
        width=12,
        height=10,
        queries=[
            site_series([q.agg("max", f, f) for f in window_fields], DETECTIONS, IS_SNOW, "$tag_sensor $col"),
            g.Query(
                text=q.select(
                    [q.agg("max", "value")],
                    THRESHOLDS,
                    [IS_DISPATCH, *AT_SITES],
                    by_time=True,
                    group_by=["level_name", "kind"],
                    fill="previous",
                ),
                alias="$tag_level_name $tag_kind",
            ),
        ],
        unit="suffix: cm",
        axis_label="cm",
        decimals=1,
        overrides=[*colours, dashed],
    )


def build() -> g.Dashboard:
    return site_dashboard(
        UID,
        "Snow — 積雪",
        "Per snow site: snow depth against its thresholds, new snowfall over 1-24 h and where it "
        "reaches the plow dispatch level of the site's road class; alert events as annotations. "
        "積雪・除雪の監視。",
        site_type="snow",
        kind_condition=IS_SNOW,
        alerts_name="Snow alerts — 積雪の警報",
        summary=_dispatch_table(),
        per_site=[_depth_panel(), _new_snow_panel()],
    )
