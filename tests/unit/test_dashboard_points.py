"""What the dashboards query besides readings: gateway health points (cloud.points) and the
periodic snapshots of thresholds and state (cloud.dashdata), exact line protocol, and the
consumer writing them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cloud import dashdata, lineproto, points
from cloud.alerts.manager import AlertManager
from cloud.alerts.store import AlertStore
from cloud.config import ConsumerConfig
from cloud.consumer import Consumer
from cloud.detect.engine import GatewayState
from cloud.detect.observation import AlertKey, Observation
from cloud.registry import Registry, RegistryFile
from cloud.shard import Shard, shard_of
from cloud.writers.lpfile import read_lp_dir
from tests.health_samples import gateway_health
from wire import topics
from wire.alerts import Alert
from wire.status import Health, SensorHealth
from wire.telemetry import Quality

T = 1_780_000_000.0
T_MS = 1_780_000_000_000

REGISTRY: dict[str, Any] = {
    "tenants": [{"id": "city-a", "name": "旭川 市"}],
    "sites": [
        {
            "id": "river-1",
            "tenant": "city-a",
            "name": "石狩川 旭橋, 上流",
            "type": "river",
            "lat": 43.78,
            "lon": 142.36,
        },
        {"id": "snow-1", "tenant": "city-a", "name": "国道12号", "type": "snow", "road_class": "arterial"},
        {"id": "pass-1", "tenant": "city-a", "name": "峠", "type": "snow", "road_class": "mountain"},
        {"id": "slope-1", "tenant": "city-a", "name": "神居古潭=斜面", "type": "slope", "lat": 43.73},
    ],
    "road_classes": {
        "mountain": {"new_snow_cm": 20.0, "window_h": 12, "name": "mountain pass", "name_ja": ""}
    },
    "gateways": [
        {"id": "gw1", "tenant": "city-a", "name": "神居 gateway"},
        {"id": "gw2", "tenant": "city-a"},
        {"id": "gw-old", "tenant": "city-a", "name": "old", "revoked": "2026-01-01T00:00:00+00:00"},
    ],
    "sensors": [
        {
            "id": "radar",
            "tenant": "city-a",
            "gateway": "gw1",
            "site": "river-1",
            "name": "旭橋 radar, main",
            "channels": {
                "river_level": {
                    "unit": "m",
                    "thresholds": [
                        {"level": 1, "value": 2.0, "name": "standby", "name_ja": "水防団待機水位"},
                        {"level": 3, "value": 3.2, "name": "evacuation judgement", "name_ja": "避難判断水位"},
                    ],
                    "rate": {"unit": "m/h", "thresholds": [{"level": 2, "value": 0.5, "name": "fast rise"}]},
                }
            },
        },
        {
            "id": "snow",
            "tenant": "city-a",
            "gateway": "gw1",
            "site": "snow-1",
            "channels": {
                "snow_depth": {
                    "unit": "cm",
                    "snowfall": True,
                    "thresholds": [
                        {"level": 1, "value": 60, "name": "heavy snow caution", "name_ja": "大雪注意"}
                    ],
                },
                "air_temperature": {"unit": "degC"},
            },
        },
        {
            "id": "snow2",
            "tenant": "city-a",
            "gateway": "gw2",
            "site": "pass-1",
            "channels": {"snow_depth": {"unit": "cm", "snowfall": True}},
        },
        {
            "id": "tilt",
            "tenant": "city-a",
            "gateway": "gw1",
            "site": "slope-1",
            "name": "斜面 A",
            "channels": {
                "tilt_x": {
                    "unit": "deg",
                    "direction": "absolute",
                    "thresholds": [{"level": 1, "value": 0.1, "name": "movement", "name_ja": "変動注意"}],
                    "rate": {
                        "unit": "arcsec/day",
                        "thresholds": [{"level": 2, "value": 20, "name": "fast creep"}],
                    },
                }
            },
        },
        {
            "id": "well",
            "tenant": "city-a",
            "gateway": "gw2",
            "site": "slope-1",
            "channels": {
                "water_table": {
                    "unit": "m",
                    "direction": "falling",
                    "thresholds": [
                        {"level": 1, "value": 5.0, "name": "low"},
                        {"level": 2, "value": 4.0, "name": "very low"},
                    ],
                }
            },
        },
        {
            "id": "old",
            "tenant": "city-a",
            "gateway": "gw-old",
            "site": "river-1",
            "channels": {"river_level": {"unit": "m"}},
        },
    ],
}

RIVER = r"site=river-1,site_name=石狩川\ 旭橋\,\ 上流,tenant=city-a"
RADAR = r"sensor=radar,sensor_name=旭橋\ radar\,\ main," + RIVER
TILT = r"sensor=tilt,sensor_name=斜面\ A,site=slope-1,site_name=神居古潭\=斜面,tenant=city-a"
SNOW = "sensor=snow,site=snow-1,site_name=国道12号,tenant=city-a"
SNOW2 = "sensor=snow2,site=pass-1,site_name=峠,tenant=city-a"
WELL = r"sensor=well,site=slope-1,site_name=神居古潭\=斜面,tenant=city-a"


@pytest.fixture
def registry() -> Registry:
    return Registry(msgspec.convert(REGISTRY, RegistryFile))


def at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def health(ts: float, **changes: Any) -> Health:
    sensors = {
        "radar": SensorHealth(5, 1, False, Quality.OK, at(T - 60), True, 2, 3),
        "stray sensor": SensorHealth(3, 3, True, None, None, False, 0, 0),
        "rain": SensorHealth(4, 0, False, Quality.TIMEOUT, at(T - 120), False, 4, 0),  # registered to gw2
    }
    return gateway_health(at(ts), sensors, **changes)


# --- gateway_health, gateway_sensor_health ---


def test_health_message_lines(registry: Registry) -> None:
    lines = points.gateway_health_lines(health(T - 5.25), registry, received=T)
    t = T_MS - 5250
    assert lines == [
        "gateway_health,gateway=gw1,tenant=city-a uptime_s=300.5,outbox_depth=2i,outbox_bytes=512i,"
        "outbox_oldest_age_s=1.5,outbox_dropped=0i,outbox_dropped_readings=0i,messages_acked=298i,"
        'reconnects=1i,unrouted=0i,clock_synced=1i,config_hash="sha256:ab12",'
        rf'agent_version="0.1.0 \"beta\"" {t}',
        f"gateway_sensor_health,gateway=gw1,sensor=radar,{RIVER} "
        "polls=5i,errors=1i,failing=0i,fast=1i,reported=2i,suppressed=3i,"
        f"quality=0i,last_ok={T_MS - 60_000}i {t}",
        rf"gateway_sensor_health,gateway=gw1,sensor=stray\ sensor,tenant=city-a "
        f"polls=3i,errors=3i,failing=1i,fast=0i,reported=0i,suppressed=0i {t}",
        "gateway_sensor_health,gateway=gw1,sensor=rain,tenant=city-a "
        "polls=4i,errors=0i,failing=0i,fast=0i,reported=4i,suppressed=0i,"
        f"quality=1i,last_ok={T_MS - 120_000}i {t}",
    ]


def test_health_time_is_capped_at_arrival_and_unknown_clock_sync_left_out(registry: Registry) -> None:
    """A gateway clock 10 min ahead must not date its health in the future."""
    lines = points.gateway_health_lines(health(T + 600, clock_synced=None, sensors={}), registry, received=T)
    assert len(lines) == 1
    parsed = lineproto.parse_line(lines[0])
    assert parsed.ts_ms == T_MS and "clock_synced" not in parsed.fields
    assert parsed.fields["agent_version"] == '0.1.0 "beta"'


# --- thresholds ---


def test_threshold_lines(registry: Registry) -> None:
    lines = [x for x in dashdata.snapshot_lines(registry, {}, [], T) if x.startswith("thresholds,")]

    def th(kind: str, level: str, name: str, mirror: str, tags: str, unit: str, what: str, value: str) -> str:
        return (
            f"thresholds,kind={kind},level={level},level_name={name},mirror={mirror},{tags},unit={unit},"
            f"what={what} value={value} {T_MS}"
        )

    assert lines == [
        th("river_level", "1", r"1\ 水防団待機水位\ standby", "0", RADAR, "m", "level", "2.0"),
        th("river_level", "3", r"3\ 避難判断水位\ evacuation\ judgement", "0", RADAR, "m", "level", "3.2"),
        th("river_level", "2", r"2\ fast\ rise", "0", RADAR, "m/h", "rate", "0.5"),
        th("snow_depth", "1", r"1\ 大雪注意\ heavy\ snow\ caution", "0", SNOW, "cm", "level", "60.0"),
        th(
            "new_snow_24h",
            "dispatch",
            r"除雪出動\ (幹線道路)\ plow\ dispatch\ (arterial)",
            "0",
            SNOW,
            "cm",
            "snow_dispatch",
            "10.0",
        ),
        th("new_snow_12h", "dispatch", r"mountain\ pass", "0", SNOW2, "cm", "snow_dispatch", "20.0"),
        # absolute: dangerous either way, so each band is drawn on both sides
        th("tilt_x", "1", r"1\ 変動注意\ movement", "0", TILT, "deg", "level", "0.1"),
        th("tilt_x", "1", r"1\ 変動注意\ movement", "1", TILT, "deg", "level", "-0.1"),
        th("tilt_x", "2", r"2\ fast\ creep", "0", TILT, "arcsec/day", "rate", "20.0"),
        th("tilt_x", "2", r"2\ fast\ creep", "1", TILT, "arcsec/day", "rate", "-20.0"),
        # falling: the threshold values as they are
        th("water_table", "1", r"1\ low", "0", WELL, "m", "level", "5.0"),
        th("water_table", "2", r"2\ very\ low", "0", WELL, "m", "level", "4.0"),
    ]
    # every line reads back, the Japanese names intact
    names = {lineproto.parse_line(x).tags["level_name"] for x in lines}
    assert (
        "3 避難判断水位 evacuation judgement" in names
        and "除雪出動 (幹線道路) plow dispatch (arterial)" in names
    )


# --- gateway_status, site_status, tenant_status ---


def test_gateway_status_and_revoked_gateways_left_out(registry: Registry) -> None:
    states = {
        ("city-a", "gw1"): GatewayState(last_seen=T - 30.5),
        ("city-a", "gw-old"): GatewayState(last_seen=T),
    }
    lines = dashdata.snapshot_lines(registry, states, [], T)
    assert [x for x in lines if x.startswith("gateway_status,")] == [
        rf"gateway_status,gateway=gw1,gateway_name=神居\ gateway,tenant=city-a "
        f"online=1i,last_seen_age_s=30.5 {T_MS}",
        f"gateway_status,gateway=gw2,tenant=city-a online=0i {T_MS}",  # never heard from since start
    ]
    assert not any("gw-old" in x or "sensor=old" in x for x in lines)
    assert [x for x in lines if x.startswith("tenant_status,")] == [
        rf"tenant_status,tenant=city-a,tenant_name=旭川\ 市 gateways=2i,gateways_offline=1i,sites=4i,"
        f"active_alerts=0i,maintenance_alerts=0i,alert_level=0i {T_MS}"
    ]
    offline = {("city-a", "gw1"): GatewayState(last_seen=T - 900, offline=True, offline_since=T - 900)}
    [gw1] = [x for x in dashdata.snapshot_lines(registry, offline, [], T) if "gateway=gw1" in x]
    assert gw1.endswith(f"online=0i,last_seen_age_s=900.0 {T_MS}")


def observe(
    manager: AlertManager, condition: str, sensor: str, kind: str, level: int, site: str = ""
) -> None:
    key = AlertKey("city-a", condition, sensor, kind, "gw1" if not sensor else "")
    manager.observe(
        Observation(key, level, at(T - 100), f"{condition} {level}", site=site, gateway="gw1"), T - 100
    )


def test_site_and_tenant_status_from_open_episodes(registry: Registry, tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.db")
    sent: list[Alert] = []
    manager = AlertManager(store, lambda alert, notify: sent.append(alert))
    observe(manager, "level", "radar", "river_level", 2, site="river-1")
    observe(manager, "rate", "radar", "river_level", 3)  # no site on the episode: the registry knows it
    observe(manager, "level", "tilt", "tilt_x", 1, site="slope-1")
    observe(manager, "level", "tilt", "tilt_x", 0, site="slope-1")  # resolved: not counted
    observe(manager, "level", "well", "water_table", 2, site="slope-1")
    [well] = [a for a in sent if a.sensor == "well"]
    store.request(well.id, "ack", "duty officer")
    manager.tick(T - 50)  # acknowledged is still open: the water is still low
    observe(manager, "stale", "snow", "snow_depth", 1, site="snow-1")  # maintenance
    observe(manager, "gateway_offline", "", "", 1)  # maintenance, of no site
    assert [a.event for a in sent][-3:] == ["acknowledged", "raised", "raised"]

    lines = dashdata.snapshot_lines(registry, {}, store.unresolved(), T)
    assert [x for x in lines if x.startswith(("site_status,", "tenant_status,"))] == [
        rf"site_status,site=river-1,site_name=石狩川\ 旭橋\,\ 上流,tenant=city-a,type=river "
        f"lat=43.78,lon=142.36,alert_level=3i,active_alerts=2i,maintenance_alerts=0i {T_MS}",
        "site_status,site=snow-1,site_name=国道12号,tenant=city-a,type=snow "
        f"alert_level=0i,active_alerts=0i,maintenance_alerts=1i {T_MS}",
        "site_status,site=pass-1,site_name=峠,tenant=city-a,type=snow "
        f"alert_level=0i,active_alerts=0i,maintenance_alerts=0i {T_MS}",
        rf"site_status,site=slope-1,site_name=神居古潭\=斜面,tenant=city-a,type=slope "
        f"lat=43.73,alert_level=2i,active_alerts=1i,maintenance_alerts=0i {T_MS}",
        rf"tenant_status,tenant=city-a,tenant_name=旭川\ 市 gateways=2i,gateways_offline=2i,sites=4i,"
        f"active_alerts=3i,maintenance_alerts=2i,alert_level=3i {T_MS}",
    ]
    store.close()


def test_shards_write_disjoint_parts(registry: Registry) -> None:
    """Each shard writes its own gateways' points; together they write everything, once."""
    whole = dashdata.snapshot_lines(registry, {}, [], T)
    assert (shard_of("city-a", "gw1", 5), shard_of("city-a", "gw2", 5)) == (1, 0)  # apart: the test needs it
    parts = [dashdata.snapshot_lines(registry, {}, [], T, Shard(i, 5)) for i in range(5)]
    for meas in ("thresholds,", "site_status,", "gateway_status,"):
        mine = [x for p in parts for x in p if x.startswith(meas)]
        assert sorted(mine) == sorted(x for x in whole if x.startswith(meas))
    assert [p == [] for p in parts] == [False, False, True, True, True]
    # gw1 (shard 1) is the tenant's first gateway and carries the first sensor of three sites
    assert [sum(x.startswith("tenant_status,") for x in p) for p in parts] == [0, 1, 0, 0, 0]
    sites = [[x.split(",")[1] for x in p if x.startswith("site_status,")] for p in parts[:2]]
    assert sites == [["site=pass-1"], ["site=river-1", "site=snow-1", "site=slope-1"]]
    assert dashdata.snapshot_lines(registry, {}, [], T, Shard(tenant="another-city")) == []


