"""A consumer started while its broker is down says why once, stays quiet, and connects when it is up.

Real Mosquitto (started late, on the port the consumer was configured with) and VictoriaMetrics.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cloud.config import load_consumer_config
from cloud.consumer import Consumer
from tests.pipeline import write_consumer_config
from tests.servers import Mosquitto, VictoriaMetrics
from tests.waiting import wait_for

REGISTRY = Path(__file__).resolve().parents[2] / "deploy" / "cloud" / "registry.demo.yaml"


def test_a_consumer_before_its_broker_warns_once_with_the_cause_then_connects(
    tmp_path: Path, victoria: VictoriaMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto")  # its port is chosen now, the broker started later
    path = write_consumer_config(tmp_path, broker, victoria, REGISTRY, "broker-down-consumer")
    consumer = Consumer(load_consumer_config(path), path)
    caplog.set_level(logging.INFO, logger="paho.mqtt.cloud")  # paho's own log at the default level
    caplog.set_level(logging.DEBUG, logger="cloud.consumer")

    def consumer_lines(text: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "cloud.consumer" and text in r.getMessage()]

    try:
        consumer.start()
        # paho retries after 1, 2, 4 s: the first failure is explained, the next two only at DEBUG
        wait_for(lambda: len(consumer_lines("connection attempt failed again")) >= 2, "three attempts", 30)
        broker.start()
        assert consumer.wait_ready(60), "the consumer did not subscribe once the broker was up"
    finally:
        consumer.stop()
        broker.stop()

    cannot = consumer_lines("cannot connect to broker")
    assert len(cannot) == 1 and cannot[0].levelno == logging.WARNING
    assert broker.url in cannot[0].getMessage() and "refused" in cannot[0].getMessage().lower()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert consumer_lines(f"connected to {broker.url}")
