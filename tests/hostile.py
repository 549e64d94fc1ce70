"""A hostile-input corpus for the cloud consumer, as data, with the reason each entry must get.

Every entry is a payload that a broken or malicious gateway could publish on its own telemetry
topic (the broker's ACL stops it from using another gateway's topic: tests/integration/
test_spoofing.py).  All entries are built around one registry (`REGISTRY_YAML`: one tenant, a
good and a hostile gateway with one river gauge each) and one arrival time `now`, because the
time-window checks and the registry checks depend on both.

Each `HostileCase` says, next to the payload, which `RejectReason` the consumer must count it
under, and whether the whole message is rejected or only its (single) reading (`per_reading`:
the message itself passes and its bad reading is counted and quarantined alone).  Where the
reason is not the obvious one, a comment says why (e.g. a NaN literal is not JSON, so it is
`malformed` and not `non_finite`).

Used by tests/unit/test_decoder_fuzz.py (each entry through the Ingestor, and the corpus as seed
material for the property tests) and tests/integration/test_hostile_payloads.py (the whole corpus
through a real broker).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

from wire import topics
from wire.telemetry import MAX_PAYLOAD_BYTES, MAX_READINGS_PER_MESSAGE, RejectReason

TENANT = "hostile-city"
GOOD_GATEWAY = "gw-good"
HOSTILE_GATEWAY = "gw-bad"
GOOD_SENSOR = "good-level"  # registered to GOOD_GATEWAY
HOSTILE_SENSOR = "bad-level"  # registered to HOSTILE_GATEWAY: its own, legitimate sensor
KIND = "river_level"
UNIT = "m"
RANGE = (-2.0, 30.0)

REGISTRY_YAML = f"""\
tenants:
  - {{id: {TENANT}, name: 試験市}}
sites:
  - {{id: river-1, tenant: {TENANT}, name: 試験川 1号, type: river}}
gateways:
  - {{id: {GOOD_GATEWAY}, tenant: {TENANT}, name: well-behaved gateway}}
  - {{id: {HOSTILE_GATEWAY}, tenant: {TENANT}, name: hostile gateway}}
sensors:
  - id: {GOOD_SENSOR}
    tenant: {TENANT}
    gateway: {GOOD_GATEWAY}
    site: river-1
    channels:
      {KIND}: {{unit: {UNIT}, range: [{RANGE[0]}, {RANGE[1]}]}}
  - id: {HOSTILE_SENSOR}
    tenant: {TENANT}
    gateway: {HOSTILE_GATEWAY}
    site: river-1
    channels:
      {KIND}: {{unit: {UNIT}, range: [{RANGE[0]}, {RANGE[1]}]}}
"""

# A number literal that json.dumps cannot write (1e400, NaN ...) is put in as this marker string
# and swapped for the raw bytes afterwards.
_RAW = "\x00raw\x00"


class HostileCase(NamedTuple):
    name: str
    topic_suffix: str  # the topic after "bosai/v1/", e.g. "hostile-city/gw-bad/telemetry"
    payload: bytes
    reason: RejectReason
    per_reading: bool = False  # only its one reading is rejected; the message itself passes

    @property
    def topic(self) -> str:
        return f"{topics.PREFIX}/{self.topic_suffix}"

    @property
    def gateway_key(self) -> str:
        """The "tenant/gateway" of the topic: the key the consumer counts the rejection under."""
        tenant, gateway, _ = self.topic_suffix.split("/")
        return f"{tenant}/{gateway}"


def write_registry(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "registry.yaml"
    path.write_text(REGISTRY_YAML, encoding="utf-8")
    return path


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat()


def reading(now: float, **over: Any) -> dict[str, Any]:
    """A valid reading of the hostile gateway's own sensor, a minute before `now`."""
    r: dict[str, Any] = {
        "sensor": HOSTILE_SENSOR,
        "kind": KIND,
        "ts": iso(now - 60),
        "value": 1.0,
        "unit": UNIT,
        "q": "ok",
    }
    r.update(over)
    return r


def message(now: float, readings: list[dict[str, Any]] | None = None, **over: Any) -> dict[str, Any]:
    """A valid telemetry message of the hostile gateway (override any field)."""
    m: dict[str, Any] = {
        "v": 1,
        "tenant": TENANT,
        "gateway": HOSTILE_GATEWAY,
        "seq": 1,
        "sent": iso(now),
        "readings": readings if readings is not None else [reading(now)],
    }
    m.update(over)
    return m