# --- the consumer writing them ---

DEMO_REGISTRY = Path(__file__).resolve().parents[2] / "deploy" / "cloud" / "registry.demo.yaml"


class ManualClock:
    speed = 1.0

    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


def demo_consumer(tmp_path: Path, clock: ManualClock) -> Consumer:
    raw = {
        "mqtt": {"url": "mqtt://127.0.0.1:1", "allow_insecure": True},
        "registry": str(DEMO_REGISTRY),
        "store": {"type": "lpfile", "path": "store"},
        "alerts": {"log_path": "alerts.jsonl", "publish": False},
    }
    return Consumer(msgspec.convert(raw, ConsumerConfig), tmp_path / "consumer.yaml", clock=clock)


def stored(tmp_path: Path, measurement: str) -> list[lineproto.ParsedLine]:
    return [p for p in read_lp_dir(tmp_path / "store") if p.measurement == measurement]


def test_consumer_stores_health_messages(tmp_path: Path) -> None:
    clock = ManualClock(T)
    c = demo_consumer(tmp_path, clock)
    payload = json.dumps(
        {
            "v": 1,
            "tenant": "demo-city",
            "gateway": "gw01",
            "ts": at(T - 2).isoformat(),
            "uptime_s": 60.0,
            "agent_version": "0.1.0",
            "config_hash": "sha256:00",
            "outbox_depth": 0,
            "outbox_bytes": 0,
            "outbox_oldest_age_s": 0.0,
            "outbox_dropped": 0,
            "outbox_dropped_readings": 0,
            "messages_acked": 10,
            "reconnects": 0,
            "unrouted": 0,
            "sensors": {
                "river-radar-01": {
                    "polls": 5,
                    "errors": 0,
                    "failing": False,
                    "quality": "ok",
                    "last_ok": at(T - 60).isoformat(),
                    "fast": False,
                    "reported": 2,
                    "suppressed": 3,
                }
            },
        }
    ).encode()
    c.process_message(topics.health("demo-city", "gw01"), payload)
    c.drain(5)
    [gw] = stored(tmp_path, "gateway_health")
    assert gw.ts_ms == T_MS - 2000 and gw.fields["messages_acked"] == 10 and "clock_synced" not in gw.fields
    [sensor] = stored(tmp_path, "gateway_sensor_health")
    assert sensor.tags == {
        "tenant": "demo-city",
        "gateway": "gw01",
        "sensor": "river-radar-01",
        "site": "ishikari-asahibashi",
        "site_name": "石狩川 旭橋",
    }
    assert sensor.fields["last_ok"] == T_MS - 60_000
    assert c.stats.rejected_by_reason == {}
    c.stop()


