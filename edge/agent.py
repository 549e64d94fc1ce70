"""The gateway agent: poller -> report policy -> durable outbox -> MQTT publisher, plus health.

Each poll's readings go through the sensor's report policy (edge/report.py).  What it reports is
staged in the outbox at once (on disk before anything else happens), and sealed into telemetry
messages every `publish.batch_interval` seconds of clock time, sooner when `publish.max_batch`
readings wait, and immediately for urgent (fast-mode) readings, which also get messages of their
own that are sent before any backlog.  A message is durable with its sequence number before it
is published; the PUBACK deletes it.

If the outbox cannot be written (disk full, card failing) readings are held in memory, up to
`MAX_UNSTAGED`, and staged as soon as it works again; the problem is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import msgspec

from bosai import __version__
from edge.clocksync import clock_synchronized
from edge.config import LoadedGateway, SensorConfig, config_hash
from edge.outbox import Outbox, OutboxError
from edge.poller import COMM_FAILURES, Poller
from edge.publisher import Publisher
from edge.report import Reporter
from wire.clock import Clock, RealClock
from wire.status import Health, SensorHealth
from wire.telemetry import MAX_PAYLOAD_BYTES, Quality, Reading, Telemetry, encode, utc_from_epoch

log = logging.getLogger(__name__)

ACK_WAIT_ON_STOP = 5.0  # real seconds to wait for PUBACKs when stopping
_PAYLOAD_BUDGET = MAX_PAYLOAD_BYTES - 1024  # room for the envelope (tenant, gateway, seq, sent)
MAX_UNSTAGED = 100_000  # readings held in memory while the outbox cannot be written


class _RawTelemetry(msgspec.Struct, frozen=True):
    """Telemetry with readings that are already JSON (as staged): encodes to the same bytes."""

    v: int
    tenant: str
    gateway: str
    seq: int
    sent: datetime
    readings: list[msgspec.Raw]
    stream: str


@dataclass
class AgentStats:
    """Counters, updated live; read by the demo for progress and sent in health messages."""

    readings: int = 0  # readings taken
    readings_bad: int = 0  # of which with a quality flag other than ok
    readings_reported: int = 0  # readings the report policy sent (staged in the outbox)
    messages_queued: int = 0  # messages sealed into the outbox
    messages_acked: int = 0  # messages acknowledged by the broker (and deleted)
    outbox_depth: int = 0  # messages waiting in the outbox
    sensor_errors: dict[str, int] = field(default_factory=dict)  # sensor id -> failed reads


@dataclass
class _SensorState:
    polls: int = 0
    repeats: int = 0  # polls that returned the sample already seen (free-running ASCII devices)
    last_ts: datetime | None = None
    failing: bool = False
    quality: Quality | None = None
    last_ok: datetime | None = None


class Agent:
    def __init__(
        self,
        gateway: LoadedGateway,
        clock: Clock | None = None,
        *,
        outbox_path: Path | None = None,
        on_published: Callable[[Telemetry], None] | None = None,
    ) -> None:
        """`outbox_path` overrides the config.  `on_published` (set it before `run`) is called
        with every message the broker acknowledged."""
        self.gateway = gateway
        self.clock: Clock = clock if clock is not None else RealClock()
        cfg = gateway.config
        self.outbox_path = outbox_path if outbox_path is not None else gateway.resolve(cfg.outbox.path)
        self.on_published = on_published
        self.config_hash = config_hash(gateway)
        self.stats = AgentStats()
        self.reporters = {s.id: Reporter(s.id, s.interval, s.report) for s in cfg.sensors}
        self._sensors = {s.id: _SensorState() for s in cfg.sensors}
        self._unstaged: list[tuple[list[bytes], bool, float]] = []
        self._unstaged_count = 0
        self._outbox_failing = False
        self._outbox: Outbox | None = None
        self._publisher: Publisher | None = None
        self._started = time.monotonic()
        self._decoder = msgspec.json.Decoder(Telemetry)

    def interval_of(self, sensor: SensorConfig) -> float:
        """Current sampling interval: the report policy's (fast mode) or the configured one."""
        return self.reporters[sensor.id].interval

    async def read_once(self) -> list[Reading]:
        """Every sensor once, no MQTT, no outbox (for `--once` and on-site checks)."""
        poller = Poller(self.gateway, self.clock, lambda _s, _r: None, self.stats.sensor_errors)
        readings = await poller.read_once()
        self._count(readings)
        return readings

    async def run(self, stop: asyncio.Event) -> None:
        """Poll and publish until `stop` is set, then flush, wait for PUBACKs and disconnect.

        Raises ConfigError (credentials, TLS files) or OutboxError before anything connects.
        """
        cfg = self.gateway.config
        outbox = Outbox(self.outbox_path, cfg.outbox.max_messages, cfg.outbox.max_bytes)
        try:
            publisher = Publisher(
                cfg.mqtt,
                cfg.tenant,
                cfg.gateway,
                outbox,
                self.clock,
                config_path=self.gateway.path,
                config_hash=self.config_hash,
                replay_rate=cfg.publish.replay_rate,
                require_subscriber=cfg.publish.require_subscriber,
                on_acked=self._acked,
                keep_payloads=self.on_published is not None,
            )
        except BaseException:
            outbox.close()
            raise
        self._outbox, self._publisher = outbox, publisher
        self._started = time.monotonic()
        if clock_synchronized() is False:
            log.warning(
                "the system clock is not synchronized (NTP/GPS): sample times may be wrong until it "
                "is; the health message says when it is"
            )
        if outbox.staged:  # readings reported just before a crash
            log.info("outbox holds %d readings not yet in a message; sealing them", outbox.staged)
            self._seal()
        self._update_depth()
        if outbox.depth:
            log.info("outbox holds %d unacknowledged messages; replaying them", outbox.depth)
        publisher.start()
        poll_stop = asyncio.Event()
        poller = Poller(
            self.gateway, self.clock, self._collect, self.stats.sensor_errors, interval_of=self.interval_of
        )
        polling = asyncio.create_task(poller.run(poll_stop), name="poller")
        timers = [
            asyncio.create_task(self._every(cfg.publish.batch_interval, self._seal), name="batcher"),
            asyncio.create_task(
                self._every(cfg.publish.health_interval, self._publish_health), name="health"
            ),
        ]
        try:
            await stop.wait()
        finally:
            poll_stop.set()
            await polling
            for task in timers:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self._unstaged:  # the outbox could not be written: a last try before they are gone
                self._stage([], urgent=False)
                if self._unstaged_count:
                    log.error("stopping with %d readings the outbox could not store", self._unstaged_count)
            self._seal()
            if not await publisher.drain(ACK_WAIT_ON_STOP):
                log.warning("stopping with %d messages unacknowledged; they stay in the outbox", outbox.depth)
            self._publish_health()
            await publisher.stop()
            self._update_depth()
            outbox.close()
            self._outbox = self._publisher = None

    # -- readings -> outbox -----------------------------------------------------------------

    def _count(self, readings: list[Reading]) -> None:
        self.stats.readings += len(readings)
        self.stats.readings_bad += sum(1 for r in readings if r.q is not Quality.OK)

    def _collect(self, sensor: SensorConfig, readings: list[Reading]) -> None:
        state = self._sensors[sensor.id]
        state.polls += 1
        if readings and readings[0].ts == state.last_ts:
            # A free-running device polled faster than it talks: the driver hands back its latest
            # line again, same sample time.  That sample was already counted and offered.
            state.repeats += 1
            return
        self._count(readings)
        self._track(sensor, readings)
        decision = self.reporters[sensor.id].offer(readings)
        if decision.entered_fast:
            log.info(
                "sensor %s: fast mode (%s): every %g s, sent first",
                sensor.id,
                decision.reason,
                self.interval_of(sensor),
            )
        elif decision.left_fast:
            log.info("sensor %s: back to normal reporting every %g s", sensor.id, self.interval_of(sensor))
        if not decision.report:
            return
        self.stats.readings_reported += len(readings)
        self._stage([encode(r) for r in readings], decision.urgent)
        staged = self._outbox.staged if self._outbox is not None else 0
        if decision.urgent or staged >= self.gateway.config.publish.max_batch:
            self._seal()

    def _track(self, sensor: SensorConfig, readings: list[Reading]) -> None:
        state = self._sensors[sensor.id]
        if readings:
            state.last_ts = readings[0].ts
        state.failing = any(r.q in COMM_FAILURES for r in readings)
        bad = [r.q for r in readings if r.q is not Quality.OK]
        state.quality = bad[0] if bad else Quality.OK
        if readings and not bad:
            state.last_ok = readings[0].ts

    def _stage(self, encoded: list[bytes], urgent: bool) -> None:
        outbox = self._outbox
        if outbox is None:
            return
        now = self.clock.now()
        pending = [*self._unstaged, (encoded, urgent, now)]
        try:
            for readings, is_urgent, created in pending:
                outbox.stage(readings, urgent=is_urgent, created=created)
                pending = pending[1:]
        except OutboxError as exc:
            if not self._outbox_failing:
                log.error("%s; holding readings in memory (up to %d) until it works again", exc, MAX_UNSTAGED)
            self._outbox_failing = True
            self._hold_in_memory(pending)
            return
        if self._outbox_failing:
            log.info("outbox %s is writable again", outbox.path)
        self._outbox_failing = False
        self._unstaged, self._unstaged_count = [], 0

    def _hold_in_memory(self, pending: list[tuple[list[bytes], bool, float]]) -> None:
        count = sum(len(r) for r, _, _ in pending)
        while count > MAX_UNSTAGED and len(pending) > 1:  # oldest go first, as in the outbox
            count -= len(pending[0][0])
            pending = pending[1:]
        self._unstaged, self._unstaged_count = pending, count

    async def _every(self, seconds: float, action: Callable[[], None]) -> None:
        """Run `action` on a fixed grid of clock time (no drift from the time it takes)."""
        due = self.clock.now()
        while True:
            due += seconds
            await self.clock.sleep(max(0.0, due - self.clock.now()))
            action()
            behind = self.clock.now() - due
            if behind > seconds:  # suspended or overloaded: skip the missed ticks
                due += seconds * (behind // seconds)

    def _seal(self) -> None:
        """Staged readings -> outbox messages (max_batch readings and the payload limit each)."""
        outbox, publisher = self._outbox, self._publisher
        if outbox is None or publisher is None or not outbox.staged:
            return
        cfg = self.gateway.config
        now = self.clock.now()
        sent = utc_from_epoch(now)

        def make_payload(seq: int, readings: list[bytes]) -> bytes:
            raws = [msgspec.Raw(r) for r in readings]
            return encode(_RawTelemetry(1, cfg.tenant, cfg.gateway, seq, sent, raws, outbox.stream))

        try:
            sealed = outbox.seal(
                make_payload, max_readings=cfg.publish.max_batch, max_bytes=_PAYLOAD_BUDGET, created=now
            )
        except OutboxError as exc:
            log.error("%s; the readings stay staged", exc)
            return
        self.stats.messages_queued += len(sealed)
        self._update_depth()
        publisher.enqueue(sealed)

    def _acked(self, count: int, payloads: list[bytes]) -> None:
        self.stats.messages_acked += count
        self._update_depth()
        if self.on_published is not None:
            for payload in payloads:
                self.on_published(self._decoder.decode(payload))

    def _update_depth(self) -> None:
        if self._outbox is not None:
            self.stats.outbox_depth = self._outbox.depth

    # -- health -----------------------------------------------------------------------------

    def health(self) -> Health:
        cfg = self.gateway.config
        now = self.clock.now()
        outbox, publisher = self._outbox, self._publisher
        oldest = outbox.oldest_created() if outbox is not None else None
        sensors = {}
        for s in cfg.sensors:
            state, reporter = self._sensors[s.id], self.reporters[s.id]
            sensors[s.id] = SensorHealth(
                polls=state.polls,
                errors=self.stats.sensor_errors.get(s.id, 0),
                failing=state.failing,
                quality=state.quality,
                last_ok=state.last_ok,
                fast=reporter.fast,
                reported=reporter.reported,
                suppressed=reporter.suppressed,
            )
        return Health(
            v=1,
            tenant=cfg.tenant,
            gateway=cfg.gateway,
            ts=utc_from_epoch(now),
            uptime_s=round(time.monotonic() - self._started, 3),
            agent_version=__version__,
            config_hash=self.config_hash,
            outbox_depth=outbox.depth if outbox is not None else 0,
            outbox_bytes=outbox.size_bytes if outbox is not None else 0,
            outbox_oldest_age_s=round(max(0.0, now - oldest), 3) if oldest is not None else 0.0,
            outbox_dropped=outbox.dropped if outbox is not None else 0,
            outbox_dropped_readings=outbox.dropped_readings if outbox is not None else 0,
            messages_acked=self.stats.messages_acked,
            reconnects=publisher.reconnects if publisher is not None else 0,
            unrouted=publisher.unrouted if publisher is not None else 0,
            clock_synced=clock_synchronized(),
            sensors=sensors,
        )

    def _publish_health(self) -> None:
        if self._publisher is not None:
            self._publisher.publish_health(encode(self.health()))
