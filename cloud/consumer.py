"""The cloud consumer: MQTT in, then ingestion -> store path and detection -> alerting.

Threads:
- paho's network thread only queues each message (never blocks on processing);
- the worker thread validates, accounts, detects and runs the alert lifecycle, and hands the
  message's lines to the spool; about once a second it also ticks detection (silent gateways and
  sensors) and the alert manager (reminders, handovers, duty officers' acks from `bosai alerts`,
  maintenance windows), and writes the consumer's health points every `metrics.health_every_s`
  and the dashboards' snapshot points (cloud.dashdata) every `dashboards_every_s` of clock time;
- the spool thread (cloud.spool) appends and fsyncs lines, then acknowledges their messages
  (manual PUBACK, in order): the broker forgets a message only once its lines are on disk, and a
  message not yet acknowledged when the consumer dies is redelivered from the persistent session;
- the store thread (cloud.sink) drains the spool into the database, so the database never delays
  alerts and a database outage loses nothing;
- one thread per notifier (cloud.notify.dispatch), so a slow mail server never delays anything.

Gateway status (birth message / Last Will) and health messages feed gateway liveness; health
messages are also stored (`gateway_health`, `gateway_sensor_health`, cloud.points).  A
gateway flooding bad messages is throttled (cloud.throttle): its surplus is rejected unread.

A bug while processing one message is counted as reason "internal", quarantined and logged
with its traceback once per kind; the worker keeps going.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import paho.mqtt.client as mqtt

from cloud import dashdata, points
from cloud import mqtt as mqttsetup
from cloud.alerts.manager import AlertManager, Escalation
from cloud.alerts.outputs import AlertOutputs
from cloud.alerts.store import AlertStore
from cloud.config import (
    AlertsConfig,
    ConsumerConfig,
    EscalationConfig,
    InfluxStore,
    Store,
    metrics_address,
    resolve,
)
from cloud.dashboards import dashboard_for
from cloud.detect.engine import Engine
from cloud.detect.journal import Journal, journalled, keep_s
from cloud.detect.observation import Observation
from cloud.ingest import INTERNAL, Ingestor, IngestResult
from cloud.metrics import AlertLatency, MetricsServer, health_lines
from cloud.notify import build_notifiers
from cloud.notify.dispatch import Dispatcher
from cloud.quarantine import Quarantine
from cloud.registry import Registry, load_registry
from cloud.security import BrokerSecurity
from cloud.sequence_store import SequenceStore
from cloud.shard import Shard
from cloud.sink import StoreSink
from cloud.spool import Spool, SpoolBusy
from cloud.stats import ConsumerStats, GatewaySequence
from cloud.throttle import FloodGuard
from cloud.writers import TeeWriter, Writer, open_writer
from wire import topics
from wire.alerts import Alert
from wire.clock import Clock, RealClock
from wire.configfile import ConfigError
from wire.mqttconf import probe_broker, tls_context
from wire.pahologs import disconnect_reason, last_transport_error
from wire.status import health_decoder, status_decoder
from wire.telemetry import MAX_PAYLOAD_BYTES, Quality, RejectReason

log = logging.getLogger(__name__)

MAX_QUEUED_MESSAGES = 50_000  # beyond this paho's thread waits: TCP backpressure to the broker
STOP_TIMEOUT_S = 30.0
NOTIFY_STOP_S = 5.0  # how long stop() lets the notifiers deliver what is pending
CANNOT_CONNECT = "cannot connect"  # _connect_problem while paho retries a failed TCP or TLS connect
TICK_S = 1.0  # silence checks, reminders and duty officers' actions are looked at this often
ACK_GROUP = 1000  # acknowledgements handed on together (one sequence-state save for them all)


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    received: float  # clock time (scenario time in the demo)
    mid: int
    qos: int
    connection: int  # acknowledgements only go back on the connection that delivered it
    arrived: float  # time.monotonic(), for the alert latency


@dataclass(frozen=True, slots=True)
class _Barrier:
    done: threading.Event


_STOP = object()


class Consumer:
    def __init__(
        self,
        config: ConsumerConfig,
        config_path: Path,
        registry: Registry | None = None,
        *,
        store_override: Store | None = None,
        clock: Clock | None = None,
    ) -> None:
        """Validate everything that can be validated without a network; raises ConfigError."""
        self.config = config
        self.config_path = Path(config_path)
        self.registry = registry or load_registry(resolve(config_path, config.registry))
        self.clock: Clock = clock or RealClock()
        self.on_alert: list[Callable[[Alert], None]] = []
        self._store_lines: list[str] = []  # see _store()
        self.client_id = mqttsetup.client_id(config)
        self.metrics_url: str | None = None
        self.subscriptions = mqttsetup.subscriptions(config, self.registry)
        self._subscription_batches = mqttsetup.subscription_batches(self.subscriptions)
        self._suback_pending = 0

        self._client = mqttsetup.make_client(config, self.config_path)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail

        qpath = resolve(config_path, config.quarantine_path) if config.quarantine_path else None
        self._quarantine = Quarantine(qpath, topic=config.quarantine_topic, publish=self._publish_quarantine)
        v = config.validation
        self._flood = FloodGuard(v.bad_per_s, v.bad_burst, v.throttled_per_s)
        self._ingestor = Ingestor(self.registry, v, self._quarantine, on_reject=self._flood.rejected)
        self._writer: Writer = open_writer(store_override or config.store, self.config_path)
        if config.archive is not None:
            self._writer = TeeWriter(self._writer, open_writer(config.archive, self.config_path))
        sp = config.spool
        try:
            self._spool = Spool(
                resolve(config_path, sp.path),
                max_bytes=sp.max_bytes,
                segment_bytes=sp.segment_bytes,
                fsync=sp.fsync,
            )
        except SpoolBusy as exc:  # two consumers on one spool: give each shard its own directory
            raise ConfigError(config_path, "spool: field 'path'", str(exc)) from None
        store = store_override or config.store
        influx = store if isinstance(store, InfluxStore) else None
        self._sink = StoreSink(
            self._writer,
            self._spool,
            self._quarantine,
            batch_lines=influx.batch_size if influx else 5000,
            linger_s=influx.flush_interval_ms / 1000 if influx else 0.0,
        )
        self._engine = Engine(self.registry)
        alerts = config.alerts
        self._dispatcher = Dispatcher(build_notifiers(alerts.notifiers, self.config_path))
        self._outputs = AlertOutputs(
            resolve(config_path, alerts.log_path),
            self._publish_alert if alerts.publish else None,
            self._store,
            self.on_alert,
            self._dispatcher.submit,
        )
        self._alert_store = AlertStore(resolve(config_path, alerts.state_path))
        self._sequence_store = SequenceStore(
            resolve(config_path, alerts.state_path), fsync=config.spool.fsync
        )
        known = self._sequence_store.load(self._ingestor.sequences)
        if known:
            log.info("sequence accounting of %d gateways resumed", known)
        self._alerts = alert_manager(alerts, self._alert_store, self._outputs)
        # Long-history detectors (new snowfall, failure forecast) resume from their journal;
        # then the alert store says which conditions are active.
        keep = max(
            (keep_s(ch) for s in self.registry.data.sensors for ch in s.channels.values()), default=0.0
        )
        self._journal = Journal(resolve(config_path, alerts.state_path), keep) if keep > 0 else None
        if self._journal is not None:
            used = self._engine.warm_up(self._journal.samples(self.clock.now() - keep))
            if used:
                log.info("detection warmed up on %d journalled samples", used)
        self._engine.restore(self._alerts.active_levels())
        self._last_detection: dict[tuple[str, str, str], float] = {}
        self._last_tick = 0.0
        self._shard = Shard.of(config)  # a shard writes the dashboard state of what it owns only
        self._last_dashboards: float | None = None  # clock time of the last snapshot; None: none yet
        self._last_thresholds: float | None = None  # the same, for the thresholds in it

        self._lock = threading.RLock()  # the worker's state vs. stats readers (hooks may read stats)
        self._started = time.monotonic()
        self._connection = 0  # counts connections, for acknowledgements (see _ack)
        self._arrived: float | None = None  # monotonic arrival of the message being processed
        self.alert_latency = AlertLatency()
        self._metrics: MetricsServer | None = None
        self._last_health = time.monotonic()
        self._queue: queue.Queue[_Message | _Barrier | object] = queue.Queue(MAX_QUEUED_MESSAGES)
        self._worker: threading.Thread | None = None
        self._ready = threading.Event()
        self._connected = False
        self._connect_problem: str | None = None
        self._stopping = False
        self._stopped = False
        self._skipped_at_stop = 0  # queued messages left for redelivery by stop()
        self._publishes: deque[mqtt.MQTTMessageInfo] = deque()
        self._republish: dict[str, bytes] = {}  # alert topic -> latest payload not handed to the broker
        self._republish_lock = threading.Lock()
        self._logged_errors: set[str] = set()
        sec = config.security
        self._security = (
            BrokerSecurity(resolve(config_path, sec.broker_log), from_start=sec.from_start)
            if sec.broker_log
            else None
        )

    # --- lifecycle ---

    def start(self) -> None:
        self._dispatcher.start()
        self._worker = threading.Thread(target=self._run, name="bosai-consumer", daemon=True)
        self._worker.start()
        if self._security is not None:
            self._security.start()
        address = metrics_address(self.config.metrics)
        if address is not None:
            self._metrics = MetricsServer(lambda: self.stats, self.client_id)
            port = self._metrics.start(*address)
            self.metrics_url = f"http://{address[0]}:{port}/metrics"
            log.info("metrics at %s", self.metrics_url)
        mqttsetup.connect(self._client, self.config)
        self._client.loop_start()
        log.info(
            "consumer connecting to %s, subscribing to %d topic filters (%s%s)",
            self.config.mqtt.url,
            len(self.subscriptions),
            ", ".join(self.subscriptions[:3]),
            ", ..." if len(self.subscriptions) > 3 else "",
        )

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def drain(self, timeout: float) -> None:
        """Wait until everything received so far is processed and in the store."""
        done = threading.Event()
        if self._worker is not None and self._worker.is_alive():
            self._queue.put(_Barrier(done))
        else:
            self._sink.mark(done)
        if not done.wait(timeout):
            log.warning("drain: not done within %.1f s", timeout)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stopping = True  # from now on messages are left unacknowledged, for redelivery
        deadline = time.monotonic() + STOP_TIMEOUT_S
        if self._worker is not None:
            self._queue.put(_STOP)
            self._worker.join(STOP_TIMEOUT_S)
            if self._skipped_at_stop:
                log.info("%d queued messages left for the broker to redeliver", self._skipped_at_stop)
        # Commits (and acknowledges) what the worker handed over, then lets the store take it
        # for a while; what it does not take stays in the spool for the next start.
        self._sink.close(max(1.0, deadline - time.monotonic()))
        if self._security is not None:
            self._security.stop()
        if self._metrics is not None:
            self._metrics.close()
        self._wait_publishes(deadline)
        self._client.disconnect()
        self._client.loop_stop()
        # A hanging webhook must not hold the shutdown: what is still undelivered after a few
        # seconds is logged and counted as dropped (the episodes themselves are in the store).
        self._dispatcher.close(min(NOTIFY_STOP_S, max(1.0, deadline - time.monotonic())))
        self._outputs.close()
        self._alert_store.close()
        self._sequence_store.save(self._ingestor.sequences)
        self._sequence_store.close()
        if self._journal is not None:
            self._journal.flush(self.clock.now())
            self._journal.close()
        self._quarantine.close()
        log.info("consumer stopped: %s", self.stats.summary())

    @property
    def stats(self) -> ConsumerStats:
        with self._lock:
            ing = self._ingestor
            lost, duplicated, reordered = ing.sequences.totals()
            notify = self._dispatcher.stats()
            return ConsumerStats(
                messages=ing.messages,
                readings_accepted=ing.readings_accepted,
                readings_rejected=ing.readings_rejected,
                rejected_by_reason=dict(ing.by_reason),
                lines_written=self._sink.written,
                write_errors=self._sink.errors,
                alerts=self._outputs.count,
                lost=lost,
                duplicated=duplicated,
                reordered=reordered,
                messages_rejected=ing.messages_rejected,
                security_events=ing.security_events,
                broker_security_events=self._security.by_kind() if self._security else {},
                rejected_by_gateway={k: dict(v) for k, v in ing.by_gateway.items()},
                notifications_sent=sum(n.sent for n in notify.values()),
                notifications_pending=sum(n.pending for n in notify.values()),
                notifications_failed=sum(n.given_up + n.dropped for n in notify.values()),
                sequences={
                    f"{t}/{g}": GatewaySequence(q.lost, q.duplicated, q.reordered, q.resets)
                    for (t, g), q in ing.sequences.gateways.items()
                },
                write_retries=self._sink.retries,
                lines_rejected_by_store=self._sink.rejected,
                queue_depth=self._queue.qsize(),
                ack_pending=self._spool.queued,
                spool_lines=self._spool.pending_lines,
                spool_bytes=self._spool.pending_bytes,
                spool_oldest_s=self._spool.behind_s(),
                throttled_gateways=self._flood.throttled(),
                alert_latency=self.alert_latency.summary(),
                uptime_s=time.monotonic() - self._started,
            )

    # --- processing (worker thread; callable directly in tests) ---

    def process_message(self, topic: str, payload: bytes, received: float | None = None) -> None:
        """Validate, store and evaluate one message (telemetry, status or health).  Never raises."""
        received = self.clock.now() if received is None else received
        with self._lock:
            try:
                where = topics.parse_gateway_topic(topic)
                if where is not None and where.channel != "telemetry":
                    self._gateway_message(where, topic, payload, received)
                else:
                    result = self._ingestor.process(topic, payload, received)
                    if result is not None:
                        self._telemetry(result, received)
            except Exception as exc:
                self._internal_error(topic, payload, received, exc)
        # Also after a status or health message: its lines (health points, a "back online"
        # alert) must be in the spool before its acknowledgement is handed on.
        self._flush_store()

    def _store(self, lines: list[str]) -> None:
        """Lines for the store, collected while the worker holds its lock and handed to the
        spool after (`_flush_store`): a full spool then blocks the worker, never stats readers."""
        self._store_lines.extend(lines)

    def _flush_store(self) -> None:
        if self._store_lines:
            lines, self._store_lines = self._store_lines, []
            self._sink.put(lines)

    def _telemetry(self, result: IngestResult, received: float) -> None:
        self._store([points.reading_line(a.reading, a.sensor, a.site) for a in result.accepted])
        if result.seq_status != "unregistered":
            alive = min(result.sent, received)
            self._observe(self._engine.gateway_alive(result.tenant, result.gateway, alive), received)
        lines: list[str] = []
        for a in result.accepted:
            self._observe(self._engine.reading(a.reading, a.sensor, a.site, a.channel), received)
            r = a.reading
            if (
                self._journal is not None
                and r.q is Quality.OK
                and r.value is not None
                and journalled(a.channel)
            ):
                self._journal.add(a.sensor.tenant, a.sensor.id, r.kind, r.ts.timestamp(), r.value)
            t = a.reading.ts.timestamp()
            key = (a.sensor.tenant, a.sensor.id, a.reading.kind)
            if t - self._last_detection.get(key, -1e18) >= self.config.detections_every_s:
                snap = self._engine.snapshot(a.sensor, a.reading.kind, t)
                line = points.detection_line(snap, a.sensor, a.site, a.reading.kind) if snap else None
                if line is not None:
                    self._last_detection[key] = t
                    lines.append(line)
        for a in result.out_of_range:
            self._observe(self._engine.out_of_range(a.reading, a.sensor, a.site, a.channel), received)
        if lines:
            self._store(lines)

    def _gateway_message(
        self, where: topics.GatewayTopic, topic: str, payload: bytes, received: float
    ) -> None:
        """Status (birth / Last Will) and health: liveness of a registered gateway.  Times a
        gateway claims are capped at the arrival time: a clock running ahead must not keep it
        "alive" after it has gone."""
        gw_key = f"{where.tenant}/{where.gateway}"

        def reject(reason: str, detail: str) -> None:
            self._ingestor.reject_message(topic, gw_key, reason, detail, received, payload)

        if (where.tenant, where.gateway) not in self.registry.gateways:
            reject(RejectReason.UNKNOWN_GATEWAY, f"{gw_key} is not a registered gateway")
            return
        if len(payload) > MAX_PAYLOAD_BYTES:
            reject(RejectReason.OVERSIZE, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
            return
        try:
            if where.channel == "status":
                status = status_decoder.decode(payload)
                ok = (status.tenant, status.gateway) == (where.tenant, where.gateway)
                if ok and status.state == "offline":
                    obs = self._engine.gateway_will(where.tenant, where.gateway, received)
                elif ok:
                    alive = status.since.timestamp() if status.since is not None else received
                    obs = self._engine.gateway_alive(where.tenant, where.gateway, min(alive, received))
            else:
                health = health_decoder.decode(payload)
                ok = (health.tenant, health.gateway) == (where.tenant, where.gateway)
                if ok:
                    alive = min(health.ts.timestamp(), received)
                    obs = self._engine.gateway_alive(where.tenant, where.gateway, alive)
                    self._store(points.gateway_health_lines(health, self.registry, received))
        except msgspec.ValidationError as exc:
            reject(RejectReason.SCHEMA, str(exc))
            return
        except msgspec.DecodeError as exc:  # not JSON; bad UTF-8 too from msgspec 0.20
            reject(RejectReason.MALFORMED, str(exc)[:300])
            return
        except (UnicodeDecodeError, RecursionError) as exc:  # msgspec's own, for bad UTF-8 / deep nesting
            reject(RejectReason.MALFORMED, f"{type(exc).__name__}: {exc}"[:300])
            return
        if not ok:
            reject(RejectReason.TOPIC_MISMATCH, f"{where.channel} message of another gateway on {topic}")
            return
        self._observe(obs, received)

    def _observe(self, observations: list[Observation], now: float) -> None:
        if not observations:
            return
        before = self._outputs.count
        for obs in observations:
            self._alerts.observe(obs, now)
        if self._arrived is not None and self._outputs.count > before:
            # From the message's arrival to its alert event handed to the outputs (MQTT, log,
            # notifier queues): the consumer's part of the alert latency.
            self.alert_latency.observe(time.monotonic() - self._arrived)

    def tick(self, now: float | None = None) -> None:
        """Silence checks, the alert lifecycle's timers and the periodic health and dashboard
        points (the worker calls it every TICK_S)."""
        now = self.clock.now() if now is None else now
        with self._lock:
            try:
                self._observe(self._engine.tick(now), now)
                self._alerts.tick(now)
                if self._journal is not None:
                    self._journal.flush(now)
                if time.monotonic() - self._last_health >= self.config.metrics.health_every_s:
                    self._last_health = time.monotonic()
                    self._store(health_lines(self.stats, self.client_id, self.clock.now()))
            except Exception:
                if "tick" not in self._logged_errors:
                    self._logged_errors.add("tick")
                    log.exception("alert tick failed")
            self._dashboard_snapshot(now)
        self._flush_store()

    def _dashboard_snapshot(self, now: float) -> None:
        """The dashboards' state points (cloud.dashdata): at the first tick, then every
        `dashboards_every_s` of clock time (and at once if the clock went back)."""
        last = self._last_dashboards
        if last is not None and 0 <= now - last < self.config.dashboards_every_s:
            return
        self._last_dashboards = now
        # Thresholds change only with the registry: written less often (they are most of a
        # snapshot's lines), the dashboards draw them with fill(previous).
        last_t = self._last_thresholds
        with_thresholds = last_t is None or not 0 <= now - last_t < self.config.thresholds_every_s
        if with_thresholds:
            self._last_thresholds = now
        try:
            episodes = self._alert_store.unresolved()
            gateways = self._engine.gateways
            lines = dashdata.snapshot_lines(
                self.registry, gateways, episodes, now, self._shard, thresholds=with_thresholds
            )
            self._store(lines)
        except Exception:
            if "dashboards" not in self._logged_errors:
                self._logged_errors.add("dashboards")
                log.exception("dashboard snapshot failed")

    def _run(self) -> None:
        unacked: list[_Message] = []  # processed, their acknowledgement not yet handed on
        while True:
            try:
                item = self._queue.get(timeout=TICK_S)
            except queue.Empty:
                item = None
            now = self.clock.now()
            if now - self._last_tick >= TICK_S:
                self._last_tick = now
                self.tick(now)
            if isinstance(item, _Message) and self._stopping:
                # Stopping: what is still queued is left unprocessed and unacknowledged, so the
                # broker redelivers it to the next session.  Processing it first kept a core busy
                # for as long as the queue took (up to MAX_QUEUED_MESSAGES: minutes) after SIGTERM.
                self._skipped_at_stop += 1
                continue
            if isinstance(item, _Message):
                self._arrived = item.arrived
                # Asked when the message's turn comes, not when it arrives: a flood is queued
                # long before its first messages are found bad.
                if self._flood.admit(_gateway_key(item.topic)):
                    self.process_message(item.topic, item.payload, item.received)
                else:
                    self._rate_limited(item)
                self._arrived = None
                unacked.append(item)
                if len(unacked) < ACK_GROUP and not self._queue.empty():
                    continue
            if unacked:
                self._hand_over_acks(unacked)
                unacked = []
            if item is _STOP:
                return
            if isinstance(item, _Barrier):
                self._sink.mark(item.done)

    def _hand_over_acks(self, messages: list[_Message]) -> None:
        """Save the sequence accounting, then queue the acknowledgements behind the messages'
        lines: the broker forgets a message only once its lines are on disk and its sequence
        number is on record (otherwise a crash would leave a false gap)."""
        with self._lock:
            try:
                self._sequence_store.save(self._ingestor.sequences)
            except Exception:  # accounting only; never hold the data back for it
                log.exception("cannot save the sequence accounting")
        self._sink.put([], partial(self._ack_all, messages))

    def _ack_all(self, messages: list[_Message]) -> None:
        for m in messages:
            self._ack(m)

    def _ack(self, msg: _Message) -> None:
        """Spool thread: the message's lines are durable; tell the broker it may forget it."""
        if msg.qos == 0 or msg.connection != self._connection:
            # Delivered on an earlier connection: its packet id may now name another message,
            # and the broker redelivers this one anyway (a duplicate, harmless).
            return
        try:
            self._client.ack(msg.mid, msg.qos)
        except Exception as exc:  # a lost connection: the broker redelivers the message
            log.debug("ack of message %d failed: %s", msg.mid, exc)

    def _rate_limited(self, msg: _Message) -> None:
        where = topics.parse_gateway_topic(msg.topic)
        gw_key = f"{where.tenant}/{where.gateway}" if where else "?"
        with self._lock:
            skipped = self._flood.sample(gw_key)
            self._ingestor.reject_message(
                msg.topic,
                gw_key,
                RejectReason.RATE_LIMITED,
                f"gateway floods bad messages; {skipped} messages rejected unread since the last entry",
                msg.received,
                msg.payload,
                quarantine=skipped > 0,
            )

    def _internal_error(self, topic: str, payload: bytes, received: float, exc: Exception) -> None:
        where = topics.parse_gateway_topic(topic)
        gw_key = f"{where.tenant}/{where.gateway}" if where else "?"
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        kind = f"{type(exc).__name__} at {frame.filename}:{frame.lineno}" if frame else type(exc).__name__
        first = kind not in self._logged_errors
        self._logged_errors.add(kind)
        log.log(
            logging.ERROR if first else logging.DEBUG, "internal error on %s (%s)", topic, kind, exc_info=True
        )
        try:
            self._ingestor.reject_message(
                topic, gw_key, INTERNAL, f"{type(exc).__name__}: {exc}", received, payload
            )
        except Exception:
            log.debug("could not quarantine after an internal error", exc_info=True)

    # --- alerts and quarantine out ---

    def _publish_quarantine(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload, qos=0, retain=False)

    def _publish_alert(self, topic: str, payload: bytes) -> None:
        """Retained, QoS 1.  While the broker is away the latest event per topic is kept and
        published again on reconnect, so the retained state catches up (a subscriber may see an
        event twice, as QoS 1 allows)."""
        info = self._client.publish(topic, payload, qos=1, retain=True)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            with self._republish_lock:
                self._republish[topic] = payload
            return
        self._publishes.append(info)
        while self._publishes and _settled(self._publishes[0]):
            self._publishes.popleft()

    def _republish_alerts(self, client: mqtt.Client) -> None:
        with self._republish_lock:
            pending, self._republish = self._republish, {}
        for topic, payload in pending.items():
            client.publish(topic, payload, qos=1, retain=True)
        if pending:
            log.info("published %d alert states held while the broker was away", len(pending))

    def _wait_publishes(self, deadline: float) -> None:
        for info in self._publishes:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                info.wait_for_publish(left)
            except (RuntimeError, ValueError):  # not connected / queue full: nothing more to wait for
                break
        pending = sum(1 for i in self._publishes if not _settled(i)) + len(self._republish)
        if pending:
            log.warning("%d alert publishes not confirmed by the broker at stop", pending)

    # --- paho callbacks (network thread) ---

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            # paho retries every few seconds: say it once, then quietly until it changes
            level = logging.DEBUG if self._connect_problem == str(rc) else logging.ERROR
            self._connect_problem = str(rc)
            log.log(level, "broker %s refused the connection: %s", self.config.mqtt.url, rc)
            return
        self._connect_problem = None
        last_transport_error(mqttsetup.PAHO_LOG)  # a failed attempt's socket error is not the next drop's
        self._connected = True
        self._connection += 1
        log.info("connected to %s (session present: %s)", self.config.mqtt.url, flags.session_present)
        self._suback_pending = len(self._subscription_batches)
        for batch in self._subscription_batches:
            client.subscribe([(f, 1) for f in batch])
        if not self._subscription_batches:
            log.warning("this shard owns no registered gateway: nothing to subscribe to")
            self._ready.set()
        self._republish_alerts(client)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho retries with backoff and does not say why a TCP or TLS connect failed (its own
        # lines are at DEBUG): find out once per outage, off paho's thread, and say it once.
        if self._connect_problem == CANNOT_CONNECT:
            log.debug("broker %s: connection attempt failed again", self.config.mqtt.url)
            return
        self._connect_problem = CANNOT_CONNECT
        threading.Thread(target=self._explain_connect_failure, name="bosai-broker-probe", daemon=True).start()

    def _explain_connect_failure(self) -> None:
        m = self.config.mqtt
        try:
            tls = tls_context(m.tls, self.config_path) if m.use_tls else None
            reason = probe_broker(m.host, m.port, tls)
        except Exception as exc:  # a probe must never be what takes the consumer down
            reason = f"{type(exc).__name__}: {exc}"
        log.warning("cannot connect to broker %s: %s (retrying with backoff)", m.url, reason)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        if any(c.is_failure for c in codes):
            refused = sum(1 for c in codes if c.is_failure)
            log.error("broker refused %d topic filters: %s (check the broker ACL)", refused, codes[:5])
            return
        self._suback_pending -= 1
        if self._suback_pending <= 0:
            log.info("subscribed to %d topic filters", len(self.subscriptions))
            self._ready.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self._ready.clear()
        was_connected, self._connected = self._connected, False
        if was_connected and not self._stopping:
            why = disconnect_reason(rc, mqttsetup.PAHO_LOG)
            log.warning("disconnected from %s: %s; reconnecting", self.config.mqtt.url, why)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._stopping:
            return  # left unacknowledged: the broker redelivers it to the next session
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # brokers enforce UTF-8 topics; quarantine it if one does not
            topic = repr(msg._topic)
        self._queue.put(
            _Message(
                topic,
                bytes(msg.payload),
                self.clock.now(),
                msg.mid,
                msg.qos,
                self._connection,
                time.monotonic(),
            )
        )


def _gateway_key(topic: str) -> str:
    """ "tenant/gateway" of a bosai/v1/{tenant}/{gateway}/... topic, cheaply."""
    parts = topic.split("/", 4)
    return f"{parts[2]}/{parts[3]}" if len(parts) >= 4 else "?"


def _settled(info: mqtt.MQTTMessageInfo) -> bool:
    """Acknowledged by the broker, or failed for good (paho raises for those)."""
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return True


def alert_manager(config: AlertsConfig, store: AlertStore, outputs: AlertOutputs) -> AlertManager:
    def escalation(c: EscalationConfig) -> Escalation:
        minutes = (c.renotify_after_min, c.escalate_after_min)
        return Escalation(*(m * 60.0 if m is not None else None for m in minutes))

    url = config.dashboard_url

    def links(alert: Alert) -> list[str]:
        assert url is not None
        # The dashboards' site variable holds the site's name (what their legends show).
        fields = {
            "tenant": alert.tenant,
            "site": alert.site,
            "site_name": alert.site_name,
            "sensor": alert.sensor,
            "kind": alert.kind,
            "gateway": alert.gateway,
            "dashboard": dashboard_for(alert.kind),
        }
        return [url.format(**{k: quote(v, safe="") for k, v in fields.items()})]

    return AlertManager(
        store,
        outputs,
        disaster=escalation(config.disaster),
        maintenance=escalation(config.maintenance),
        max_tier=max((n.tier for n in config.notifiers), default=0),
        links=links if url else None,
    )
