"""Hostile input against the decoder and the ingestor: property tests, the corpus, bounded memory.

Four claims of the wire contract and the cloud's ingestion, each tested on input nobody wrote by
hand (hypothesis) and on the curated corpus of tests/hostile.py:

1. `decode_telemetry` either returns a message that keeps every promise of the contract (finite
   values, a value exactly when the flag is ok, time-zone-aware sample times inside the window,
   1..MAX readings) or raises `DecodeError` with a `RejectReason`; no other exception, whatever
   the bytes: arbitrary bytes, arbitrary JSON, valid messages with fields deleted or replaced
   (another JSON type, extreme numbers, random text, odd timestamps), byte-level damage, and
   nesting far deeper than the parser's recursion limit.
2. `Ingestor.process` never raises, and every message is accounted exactly once: rejected as a
   whole under one reason, or accepted with each of its readings either accepted or rejected
   under one reason; the totals add up (by reason, by gateway, in the quarantine file).
3. Every corpus entry is rejected with the reason written next to it and quarantined with it.
4. Memory stays bounded under a long hostile stream from a fixed set of gateways: no state is
   kept per message (or per made-up sensor id).

Hypothesis runs derandomized (no run-to-run randomness: CI must not flake) with no example
database and no deadline (a loaded 2-core box is slow).  Derandomized generation still shifts
when the code changes (Hypothesis also draws constants found in the project's modules), so the
inputs that once broke something are pinned with `@example` and run every time, and the
ingestor's accounting is also checked on the whole corpus by a plain test.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import random
import tempfile
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cloud.config import ValidationConfig
from cloud.ingest import Ingestor
from cloud.quarantine import Quarantine
from cloud.registry import Registry, load_registry
from tests import hostile
from tests.hostile import HOSTILE_GATEWAY, HOSTILE_SENSOR, KIND, TENANT, UNIT, HostileCase
from wire import topics
from wire.ids import ID_PATTERN
from wire.telemetry import (
    MAX_READINGS_PER_MESSAGE,
    DecodeError,
    Quality,
    RejectReason,
    Telemetry,
    decode_telemetry,
    encode,
)

# A fixed arrival time: the examples (and so the verdicts) must not depend on the day of the run.
NOW = 1_750_000_000.0
LIMITS = ValidationConfig()
MAX_FUTURE_S = LIMITS.max_future_s
MAX_PAST_S = LIMITS.max_past_s

CI = settings(
    deadline=None,
    max_examples=150,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

REASONS = {r.value for r in RejectReason}
CORPUS = hostile.corpus(NOW)

# The topics the strategies use: the registry's two gateways, a gateway and a tenant that are not
# registered, and topics that are no telemetry topic at all.
GOOD_TOPIC = topics.telemetry(TENANT, hostile.GOOD_GATEWAY)
HOSTILE_TOPIC = topics.telemetry(TENANT, HOSTILE_GATEWAY)
GHOST_TOPIC = topics.telemetry(TENANT, "gw-ghost")
OTHER_TENANT_TOPIC = topics.telemetry("other-city", HOSTILE_GATEWAY)
FIXED_TOPICS = [GOOD_TOPIC, HOSTILE_TOPIC, GHOST_TOPIC, OTHER_TENANT_TOPIC]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return load_registry(hostile.write_registry(tmp_path_factory.mktemp("registry")))


# --------------------------------------------------------------------------------------------
# Strategies

# Any JSON value; floats include NaN and +-Infinity (json.dumps writes them as bare literals),
# integers are unbounded (beyond 64 bits).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)

identifiers = st.from_regex(ID_PATTERN, fullmatch=True)
offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda m: timezone(timedelta(minutes=m))
)


def stamp(t: float, tz: timezone) -> str:
    return datetime.fromtimestamp(t, tz=UTC).astimezone(tz).isoformat()


@st.composite
def valid_readings(draw: st.DrawFn, sensor: st.SearchStrategy[str] | None = None) -> dict[str, Any]:
    """A reading the decoder accepts (not necessarily one the registry accepts)."""
    q = draw(st.sampled_from(list(Quality)))
    value = draw(st.floats(allow_nan=False, allow_infinity=False)) if q is Quality.OK else None
    age = draw(st.floats(min_value=-MAX_FUTURE_S + 1, max_value=MAX_PAST_S - 1))
    return {
        "sensor": draw(sensor if sensor is not None else st.just(HOSTILE_SENSOR)),
        "kind": KIND,
        "ts": stamp(NOW - age, draw(offsets)),
        "value": value,
        "unit": UNIT,
        "q": q.value,
    }


@st.composite
def valid_messages(
    draw: st.DrawFn, gateway: str = HOSTILE_GATEWAY, sensors: st.SearchStrategy[str] | None = None
) -> dict[str, Any]:
    """A message the decoder accepts, from `gateway` of the test tenant."""
    readings = draw(st.lists(valid_readings(sensors), min_size=1, max_size=5))
    msg: dict[str, Any] = {
        "v": 1,
        "tenant": TENANT,
        "gateway": gateway,
        "seq": draw(st.integers(min_value=0, max_value=2**63 - 1)),
        "sent": stamp(NOW - draw(st.floats(min_value=-MAX_FUTURE_S + 1, max_value=1e9)), draw(offsets)),
        "readings": readings,
    }
    if draw(st.booleans()):
        msg["stream"] = draw(st.from_regex(r"[0-9a-f]{1,32}", fullmatch=True))
    return msg


# Numbers at and past the edges: what json.dumps can write, and literals it cannot (written raw).
EXTREME_NUMBERS: list[Any] = [
    math.nan,
    math.inf,
    -math.inf,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    5e-324,
    -0.0,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63) - 1,
    -1,
    10**400,
]
RAW_LITERALS = [b"1e400", b"-1e400", b"1e-400", b"NaN", b"-Infinity", b"1" + b"0" * 400, b"-0", b"0e0"]


@dataclass
class Raw:
    """A literal put into the JSON text as is."""

    literal: bytes


def render(obj: Any) -> bytes:
    """JSON text of `obj`, with each `Raw` written as its literal."""
    literals: list[bytes] = []

    def swap(x: Any) -> Any:
        if isinstance(x, Raw):
            literals.append(x.literal)
            return f"\x00raw{len(literals) - 1}\x00"
        if isinstance(x, dict):
            return {k: swap(v) for k, v in x.items()}
        if isinstance(x, list):
            return [swap(v) for v in x]
        return x

    data = json.dumps(swap(obj), ensure_ascii=False).encode()
    for i, literal in enumerate(literals):
        data = data.replace(json.dumps(f"\x00raw{i}\x00").encode(), literal)
    return data


timestamp_texts = st.one_of(
    st.datetimes().map(datetime.isoformat),  # naive, years 1..9999
    st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), st.datetimes(), offsets),
    st.sampled_from(
        [
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+23:59",
            "1969-12-31T23:59:59Z",
            "2024-02-30T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2016-12-31T23:59:60Z",
            "2024-01-01T00:00:00.123456789123Z",
            "2024-01-01",
            "",
        ]
    ),
)


@st.composite
def replacement(draw: st.DrawFn) -> Any:
    """Something to put where a field was: another JSON type, an edge number, text, a time."""
    kind = draw(st.sampled_from(["json", "number", "raw", "text", "time"]))
    if kind == "json":
        return draw(json_values)
    if kind == "number":
        return draw(st.sampled_from(EXTREME_NUMBERS))
    if kind == "raw":
        return Raw(draw(st.sampled_from(RAW_LITERALS)))
    if kind == "text":
        return draw(st.text(max_size=80))
    return draw(timestamp_texts)


MESSAGE_KEYS = ["v", "tenant", "gateway", "seq", "sent", "readings", "stream"]
READING_KEYS = ["sensor", "kind", "ts", "value", "unit", "q"]


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    """A valid message with one to three fields deleted, replaced or added (at message or reading
    level), sometimes with its readings multiplied past the limit."""
    msg = draw(valid_messages())
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        readings = msg.get("readings")
        dicts = [r for r in readings if isinstance(r, dict)] if isinstance(readings, list) else []
        target: dict[str, Any] = msg
        keys = MESSAGE_KEYS
        at_reading = draw(st.booleans())
        if dicts and at_reading:
            target, keys = draw(st.sampled_from(dicts)), READING_KEYS
        key = draw(st.sampled_from(keys) | st.text(max_size=8))
        op = draw(st.sampled_from(["delete", "replace", "replace", "multiply"]))
        if op == "delete":
            target.pop(key, None)
        elif op == "multiply" and isinstance(readings, list):
            msg["readings"] = readings * (MAX_READINGS_PER_MESSAGE // len(readings) + 1 if readings else 1)
        else:
            target[key] = draw(replacement())
    return render(msg)


@st.composite
def byte_damaged_messages(draw: st.DrawFn) -> bytes:
    """A valid message's bytes with a few bytes inserted, overwritten or cut (this is how invalid
    UTF-8 ends up inside strings, and how JSON gets truncated)."""
    data = bytearray(render(draw(valid_messages())))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        i = draw(st.integers(min_value=0, max_value=len(data)))
        op = draw(st.sampled_from(["insert", "overwrite", "delete", "truncate"]))
        if op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[i : i + len(chunk)] = chunk
        elif op == "delete":
            del data[i : i + draw(st.integers(min_value=1, max_value=16))]
        else:
            del data[i:]
    return bytes(data)


@st.composite
def deeply_nested(draw: st.DrawFn) -> bytes:
    """Nesting from harmless to far past the parser's limit, at the top or inside a message.

    Depths keep clear of the limit itself (about 1000 levels, counted together with the caller's
    own stack depth), where the outcome would depend on how deep the test's stack happens to be.
    """
    depth = draw(st.sampled_from([1, 2, 10, 50, 200, 3_000, 10_000, 100_000]))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    closed = draw(st.booleans())
    nest = opener * depth + (b"0" if opener != b"[" else b"") + (closer * depth if closed else b"")
    where = draw(st.sampled_from(["top", "readings", "value", "unknown_field"]))
    if where == "top":
        return nest
    msg = draw(valid_messages())
    if where == "readings":
        msg["readings"] = Raw(nest)
    elif where == "value":
        msg["readings"][0]["value"] = Raw(nest)
    else:
        msg["extension"] = Raw(nest)
    return render(msg)


any_payload = st.one_of(
    st.binary(max_size=2048),
    json_values.map(lambda v: json.dumps(v).encode()),
    valid_messages().map(render),
    mutated_messages(),
    byte_damaged_messages(),
    deeply_nested(),
    st.sampled_from(CORPUS).map(lambda c: c.payload),
)


# --------------------------------------------------------------------------------------------
# 1. The decoder: a contract-abiding message or a DecodeError, nothing else


def check_decode(payload: bytes) -> Telemetry | None:
    """Decode as the cloud does; any exception but DecodeError fails the test."""
    try:
        msg = decode_telemetry(payload, now=NOW, max_future_s=MAX_FUTURE_S, max_past_s=MAX_PAST_S)
    except DecodeError as exc:
        assert isinstance(exc.reason, RejectReason), exc.reason
        assert exc.detail, "a rejection says why"
        return None
    assert msg.v == 1
    assert 1 <= len(msg.readings) <= MAX_READINGS_PER_MESSAGE
    assert msg.sent.utcoffset() is not None, "sent must carry a time zone"
    assert msg.sent.timestamp() <= NOW + MAX_FUTURE_S, "a clock far ahead would keep the gateway alive"
    assert 0 <= msg.seq <= 2**63 - 1
    for r in msg.readings:
        assert r.ts.utcoffset() is not None, f"naive sample time {r.ts!r}"
        assert NOW - MAX_PAST_S <= r.ts.timestamp() <= NOW + MAX_FUTURE_S, r.ts
        if r.q is Quality.OK:
            assert r.value is not None and math.isfinite(r.value), r
        else:
            assert r.value is None, r
    return msg


@CI
@given(st.binary(max_size=4096))
def test_decoder_on_arbitrary_bytes(payload: bytes) -> None:
    check_decode(payload)


@CI
@given(json_values)
def test_decoder_on_arbitrary_json(value: Any) -> None:
    check_decode(json.dumps(value).encode())


@CI
@given(valid_messages())
def test_valid_messages_are_accepted_and_survive_a_round_trip(msg: dict[str, Any]) -> None:
    """The generator's baseline really is valid (else the mutation tests would test nothing)."""
    decoded = check_decode(render(msg))
    assert decoded is not None
    assert check_decode(encode(decoded)) == decoded


