"""`bosai-gateways` "Gateways — ゲートウェイ": for technicians: which gateway is down, what it has
not sent yet, which sensor does not answer, and what it runs."""

from __future__ import annotations

from cloud.dashboards import grafana as g
from cloud.dashboards import influxql as q
from cloud.dashboards.common import (
    ALERTS,
    AT_GATEWAYS,
    GATEWAY,
    GATEWAY_HEALTH,
    GATEWAY_SENSOR_HEALTH,
    GATEWAY_STATUS,
    TENANT,
    latest_table,
)

UID = "bosai-gateways"
ONLINE = {0: ("offline オフライン", "red"), 1: ("online オンライン", "green")}
SYNCED = {0: ("not synced 未同期", "orange"), 1: ("synced 同期", "green")}
FAILING = {0: ("ok 正常", "green"), 1: ("failing 応答なし", "red")}


def _per_gateway_series(aggregate: q.Aggregate, measurement: str, field: str, by_sensor: bool) -> g.Query:
    """`field` of the selected gateways over time, one series per gateway (or per sensor)."""
    return g.Query(
        text=q.select(
            [q.agg(aggregate, field)],
            measurement,
            AT_GATEWAYS,
            by_time=True,
            group_by=["gateway", *(["sensor"] if by_sensor else [])],
        ),
        alias="$tag_gateway $tag_sensor" if by_sensor else "$tag_gateway",
    )


def _per_gateway(
    title: str,
    description: str,
    measurement: str,
    field: str,
    unit: str,
    *,
    width: int = 12,
    by_sensor: bool = False,
) -> g.Panel:
    return g.timeseries_panel(
        title,
        description,
        width=width,
        height=8,
        queries=[_per_gateway_series("max", measurement, field, by_sensor)],
        unit=unit,
        axis_label=unit if unit != "none" else "",
        decimals=0,
    )


def _state(
    title: str,
    description: str,
    measurement: str,
    field: str,
    states: dict[int, tuple[str, str]],
    *,
    by_sensor: bool = False,
    width: int = 12,
) -> g.Panel:
    return g.Panel(
        type="state-timeline",
        title=title,
        description=description,
        width=width,
        height=8,
        queries=[_per_gateway_series("last", measurement, field, by_sensor)],
        field_config=g.state_field_config(states),
        options=g.STATE_TIMELINE_OPTIONS,
    )


def _status_table() -> g.Panel:
    return latest_table(
        "Gateways — ゲートウェイ一覧",
        "Every registered gateway of the selected tenants as the consumer sees it now "
        "(gateway_status, every minute): online or offline (nothing heard for offline_after_s, 600 s by "
        "default, its Last Will, or never heard since the consumer started) and how long ago it was last "
        "heard from. ゲートウェイの接続状態と最終受信。",
        measurement=GATEWAY_STATUS,
        where=AT_GATEWAYS,
        series_tags=["gateway", "gateway_name"],
        fields=["online", "last_seen_age_s"],
        names={
            "gateway": "Gateway ゲートウェイ",
            "gateway_name": "Name 名称",
            "online": "Status 状態",
            "last_seen_age_s": "Last heard 最終受信",
            "Time": "As of 時点",
        },
        width=12,
        height=7,
        sort_by="Gateway ゲートウェイ",
        overrides=[
            g.override(
                "byName",
                "Status 状態",
                custom__cellOptions={"type": "color-background"},
                mappings=g.state_field_config(ONLINE)["defaults"]["mappings"],
            ),
            g.override("byName", "Last heard 最終受信", unit="s", decimals=0),
        ],
    )


def _config_table() -> g.Panel:
    return latest_table(
        "Configuration and version — 設定とバージョン",
        "From each gateway's latest health message (gateway_health): the hash of the "
        "configuration it runs (compare with the generated config after a change), the agent version and its "
        "uptime. 稼働中の設定ハッシュとバージョン。",
        measurement=GATEWAY_HEALTH,
        where=AT_GATEWAYS,
        series_tags=["gateway"],
        fields=["config_hash", "agent_version", "uptime_s"],
        names={
            "gateway": "Gateway ゲートウェイ",
            "config_hash": "Config hash 設定ハッシュ",
            "agent_version": "Agent version バージョン",
            "uptime_s": "Uptime 稼働時間",
            "Time": "Health at 受信時刻",
        },
        width=12,
        height=7,
        sort_by="Gateway ゲートウェイ",
        overrides=[g.override("byName", "Uptime 稼働時間", unit="s")],
    )


