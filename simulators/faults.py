"""Faults a scenario schedules, per device (or for the gateway's uplink), in scenario seconds.

Two families, because they fail in different places of the pipeline:

* value faults change what the sensor *measures* while the protocol stays healthy, so the edge
  reports them with quality `ok`, and only the cloud's plausibility checks can catch them:
  `spike` (adds `magnitude`), `stuck` (repeats the first reading of the window, noise and all),
  `drift` (adds `rate` per hour since `start`).  Units are the point's (what the edge reports).
* transport faults break the conversation, so the edge must flag the reading, never invent one:
  `dropout` (no answer: Modbus timeout, no ASCII line), `exception` (Modbus exception `code`,
  default 04 slave device failure), `bad_crc` (RTU answer with a corrupted CRC), `garbled`
  (ASCII line with characters replaced by line noise), `partial_line` (ASCII line cut short,
  terminator lost, so it runs into the next one), `slow` (answer `delay` wall-clock seconds late,
  wall because it is measured against the edge's wall-clock timeout).  `probability` makes a
  fault hit only that fraction of requests (a noisy line rather than a dead one).
* `link_loss` cuts the gateway's uplink to the broker (see simulators/uplink.py), `blackhole`
  (packets vanish, TCP connections hang: a cellular dead zone) or `reset` (connections refused).

Each fault is written to the ground truth, so detection can be scored for false alarms: a spike
is a sensor fault, not a flood.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from wire.ids import Ident
from wire.telemetry import Kind

Seconds = Annotated[float, msgspec.Meta(ge=0)]


class _Fault(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, frozen=True, kw_only=True):
    start: Seconds
    end: Seconds
    note: str = ""  # why it happens ("bird on the sensor"), shown in the truth and on plots

    @property
    def type_name(self) -> str:
        return str(self.__struct_config__.tag)

    def active(self, t: float) -> bool:
        return self.start <= t < self.end


class _DeviceFault(_Fault, frozen=True, kw_only=True):
    device: Ident


class _ValueFault(_DeviceFault, frozen=True, kw_only=True):
    kind: Kind


class Spike(_ValueFault, tag="spike", frozen=True, kw_only=True):
    magnitude: float


class Stuck(_ValueFault, tag="stuck", frozen=True, kw_only=True):
    pass


class Drift(_ValueFault, tag="drift", frozen=True, kw_only=True):
    rate: float  # point unit per hour


Probability = Annotated[float, msgspec.Meta(gt=0, le=1)]


class _TransportFault(_DeviceFault, frozen=True, kw_only=True):
    probability: Probability = 1.0


class Dropout(_TransportFault, tag="dropout", frozen=True, kw_only=True):
    pass


class ModbusException(_TransportFault, tag="exception", frozen=True, kw_only=True):
    code: Annotated[int, msgspec.Meta(ge=1, le=255)] = 4


class BadCrc(_TransportFault, tag="bad_crc", frozen=True, kw_only=True):
    pass


class Garbled(_TransportFault, tag="garbled", frozen=True, kw_only=True):
    pass


class PartialLine(_TransportFault, tag="partial_line", frozen=True, kw_only=True):
    pass


class Slow(_TransportFault, tag="slow", frozen=True, kw_only=True):
    delay: Annotated[float, msgspec.Meta(gt=0, le=60)]  # wall-clock seconds


class LinkLoss(_Fault, tag="link_loss", frozen=True, kw_only=True):
    mode: Literal["blackhole", "reset"] = "blackhole"


ValueFault = Spike | Stuck | Drift
TransportFault = Dropout | ModbusException | BadCrc | Garbled | PartialLine | Slow
Fault = Spike | Stuck | Drift | Dropout | ModbusException | BadCrc | Garbled | PartialLine | Slow | LinkLoss

# Which transports each transport fault makes sense on (checked at load).
MODBUS_ONLY = (ModbusException,)
RTU_ONLY = (BadCrc,)
ASCII_ONLY = (Garbled, PartialLine)
