"""The layout's rules, checked: the cloud never imports the edge, the gateway never needs the
cloud's heavy dependencies, and the shared wire contract depends on neither."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLOUD_ONLY = {"numpy", "scipy", "influxdb_client", "grafana_client", "matplotlib", "cloud"}


def _imports(package: str) -> set[tuple[str, str]]:
    """(file, top-level module) for every import statement in a package, lazy ones included."""
    found: set[tuple[str, str]] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {(str(path.relative_to(ROOT)), a.name.split(".")[0]) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add((str(path.relative_to(ROOT)), node.module.split(".")[0]))
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("cloud", {"edge", "simulators", "provision"}),
        ("edge", CLOUD_ONLY | {"simulators", "provision"}),
        (
            "wire",
            {"edge", "cloud", "provision", "simulators", "bosai", "paho", "pymodbus", "serial"} | CLOUD_ONLY,
        ),
    ],
)
def test_package_does_not_import(package: str, forbidden: set[str]) -> None:
    bad = sorted((f, m) for f, m in _imports(package) if m in forbidden)
    assert bad == [], f"{package} must not import {forbidden}: {bad}"


def test_gateway_agent_and_cli_run_without_cloud_dependencies() -> None:
    """Import the whole agent and print every edge help text with the cloud's packages made
    unimportable, as on a gateway installed with only `.[edge]`."""
    blocked = sorted(CLOUD_ONLY - {"cloud"})
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("not installed on a gateway: " + name)
sys.meta_path.insert(0, Block())
import edge.agent, edge.drivers.modbus_rtu, edge.drivers.modbus_tcp, edge.drivers.ascii_serial
from bosai.cli import main
for argv in (["--help"], ["edge", "--help"], ["edge", "run", "--help"], ["gateway", "--help"],
             ["gateway", "install", "--help"]):
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code == 0, (argv, exc.code)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage: bosai edge run" in proc.stdout
