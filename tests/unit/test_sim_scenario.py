"""Physics models, the shipped scenarios against the demo registry, and scenario config errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from bosai.paths import PROFILES_DIR, REPO_ROOT
from edge.config import load_gateway
from edge.profiles import load_profiles
from simulators.devices import AsciiDevice, build_devices
from simulators.physics import HOUR, Blizzard, Diurnal, FloodHydrograph, SlopeCreep
from simulators.runner import default_scenario_path, load_scenario, scenario_names
from wire.configfile import ConfigError

GATEWAY = REPO_ROOT / "firmware_configs" / "gateways" / "demo-city-gw01.yaml"


def test_hydrograph_peaks_at_time_to_peak() -> None:
    h = FloodHydrograph(id="h", base=1.0, peak_rise=2.0, onset=HOUR, time_to_peak=4 * HOUR)
    assert h.value_at(0) == h.value_at(HOUR) == 1.0
    assert h.value_at(5 * HOUR) == pytest.approx(3.0)
    assert h.value_at(4.9 * HOUR) < 3.0 and h.value_at(5.1 * HOUR) < 3.0


def test_blizzard_closed_form_matches_numerical_integration() -> None:
    b = Blizzard(
        id="b", initial_depth=40, start=HOUR, end=7 * HOUR, peak_rate=5, ramp=HOUR, settling_time=5 * HOUR
    )

    def numeric(t: float, n: int = 20000) -> float:
        total = max(0.0, b.initial_depth - b.pack_settling * t / HOUR)
        ds = t / n
        for i in range(n):
            s = (i + 0.5) * ds
            ramp = min(1.0, (s - b.start) / b.ramp, (b.end - s) / b.ramp)
            rate = max(0.0, ramp) * b.peak_rate / HOUR if b.start <= s <= b.end else 0.0
            c = b.settled_fraction
            total += rate * ds * (c + (1 - c) * math.exp(-(t - s) / b.settling_time))
        return total

    for t in (0.5 * HOUR, 1.5 * HOUR, 4 * HOUR, 6.5 * HOUR, 10 * HOUR):
        assert b.value_at(t) == pytest.approx(numeric(t), abs=1e-3)


def test_slope_creep_follows_inverse_velocity() -> None:
    tf = 10 * HOUR
    s = SlopeCreep(id="s", failure_time=tf, initial_velocity=86400 / (0.2 * tf), drift=0.0, lever=1.0)
    # 1/v falls linearly to 0 at tf: v = 1 / (A (tf - t)) in mm/s
    for t in (HOUR, 5 * HOUR, 9.9 * HOUR):
        dt = 1.0
        v = (s.displacement_mm(t + dt) - s.displacement_mm(t - dt)) / (2 * dt)
        assert 1 / v == pytest.approx(s.A * (tf - t), rel=1e-4)
    assert math.isfinite(s.value_at(tf - 1e-3))
    with pytest.raises(ValueError):
        s.value_at(tf)


def test_diurnal_peak() -> None:
    d = Diurnal(id="d", mean=-5, amplitude=2, peak_time=3 * HOUR)
    assert d.value_at(3 * HOUR) == pytest.approx(-3)
    assert d.value_at(15 * HOUR) == pytest.approx(-7)


def _series(device: str, kind: str, name: str = "demo-storm") -> list[tuple[float, float]]:
    scenario = load_scenario(default_scenario_path(name))
    dev = build_devices(scenario, load_profiles(PROFILES_DIR))[device]
    return [(t, dev.truth(kind, t)) for t in range(0, int(scenario.duration) + 1, 60)]


def _crossed(series: list[tuple[float, float]], level: float) -> bool:
    return any(abs(v) >= level for _, v in series)


def test_demo_storm_river_crosses_stages_but_not_overflow() -> None:
    for device in ("river-radar-01", "river-pt-02"):
        s = _series(device, "river_level")
        assert s[0][1] == pytest.approx(1.2)
        peak_t, peak = max(s, key=lambda p: p[1])
        assert 3.8 < peak < 4.6 and 6 * HOUR <= peak_t <= 7 * HOUR
        assert s[-1][1] < 3.2  # falling back


def test_demo_storm_snow_crosses_60_and_75_during_the_blizzard() -> None:
    for device in ("snow-laser-01", "snow-us-02"):
        s = _series(device, "snow_depth")
        assert 43 < s[0][1] < 50 and max(v for _, v in s) < 85
        first_60 = next(t for t, v in s if v >= 60)
        first_75 = next(t for t, v in s if v >= 75)
        assert 2 * HOUR < first_60 < first_75 < 8 * HOUR


def test_demo_storm_slope_accelerates_past_1_5_deg_before_the_end() -> None:
    for device in ("slope-incl-01", "slope-incl-02"):
        x = _series(device, "tilt_x")
        y = _series(device, "tilt_y")
        assert x[0][1] == pytest.approx(0.02, abs=0.001)
        first_15 = next(t for t, v in x if v >= 1.5)
        assert 11 * HOUR < first_15 < 12 * HOUR
        assert max(abs(v) for _, v in y) < 0.5


def test_quiet_day_crosses_nothing() -> None:
    registry = yaml.safe_load((REPO_ROOT / "deploy" / "cloud" / "registry.demo.yaml").read_text())
    for sensor in registry["sensors"]:
        for kind, channel in sensor["channels"].items():
            lowest = min((t["value"] for t in channel.get("thresholds", [])), default=None)
            if lowest is not None:
                assert not _crossed(_series(sensor["id"], kind, "quiet-day"), lowest), (sensor["id"], kind)


@pytest.mark.parametrize("name", ["demo-storm", "quiet-day"])
def test_shipped_scenarios_match_the_demo_gateway(name: str) -> None:
    gateway = load_gateway(GATEWAY).config
    scenario = load_scenario(default_scenario_path(name))
    bus_types = {b.id: type(b).__struct_config__.tag for b in gateway.buses}
    assert {b.id: b.type for b in scenario.buses} == bus_types
    got = {(d.id, d.profile, d.bus, d.unit_id, d.mounting_height) for d in scenario.devices}
    want = {(s.id, s.profile, s.bus, s.unit_id, s.mounting_height) for s in gateway.sensors}
    assert got == want
    assert name in scenario_names()


def test_ascii_lines_match_the_profiles() -> None:
    scenario = load_scenario(default_scenario_path("demo-storm"))
    devices = build_devices(scenario, load_profiles(PROFILES_DIR))
    us = devices["snow-us-02"]
    assert isinstance(us, AsciiDevice)
    (line,) = us.lines(0.0, noisy=False)
    assert line.startswith("01 2.030 ") and line.endswith(" 12.08")
    assert 160 <= int(line.split()[2]) <= 200
    incl = devices["slope-incl-02"]
    assert isinstance(incl, AsciiDevice)
    assert incl.lines(0.0, noisy=False) == ["X=+00.020", "Y=-00.010"]


def _write(tmp_path: Path, text: str) -> Path:
    base = default_scenario_path("demo-storm").read_text()
    old, new = text.split("|||")
    assert old in base
    p = tmp_path / "s.yaml"
    p.write_text(base.replace(old, new))
    return p


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("failure_time: 43920|||failure_time: 40000", "signals[3] (id 'slope_x'): field 'failure_time'"),
        (
            "signal: river_stage, noise: 0.005|||signal: rivr",
            "devices[0] (id 'river-radar-01'): points[0]: field 'signal'",
        ),
        ("shape: 3.0|||shape: high", "signals[0] (id 'river_stage'): field 'shape'"),
        ("    model: diurnal\n|||    model: sine\n", "signals[5] (id 'air_temp'): field 'model'"),
        ("    bus: plc-tcp\n|||    bus: plc-tpc\n", "devices[0] (id 'river-radar-01'): field 'bus'"),
    ],
)
def test_config_errors_name_file_entity_field(tmp_path: Path, edit: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_scenario(_write(tmp_path, edit))
    assert "s.yaml" in str(err.value) and message in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("X={x:+07.3f}|||X={x:+08.3f}", "devices[5] (id 'slope-incl-02'): format[0]: line 'X=+000.020'"),
        ('"X={x:+07.3f}", |||', "no template produces a line"),
        ("      - {kind: air_temperature, signal: air_temp, noise: 0.1}\n|||", "missing 'air_temperature'"),
        ("    mounting_height: 3.0\n|||", "devices[1] (id 'snow-laser-01'): field 'mounting_height'"),
        ("    unit_id: 4\n|||    unit_id: 3\n", "devices[3] (id 'river-pt-02'): field 'unit_id'"),
        ("signal: enclosure_temp, noise: 0.05|||signal: river_stage", "is in 'm' but the point is in 'degC'"),
    ],
)
def test_profile_mismatches_are_config_errors(tmp_path: Path, edit: str, message: str) -> None:
    scenario = load_scenario(_write(tmp_path, edit))
    with pytest.raises(ConfigError) as err:
        build_devices(scenario, load_profiles(PROFILES_DIR))
    assert "s.yaml" in str(err.value) and message in str(err.value), str(err.value)