@CI
@given(mutated_messages())
@example(hostile.dumps(hostile.message(NOW, v=[])))  # an unhashable version
@example(hostile.dumps(hostile.message(NOW, v={"major": 1})))
def test_decoder_on_mutated_messages(payload: bytes) -> None:
    check_decode(payload)


@CI
@given(byte_damaged_messages())
@example(hostile.dumps(hostile.message(NOW)).replace(b'"hostile-city"', b'"\x80hostile-city"', 1))
def test_decoder_on_byte_damaged_messages(payload: bytes) -> None:
    check_decode(payload)


@CI
@given(deeply_nested())
@example(
    hostile.dumps(hostile.message(NOW)).replace(
        b'"readings": ', b'"x": ' + b"[" * 3000 + b"]" * 3000 + b', "readings": '
    )
)
def test_decoder_on_deep_nesting(payload: bytes) -> None:
    check_decode(payload)


# --------------------------------------------------------------------------------------------
# 2. The ingestor: never raises, every message and reading accounted exactly once


def quarantined(path: Path) -> list[dict[str, Any]]:
    """The quarantine file's entries.  Split on "\\n" only: JSON leaves U+0085 and U+2028 in
    strings unescaped, and str.splitlines() would cut an entry there."""
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").split("\n") if x]


@dataclass(frozen=True)
class Counts:
    messages: int
    messages_rejected: int
    readings_accepted: int
    readings_rejected: int
    by_reason: Counter[str]
    by_gateway: Counter[str]  # all gateways' counters summed, per reason
    quarantined: int

    @staticmethod
    def of(ing: Ingestor) -> Counts:
        by_gateway: Counter[str] = Counter()
        for counter in ing.by_gateway.values():
            by_gateway.update(counter)
        return Counts(
            ing.messages,
            ing.messages_rejected,
            ing.readings_accepted,
            ing.readings_rejected,
            Counter(ing.by_reason),
            by_gateway,
            ing.quarantine.entries,
        )


