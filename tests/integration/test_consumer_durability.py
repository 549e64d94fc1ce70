"""Nothing acknowledged is lost: database outage, `kill -9` of the consumer, broker restart.

Real Mosquitto (persistent), real VictoriaMetrics (the InfluxDB v2 write API), and the consumer
as a child process (`bosai cloud run`), so that it can be killed for real.  A publisher with a
persistent session sends numbered telemetry throughout (QoS 1; paho resends what the broker has
not acknowledged, as the edge agent's outbox does), while:

1. the database is up: readings arrive;
2. the database is stopped: the consumer keeps acknowledging, its spool grows (seen on /metrics);
3. the consumer is killed with SIGKILL in the middle of the stream, the database still down;
4. messages are published while no consumer runs, and the broker is restarted;
5. the consumer starts again (same spool, same session), then the database comes back.

Every published reading must then be in the database exactly once (a point is keyed by series
and sample time; the server is started with deduplication, InfluxDB's overwrite semantics), and
nothing else.  The figures (spooled lines, redeliveries) are printed for the closing note.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client.parser import text_string_to_metric_families

from tests.pipeline import write_consumer_config
from tests.servers import Mosquitto, VictoriaMetrics, free_port, http_request
from tests.waiting import wait_for
from wire import topics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REGISTRY = REPO / "deploy" / "cloud" / "registry.demo.yaml"
TOPIC = topics.telemetry("demo-city", "gw01")
READINGS_PER_MESSAGE = 10
T0 = int(time.time()) - 6 * 3600  # sample times: recent, one second apart
WAIT_S = 90.0


def telemetry(seq: int) -> bytes:
    readings = [
        {
            "sensor": "river-radar-01",
            "kind": "river_level",
            "ts": datetime.fromtimestamp(T0 + seq * READINGS_PER_MESSAGE + i, tz=UTC).isoformat(),
            "value": 1.0 + ((seq * READINGS_PER_MESSAGE + i) % 7) / 100,  # calm river
            "unit": "m",
        }
        for i in range(READINGS_PER_MESSAGE)
    ]
    sent = datetime.now(tz=UTC).isoformat()
    msg = {"v": 1, "tenant": "demo-city", "gateway": "gw01", "seq": seq, "sent": sent, "readings": readings}
    return json.dumps(msg).encode()


def expected_ms(seqs: range) -> set[int]:
    return {(T0 + s * READINGS_PER_MESSAGE + i) * 1000 for s in seqs for i in range(READINGS_PER_MESSAGE)}


class Publisher:
    """A gateway-like publisher: MQTT 5, persistent session, QoS 1, retries until acknowledged."""

    def __init__(self, broker: Mosquitto) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="durability-gw01", protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(broker.host, broker.port, clean_start=False, properties=props)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, seqs: range, pause: float = 0.01) -> None:
        for seq in seqs:
            self.infos.append(self.client.publish(TOPIC, telemetry(seq), qos=1))
            time.sleep(pause)

    def wait_all_acknowledged(self, timeout: float = WAIT_S) -> None:
        wait_for(
            lambda: all(i.is_published() for i in self.infos), "the broker acknowledged everything", timeout
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class ConsumerProcess:
    def __init__(self, config: Path, logdir: Path, metrics_port: int) -> None:
        self.config = config
        self.logdir = logdir
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.logs: list[Path] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.logdir / f"consumer-{len(self.logs) + 1}.log"
        self.logs.append(log)
        argv = [sys.executable, "-m", "bosai", "cloud", "run", "--config", str(self.config)]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        wait_for(lambda: self.metrics() is not None, "the consumer's /metrics endpoint")

    def metrics(self) -> dict[str, float] | None:
        """Samples by name (label sets summed), or None while the endpoint does not answer."""
        try:
            status, body = http_request(self.metrics_url)
        except OSError:
            return None
        if status != 200:
            return None
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
        return out

    def metric(self, name: str) -> float:
        m = self.metrics()
        assert m is not None, self.tail()
        return m.get(name, 0.0)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def tail(self, lines: int = 30) -> str:
        if not self.logs:
            return "(never started)"
        text = self.logs[-1].read_text(errors="replace").splitlines()[-lines:]
        return f"--- last {lines} lines of {self.logs[-1]}:\n" + "\n".join(text)


def stored_ms(victoria: VictoriaMetrics) -> list[int]:
    victoria.force_flush()
    rows = victoria.export('{__name__="readings_value",sensor="river-radar-01"}')
    return [ts for row in rows for ts in row["timestamps"]]


def write_config(tmp: Path, broker: Mosquitto, victoria: VictoriaMetrics, metrics_port: int) -> Path:
    metrics = {"listen": f"127.0.0.1:{metrics_port}", "health_every_s": 5}
    return write_consumer_config(tmp, broker, victoria, REGISTRY, "durability-consumer", metrics=metrics)


def test_db_outage_consumer_kill_and_broker_restart_lose_nothing_and_duplicate_nothing(
    tmp_path: Path,
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto")
    victoria = VictoriaMetrics(tmp_path / "victoria")
    port = free_port()
    consumer = ConsumerProcess(write_config(tmp_path, broker, victoria, port), tmp_path, port)
    publisher: Publisher | None = None
    try:
        broker.start()
        victoria.start()
        consumer.start()
        publisher = Publisher(broker)

        # 1. database up
        publisher.publish(range(1, 101))
        wait_for(lambda: len(stored_ms(victoria)) >= 1000, "phase 1 readings in the database")

        # 2. database down: the consumer keeps acknowledging; the spool grows
        victoria.stop()
        publisher.publish(range(101, 201))
        publisher.wait_all_acknowledged()
        wait_for(
            lambda: consumer.metric("bosai_consumer_spool_lines") >= 1000, "phase 2 readings in the spool"
        )
        spooled_before_kill = consumer.metric("bosai_consumer_spool_lines")

        time.sleep(3)  # a longer outage: the store thread backs off
        retries = consumer.metric("bosai_consumer_write_retries_total")

        # 3. kill -9 in the middle of a stream, database still down
        stream = threading.Thread(target=publisher.publish, args=(range(201, 251), 0.02))
        stream.start()
        wait_for(lambda: consumer.metric("bosai_consumer_messages_received_total") >= 210, "mid-stream")
        consumer.kill()
        stream.join()

        # 4. published while no consumer runs; then the broker restarts
        publisher.publish(range(251, 301))
        publisher.wait_all_acknowledged()
        broker.restart()
        wait_for(publisher.client.is_connected, "the publisher reconnected")
        publisher.publish(range(301, 351))
        publisher.wait_all_acknowledged()

        # 5. the consumer comes back (database still down), then the database
        consumer.start()
        wait_for(lambda: consumer.metric("bosai_consumer_spool_lines") >= 2500, "backlog in the spool")
        victoria.start()
        expected = expected_ms(range(1, 351))
        wait_for(lambda: len(set(stored_ms(victoria))) >= len(expected), "every reading in the database", 120)
        stored = stored_ms(victoria)
        wait_for(lambda: consumer.metric("bosai_consumer_spool_lines") == 0, "the spool drained")
        restarted = consumer.metrics() or {}
        assert consumer.terminate() == 0, consumer.tail()
    finally:
        if publisher is not None:
            publisher.close()
        if consumer.proc is not None and consumer.proc.poll() is None:
            consumer.kill()
        victoria.stop()
        broker.stop()

    duplicates = [ts for ts, n in Counter(stored).items() if n > 1]
    assert not duplicates, f"{len(duplicates)} readings stored twice"
    assert set(stored) == expected, (
        f"missing {len(expected - set(stored))}, invented {len(set(stored) - expected)}"
    )
    assert restarted.get("bosai_consumer_messages_lost") == 0  # every sequence number accounted for
    recovered = [ln for ln in consumer.logs[1].read_text().splitlines() if "from the previous run" in ln]
    assert recovered, "the restarted consumer found no spooled lines from the killed one"
    print(
        f"\nreadings published: {len(expected)}; in the database: {len(stored)} (exactly once); "
        f"spooled during the outage before the kill: {spooled_before_kill:.0f} lines; write retries "
        f"before the kill: {retries:.0f}; messages received by the restarted consumer: "
        f"{restarted.get('bosai_consumer_messages_received_total', 0):.0f}, of which duplicates "
        f"{restarted.get('bosai_consumer_messages_duplicated_total', 0):.0f}; lost at the end "
        f"{restarted.get('bosai_consumer_messages_lost', 0):.0f}; at its start the spool "
        f"held{recovered[0].split(':')[-1]}"
    )
