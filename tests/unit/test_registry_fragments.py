"""Registry fragments (`include`) as provisioning writes them, and revoked gateways."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cloud.registry import load_registry
from wire.configfile import ConfigError

MAIN = """\
tenants:
  - {id: city, name: 市}
sites:
  - {id: river-1, tenant: city, name: 川, type: river}
gateways: []
sensors: []
include: ["gateways.d/*/*.yaml"]
"""


def fragment(gateway: str, sensor: str, *, revoked: str | None = None, site: str = "river-1") -> str:
    rev = f", revoked: '{revoked}'" if revoked else ""
    return f"""\
gateways:
  - {{id: {gateway}, tenant: city{rev}}}
sensors:
  - id: {sensor}
    tenant: city
    gateway: {gateway}
    site: {site}
    channels:
      river_level: {{unit: m, range: [-2.0, 30.0]}}
"""


def write(tmp_path: Path, fragments: dict[str, str]) -> Path:
    main = tmp_path / "registry.yaml"
    main.write_text(MAIN, encoding="utf-8")
    for name, text in fragments.items():
        path = tmp_path / "gateways.d" / "city" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return main


def test_fragments_add_their_gateways_and_sensors(tmp_path: Path) -> None:
    fragments = {"gw1.yaml": fragment("gw1", "s1"), "gw2.yaml": fragment("gw2", "s2")}
    reg = load_registry(write(tmp_path, fragments))
    assert set(reg.gateways) == {("city", "gw1"), ("city", "gw2")}
    assert reg.sensor_for("city", "gw2", "s2") is not None
    assert reg.sensor_for("city", "gw1", "s2") is None


def test_a_revoked_gateway_and_its_sensors_are_unknown_at_runtime(tmp_path: Path) -> None:
    revoked = fragment("gw1", "s1", revoked="2026-12-06T08:00:00Z")
    reg = load_registry(write(tmp_path, {"gw1.yaml": revoked, "gw2.yaml": fragment("gw2", "s2")}))
    assert reg.revoked == {("city", "gw1")}
    assert ("city", "gw1") not in reg.gateways
    assert reg.sensor_for("city", "gw1", "s1") is None
    assert [s.id for s in reg.data.sensors] == ["s2"]


def test_errors_name_the_fragment_file(tmp_path: Path) -> None:
    main = write(tmp_path, {"gw1.yaml": fragment("gw1", "s1"), "gw2.yaml": fragment("gw1", "s2")})
    with pytest.raises(ConfigError) as err:
        load_registry(main)
    assert err.value.path.endswith("gw2.yaml")
    assert "gateways[0] (id 'gw1'): field 'id'" in str(err.value)

    main = write(tmp_path, {"gw2.yaml": fragment("gw2", "s2", site="no-such-site")})
    with pytest.raises(ConfigError, match=re.escape("gw2.yaml: sensors[0] (id 's2'): field 'site'")):
        load_registry(main)
