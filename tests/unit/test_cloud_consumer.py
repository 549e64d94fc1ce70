"""The consumer's processing path without a broker: store, alert log, hooks, stats, internal errors."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cloud.config import ConsumerConfig, LineProtocolFileStore
from cloud.consumer import Consumer, _Message
from cloud.writers.lpfile import read_lp_dir
from wire import topics
from wire.alerts import Alert, alert_decoder

REGISTRY = Path(__file__).resolve().parents[2] / "deploy" / "cloud" / "registry.demo.yaml"
TOPIC = topics.telemetry("demo-city", "gw01")
NOW = time.time()


def make_consumer(
    tmp_path: Path, store_override: LineProtocolFileStore | None = None, **over: Any
) -> Consumer:
    raw: dict[str, Any] = {
        "mqtt": {"url": "mqtt://127.0.0.1:1", "allow_insecure": True},
        "registry": str(REGISTRY),
        "store": {"type": "lpfile", "path": "store"},
        "alerts": {"log_path": "alerts.jsonl", "publish": False},
    }
    raw.update(over)
    cfg = msgspec.convert(raw, ConsumerConfig)
    return Consumer(cfg, tmp_path / "consumer.yaml", store_override=store_override)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat()


def msg(seq: int, *levels: float, t0: float = NOW - 3600, step: float = 60) -> bytes:
    readings = [
        {"sensor": "river-radar-01", "kind": "river_level", "ts": iso(t0 + step * i), "value": v, "unit": "m"}
        for i, v in enumerate(levels)
    ]
    return json.dumps(
        {"v": 1, "tenant": "demo-city", "gateway": "gw01", "seq": seq, "sent": iso(NOW), "readings": readings}
    ).encode()


def test_readings_stored_and_alerts_logged(tmp_path: Path) -> None:
    c = make_consumer(tmp_path)
    seen: list[Alert] = []
    c.on_alert.append(seen.append)
    # an hour apart: a river does rise a metre an hour, not in a minute (that would be a spike)
    c.process_message(TOPIC, msg(1, 1.0, 2.1, 2.7, t0=NOW - 4 * 3600, step=3600))
    c.process_message(TOPIC, msg(2, 1.0, t0=NOW - 600))
    c.process_message(TOPIC, msg(2, 1.0, t0=NOW - 600))  # duplicate: rewritten, no new alert
    c.process_message(TOPIC, b"not json")
    c.drain(5)
    s = c.stats
    assert (s.messages, s.readings_accepted, s.readings_rejected, s.messages_rejected) == (4, 5, 0, 1)
    assert s.rejected_by_reason == {"malformed": 1} and s.duplicated == 1 and s.lost == 0
    assert [a.event for a in seen] == ["raised", "escalated", "resolved"] and s.alerts == 3

    logged = [alert_decoder.decode(x) for x in (tmp_path / "alerts.jsonl").read_bytes().splitlines()]
    assert logged == seen
    stored = list(read_lp_dir(tmp_path / "store"))
    assert sum(1 for p in stored if p.measurement == "readings") == 5
    assert [p.tags["event"] for p in stored if p.measurement == "alerts"] == [
        "raised",
        "escalated",
        "resolved",
    ]
    assert s.lines_written == len(stored) and s.write_errors == 0
    quarantine = (tmp_path / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["reason"] for x in quarantine] == ["malformed"]
    c.stop()


def test_a_failing_hook_does_not_stop_the_others(tmp_path: Path) -> None:
    c = make_consumer(tmp_path)
    seen: list[str] = []

    def broken(alert: Alert) -> None:
        raise RuntimeError("hook bug")

    c.on_alert.extend([broken, lambda a: seen.append(a.event), lambda a: seen.append(str(c.stats.alerts))])
    c.process_message(TOPIC, msg(1, 2.5))
    assert seen == ["raised", "1"]  # a hook may read the stats (no deadlock)
    c.drain(5)
    assert (tmp_path / "alerts.jsonl").exists()
    c.stop()


def test_internal_error_is_counted_and_processing_continues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = make_consumer(tmp_path)

    def boom(*args: Any) -> None:
        raise ZeroDivisionError("detector bug")

    monkeypatch.setattr(c._engine, "reading", boom)
    c.process_message(TOPIC, msg(1, 2.5))
    monkeypatch.undo()
    c.process_message(TOPIC, msg(2, 2.5, t0=NOW - 60))
    s = c.stats
    assert s.rejected_by_reason == {"internal": 1} and s.alerts == 1
    assert s.rejected_by_gateway == {"demo-city/gw01": {"internal": 1}}
    entry = json.loads((tmp_path / "quarantine.jsonl").read_text(encoding="utf-8"))
    assert entry["reason"] == "internal" and "ZeroDivisionError" in entry["detail"]
    c.stop()


def test_worker_thread_processes_queued_messages(tmp_path: Path) -> None:
    # start() connects to nothing useful here (port 1); the worker still drains its queue.
    c = make_consumer(tmp_path, LineProtocolFileStore(path=str(tmp_path / "override")))
    c.start()
    try:
        assert not c.wait_ready(0.2)
        for seq in (1, 3):
            c._queue.put(
                _Message(TOPIC, msg(seq, 1.0, t0=NOW - 600 + seq), time.time(), seq, 1, 0, time.monotonic())
            )
        c.drain(5)
        assert c.stats.readings_accepted == 2 and c.stats.lost == 1
        assert sum(p.measurement == "readings" for p in read_lp_dir(tmp_path / "override")) == 2
    finally:
        c.stop()
    assert not (tmp_path / "store").exists()


def test_stop_leaves_queued_messages_for_redelivery_instead_of_processing_them(tmp_path: Path) -> None:
    """A stop with a long queue returns promptly: the worker finishes at most the message in
    hand and leaves the rest unprocessed and unacknowledged, for the broker to redeliver."""
    import threading

    c = make_consumer(tmp_path, LineProtocolFileStore(path=str(tmp_path / "override")))
    c.start()
    stopper = threading.Thread(target=c.stop)
    with c._lock:  # the worker takes the first message and waits for the lock (tick or processing)
        for seq in range(1, 101):
            c._queue.put(
                _Message(TOPIC, msg(seq, 1.0, t0=NOW - 600 + seq), time.time(), seq, 1, 0, time.monotonic())
            )
        deadline = time.monotonic() + 5
        while c._queue.qsize() > 99 and time.monotonic() < deadline:
            time.sleep(0.01)
        stopper.start()
        while not c._stopping and time.monotonic() < deadline:
            time.sleep(0.01)
    stopper.join(10)
    assert not stopper.is_alive()
    assert c.stats.messages <= 1 and c.stats.messages + c._skipped_at_stop == 100


def test_alert_states_are_held_while_the_broker_is_away_and_published_on_reconnect(tmp_path: Path) -> None:
    c = make_consumer(tmp_path, alerts={"log_path": "alerts.jsonl", "publish": True})
    c.process_message(TOPIC, msg(1, 2.5))  # never connected: paho cannot take the publish
    c.process_message(TOPIC, msg(2, 2.7, t0=NOW - 60))
    assert c.stats.alerts == 2 and c.stats.rejected_by_reason == {}
    [(topic, payload)] = c._republish.items()  # the latest state of the one episode topic
    assert topic.endswith("/alerts/sites/ishikari-asahibashi/river-radar-01/river_level/level")
    assert alert_decoder.decode(payload).event == "escalated"

    sent: list[tuple[str, bytes, int, bool]] = []

    class Client:
        def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
            sent.append((topic, payload, qos, retain))

    c._republish_alerts(Client())  # type: ignore[arg-type]
    assert sent == [(topic, payload, 1, True)] and c._republish == {}
    c.stop()


def snow_msg(seq: int, start: float, hours: float, step: float = 600.0) -> bytes:
    """snow-laser-01 gaining 1 cm of depth an hour from 30 cm, from `start` for `hours`."""
    n = round(hours * 3600 / step)
    readings = [
        {
            "sensor": "snow-laser-01",
            "kind": "snow_depth",
            "ts": iso(start + step * i),
            "value": 30.0 + (start + step * i - T_SNOW) / 3600.0,
            "unit": "cm",
        }
        for i in range(n)
    ]
    return json.dumps(
        {"v": 1, "tenant": "demo-city", "gateway": "gw01", "seq": seq, "sent": iso(NOW), "readings": readings}
    ).encode()


T_SNOW = (NOW - 13 * 3600) // 3600 * 3600  # on an hour boundary, 12-13 h ago


def test_new_snowfall_count_survives_a_restart(tmp_path: Path) -> None:
    """8 h of 1 cm/h before the restart and 4 h after: the arterial plow level (10 cm of new snow)
    is reached after it, because the journal carried the first 8 h over."""
    c = make_consumer(tmp_path)
    c.process_message(TOPIC, snow_msg(1, T_SNOW, 8))
    c.tick()  # the journal is written once a tick
    c.stop()
    again = make_consumer(tmp_path)
    seen: list[Alert] = []
    again.on_alert.append(seen.append)
    again.process_message(TOPIC, snow_msg(2, T_SNOW + 8 * 3600, 4))
    dispatch = [a for a in seen if a.condition == "snow_dispatch"]
    assert [(a.event, a.level_name_ja) for a in dispatch] == [("raised", "除雪出動 (幹線道路)")]
    assert dispatch[0].value is not None and dispatch[0].value >= 10.0
    again.stop()
    # without the journal's history, 4 h of snow are 4 cm: nothing to dispatch
    fresh = make_consumer(tmp_path / "fresh")
    fresh.process_message(TOPIC, snow_msg(1, T_SNOW + 8 * 3600, 4))
    assert fresh.stats.alerts == 0
    fresh.stop()


def test_sequence_accounting_survives_a_restart(tmp_path: Path) -> None:
    c = make_consumer(tmp_path)
    c.process_message(TOPIC, msg(1, 1.0, t0=NOW - 900))
    c.process_message(TOPIC, msg(3, 1.0, t0=NOW - 800))
    assert (c.stats.lost, c.stats.duplicated) == (1, 0)
    c.stop()
    again = make_consumer(tmp_path)
    assert again.stats.lost == 1  # the gap is remembered
    again.process_message(TOPIC, msg(2, 1.0, t0=NOW - 850))  # arrives late: fills it
    again.process_message(TOPIC, msg(3, 1.0, t0=NOW - 800))  # a redelivery after the restart
    s = again.stats
    assert (s.lost, s.reordered, s.duplicated) == (0, 1, 1)
    assert s.sequences["demo-city/gw01"].duplicated == 1
    again.stop()


@pytest.mark.parametrize(
    "topic, payload, reason",
    [
        (topics.status("demo-city", "gw99"), b'{"v":1}', "unknown_gateway"),  # not in the registry
        (topics.health("demo-city", "gw01"), b'{"tenant": "\xc3("}', "malformed"),  # bad UTF-8
        (topics.status("demo-city", "gw01"), b'{"x": ' + b"[" * 100_000, "malformed"),  # too deep
        (topics.status("demo-city", "gw01"), b"[" * 100_000, "schema"),  # not an object at all
        (topics.status("demo-city", "gw01"), b"{}", "schema"),
    ],
)
def test_bad_status_and_health_messages_are_rejected_with_a_reason(
    tmp_path: Path, topic: str, payload: bytes, reason: str
) -> None:
    c = make_consumer(tmp_path)
    c.process_message(topic, payload)
    assert c.stats.rejected_by_reason == {reason: 1}
    c.stop()
