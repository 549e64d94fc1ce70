"""`bosai-rivers` "Rivers — 河川": stage per gauge against its official thresholds, rise rate,
forecast time to the next stage, alert annotations."""

from __future__ import annotations

from cloud.dashboards import grafana as g
from cloud.dashboards import influxql as q
from cloud.dashboards.common import (
    AT_SITES,
    DETECTIONS,
    RIVER_LEVEL,
    latest_table,
    level_panel,
    site_dashboard,
    site_series,
)

UID = "bosai-rivers"
IS_RIVER = q.tag_is("kind", RIVER_LEVEL)
CLOCK = "time:HH:mm"  # Grafana's custom date unit: a forecast is at most hours ahead


def _forecast_table() -> g.Panel:
    return latest_table(
        "Next stage forecast — 次の水位到達予測",
        "Per gauge, the latest forecast of the time the river reaches its next stage: level N at "
        "HH:MM with the 95 % band (detections: robust trend of the last hour, only when the trend is "
        "significant and the stage is due within the channel's horizon). 'Forecast made' is when it was "
        "computed: a forecast older than a few minutes means the trend has stopped. "
        "次の危険水位への到達予測時刻。",
        measurement=DETECTIONS,
        where=[IS_RIVER, *AT_SITES],
        series_tags=["site_name", "sensor"],
        fields=["next_level", "next_level_eta", "next_level_earliest", "next_level_latest"],
        names={
            "site_name": "Site 地点",
            "sensor": "Gauge 水位計",
            "next_level": "Next level 次のレベル",
            "next_level_eta": "At 到達予測",
            "next_level_earliest": "Earliest 最早",
            "next_level_latest": "Latest 最遅",
            "Time": "Forecast made 予測時刻",
        },
        width=24,
        height=6,
        sort_by="At 到達予測",
        overrides=[
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
    )


def _level_panel() -> g.Panel:
    return level_panel(
        "Water level — 水位 (m)",
        "River stage of each gauge at the site (mean per interval, m) with the site's stage "
        "thresholds from the registry as dashed lines in their level colour: 1 水防団待機水位 standby, 2 "
        "氾濫注意水位 flood caution, 3 避難判断水位 evacuation judgement, 4 氾濫危険水位 flood danger, 5 "
        "越水/氾濫 overflow (whatever the registry names them; thresholds snapshot). Alert events are marked "
        "on the time axis. 水位と危険水位。",
        IS_RIVER,
        width=16,
        unit="suffix: m",
        axis_label="m",
        decimals=2,
    )


def _rate_panel() -> g.Panel:
    return g.timeseries_panel(
        "Rise rate — 水位上昇速度",
        "Robust (Theil-Sen) rate of change of each gauge over the channel's rate window, in the "
        "channel's rate unit (m/h for the registry's rivers; detections.rate, rate_unit). Positive: rising. "
        "水位の上昇速度。",
        width=8,
        height=10,
        queries=[site_series([q.agg("mean", "rate")], DETECTIONS, IS_RIVER, "$tag_sensor")],
        unit="suffix: m/h",
        axis_label="m/h",
        decimals=2,
    )


def build() -> g.Dashboard:
    return site_dashboard(
        UID,
        "Rivers — 河川",
        "Per gauge: the river stage against the site's official stage thresholds (MLIT), how "
        "fast it rises and when it reaches the next stage; alert events as annotations. 河川水位の監視。",
        site_type="river",
        kind_condition=IS_RIVER,
        alerts_name="River alerts — 河川の警報",
        summary=_forecast_table(),
        per_site=[_level_panel(), _rate_panel()],
    )
