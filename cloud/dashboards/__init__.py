"""Grafana dashboards as code: builders (grafana.py, influxql.py), one module per dashboard,
`generate` (the committed JSON under dashboards/json/), `provision` (Grafana's HTTP API) and
`preview` (PNG previews from the same queries).  `cli` registers `bosai dashboards`."""
