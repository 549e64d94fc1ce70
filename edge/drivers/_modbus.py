"""What Modbus TCP and Modbus RTU share: read planning, error mapping, reconnection.

A sensor's points are read in as few requests as possible: one request per contiguous run of
registers per function code (FC3 holding / FC4 input), split where Modbus' 125-register limit
forces it.  Gaps are not read across, because many devices answer "illegal data address" for
a span that touches an unmapped register.  A decimals register next to its value is part of
the same run, so value and decimals come from the same request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ExceptionResponse

from edge.config import SensorConfig
from edge.decode import Sample, modbus_sample, reading
from edge.drivers.base import Backoff, failed
from edge.profiles import REGISTER_COUNT, ModbusPoint, Profile
from wire.clock import Clock
from wire.telemetry import Quality, Reading, utc_from_epoch

log = logging.getLogger(__name__)

MAX_REGISTERS_PER_READ = 125  # Modbus application protocol limit for FC3/FC4
Function = Literal["holding", "input"]


@dataclass(frozen=True, slots=True)
class Block:
    function: Function
    start: int
    count: int


def point_addresses(p: ModbusPoint) -> list[int]:
    addrs = list(range(p.address, p.address + REGISTER_COUNT[p.type]))
    if p.decimals_register is not None:
        addrs.append(p.decimals_register)
    return addrs


def plan_reads(points: list[ModbusPoint]) -> list[Block]:
    """Fewest reads covering every register the points need, without reading across gaps."""
    blocks: list[Block] = []
    for function in ("holding", "input"):
        addrs = sorted({a for p in points if p.function == function for a in point_addresses(p)})
        i = 0
        while i < len(addrs):
            start = end = addrs[i]
            i += 1
            while i < len(addrs) and addrs[i] == end + 1 and addrs[i] - start < MAX_REGISTERS_PER_READ:
                end = addrs[i]
                i += 1
            blocks.append(Block(function, start, end - start + 1))
    return blocks


def quiet_pymodbus() -> None:
    """pymodbus logs every unanswered request at ERROR; a dead slave would flood the log.

    The poller reports failing devices itself (once, then quietly), so pymodbus is silenced
    unless someone configured its logger explicitly.
    """
    lg = logging.getLogger("pymodbus")
    if lg.level == logging.NOTSET:
        lg.setLevel(logging.CRITICAL)


class ModbusDriver:
    """Base of the TCP and RTU drivers; subclasses only build the pymodbus client."""

    # TCP only: after this many consecutive unanswered requests from *every* slave the link is
    # presumed half-open (cellular NAT timeouts do that) and is reopened.  pymodbus' own rule
    # (close after retries+3 timeouts) is disabled because behind a TCP-to-RTU converter it
    # would drop the live slaves along with one dead one.
    reopen_after_timeouts: int | None = None

    def __init__(self, name: str, timeout: float, retries: int, clock: Clock) -> None:
        self.name = name
        self.timeout = timeout
        self.retries = retries
        self.clock = clock
        self.backoff = Backoff()
        self._client: ModbusBaseClient | None = None
        self._rx_bytes = 0
        self._timeouts_in_a_row = 0
        self._plans: dict[str, list[Block]] = {}

    def _make_client(self) -> ModbusBaseClient:
        raise NotImplementedError

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        # Bytes that arrived without making a valid frame mean a corrupted answer (pymodbus
        # drops frames with a bad CRC silently and then times out): that is `crc`, not `timeout`.
        if not sending:
            self._rx_bytes += len(data)
        return data

    async def open(self) -> None:
        quiet_pymodbus()
        await self._connected()

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def budget(self, sensor: SensorConfig, profile: Profile) -> float:
        blocks = len(self._plan(profile))
        # connect + every block with its retries, plus scheduling slack
        return self.timeout * (1 + blocks * (self.retries + 1)) + 1.0

    def _plan(self, profile: Profile) -> list[Block]:
        if profile.model not in self._plans:
            assert profile.modbus is not None
            self._plans[profile.model] = plan_reads(list(profile.modbus.points))
        return self._plans[profile.model]

    async def _connected(self) -> bool:
        if self._client is not None and self._client.connected:
            return True
        if not self.backoff.ready():
            return False
        if self._client is None:
            self._client = self._make_client()
            self._client.set_max_no_responses(2**31)
        try:
            ok = await self._client.connect()
        except (TimeoutError, OSError, ModbusException) as exc:
            log.debug("bus %s: connect failed: %s", self.name, exc)
            ok = False
        if ok:
            self.backoff.success()
        else:
            self._client.close()
            self._client = None
            self.backoff.failure()
        return ok

    async def read(self, sensor: SensorConfig, profile: Profile) -> list[Reading]:
        assert profile.modbus is not None and sensor.unit_id is not None
        t = self.clock.now()
        if not await self._connected():
            return failed(sensor, profile, t, Quality.ERROR)
        registers: dict[Function, dict[int, int]] = {"holding": {}, "input": {}}
        bad: dict[tuple[Function, int], Quality] = {}
        give_up: Quality | None = None
        for block in self._plan(profile):
            # After a silent or lost link the other blocks would fail the same way, slowly.
            result = give_up if give_up is not None else await self._read_block(block, sensor.unit_id)
            if isinstance(result, Quality):
                if result in (Quality.TIMEOUT, Quality.ERROR):
                    give_up = result
                bad.update({(block.function, block.start + i): result for i in range(block.count)})
            else:
                registers[block.function].update(enumerate(result, start=block.start))
        ts = utc_from_epoch(t)
        out = []
        for p in profile.modbus.points:
            failures = [bad[(p.function, a)] for a in point_addresses(p) if (p.function, a) in bad]
            sample: Sample
            if failures:
                sample = (None, failures[0])
            else:
                sample = modbus_sample(p, registers[p.function], sensor.mounting_height)
            out.append(reading(sensor, p, ts, sample))
        return out

    async def _read_block(self, block: Block, unit_id: int) -> list[int] | Quality:
        client = self._client
        if client is None:
            return Quality.ERROR
        self._rx_bytes = 0
        try:
            if block.function == "holding":
                rr = await client.read_holding_registers(block.start, count=block.count, device_id=unit_id)
            else:
                rr = await client.read_input_registers(block.start, count=block.count, device_id=unit_id)
        except ModbusIOException:
            return self._timed_out()
        except (ConnectionException, OSError) as exc:
            log.debug("bus %s: connection lost: %s", self.name, exc)
            await self._drop()
            return Quality.ERROR
        except ModbusException as exc:
            log.debug("bus %s: unit %d: %s", self.name, unit_id, exc)
            return Quality.ERROR
        self._timeouts_in_a_row = 0
        if isinstance(rr, ExceptionResponse):
            return Quality.EXCEPTION
        if rr.isError() or len(rr.registers) < block.count:
            return Quality.ERROR
        return list(rr.registers[: block.count])

    def _timed_out(self) -> Quality:
        q = Quality.CRC if self._rx_bytes else Quality.TIMEOUT
        self._timeouts_in_a_row += 1
        limit = self.reopen_after_timeouts
        if limit is not None and self._timeouts_in_a_row >= limit:
            log.debug("bus %s: %d requests unanswered, reopening the connection", self.name, limit)
            self._timeouts_in_a_row = 0
            if self._client is not None:
                self._client.close()
                self._client = None
        return q

    async def _drop(self) -> None:
        await self.close()
        self.backoff.failure()