def dumps(obj: Any, raw: bytes | None = None) -> bytes:
    """JSON as a gateway would send it (UTF-8, not ASCII-escaped); `raw` replaces the `_RAW`
    marker string with literal bytes that json.dumps cannot produce."""
    data = json.dumps(obj, ensure_ascii=False).encode()
    if raw is not None:
        marker = json.dumps(_RAW).encode()
        assert marker in data, "the raw marker is missing"
        data = data.replace(marker, raw)
    return data


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


def corpus(now: float) -> list[HostileCase]:
    """The hostile corpus for arrival time `now` (every entry on the hostile gateway's topic)."""
    R = RejectReason
    topic = f"{TENANT}/{HOSTILE_GATEWAY}/telemetry"
    valid = dumps(message(now))
    # (name, payload, reason) or (name, payload, reason, per_reading)
    cases: list[tuple[Any, ...]] = []

    def msg(**over: Any) -> dict[str, Any]:
        return message(now, **over)

    def one(**over: Any) -> dict[str, Any]:
        """A message whose single reading has these fields changed."""
        return message(now, [reading(now, **over)])

    def raw_value(literal: bytes) -> bytes:
        return dumps(one(value=_RAW), literal)

    # --- not JSON at all ---
    cases += [
        ("not_utf8", b"\xff\xfe\x00\x80 binary garbage \xc0\xaf", R.MALFORMED),
        # Invalid UTF-8 inside a JSON string of a known field.  msgspec raises UnicodeDecodeError
        # (not a msgspec.DecodeError) for it, which the decoder must map like any bad input.
        ("not_utf8_inside_string", valid.replace(HOSTILE_SENSOR.encode(), b"bad-\xc3\x28level"), R.MALFORMED),
        ("invalid_json", b'{"v": 1, tenant: hostile-city, readings: [}', R.MALFORMED),
        ("truncated_json", valid[: len(valid) // 2], R.MALFORMED),
        ("truncated_after_last_brace_cut", valid[:-1], R.MALFORMED),
        ("empty_payload", b"", R.MALFORMED),
        ("utf8_bom_prefix", b"\xef\xbb\xbf" + valid, R.MALFORMED),
        ("trailing_garbage", valid + b" {}", R.MALFORMED),
        ("nul_byte", valid.replace(b'"v": 1,', b'"v": 1,\x00'), R.MALFORMED),
        # JSON has no NaN/Infinity; Python's json would accept them, msgspec does not: not JSON.
        ("nan_literal", raw_value(b"NaN"), R.MALFORMED),
        ("infinity_literal", raw_value(b"Infinity"), R.MALFORMED),
        ("negative_infinity_literal", raw_value(b"-Infinity"), R.MALFORMED),
    ]
    # --- nesting: 100k brackets ---
    deep = 100_000
    cases += [
        # Not an object: rejected at the first byte, like any payload without a version.
        ("deep_nesting_top_level", b"[" * deep + b"]" * deep, R.UNKNOWN_VERSION),
        ("deep_nesting_top_level_unclosed", b"[" * deep, R.UNKNOWN_VERSION),
        # Inside a message: msgspec gives up with RecursionError (about 1000 levels), which the
        # decoder must turn into a rejection: too deep to parse, i.e. malformed.
        ("deep_nesting_in_readings", dumps(msg(readings=_RAW), b"[" * deep + b"]" * deep), R.MALFORMED),
        (
            "deep_nesting_in_unknown_field",
            dumps({**msg(), "x": _RAW}, b"[" * deep + b"]" * deep),
            R.MALFORMED,
        ),
        (
            "deep_nesting_objects_in_unknown_field",
            dumps({**msg(), "x": _RAW}, b'{"a":' * 30_000 + b"1" + b"}" * 30_000),
            R.MALFORMED,
        ),
    ]
    # --- numbers ---
    cases += [
        ("huge_number_1e400", raw_value(b"1e400"), R.NON_FINITE),
        ("huge_negative_number", raw_value(b"-1e400"), R.NON_FINITE),
        ("huge_integer_literal", raw_value(b"1" + b"0" * 400), R.NON_FINITE),
        ("nan_string", dumps(one(value="NaN")), R.SCHEMA),  # a string is not a float
        ("infinity_string", dumps(one(value="Infinity")), R.SCHEMA),
        ("value_bool", dumps(one(value=True)), R.SCHEMA),
        ("value_object", dumps(one(value={"$gt": 0})), R.SCHEMA),
    ]
    # --- schema version ---
    cases += [
        ("version_2", dumps(msg(v=2)), R.UNKNOWN_VERSION),
        ("version_string_1", dumps(msg(v="1")), R.UNKNOWN_VERSION),
        ("version_missing", dumps(_without(msg(), "v")), R.UNKNOWN_VERSION),
        ("version_null", dumps(msg(v=None)), R.UNKNOWN_VERSION),
        ("version_array", dumps(msg(v=[1])), R.UNKNOWN_VERSION),
        ("version_object", dumps(msg(v={"major": 1})), R.UNKNOWN_VERSION),
        # 1.0 == 1, so the version is known, but the schema wants an integer.
        ("version_float", dumps(msg(v=1.0)), R.SCHEMA),
        ("top_level_null", b"null", R.UNKNOWN_VERSION),
        ("top_level_number", b"1", R.UNKNOWN_VERSION),
        ("top_level_array", dumps([msg()]), R.UNKNOWN_VERSION),
    ]
    # --- size and shape ---
    cases += [
        ("oversize_payload", b" " * MAX_PAYLOAD_BYTES + valid, R.OVERSIZE),
        (
            "too_many_readings",
            dumps(msg(readings=[reading(now)] * (MAX_READINGS_PER_MESSAGE + 1))),
            R.SCHEMA,
        ),
        ("empty_readings", dumps(msg(readings=[])), R.SCHEMA),
        ("readings_not_a_list", dumps(msg(readings=reading(now))), R.SCHEMA),
        ("missing_readings", dumps(_without(msg(), "readings")), R.SCHEMA),
    ]
    # --- timestamps ---
    tokyo = timezone(timedelta(hours=9))
    cases += [
        ("naive_reading_ts", dumps(one(ts="2024-01-01T00:00:00")), R.NAIVE_TIMESTAMP),
        ("naive_sent", dumps(msg(sent=iso(now)[:19])), R.NAIVE_TIMESTAMP),
        ("ts_one_day_ahead", dumps(one(ts=iso(now + 86400))), R.FUTURE_TIMESTAMP),
        ("ts_far_future", dumps(one(ts=iso(now + 50 * 365 * 86400))), R.FUTURE_TIMESTAMP),
        ("ts_year_9999", dumps(one(ts="9999-12-31T23:59:59+00:00")), R.FUTURE_TIMESTAMP),
        ("ts_year_9999_west_of_utc", dumps(one(ts="9999-12-31T23:59:59-23:59")), R.FUTURE_TIMESTAMP),
        ("ts_one_year_ago", dumps(one(ts=iso(now - 365 * 86400))), R.PAST_TIMESTAMP),
        # A gateway clock far ahead would otherwise keep the gateway "alive" for ever.
        ("sent_year_9999", dumps(msg(sent="9999-12-31T23:59:59+00:00")), R.FUTURE_TIMESTAMP),
        ("ts_year_1_east_of_utc", dumps(one(ts="0001-01-01T00:00:00+23:59")), R.PAST_TIMESTAMP),
        ("ts_epoch_zero", dumps(one(ts="1970-01-01T00:00:00Z")), R.PAST_TIMESTAMP),
        ("ts_negative_epoch", dumps(one(ts="1969-12-31T23:59:59Z")), R.PAST_TIMESTAMP),
        # Epoch numbers are not the wire format: times travel as RFC 3339 strings.
        ("ts_negative_epoch_number", dumps(one(ts=-1)), R.SCHEMA),
        ("ts_huge_epoch_number", dumps(one(ts=1e300)), R.SCHEMA),
        ("ts_year_0", dumps(one(ts="0000-01-01T00:00:00Z")), R.SCHEMA),
        ("ts_leap_second", dumps(one(ts="2016-12-31T23:59:60Z")), R.SCHEMA),
        ("ts_garbage", dumps(one(ts="yesterday")), R.SCHEMA),
        (
            "ts_future_in_local_offset",
            dumps(one(ts=datetime.fromtimestamp(now + 7200, tokyo).isoformat())),
            R.FUTURE_TIMESTAMP,
        ),
    ]
    # --- identifiers (they become topic levels, tags and file names) ---
    cases += [
        ("sensor_path_traversal", dumps(one(sensor="../../etc/passwd")), R.SCHEMA),
        ("gateway_path_traversal", dumps(msg(gateway="../gw-good")), R.SCHEMA),
        ("tenant_with_space", dumps(msg(tenant="hostile city")), R.SCHEMA),
        ("sensor_with_space", dumps(one(sensor="bad level")), R.SCHEMA),
        ("sensor_unicode", dumps(one(sensor="水位計-01")), R.SCHEMA),
        ("sensor_10k_chars", dumps(one(sensor="s" * 10_000)), R.SCHEMA),
        ("sensor_mqtt_wildcard", dumps(one(sensor="bad-level/#")), R.SCHEMA),
        ("sensor_empty", dumps(one(sensor="")), R.SCHEMA),
        ("kind_injection", dumps(one(kind="river_level,tenant=other")), R.SCHEMA),
        ("stream_not_hex", dumps(msg(stream="../../x")), R.SCHEMA),
    ]
    # --- line-protocol injection through the unit (a tag value) ---
    cases += [
        ("unit_comma", dumps(one(unit="m,tenant=other-city")), R.SCHEMA),
        ("unit_space", dumps(one(unit="m value=999")), R.SCHEMA),
        ("unit_quote", dumps(one(unit='m"')), R.SCHEMA),
        ("unit_equals", dumps(one(unit="m=1")), R.SCHEMA),
        ("unit_backslash", dumps(one(unit="m\\")), R.SCHEMA),
        ("unit_newline", dumps(one(unit="m\nreadings value=1 0")), R.SCHEMA),
        ("unit_too_long", dumps(one(unit="m" * 17)), R.SCHEMA),
    ]
    # --- value and quality flag ---
    cases += [
        ("ok_flag_without_value", dumps(one(value=None)), R.VALUE_QUALITY_MISMATCH),
        ("ok_flag_value_key_missing", dumps(message(now, [_without(reading(now), "value")])), R.SCHEMA),
        ("value_with_bad_flag", dumps(one(q="timeout", value=1.0)), R.VALUE_QUALITY_MISMATCH),
        ("unknown_flag", dumps(one(q="probably-fine")), R.SCHEMA),
    ]
    # --- duplicate keys: msgspec keeps the last one (each occurrence is validated) ---
    cases += [
        ("duplicate_key_version", valid.replace(b'{"v": 1,', b'{"v": 1, "v": 2,'), R.UNKNOWN_VERSION),
        (
            "duplicate_key_gateway",
            valid.replace(b'"gateway": "gw-bad"', b'"gateway": "gw-bad", "gateway": "gw-good"'),
            R.TOPIC_MISMATCH,
        ),
    ]
    # --- sequence number ---
    cases += [
        ("seq_negative", dumps(msg(seq=-1)), R.SCHEMA),
        ("seq_2_pow_63", dumps(msg(seq=2**63)), R.SCHEMA),
        ("seq_2_pow_64", dumps(msg(seq=2**64)), R.SCHEMA),
        ("seq_float", dumps(msg(seq=1.5)), R.SCHEMA),
        ("seq_string", dumps(msg(seq="1")), R.SCHEMA),
        ("seq_1e400", dumps(msg(seq=_RAW), b"1e400"), R.NON_FINITE),  # too large for a float
    ]
    # --- identity: payload against topic and registry ---
    cases += [
        ("topic_tenant_differs", dumps(msg(tenant="other-city")), R.TOPIC_MISMATCH),
        ("topic_gateway_differs", dumps(msg(gateway=GOOD_GATEWAY)), R.TOPIC_MISMATCH),
        ("unknown_sensor", dumps(one(sensor="intruder-9")), R.UNKNOWN_SENSOR, True),
        ("sensor_of_another_gateway", dumps(one(sensor=GOOD_SENSOR)), R.UNKNOWN_SENSOR, True),
        ("unknown_kind_of_own_sensor", dumps(one(kind="snow_depth")), R.UNKNOWN_SENSOR, True),
        ("unit_not_the_registered_one", dumps(one(unit="cm")), R.SCHEMA, True),
        ("value_above_range", dumps(one(value=RANGE[1] + 1.0)), R.OUT_OF_RANGE, True),
        ("value_below_range", dumps(one(value=-1000.0)), R.OUT_OF_RANGE, True),
        ("value_max_float", dumps(one(value=1.7976931348623157e308)), R.OUT_OF_RANGE, True),
        ("value_2_pow_70", dumps(one(value=2**70)), R.OUT_OF_RANGE, True),
    ]

    out = [HostileCase(name, topic, payload, *rest) for name, payload, *rest in cases]
    names = [c.name for c in out]
    assert len(set(names)) == len(names), "corpus names must be unique"
    return out
