"""The Node-RED flow of the peer, generated as flows.json (and its flows_cred.json).

    mqtt in (QoS 1, persistent session) -> json -> function "readings to points" (to_points.js)
        -> function "batch" (batch.js) -> influxdb batch (node-red-contrib-influxdb)

The function nodes' code is in the .js files next to this module; the values they need (the
registry's tags per sensor, the quality codes, the batch size) are set by their "On Start" code,
generated here, so the per-message code is the same whatever the registry.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cloud.points import QUALITY_CODES, READINGS
from cloud.registry import Registry
from wire import topics

HERE = Path(__file__).resolve().parent
TAB, BROKER, MQTT_IN, JSON_NODE, TO_POINTS, BATCH, INFLUX_OUT, INFLUX_CONFIG = (
    "bosai-peer-tab",
    "bosai-peer-broker",
    "bosai-peer-mqtt-in",
    "bosai-peer-json",
    "bosai-peer-to-points",
    "bosai-peer-batch",
    "bosai-peer-influx-out",
    "bosai-peer-influx-config",
)
SESSION_EXPIRY_S = 7 * 86400  # as cloud/mqtt.py: the broker keeps the session a week

# The batch node's "On Stop": a pending flush timer must not fire into a stopped flow.
FINALIZE_BATCH = 'const timer = context.get("timer");\nif (timer !== undefined) { clearTimeout(timer); }\n'

InfluxApi = Literal["v2", "v1"]


@dataclass(frozen=True)
class FlowSettings:
    """What the flow is wired to; the defaults are those of the consumer (cloud/config.py)."""

    broker_host: str
    broker_port: int
    influx_url: str  # e.g. "http://127.0.0.1:8428" (VictoriaMetrics) or an InfluxDB
    bucket: str = "bosai"  # v2: bucket; v1: database (VictoriaMetrics labels v1 points db="...")
    org: str = "bosai"
    api: InfluxApi = "v2"
    batch_size: int = 5000  # store.batch_size
    flush_interval_ms: int = 1000  # store.flush_interval_ms
    client_id: str = "bosai-nodered-peer"
    topic: str = topics.telemetry_filter()  # bosai/v1/+/+/telemetry
    mqtt_protocol: Literal["5", "3.1.1"] = "5"  # the consumer's default (wire/mqttconf.py)


def clean_tag(value: str) -> str:
    """The characters cloud/lineproto.py replaces in tag values (a backslash cannot round-trip,
    VictoriaMetrics drops a point with a newline); Node-RED's client would escape them instead."""
    return value.replace("\\", "/").replace("\r", " ").replace("\n", " ")


def sensor_tags(registry: Registry) -> dict[str, dict[str, str]]:
    """The registry's tags of cloud/points.reading_line per "tenant/gateway/sensor" (kind and unit
    come from the reading); empty ones are left out as reading_line leaves them out."""
    out: dict[str, dict[str, str]] = {}
    for sensor in registry.sensors.values():
        site = registry.site_of(sensor)
        tags = {
            "tenant": sensor.tenant,
            "site": site.id,
            "site_name": site.name,
            "gateway": sensor.gateway,
            "sensor": sensor.id,
            "sensor_name": sensor.name,
        }
        out[f"{sensor.tenant}/{sensor.gateway}/{sensor.id}"] = {
            k: clean_tag(v) for k, v in tags.items() if v != ""
        }
    return out


def _js(path: str) -> str:
    return (HERE / path).read_text(encoding="utf-8")


def _context_init(values: dict[str, Any]) -> str:
    return "".join(
        f"context.set({json.dumps(k)}, {json.dumps(v, ensure_ascii=False)});\n" for k, v in values.items()
    )


