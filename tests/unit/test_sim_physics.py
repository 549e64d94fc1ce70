"""Physics models against independent numerics, and the shipped scenarios against the thresholds
their header comments state (deploy/cloud/registry.demo.yaml)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from bosai.paths import PROFILES_DIR, REPO_ROOT
from edge.config import load_gateway
from edge.profiles import load_profiles
from simulators.devices import build_devices
from simulators.physics import (
    DAY,
    HOUR,
    Blizzard,
    Constant,
    DegreeDayMelt,
    Diurnal,
    RainBlock,
    RainfallRunoff,
    RainPulse,
    RatingCurve,
    SlopeCreep,
    SnowEvent,
    Snowpack,
)
from simulators.scenario import load_scenario
from wire.configfile import ConfigError

SCENARIOS = REPO_ROOT / "simulators" / "scenarios"
GATEWAY = REPO_ROOT / "firmware_configs" / "gateways" / "demo-city-gw01.yaml"
REGISTRY = REPO_ROOT / "deploy" / "cloud" / "registry.demo.yaml"


# --- slope: Fukuzono / Voight ---------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1.5, 2.0, 2.5])
def test_voight_velocity_satisfies_a_equals_A_v_alpha(alpha: float) -> None:
    s = SlopeCreep(id="s", failure_time=10 * DAY, initial_velocity=2.0, alpha=alpha)
    tf = s.failure_time
    assert s.velocity_mm_per_day(0.0) == pytest.approx(2.0)
    for t in (0.1 * tf, 0.5 * tf, 0.9 * tf, 0.99 * tf):
        h = (tf - t) * 1e-4
        v = s.velocity_mm_per_day(t) / DAY  # mm/s
        a = (s.velocity_mm_per_day(t + h) - s.velocity_mm_per_day(t - h)) / DAY / (2 * h)
        assert a == pytest.approx(s.A * v**alpha, rel=1e-6)
        # the closed-form displacement is the integral of the velocity
        du = (s.displacement_mm(t + h) - s.displacement_mm(t - h)) / (2 * h)
        assert du == pytest.approx(v, rel=1e-6)


@pytest.mark.parametrize("alpha", [1.5, 2.0, 2.5])
def test_voight_displacement_matches_numerical_integration(alpha: float) -> None:
    s = SlopeCreep(id="s", failure_time=4 * DAY, initial_velocity=3.0, alpha=alpha)
    t_end = 0.97 * s.failure_time
    n = 20000
    dt = t_end / n
    total = sum(s.velocity_mm_per_day((i + 0.5) * dt) / DAY * dt for i in range(n))  # midpoint rule
    assert s.displacement_mm(t_end) == pytest.approx(total, rel=1e-5)


def test_inverse_velocity_is_linear_in_time_for_alpha_2() -> None:
    s = SlopeCreep(id="s", failure_time=3 * DAY, initial_velocity=1.5)
    times = [k * 0.1 * s.failure_time for k in range(10)]
    inv = [1.0 / s.velocity_mm_per_day(t) for t in times]
    slopes = {
        round((b - a) / (tb - ta) * 1e9, 6)
        for a, b, ta, tb in zip(inv, inv[1:], times, times[1:], strict=False)
    }
    assert len(slopes) == 1  # a straight line ...
    # ... reaching zero exactly at the failure time
    t0 = times[0] - inv[0] * (times[1] - times[0]) / (inv[1] - inv[0])
    assert t0 == pytest.approx(s.failure_time)


def test_voight_is_continuous_in_alpha_around_2() -> None:
    t = 2.9 * DAY
    ref = SlopeCreep(id="s", failure_time=3 * DAY, initial_velocity=1.0).displacement_mm(t)
    near = SlopeCreep(id="s", failure_time=3 * DAY, initial_velocity=1.0, alpha=2.0 + 1e-9).displacement_mm(t)
    assert near == pytest.approx(ref, rel=1e-7)
    # alpha 2 closed form: u = v0 tf ln(tf / (tf - t))
    assert ref == pytest.approx(1.0 / DAY * 3 * DAY * math.log(3 / 0.1))


def test_rain_pulse_adds_its_displacement_smoothly() -> None:
    pulse = RainPulse(start=DAY, duration=6 * HOUR, displacement=2.0)
    base = SlopeCreep(id="s", failure_time=5 * DAY, initial_velocity=1.0)
    wet = SlopeCreep(id="s", failure_time=5 * DAY, initial_velocity=1.0, pulses=[pulse])
    assert wet.displacement_mm(DAY) == base.displacement_mm(DAY)
    assert wet.displacement_mm(DAY + 3 * HOUR) - base.displacement_mm(DAY + 3 * HOUR) == pytest.approx(1.0)
    assert wet.displacement_mm(2 * DAY) - base.displacement_mm(2 * DAY) == pytest.approx(2.0)
    # no jump in velocity at either end of the ramp, and the peak extra rate is pi/2 times the mean
    for t in (DAY, DAY + 6 * HOUR):
        assert wet.velocity_mm_per_day(t) == pytest.approx(base.velocity_mm_per_day(t))
    extra = wet.velocity_mm_per_day(DAY + 3 * HOUR) - base.velocity_mm_per_day(DAY + 3 * HOUR)
    assert extra == pytest.approx(2.0 / 0.25 * math.pi / 2)
    assert wet.failure_time == base.failure_time  # pulses do not move the failure (documented)


def test_slope_outputs_tilt_in_deg_or_arcsec_and_displacement_in_mm() -> None:
    common = {"id": "s", "failure_time": 5 * DAY, "initial_velocity": 4.0, "lever": 2.0}
    t = 2 * DAY
    deg = SlopeCreep(**common, initial=0.01, drift=3.6)  # type: ignore[arg-type]
    arcsec = SlopeCreep(**common, initial=36.0, drift=3.6, unit="arcsec")  # type: ignore[arg-type]
    mm = SlopeCreep(**common, output="displacement", unit="mm", initial=5.0, drift=0.5)  # type: ignore[arg-type]
    u = deg.displacement_mm(t)
    assert deg.value_at(t) == pytest.approx(0.01 + 3.6 / 3600 * 2 + math.degrees(math.atan(u / 2000)))
    assert arcsec.value_at(t) == pytest.approx(deg.value_at(t) * 3600)
    assert mm.value_at(t) == pytest.approx(5.0 + 0.5 * 2 + u)
    assert mm.drift_per_day == 0.5
    assert SlopeCreep(**common, output="displacement", unit="mm").drift_per_day == 0.0  # type: ignore[arg-type]
    assert SlopeCreep(**common).drift_per_day == 5.0  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        deg.value_at(5 * DAY)


def test_slope_parameter_combinations_are_checked() -> None:
    assert SlopeCreep(id="s", failure_time=DAY, initial_velocity=1, output="displacement").check() == [
        ("unit", "a displacement is in 'mm' (write unit: mm)")
    ]
    assert SlopeCreep(id="s", failure_time=DAY, initial_velocity=1, unit="mm").check()[0][0] == "unit"
    late = RainPulse(start=0.9 * DAY, duration=0.2 * DAY, displacement=1)
    assert SlopeCreep(id="s", failure_time=DAY, initial_velocity=1, pulses=[late]).check() == [
        ("pulses[0]", "must end before 'failure_time'")
    ]


def test_demo_storm_slopes_keep_their_voight_constant() -> None:
    """demo-storm.yaml moved from A to initial_velocity: the same curves (A = 0.11 and 0.6 1/mm)."""
    scenario = load_scenario(SCENARIOS / "demo-storm.yaml")
    for signal, a in (("slope_x", 0.11), ("slope_y", 0.6)):
        s = scenario.signal(signal)
        assert isinstance(s, SlopeCreep)
        assert pytest.approx(a, rel=1e-7) == s.A
        for t in (HOUR, 6 * HOUR, 12 * HOUR):
            assert s.displacement_mm(t) == pytest.approx(math.log(s.failure_time / (s.failure_time - t)) / a)


# --- river: rainfall-runoff ------------------------------------------------------------------------


def _catchment(n: int = 3, rain: list[RainBlock] | None = None) -> RainfallRunoff:
    return RainfallRunoff(
        id="r",
        area=120.0,
        runoff_coefficient=0.6,
        k=2 * HOUR,
        reservoirs=n,
        base_flow=10.0,
        rating=RatingCurve(a=50.0, b=1.8, h0=0.3),
        rain=rain
        if rain is not None
        else [
            RainBlock(start=HOUR, end=4 * HOUR, rate=10.0),
            RainBlock(start=4 * HOUR, end=6 * HOUR, rate=30.0),
            RainBlock(start=5 * HOUR, end=7 * HOUR, rate=5.0),  # overlapping blocks add up
        ],
    )


@pytest.mark.parametrize("n", [1, 2, 4])
def test_nash_cascade_closed_form_matches_ode_integration(n: int) -> None:
    """Integrate dS_i/dt = Q_{i-1} - S_i / k with RK4 and compare with the S-curve superposition."""
    m = _catchment(n)
    dt = 10.0
    storage = [0.0] * n

    def deriv(s: list[float], inflow: float) -> list[float]:
        out = [x / m.k for x in s]
        return [(inflow if i == 0 else out[i - 1]) - out[i] for i in range(n)]

    t = 0.0
    while t < 20 * HOUR - 1e-9:
        inflow = m.inflow(t)  # constant within each step: block edges fall on the grid
        k1 = deriv(storage, inflow)
        k2 = deriv([s + dt / 2 * d for s, d in zip(storage, k1, strict=True)], inflow)
        k3 = deriv([s + dt / 2 * d for s, d in zip(storage, k2, strict=True)], inflow)
        k4 = deriv([s + dt * d for s, d in zip(storage, k3, strict=True)], inflow)
        storage = [
            s + dt / 6 * (a + 2 * b + 2 * c + d)
            for s, a, b, c, d in zip(storage, k1, k2, k3, k4, strict=True)
        ]
        t += dt
        if abs(t / HOUR - round(t / HOUR)) < 1e-9:
            assert m.discharge(t) == pytest.approx(m.base_flow + storage[-1] / m.k, rel=1e-7, abs=1e-9)


def test_nash_cascade_conserves_mass() -> None:
    m = _catchment(3)
    volume_in = sum(
        m.runoff_coefficient * b.rate / 1000 * (b.end - b.start) / HOUR * m.area * 1e6 for b in m.rain
    )
    dt = 30.0
    t_end = 3 * DAY  # long enough for the reservoirs to drain (e^-36 of the storage left)
    q = [m.discharge(k * dt) - m.base_flow for k in range(int(t_end / dt) + 1)]
    volume_out = dt * (sum(q) - (q[0] + q[-1]) / 2)
    assert volume_out == pytest.approx(volume_in, rel=1e-5)
    assert m.inflow(4.5 * HOUR) == pytest.approx(0.6 * 30 * 120 / 3.6)
    assert m.forcing_at("rain", 5.5 * HOUR) == 35.0 and m.forcings() == {"rain": "mm/h"}


def test_nash_unit_hydrograph_peaks_at_n_minus_1_times_k() -> None:
    """A short burst of rain comes out as the Nash IUH, whose peak is at (n - 1) k."""
    burst = [RainBlock(start=0.0, end=60.0, rate=60.0)]
    for n in (2, 3, 5):
        m = _catchment(n, burst)
        times = [k * 10.0 for k in range(int(12 * m.k / 10))]
        peak_t = max(times, key=m.discharge)
        assert peak_t == pytest.approx((n - 1) * m.k + 30.0, abs=20.0)


def test_rating_curve_and_its_inverse() -> None:
    r = RatingCurve(a=120.0, b=2.0, h0=0.4)
    for h in (0.4, 0.9, 2.0, 4.6):
        assert r.stage(r.discharge(h)) == pytest.approx(h)
    assert r.discharge(2.0) == pytest.approx(120 * 1.6**2)
    assert r.discharge(0.1) == 0.0 and r.stage(0.0) == 0.4
    m = _catchment(3, [])
    assert m.value_at(DAY) == pytest.approx(m.rating.stage(m.base_flow))  # base flow only


# --- snow ---------------------------------------------------------------------------------------


def _snowpack(temperature: float, factor: float = 3.0, initial: float = 20.0) -> tuple[Snowpack, Constant]:
    air = Constant(id="air", value=temperature, unit="degC")
    pack = Snowpack(
        id="snow",
        initial_depth=initial,
        events=[SnowEvent(start=2 * HOUR, end=8 * HOUR, peak_rate=5.0, ramp=HOUR)],
        melt=DegreeDayMelt(temperature="air", factor=factor, base=0.0),
    )
    return pack, air


def test_snowpack_without_melt_is_the_blizzard_closed_form() -> None:
    b = Blizzard(id="b", initial_depth=40, start=HOUR, end=7 * HOUR, peak_rate=5, settling_time=5 * HOUR)
    p = Snowpack(
        id="p",
        initial_depth=40,
        events=[SnowEvent(start=HOUR, end=7 * HOUR, peak_rate=5)],
        settling_time=5 * HOUR,
    )
    assert p.depends_on() == ()
    for t in (0.0, 2 * HOUR, 6.5 * HOUR, 10 * HOUR):
        assert p.value_at(t) == b.value_at(t)
        assert p.forcing_at("snowfall", t) == b.forcing_at("snowfall", t)
    assert b.forcing_at("snowfall", 4 * HOUR) == 5.0 and b.forcing_at("snowfall", 1.5 * HOUR) == 2.5
    assert p.snowfall_cm(10 * HOUR) == pytest.approx(5 * 5)  # trapezoid: 5 cm/h over 6 h less 2 ramps


def test_snowfall_total_is_the_integral_of_the_intensity() -> None:
    p = Snowpack(
        id="p",
        initial_depth=0,
        events=[
            SnowEvent(start=HOUR, end=5 * HOUR, peak_rate=4),
            SnowEvent(start=3 * HOUR, end=9 * HOUR, peak_rate=2),
        ],
    )
    dt = 1.0
    for t_end in (4 * HOUR, 12 * HOUR):
        total = sum(p.forcing_at("snowfall", (i + 0.5) * dt) * dt / HOUR for i in range(int(t_end / dt)))
        assert p.snowfall_cm(t_end) == pytest.approx(total, rel=1e-6)


def test_melt_only_when_warmer_than_base() -> None:
    pack, cold = _snowpack(-2.0)
    assert pack.depends_on() == ("air",)
    depth = pack.compile({"air": cold.value_at}, DAY)
    for t in (0.0, 3 * HOUR, 12.5 * HOUR, DAY):
        assert depth(t) == pytest.approx(pack.accumulation(t), abs=1e-9)
    with pytest.raises(ValueError):
        pack.value_at(HOUR)  # melt needs the temperature: only the compiled signal knows it

    pack, warm = _snowpack(2.0, factor=3.0)
    depth = pack.compile({"air": warm.value_at}, DAY)
    # 2 degC above base at 3 cm per degC per day: 6 cm/day less than without melt
    for t in (3 * HOUR, 12 * HOUR, DAY):
        assert pack.accumulation(t) - depth(t) == pytest.approx(6.0 * t / DAY, abs=1e-6)


def test_melt_never_digs_below_bare_ground_and_new_snow_builds_again() -> None:
    air = Diurnal(id="air", mean=2.0, amplitude=6.0, peak_time=14 * HOUR)
    pack = Snowpack(
        id="snow",
        initial_depth=5.0,
        events=[SnowEvent(start=40 * HOUR, end=44 * HOUR, peak_rate=3.0)],  # at night (-4 degC)
        melt=DegreeDayMelt(temperature="air", factor=4.0),
    )
    depth = pack.compile({"air": air.value_at}, 2 * DAY)
    series = [depth(k * 60.0) for k in range(2 * 24 * 60 + 1)]
    assert min(series) == 0.0 and all(d >= 0.0 for d in series)
    assert series[20 * 60] == 0.0  # melted out on day 1
    assert depth(44 * HOUR) > 5.0  # the night's snowfall lies on bare ground
    # while it is freezing the depth changes only by snowfall and settling
    for k in range(1, len(series)):
        if air.value_at((k - 0.5) * 60.0) <= 0.0 and series[k] > 0.0:
            change = pack.accumulation(k * 60.0) - pack.accumulation((k - 1) * 60.0)
            assert series[k] - series[k - 1] == pytest.approx(change, abs=1e-9)


def test_melt_reads_a_signal_of_the_scenario(tmp_path: Path) -> None:
    text = (SCENARIOS / "blizzard.yaml").read_text()
    p = tmp_path / "s.yaml"
    p.write_text(text.replace("temperature: air_temp, factor: 4.0", "temperature: air_tmp, factor: 4.0", 1))
    with pytest.raises(ConfigError, match=r"signals\[1\] \(id 'snow_route12'\): reads signal 'air_tmp'"):
        load_scenario(p)
    p.write_text(text.replace("{start: 3600, end: 36000,", "{start: 36000, end: 3600,", 1))
    with pytest.raises(ConfigError, match=r"signals\[1\] \(id 'snow_route12'\): field 'events\[0\].end'"):
        load_scenario(p)
    p.write_text(
        text.replace(
            "    initial_velocity: 0.2     # mm/day\n", "    initial_velocity: 0.2\n    alpha: 1.0\n"
        )
    )
    with pytest.raises(ConfigError, match=r"alpha"):
        load_scenario(p)


# --- shipped scenarios ------------------------------------------------------------------------------

# Threshold crossings the scenario files' header comments state: (device, kind) ->
# [(threshold, "up" | "down", hours of scenario time)]; every other channel crosses nothing.
_RIVER_TYPHOON = [
    (2.0, "up", 8.4),
    (2.6, "up", 10.7),
    (3.2, "up", 12.6),
    (3.8, "up", 14.5),
    (3.8, "down", 21.2),
    (3.2, "down", 24.0),
    (2.6, "down", 26.6),
    (2.0, "down", 29.6),
]
STATED: dict[str, dict[tuple[str, str], list[tuple[float, str, float]]]] = {
    "blizzard": {
        ("snow-laser-01", "snow_depth"): [(60.0, "up", 7.75), (75.0, "up", 16.6), (75.0, "down", 31.9)],
        ("snow-us-02", "snow_depth"): [(60.0, "up", 7.85), (75.0, "up", 16.75), (75.0, "down", 29.75)],
    },
    "typhoon-flood": {
        ("river-radar-01", "river_level"): _RIVER_TYPHOON,
        ("river-pt-02", "river_level"): _RIVER_TYPHOON,
    },
    "slope-failure": {
        (dev, kind): events
        for dev in ("slope-incl-01", "slope-incl-02")
        for kind, events in (
            ("tilt_x", [(0.1, "up", 15.8), (0.5, "up", 51.8), (1.5, "up", 82.5)]),
            ("tilt_y", [(0.1, "up", 40.9), (0.5, "up", 84.45)]),
        )
    },
    "quiet-day": {},
}


def _crossings(name: str) -> dict[tuple[str, str], list[tuple[float, str, float]]]:
    """Every threshold crossing of the scenario's truth, sampled each minute."""
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    devices = build_devices(scenario, load_profiles(PROFILES_DIR))
    registry = yaml.safe_load(REGISTRY.read_text())
    times = [k * 60.0 for k in range(int(scenario.duration // 60) + 1)]
    found: dict[tuple[str, str], list[tuple[float, str, float]]] = {}
    for sensor in registry["sensors"]:
        if sensor["id"] not in devices:  # registered, but not in this scenario
            continue
        dev = devices[sensor["id"]]
        for kind, channel in sensor["channels"].items():
            absolute = channel.get("direction") == "absolute"
            values = [dev.truth(kind, t) for t in times]
            values = [abs(v) for v in values] if absolute else values
            events = []
            for th in channel.get("thresholds", []):
                x = th["value"]
                for k in range(1, len(times)):
                    if values[k - 1] < x <= values[k]:
                        events.append((x, "up", times[k] / HOUR))
                    elif values[k - 1] >= x > values[k]:
                        events.append((x, "down", times[k] / HOUR))
            if events:
                found[(sensor["id"], kind)] = sorted(events, key=lambda e: e[2])
    return found


@pytest.mark.parametrize("name", sorted(STATED))
def test_shipped_scenario_crosses_the_thresholds_its_comments_state(name: str) -> None:
    found = _crossings(name)
    stated = STATED[name]
    assert set(found) == set(stated)
    for key, events in stated.items():
        got = found[key]
        assert [(x, d) for x, d, _ in got] == [(x, d) for x, d, _ in events], key
        for (_, _, t_got), (_, _, t_stated) in zip(got, events, strict=True):
            assert t_got == pytest.approx(t_stated, abs=0.1), key


def test_typhoon_peaks_between_danger_and_overflow_with_300_mm_of_rain() -> None:
    scenario = load_scenario(SCENARIOS / "typhoon-flood.yaml")
    river = scenario.signal("river_stage")
    assert isinstance(river, RainfallRunoff)
    total = sum(b.rate * (b.end - b.start) / HOUR for b in river.rain)
    assert 280 <= total <= 320
    assert max(b.end for b in river.rain) - min(b.start for b in river.rain) == 20 * HOUR
    peak = max(scenario.value("river_stage", k * 60.0) for k in range(int(scenario.duration // 60) + 1))
    assert 3.8 < peak < 4.6


def test_slope_failure_comes_shortly_after_the_end() -> None:
    scenario = load_scenario(SCENARIOS / "slope-failure.yaml")
    for name in ("slope_x", "slope_y"):
        s = scenario.signal(name)
        assert isinstance(s, SlopeCreep) and s.alpha == 2.0 and s.pulses
        assert 0 < s.failure_time - scenario.duration <= 2 * HOUR
    x = scenario.signal("slope_x")
    assert isinstance(x, SlopeCreep)
    assert x.velocity_mm_per_day(scenario.duration) > 80  # "strict alert" rates by the end


def test_blizzard_snowfall_and_melt() -> None:
    scenario = load_scenario(SCENARIOS / "blizzard.yaml")
    for name in ("snow_route12", "snow_chuo"):
        s = scenario.signal(name)
        assert isinstance(s, Snowpack) and len(s.events) == 2 and s.melt is not None
        assert max(s.forcing_at("snowfall", k * 60.0) for k in range(36 * 60)) <= 5.0
        melted = s.accumulation(scenario.duration) - scenario.value(name, scenario.duration)
        assert 3.0 < melted < 10.0


@pytest.mark.parametrize("name", [*sorted(STATED), "demo-storm"])
def test_shipped_scenarios_rehearse_the_demo_gateway(name: str) -> None:
    gateway = load_gateway(GATEWAY).config
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    build_devices(scenario, load_profiles(PROFILES_DIR))  # profiles and ASCII templates fit
    bus_types = {b.id: type(b).__struct_config__.tag for b in gateway.buses}
    assert {b.id: b.type for b in scenario.buses} == bus_types
    got = {(d.id, d.profile, d.bus, d.unit_id, d.mounting_height) for d in scenario.devices}
    want = {(s.id, s.profile, s.bus, s.unit_id, s.mounting_height) for s in gateway.sensors}
    assert want <= got  # every sensor of the gateway is served (a scenario may add devices)
    extra = {d for d, *_ in got - want}
    assert extra == ({"slope-ext-01"} if name == "slope-failure" else set())
    assert scenario.name == name and scenario.description and "\n" not in scenario.description
