"""The detection engine and alert lifecycle together (cloud.replay.Replayer), on hand-made series:
levels with hysteresis and minimum duration, spikes held back, flatline, failing sensors, stale
sensors, gateway offline, snow dispatch, rate levels."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import yaml

from cloud.detect.levels import LevelTracker
from cloud.registry import Registry, load_registry
from cloud.replay import Replayer
from wire.alerts import Alert
from wire.telemetry import Quality, Reading

T0 = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)

RIVER = {
    "unit": "m",
    "range": [-2.0, 30.0],
    "clear_margin": 0.10,
    "thresholds": [
        {"level": 1, "value": 2.00, "name": "standby", "name_ja": "水防団待機水位"},
        {"level": 2, "value": 2.60, "name": "flood caution", "name_ja": "氾濫注意水位"},
        {"level": 3, "value": 3.20, "name": "evacuation judgement", "name_ja": "避難判断水位"},
        {"level": 4, "value": 3.80, "name": "flood danger", "name_ja": "氾濫危険水位"},
        {"level": 5, "value": 4.60, "name": "overflow", "name_ja": "越水"},
    ],
}


def registry(tmp_path: Path, river: dict[str, object] | None = None, **extra: object) -> Registry:
    data = {
        "tenants": [{"id": "city", "name": "市"}],
        "sites": [
            {"id": "bridge", "tenant": "city", "name": "石狩川 旭橋", "type": "river"},
            {"id": "route12", "tenant": "city", "name": "国道12号", "type": "snow", "road_class": "arterial"},
            {"id": "slope3", "tenant": "city", "name": "斜面3", "type": "slope"},
        ],
        "gateways": [{"id": "gw01", "tenant": "city", "offline_after_s": 600}],
        "sensors": [
            {
                "id": "radar",
                "tenant": "city",
                "gateway": "gw01",
                "site": "bridge",
                "channels": {"river_level": river or RIVER},
            },
            {
                "id": "snow",
                "tenant": "city",
                "gateway": "gw01",
                "site": "route12",
                "channels": {"snow_depth": {"unit": "cm", "range": [0, 600], "snowfall": True}},
            },
            {
                "id": "ext",
                "tenant": "city",
                "gateway": "gw01",
                "site": "slope3",
                "channels": {
                    "displacement": {
                        "unit": "mm",
                        "stale_after_s": None,
                        "rate": {
                            "unit": "mm/day",
                            "window_s": 21600,
                            "thresholds": [
                                {"level": 1, "value": 1.0, "name": "movement", "name_ja": "変動"},
                                {"level": 2, "value": 10.0, "name": "close access", "name_ja": "通行止め"},
                            ],
                        },
                    }
                },
            },
            {
                "id": "incl",
                "tenant": "city",
                "gateway": "gw01",
                "site": "slope3",
                "channels": {
                    "tilt_x": {
                        "unit": "deg",
                        "direction": "absolute",
                        "clear_margin": 0.02,
                        "thresholds": [{"level": 1, "value": 0.1, "name": "movement"}],
                    }
                },
            },
        ],
        **extra,
    }
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_registry(path)


def feed(
    rp: Replayer,
    values: Sequence[float | None],
    sensor: str = "radar",
    kind: str = "river_level",
    step: timedelta = timedelta(minutes=10),
    start: datetime = T0,
) -> list[Alert]:
    s = rp.registry.sensors[("city", sensor)]
    unit = s.channels[kind].unit
    out: list[Alert] = []
    for i, v in enumerate(values):
        q = Quality.OK if v is not None else Quality.TIMEOUT
        out += rp.feed(s, Reading(sensor, kind, start + step * i, v, unit, q))
    return out


def disaster(alerts: list[Alert]) -> list[tuple[str, int]]:
    return [(a.event, a.level) for a in alerts if a.category == "disaster"]


def test_full_episode_raised_escalated_deescalated_resolved(tmp_path: Path) -> None:
    alerts = feed(Replayer(registry(tmp_path)), [1.0, 2.05, 3.3, 3.0, 1.5])
    assert [(a.event, a.level, a.previous_level) for a in alerts] == [
        ("raised", 1, 0),
        ("escalated", 3, 1),
        ("deescalated", 2, 3),
        ("resolved", 0, 2),
    ]
    assert len({a.id for a in alerts}) == 1 and {a.status for a in alerts[:3]} == {"active"}
    assert alerts[-1].status == "resolved" and alerts[-1].peak_level == 3
    assert all(a.raised_at == T0 + timedelta(minutes=10) for a in alerts)
    esc = alerts[1]
    assert (
        esc.reason
        == "石狩川 旭橋: river_level 3.30 m reached 避難判断水位 / evacuation judgement (3.20 m), level 3"
    )
    assert (esc.level_name, esc.level_name_ja, esc.threshold, esc.site_name, esc.condition) == (
        "evacuation judgement",
        "避難判断水位",
        3.2,
        "石狩川 旭橋",
        "level",
    )
    assert alerts[2].threshold == 2.6 and "now level 2 氾濫注意水位" in alerts[2].reason
    assert alerts[3].threshold is None and alerts[3].reason.endswith("resolved")


def test_hovering_at_a_threshold_does_not_flap(tmp_path: Path) -> None:
    values = [1.9, 2.0, 1.95, 2.01, 1.92, 2.0, 1.99, 1.91]
    assert disaster(feed(Replayer(registry(tmp_path)), values)) == [("raised", 1)]
    # only a drop past threshold - margin (2.0 - 0.10) clears it
    assert disaster(feed(Replayer(registry(tmp_path)), [2.0, 1.95, 1.89])) == [("raised", 1), ("resolved", 0)]


def test_clear_hold_time_and_minimum_duration(tmp_path: Path) -> None:
    river = {**RIVER, "clear_hold_s": 1800, "min_duration_s": 600}
    rp = Replayer(registry(tmp_path, river))
    # 2.05 once (10 min spacing: reached at 00:10, 00:20 would confirm) then back: never raised
    assert disaster(feed(rp, [1.5, 2.05, 1.95, 1.5])) == []
    rp = Replayer(registry(tmp_path, river))
    # reached at 00:10 and 00:20 -> raised at 00:20; below the threshold but inside the margin
    # for 30 min (1.95 at 00:30 .. 01:00) -> cleared by the hold time
    alerts = feed(rp, [1.5, 2.05, 2.1, 1.95, 1.95, 1.95, 1.95])
    assert disaster(alerts) == [("raised", 1), ("resolved", 0)]
    assert alerts[0].ts == T0 + timedelta(minutes=20) and alerts[1].ts == T0 + timedelta(minutes=60)


def test_new_episode_gets_a_new_id(tmp_path: Path) -> None:
    alerts = feed(Replayer(registry(tmp_path)), [2.1, 1.0, 2.1])
    assert [a.event for a in alerts] == ["raised", "resolved", "raised"]
    assert alerts[0].id == alerts[1].id != alerts[2].id


def test_jump_over_several_levels(tmp_path: Path) -> None:
    alerts = feed(Replayer(registry(tmp_path)), [4.7, 3.75, 3.65])
    assert disaster(alerts) == [("raised", 5), ("deescalated", 4), ("deescalated", 3)]


def test_absolute_direction_tilt(tmp_path: Path) -> None:
    alerts = feed(Replayer(registry(tmp_path)), [0.05, -0.12, -0.09, 0.07], "incl", "tilt_x")
    assert disaster(alerts) == [("raised", 1), ("resolved", 0)]
    assert "|-0.12| deg reached movement" in alerts[0].reason


def test_late_samples_do_not_move_the_state_backwards(tmp_path: Path) -> None:
    rp = Replayer(registry(tmp_path))
    s = rp.registry.sensors[("city", "radar")]
    assert [a.event for a in rp.feed(s, Reading("radar", "river_level", T0, 2.5, "m"))] == ["raised"]
    assert rp.feed(s, Reading("radar", "river_level", T0 - timedelta(minutes=5), 0.5, "m")) == []
    assert rp.feed(s, Reading("radar", "river_level", T0, 0.5, "m")) == []  # duplicate time
    assert [
        a.event for a in rp.feed(s, Reading("radar", "river_level", T0 + timedelta(minutes=1), 0.5, "m"))
    ] == ["resolved"]


def test_spike_is_held_back_and_raises_a_maintenance_alert(tmp_path: Path) -> None:
    river = {**RIVER, "quality": {"min_scale": 0.01, "max_rate_per_h": 2.0}}
    rp = Replayer(registry(tmp_path, river))
    quiet = [1.20 + 0.005 * (i % 3) for i in range(30)]
    spiked = [*quiet, 3.7, 3.71, 3.69, *quiet]  # +2.5 m for 3 minutes: not a flood
    alerts = feed(rp, spiked, step=timedelta(minutes=1))
    assert disaster(alerts) == []
    maint = [(a.condition, a.event) for a in alerts]
    assert maint[0] == ("suspect_data", "raised")
    assert "3.70 m is far from the recent" in alerts[0].reason


def test_flatline_holds_the_series_back(tmp_path: Path) -> None:
    river = {**RIVER, "quality": {"flatline_s": 1800, "min_scale": 0.01}}
    rp = Replayer(registry(tmp_path, river))
    moving = [1.2 + 0.01 * (i % 4) for i in range(20)]
    stuck = [1.25] * 60
    alerts = feed(rp, [*moving, *stuck, *moving], step=timedelta(minutes=1))
    assert [(a.condition, a.event) for a in alerts] == [("flatline", "raised"), ("flatline", "resolved")]
    assert "looks stuck" in alerts[0].reason


def test_failing_sensor_and_stale_sensor(tmp_path: Path) -> None:
    rp = Replayer(registry(tmp_path))
    alerts = feed(rp, [1.0, None, None, None, 1.0], step=timedelta(minutes=5))
    assert [(a.condition, a.event) for a in alerts] == [
        ("sensor_failing", "raised"),
        ("sensor_failing", "resolved"),
    ]
    assert "only timeout readings since" in alerts[0].reason
    # no reading at all for the default stale_after_s (1 h): stale, until a reading comes
    rp.advance((T0 + timedelta(hours=1, minutes=21)).timestamp())
    assert [(a.condition, a.event) for a in rp.alerts[-1:]] == [("stale", "raised")]
    feed(rp, [1.0], start=T0 + timedelta(hours=1, minutes=30))
    assert [(a.condition, a.event) for a in rp.alerts[-1:]] == [("stale", "resolved")]


def test_gateway_offline_by_last_will_and_by_silence(tmp_path: Path) -> None:
    rp = Replayer(registry(tmp_path))
    eng = rp.engine
    t = T0.timestamp()
    assert eng.gateway_alive("city", "gw01", t) == []
    [obs] = eng.gateway_will("city", "gw01", t + 60)
    assert obs.level == 1 and "Last Will" in obs.reason and obs.key.condition == "gateway_offline"
    assert eng.gateway_alive("city", "gw01", t + 30) == []  # sent before the will: backlog
    [back] = eng.gateway_alive("city", "gw01", t + 120)
    assert back.level == 0 and "back online" in back.reason
    [silent] = [o for o in eng.tick(t + 120 + 600) if o.key.condition == "gateway_offline"]
    assert silent.level == 1 and "nothing received since" in silent.reason


def test_no_stale_alerts_while_the_gateway_is_offline(tmp_path: Path) -> None:
    rp = Replayer(registry(tmp_path))
    feed(rp, [1.0])
    rp.engine.gateway_will("city", "gw01", T0.timestamp() + 60)
    obs = rp.engine.tick(T0.timestamp() + 3 * 3600)
    assert [o.key.condition for o in obs] == []


def test_snow_dispatch_at_the_road_class_level(tmp_path: Path) -> None:
    rp = Replayer(registry(tmp_path))
    # +1 cm every hour from 30 cm (samples every 10 min): 10 cm of new snow after 10 h
    start = datetime(2026, 1, 15, 0, 0, tzinfo=UTC)
    depths = [30.0 + i / 6 for i in range(6 * 14)]
    alerts = feed(rp, depths, "snow", "snow_depth", start=start)
    [raised] = [a for a in alerts if a.category == "disaster"]
    assert raised.condition == "snow_dispatch" and raised.level_name_ja == "除雪出動 (幹線道路)"
    assert raised.threshold == 10.0 and raised.value is not None and raised.value >= 10.0
    assert start + timedelta(hours=9) < raised.ts <= start + timedelta(hours=11, minutes=10)


def test_rate_levels_in_mm_per_day(tmp_path: Path) -> None:
    rp = Replayer(registry(tmp_path))
    # 12 h at 0.2 mm/day, then 12 h at 20 mm/day (samples every 10 min)
    slow = [10.0 + 0.2 * i / 144 for i in range(72)]
    fast = [slow[-1] + 20.0 * i / 144 for i in range(1, 73)]
    alerts = feed(rp, [*slow, *fast], "ext", "displacement")
    rate = [(a.event, a.level) for a in alerts if a.condition == "rate"]
    assert rate[:1] == [("raised", 1)] and ("escalated", 2) in rate
    esc = next(a for a in alerts if a.condition == "rate" and a.level == 2)
    assert esc.rate_unit == "mm/day" and esc.rate is not None and esc.rate > 10


def test_level_tracker_falling_direction() -> None:
    lt = LevelTracker([(1, 10.0), (2, 5.0)], "falling", clear_margin=0.5)
    assert [lt.update(i, v) for i, v in enumerate([10.5, 10.0, 10.4, 10.6, 4.0, 5.4, 5.6])] == [
        0,
        1,
        1,
        0,
        2,
        2,
        1,
    ]


def test_alerts_round_trip_as_json(tmp_path: Path) -> None:
    alerts = feed(Replayer(registry(tmp_path)), [1.0, 2.05])
    assert msgspec.json.decode(msgspec.json.encode(alerts[0]), type=Alert) == alerts[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rate": {"unit": "arcsec/day"}}, "rate: field 'unit'"),
        ({"snowfall": True}, "field 'snowfall'"),
    ],
)
def test_detection_settings_are_checked_at_load(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    from wire.configfile import ConfigError

    with pytest.raises(ConfigError, match=message):
        registry(tmp_path, {**RIVER, **change})
