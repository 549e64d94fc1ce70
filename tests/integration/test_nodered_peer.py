"""The Node-RED peer of the ingest benchmark (benchmarks/nodered) against real servers.

Installs the pinned Node-RED from npm on first use (`npm ci`, about 10 s with a cold npm cache),
runs the flow against a real Mosquitto and VictoriaMetrics, and checks what the benchmark relies
on: every reading stored once with the tags, value, quality code and millisecond time of
cloud/points.reading_line, and QoS 1 telemetry published while the peer is stopped delivered
when it starts again (persistent session, as the consumer's).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks.nodered.flow import FlowSettings, InfluxApi
from benchmarks.nodered.peer import NodeRedPeer, install
from benchmarks.nodered.smoke import (
    check,
    publish,
    quality_samples,
    registry,
    subacks,
    telemetry,
    wait_subscribed,
)
from tests.servers import Mosquitto, VictoriaMetrics

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("api", ["v2", "v1"])
def test_every_reading_once_and_queued_telemetry_after_a_restart(
    api: InfluxApi, mosquitto: Mosquitto, victoria: VictoriaMetrics, tmp_path: Path
) -> None:
    reg = registry()
    sent = telemetry(reg, 120, t0=time.time() - 600)
    before_restart, while_stopped = sent[:60], sent[60:]
    settings = FlowSettings(mosquitto.host, mosquitto.port, victoria.url, api=api, client_id=f"peer-{api}")
    peer = NodeRedPeer(settings, reg, install_dir=install(), workdir=tmp_path / "nodered")
    try:
        peer.start()
        wait_subscribed(mosquitto, settings.client_id)
        publish(mosquitto, before_restart)
        assert victoria.wait_for_samples('{__name__="readings_q"}', quality_samples(reg, before_restart)) == (
            quality_samples(reg, before_restart)
        )
        peer.stop()
        publish(mosquitto, while_stopped)  # queued by the broker for the peer's session
        seen = subacks(mosquitto, settings.client_id)
        peer.start()
        wait_subscribed(mosquitto, settings.client_id, before=seen)
        assert victoria.wait_for_samples('{__name__="readings_q"}', quality_samples(reg, sent)) == (
            quality_samples(reg, sent)
        )
        problems = check(victoria, api, settings.bucket, reg, sent, peer.log_text())
    finally:
        peer.stop()
    assert problems == []
