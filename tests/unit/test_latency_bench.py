"""The latency benchmark's pure helpers (benchmarks/latency/plan.py) and its probe registry."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import yaml

from benchmarks.latency.plan import (
    background_plan,
    cpu_percent,
    parse_sensor_counts,
    percentile,
    probe_slots,
)
from benchmarks.latency.probe import (
    PROBE_HIGH,
    PROBE_LOW,
    PROBE_SENSOR,
    PROBE_TENANT,
    THRESHOLD,
    probe_payload,
    registry_with_probe,
)
from benchmarks.latency.runner import consumer_latency, summarise
from benchmarks.loadgen import LoadSpec
from cloud.detect.engine import Engine
from cloud.registry import RegistryFile, load_registry
from wire.telemetry import decode_telemetry


def test_percentile_interpolates_like_numpy_linear() -> None:
    xs = [4.0, 1.0, 3.0, 2.0]
    assert percentile(xs, 0.0) == 1.0
    assert percentile(xs, 1.0) == 4.0
    assert percentile(xs, 0.5) == pytest.approx(2.5)
    assert percentile(xs, 0.99) == pytest.approx(3.97)
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError, match="quantile"):
        percentile(xs, 1.5)


def test_background_plan_at_reporting_rates() -> None:
    plan = background_plan(10_000, 60.0, None, 80.0)
    assert (plan.gateways, plan.sensors_per_gateway, plan.sensors) == (1000, 10, 10_000)
    assert plan.messages_per_s == pytest.approx(1000 / 60)
    assert plan.readings_per_s == pytest.approx(10_000 / 60)
    assert plan.period_s == pytest.approx(60.0)
    # enough prepared for the run with slack: 80 s at one message per minute per gateway
    assert plan.per_gateway * plan.period_s >= 80.0


def test_background_plan_with_explicit_rate_and_small_counts() -> None:
    plan = background_plan(100, 60.0, 150.0, 60.0)
    assert plan.gateways == 10
    assert plan.messages_per_s == 150.0
    assert plan.period_s == pytest.approx(10 / 150)
    assert plan.per_gateway >= 150 * 60 / 10
    few = background_plan(7, 60.0, None, 60.0)
    assert (few.gateways, few.sensors_per_gateway) == (1, 7)
    rounded_up = background_plan(25, 60.0, None, 60.0)
    assert (rounded_up.gateways, rounded_up.sensors) == (3, 30)
    with pytest.raises(ValueError):
        background_plan(0, 60.0, None, 60.0)


def test_probe_slots_fill_the_window_and_resolve_in_between() -> None:
    slots = probe_slots(60.0, 2.0)
    assert len(slots) == 30
    assert [s.high_at for s in slots[:3]] == [0.0, 2.0, 4.0]
    assert all(s.high_at < s.low_at < s.high_at + 2.0 for s in slots)
    assert slots[-1].low_at < 60.0
    assert len(probe_slots(10.0, 3.0)) == 3
    assert len(probe_slots(1.0, 2.0)) == 1


def test_cpu_percent_and_sensor_counts() -> None:
    assert cpu_percent(10.0, 13.0, 60.0) == pytest.approx(5.0)
    assert parse_sensor_counts("100, 1k,10000") == [100, 1000, 10_000]
    for bad in ("0", "ten", "1,,2", "-5"):
        with pytest.raises(ValueError, match="sensor count"):
            parse_sensor_counts(bad)


def test_probe_registry_is_valid_and_its_values_cross_and_clear() -> None:
    doc = registry_with_probe(LoadSpec(2, 3))
    registry = msgspec.convert(doc, RegistryFile)
    probe = next(s for s in registry.sensors if s.id == PROBE_SENSOR)
    channel = probe.channels["river_level"]
    first = min(t.value for t in channel.thresholds)
    assert first == THRESHOLD
    assert PROBE_HIGH >= first > PROBE_LOW + channel.clear_margin
    assert len(registry.sensors) == 2 * 3 + 1


def test_summarise_and_consumer_histogram() -> None:
    assert summarise([0.001, 0.003, 0.002], (("p50", 0.5),)) == {"p50": 2.0, "max": 3.0}
    assert summarise([], (("p50", 0.5),)) == {"p50": None, "max": None}
    text = (
        "# TYPE bosai_consumer_alert_latency_seconds histogram\n"
        'bosai_consumer_alert_latency_seconds_bucket{consumer="c",le="0.005"} 2.0\n'
        'bosai_consumer_alert_latency_seconds_bucket{consumer="c",le="0.01"} 4.0\n'
        'bosai_consumer_alert_latency_seconds_bucket{consumer="c",le="+Inf"} 4.0\n'
        'bosai_consumer_alert_latency_seconds_count{consumer="c"} 4.0\n'
        'bosai_consumer_alert_latency_seconds_sum{consumer="c"} 0.02\n'
    )
    latency = consumer_latency(text)
    assert latency is not None
    assert latency.count == 4
    assert latency.p50_ms == pytest.approx(5.0)
    assert latency.p99_ms == pytest.approx(9.9)
    assert consumer_latency("# nothing here\n") is None


def test_every_probe_crossing_raises_on_its_own_reading(tmp_path: Path) -> None:
    """The probe's loosened quality checks let each step through: level 1 on every high reading,
    level 0 on every low one, and never a suspect_data (which would hold the crossing back)."""
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(registry_with_probe(LoadSpec(1, 2))), encoding="utf-8")
    registry = load_registry(path)
    sensor = registry.sensors[(PROBE_TENANT, PROBE_SENSOR)]
    site, channel = registry.site_of(sensor), sensor.channels["river_level"]
    engine = Engine(registry)
    t0 = 1_796_000_000_000
    for i in range(40):
        ts_ms = t0 + i * 1000
        payload = probe_payload(i + 1, PROBE_HIGH if i % 2 else PROBE_LOW, ts_ms)
        message = decode_telemetry(payload, now=ts_ms / 1000)
        (reading,) = message.readings
        observations = engine.reading(reading, sensor, site, channel)
        assert [o.key.condition for o in observations if o.key.condition != "level"] == []
        levels = [o.level for o in observations if o.key.condition == "level"]
        if i == 0:
            assert levels == []  # the series starts below the threshold
        else:
            assert levels == [1 if i % 2 else 0], i
            assert all(o.ts == reading.ts for o in observations)