def process_and_check(ing: Ingestor, registry: Registry, topic: str, payload: bytes) -> bool:
    """Process one message and check its accounting; True if it was accepted as a message."""
    before = Counts.of(ing)
    result = ing.process(topic, payload, NOW)  # must not raise, whatever the input
    after = Counts.of(ing)
    new_reasons = after.by_reason - before.by_reason
    rejections = sum(new_reasons.values())
    assert after.messages == before.messages + 1
    assert set(new_reasons) <= REASONS - {RejectReason.RATE_LIMITED.value}, new_reasons
    assert after.by_gateway - before.by_gateway == new_reasons, "per-gateway counts follow per-reason"
    assert after.quarantined - before.quarantined == rejections, "each rejection is quarantined"
    if result is None:
        assert after.messages_rejected == before.messages_rejected + 1
        assert rejections == 1, new_reasons
        assert (after.readings_accepted, after.readings_rejected) == (
            before.readings_accepted,
            before.readings_rejected,
        )
        return False
    decoded = decode_telemetry(payload, now=NOW)
    where = topics.parse_gateway_topic(topic)
    assert where is not None and (decoded.tenant, decoded.gateway) == (where.tenant, where.gateway)
    rejected_readings = after.readings_rejected - before.readings_rejected
    assert after.messages_rejected == before.messages_rejected
    assert after.readings_accepted - before.readings_accepted == len(result.accepted)
    assert len(result.accepted) + rejected_readings == len(decoded.readings)
    assert rejections == rejected_readings, new_reasons
    for a in result.accepted:  # only what the registry allows this gateway gets through
        r = a.reading
        assert registry.sensor_for(decoded.tenant, decoded.gateway, r.sensor) == a.sensor
        assert a.sensor.channels[r.kind] == a.channel and r.unit == a.channel.unit
        assert not a.channel.out_of_range(r)
        assert r.value is None or math.isfinite(r.value)
    return True


