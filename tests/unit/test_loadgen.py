"""The ingest benchmark's load generator: valid payloads, clean sequences, an exact expected point set."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.loadgen import (
    KIND,
    TENANT,
    LoadSpec,
    counts_after,
    expected_points,
    expected_series,
    gateway_id,
    level,
    payload,
    publisher_gateways,
    samples_of,
    schedule,
    sensor_id,
    span_ms,
    stream_id,
    topic,
    write_registry,
)
from cloud import points
from cloud.registry import load_registry
from wire import topics
from wire.telemetry import Quality, Telemetry, decode_telemetry

T0 = 1_790_000_000_000  # ms; the payloads are decoded "now" = a day later
NOW = T0 / 1000 + 86400
SPEC = LoadSpec(gateways=3, sensors=4, readings=10, interval_ms=60_000, t0_ms=T0)


def decoded(spec: LoadSpec, g: int, seq: int) -> Telemetry:
    return decode_telemetry(payload(spec, g, seq), now=NOW)


def test_payloads_decode_as_valid_telemetry_of_their_gateway() -> None:
    for g in range(SPEC.gateways):
        msg = decoded(SPEC, g, 1)
        assert (msg.tenant, msg.gateway, msg.seq, msg.stream) == (TENANT, gateway_id(g), 1, stream_id(g))
        assert topics.parse_gateway_topic(topic(g)) is not None
        assert len(msg.readings) == SPEC.readings
        assert all(r.q is Quality.OK and r.kind == KIND for r in msg.readings)
        assert {r.sensor for r in msg.readings} <= {sensor_id(g, s) for s in range(SPEC.sensors)}


def test_sequence_numbers_run_from_one_per_gateway_and_sample_times_are_distinct() -> None:
    messages = 7
    for g in range(SPEC.gateways):
        seen: Counter[tuple[str, int]] = Counter()
        for seq in range(1, messages + 1):
            msg = decoded(SPEC, g, seq)
            assert msg.seq == seq
            for r in msg.readings:
                seen[(r.sensor, points.ts_ms(r.ts))] += 1
        assert max(seen.values()) == 1  # no (sensor, time) twice: every reading is its own point
        assert len(seen) == messages * SPEC.readings
        # Each sensor's samples are spaced by the interval, from t0.
        for s in range(SPEC.sensors):
            times = sorted(t for sensor, t in seen if sensor == sensor_id(g, s))
            assert times == [T0 + n * SPEC.interval_ms for n in range(len(times))]


def test_expected_point_set_is_exactly_what_the_payloads_carry() -> None:
    counts = {0: 5, 1: 3, 2: 0}
    carried = {
        (r.sensor, points.ts_ms(r.ts), r.value)
        for g, m in counts.items()
        for seq in range(1, m + 1)
        for r in decoded(SPEC, g, seq).readings
    }
    expected = list(expected_points(SPEC, counts))
    assert len(expected) == len(set(expected)) == (5 + 3) * SPEC.readings
    assert set(expected) == carried
    series = expected_series(SPEC, counts)
    assert sum(e.count for e in series.values()) == len(expected)
    assert not any(e.gateway == 2 for e in series.values())


def test_sent_time_can_be_the_runs_own() -> None:
    spec = LoadSpec(2, 3, 5, 60_000, T0, sent_ms=T0 + 86_000_000)
    assert points.ts_ms(decoded(spec, 0, 4).sent) == T0 + 86_000_000
    assert points.ts_ms(decoded(SPEC, 0, 1).sent) > T0  # default: just after its newest reading


@pytest.mark.parametrize("readings, sensors", [(10, 4), (3, 5), (7, 7), (1, 2)])
def test_samples_per_sensor_and_span(readings: int, sensors: int) -> None:
    spec = LoadSpec(1, sensors, readings, 1000, T0)
    for m in range(6):
        got = Counter(r.sensor for seq in range(1, m + 1) for r in decoded(spec, 0, seq).readings)
        for s in range(sensors):
            assert samples_of(spec, m, s) == got[sensor_id(0, s)]
    assert span_ms(spec, 5) == (samples_of(spec, 5, 0) - 1) * 1000


def test_publishers_split_gateways_and_any_prefix_of_the_schedule_is_a_prefix_per_gateway() -> None:
    slices = [publisher_gateways(10, 3, i) for i in range(3)]
    assert sorted(g for s in slices for g in s) == list(range(10))
    order = list(schedule(SPEC, slices[0], 4))
    for published in range(len(order) + 1):
        per_gateway = Counter(g for g, _ in order[:published])
        assert counts_after(slices[0], published) == {g: per_gateway[g] for g in slices[0]}
        for g in slices[0]:  # the messages of a gateway in the prefix are seq 1..n
            assert [seq for h, seq in order[:published] if h == g] == list(range(1, per_gateway[g] + 1))


def test_registry_loads_and_matches_the_tags_the_consumer_writes(tmp_path: Path) -> None:
    registry = load_registry(write_registry(SPEC, tmp_path / "registry.yaml"))
    assert len(registry.sensors) == SPEC.gateways * SPEC.sensors
    series = expected_series(SPEC, {g: 2 for g in range(SPEC.gateways)})
    for g in range(SPEC.gateways):
        for r in decoded(SPEC, g, 1).readings:
            sensor = registry.sensor_for(TENANT, gateway_id(g), r.sensor)
            assert sensor is not None
            channel = sensor.channels[KIND]
            assert not channel.out_of_range(r)
            assert channel.thresholds and r.value is not None and r.value < channel.thresholds[0].value
            line = points.reading_line(r, sensor, registry.site_of(sensor))
            head = re.split(r"(?<!\\) ", line, maxsplit=1)[0]
            pairs = (kv.split("=", 1) for kv in re.split(r"(?<!\\),", head)[1:])
            tags = {k: v.replace("\\ ", " ") for k, v in pairs}
            assert tags == series[r.sensor].tags()


def test_levels_change_slowly_enough_for_the_quality_checks() -> None:
    # max_rate_per_h is 10 m/h: at a sample a minute, a step must stay far below 10/60 m.
    steps = [abs(level(1, 2, n + 1) - level(1, 2, n)) for n in range(1200)]
    assert 0 < max(steps) < 0.01


def test_verification_counts_missing_duplicate_wrong_and_unexpected_samples() -> None:
    from benchmarks.ingest.verify import Verdict, compare_series

    e = expected_series(SPEC, {0: 2})[sensor_id(0, 1)]  # 2 messages x 10 readings / 4 sensors: 5 samples
    assert e.count == 5
    times = [T0 + n * SPEC.interval_ms for n in range(5)]
    values = [e.value(n) for n in range(5)]
    clean = Verdict()
    compare_series(clean, SPEC, e, "value", times, values)
    assert clean.ok and clean.found_points == 5

    bad = Verdict()
    stored_times = [*times[:3], times[2], times[4], T0 + 5 * SPEC.interval_ms, T0 + 1]
    stored_values = [*values[:3], values[2], values[4] + 0.1, values[0], values[0]]
    compare_series(bad, SPEC, e, "value", stored_times, stored_values)
    assert (bad.missing, bad.duplicates, bad.wrong_values, bad.unexpected) == (1, 1, 1, 2)
    assert not bad.ok and bad.examples


def test_backlog_control_keeps_seconds_of_the_subjects_pace_waiting() -> None:
    import threading

    from benchmarks.ingest.control import BACKLOG_FLOOR, BacklogControl

    pause = threading.Event()
    control = BacklogControl(pause, seconds=10, cap=200_000)
    control.update(0.0, 0, 0)
    assert not pause.is_set()
    control.update(0.5, BACKLOG_FLOOR + 1, BACKLOG_FLOOR + 1)  # nothing taken yet: the floor applies
    assert pause.is_set()
    published, waiting = BACKLOG_FLOOR + 1, BACKLOG_FLOOR + 1
    for second in range(1, 30):  # the subject takes 10,000 messages a second, publishers add 12,000
        published += 12_000
        waiting += 2_000
        control.update(float(second), published, waiting)
    assert 8_000 < control.taking <= 10_000
    assert not pause.is_set()  # 63k waiting is less than 10 s of its pace
    control.update(31.0, published + 40_000, waiting + 40_000)
    assert pause.is_set()
    control.update(32.0, published + 40_000, 20_000)
    assert not pause.is_set()