def _influx_nodes(s: FlowSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config node and the batch node for the chosen write API."""
    url = urllib.parse.urlsplit(s.influx_url)
    config: dict[str, Any] = {
        "id": INFLUX_CONFIG,
        "type": "influxdb",
        "name": "time-series server",
        "hostname": url.hostname or "127.0.0.1",
        "port": str(url.port or 8086),
        "protocol": url.scheme or "http",
        "database": s.bucket,
        "usetls": url.scheme == "https",
        "tls": "",
        "influxdbVersion": "2.0" if s.api == "v2" else "1.x",
        "url": s.influx_url,
        "timeout": "10",  # seconds; the consumer's store.timeout_ms
        "rejectUnauthorized": True,
    }
    out: dict[str, Any] = {
        "id": INFLUX_OUT,
        "type": "influxdb batch",
        "z": TAB,
        "influxdb": INFLUX_CONFIG,
        "name": "write readings",
        "precision": "ms",  # v1
        "retentionPolicy": "",
        "database": s.bucket,
        "precisionV18FluxV20": "ms",  # v2
        "retentionPolicyV18Flux": "",
        "org": s.org,
        "bucket": s.bucket,
        "x": 1010,
        "y": 80,
        "wires": [],
    }
    return config, out


def build_flow(s: FlowSettings, registry: Registry) -> list[dict[str, Any]]:
    """flows.json of the peer: a list of Node-RED nodes."""
    influx_config, influx_out = _influx_nodes(s)
    return [
        {"id": TAB, "type": "tab", "label": "bosai peer: MQTT to InfluxDB", "disabled": False, "info": ""},
        {
            "id": BROKER,
            "type": "mqtt-broker",
            "name": "broker",
            "broker": s.broker_host,
            "port": str(s.broker_port),
            "clientid": s.client_id,
            "autoConnect": True,
            "usetls": False,
            "protocolVersion": "5" if s.mqtt_protocol == "5" else "4",
            "keepalive": "60",
            "cleansession": False,  # persistent session, as the consumer's
            "autoUnsubscribe": False,  # keep the subscription (and what queues for it) across stops
            "sessionExpiry": str(SESSION_EXPIRY_S),
            "birthTopic": "",
            "closeTopic": "",
            "willTopic": "",
        },
        {
            "id": MQTT_IN,
            "type": "mqtt in",
            "z": TAB,
            "name": "telemetry",
            "topic": s.topic,
            "qos": "1",
            "datatype": "utf8",
            "broker": BROKER,
            "nl": False,
            "rap": True,
            "rh": 0,
            "inputs": 0,
            "x": 110,
            "y": 80,
            "wires": [[JSON_NODE]],
        },
        {
            "id": JSON_NODE,
            "type": "json",
            "z": TAB,
            "name": "parse",
            "property": "payload",
            "action": "obj",
            "pretty": False,
            "x": 290,
            "y": 80,
            "wires": [[TO_POINTS]],
        },
        {
            "id": TO_POINTS,
            "type": "function",
            "z": TAB,
            "name": "readings to points",
            "func": _js("to_points.js"),
            "outputs": 1,
            "timeout": 0,
            "noerr": 0,
            "initialize": _context_init(
                {
                    "sensors": sensor_tags(registry),
                    "qualityCodes": {q.value: code for q, code in QUALITY_CODES.items()},
                    "measurement": READINGS,
                    "integersAsNumbers": s.api == "v1",
                }
            ),
            "finalize": "",
            "libs": [],
            "x": 480,
            "y": 80,
            "wires": [[BATCH]],
        },
        {
            "id": BATCH,
            "type": "function",
            "z": TAB,
            "name": f"batch {s.batch_size}",
            "func": _js("batch.js"),
            "outputs": 1,
            "timeout": 0,
            "noerr": 0,
            "initialize": _context_init(
                {"buffer": [], "batchSize": s.batch_size, "flushMs": s.flush_interval_ms}
            ),
            "finalize": FINALIZE_BATCH,
            "libs": [],
            "x": 720,
            "y": 80,
            "wires": [[INFLUX_OUT]],
        },
        influx_out,
        influx_config,
    ]


def credentials() -> dict[str, dict[str, str]]:
    """flows_cred.json: no token and no user (the test servers run without authentication)."""
    return {INFLUX_CONFIG: {"token": "", "username": "", "password": ""}}
