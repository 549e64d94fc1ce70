"""What the dashboards share: the measurements they read, template variables, site filters, the
threshold-line queries, and the panels and layout of the per-site (domain) dashboards.

Measurement, tag and field names are those the cloud consumer writes (cloud/points.py,
cloud/dashdata.py); tests/integration/test_dashboards.py fails if a query names anything the
writer does not produce.
"""

from __future__ import annotations

from collections.abc import Sequence

from cloud.dashboards import grafana as g
from cloud.dashboards import influxql as q
from cloud.dashboards.grafana import Annotation, Dashboard, Json, Panel, Query, Section, Variable

# Measurements (cloud/points.py and cloud/dashdata.py)
READINGS = "readings"
ALERTS = "alerts"
DETECTIONS = "detections"
GATEWAY_HEALTH = "gateway_health"
GATEWAY_SENSOR_HEALTH = "gateway_sensor_health"
THRESHOLDS = "thresholds"
SITE_STATUS = "site_status"
GATEWAY_STATUS = "gateway_status"
TENANT_STATUS = "tenant_status"

# Kinds of the sensor profiles (firmware_configs/profiles) the domain dashboards show.
RIVER_LEVEL = "river_level"
SNOW_DEPTH = "snow_depth"
SLOPE_KINDS = r"^(tilt_x|tilt_y|displacement)$"

TENANT = Variable(
    name="tenant",
    label="Tenant / 自治体",
    description="Municipalities (tenants) with data in the time range",
    query=q.show_tag_values(TENANT_STATUS, "tenant"),
)


def site_variable(site_type: str | None = None) -> Variable:
    """Sites of the selected tenants by their registry name, optionally only of one type
    (river, snow, slope): from the consumer's per-site snapshot, so a site whose sensors are
    silent is still listed."""
    where = [q.tag_in_variable("tenant", "tenant")]
    if site_type:
        where.append(q.tag_is("type", site_type))
    return Variable(
        name="site",
        label="Site / 地点",
        description="Sites of the selected tenants" + (f" (type {site_type})" if site_type else ""),
        query=q.show_tag_values(SITE_STATUS, "site_name", where),
    )


GATEWAY = Variable(
    name="gateway",
    label="Gateway / ゲートウェイ",
    description="Registered gateways of the selected tenants",
    query=q.show_tag_values(GATEWAY_STATUS, "gateway", [q.tag_in_variable("tenant", "tenant")]),
)

IN_TENANT = q.tag_in_variable("tenant", "tenant")
IN_SITE = q.tag_in_variable("site_name", "site")
AT_SITES = [IN_TENANT, IN_SITE]
AT_GATEWAYS = [IN_TENANT, q.tag_in_variable("gateway", "gateway")]

# Series names: readings start with the sensor id (no spaces), threshold lines with their
# level number and a space, which is what grafana.threshold_overrides colours by.
SENSOR_ALIAS = "$tag_sensor $tag_sensor_name"
LEVEL_ALIAS = "$tag_level_name"


def level_lines(
    kind_condition: str, *, what: str = "level", mirror: bool = False, unit_in_name: bool = False
) -> Query:
    """The registry's thresholds of the shown kinds at the selected site, one series per level
    (`thresholds` snapshot, written every `thresholds_every_s` by the consumer, drawn with
    fill(previous)).  `mirror`: the negated copies of direction-"absolute" thresholds, to draw the
    band below zero too.  Several sensors of one site with different values for the same level
    draw the outermost one."""
    alias = LEVEL_ALIAS + (" ($tag_unit)" if unit_in_name else "") + (" −" if mirror else "")
    return Query(
        text=q.select(
            [q.agg("min" if mirror else "max", "value")],
            THRESHOLDS,
            [q.tag_is("what", what), kind_condition, q.tag_is("mirror", "1" if mirror else "0"), *AT_SITES],
            by_time=True,
            group_by=["level_name", *(["unit"] if unit_in_name else [])],
            fill="previous",  # a snapshot every thresholds_every_s: keep the line through the gaps
        ),
        alias=alias,
    )


def alert_annotation(kind_condition: str, name: str = "Alerts — 警報") -> Annotation:
    """Disaster alert events of the shown kinds at the selected sites (raised, escalated,
    deescalated, acknowledged, resolved ...), with the reason sent to the duty officer."""
    return Annotation(
        name=name,
        query=q.select(
            [q.column("reason"), q.column("event"), q.column("condition"), q.column("level")],
            ALERTS,
            [q.tag_is("category", "disaster"), kind_condition, *AT_SITES],
        ),
        text_column="reason",
        tags_column="event,condition",
    )


def latest_table(
    title: str,
    description: str,
    *,
    measurement: str,
    where: Sequence[str],
    series_tags: Sequence[str],
    fields: Sequence[str],
    names: dict[str, str],
    width: int,
    height: int,
    sort_by: str,
    overrides: Sequence[Json] = (),
) -> Panel:
    """The latest value of each of `fields`, one row per series (`series_tags`).

    One single-selector query per field: each returns the time of the point it came from, and the
    fields of one point (a forecast, a health message) share it, so "merge" puts them on one row
    whose Time column says when that point was written."""
    return g.table_panel(
        title,
        description,
        width=width,
        height=height,
        queries=[
            Query(text=q.select([q.agg("last", f, f)], measurement, where, group_by=series_tags), table=True)
            for f in fields
        ],
        columns=[*series_tags, *fields, "Time"],
        names=names,
        sort_by=sort_by,
        overrides=overrides,
    )


def site_series(
    columns: Sequence[str], measurement: str, kind_condition: str, alias: str, more_tags: Sequence[str] = ()
) -> Query:
    """The shown kinds at the selected site over time, one series per sensor (and `more_tags`)."""
    return Query(
        text=q.select(
            columns,
            measurement,
            [kind_condition, *AT_SITES],
            by_time=True,
            group_by=["site_name", "sensor", *more_tags],
        ),
        alias=alias,
    )


def level_panel(
    title: str,
    description: str,
    kind_condition: str,
    *,
    width: int,
    unit: str,
    axis_label: str,
    decimals: int,
) -> Panel:
    """Each sensor's readings of the shown kind at the site (mean per interval) with the site's
    thresholds as dashed lines in their level colours."""
    return g.timeseries_panel(
        title,
        description,
        width=width,
        height=10,
        queries=[
            site_series([q.agg("mean", "value")], READINGS, kind_condition, SENSOR_ALIAS, ["sensor_name"]),
            level_lines(kind_condition),
        ],
        unit=unit,
        axis_label=axis_label,
        decimals=decimals,
        overrides=g.threshold_overrides(["B"]),
    )


def site_dashboard(
    uid: str,
    title: str,
    description: str,
    *,
    site_type: str,
    kind_condition: str,
    alerts_name: str,
    summary: Panel,
    per_site: list[Panel],
) -> Dashboard:
    """A domain dashboard: `summary` over all selected sites of `site_type` on top, then the
    `per_site` panels in a row repeated for each selected site; the alert events of the shown
    kinds as annotations."""
    return Dashboard(
        uid=uid,
        title=title,
        description=description,
        variables=[TENANT, site_variable(site_type)],
        annotations=[alert_annotation(kind_condition, alerts_name)],
        sections=[
            Section(panels=[summary]),
            Section(
                title="$site",
                description=f"One row per selected {site_type} site",
                repeat="site",
                panels=per_site,
            ),
        ],
    )
