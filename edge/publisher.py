"""MQTT publisher: outbox -> broker with QoS 1, deleting each message only on its PUBACK.

paho-mqtt runs its network thread (`loop_start`), which also reconnects with backoff.  Every paho
callback is handed to the asyncio loop with `call_soon_threadsafe`, so the outbox (SQLite) is
only ever touched from the loop thread.

Publishing always goes through the outbox, oldest first: after (re)start everything stored is
replayed before newer messages, and at most `WINDOW` messages are handed to paho at a time so a
long backlog never sits in memory.  Messages already handed to paho survive a reconnect inside
paho (it resends unacknowledged QoS 1 messages), so they are not sent again by us.

Status: the Last Will is a retained `offline`; every connect publishes a retained `online`
(birth) and a clean stop publishes `offline` before disconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from bosai import __version__
from edge.outbox import Outbox
from wire import topics
from wire.clock import Clock
from wire.mqttconf import MqttConfig, read_password, tls_context
from wire.status import Status
from wire.telemetry import encode, utc_from_epoch

log = logging.getLogger(__name__)

WINDOW = 20  # messages handed to paho and not yet acknowledged (paho's default in-flight limit)
ACK_FLUSH_DELAY = 0.05  # real seconds: PUBACKs arriving together are deleted in one transaction
RECONNECT_MIN, RECONNECT_MAX = 1, 60  # seconds, paho's reconnect backoff


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
        on_acked: Callable[[int, list[bytes]], None] | None = None,
        keep_payloads: bool = False,
    ) -> None:
        """Checks credentials and TLS files (ConfigError) before anything connects."""
        self.cfg = cfg
        self.tenant = tenant
        self.gateway = gateway
        self.outbox = outbox
        self.clock = clock
        # Called after acknowledged messages are deleted, with their number and (only with
        # keep_payloads, which costs a read per message) their payloads.
        self.on_acked = on_acked
        self.keep_payloads = keep_payloads
        self.connected = False
        self.rejected = 0  # PUBACK with an error reason code (MQTT 5); kept in the outbox
        self._password = read_password(cfg, config_path)
        self._tls = tls_context(cfg.tls, config_path) if cfg.use_tls else None
        self._inflight: dict[int, int] = {}  # paho mid -> seq
        self._cursor = 0  # highest seq handed to paho
        self._acks: list[int] = []
        self._ack_flush: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._ever_connected = False
        self._stopping = False
        self._background: set[asyncio.Future[None]] = set()
        self._connect_failures = 0

    @property
    def client_id(self) -> str:
        return self.cfg.client_id or f"bosai-{self.tenant}-{self.gateway}"

    def _status(self, state: Literal["online", "offline"]) -> bytes:
        since = utc_from_epoch(self.clock.now()) if state == "online" else None
        status = Status(1, self.tenant, self.gateway, state, since=since, agent_version=__version__)
        return encode(status)

    def start(self) -> None:
        """Connect in paho's network thread (which keeps reconnecting); returns at once."""
        self._loop = asyncio.get_running_loop()
        v5 = self.cfg.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
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
        self._call(self._connected, rc)

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        self._call(self._connect_failed, None)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self._call(self._disconnected, rc)

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        self._call(self._published, mid, rc)

    # -- loop thread ----------------------------------------------------------------------

    def _connect_failed(self, rc: ReasonCode | None) -> None:
        """paho keeps retrying with backoff; the first failure of an episode is explained once."""
        self._connect_failures += 1
        if self._connect_failures > 1:
            log.debug("broker %s: connection attempt %d failed", self.cfg.url, self._connect_failures)
        elif rc is not None:  # CONNACK with an error: bad credentials, not authorised, ...
            log.warning("broker %s refused the connection: %s (retrying)", self.cfg.url, rc)
        else:  # paho does not say why a socket/TLS connect failed: find out once
            task = asyncio.ensure_future(self._explain_connect_failure())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _explain_connect_failure(self) -> None:
        reason = await asyncio.to_thread(self._probe)
        log.warning("cannot connect to broker %s: %s (retrying with backoff)", self.cfg.url, reason)

    def _probe(self) -> str:
        host, port = self.cfg.host, self.cfg.port
        try:
            with socket.create_connection((host, port), timeout=10) as sock:
                if self._tls is not None:
                    with self._tls.wrap_socket(sock, server_hostname=host):
                        pass
        except (OSError, ssl.SSLError) as exc:
            return str(exc) or type(exc).__name__
        return "TCP and TLS work now; the broker may have been restarting"

    def _connected(self, rc: ReasonCode) -> None:
        if rc.is_failure:
            self._connect_failed(rc)
            return
        self.connected = True
        self._connect_failures = 0
        log.info("%s to broker %s", "reconnected" if self._ever_connected else "connected", self.cfg.url)
        self._ever_connected = True
        assert self._client is not None
        online = self._status("online")
        self._client.publish(topics.status(self.tenant, self.gateway), online, qos=1, retain=True)
        self.pump()

    def _disconnected(self, rc: ReasonCode) -> None:
        if self.connected and not self._stopping:
            log.warning("disconnected from broker %s (%s); messages stay in the outbox", self.cfg.url, rc)
        self.connected = False

    def _published(self, mid: int, rc: ReasonCode) -> None:
        seq = self._inflight.pop(mid, None)
        if seq is None:
            return  # a status message
        if rc.is_failure:
            self.rejected += 1
            log.warning("broker rejected message seq %d: %s (kept; retried after a restart)", seq, rc)
        else:
            self._acks.append(seq)
            if self._ack_flush is None:
                assert self._loop is not None
                self._ack_flush = self._loop.call_later(ACK_FLUSH_DELAY, self.flush_acks)
        self.pump()

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
        """Hand the oldest not-yet-sent messages to paho, keeping at most WINDOW in flight."""
        if not self.connected or self._client is None:
            return
        room = WINDOW - len(self._inflight)
        if room <= 0:
            return
        telemetry = topics.telemetry(self.tenant, self.gateway)
        for seq, payload in self.outbox.after(self._cursor, room):
            info = self._client.publish(telemetry, payload, qos=1)
            # Even with rc NO_CONN paho keeps a QoS 1 message and sends it on reconnect.
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                log.warning("paho refused message seq %d: %s", seq, mqtt.error_string(info.rc))
                return
            self._inflight[info.mid] = seq
            self._cursor = seq

    def idle(self) -> bool:
        """Nothing in flight and nothing stored that was not handed to paho yet."""
        return not self._inflight and not self.outbox.after(self._cursor, 1)

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
