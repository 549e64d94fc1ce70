"""Ingestion: one MQTT telemetry message in, accepted readings out, every rejection accounted.

Checks, in order (message-level failures reject the whole message):
1. the topic is `bosai/v1/{tenant}/{gateway}/telemetry`           else topic_mismatch
2. the payload decodes and validates (wire.telemetry)              else its RejectReason
3. the payload's tenant and gateway are the topic's                else topic_mismatch
   (the broker's ACL ties a gateway's credentials to its topic, so this stops a gateway
   from writing as another one)
Then per reading (a failure rejects that reading only, the rest are kept):
4. the sensor is registered to this tenant and gateway             else unknown_sensor (security event)
5. the kind is one of the sensor's channels                        else unknown_sensor
6. the unit is the channel's unit                                  else schema
7. an ok value lies inside the channel's range                     else out_of_range

Every rejection is counted by reason and per gateway and written to the quarantine file.
Sequence numbers are accounted per gateway (cloud.sequence); duplicates are still passed on,
because their points overwrite themselves (same sample time) and detection skips old samples.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from cloud.config import ValidationConfig
from cloud.quarantine import Quarantine
from cloud.registry import Channel, Registry, Sensor, Site
from cloud.sequence import SequenceTracker
from wire import topics
from wire.telemetry import DecodeError, Reading, RejectReason, decode_telemetry, encode

log = logging.getLogger(__name__)

INTERNAL = "internal"  # a bug in the consumer, counted like a rejection reason
UNREGISTERED = "unregistered"  # per-gateway counters of unregistered gateways beyond the cap
MAX_GATEWAY_KEYS = 10_000
MAX_WARNED = 1000


@dataclass(frozen=True, slots=True)
class Accepted:
    reading: Reading
    sensor: Sensor
    site: Site
    channel: Channel


@dataclass(frozen=True, slots=True)
class IngestResult:
    tenant: str
    gateway: str
    seq: int
    seq_status: str  # "new" | "duplicate" | "reordered" | "reset" (cloud.sequence) | "unregistered"
    accepted: list[Accepted]
    sent: float = 0.0  # when the gateway sent the message (its clock): it was alive then
    # Readings of registered sensors rejected as out of range: not stored, but detection hears of
    # them (a sensor sending impossible values needs a technician).
    out_of_range: list[Accepted] = field(default_factory=list)


class Ingestor:
    def __init__(
        self,
        registry: Registry,
        validation: ValidationConfig,
        quarantine: Quarantine,
        *,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        """`on_reject("tenant/gateway")` hears of every message rejected or with rejected
        readings, but not of `rate_limited` ones (it is the flood guard's input)."""
        self.registry = registry
        self.on_reject = on_reject
        self.validation = validation
        self.quarantine = quarantine
        self.sequences = SequenceTracker()
        self.messages = 0
        self.messages_rejected = 0
        self.readings_accepted = 0
        self.readings_rejected = 0
        self.security_events = 0
        self.by_reason: Counter[str] = Counter()
        self.by_gateway: dict[str, Counter[str]] = {}
        self._warned_sensors: set[tuple[str, str, str]] = set()

    def process(self, topic: str, payload: bytes, received: float) -> IngestResult | None:
        """Validate one message; None if it is rejected as a whole.  `received` is clock time."""
        self.messages += 1
        where = topics.parse_gateway_topic(topic)
        if where is None or where.channel != "telemetry":
            detail = "not a bosai/v1/{tenant}/{gateway}/telemetry topic"
            self.reject_message(topic, "?", RejectReason.TOPIC_MISMATCH, detail, received, payload)
            return None
        gw_key = f"{where.tenant}/{where.gateway}"
        try:
            msg = decode_telemetry(
                payload,
                now=received,
                max_future_s=self.validation.max_future_s,
                max_past_s=self.validation.max_past_s,
            )
        except DecodeError as exc:
            self.reject_message(topic, gw_key, exc.reason, exc.detail, received, payload)
            return None
        if msg.tenant != where.tenant or msg.gateway != where.gateway:
            detail = f"payload says {msg.tenant}/{msg.gateway}, topic says {gw_key}"
            self.reject_message(topic, gw_key, RejectReason.TOPIC_MISMATCH, detail, received, payload)
            return None

        registered = (msg.tenant, msg.gateway) in self.registry.gateways
        # Accounting only for registered gateways: a stranger's topics must not grow the table
        # (all its readings are rejected below as unknown sensors anyway).
        seq_status = (
            self.sequences.observe(msg.tenant, msg.gateway, msg.seq, msg.stream)
            if registered
            else "unregistered"
        )
        accepted: list[Accepted] = []
        out_of_range: list[Accepted] = []
        for i, r in enumerate(msg.readings):
            problem = self._check_reading(msg.tenant, msg.gateway, r)
            if isinstance(problem, Accepted):
                accepted.append(problem)
                continue
            reason, detail = problem
            if reason is RejectReason.OUT_OF_RANGE:
                sensor = self.registry.sensor_for(msg.tenant, msg.gateway, r.sensor)
                assert sensor is not None
                out_of_range.append(
                    Accepted(r, sensor, self.registry.site_of(sensor), sensor.channels[r.kind])
                )
            self.readings_rejected += 1
            self._count(gw_key, reason)
            self.quarantine.add(
                topic=topic,
                reason=str(reason),
                detail=f"readings[{i}]: {detail}",
                received=received,
                payload=encode(r),
                seq=msg.seq,
            )
        self.readings_accepted += len(accepted)
        if self.on_reject is not None and len(accepted) < len(msg.readings):
            self.on_reject(gw_key)  # once per message, however many of its readings were bad
        return IngestResult(
            msg.tenant, msg.gateway, msg.seq, seq_status, accepted, msg.sent.timestamp(), out_of_range
        )

    def reject_message(
        self,
        topic: str,
        gw_key: str,
        reason: str,
        detail: str,
        received: float,
        payload: bytes,
        *,
        quarantine: bool = True,
    ) -> None:
        """Count (and quarantine) a whole message; also used by the consumer for internal errors
        and for messages rejected unread (`rate_limited`, then `messages` counts them too)."""
        if reason == RejectReason.RATE_LIMITED:
            self.messages += 1
        self.messages_rejected += 1
        self._count(gw_key, reason)
        if self.on_reject is not None and reason != RejectReason.RATE_LIMITED:
            self.on_reject(gw_key)
        if quarantine:
            self.quarantine.add(
                topic=topic, reason=str(reason), detail=detail, received=received, payload=payload
            )
        log.debug("rejected message on %s: %s: %s", topic, reason, detail)

    def _check_reading(self, tenant: str, gateway: str, r: Reading) -> Accepted | tuple[str, str]:
        sensor = self.registry.sensor_for(tenant, gateway, r.sensor)
        if sensor is None:
            self.security_events += 1
            key = (tenant, gateway, r.sensor)
            # Once per sensor, and for at most MAX_WARNED sensors: a probe with made-up ids must
            # neither flood the log nor grow memory (the quarantine file has every one).
            if key not in self._warned_sensors and len(self._warned_sensors) < MAX_WARNED:
                self._warned_sensors.add(key)
                if len(self._warned_sensors) == MAX_WARNED:
                    log.warning(
                        "security: %d unknown sensors seen; no more warnings about new ones", MAX_WARNED
                    )
                log.warning(
                    "security: gateway %s/%s sent sensor %r, which is not registered to it",
                    tenant,
                    gateway,
                    r.sensor,
                )
            return RejectReason.UNKNOWN_SENSOR, f"sensor {r.sensor!r} is not registered to {tenant}/{gateway}"
        channel = sensor.channels.get(r.kind)
        if channel is None:
            return RejectReason.UNKNOWN_SENSOR, f"sensor {r.sensor!r} has no channel {r.kind!r}"
        if r.unit != channel.unit:
            return (
                RejectReason.SCHEMA,
                f"{r.sensor}.{r.kind}: unit {r.unit!r}, registry says {channel.unit!r}",
            )
        if channel.out_of_range(r):
            assert channel.range is not None
            lo, hi = channel.range
            return RejectReason.OUT_OF_RANGE, f"{r.sensor}.{r.kind}: {r.value} outside [{lo}, {hi}]"
        return Accepted(r, sensor, self.registry.site_of(sensor), channel)

    def _count(self, gw_key: str, reason: str) -> None:
        self.by_reason[str(reason)] += 1
        key = gw_key
        if key not in self.by_gateway and len(self.by_gateway) >= MAX_GATEWAY_KEYS:
            # Registered gateways always get their own counters; beyond the cap, made-up topics
            # share one, so they cannot grow the table (the quarantine file keeps their names).
            tenant, _, gateway = gw_key.partition("/")
            if (tenant, gateway) not in self.registry.gateways:
                key = UNREGISTERED
        self.by_gateway.setdefault(key, Counter())[str(reason)] += 1
