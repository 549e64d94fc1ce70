"""MQTT publisher: outbox -> broker with QoS 1, deleting each message only on its PUBACK.

paho-mqtt runs its network thread (`loop_start`), which also reconnects with backoff.  Every paho
callback is handed to the asyncio loop with `call_soon_threadsafe`, so the outbox (SQLite) is
only ever touched from the loop thread.

Sending order.  At most `WINDOW` messages are handed to paho at a time, so a long backlog never
sits in memory; paho keeps what it was handed across reconnects and resends it, so a message is
handed over once per process.  Waiting messages are in three queues, served in this order:

1. live: sealed while connected (the present; never held back);
2. backlog, urgent: stored while offline (or found at start) and sealed in fast mode;
3. backlog, normal: the rest, oldest first, at most `replay_rate` messages per second, so that
   after a long outage the uplink and the cloud are not flooded and live data keeps flowing.

"No matching subscribers" (MQTT 5 PUBACK reason 0x10) means the broker accepted the message but
nobody (no cloud consumer) received it: after a broker crash that lost the consumer's session,
or while the consumer is down without a persistent session.  With `require_subscriber` such a
message stays in the outbox and is sent again after a pause (1 s, doubling to 60 s), so a
telemetry message is deleted only once the cloud could have it.  MQTT 3.1.1 has no reason
codes; there a PUBACK is taken as delivery.

Status: the Last Will is a retained `offline`; every connect publishes a retained `online` birth
message with the software version and the config hash; a clean stop publishes `offline` before
disconnecting.  Health messages go straight to paho (QoS 1, retained), never via the outbox:
only the latest matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from bosai import __version__
from edge.outbox import Outbox, Sealed
from wire import topics
from wire.clock import Clock
from wire.mqttconf import MqttConfig, probe_broker, read_password, tls_context
from wire.pahologs import disconnect_reason, last_transport_error, paho_logger
from wire.status import Status
from wire.telemetry import encode, utc_from_epoch

log = logging.getLogger(__name__)
PAHO_LOG = "paho.mqtt.edge"  # paho's own log (packets at DEBUG)

WINDOW = 20  # messages handed to paho and not yet acknowledged (paho's default in-flight limit)
ACK_FLUSH_DELAY = 0.05  # real seconds: PUBACKs arriving together are deleted in one transaction
RECONNECT_MIN, RECONNECT_MAX = 1, 60  # seconds, paho's reconnect backoff
NO_SUBSCRIBERS = 0x10  # MQTT 5 PUBACK reason code "No matching subscribers"
# CONNACK reason codes of a refused login: MQTT 5 "Bad user name or password", "Not authorized";
# MQTT 3.1.1 return codes 4 and 5.
REFUSED_LOGIN = frozenset({0x86, 0x87, 4, 5})
HOLD_MIN, HOLD_MAX = 1.0, 60.0  # real seconds to wait before resending after "no subscribers"


class Publisher:
    def __init__(
        self,
        cfg: MqttConfig,
        tenant: str,
        gateway: str,
        outbox: Outbox,
        clock: Clock,
        *,
        config_path: str | Path,
        config_hash: str = "",
        replay_rate: float = 50.0,  # backlog messages per second
        require_subscriber: bool = True,
        on_acked: Callable[[int, list[bytes]], None] | None = None,
        keep_payloads: bool = False,
    ) -> None:
        """Checks credentials and TLS files (ConfigError) before anything connects."""
        self.cfg = cfg
        self.tenant = tenant
        self.gateway = gateway
        self.outbox = outbox
        self.clock = clock
        self.config_hash = config_hash
        self.replay_rate = replay_rate
        self.require_subscriber = require_subscriber and cfg.protocol == "5"
        # Called after acknowledged messages are deleted, with their number and (only with
        # keep_payloads, which costs a read per message) their payloads.
        self.on_acked = on_acked
        self.keep_payloads = keep_payloads
        self.connected = False
        self.rejected = 0  # PUBACK with an error reason code (MQTT 5); kept in the outbox
        self.unrouted = 0  # PUBACK "no matching subscribers"; kept and sent again
        self.reconnects = 0
        self._password = read_password(cfg, config_path)
        self._tls = tls_context(cfg.tls, config_path) if cfg.use_tls else None
        self._inflight: dict[int, Sealed] = {}  # paho mid -> message
        self._live: deque[Sealed] = deque()
        self._backlog_urgent: deque[Sealed] = deque()
        self._backlog: deque[Sealed] = deque()
        self._bounced: list[tuple[int, bool]] = []  # heap of (seq, urgent) to resend
        self._hold_until = 0.0  # loop time: no telemetry before this ("no subscribers")
        self._hold = 0.0
        self._tokens = 0.0
        self._tokens_at = 0.0
        self._wakeup: asyncio.TimerHandle | None = None
        self._acks: list[int] = []
        self._ack_flush: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._ever_connected = False
        self._stopping = False
        self._background: set[asyncio.Future[None]] = set()
        self._connect_failures = 0
        for seq, urgent in outbox.index():  # left over from before a restart: backlog
            (self._backlog_urgent if urgent else self._backlog).append(Sealed(seq, urgent))

    @property
    def client_id(self) -> str:
        return self.cfg.client_id or f"bosai-{self.tenant}-{self.gateway}"

    def _status(self, state: Literal["online", "offline"]) -> bytes:
        since = utc_from_epoch(self.clock.now()) if state == "online" else None
        status = Status(
            1,
            self.tenant,
            self.gateway,
            state,
            since=since,
            agent_version=__version__,
            config_hash=self.config_hash,
        )
        return encode(status)

    def enqueue(self, sealed: list[Sealed]) -> None:
        """Newly sealed messages (already durable in the outbox): send them as soon as possible."""
        self._live.extend(sealed)
        self.pump()

    def publish_health(self, payload: bytes) -> bool:
        """Publish a health message now if connected (it is not stored: only the latest matters)."""
        if not self.connected or self._client is None:
            return False
        self._client.publish(topics.health(self.tenant, self.gateway), payload, qos=1, retain=True)
        return True

    def start(self) -> None:
        """Connect in paho's network thread (which keeps reconnecting); returns at once."""
        self._loop = asyncio.get_running_loop()
        v5 = self.cfg.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        # paho's packet log at DEBUG (flags, topics and sizes; never passwords or payloads).
        client.enable_logger(paho_logger(PAHO_LOG))
        if self.cfg.username is not None or self._password is not None:
            client.username_pw_set(self.cfg.username, self._password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        client.will_set(topics.status(self.tenant, self.gateway), self._status("offline"), qos=1, retain=True)
        client.reconnect_delay_set(RECONNECT_MIN, RECONNECT_MAX)
        client.max_inflight_messages_set(WINDOW)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive)
        client.loop_start()
        self._client = client

    # -- paho network thread: hand everything to the loop ---------------------------------

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is already closed during shutdown
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        last_transport_error(PAHO_LOG)  # a socket error of a failed attempt is not the next drop's cause
        self._call(self._connected, rc)

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        self._call(self._connect_failed, None)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self._call(self._disconnected, disconnect_reason(rc, PAHO_LOG))

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        self._call(self._published, mid, rc)

    # -- loop thread ----------------------------------------------------------------------

    def _connect_failed(self, rc: ReasonCode | None) -> None:
        """paho keeps retrying with backoff; the first failure of an episode is explained once."""
        self._connect_failures += 1
        if self._connect_failures > 1:
            log.debug("broker %s: connection attempt %d failed", self.cfg.url, self._connect_failures)
        elif rc is not None and rc.value in REFUSED_LOGIN:
            # Not a network problem that heals by itself: the gateway was revoked or rotated, or its
            # credentials are damaged.  Said as an error so that it stands out in the journal.
            log.error(
                "broker %s refused this gateway's login (%s): its credentials were revoked or "
                "replaced; install the gateway's current bundle (bosai gateway install). Retrying.",
                self.cfg.url,
                rc,
            )
        elif rc is not None:  # CONNACK with another error: server busy, banned, ...
            log.warning("broker %s refused the connection: %s (retrying)", self.cfg.url, rc)
        else:  # paho does not say why a socket/TLS connect failed: find out once
            task = asyncio.ensure_future(self._explain_connect_failure())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _explain_connect_failure(self) -> None:
        reason = await asyncio.to_thread(probe_broker, self.cfg.host, self.cfg.port, self._tls)
        log.warning("cannot connect to broker %s: %s (retrying with backoff)", self.cfg.url, reason)

    def _connected(self, rc: ReasonCode) -> None:
        if rc.is_failure:
            self._connect_failed(rc)
            return
        self.connected = True
        self._connect_failures = 0
        log.info("%s to broker %s", "reconnected" if self._ever_connected else "connected", self.cfg.url)
        if self._ever_connected:
            self.reconnects += 1
        self._ever_connected = True
        # What was sealed while offline is backlog now: it is replayed at the bounded rate, and
        # what is sealed from now on goes first.
        for m in self._live:
            (self._backlog_urgent if m.urgent else self._backlog).append(m)
        self._live.clear()
        assert self._client is not None
        online = self._status("online")
        self._client.publish(topics.status(self.tenant, self.gateway), online, qos=1, retain=True)
        self.pump()

    def _disconnected(self, why: str) -> None:
        if self.connected and not self._stopping:
            log.warning("disconnected from broker %s (%s); messages stay in the outbox", self.cfg.url, why)
        self.connected = False

    def _published(self, mid: int, rc: ReasonCode) -> None:
        msg = self._inflight.pop(mid, None)
        if msg is None:
            return  # a status or health message
        if rc.is_failure:
            self.rejected += 1
            log.warning("broker rejected message seq %d: %s (kept; retried after a restart)", msg.seq, rc)
        elif rc.value == NO_SUBSCRIBERS and self.require_subscriber:
            self._unrouted(msg)
        else:
            if self._hold:
                log.info("broker %s: telemetry is being received again", self.cfg.url)
                self._hold = 0.0
            self._acks.append(msg.seq)
            if self._ack_flush is None:
                assert self._loop is not None
                self._ack_flush = self._loop.call_later(ACK_FLUSH_DELAY, self.flush_acks)
        self.pump()

    def _unrouted(self, msg: Sealed) -> None:
        """Nobody subscribed to our telemetry: keep the message, resend it after a pause."""
        assert self._loop is not None
        self.unrouted += 1
        heapq.heappush(self._bounced, (msg.seq, msg.urgent))
        now = self._loop.time()
        if now >= self._hold_until:  # once per pause, not once per bounced message
            if not self._hold:
                log.warning(
                    "broker %s has no subscriber for this gateway's telemetry (is the cloud consumer "
                    "running?); keeping messages in the outbox and retrying",
                    self.cfg.url,
                )
            self._hold = min(HOLD_MAX, self._hold * 2 if self._hold else HOLD_MIN)
            self._hold_until = now + self._hold

    def flush_acks(self) -> None:
        self._ack_flush = None
        acks, self._acks = self._acks, []
        if not acks:
            return
        payloads: list[bytes] = []
        if self.keep_payloads:
            payloads = [p for s in acks if (p := self.outbox.payload(s)) is not None]
        n = self.outbox.delete(acks)
        if self.on_acked is not None:
            self.on_acked(n, payloads)

    def pump(self) -> None:
        """Hand waiting messages to paho in priority order, keeping at most WINDOW in flight."""
        if not self.connected or self._client is None or self._loop is None:
            return
        now = self._loop.time()
        if now < self._hold_until:
            self._wake_at(self._hold_until)
            return
        while len(self._inflight) < WINDOW:
            msg = self._next(now)
            if msg is None:
                return
            payload = self.outbox.payload(msg.seq)
            if payload is None:
                continue  # dropped by the outbox bound meanwhile
            info = self._client.publish(topics.telemetry(self.tenant, self.gateway), payload, qos=1)
            # Even with rc NO_CONN paho keeps a QoS 1 message and sends it on reconnect.
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                log.warning("paho refused message seq %d: %s", msg.seq, mqtt.error_string(info.rc))
                heapq.heappush(self._bounced, (msg.seq, msg.urgent))
                return
            self._inflight[info.mid] = msg

    def _next(self, now: float) -> Sealed | None:
        """The next message to send, or None (nothing waiting, or the replay rate is used up)."""
        if self._bounced:  # sent before and refused for want of a subscriber: oldest first
            return Sealed(*heapq.heappop(self._bounced))
        if self._live:
            return self._live.popleft()
        if not (self._backlog_urgent or self._backlog):
            return None
        # Token bucket: up to one second's worth of backlog at once, then replay_rate per second.
        self._tokens = min(
            max(self.replay_rate, 1.0), self._tokens + (now - self._tokens_at) * self.replay_rate
        )
        self._tokens_at = now
        if self._tokens < 1.0:
            self._wake_at(now + (1.0 - self._tokens) / self.replay_rate)
            return None
        self._tokens -= 1.0
        return (self._backlog_urgent or self._backlog).popleft()

    def _wake_at(self, when: float) -> None:
        assert self._loop is not None
        if self._wakeup is not None and not self._wakeup.cancelled() and self._wakeup.when() <= when:
            return
        if self._wakeup is not None:
            self._wakeup.cancel()
        self._wakeup = self._loop.call_at(when, self._woken)

    def _woken(self) -> None:
        self._wakeup = None
        self.pump()

    @property
    def waiting(self) -> int:
        """Messages not handed to paho yet."""
        return len(self._live) + len(self._backlog_urgent) + len(self._backlog) + len(self._bounced)

    def idle(self) -> bool:
        """Nothing in flight and nothing stored that was not handed to paho yet."""
        return not self._inflight and not self.waiting

    async def drain(self, timeout: float) -> bool:
        """Wait (real seconds) until every stored message is acknowledged; True if it was.

        Returns at once while disconnected: the messages are safe in the outbox anyway.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.pump()
        while self.connected and not self.idle() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        self.flush_acks()
        return self.idle()

    async def stop(self, timeout: float = 2.0) -> None:
        """Publish the retained `offline` status, disconnect cleanly, stop the network thread."""
        client, self._client = self._client, None
        if client is None:
            return
        self._stopping = True
        for task in self._background:
            task.cancel()
        if self._ack_flush is not None:
            self._ack_flush.cancel()
        if self._wakeup is not None:
            self._wakeup.cancel()
        self.flush_acks()
        if self.connected:
            offline = self._status("offline")
            info = client.publish(topics.status(self.tenant, self.gateway), offline, qos=1, retain=True)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not info.is_published() and loop.time() < deadline:
                await asyncio.sleep(0.02)
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        self.connected = False
        left = self.outbox.depth
        log.info("disconnected from broker %s; %d messages left in the outbox", self.cfg.url, left)
