"""The consumer's health, for operators: a Prometheus `/metrics` endpoint and `consumer_health` points.

Both are views of one `ConsumerStats` snapshot (cloud.stats), so the two never disagree:

- `MetricsServer` serves `GET /metrics` in the Prometheus text format on a daemon thread.  A
  custom collector turns the snapshot into metric families on every scrape (one `stats()` call
  per scrape, so all numbers of a scrape are consistent), instead of mirroring every counter into
  prometheus_client's own Counter objects: the consumer already counts, and two copies would
  drift.  Each server has a private `CollectorRegistry`, never the process-global one, so several
  consumers in one process (tests, a shard supervisor) do not clash.  Every family carries the
  `consumer` label (the MQTT client id), so a dashboard can tell shards apart even behind one
  scrape target.  See docs/metrics.md for every metric and example alert rules.
- `health_lines` writes the same numbers as InfluxDB line protocol (measurement
  `consumer_health`, tag `consumer`), so sites without Prometheus can graph the consumer in
  Grafana next to the readings, from the same store.
- `AlertLatency` is the histogram behind `bosai_consumer_alert_latency_seconds`: fixed buckets,
  so it costs a few integers however many alerts fire, and p50/p99 for the health points are
  estimated from it the way PromQL's `histogram_quantile` does.

`lost` is a gauge, not a counter: the sequence accounting (cloud.sequence) counts a missing
number as lost until it arrives late, then takes it back.  Everything else that only grows is a
counter (`*_total`), and restarts reset them, which `rate()` and `increase()` handle.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from cloud import lineproto
from cloud.stats import ConsumerStats, LatencySummary

log = logging.getLogger(__name__)

__all__ = [
    "ALERT_LATENCY_BUCKETS",
    "HEALTH",
    "AlertLatency",
    "MetricsServer",
    "health_lines",
    "latency_quantile",
]

HEALTH = "consumer_health"

# Upper bounds in seconds: the consumer's part of an alert normally takes milliseconds; seconds
# mean a blocked worker (store writes, a slow notifier hook), a minute means something is wrong.
ALERT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

METRICS_PATH = "/metrics"
CLOSE_TIMEOUT_S = 5.0
# How often the serving thread looks for close(): it bounds how long close() (and so the
# consumer's stop) waits; the standard 0.5 s adds up in test suites that start many consumers.
SHUTDOWN_POLL_S = 0.05


# --- alert latency histogram ---


class AlertLatency:
    """A thread-safe histogram of seconds with fixed buckets (Prometheus `le` semantics)."""

    def __init__(self, buckets: Sequence[float] = ALERT_LATENCY_BUCKETS) -> None:
        bounds = tuple(float(b) for b in buckets)
        if not bounds or any(b <= a for a, b in itertools.pairwise(bounds)):
            raise ValueError("buckets must be a non-empty ascending sequence")
        if not all(math.isfinite(b) for b in bounds):
            raise ValueError("buckets are finite upper bounds; +Inf is implicit")
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # per bucket (not cumulative), the last is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        if math.isnan(seconds):
            return  # a NaN would poison the sum forever; there is no bucket for it either
        seconds = max(0.0, seconds)  # clocks are monotonic; a negative value is rounding noise
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le = "<=").
        i = bisect.bisect_left(self._bounds, seconds)
        with self._lock:
            self._counts[i] += 1
            self._sum += seconds

    def summary(self) -> LatencySummary:
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        cumulative: list[int] = []
        running = 0
        for n in counts:
            running += n
            cumulative.append(running)
        return LatencySummary(self._bounds, tuple(cumulative), running, total)


def latency_quantile(summary: LatencySummary, q: float) -> float | None:
    """The q-quantile (0..1) estimated from the buckets; None without observations.

    Same estimate as PromQL's `histogram_quantile`: linear interpolation inside the bucket that
    holds the rank, the first bucket starting at 0, and the highest finite bound when the rank
    falls into +Inf (the histogram cannot say more), so both views report the same p99.
    """
    if summary.count <= 0 or not summary.buckets:
        return None
    rank = q * summary.count
    lower, below = 0.0, 0
    for bound, cumulative in zip(summary.buckets, summary.counts, strict=False):
        if cumulative >= rank and cumulative > below:
            return lower + (bound - lower) * (rank - below) / (cumulative - below)
        lower, below = bound, cumulative
    return summary.buckets[-1]


# --- Prometheus exposition ---


def _split_gateway(key: str) -> tuple[str, str]:
    """("tenant", "gateway") of a "tenant/gateway" key; a key without "/" (cloud.ingest's shared
    `unregistered` bucket, once too many unknown gateways were seen) is a gateway of no tenant."""
    tenant, sep, gateway = key.partition("/")
    return (tenant, gateway) if sep else ("", key)


# (metric name, help, value) for the consumer-wide counters and gauges.
_COUNTERS: tuple[tuple[str, str, Callable[[ConsumerStats], float]], ...] = (
    (
        "bosai_consumer_messages_received_total",
        "MQTT messages received (telemetry, status and health), including rejected ones.",
        lambda s: s.messages,
    ),
    (
        "bosai_consumer_messages_rejected_total",
        "Whole messages rejected (malformed, schema, version, topic mismatch, rate limited, ...).",
        lambda s: s.messages_rejected,
    ),
    (
        "bosai_consumer_readings_accepted_total",
        "Readings that passed validation and went to detection and the store.",
        lambda s: s.readings_accepted,
    ),
    (
        "bosai_consumer_readings_rejected_total",
        "Readings rejected one by one inside otherwise valid messages.",
        lambda s: s.readings_rejected,
    ),
    (
        "bosai_consumer_security_events_total",
        "Readings of sensors not registered to the gateway that sent them.",
        lambda s: s.security_events,
    ),
    (
        "bosai_consumer_lines_written_total",
        "Line-protocol lines the store accepted.",
        lambda s: s.lines_written,
    ),
    (
        "bosai_consumer_write_errors_total",
        "Store writes that failed.",
        lambda s: s.write_errors,
    ),
    (
        "bosai_consumer_write_retries_total",
        "Store requests retried (server down, HTTP 429/503, timeouts).",
        lambda s: s.write_retries,
    ),
    (
        "bosai_consumer_lines_rejected_by_store_total",
        "Lines the store refused as bad data (HTTP 4xx); they are quarantined, not retried.",
        lambda s: s.lines_rejected_by_store,
    ),
    (
        "bosai_consumer_messages_duplicated_total",
        "Telemetry messages whose sequence number was seen before (QoS 1 redelivery, replay).",
        lambda s: s.duplicated,
    ),
    (
        "bosai_consumer_messages_reordered_total",
        "Telemetry messages that arrived late and filled a sequence gap.",
        lambda s: s.reordered,
    ),
    (
        "bosai_consumer_sequence_resets_total",
        "Times a gateway's sequence counter started again (new outbox, replaced storage).",
        lambda s: sum(g.resets for g in s.sequences.values()),
    ),
    (
        "bosai_consumer_alerts_total",
        "Alert events raised, escalated, de-escalated, reminded or resolved.",
        lambda s: s.alerts,
    ),
    (
        "bosai_consumer_notifications_sent_total",
        "Notifications delivered by the notifiers (webhook, e-mail, ...).",
        lambda s: s.notifications_sent,
    ),
    (
        "bosai_consumer_notifications_failed_total",
        "Notifications given up after retries or dropped because a queue was full.",
        lambda s: s.notifications_failed,
    ),
)

_GAUGES: tuple[tuple[str, str, Callable[[ConsumerStats], float]], ...] = (
    (
        "bosai_consumer_messages_lost",
        "Telemetry sequence numbers skipped and not (yet) arrived, all gateways; falls when late "
        "messages arrive.",
        lambda s: s.lost,
    ),
    (
        "bosai_consumer_notifications_pending",
        "Notifications waiting to be delivered.",
        lambda s: s.notifications_pending,
    ),
    (
        "bosai_consumer_queue_depth",
        "Messages received from the broker and waiting for the worker.",
        lambda s: s.queue_depth,
    ),
    (
        "bosai_consumer_ack_pending",
        "Messages processed and waiting for their lines to be durable before the broker ack.",
        lambda s: s.ack_pending,
    ),
    (
        "bosai_consumer_spool_lines",
        "Lines in the disk spool not yet accepted by the store.",
        lambda s: s.spool_lines,
    ),
    (
        "bosai_consumer_spool_bytes",
        "Bytes in the disk spool not yet accepted by the store.",
        lambda s: s.spool_bytes,
    ),
    (
        "bosai_consumer_spool_oldest_age_seconds",
        "Age of the oldest line waiting in the spool (0 when empty): how far the store is behind.",
        lambda s: s.spool_oldest_s,
    ),
    (
        "bosai_consumer_throttled_gateways",
        "Gateways currently rate-limited for flooding the consumer with bad messages.",
        lambda s: s.throttled_gateways,
    ),
    (
        "bosai_consumer_uptime_seconds",
        "Seconds since the consumer started (counters reset when it restarts).",
        lambda s: s.uptime_s,
    ),
)

# (metric name, help, GatewaySequence attribute, is a counter) per gateway.
_GATEWAY_SEQUENCES: tuple[tuple[str, str, str, bool], ...] = (
    ("bosai_gateway_messages_lost", "Sequence numbers of this gateway not (yet) arrived.", "lost", False),
    (
        "bosai_gateway_messages_duplicated_total",
        "Messages of this gateway whose sequence number was seen before.",
        "duplicated",
        True,
    ),
    (
        "bosai_gateway_messages_reordered_total",
        "Messages of this gateway that arrived late and filled a sequence gap.",
        "reordered",
        True,
    ),
    (
        "bosai_gateway_sequence_resets_total",
        "Times this gateway's sequence counter started again.",
        "resets",
        True,
    ),
)


def _metric_families(stats: ConsumerStats, consumer: str) -> Iterator[Metric]:
    """The snapshot as Prometheus metric families (values are floats in the exposition)."""
    c = [consumer]
    for name, help_text, value in _COUNTERS:
        counter = CounterMetricFamily(name, help_text, labels=["consumer"])
        counter.add_metric(c, float(value(stats)))
        yield counter
    for name, help_text, value in _GAUGES:
        gauge = GaugeMetricFamily(name, help_text, labels=["consumer"])
        gauge.add_metric(c, float(value(stats)))
        yield gauge

    by_reason = CounterMetricFamily(
        "bosai_rejected_total",
        "Rejections by reason, message- and reading-level (the quarantine file has the details).",
        labels=["consumer", "reason"],
    )
    for reason, n in sorted(stats.rejected_by_reason.items()):
        by_reason.add_metric([consumer, reason], float(n))
    yield by_reason

    broker = CounterMetricFamily(
        "bosai_consumer_broker_security_events_total",
        "Failed logins (auth_failed), TLS failures and ACL denials in the broker's log.",
        labels=["consumer", "kind"],
    )
    for kind, n in sorted(stats.broker_security_events.items()):
        broker.add_metric([consumer, kind], float(n))
    yield broker

    by_gateway = CounterMetricFamily(
        "bosai_gateway_rejected_total",
        "Rejections by gateway and reason; past the cap on per-gateway counters, gateways not in "
        'the registry share gateway="unregistered".',
        labels=["consumer", "tenant", "gateway", "reason"],
    )
    for key, reasons in sorted(stats.rejected_by_gateway.items()):
        tenant, gateway = _split_gateway(key)
        for reason, n in sorted(reasons.items()):
            by_gateway.add_metric([consumer, tenant, gateway, reason], float(n))
    yield by_gateway

    sequences = sorted((_split_gateway(k), seq) for k, seq in stats.sequences.items())
    for name, help_text, attribute, is_counter in _GATEWAY_SEQUENCES:
        labels = ["consumer", "tenant", "gateway"]
        family: CounterMetricFamily | GaugeMetricFamily = (
            CounterMetricFamily(name, help_text, labels=labels)
            if is_counter
            else GaugeMetricFamily(name, help_text, labels=labels)
        )
        for (tenant, gateway), seq in sequences:
            family.add_metric([consumer, tenant, gateway], float(getattr(seq, attribute)))
        yield family

    latency = stats.alert_latency or AlertLatency().summary()  # empty, same buckets: always present
    histogram = HistogramMetricFamily(
        "bosai_consumer_alert_latency_seconds",
        "From a message's arrival to its alert event handed to the outputs (MQTT, log, notifiers).",
        labels=["consumer"],
    )
    buckets = [(_bound(b), float(n)) for b, n in zip(latency.buckets, latency.counts, strict=False)]
    buckets.append(("+Inf", float(latency.count)))
    histogram.add_metric(c, buckets, latency.sum)
    yield histogram


def _bound(seconds: float) -> str:
    # prometheus_client's own histograms spell bounds as Python floats ("0.005", "1.0", "60.0").
    return repr(float(seconds))


class _SnapshotCollector(Collector):
    def __init__(self, stats: Callable[[], ConsumerStats], consumer: str) -> None:
        self._stats = stats
        self._consumer = consumer

    def collect(self) -> Iterable[Metric]:
        # Materialized first: one stats() call per scrape, even if the snapshot is slow to take.
        return list(_metric_families(self._stats(), self._consumer))


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Prometheus scrapes every few seconds: one log line each would drown the consumer's log."""


