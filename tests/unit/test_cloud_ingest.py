"""Ingestion: every RejectReason reachable, quarantine entries, per-reading rejection, sequences."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cloud.config import ValidationConfig
from cloud.ingest import Ingestor
from cloud.quarantine import MAX_PAYLOAD_BYTES, Quarantine
from cloud.registry import Registry, load_registry
from cloud.sequence import SequenceTracker
from wire import topics
from wire.telemetry import MAX_PAYLOAD_BYTES as WIRE_MAX
from wire.telemetry import RejectReason

REGISTRY = Path(__file__).resolve().parents[2] / "deploy" / "cloud" / "registry.demo.yaml"
TOPIC = topics.telemetry("demo-city", "gw01")
NOW = time.time()


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(REGISTRY)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat()


def reading(**over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "sensor": "river-radar-01",
        "kind": "river_level",
        "ts": iso(NOW - 60),
        "value": 1.5,
        "unit": "m",
        "q": "ok",
    }
    r.update(over)
    return r


def message(readings: list[dict[str, Any]] | None = None, **over: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "v": 1,
        "tenant": "demo-city",
        "gateway": "gw01",
        "seq": 1,
        "sent": iso(NOW),
        "readings": readings if readings is not None else [reading()],
    }
    m.update(over)
    return m


def payload(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg).encode()


def make(registry: Registry, tmp_path: Path) -> Ingestor:
    return Ingestor(registry, ValidationConfig(), Quarantine(tmp_path / "q" / "quarantine.jsonl"))


def quarantined(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "q" / "quarantine.jsonl"
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def test_valid_message_is_accepted(registry: Registry, tmp_path: Path) -> None:
    ing = make(registry, tmp_path)
    res = ing.process(TOPIC, payload(message()), NOW)
    assert res is not None and len(res.accepted) == 1
    a = res.accepted[0]
    assert (a.sensor.id, a.site.name, a.reading.value) == ("river-radar-01", "石狩川 旭橋", 1.5)
    assert ing.readings_accepted == 1 and not ing.by_reason
    assert quarantined(tmp_path) == []


MESSAGE_LEVEL = [
    (RejectReason.OVERSIZE, b"{" + b" " * WIRE_MAX + b"}"),
    (RejectReason.MALFORMED, b"\xff\xfe not json"),
    (RejectReason.SCHEMA, payload(message(seq="one"))),
    (RejectReason.UNKNOWN_VERSION, payload(message(v=2))),
    (RejectReason.TOPIC_MISMATCH, payload(message(gateway="gw02"))),
    (RejectReason.NAIVE_TIMESTAMP, payload(message([reading(ts="2024-01-01T00:00:00")]))),
    (RejectReason.NON_FINITE, payload(message([reading()])).replace(b"1.5", b"1e999")),
    (RejectReason.VALUE_QUALITY_MISMATCH, payload(message([reading(value=None)]))),
    (RejectReason.FUTURE_TIMESTAMP, payload(message([reading(ts=iso(NOW + 3600))]))),
    (RejectReason.PAST_TIMESTAMP, payload(message([reading(ts=iso(NOW - 100 * 86400))]))),
]


@pytest.mark.parametrize(("reason", "data"), MESSAGE_LEVEL, ids=[r.value for r, _ in MESSAGE_LEVEL])
def test_message_level_rejections(
    registry: Registry, tmp_path: Path, reason: RejectReason, data: bytes
) -> None:
    ing = make(registry, tmp_path)
    assert ing.process(TOPIC, data, NOW) is None
    assert ing.by_reason == {reason.value: 1}
    assert ing.by_gateway == {"demo-city/gw01": {reason.value: 1}}
    assert ing.messages_rejected == 1 and ing.readings_accepted == 0
    [entry] = quarantined(tmp_path)
    assert entry["reason"] == reason.value and entry["topic"] == TOPIC and entry["detail"]
    assert entry["received"].startswith(iso(NOW)[:19])


READING_LEVEL = [
    (RejectReason.UNKNOWN_SENSOR, reading(sensor="intruder-9")),
    (RejectReason.UNKNOWN_SENSOR, reading(kind="snow_depth")),  # not a channel of this sensor
    (RejectReason.SCHEMA, reading(unit="cm")),
    (RejectReason.OUT_OF_RANGE, reading(value=31.0)),
]


@pytest.mark.parametrize(("reason", "bad"), READING_LEVEL)
def test_reading_level_rejection_keeps_the_rest(
    registry: Registry, tmp_path: Path, reason: RejectReason, bad: dict[str, Any]
) -> None:
    ing = make(registry, tmp_path)
    good2 = reading(sensor="snow-laser-01", kind="snow_depth", value=12.0, unit="cm")
    res = ing.process(TOPIC, payload(message([reading(), bad, good2], seq=7)), NOW)
    assert res is not None
    assert [a.reading.sensor for a in res.accepted] == ["river-radar-01", "snow-laser-01"]
    assert (ing.readings_accepted, ing.readings_rejected, ing.messages_rejected) == (2, 1, 0)
    assert ing.by_reason == {reason.value: 1}
    [entry] = quarantined(tmp_path)
    assert entry["reason"] == reason.value and entry["seq"] == 7
    assert entry["detail"].startswith("readings[1]: ")
    assert json.loads(entry["payload"])["sensor"] == bad["sensor"]


def test_unknown_sensor_is_a_security_event(registry: Registry, tmp_path: Path) -> None:
    ing = make(registry, tmp_path)
    ing.process(TOPIC, payload(message([reading(sensor="intruder-9")])), NOW)
    assert ing.security_events == 1
    # a registered sensor reported by the wrong gateway is just as suspicious
    other = topics.telemetry("demo-city", "gw02")
    ing.process(other, payload(message(gateway="gw02")), NOW)
    assert ing.security_events == 2 and ing.by_gateway["demo-city/gw02"] == {"unknown_sensor": 1}


def test_bad_quality_readings_are_accepted_without_range_check(registry: Registry, tmp_path: Path) -> None:
    ing = make(registry, tmp_path)
    res = ing.process(TOPIC, payload(message([reading(value=None, q="timeout")])), NOW)
    assert res is not None and len(res.accepted) == 1


def test_topic_that_is_not_telemetry(registry: Registry, tmp_path: Path) -> None:
    ing = make(registry, tmp_path)
    assert ing.process("bosai/v1/demo city/gw01/telemetry", payload(message()), NOW) is None
    assert ing.by_reason == {"topic_mismatch": 1} and ing.by_gateway == {"?": {"topic_mismatch": 1}}


def test_quarantine_binary_and_truncated_payloads(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q" / "quarantine.jsonl")
    q.add(topic="t", reason="malformed", detail="d", received=NOW, payload=b"\xff\x00\x01")
    q.add(topic="t", reason="oversize", detail="d", received=NOW, payload="雪".encode() * 3000)
    q.close()
    binary, big = quarantined(tmp_path)
    assert binary["payload_encoding"] == "base64" and base64.b64decode(binary["payload"]) == b"\xff\x00\x01"
    assert "truncated" not in binary
    # cut inside a 3-byte character: still shown as text, marked truncated
    assert big["truncated"] is True and big.get("payload_encoding", "utf-8") == "utf-8"
    assert set(big["payload"]) == {"雪"} and len(big["payload"].encode()) <= MAX_PAYLOAD_BYTES


def test_quarantine_off(registry: Registry, tmp_path: Path) -> None:
    ing = Ingestor(registry, ValidationConfig(), Quarantine(None))
    ing.process(TOPIC, b"garbage", NOW)
    assert ing.by_reason == {"malformed": 1}
    assert list(tmp_path.iterdir()) == []


def test_sequence_accounting_in_ingestion(registry: Registry, tmp_path: Path) -> None:
    ing = make(registry, tmp_path)
    for seq in (1, 2, 5, 3, 3, 6):
        assert ing.process(TOPIC, payload(message(seq=seq)), NOW) is not None  # duplicates still pass
    assert ing.sequences.totals() == (1, 1, 1)  # 4 lost; 3 duplicated; 3 reordered (after 5)


def test_sequence_tracker() -> None:
    t = SequenceTracker(window=10)
    assert [t.observe("a", "g", s) for s in (100, 101, 104, 102, 104, 103, 99)] == [
        "new",
        "new",
        "new",
        "reordered",
        "duplicate",
        "reordered",
        "reordered",  # before the first number seen: the consumer started later, not a gap
    ]
    assert t.totals() == (0, 1, 3)
    assert t.observe("a", "g", 120) == "new" and t.totals() == (15, 1, 3)
    assert t.observe("a", "g", 3) == "reset"  # far behind the window: the gateway lost its counter
    assert t.observe("a", "g", 4) == "new" and t.totals() == (15, 1, 3)
    t.observe("b", "g", 5)  # gateways are independent
    assert t.observe("b", "g", 3) == "reordered" and t.totals() == (15, 1, 4)
    assert t.observe("b", "g", 3) == "duplicate"  # below the first seen, but seen once already


def test_a_backlog_replayed_after_live_data_fills_its_gap_however_far_behind() -> None:
    """After a day offline the gateway sends live data first, then 86 400 older messages."""
    t = SequenceTracker(window=10)
    for seq in range(1, 11):
        t.observe("a", "g", seq, "s1")
    assert t.observe("a", "g", 86_411, "s1") == "new"  # live, right after reconnecting
    assert t.totals() == (86_400, 0, 0)  # the backlog not arrived yet
    statuses = {t.observe("a", "g", seq, "s1") for seq in range(11, 86_411)}
    assert statuses == {"reordered"}
    assert t.totals() == (0, 0, 86_400)
    assert (
        t.observe("a", "g", 500, "s1") == "duplicate"
    )  # a replay after a crash: far back, still a duplicate
    g = t.gateways[("a", "g")]
    assert g.gap_starts == [] and g.resets == 0


def test_gaps_split_and_stay_bounded() -> None:
    t = SequenceTracker(max_gaps=3)
    t.observe("a", "g", 1)
    t.observe("a", "g", 10)  # gap 2..9
    assert t.observe("a", "g", 5) == "reordered"  # splits it: 2..4, 6..9
    g = t.gateways[("a", "g")]
    assert list(zip(g.gap_starts, g.gap_ends, strict=True)) == [(2, 4), (6, 9)]
    for seq in (12, 14, 16):  # three more gaps: the oldest is forgotten (its numbers stay lost)
        t.observe("a", "g", seq)
    assert list(zip(g.gap_starts, g.gap_ends, strict=True)) == [(11, 11), (13, 13), (15, 15)]
    assert t.observe("a", "g", 3) == "duplicate" and t.totals()[0] == 7 + 3


def test_a_new_stream_restarts_the_accounting() -> None:
    t = SequenceTracker()
    t.observe("a", "g", 500, "old")
    t.observe("a", "g", 502, "old")  # 501 lost
    assert t.observe("a", "g", 1, "new") == "reset"
    assert t.observe("a", "g", 2, "new") == "new"
    assert t.totals() == (1, 0, 0) and t.gateways[("a", "g")].resets == 1
    # an agent that starts sending its stream id keeps its counter: not a restart
    t.observe("b", "g", 7)
    assert t.observe("b", "g", 8, "s") == "new" and t.gateways[("b", "g")].resets == 0