def test_consumer_writes_snapshots_at_start_and_every_interval(tmp_path: Path) -> None:
    clock = ManualClock(T)
    c = demo_consumer(tmp_path, clock)
    c.start()  # the worker's first tick writes a snapshot (no broker here: port 1)
    try:
        c.drain(5)
        clock.t = T + 30  # within dashboards_every_s (60 s of the consumer's clock): none
        c.drain(5)
        clock.t = T + 61
        c.drain(5)
        clock.t = T + 601
        c.drain(5)
    finally:
        c.stop()
    snapshots = [T_MS, T_MS + 61_000, T_MS + 601_000]
    for meas in ("site_status", "gateway_status", "tenant_status"):
        assert sorted({p.ts_ms for p in stored(tmp_path, meas)}) == snapshots, meas
    # Thresholds only change with the registry: at start, then every thresholds_every_s (600 s).
    assert sorted({p.ts_ms for p in stored(tmp_path, "thresholds")}) == [T_MS, T_MS + 601_000]
    gateways = stored(tmp_path, "gateway_status")
    assert [(p.tags["gateway"], p.fields["online"]) for p in gateways] == [("gw01", 0)] * 3
    sites = stored(tmp_path, "site_status")
    assert len(sites) == 3 * 4 and {p.tags["type"] for p in sites} == {"river", "snow", "slope"}
    # demo registry: 2 river gauges x 5 stages, 2 snow gauges x (2 levels + dispatch), tilt_x/tilt_y
    # of 2 inclinometers x 3 levels x 2 sides, and the extensometer's levels
    levels = [p for p in stored(tmp_path, "thresholds") if p.ts_ms == T_MS]
    assert sum(p.tags["what"] == "snow_dispatch" for p in levels) == 2
    assert {p.tags["site_name"] for p in levels} >= {"石狩川 旭橋", "中央 5条通, residential"}


def test_alert_links_open_the_dashboard_of_the_alerts_kind_with_the_site_selected() -> None:
    from cloud.alerts.outputs import AlertOutputs
    from cloud.alerts.store import AlertStore
    from cloud.config import AlertsConfig
    from cloud.consumer import alert_manager
    from cloud.dashboards import dashboard_for
    from tests.alert_samples import river_alert

    assert dashboard_for("river_level") == "bosai-rivers" and dashboard_for("tilt_y") == "bosai-slopes"
    assert dashboard_for("") == "bosai-gateways" and dashboard_for("air_temperature") == "bosai-overview"
    config = AlertsConfig(
        dashboard_url="https://g.example.jp/d/{dashboard}?var-tenant={tenant}&var-site={site_name}"
    )
    manager = alert_manager(config, AlertStore(":memory:"), AlertOutputs(None, None, None, []))
    assert manager.links is not None
    alert = river_alert(tenant="demo-city", site_name="中央 5条通, residential", kind="snow_depth")
    assert manager.links(alert) == [
        "https://g.example.jp/d/bosai-snow?var-tenant=demo-city&var-site="
        "%E4%B8%AD%E5%A4%AE%205%E6%9D%A1%E9%80%9A%2C%20residential"
    ]
