"""The gateway agent: poller -> batches -> durable outbox -> MQTT publisher.

Readings from all buses are collected and turned into one telemetry message per
`publish.batch_interval` seconds of clock time (sooner when `publish.max_batch` readings are
waiting).  A message is written to the outbox, with its sequence number, before it is
published; the PUBACK deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from edge.config import LoadedGateway, SensorConfig
from edge.outbox import Outbox
from edge.poller import Poller
from edge.publisher import Publisher
from wire.clock import Clock, RealClock
from wire.telemetry import MAX_PAYLOAD_BYTES, Quality, Reading, Telemetry, encode, utc_from_epoch

log = logging.getLogger(__name__)

ACK_WAIT_ON_STOP = 5.0  # real seconds to wait for PUBACKs when stopping
_PAYLOAD_BUDGET = MAX_PAYLOAD_BYTES - 1024  # room for the envelope (tenant, gateway, seq, sent)


@dataclass
class AgentStats:
    """Counters, updated live; read by the demo for progress."""

    readings: int = 0  # readings taken (every one ends up in a message)
    readings_bad: int = 0  # of which with a quality flag other than ok
    messages_queued: int = 0  # messages written to the outbox
    messages_acked: int = 0  # messages acknowledged by the broker (and deleted)
    outbox_depth: int = 0  # messages waiting in the outbox
    sensor_errors: dict[str, int] = field(default_factory=dict)  # sensor id -> failed reads


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
        self.stats = AgentStats()
        self._pending: list[Reading] = []
        self._outbox: Outbox | None = None
        self._publisher: Publisher | None = None
        self._decoder = msgspec.json.Decoder(Telemetry)

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
        outbox = Outbox(self.outbox_path, cfg.outbox.max_messages)
        try:
            publisher = Publisher(
                cfg.mqtt,
                cfg.tenant,
                cfg.gateway,
                outbox,
                self.clock,
                config_path=self.gateway.path,
                on_acked=self._acked,
                keep_payloads=self.on_published is not None,
            )
        except BaseException:
            outbox.close()
            raise
        self._outbox, self._publisher = outbox, publisher
        self.stats.outbox_depth = outbox.depth
        if outbox.depth:
            log.info("outbox holds %d unacknowledged messages; replaying them first", outbox.depth)
        publisher.start()
        poll_stop = asyncio.Event()
        poller = Poller(self.gateway, self.clock, self._collect, self.stats.sensor_errors)
        polling = asyncio.create_task(poller.run(poll_stop), name="poller")
        batching = asyncio.create_task(self._batch_timer(), name="batcher")
        try:
            await stop.wait()
        finally:
            poll_stop.set()
            await polling
            batching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await batching
            self._flush()
            if not await publisher.drain(ACK_WAIT_ON_STOP):
                log.warning("stopping with %d messages unacknowledged; they stay in the outbox", outbox.depth)
            await publisher.stop()
            self._update_depth()
            outbox.close()
            self._outbox = self._publisher = None

    # -- readings -> messages -------------------------------------------------------------

    def _count(self, readings: list[Reading]) -> None:
        self.stats.readings += len(readings)
        self.stats.readings_bad += sum(1 for r in readings if r.q is not Quality.OK)

    def _collect(self, _sensor: SensorConfig, readings: list[Reading]) -> None:
        self._count(readings)
        self._pending += readings
        if len(self._pending) >= self.gateway.config.publish.max_batch:
            self._flush()

    async def _batch_timer(self) -> None:
        while True:
            await self.clock.sleep(self.gateway.config.publish.batch_interval)
            self._flush()

    def _flush(self) -> None:
        """Pending readings -> outbox messages (max_batch readings and the payload limit each)."""
        outbox, publisher = self._outbox, self._publisher
        if not self._pending or outbox is None or publisher is None:
            return
        pending, self._pending = self._pending, []
        cfg = self.gateway.config
        for chunk in self._chunks(pending):
            now = self.clock.now()
            sent = utc_from_epoch(now)
            outbox.append(lambda seq: encode(Telemetry(1, cfg.tenant, cfg.gateway, seq, sent, chunk)), now)  # noqa: B023
            self.stats.messages_queued += 1
        self._update_depth()
        publisher.pump()

    def _chunks(self, readings: list[Reading]) -> list[list[Reading]]:
        limit = self.gateway.config.publish.max_batch
        chunks: list[list[Reading]] = [[]]
        size = 0
        for r in readings:
            n = len(encode(r)) + 1
            if len(chunks[-1]) >= limit or size + n > _PAYLOAD_BUDGET:
                chunks.append([])
                size = 0
            chunks[-1].append(r)
            size += n
        return chunks

    def _acked(self, count: int, payloads: list[bytes]) -> None:
        self.stats.messages_acked += count
        self._update_depth()
        if self.on_published is not None:
            for payload in payloads:
                self.on_published(self._decoder.decode(payload))

    def _update_depth(self) -> None:
        if self._outbox is not None:
            self.stats.outbox_depth = self._outbox.depth
