"""A gateway config pointed at the simulators: the rehearsal of a site before the real hardware.

It takes a real gateway config (by default the shipped example whose buses and sensors match the
demo scenarios) and rewrites only what differs on this machine: bus endpoints (the simulators'
TCP port and pty paths), the broker, the outbox path and the profiles folder.  The result is a
file that `bosai edge run --config` loads through the same validation as a field installation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from simulators.runner import Endpoints

_REPO = Path(__file__).resolve().parent.parent
EXAMPLE_GATEWAY = _REPO / "firmware_configs" / "gateways" / "demo-city-gw01.yaml"
PROFILES_DIR = _REPO / "firmware_configs" / "profiles"


def write_gateway_config(
    endpoints: Endpoints,
    broker_url: str,
    out: Path,
    *,
    template: Path = EXAMPLE_GATEWAY,
    protocol: str = "5",
    interval: float | None = None,
    rtu_pause: float | None = None,
    batch_interval: float | None = None,
) -> Path:
    """Write `template` with its buses pointed at `endpoints` to `out` (outbox next to it).

    A plain `mqtt://` broker URL is allowed here (`allow_insecure`): the simulators and the
    broker of a rehearsal run on loopback.
    """
    raw: dict[str, Any] = yaml.safe_load(template.read_text(encoding="utf-8"))
    raw["mqtt"] = {
        "url": broker_url,
        "protocol": protocol,
        "allow_insecure": broker_url.startswith("mqtt://"),
        "keepalive": 10,
    }
    raw["outbox"] = {"path": str(out.parent / f"{out.stem}-outbox.sqlite")}
    raw["profiles_dir"] = str(PROFILES_DIR)
    if batch_interval is not None:
        raw["publish"] = {**raw.get("publish", {}), "batch_interval": batch_interval}
    for bus in raw["buses"]:
        if bus["id"] in endpoints.modbus_tcp:
            bus["host"], bus["port"] = endpoints.modbus_tcp[bus["id"]]
        elif bus["id"] in endpoints.serial:
            bus["port"] = endpoints.serial[bus["id"]]
        if rtu_pause is not None and bus["type"] == "modbus_rtu":
            bus["pause"] = rtu_pause
    if interval is not None:
        for sensor in raw["sensors"]:
            sensor["interval"] = interval
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out
