"""Grafana dashboards as code: builders (grafana.py, influxql.py), one module per dashboard,
`generate` (the committed JSON under dashboards/json/), `provision` (Grafana's HTTP API) and
`preview` (PNG previews from the same queries).  `cli` registers `bosai dashboards`."""

# Which dashboard shows an alert best, by the kind of its series (alert links, `{dashboard}` in
# alerts.dashboard_url).  Kept here, light, so the consumer needs no generator module.
_DASHBOARD_OF_KIND = {
    "river_level": "bosai-rivers",
    "snow_depth": "bosai-snow",
    "tilt_x": "bosai-slopes",
    "tilt_y": "bosai-slopes",
    "displacement": "bosai-slopes",
}


def dashboard_for(kind: str) -> str:
    """The uid of the dashboard for an alert on `kind` ("" for gateway alerts: the gateways one)."""
    if not kind:
        return "bosai-gateways"
    return _DASHBOARD_OF_KIND.get(kind, "bosai-overview")
