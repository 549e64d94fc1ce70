"""`consumer_health` points (cloud.metrics.health_lines) against a real InfluxDB 1.6.

The points must be accepted as written, keep their field types (a counter written as a float once
would make InfluxDB refuse every later point of that shard), and answer the InfluxQL a Grafana
panel would ask: the latest value per consumer, and a counter's growth over time.
"""

from __future__ import annotations

import pytest

from cloud.metrics import AlertLatency, health_lines
from cloud.stats import ConsumerStats, GatewaySequence
from tests.servers import InfluxDB1, series_rows

pytestmark = pytest.mark.integration

DB = "bosai"
T0 = 1_700_000_000.123  # seconds; the sub-second part shows a precision mix-up
MINUTE = 60.0


def stats(lines_written: int, *, alerts: bool) -> ConsumerStats:
    latency = AlertLatency()
    if alerts:
        for seconds in (0.004, 0.03, 0.03, 0.2):
            latency.observe(seconds)
    return ConsumerStats(
        messages=lines_written // 5,
        readings_accepted=lines_written,
        readings_rejected=2,
        rejected_by_reason={"schema": 2, "out_of_range": 1},
        lines_written=lines_written,
        write_errors=1,
        alerts=4 if alerts else 0,
        lost=3,
        duplicated=2,
        reordered=1,
        sequences={"demo-city/gw01": GatewaySequence(lost=3, duplicated=2, reordered=1, resets=1)},
        spool_lines=25,
        spool_bytes=4096,
        spool_oldest_s=12.5,
        alert_latency=latency.summary(),
        uptime_s=600.0,
    )


@pytest.fixture
def influx(influxdb1: InfluxDB1) -> InfluxDB1:
    influxdb1.create_db(DB)
    return influxdb1


def test_health_points_read_back_per_consumer(influx: InfluxDB1) -> None:
    consumers = {"shard-0": 1000, "石狩 shard, 1": 2000}  # a name that needs escaping
    lines: list[str] = []
    for name, base in consumers.items():
        # Three points a minute apart; the first before any alert (no latency quantiles yet).
        for i in range(3):
            lines += health_lines(stats(base + 100 * i, alerts=i > 0), name, T0 + i * MINUTE)
    influx.write_lp(DB, lines)

    result = influx.query(DB, 'SELECT last("lines_written") FROM "consumer_health" GROUP BY "consumer"')
    last = {row["consumer"]: row["last"] for row in series_rows(result)}
    assert last == {name: base + 200 for name, base in consumers.items()}

    rows = series_rows(
        influx.query(
            DB,
            'SELECT "lines_written", "spool_oldest_s", "alert_latency_p50_s", "alert_latency_p99_s" '
            'FROM "consumer_health" WHERE "consumer" = \'shard-0\'',
        )
    )
    t0_ms = round(T0 * 1000)
    assert [row["time"] for row in rows] == [t0_ms, t0_ms + 60_000, t0_ms + 120_000]
    assert [row["lines_written"] for row in rows] == [1000, 1100, 1200]
    assert all(row["spool_oldest_s"] == 12.5 for row in rows)
    assert rows[0]["alert_latency_p99_s"] is None  # absent before the first alert
    assert rows[1]["alert_latency_p50_s"] == pytest.approx(0.025 + 0.025 * 0.5)  # rank 2 of 4
    assert rows[2]["alert_latency_p99_s"] == pytest.approx(0.1 + 0.15 * 0.96)  # in (0.1, 0.25]


def test_field_types_are_stable(influx: InfluxDB1) -> None:
    # Integer counters and gauges even when they are 0, floats for ages and latencies even when
    # they are whole numbers: written twice, so a type flip would be refused on the second write.
    influx.write_lp(DB, health_lines(stats(0, alerts=True), "c", T0))
    influx.write_lp(DB, health_lines(stats(500, alerts=True), "c", T0 + MINUTE))

    types = {
        row["fieldKey"]: row["fieldType"]
        for row in series_rows(influx.query(DB, 'SHOW FIELD KEYS FROM "consumer_health"'))
    }
    floats = {"spool_oldest_s", "uptime_s", "alert_latency_p50_s", "alert_latency_p99_s"}
    assert {k for k, t in types.items() if t == "float"} == floats
    assert {t for k, t in types.items() if k not in floats} == {"integer"}
    assert {"lines_written", "lost", "spool_bytes", "queue_depth", "alert_latency_count"} <= set(types)

    tags = series_rows(influx.query(DB, 'SHOW TAG KEYS FROM "consumer_health"'))
    assert [row["tagKey"] for row in tags] == ["consumer"]


def test_counter_growth_by_interval(influx: InfluxDB1) -> None:
    # What a "lines written per 5 min" panel asks: non_negative_difference of the counter.
    points = [health_lines(stats(1000 + 50 * i, alerts=False), "c", T0 + i * MINUTE)[0] for i in range(6)]
    influx.write_lp(DB, points)
    rows = series_rows(
        influx.query(DB, 'SELECT non_negative_difference("lines_written") FROM "consumer_health"')
    )
    assert [row["non_negative_difference"] for row in rows] == [50] * 5