def build() -> g.Dashboard:
    return g.Dashboard(
        uid=UID,
        title="Gateways — ゲートウェイ",
        description="Gateway health for technicians: online state and last contact, outbox depth and age, "
        "link reconnects, clock synchronisation, per-sensor read errors and failing sensors, configuration "
        "and agent version. ゲートウェイの稼働状況。",
        variables=[TENANT, GATEWAY],
        annotations=[
            g.Annotation(
                name="Maintenance alerts — 保守警報",
                query=q.select(
                    [q.column("reason"), q.column("event"), q.column("condition")],
                    ALERTS,
                    [q.tag_is("category", "maintenance"), *AT_GATEWAYS],
                ),
                text_column="reason",
                tags_column="event,condition",
                colour="orange",
            )
        ],
        sections=[
            g.Section(
                panels=[
                    _status_table(),
                    _config_table(),
                    _state(
                        "Online — 接続状態",
                        "Online (green) or offline (red) over time, as the consumer's liveness check saw it "
                        "(gateway_status.online, every minute). 接続状態の推移。",
                        GATEWAY_STATUS,
                        "online",
                        ONLINE,
                    ),
                    _per_gateway(
                        "Last heard — 最終受信からの経過",
                        "Seconds since the consumer last heard from each gateway "
                        "(gateway_status.last_seen_age_s). A saw-tooth below the poll interval is normal; a "
                        "steady climb is a gateway going silent. 最終受信からの経過時間。",
                        GATEWAY_STATUS,
                        "last_seen_age_s",
                        "s",
                    ),
                    _per_gateway(
                        "Outbox depth — 未送信メッセージ数",
                        "Messages waiting in the gateway's durable outbox (gateway_health.outbox_depth): 0 "
                        "while the link is up; it grows while the broker is out of reach and drains after. "
                        "送信待ちのメッセージ数。",
                        GATEWAY_HEALTH,
                        "outbox_depth",
                        "none",
                    ),
                    _per_gateway(
                        "Oldest unsent message — 最古の未送信メッセージ",
                        "Age of the oldest message still in the outbox (gateway_health.outbox_oldest_age_s, "
                        "s): how far behind the data in the database is. 最古の未送信の経過時間。",
                        GATEWAY_HEALTH,
                        "outbox_oldest_age_s",
                        "s",
                    ),
                    _per_gateway(
                        "Reconnects — 再接続回数",
                        "MQTT reconnects since the agent started (gateway_health.reconnects): a rising count "
                        "is a flaky link. 再接続の回数（起動以降）。",
                        GATEWAY_HEALTH,
                        "reconnects",
                        "none",
                        width=8,
                    ),
                    _state(
                        "Clock synchronised — 時刻同期",
                        "Whether the gateway's clock is synchronised (NTP/GPS; gateway_health.clock_synced). "
                        "Sample times come from this clock: unsynchronised, they may be wrong. "
                        "時刻同期の状態。",
                        GATEWAY_HEALTH,
                        "clock_synced",
                        SYNCED,
                        width=8,
                    ),
                    _per_gateway(
                        "Sensor read errors — センサー別読取エラー",
                        "Failed polls per sensor since the agent started (gateway_sensor_health.errors: "
                        "timeouts, CRC errors, exceptions). センサーごとの読取エラー数（起動以降）。",
                        GATEWAY_SENSOR_HEALTH,
                        "errors",
                        "none",
                        width=8,
                        by_sensor=True,
                    ),
                    _state(
                        "Failing sensors — 応答しないセンサー",
                        "Per sensor, whether its recent polls all failed (gateway_sensor_health.failing). "
                        "応答しないセンサー。",
                        GATEWAY_SENSOR_HEALTH,
                        "failing",
                        FAILING,
                        by_sensor=True,
                        width=24,
                    ),
                ]
            )
        ],
    )