def _server_class(host: str, port: int) -> type[WSGIServer]:
    """ThreadingWSGIServer with the address family of `host` (IPv6 listen addresses work)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

    return Server


class MetricsServer:
    """`GET /metrics` in the Prometheus text format, from `stats()` at every scrape."""

    def __init__(self, stats: Callable[[], ConsumerStats], consumer: str) -> None:
        self.consumer = consumer
        self.registry = CollectorRegistry(auto_describe=False)  # private: servers must not clash
        self.registry.register(_SnapshotCollector(stats, consumer))
        self._metrics_app = make_wsgi_app(self.registry)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self, host: str, port: int) -> int:
        """Listen on host:port (0: a free port) and serve on a daemon thread; the bound port."""
        if self._server is not None:
            raise RuntimeError("metrics server already started")
        server = make_server(host, port, self._app, _server_class(host, port), handler_class=_QuietHandler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            args=(SHUTDOWN_POLL_S,),
            name=f"bosai-metrics-{server.server_port}",
            daemon=True,
        )
        self._thread.start()
        return server.server_port

    @property
    def port(self) -> int | None:
        return self._server.server_port if self._server is not None else None

    def close(self) -> None:
        """Stop serving and free the port; safe to call twice or before start()."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()  # returns once serve_forever has left its loop
        server.server_close()
        if self._thread is not None:
            self._thread.join(CLOSE_TIMEOUT_S)
            self._thread = None

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # prometheus_client's app answers on any path; a mistyped scrape URL should fail loudly.
        if environ.get("PATH_INFO", "") not in (METRICS_PATH, METRICS_PATH + "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"not found; metrics are at {METRICS_PATH}\n".encode()]
        try:
            body: Iterable[bytes] = self._metrics_app(environ, start_response)
        except Exception:
            # A failing snapshot is a failed scrape (Prometheus sets `up` to 0), never a dead
            # server; logged here because wsgiref would print the traceback to stderr.
            log.exception("metrics scrape failed")
            start_response("500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"metrics snapshot failed; see the consumer log\n"]
        return body


# --- InfluxDB health points ---

# Field name -> value, integers (counters and gauges) and floats (ages, latencies).
_HEALTH_INTS: tuple[tuple[str, Callable[[ConsumerStats], int]], ...] = (
    ("messages", lambda s: s.messages),
    ("messages_rejected", lambda s: s.messages_rejected),
    ("readings_accepted", lambda s: s.readings_accepted),
    ("readings_rejected", lambda s: s.readings_rejected),
    ("rejected", lambda s: sum(s.rejected_by_reason.values())),
    ("security_events", lambda s: s.security_events),
    ("broker_security_events", lambda s: sum(s.broker_security_events.values())),
    ("lines_written", lambda s: s.lines_written),
    ("write_errors", lambda s: s.write_errors),
    ("write_retries", lambda s: s.write_retries),
    ("lines_rejected_by_store", lambda s: s.lines_rejected_by_store),
    ("lost", lambda s: s.lost),
    ("duplicated", lambda s: s.duplicated),
    ("reordered", lambda s: s.reordered),
    ("resets", lambda s: sum(g.resets for g in s.sequences.values())),
    ("gateways_seen", lambda s: len(s.sequences)),
    ("alerts", lambda s: s.alerts),
    ("notifications_sent", lambda s: s.notifications_sent),
    ("notifications_pending", lambda s: s.notifications_pending),
    ("notifications_failed", lambda s: s.notifications_failed),
    ("queue_depth", lambda s: s.queue_depth),
    ("ack_pending", lambda s: s.ack_pending),
    ("spool_lines", lambda s: s.spool_lines),
    ("spool_bytes", lambda s: s.spool_bytes),
    ("throttled_gateways", lambda s: s.throttled_gateways),
    ("alert_latency_count", lambda s: s.alert_latency.count if s.alert_latency else 0),
)


def health_lines(stats: ConsumerStats, consumer: str, now: float) -> list[str]:
    """The `consumer_health` point of this snapshot at `now` (epoch seconds), in milliseconds.

    Every field is always written with the same type (InfluxDB rejects a field whose type
    changes within a shard), except the latency quantiles, which are left out until the first
    alert: there is nothing to estimate, and a 0 would read as "instant" on a dashboard.
    """
    fields = {name: lineproto.int_field(value(stats)) for name, value in _HEALTH_INTS}
    fields["spool_oldest_s"] = lineproto.float_field(stats.spool_oldest_s)
    fields["uptime_s"] = lineproto.float_field(stats.uptime_s)
    if stats.alert_latency is not None:
        for name, q in (("alert_latency_p50_s", 0.5), ("alert_latency_p99_s", 0.99)):
            estimate = latency_quantile(stats.alert_latency, q)
            if estimate is not None:
                fields[name] = lineproto.float_field(estimate)
    return [lineproto.line(HEALTH, {"consumer": consumer}, fields, round(now * 1000))]
