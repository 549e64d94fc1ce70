"""Threshold detection with hysteresis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.detection import Detector, next_level
from cloud.registry import Channel, Registry, Threshold, load_registry
from wire.alerts import Alert
from wire.telemetry import Quality, Reading

REGISTRY = Path(__file__).resolve().parents[2] / "deploy" / "cloud" / "registry.demo.yaml"
T0 = datetime(2025, 1, 15, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(REGISTRY)


def feed(
    registry: Registry,
    values: list[float | None],
    sensor_id: str = "river-radar-01",
    kind: str = "river_level",
) -> list[Alert]:
    det = Detector()
    sensor = registry.sensors[("demo-city", sensor_id)]
    site = registry.site_of(sensor)
    channel = sensor.channels[kind]
    out = []
    for i, v in enumerate(values):
        q = Quality.OK if v is not None else Quality.TIMEOUT
        r = Reading(sensor_id, kind, T0 + timedelta(minutes=10 * i), v, channel.unit, q)
        alert = det.evaluate(r, sensor, site, channel)
        if alert is not None:
            out.append(alert)
    return out


def test_full_episode_raised_escalated_deescalated_resolved(registry: Registry) -> None:
    # thresholds 2.0 / 2.6 / 3.2 / 3.8 / 4.6, clear margin 0.10
    alerts = feed(registry, [1.0, 2.05, 3.3, 3.0, 1.5])
    assert [(a.state, a.level, a.previous_level) for a in alerts] == [
        ("raised", 1, 0),
        ("escalated", 3, 1),
        ("deescalated", 2, 3),
        ("resolved", 0, 2),
    ]
    assert len({a.id for a in alerts}) == 1
    assert all(a.raised_at == T0 + timedelta(minutes=10) for a in alerts)
    esc = alerts[1]
    assert (
        esc.reason
        == "石狩川 旭橋: river_level 3.30 m reached 避難判断水位 / evacuation judgement (3.20 m), level 3"
    )
    assert (esc.level_name, esc.level_name_ja, esc.threshold, esc.site_name) == (
        "evacuation judgement",
        "避難判断水位",
        3.2,
        "石狩川 旭橋",
    )
    assert alerts[2].threshold == 2.6 and "now level 2 氾濫注意水位" in alerts[2].reason
    assert (
        alerts[3].threshold is None and alerts[3].level_name == "" and alerts[3].reason.endswith("resolved")
    )


def test_hovering_at_a_threshold_does_not_flap(registry: Registry) -> None:
    alerts = feed(registry, [1.9, 2.0, 1.95, 2.01, 1.92, 2.0, 1.99, 1.91])
    assert [a.state for a in alerts] == ["raised"]
    # only a drop past threshold - margin (2.0 - 0.10) clears it
    assert [a.state for a in feed(registry, [2.0, 1.95, 1.89])] == ["raised", "resolved"]


def test_new_episode_gets_a_new_id(registry: Registry) -> None:
    alerts = feed(registry, [2.1, 1.0, 2.1])
    assert [a.state for a in alerts] == ["raised", "resolved", "raised"]
    assert alerts[0].id == alerts[1].id != alerts[2].id


def test_jump_over_several_levels(registry: Registry) -> None:
    alerts = feed(registry, [4.7, 3.75, 3.65])
    # 3.75 is still within the margin of level 4 (3.8 - 0.1); 3.65 is not, and holds level 3
    assert [(a.state, a.level) for a in alerts] == [("raised", 5), ("deescalated", 4), ("deescalated", 3)]


def test_bad_quality_readings_are_ignored(registry: Registry) -> None:
    assert [a.state for a in feed(registry, [2.5, None, None, 2.5])] == ["raised"]


def test_out_of_order_readings_are_ignored() -> None:
    reg = load_registry(REGISTRY)
    det = Detector()
    sensor = reg.sensors[("demo-city", "river-radar-01")]
    site, ch = reg.site_of(sensor), sensor.channels["river_level"]

    def at(minutes: int, v: float) -> Alert | None:
        return det.evaluate(
            Reading(sensor.id, "river_level", T0 + timedelta(minutes=minutes), v, "m"), sensor, site, ch
        )

    assert at(10, 2.5) is not None
    assert at(5, 0.5) is None  # older replayed sample: does not resolve the alert
    assert at(10, 0.5) is None  # same sample time again (duplicate)
    assert det.skipped_old == 2
    alert = at(20, 0.5)
    assert alert is not None and alert.state == "resolved"


def test_series_are_independent(registry: Registry) -> None:
    det = Detector()
    a = registry.sensors[("demo-city", "river-radar-01")]
    b = registry.sensors[("demo-city", "river-pt-02")]
    site = registry.site_of(a)
    r = Reading(a.id, "river_level", T0, 2.7, "m")
    assert det.evaluate(r, a, site, a.channels["river_level"]) is not None
    rb = Reading(b.id, "river_level", T0, 2.7, "m")
    alert = det.evaluate(rb, b, site, b.channels["river_level"])
    assert alert is not None and alert.sensor == "river-pt-02" and alert.state == "raised"


def test_absolute_direction_tilt(registry: Registry) -> None:
    # tilt thresholds 0.10 / 0.50 / 1.50 deg on |value|, margin 0.02
    alerts = feed(registry, [0.05, -0.12, -0.09, 0.07], "slope-incl-01", "tilt_x")
    assert [(a.state, a.level) for a in alerts] == [("raised", 1), ("resolved", 0)]
    assert "|-0.12| deg reached 変動注意 / movement" in alerts[0].reason


def test_falling_direction() -> None:
    ch = Channel(
        unit="m",
        direction="falling",
        clear_margin=0.5,
        thresholds=[Threshold(1, 10.0, "low"), Threshold(2, 5.0, "very low")],
    )
    assert next_level(ch, 0, 10.5) == 0
    assert next_level(ch, 0, 10.0) == 1
    assert next_level(ch, 1, 10.4) == 1  # within the margin
    assert next_level(ch, 1, 10.6) == 0
    assert next_level(ch, 0, 4.0) == 2
    assert next_level(ch, 2, 5.4) == 2 and next_level(ch, 2, 5.6) == 1


def test_channel_without_thresholds_never_alerts(registry: Registry) -> None:
    assert feed(registry, [-40.0, 55.0], "snow-laser-01", "sensor_temperature") == []