@st.composite
def addressed_messages(draw: st.DrawFn) -> tuple[str, bytes]:
    """(topic, payload): mostly on a fixed gateway topic, sometimes on a garbage topic; valid
    messages mostly on their own gateway's topic and with registered or made-up sensors."""
    sensors = st.sampled_from([HOSTILE_SENSOR, hostile.GOOD_SENSOR]) | identifiers
    gateway = draw(st.sampled_from([HOSTILE_GATEWAY, hostile.GOOD_GATEWAY, "gw-ghost"]))
    own_topic = topics.telemetry(TENANT, gateway)
    payload = draw(any_payload | valid_messages(gateway, sensors).map(render))
    topic = draw(
        st.sampled_from([own_topic, *FIXED_TOPICS])
        | st.text(max_size=60)
        | st.sampled_from(["bosai/v1/x y/gw/telemetry", f"bosai/v1/{TENANT}/{gateway}/status", "#"])
    )
    return topic, payload


@CI
@given(st.lists(addressed_messages(), min_size=1, max_size=20))
def test_ingestor_never_raises_and_accounts_for_everything(
    registry: Registry, batch: list[tuple[str, bytes]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        quarantine = Quarantine(Path(tmp) / "quarantine.jsonl")
        ing = Ingestor(registry, LIMITS, quarantine)
        accepted_messages = sum(process_and_check(ing, registry, t, p) for t, p in batch)
        quarantine.close()
        total = Counts.of(ing)
        assert total.messages == len(batch) == accepted_messages + total.messages_rejected
        assert sum(total.by_reason.values()) == total.messages_rejected + total.readings_rejected
        assert ing.security_events <= total.by_reason[RejectReason.UNKNOWN_SENSOR.value]
        entries = quarantined(Path(tmp) / "quarantine.jsonl")
        assert Counter(e["reason"] for e in entries) == total.by_reason


def test_ingestor_accounts_for_the_whole_corpus_in_one_stream(registry: Registry, tmp_path: Path) -> None:
    """The accounting property on every corpus entry, one after the other through one Ingestor
    (a plain test rather than an `@example`, so that a failure names the entry)."""
    quarantine = Quarantine(tmp_path / "quarantine.jsonl")
    ing = Ingestor(registry, LIMITS, quarantine)
    for case in CORPUS:
        try:
            process_and_check(ing, registry, case.topic, case.payload)
        except Exception as exc:
            raise AssertionError(f"corpus entry {case.name!r}: {type(exc).__name__}: {exc}") from exc
    quarantine.close()
    total = Counts.of(ing)
    assert Counter(e["reason"] for e in quarantined(tmp_path / "quarantine.jsonl")) == total.by_reason
    assert total.by_reason == Counter(c.reason.value for c in CORPUS)


# --------------------------------------------------------------------------------------------
# 3. The corpus: each entry rejected with its reason, and quarantined with it


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_corpus_entry_is_rejected_with_its_reason(
    registry: Registry, tmp_path: Path, case: HostileCase
) -> None:
    qpath = tmp_path / "quarantine.jsonl"
    quarantine = Quarantine(qpath)
    ing = Ingestor(registry, LIMITS, quarantine)
    result = ing.process(case.topic, case.payload, NOW)
    quarantine.close()
    reason = case.reason.value
    assert dict(ing.by_reason) == {reason: 1}
    assert ing.by_gateway == {case.gateway_key: {reason: 1}}
    if case.per_reading:
        assert result is not None and result.accepted == []
        assert (ing.messages_rejected, ing.readings_rejected) == (0, 1)
    else:
        assert result is None and ing.messages_rejected == 1
    [entry] = quarantined(qpath)
    assert (entry["reason"], entry["topic"]) == (reason, case.topic) and entry["detail"]


def test_corpus_covers_every_reason_the_ingestor_gives() -> None:
    reasons = {c.reason for c in CORPUS}
    # Given by the consumer, never by the ingestor: rate_limited (its flood guard) and
    # unknown_gateway (status and health topics; test_cloud_consumer covers it).
    assert reasons == set(RejectReason) - {RejectReason.RATE_LIMITED, RejectReason.UNKNOWN_GATEWAY}


# --------------------------------------------------------------------------------------------
# 4. Memory: a long hostile stream from a fixed set of gateways keeps no state per message

WARM_UP = 2_000
MESSAGES = 20_000
MAX_GROWTH_BYTES = 5 * 1024 * 1024


def hostile_stream(rng: random.Random, count: int) -> Iterator[tuple[str, bytes]]:
    """Random hostile messages on FIXED_TOPICS: corpus entries, random bytes, byte-damaged
    messages, and well-formed messages probing made-up sensor ids (up to 20 per message) or
    sending out-of-range values.  Sequence numbers climb per topic with small gaps, as a real
    gateway's do, so the sequence tracker's (bounded) gap list is not what is measured."""
    seq = dict.fromkeys(FIXED_TOPICS, 0)
    for _ in range(count):
        topic = rng.choice(FIXED_TOPICS)
        seq[topic] += rng.choice((1, 1, 1, 2))
        where = topics.parse_gateway_topic(topic)
        assert where is not None
        kind = rng.random()
        if kind < 0.3:
            yield topic, rng.choice(CORPUS).payload
        elif kind < 0.45:
            yield topic, rng.randbytes(rng.randrange(0, 300))
        else:
            n = rng.randrange(1, 21)
            readings = [
                hostile.reading(
                    NOW,
                    sensor=f"probe-{rng.getrandbits(64):016x}" if rng.random() < 0.8 else HOSTILE_SENSOR,
                    value=rng.uniform(-1e6, 1e6),
                )
                for _ in range(n)
            ]
            msg = hostile.message(NOW, readings, tenant=where.tenant, gateway=where.gateway, seq=seq[topic])
            data = bytearray(hostile.dumps(msg))
            if kind < 0.6:  # damage a byte
                data[rng.randrange(len(data))] = rng.randrange(256)
            yield topic, bytes(data)


@contextmanager
def quiet_logs() -> Iterator[None]:
    """The ingestor logs (once per sensor id) warnings that pytest's log capture keeps in memory;
    silenced here so that only the ingestor's own memory is measured."""
    logger = logging.getLogger("cloud")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def test_memory_is_bounded_under_a_hostile_stream(registry: Registry, tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path / "quarantine.jsonl")
    ing = Ingestor(registry, LIMITS, quarantine)
    rng = random.Random(6)
    stream = list(hostile_stream(rng, WARM_UP + MESSAGES))  # built before measuring

    def run(batch: list[tuple[str, bytes]]) -> None:
        for topic, payload in batch:
            # Raising is test_ingestor_never_raises_...'s finding; this test measures memory.
            with suppress(Exception):
                ing.process(topic, payload, NOW)

    with quiet_logs():
        tracemalloc.start()
        try:
            run(stream[:WARM_UP])
            gc.collect()
            warm, _ = tracemalloc.get_traced_memory()
            run(stream[WARM_UP:])
            gc.collect()
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    quarantine.close()
    assert ing.messages == WARM_UP + MESSAGES
    growth = after - warm
    print(f"\nhostile stream: {MESSAGES} messages after {WARM_UP} warm-up; traced memory grew {growth} bytes")
    assert growth < MAX_GROWTH_BYTES, (
        f"memory grew by {growth / 1e6:.1f} MB over {MESSAGES} hostile messages "
        f"({growth / MESSAGES:.0f} bytes per message)"
    )
