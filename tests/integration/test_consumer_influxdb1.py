"""The cloud consumer against a real Mosquitto, with hostile payloads in the stream, and its
line-protocol output loaded into a real InfluxDB 1.x and read back with InfluxQL.

Site and sensor names carry spaces, commas, `=`, quotes and Japanese characters, as real
registries do; what InfluxQL returns must be exactly what the registry says.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from cloud.config import load_consumer_config
from cloud.consumer import Consumer
from tests.servers import InfluxDB1, Mosquitto, series_rows
from wire import topics
from wire.telemetry import Quality, Reading, Telemetry, encode

pytestmark = pytest.mark.integration

SITE_NAME = '石狩川 旭橋, 右岸 "A" =1'
SENSOR_NAME = "水位計 No.1, radar=primary"
TENANT, GATEWAY, SENSOR = "city-a", "gw-a1", "river-1"

REGISTRY = {
    "tenants": [{"id": TENANT, "name": "A市"}],
    "sites": [{"id": "site-a", "tenant": TENANT, "name": SITE_NAME, "type": "river"}],
    "gateways": [{"id": GATEWAY, "tenant": TENANT}],
    "sensors": [
        {
            "id": SENSOR,
            "tenant": TENANT,
            "gateway": GATEWAY,
            "site": "site-a",
            "name": SENSOR_NAME,
            "channels": {
                "river_level": {
                    "unit": "m",
                    "range": [-2.0, 30.0],
                    "clear_margin": 0.1,
                    "thresholds": [
                        {"level": 1, "value": 2.0, "name": "standby", "name_ja": "水防団待機水位"},
                        {"level": 2, "value": 2.6, "name": "flood caution", "name_ja": "氾濫注意水位"},
                    ],
                }
            },
        }
    ],
}


def _config(tmp: Path, mosquitto: Mosquitto) -> Path:
    (tmp / "registry.yaml").write_text(yaml.safe_dump(REGISTRY, allow_unicode=True), encoding="utf-8")
    raw = {
        "mqtt": {"url": mosquitto.url, "protocol": "5", "allow_insecure": True, "client_id": "it-cloud"},
        "registry": "registry.yaml",
        "store": {"type": "lpfile", "path": "store"},
        "alerts": {"log_path": "alerts.jsonl"},
        "quarantine_path": "quarantine.jsonl",
    }
    path = tmp / "consumer.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def _telemetry(seq: int, t0: datetime, values: list[float | None]) -> bytes:
    readings = [
        Reading(
            SENSOR,
            "river_level",
            t0 + timedelta(minutes=10 * i),
            v,
            "m",
            Quality.OK if v is not None else Quality.TIMEOUT,
        )
        for i, v in enumerate(values)
    ]
    return encode(Telemetry(1, TENANT, GATEWAY, seq, t0, readings))


def _hostile(t0: datetime) -> list[tuple[str, bytes]]:
    """(expected reject reason, payload) pairs; each would crash or corrupt a naive consumer."""
    good = _telemetry(99, t0, [1.0]).decode()
    ts = json.loads(good)["readings"][0]["ts"]
    return [
        ("malformed", b"\xff\xfe not json"),
        ("malformed", b'{"v": 1, "tenant": '),
        ("unknown_version", good.replace('"v":1', '"v":2').encode()),
        ("schema", good.replace('"seq":99', '"seq":-1').encode()),
        ("non_finite", good.replace('"value":1.0', '"value":1e999').encode()),
        ("naive_timestamp", good.replace(ts, ts.rstrip("Z")).encode()),
        ("topic_mismatch", good.replace(f'"gateway":"{GATEWAY}"', '"gateway":"gw-other"').encode()),
        ("oversize", b"[" + b"0," * 200_000 + b"0]"),
    ]


def _publish_all(mosquitto: Mosquitto, messages: list[bytes]) -> None:
    done = threading.Event()
    acked: set[int] = set()
    mids: list[int] = []

    def on_publish(_c: Any, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        acked.add(mid)
        if len(acked) == len(messages):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="it-gw", protocol=mqtt.MQTTv5)
    client.on_publish = on_publish
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    for payload in messages:
        mids.append(client.publish(topics.telemetry(TENANT, GATEWAY), payload, qos=1).mid)
    assert done.wait(15), "broker did not acknowledge every publish"
    client.loop_stop()
    client.disconnect()


def test_hostile_payloads_rejected_and_output_reads_back_in_influxdb1(
    tmp_path: Path, mosquitto: Mosquitto, influxdb1: InfluxDB1
) -> None:
    cfg_path = _config(tmp_path, mosquitto)
    consumer = Consumer(load_consumer_config(cfg_path), cfg_path)
    consumer.start()
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    try:
        assert consumer.wait_ready(15)
        hostile = _hostile(t0)
        # Good messages before, between and after the hostile ones: the consumer must keep going.
        messages = [_telemetry(0, t0, [1.50, 1.80, None])]
        messages += [p for _, p in hostile]
        messages += [_telemetry(1, t0 + timedelta(minutes=30), [2.05, 2.31, 2.64])]
        _publish_all(mosquitto, messages)
        deadline = time.monotonic() + 15
        while consumer.stats.messages < len(messages) and time.monotonic() < deadline:
            time.sleep(0.05)
        consumer.drain(10)
    finally:
        consumer.stop()

    stats = consumer.stats
    assert stats.messages == len(messages)
    expected_reasons: dict[str, int] = {}
    for reason, _ in hostile:
        expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
    assert stats.rejected_by_reason == expected_reasons
    assert stats.readings_accepted == 6
    quarantined = [json.loads(line) for line in (tmp_path / "quarantine.jsonl").read_text().splitlines()]
    assert sorted(q["reason"] for q in quarantined) == sorted(r for r, _ in hostile)

    # Load exactly what the writer produced into InfluxDB 1.x.
    raw_lines = [
        line
        for f in sorted((tmp_path / "store").glob("*.lp"))
        for line in f.read_text(encoding="utf-8").splitlines()
        if line
    ]
    influxdb1.create_db("bosai")
    influxdb1.write_lp("bosai", raw_lines, precision="ms")

    tag_values = series_rows(
        influxdb1.query("bosai", 'SHOW TAG VALUES FROM "readings" WITH KEY = "site_name"')
    )
    assert [r["value"] for r in tag_values] == [SITE_NAME]
    sensor_names = series_rows(
        influxdb1.query("bosai", 'SHOW TAG VALUES FROM "readings" WITH KEY = "sensor_name"')
    )
    assert [r["value"] for r in sensor_names] == [SENSOR_NAME]

    escaped = SITE_NAME.replace("\\", "\\\\").replace("'", "\\'")
    rows = series_rows(
        influxdb1.query(
            "bosai",
            'SELECT "value", "q" FROM "readings" '
            f"WHERE \"site_name\" = '{escaped}' AND \"sensor\" = '{SENSOR}'",
        )
    )
    t0_ms = int(t0.timestamp() * 1000)
    expected = [
        (t0_ms, 1.50, 0),
        (t0_ms + 600_000, 1.80, 0),
        (t0_ms + 1_200_000, None, 1),
        (t0_ms + 1_800_000, 2.05, 0),
        (t0_ms + 2_400_000, 2.31, 0),
        (t0_ms + 3_000_000, 2.64, 0),
    ]
    assert [(r["time"], r["value"], r["q"]) for r in rows] == expected

    # Disaster alerts only: the readings are a day old, so the consumer may also (rightly) raise
    # maintenance alerts about the gateway and sensor having gone silent since.
    alerts = series_rows(
        influxdb1.query(
            "bosai",
            'SELECT "level", "reason", "event", "condition", "value", "threshold", "site_name" FROM "alerts" '
            "WHERE \"category\" = 'disaster'",
        )
    )
    assert [(a["time"], a["level"], a["event"], a["condition"]) for a in alerts] == [
        (t0_ms + 1_800_000, 1, "raised", "level"),
        (t0_ms + 3_000_000, 2, "escalated", "level"),
    ]
    assert [(a["value"], a["threshold"], a["site_name"]) for a in alerts] == [
        (2.05, 2.0, SITE_NAME),
        (2.64, 2.6, SITE_NAME),
    ]
    assert SITE_NAME in alerts[0]["reason"] and "水防団待機水位" in alerts[0]["reason"]
    alert_sites = series_rows(
        influxdb1.query("bosai", 'SHOW TAG VALUES FROM "alerts" WITH KEY = "site_name"')
    )
    assert [r["value"] for r in alert_sites] == [SITE_NAME]
