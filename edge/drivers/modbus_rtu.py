"""Modbus RTU over a serial port (RS-485 with several slaves, or a pseudo-terminal in tests)."""

from __future__ import annotations

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.framer import FramerType

from edge.config import Bus, ModbusRtuBus
from edge.drivers._modbus import ModbusDriver
from wire.clock import Clock


class ModbusRtuDriver(ModbusDriver):
    def __init__(self, bus: ModbusRtuBus, clock: Clock) -> None:
        super().__init__(bus.id, bus.timeout, bus.retries, clock)
        self.bus = bus

    def _make_client(self) -> ModbusBaseClient:
        return AsyncModbusSerialClient(
            self.bus.port,
            framer=FramerType.RTU,
            baudrate=self.bus.baudrate,
            bytesize=self.bus.bytesize,
            parity=self.bus.parity,
            stopbits=self.bus.stopbits,
            timeout=self.bus.timeout,
            retries=self.bus.retries,
            reconnect_delay=0,
            name=self.bus.id,
            trace_packet=self._trace_packet,
        )


def create(bus: Bus, clock: Clock) -> ModbusRtuDriver:
    assert isinstance(bus, ModbusRtuBus)
    return ModbusRtuDriver(bus, clock)
