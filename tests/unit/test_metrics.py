"""cloud.metrics: the /metrics endpoint scraped over real HTTP, the alert latency histogram and
its quantile estimate, and the `consumer_health` line-protocol points.

The endpoint is read back with prometheus_client's own text parser, so names, labels, types and
HELP texts are checked the way Prometheus sees them, not by comparing strings.  The health lines
against a real InfluxDB are in tests/integration/test_consumer_health_influxdb1.py.
"""

from __future__ import annotations

import math
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from cloud.lineproto import parse_line
from cloud.metrics import (
    ALERT_LATENCY_BUCKETS,
    HEALTH,
    AlertLatency,
    MetricsServer,
    health_lines,
    latency_quantile,
)
from cloud.stats import ConsumerStats, GatewaySequence, LatencySummary

HTTP_TIMEOUT_S = 30.0  # generous: a loaded 2-core CI box


def populated_stats(latencies: tuple[float, ...] = (0.003, 0.02, 0.02, 0.3, 2.0, 100.0)) -> ConsumerStats:
    """Every field set to a distinct value, so a mixed-up metric shows."""
    latency = AlertLatency()
    for seconds in latencies:
        latency.observe(seconds)
    return ConsumerStats(
        messages=1001,
        readings_accepted=5002,
        readings_rejected=7,
        rejected_by_reason={"schema": 3, "out_of_range": 7, "rate_limited": 40},
        lines_written=4990,
        write_errors=2,
        alerts=9,
        lost=5,
        duplicated=11,
        reordered=4,
        messages_rejected=43,
        security_events=1,
        broker_security_events={"auth_failed": 4, "acl_denied": 2},
        rejected_by_gateway={
            "demo-city/gw01": {"schema": 3, "out_of_range": 7},
            "other-town/gw 02": {"rate_limited": 40},
            "unregistered": {"schema": 2},
        },
        notifications_sent=8,
        notifications_pending=3,
        notifications_failed=1,
        sequences={
            "demo-city/gw01": GatewaySequence(lost=5, duplicated=10, reordered=4, resets=1),
            "other-town/gw 02": GatewaySequence(lost=0, duplicated=1, reordered=0, resets=2),
        },
        write_retries=6,
        lines_rejected_by_store=12,
        queue_depth=13,
        ack_pending=14,
        spool_lines=150,
        spool_bytes=16_384,
        spool_oldest_s=17.5,
        throttled_gateways=1,
        alert_latency=latency.summary(),
        uptime_s=3600.25,
    )


def empty_stats() -> ConsumerStats:
    return ConsumerStats(
        messages=0,
        readings_accepted=0,
        readings_rejected=0,
        rejected_by_reason={},
        lines_written=0,
        write_errors=0,
        alerts=0,
        lost=0,
        duplicated=0,
        reordered=0,
    )


