"""Modbus TCP (a device with Ethernet, or RS-485 slaves behind a TCP converter)."""

from __future__ import annotations

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient

from edge.config import Bus, ModbusTcpBus
from edge.drivers._modbus import ModbusDriver
from wire.clock import Clock


class ModbusTcpDriver(ModbusDriver):
    reopen_after_timeouts = 5

    def __init__(self, bus: ModbusTcpBus, clock: Clock) -> None:
        super().__init__(bus.id, bus.timeout, bus.retries, clock)
        self.bus = bus

    def _make_client(self) -> ModbusBaseClient:
        # reconnect_delay=0: reconnection is ours (Backoff), so a dead link never blocks the bus.
        return AsyncModbusTcpClient(
            self.bus.host,
            port=self.bus.port,
            timeout=self.bus.timeout,
            retries=self.bus.retries,
            reconnect_delay=0,
            name=self.bus.id,
            trace_packet=self._trace_packet,
        )


def create(bus: Bus, clock: Clock) -> ModbusTcpDriver:
    assert isinstance(bus, ModbusTcpBus)
    return ModbusTcpDriver(bus, clock)
