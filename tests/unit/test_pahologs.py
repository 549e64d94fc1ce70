"""paho's error before every reconnect attempt goes to DEBUG; its other records are untouched."""

from __future__ import annotations

import logging
import socket
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from wire.pahologs import disconnect_reason, last_transport_error, paho_logger


def test_socket_errors_are_demoted_and_the_last_cause_kept(caplog: pytest.LogCaptureFixture) -> None:
    logger = paho_logger("paho.mqtt.test-demote")
    assert paho_logger("paho.mqtt.test-demote") is logger and len(logger.filters) == 1  # installed once
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.error("failed to receive on socket: %s", "[Errno 104] Connection reset by peer")
        logger.error("Client is not connected. Socket: None). Last known Connection State: MQTT_CS_NEW")
        logger.error("Caught exception in on_socket_open: %s", "boom")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "Caught exception in on_socket_open: boom")
    ]
    # the cause of the drop, not paho's restatement that it is not connected; taken once
    reset = "failed to receive on socket: [Errno 104] Connection reset by peer"
    assert disconnect_reason("Unspecified error", logger.name) == f"Unspecified error: {reset}"
    assert last_transport_error(logger.name) is None
    assert disconnect_reason("Unspecified error", logger.name) == "Unspecified error"  # taken once
    assert last_transport_error("paho.mqtt.never-installed") is None
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        logger.error("timeout on socket: %s", "timed out")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", "timeout on socket: timed out")
    ]


def retry_a_dead_broker(logger: logging.Logger, attempts: int) -> None:
    """A paho client in its network thread failing to connect `attempts` times, then stopped."""
    with socket.socket() as closed:  # a port that refuses connections: bound, never listening
        closed.bind(("127.0.0.1", 0))
        failed = threading.Semaphore(0)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5)
        client.enable_logger(logger)
        client.reconnect_delay_set(0.02, 0.05)  # type: ignore[arg-type]  # seconds; paho types them int
        client.on_connect_fail = lambda _c, _u: failed.release()
        client.connect_async("127.0.0.1", closed.getsockname()[1])
        client.loop_start()
        try:
            for _ in range(attempts):
                assert failed.acquire(timeout=10)
        finally:
            client.disconnect()
            client.loop_stop()


def test_a_client_retrying_a_dead_broker_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="paho.mqtt.test-plain"):
        retry_a_dead_broker(logging.getLogger("paho.mqtt.test-plain"), 3)
    assert [r.levelname for r in caplog.records].count("ERROR") >= 2  # what paho does on its own
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="paho.mqtt.test-retry"):
        retry_a_dead_broker(paho_logger("paho.mqtt.test-retry"), 3)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
