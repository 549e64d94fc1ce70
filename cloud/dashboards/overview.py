"""`bosai-overview` "Overview — 概要": the wall-screen summary for duty staff."""

from __future__ import annotations

from cloud.dashboards import grafana as g
from cloud.dashboards import influxql as q
from cloud.dashboards.common import (
    ALERTS,
    AT_SITES,
    IN_TENANT,
    READINGS,
    SITE_STATUS,
    TENANT,
    TENANT_STATUS,
    site_variable,
)

UID = "bosai-overview"


def _geomap() -> g.Panel:
    return g.Panel(
        type="geomap",
        title="Sites by alert level — 地点の警戒レベル",
        description="Every selected site at its registry position, coloured by its current alert level: the "
        "highest level among the open disaster alerts of its sensors (0 green: none, 1 blue, 2 yellow, 3 "
        "red, 4 purple, 5 dark purple; Japan's 警戒レベル colours, see dashboards/README.md). From the "
        "consumer's per-site snapshot (site_status, every minute); the label is the site name. "
        "各地点の現在の警戒レベル（発報中の災害警報の最高レベル）。",
        width=12,
        height=13,
        queries=[
            g.Query(
                text=q.select(
                    [
                        q.agg("last", "lat", "lat"),
                        q.agg("last", "lon", "lon"),
                        q.agg("last", "alert_level", "alert_level"),
                        q.agg("last", "active_alerts", "active_alerts"),
                    ],
                    SITE_STATUS,
                    AT_SITES,
                    group_by=["site_name", "type"],
                ),
                table=True,
            )
        ],
        transformations=[{"id": "merge", "options": {}}],
        field_config={
            "defaults": {"color": {"mode": "thresholds"}, "thresholds": g.level_steps(), "decimals": 0},
            "overrides": [],
        },
        options={
            "view": {"id": "fit", "allLayers": True, "lat": 0, "lon": 0, "zoom": 12, "padding": 20},
            "controls": {"showZoom": True, "mouseWheelZoom": True, "showAttribution": True},
            "basemap": {"type": "default", "name": "Basemap", "config": {}},
            "tooltip": {"mode": "details"},
            "layers": [
                {
                    "type": "markers",
                    "name": "Sites 地点",
                    "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
                    "tooltip": True,
                    "config": {
                        "showLegend": True,
                        "style": {
                            "size": {"fixed": 12},
                            "color": {"field": "alert_level", "fixed": "green"},
                            "opacity": 0.9,
                            "symbol": {"mode": "fixed", "fixed": "img/icons/marker/circle.svg"},
                            "text": {"mode": "field", "field": "site_name", "fixed": ""},
                            "textConfig": {
                                "fontSize": 12,
                                "offsetX": 0,
                                "offsetY": -16,
                                "textAlign": "center",
                                "textBaseline": "middle",
                            },
                        },
                    },
                }
            ],
        },
    )


def _highest_level() -> g.Panel:
    return g.Panel(
        type="stat",
        title="Highest alert level — 最高警戒レベル",
        description="The highest alert level among the selected sites now (site_status): 0 none, 1-5 as on "
        "the map. The sparkline is its course over the time range. 選択した地点の最高警戒レベル。",
        width=6,
        height=5,
        queries=[
            g.Query(
                text=q.select([q.agg("max", "alert_level")], SITE_STATUS, AT_SITES, by_time=True),
                alias="level / レベル",
            )
        ],
        field_config={
            "defaults": {
                "color": {"mode": "thresholds"},
                "thresholds": g.level_steps(),
                "decimals": 0,
                "unit": "none",
            },
            "overrides": [],
        },
        options=g.stat_options(text_mode="value"),
    )


def _tenant_stat(title: str, description: str, fields: list[tuple[str, str, str]]) -> g.Panel:
    """A stat per tenant from its snapshot (tenant_status): (field, alias suffix, colour when > 0)."""
    queries = [
        g.Query(
            text=q.select(
                [q.agg("max", field)], TENANT_STATUS, [IN_TENANT], by_time=True, group_by=["tenant_name"]
            ),
            alias=f"$tag_tenant_name {suffix}".strip(),
        )
        for field, suffix, _ in fields
    ]
    overrides = [
        g.override("byFrameRefID", chr(ord("A") + i), thresholds=g.steps(("green", None), (colour, 1.0)))
        for i, (_, _, colour) in enumerate(fields)
    ]
    return g.Panel(
        type="stat",
        title=title,
        description=description,
        width=6,
        height=5,
        queries=queries,
        field_config={
            "defaults": {
                "color": {"mode": "thresholds"},
                "thresholds": g.steps(("green", None), ("red", 1.0)),
                "decimals": 0,
                "unit": "none",
            },
            "overrides": overrides,
        },
        options=g.stat_options(),
    )


