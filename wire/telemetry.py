"""Telemetry messages: a gateway's batch of readings, with a restart-proof sequence number.

One message per publish.  Decoding is done by msgspec against typed structs (fast, strict), and
every failure is mapped to a `RejectReason` so the cloud can count and quarantine it.
"""

from __future__ import annotations

import enum
import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from wire.ids import Ident

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = frozenset({SCHEMA_VERSION})

# Limits that both sides enforce.  The edge keeps its batches well below them.
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_READINGS_PER_MESSAGE = 1000

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
Kind = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Unit = Annotated[str, msgspec.Meta(max_length=16, pattern=r"^[^\s,=\"\\]*$")]
Stream = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{1,32}$")]


class Quality(enum.StrEnum):
    """Per-reading quality flag.  Only `ok` readings carry a value."""

    OK = "ok"
    TIMEOUT = "timeout"  # the device did not answer in time
    CRC = "crc"  # corrupted frame (bad CRC, garbled line)
    EXCEPTION = "exception"  # the device answered with a Modbus exception
    INVALID = "invalid"  # the device's own invalid marker (e.g. 65535) or bad quality number
    OUT_OF_RANGE = "out_of_range"  # decoded value outside the profile's physical range
    ERROR = "error"  # any other failure to read (port gone, connection refused)


class RejectReason(enum.StrEnum):
    OVERSIZE = "oversize"
    MALFORMED = "malformed"  # not JSON / not UTF-8
    SCHEMA = "schema"  # JSON, but not a valid v1 telemetry message
    UNKNOWN_VERSION = "unknown_version"
    TOPIC_MISMATCH = "topic_mismatch"  # tenant/gateway in payload differ from the topic
    NAIVE_TIMESTAMP = "naive_timestamp"
    NON_FINITE = "non_finite"  # NaN, Infinity, or a number too large for a float
    VALUE_QUALITY_MISMATCH = "value_quality_mismatch"  # ok without value, or a value with a bad flag
    FUTURE_TIMESTAMP = "future_timestamp"
    PAST_TIMESTAMP = "past_timestamp"
    UNKNOWN_SENSOR = "unknown_sensor"  # not registered to this gateway and tenant (security event)
    UNKNOWN_GATEWAY = "unknown_gateway"  # status or health of a gateway not in the registry
    OUT_OF_RANGE = "out_of_range"  # outside the registered physical range
    RATE_LIMITED = "rate_limited"  # not read: its gateway is flooding the cloud with bad messages


class Reading(msgspec.Struct, frozen=True):
    sensor: Ident
    kind: Kind
    ts: AwareDatetime  # sample time at the edge, never arrival time
    value: float | None
    unit: Unit
    q: Quality = Quality.OK


class Telemetry(msgspec.Struct, frozen=True):
    v: Literal[1]
    tenant: Ident
    gateway: Ident
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    sent: AwareDatetime
    readings: Annotated[list[Reading], msgspec.Meta(min_length=1, max_length=MAX_READINGS_PER_MESSAGE)]
    # Identifies the sequence counter (the gateway's outbox): a new value means the numbering
    # started again (a replaced card), not that older numbers arrive late.  Absent: unknown.
    stream: Stream | None = None


class _Envelope(msgspec.Struct):
    v: Any = None


class DecodeError(ValueError):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


_decoder = msgspec.json.Decoder(Telemetry)
_envelope_decoder = msgspec.json.Decoder(_Envelope)
_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


def make_reading(
    sensor: str, kind: str, ts: datetime, value: float | None, unit: str, q: Quality = Quality.OK
) -> Reading:
    """Build a reading that obeys the contract: a value only with `ok`, and only a finite one.

    A non-finite value is turned into `invalid` rather than published, because msgspec would
    encode NaN as null and the reading would silently lose its meaning.
    """
    if q is Quality.OK and (value is None or not math.isfinite(value)):
        return Reading(sensor, kind, ts, None, unit, Quality.INVALID)
    if q is not Quality.OK:
        value = None
    return Reading(sensor, kind, ts, value, unit, q)


def decode_telemetry(
    payload: bytes,
    *,
    now: float | None = None,
    max_future_s: float = 300.0,
    max_past_s: float = 90 * 86400.0,
) -> Telemetry:
    """Decode and validate one telemetry payload, or raise `DecodeError` with the reason.

    Checks that the type system cannot express are done here so that the edge (in tests) and the
    cloud apply the same rules: value/quality consistency and the sample-time window.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise DecodeError(RejectReason.OVERSIZE, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        msg = _decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise _classify_validation_error(payload, exc) from None
    except msgspec.DecodeError as exc:
        raise DecodeError(RejectReason.MALFORMED, str(exc)) from None
    except UnicodeDecodeError as exc:  # msgspec's error for bad UTF-8 inside a string (found by fuzzing)
        raise DecodeError(RejectReason.MALFORMED, f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    except RecursionError:  # arrays or objects nested thousands deep
        raise DecodeError(RejectReason.MALFORMED, "nested too deeply") from None

    now = time.time() if now is None else now
    latest = now + max_future_s
    earliest = now - max_past_s
    # `sent` says when the gateway was last alive; a clock far ahead would keep it "alive" for ever.
    if msg.sent.timestamp() > latest:
        raise DecodeError(RejectReason.FUTURE_TIMESTAMP, f"sent {msg.sent.isoformat()}")
    for i, r in enumerate(msg.readings):
        if r.q is Quality.OK:
            if r.value is None:
                raise DecodeError(RejectReason.VALUE_QUALITY_MISMATCH, f"readings[{i}]: ok without value")
            if not math.isfinite(r.value):
                raise DecodeError(RejectReason.NON_FINITE, f"readings[{i}].value")
        elif r.value is not None:
            raise DecodeError(RejectReason.VALUE_QUALITY_MISMATCH, f"readings[{i}]: value with q={r.q.value}")
        t = r.ts.timestamp()
        if t > latest:
            raise DecodeError(RejectReason.FUTURE_TIMESTAMP, f"readings[{i}].ts {r.ts.isoformat()}")
        if t < earliest:
            raise DecodeError(RejectReason.PAST_TIMESTAMP, f"readings[{i}].ts {r.ts.isoformat()}")
    return msg


def _classify_validation_error(payload: bytes, exc: msgspec.ValidationError) -> DecodeError:
    text = str(exc)
    try:
        version = _envelope_decoder.decode(payload).v
    except msgspec.DecodeError:
        version = None
    except (UnicodeDecodeError, RecursionError) as exc:  # msgspec's own, for bad UTF-8 / deep nesting
        return DecodeError(RejectReason.MALFORMED, f"{type(exc).__name__}: {exc}"[:300])
    # A number (1.0 is version 1 with a type error), not a bool (True == 1), and not a list or an
    # object (unhashable: found by fuzzing).
    if not (type(version) in (int, float) and version in SUPPORTED_VERSIONS):
        return DecodeError(RejectReason.UNKNOWN_VERSION, f"schema version {version!r} is not supported")
    if "with a timezone component" in text:
        return DecodeError(RejectReason.NAIVE_TIMESTAMP, text)
    if "Number out of range" in text:
        return DecodeError(RejectReason.NON_FINITE, text)
    return DecodeError(RejectReason.SCHEMA, text)


def utc_from_epoch(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)
