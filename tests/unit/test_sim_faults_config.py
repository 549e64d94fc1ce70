"""Fault schedules in scenario files: every mistake is a config error naming file, fault and
field, and faults stay out of the clean truth the templates are checked with."""

from __future__ import annotations

from pathlib import Path

import pytest

from bosai.paths import PROFILES_DIR
from edge.profiles import load_profiles
from simulators.devices import build_devices
from simulators.runner import default_scenario_path, load_scenario
from wire.configfile import ConfigError


def _write(tmp_path: Path, faults: str) -> Path:
    base = default_scenario_path("sensor-faults").read_text(encoding="utf-8")
    p = tmp_path / "s.yaml"
    p.write_text(base[: base.index("faults:")] + "faults:\n" + faults + "\n", encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (
            "{type: spike, device: river-pt-02, kind: river_level, start: 10, end: 5, magnitude: 1}",
            "faults[0] (spike): field 'end'",
        ),
        (
            "{type: spike, device: river-pt-02, kind: river_level, start: 30000, end: 30001, magnitude: 1}",
            "faults[0] (spike): field 'start'",
        ),
        (
            "{type: stuck, device: river-pt-03, kind: river_level, start: 1, end: 5}",
            "faults[0] (stuck): field 'device'",
        ),
        (
            "{type: drift, device: river-pt-02, kind: snow_depth, start: 1, end: 5, rate: 1}",
            "faults[0] (drift): field 'kind'",
        ),
        ("{type: bad_crc, device: river-radar-01, start: 1, end: 5}", "only RTU frames carry a CRC"),
        ("{type: exception, device: snow-us-02, start: 1, end: 5}", "Modbus exceptions need a Modbus device"),
        ("{type: garbled, device: river-pt-02, start: 1, end: 5}", "only ASCII devices send lines"),
        (
            "{type: dropout, device: river-pt-02, start: 1, end: 5, probability: 1.5}",
            "faults[0]: field 'probability'",
        ),
        (
            "{type: slow, device: river-pt-02, start: 1, end: 5}",
            "faults[0]: field 'delay': required field is missing",
        ),
        ("{type: flood, device: river-pt-02, start: 1, end: 5}", "faults[0]"),
        ("{type: link_loss, start: 1, end: 5, mode: jammed}", "faults[0]: field 'mode'"),
        (
            "{type: link_loss, start: 1, end: 5}\n  - {type: link_loss, start: 4, end: 9, mode: reset}",
            "faults[1] (link_loss): field 'start': overlaps faults[0] (link_loss)",
        ),
    ],
)
def test_fault_errors_name_file_fault_and_field(tmp_path: Path, fault: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_scenario(_write(tmp_path, "  - " + fault))
    assert "s.yaml" in str(err.value) and message in str(err.value), str(err.value)


def test_a_copied_scenario_still_finds_its_registry(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, "  []"))
    assert scenario.site_of("river-pt-02") == "ishikari-asahibashi"
    assert scenario.channel("snow-us-02", "snow_depth") is not None


def test_value_faults_alter_measurements_not_truth() -> None:
    scenario = load_scenario(default_scenario_path("sensor-faults"))
    devices = build_devices(scenario, load_profiles(PROFILES_DIR))
    pt = devices["river-pt-02"]
    t = 3300.0  # inside the spike
    assert pt.measured("river_level", t, noisy=False) == pt.truth("river_level", t)
    assert pt.measured("river_level", t) == pytest.approx(pt.truth("river_level", t) + 2.5, abs=0.05)
    assert pt.measured("river_level", 3500.0) == pytest.approx(pt.truth("river_level", 3500.0), abs=0.05)
    laser = devices["snow-laser-01"]  # distance to the surface shrinks by the drift
    clean = laser.measured("snow_depth", 7200.0, noisy=False)
    assert laser.measured("snow_depth", 7200.0) == pytest.approx(clean - 1.5, abs=1.5)
    assert pt.faults_injected == {"spike": 1}


def test_a_diurnal_measurement_error_is_served_but_is_not_truth() -> None:
    scenario = load_scenario(default_scenario_path("blizzard"))
    us = build_devices(scenario, load_profiles(PROFILES_DIR))["snow-us-02"]
    afternoon, dawn = 30600.0, 30600.0 + 12 * 3600  # the error's peak and trough
    for t, sign in ((afternoon, 1), (dawn, -1)):
        # the sensor serves a distance (cm) below its 2.5 m mounting; averaged over its noise
        depths = [250.0 - us.measured("snow_depth", t) for _ in range(400)]
        assert sum(depths) / len(depths) - us.truth("snow_depth", t) == pytest.approx(sign * 0.6, abs=0.1)
