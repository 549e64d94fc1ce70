"""`bosai-rivers` "Rivers — 河川": stage per gauge against its official thresholds, rise rate,
forecast time to the next stage, alert annotations."""

from __future__ import annotations

from cloud.dashboards import grafana as g
from cloud.dashboards import influxql as q
from cloud.dashboards.common import (
    AT_SITES,
    DETECTIONS,
    READINGS,
    RIVER_LEVEL,
    SENSOR_ALIAS,
    TENANT,
    alert_annotation,
    level_lines,
    site_variable,
)

UID = "bosai-rivers"
IS_RIVER = q.tag_is("kind", RIVER_LEVEL)
CLOCK = "time:HH:mm"  # Grafana's custom date unit: a forecast is at most hours ahead


def _forecast_table() -> g.Panel:
    # One single-selector query per column: each returns the time of the detection point it
    # came from, and the fields of one forecast are written in one point, so "merge" puts them
    # on one row whose time says when the forecast was made.
    columns = ["next_level", "next_level_eta", "next_level_earliest", "next_level_latest"]
    return g.Panel(
        type="table",
        title="Next stage forecast — 次の水位到達予測",
        description="Per gauge, the latest forecast of the time the river reaches its next stage: level N at "
        "HH:MM with the 95 % band (detections: robust trend of the last hour, only when the trend is "
        "significant and the stage is due within the channel's horizon). 'Forecast made' is when it was "
        "computed: a forecast older than a few minutes means the trend has stopped. "
        "次の危険水位への到達予測時刻。",
        width=24,
        height=6,
        queries=[
            g.Query(
                text=q.select(
                    [q.agg("last", c, c)], DETECTIONS, [IS_RIVER, *AT_SITES], group_by=["site_name", "sensor"]
                ),
                table=True,
            )
            for c in columns
        ],
        transformations=g.organize(
            [
                "site_name",
                "sensor",
                "next_level",
                "next_level_eta",
                "next_level_earliest",
                "next_level_latest",
                "Time",
            ],
            {
                "site_name": "Site 地点",
                "sensor": "Gauge 水位計",
                "next_level": "Next level 次のレベル",
                "next_level_eta": "At 到達予測",
                "next_level_earliest": "Earliest 最早",
                "next_level_latest": "Latest 最遅",
                "Time": "Forecast made 予測時刻",
            },
        ),
        field_config={
            "defaults": {"custom": {"align": "auto", "cellOptions": {"type": "auto"}}},
            "overrides": [
                g.override(
                    "byName",
                    "Next level 次のレベル",
                    unit="prefix:level ",
                    decimals=0,
                    custom__cellOptions={"type": "color-background"},
                    color={"mode": "thresholds"},
                    thresholds=g.level_steps(base="transparent"),
                ),
                *(
                    g.override("byName", name, unit=CLOCK)
                    for name in ("At 到達予測", "Earliest 最早", "Latest 最遅")
                ),
            ],
        },
        options=g.table_options(sort_by="At 到達予測", descending=False),
    )


def _level_panel() -> g.Panel:
    return g.Panel(
        type="timeseries",
        title="Water level — 水位 (m)",
        description="River stage of each gauge at the site (mean per interval, m) with the site's stage "
        "thresholds from the registry as dashed lines in their level colour: 1 水防団待機水位 standby, 2 "
        "氾濫注意水位 flood caution, 3 避難判断水位 evacuation judgement, 4 氾濫危険水位 flood danger, 5 "
        "越水/氾濫 overflow (whatever the registry names them; thresholds snapshot). Alert events are marked "
        "on the time axis. 水位と危険水位。",
        width=16,
        height=10,
        queries=[
            g.Query(
                text=q.select(
                    [q.agg("mean", "value")],
                    READINGS,
                    [IS_RIVER, *AT_SITES],
                    by_time=True,
                    group_by=["site_name", "sensor", "sensor_name"],
                ),
                alias=SENSOR_ALIAS,
            ),
            level_lines(IS_RIVER),
        ],
        field_config=g.timeseries_field_config(
            "suffix: m", "m", decimals=2, overrides=g.threshold_overrides(["B"])
        ),
        options=g.TIMESERIES_OPTIONS,
    )


def _rate_panel() -> g.Panel:
    return g.Panel(
        type="timeseries",
        title="Rise rate — 水位上昇速度",
        description="Robust (Theil-Sen) rate of change of each gauge over the channel's rate window, in the "
        "channel's rate unit (m/h for the registry's rivers; detections.rate, rate_unit). Positive: rising. "
        "水位の上昇速度。",
        width=8,
        height=10,
        queries=[
            g.Query(
                text=q.select(
                    [q.agg("mean", "rate")],
                    DETECTIONS,
                    [IS_RIVER, *AT_SITES],
                    by_time=True,
                    group_by=["site_name", "sensor"],
                ),
                alias="$tag_sensor",
            )
        ],
        field_config=g.timeseries_field_config("suffix: m/h", "m/h", decimals=2),
        options=g.TIMESERIES_OPTIONS,
    )


def build() -> g.Dashboard:
    return g.Dashboard(
        uid=UID,
        title="Rivers — 河川",
        description="Per gauge: the river stage against the site's official stage thresholds (MLIT), how "
        "fast it rises and when it reaches the next stage; alert events as annotations. 河川水位の監視。",
        variables=[TENANT, site_variable("river")],
        annotations=[alert_annotation(IS_RIVER, "River alerts — 河川の警報")],
        sections=[
            g.Section(panels=[_forecast_table()]),
            g.Section(
                title="$site",
                description="One row per selected river site",
                repeat="site",
                panels=[_level_panel(), _rate_panel()],
            ),
        ],
    )