def get(url: str) -> tuple[int, str, str]:
    """(status, content type, body) of a GET; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def scrape(port: int) -> dict[str, Metric]:
    status, content_type, body = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, body
    assert content_type.startswith("text/plain"), content_type
    return {family.name: family for family in text_string_to_metric_families(body)}


def value(families: dict[str, Metric], sample: str, **labels: str) -> float:
    """The value of the one sample named `sample` whose labels include `labels`."""
    family_name = sample.removesuffix("_total").removesuffix("_bucket").removesuffix("_count")
    family_name = family_name.removesuffix("_sum")
    found = [
        s.value
        for s in families[family_name].samples
        if s.name == sample and labels.items() <= s.labels.items()
    ]
    assert len(found) == 1, (sample, labels, families[family_name].samples)
    return found[0]


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[], ConsumerStats], str], tuple[MetricsServer, int]]]:
    """Start MetricsServers on free loopback ports; all are closed after the test."""
    servers: list[MetricsServer] = []

    def start(stats: Callable[[], ConsumerStats], consumer: str) -> tuple[MetricsServer, int]:
        server = MetricsServer(stats, consumer)
        servers.append(server)
        return server, server.start("127.0.0.1", 0)

    yield start
    for server in servers:
        server.close()


ServeFixture = Callable[[Callable[[], ConsumerStats], str], tuple[MetricsServer, int]]


# --- the endpoint ---


def test_scrape_exposes_the_snapshot_with_names_labels_and_values(serve: ServeFixture) -> None:
    stats = populated_stats()
    _, port = serve(lambda: stats, "consumer-a")
    m = scrape(port)
    c = {"consumer": "consumer-a"}

    expected_counters: dict[str, float] = {
        "bosai_consumer_messages_received_total": 1001,
        "bosai_consumer_messages_rejected_total": 43,
        "bosai_consumer_readings_accepted_total": 5002,
        "bosai_consumer_readings_rejected_total": 7,
        "bosai_consumer_security_events_total": 1,
        "bosai_consumer_lines_written_total": 4990,
        "bosai_consumer_write_errors_total": 2,
        "bosai_consumer_write_retries_total": 6,
        "bosai_consumer_lines_rejected_by_store_total": 12,
        "bosai_consumer_messages_duplicated_total": 11,
        "bosai_consumer_messages_reordered_total": 4,
        "bosai_consumer_sequence_resets_total": 3,  # summed over gateways
        "bosai_consumer_alerts_total": 9,
        "bosai_consumer_notifications_sent_total": 8,
        "bosai_consumer_notifications_failed_total": 1,
    }
    expected_gauges: dict[str, float] = {
        "bosai_consumer_messages_lost": 5,
        "bosai_consumer_notifications_pending": 3,
        "bosai_consumer_queue_depth": 13,
        "bosai_consumer_ack_pending": 14,
        "bosai_consumer_spool_lines": 150,
        "bosai_consumer_spool_bytes": 16_384,
        "bosai_consumer_spool_oldest_age_seconds": 17.5,
        "bosai_consumer_throttled_gateways": 1,
        "bosai_consumer_uptime_seconds": 3600.25,
    }
    for name, expected in expected_counters.items():
        assert m[name.removesuffix("_total")].type == "counter", name
        assert value(m, name, **c) == expected, name
    for name, expected in expected_gauges.items():
        assert m[name].type == "gauge", name
        assert value(m, name, **c) == expected, name

    assert m["bosai_rejected"].type == "counter"
    assert {s.labels["reason"]: s.value for s in m["bosai_rejected"].samples} == {
        "schema": 3,
        "out_of_range": 7,
        "rate_limited": 40,
    }
    assert all(s.labels["consumer"] == "consumer-a" for s in m["bosai_rejected"].samples)
    broker = m["bosai_consumer_broker_security_events"]
    assert broker.type == "counter"
    assert {s.labels["kind"]: s.value for s in broker.samples} == {"auth_failed": 4, "acl_denied": 2}

    by_gateway = {
        (s.labels["tenant"], s.labels["gateway"], s.labels["reason"]): s.value
        for s in m["bosai_gateway_rejected"].samples
    }
    assert by_gateway == {
        ("demo-city", "gw01", "schema"): 3,
        ("demo-city", "gw01", "out_of_range"): 7,
        ("other-town", "gw 02", "rate_limited"): 40,
        ("", "unregistered", "schema"): 2,  # the shared bucket past the per-gateway cap
    }


def test_per_gateway_sequence_accounting(serve: ServeFixture) -> None:
    stats = populated_stats()
    _, port = serve(lambda: stats, "consumer-a")
    m = scrape(port)
    gw01 = {"consumer": "consumer-a", "tenant": "demo-city", "gateway": "gw01"}
    gw02 = {"consumer": "consumer-a", "tenant": "other-town", "gateway": "gw 02"}

    # Lost numbers are taken back when they arrive late, so it is a gauge, not a counter.
    assert m["bosai_gateway_messages_lost"].type == "gauge"
    assert value(m, "bosai_gateway_messages_lost", **gw01) == 5
    assert value(m, "bosai_gateway_messages_lost", **gw02) == 0
    assert value(m, "bosai_gateway_messages_duplicated_total", **gw01) == 10
    assert value(m, "bosai_gateway_messages_duplicated_total", **gw02) == 1
    assert value(m, "bosai_gateway_messages_reordered_total", **gw01) == 4
    assert value(m, "bosai_gateway_sequence_resets_total", **gw02) == 2
    for name in ("messages_duplicated", "messages_reordered", "sequence_resets"):
        assert m[f"bosai_gateway_{name}"].type == "counter"


def test_names_follow_prometheus_conventions(serve: ServeFixture) -> None:
    _, port = serve(populated_stats, "consumer-a")
    m = scrape(port)
    assert len(m) >= 30
    for name, family in m.items():
        assert name.startswith("bosai_"), name
        assert family.documentation.strip(), f"{name} has no HELP text"
        assert family.type in ("counter", "gauge", "histogram"), name
        for sample in family.samples:
            assert sample.labels.get("consumer") == "consumer-a", sample
            if family.type == "counter":
                assert sample.name.endswith("_total"), sample.name
            else:
                assert not sample.name.endswith("_total"), sample.name


def test_alert_latency_histogram(serve: ServeFixture) -> None:
    stats = populated_stats(latencies=(0.003, 0.02, 0.02, 0.3, 2.0, 100.0))
    _, port = serve(lambda: stats, "consumer-a")
    family = scrape(port)["bosai_consumer_alert_latency_seconds"]
    assert family.type == "histogram"

    buckets = [(s.labels["le"], s.value) for s in family.samples if s.name.endswith("_bucket")]
    assert [float(le) for le, _ in buckets] == [*ALERT_LATENCY_BUCKETS, math.inf]
    cumulative = dict(buckets)
    assert cumulative["0.005"] == 1
    assert cumulative["0.01"] == 1
    assert cumulative["0.025"] == 3
    assert cumulative["0.25"] == 3
    assert cumulative["0.5"] == 4
    assert cumulative["2.5"] == 5
    assert cumulative["60.0"] == 5
    assert cumulative["+Inf"] == 6  # 100 s is beyond the last bound
    assert [n for _, n in buckets] == sorted(n for _, n in buckets)  # cumulative, never falling
    samples = {s.name: s.value for s in family.samples}
    assert samples["bosai_consumer_alert_latency_seconds_count"] == 6
    assert samples["bosai_consumer_alert_latency_seconds_sum"] == pytest.approx(102.343)


def test_histogram_is_present_and_empty_before_any_alert(serve: ServeFixture) -> None:
    _, port = serve(empty_stats, "idle")
    family = scrape(port)["bosai_consumer_alert_latency_seconds"]
    buckets = [s for s in family.samples if s.name.endswith("_bucket")]
    assert len(buckets) == len(ALERT_LATENCY_BUCKETS) + 1
    assert all(s.value == 0 for s in family.samples)


def test_every_scrape_takes_exactly_one_fresh_snapshot(serve: ServeFixture) -> None:
    calls = 0

    def stats() -> ConsumerStats:
        nonlocal calls
        calls += 1
        snapshot = populated_stats()
        snapshot.messages = calls * 100  # changes between scrapes, like a live consumer
        return snapshot

    server, port = serve(stats, "consumer-a")
    assert calls == 0  # registering the collector must not take a snapshot
    assert server.port == port
    for scrape_number in (1, 2, 3):
        m = scrape(port)
        assert calls == scrape_number
        assert value(m, "bosai_consumer_messages_received_total") == scrape_number * 100


def test_two_servers_in_one_process_do_not_clash(serve: ServeFixture) -> None:
    stats_a, stats_b = populated_stats(), empty_stats()
    stats_b.messages = 7
    server_a, port_a = serve(lambda: stats_a, "shard-0")
    _, port_b = serve(lambda: stats_b, "shard-1")
    assert port_a != port_b

    a, b = scrape(port_a), scrape(port_b)
    assert value(a, "bosai_consumer_messages_received_total", consumer="shard-0") == 1001
    assert value(b, "bosai_consumer_messages_received_total", consumer="shard-1") == 7
    assert {s.labels["consumer"] for f in b.values() for s in f.samples} == {"shard-1"}

    # The process-global registry is left alone (it would refuse a second consumer's names).
    assert b"bosai_" not in generate_latest(REGISTRY)

    server_a.close()
    assert value(scrape(port_b), "bosai_consumer_messages_received_total") == 7


def test_close_frees_the_port_and_is_idempotent() -> None:
    first = MetricsServer(empty_stats, "c")
    first.close()  # before start: nothing to do
    port = first.start("127.0.0.1", 0)
    scrape(port)
    first.close()
    first.close()
    assert first.port is None
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=HTTP_TIMEOUT_S)

    second = MetricsServer(empty_stats, "c")
    try:
        assert second.start("127.0.0.1", port) == port  # a restarted consumer gets its port back
        scrape(port)
        with pytest.raises(RuntimeError):
            second.start("127.0.0.1", 0)
    finally:
        second.close()


def test_other_paths_are_not_found(serve: ServeFixture) -> None:
    _, port = serve(populated_stats, "c")
    status, _, body = get(f"http://127.0.0.1:{port}/")
    assert status == 404
    assert "/metrics" in body
    assert get(f"http://127.0.0.1:{port}/metrics/")[0] == 200


def test_a_failing_snapshot_fails_the_scrape_not_the_server(
    serve: ServeFixture, caplog: pytest.LogCaptureFixture
) -> None:
    fail = threading.Event()
    fail.set()

    def stats() -> ConsumerStats:
        if fail.is_set():
            raise RuntimeError("boom")
        return populated_stats()

    _, port = serve(stats, "c")
    status, _, _ = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 500
    assert "metrics scrape failed" in caplog.text
    fail.clear()
    assert value(scrape(port), "bosai_consumer_messages_received_total") == 1001


# --- the histogram ---


def test_alert_latency_buckets_use_le_semantics() -> None:
    latency = AlertLatency(buckets=(0.1, 1.0))
    for seconds in (0.0, 0.1, 0.10001, 1.0, 1.5, -0.001, math.nan, math.inf):
        latency.observe(seconds)
    summary = latency.summary()
    assert summary.buckets == (0.1, 1.0)
    # 0.0, 0.1 and the clamped -0.001 are <= 0.1; 0.10001 and 1.0 are <= 1; 1.5 and inf beyond.
    # NaN is ignored: it has no bucket and would poison the sum.
    assert summary.counts == (3, 5, 7)
    assert summary.count == 7
    assert summary.sum == math.inf


def test_alert_latency_is_thread_safe() -> None:
    latency = AlertLatency()
    per_thread, threads = 5000, 4
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait()
        for i in range(per_thread):
            latency.observe(0.001 * (i % 100))

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    summary = latency.summary()
    assert summary.count == per_thread * threads
    assert summary.counts[-1] == summary.count
    assert summary.sum == pytest.approx(threads * (per_thread // 100) * sum(0.001 * i for i in range(100)))


@pytest.mark.parametrize("buckets", [(), (1.0, 1.0), (2.0, 1.0), (1.0, math.inf)])
def test_alert_latency_rejects_bad_buckets(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        AlertLatency(buckets)


def test_quantiles_interpolate_like_histogram_quantile() -> None:
    summary = LatencySummary(buckets=(0.1, 1.0, 10.0), counts=(50, 90, 100, 100), count=100, sum=123.0)
    assert latency_quantile(summary, 0.5) == pytest.approx(0.1)  # rank 50: top of the first bucket
    assert latency_quantile(summary, 0.25) == pytest.approx(0.05)  # halfway through [0, 0.1]
    assert latency_quantile(summary, 0.7) == pytest.approx(0.1 + 0.9 * 20 / 40)
    assert latency_quantile(summary, 0.99) == pytest.approx(1.0 + 9.0 * 9 / 10)

    beyond = LatencySummary(buckets=(0.1, 1.0), counts=(1, 1, 10), count=10, sum=500.0)
    assert latency_quantile(beyond, 0.99) == 1.0  # in +Inf: the highest finite bound, as PromQL
    assert latency_quantile(AlertLatency().summary(), 0.5) is None


# --- health points ---


def test_health_line_has_every_field_with_its_type() -> None:
    stats = populated_stats()
    lines = health_lines(stats, "consumer-a", now=1_700_000_000.1234)
    assert len(lines) == 1
    point = parse_line(lines[0])
    assert point.measurement == HEALTH == "consumer_health"
    assert point.tags == {"consumer": "consumer-a"}
    assert point.ts_ms == 1_700_000_000_123  # milliseconds, like every other point

    expected_ints = {
        "messages": 1001,
        "messages_rejected": 43,
        "readings_accepted": 5002,
        "readings_rejected": 7,
        "rejected": 50,
        "security_events": 1,
        "broker_security_events": 6,
        "lines_written": 4990,
        "write_errors": 2,
        "write_retries": 6,
        "lines_rejected_by_store": 12,
        "lost": 5,
        "duplicated": 11,
        "reordered": 4,
        "resets": 3,
        "gateways_seen": 2,
        "alerts": 9,
        "notifications_sent": 8,
        "notifications_pending": 3,
        "notifications_failed": 1,
        "queue_depth": 13,
        "ack_pending": 14,
        "spool_lines": 150,
        "spool_bytes": 16_384,
        "throttled_gateways": 1,
        "alert_latency_count": 6,
    }
    floats = {"spool_oldest_s", "uptime_s", "alert_latency_p50_s", "alert_latency_p99_s"}
    assert set(point.fields) == set(expected_ints) | floats
    for name, expected in expected_ints.items():
        field = point.fields[name]
        assert isinstance(field, int) and not isinstance(field, bool), name
        assert field == expected, name
    for name in floats:
        assert isinstance(point.fields[name], float), name
    assert point.fields["spool_oldest_s"] == 17.5
    assert point.fields["uptime_s"] == 3600.25
    assert point.fields["alert_latency_p50_s"] == pytest.approx(0.025)  # rank 3 of 6: 0.01..0.025
    assert point.fields["alert_latency_p99_s"] == 60.0  # the slowest is beyond the last bucket


def test_health_line_before_any_alert_keeps_field_types() -> None:
    point = parse_line(health_lines(empty_stats(), "idle", now=1_700_000_000.0)[0])
    # Whole-number values stay floats/ints as declared: InfluxDB refuses a field changing type.
    assert point.fields["spool_oldest_s"] == 0.0 and isinstance(point.fields["spool_oldest_s"], float)
    assert point.fields["lines_written"] == 0 and isinstance(point.fields["lines_written"], int)
    assert point.fields["alert_latency_count"] == 0
    assert "alert_latency_p50_s" not in point.fields  # nothing to estimate yet
    assert "alert_latency_p99_s" not in point.fields


def test_health_line_escapes_the_consumer_name() -> None:
    name = "consumer 1,shard=2 旭川"
    point = parse_line(health_lines(empty_stats(), name, now=1.0)[0])
    assert point.tags == {"consumer": name}
    assert point.ts_ms == 1000
