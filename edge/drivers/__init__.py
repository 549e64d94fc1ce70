"""Protocol drivers, looked up by the bus `type` of the gateway config.

Adding a protocol is one module with a `create(bus, clock)` factory plus one line here.  The
modules are imported on first use, so a gateway without serial ports never loads pyserial.
"""

from __future__ import annotations

import importlib

from edge.config import Bus
from edge.drivers.base import Driver, DriverFactory
from wire.clock import Clock

# bus type (the tag in the config) -> module with `create(bus, clock) -> Driver`
_MODULES: dict[str, str] = {
    "modbus_tcp": "edge.drivers.modbus_tcp",
    "modbus_rtu": "edge.drivers.modbus_rtu",
    "ascii_serial": "edge.drivers.ascii_serial",
}
_FACTORIES: dict[str, DriverFactory] = {}


def register(bus_type: str, factory: DriverFactory) -> None:
    """Add or replace the driver for a bus type (tests use this to plug in stubs)."""
    _FACTORIES[bus_type] = factory


def bus_type(bus: Bus) -> str:
    tag = type(bus).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def create_driver(bus: Bus, clock: Clock) -> Driver:
    kind = bus_type(bus)
    if kind not in _FACTORIES:
        if kind not in _MODULES:
            raise KeyError(f"no driver for bus type {kind!r}")
        factory: DriverFactory = importlib.import_module(_MODULES[kind]).create
        _FACTORIES[kind] = factory
    return _FACTORIES[kind](bus, clock)


__all__ = ["Driver", "DriverFactory", "bus_type", "create_driver", "register"]
