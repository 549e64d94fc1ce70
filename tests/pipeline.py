"""The cloud side of an end-to-end test: a consumer config pointed at a test broker and store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.servers import Mosquitto, VictoriaMetrics


def write_consumer_config(
    tmp: Path, broker: Mosquitto, victoria: VictoriaMetrics, registry: Path, client_id: str, **sections: Any
) -> Path:
    """consumer.yaml in `tmp`: MQTT 5 to `broker`, influxdb-client writes to `victoria` in
    batches of 500 every 200 ms, alert log and quarantine next to it (spool and alert state too,
    by their defaults relative to the file); `sections` add or replace top-level sections."""
    raw: dict[str, Any] = {
        "mqtt": {"url": broker.url, "protocol": "5", "allow_insecure": True, "client_id": client_id},
        "registry": str(registry),
        "store": {
            "type": "influxdb",
            "url": victoria.url,
            "org": "bosai",
            "bucket": "bosai",
            "batch_size": 500,
            "flush_interval_ms": 200,
        },
        "alerts": {"log_path": str(tmp / "alerts.jsonl")},
        "quarantine_path": str(tmp / "quarantine.jsonl"),
        **sections,
    }
    path = tmp / "consumer.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path
