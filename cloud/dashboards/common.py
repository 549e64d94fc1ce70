"""What the dashboards share: the measurements they read, template variables, site filters and
the threshold-line queries.

Measurement, tag and field names are those the cloud consumer writes (cloud/points.py,
cloud/dashdata.py); tests/integration/test_dashboards.py fails if a query names anything the
writer does not produce.
"""

from __future__ import annotations

from cloud.dashboards import influxql as q
from cloud.dashboards.grafana import Annotation, Query, Variable

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
    (`thresholds` snapshot, written every minute by the consumer).  `mirror`: the negated
    copies of direction-"absolute" thresholds, to draw the band below zero too.  Several sensors
    of one site with different values for the same level draw the outermost one."""
    alias = LEVEL_ALIAS + (" ($tag_unit)" if unit_in_name else "") + (" −" if mirror else "")
    return Query(
        text=q.select(
            [q.agg("min" if mirror else "max", "value")],
            THRESHOLDS,
            [q.tag_is("what", what), kind_condition, q.tag_is("mirror", "1" if mirror else "0"), *AT_SITES],
            by_time=True,
            group_by=["level_name", *(["unit"] if unit_in_name else [])],
            fill="previous",  # a snapshot a minute: keep the line through shorter intervals
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