def _quality_stat() -> g.Panel:
    return g.Panel(
        type="stat",
        title="Readings with a quality flag — 品質フラグ付きの計測",
        description="Readings in the time range whose quality code q is not ok (q > 0: 1 timeout, 2 crc, 3 "
        "exception, 4 invalid, 5 out_of_range, 6 error). They carry no value, so they are gaps in the "
        "graphs. 品質フラグ付きの計測数 (0 is good).",
        width=6,
        height=5,
        queries=[
            g.Query(
                text=q.select([q.agg("count", "q")], READINGS, [q.field_above("q", 0), *AT_SITES]),
                alias="flagged readings",
            )
        ],
        field_config={
            # count() over no flagged reading returns no series at all: show 0, not "No data".
            "defaults": {
                "unit": "none",
                "decimals": 0,
                "noValue": "0",
                "color": {"mode": "thresholds"},
                "thresholds": g.steps(("green", None), ("orange", 1.0)),
            },
            "overrides": [],
        },
        options=g.stat_options(calc="sum", graph=False, text_mode="value"),
    )


def _latest_values() -> g.Panel:
    return g.table_panel(
        "Latest value per site and sensor — 地点・センサーの最新値",
        "The last valid reading of every channel at the selected sites and when it was taken "
        "(readings). A time far behind the others means a silent sensor. 各センサーの最新値と計測時刻。",
        width=12,
        height=13,
        queries=[
            g.Query(
                text=q.select(
                    [q.agg("last", "value", "value")],
                    READINGS,
                    AT_SITES,
                    group_by=["site_name", "sensor", "sensor_name", "kind", "unit"],
                ),
                table=True,
            )
        ],
        columns=["site_name", "sensor", "sensor_name", "kind", "value", "unit", "Time"],
        names={
            "site_name": "Site 地点",
            "sensor": "Sensor センサー",
            "sensor_name": "Name 名称",
            "kind": "Kind 種別",
            "value": "Value 値",
            "unit": "Unit 単位",
            "Time": "Measured 計測時刻",
        },
        sort_by="Site 地点",
    )


def _alerts_table() -> g.Panel:
    return g.table_panel(
        "Alerts — 警報",
        "Alert events in the time range (measurement alerts): raised, escalated, deescalated, "
        "acknowledged, reminder, handover, resolved; the condition (level, rate, snow_dispatch, "
        "failure_forecast, or a maintenance condition such as flatline or suspect_data), the level (1-5, 0 "
        "when resolved), the value, the threshold and the reason sent to the duty officer. 警報の履歴 "
        "(newest first).",
        width=24,
        height=10,
        queries=[
            g.Query(
                text=q.select(
                    [q.column(c) for c in ("level", "event", "condition", "reason", "value", "threshold")],
                    ALERTS,
                    AT_SITES,
                    group_by=["site_name", "sensor", "kind"],
                ),
                table=True,
            )
        ],
        columns=[
            "Time",
            "site_name",
            "sensor",
            "kind",
            "condition",
            "event",
            "level",
            "value",
            "threshold",
            "reason",
        ],
        names={
            "site_name": "Site",
            "sensor": "Sensor",
            "kind": "Kind",
            "level": "Level",
            "value": "Value",
            "threshold": "Threshold",
            "reason": "Reason",
            "event": "Event",
            "condition": "Condition",
        },
        sort_by="Time",
        descending=True,
        overrides=[
            g.override(
                "byName",
                "Level",
                custom__cellOptions={"type": "color-background"},
                color={"mode": "thresholds"},
                thresholds=g.level_steps(base="transparent"),
            )
        ],
    )


def build() -> g.Dashboard:
    return g.Dashboard(
        uid=UID,
        title="Overview — 概要",
        description="Every site on a map by alert level, open alerts, offline gateways, the latest value of "
        "every sensor, the alert history and data quality, for the selected tenants and sites. "
        "防災モニタリングの概要。",
        variables=[TENANT, site_variable()],
        sections=[
            g.Section(
                panels=[
                    _highest_level(),
                    _tenant_stat(
                        "Active alerts — 発報中の警報",
                        "Open alert episodes per tenant now (tenant_status): disaster alerts (red from 1) "
                        "and maintenance alerts for technicians (orange from 1). The tenant's whole count: "
                        "the site selection does not apply. 発報中の災害警報・保守警報の件数。",
                        [
                            ("active_alerts", "災害 disaster", "red"),
                            ("maintenance_alerts", "保守 maintenance", "orange"),
                        ],
                    ),
                    _tenant_stat(
                        "Gateways offline — オフラインのゲートウェイ",
                        "Registered gateways per tenant that the consumer does not hear from now "
                        "(tenant_status; nothing for offline_after_s, 600 s by default, or their Last Will). "
                        "Details on the Gateways dashboard. 通信が途絶えたゲートウェイの数。",
                        [("gateways_offline", "", "red")],
                    ),
                    _quality_stat(),
                    _geomap(),
                    _latest_values(),
                    _alerts_table(),
                ]
            )
        ],
    )
