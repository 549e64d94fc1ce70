"""Scenario files: named physical signals and the virtual devices that measure them.

A scenario (simulators/scenarios/*.yaml) says what happens in the world (`signals`, each a model
from simulators/physics.py) and which devices observe it on which bus (`devices`, matching the
ids, profiles, buses and unit ids of a gateway config).  Example:

    name: demo-storm
    description: ...
    duration: 43200            # seconds of scenario time
    seed: 2                    # noise and random fields are reproducible for a given seed
    buses:
      - {id: plc-tcp, type: modbus_tcp}          # optional `port` (default: a free one)
      - {id: rs485-1, type: modbus_rtu}
    signals:
      - {id: river, model: flood_hydrograph, base: 1.2, peak_rise: 2.8, onset: 5400, time_to_peak: 18000}
    devices:
      - id: river-radar-01
        profile: radar-level-rl
        bus: plc-tcp
        unit_id: 1
        points:   # one per profile point; noise: gaussian stddev in the point's unit
          - {kind: river_level, signal: river, noise: 0.005}

A point of a profile with a decimals register serves `decimals` (default 3) in it.  Snow sensors
(`distance_to_depth` points) serve mounting_height - depth, with `mounting_height` in metres as in
the gateway config.  ASCII devices give one str.format template per line in `format`; its fields
are the profile's regex group names (filled with the value as the device would print it, i.e.
before the profile's scale/offset), constants from `fields`, and integers drawn uniformly per
line from `random_fields` (e.g. an echo quality number).  Free-running devices send every
`interval` seconds of scenario time.  Cross-checks against the profiles happen when the devices
are built (simulators.devices.build_devices).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from simulators.faults import ASCII_ONLY, MODBUS_ONLY, RTU_ONLY, Fault, LinkLoss, ValueFault
from simulators.physics import Blizzard, Signal, SlopeCreep, TimeFunction
from wire import configfile
from wire.configfile import ConfigError
from wire.ids import Ident
from wire.telemetry import Kind

if TYPE_CHECKING:
    from cloud.registry import Channel, Registry, Sensor

BusType = Literal["modbus_tcp", "modbus_rtu", "ascii_serial"]
SHIPPED_DIR = Path(__file__).resolve().parent / "scenarios"


class BusSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: Ident
    type: BusType
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None  # TCP only; default a free port


class PointFeed(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    kind: Kind  # a point of the device's profile
    signal: Ident  # id of an entry in `signals`
    noise: Annotated[float, msgspec.Meta(ge=0)] = 0.0  # gaussian stddev, in the point's unit
    decimals: Annotated[int, msgspec.Meta(ge=0, le=6)] = 3  # served by the decimals register, if any
    # A signal added to what the sensor measures but not to the truth: a systematic error, e.g.
    # a `diurnal` with mean 0 for an ultrasonic sensor's temperature-compensation error.
    error: Ident | None = None


class DeviceSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: Ident
    profile: Ident
    bus: Ident
    points: list[PointFeed]  # one entry per point of the profile
    unit_id: Annotated[int, msgspec.Meta(ge=0, le=247)] | None = None  # Modbus; 0 only on TCP
    mounting_height: Annotated[float, msgspec.Meta(gt=0)] | None = None  # m, distance-to-depth sensors
    # ASCII devices
    format: list[str] = []
    fields: dict[str, int | float | str] = {}
    random_fields: dict[str, tuple[int, int]] = {}
    interval: Annotated[float, msgspec.Meta(gt=0)] = 10.0  # free-running devices, scenario seconds

    def feed(self, kind: str) -> PointFeed:
        return next(f for f in self.points if f.kind == kind)


class ScenarioFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Ident
    description: str
    duration: Annotated[float, msgspec.Meta(gt=0)]
    buses: Annotated[list[BusSpec], msgspec.Meta(min_length=1)]
    signals: list[Signal]
    devices: Annotated[list[DeviceSpec], msgspec.Meta(min_length=1)]
    seed: int = 0
    faults: list[Fault] = []
    # The cloud registry whose sites and thresholds the ground truth's crossings are scored
    # against (path relative to this file), and the tenant the devices belong to in it.
    registry: str | None = None
    tenant: Ident | None = None


@dataclass(frozen=True)
class Scenario:
    """A validated scenario file.  Scenario time runs from 0 to `duration` seconds."""

    path: Path
    spec: ScenarioFile
    registry: Registry | None = None
    signals: dict[str, Signal] = field(init=False)
    _compiled: dict[str, TimeFunction] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "signals", {s.id: s for s in self.spec.signals})
        object.__setattr__(self, "_compiled", _compile_signals(self.path, self.spec))

    @property
    def faults(self) -> list[Fault]:
        return self.spec.faults

    def faults_of(self, device_id: str) -> list[Fault]:
        return [f for f in self.spec.faults if getattr(f, "device", None) == device_id]

    def link_losses(self) -> list[LinkLoss]:
        return [f for f in self.spec.faults if isinstance(f, LinkLoss)]

    def _sensor(self, device_id: str) -> Sensor | None:
        if self.registry is None or self.spec.tenant is None:
            return None
        return self.registry.sensors.get((self.spec.tenant, device_id))

    def site_of(self, device_id: str) -> str | None:
        """The registry site of a device (devices are named like the sensors they stand for)."""
        sensor = self._sensor(device_id)
        return sensor.site if sensor else None

    def channel(self, device_id: str, kind: str) -> Channel | None:
        """The registry channel (unit, direction, thresholds) of a device's measured kind."""
        sensor = self._sensor(device_id)
        return sensor.channels.get(kind) if sensor else None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def duration(self) -> float:
        return self.spec.duration

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def devices(self) -> list[DeviceSpec]:
        return self.spec.devices

    @property
    def buses(self) -> list[BusSpec]:
        return self.spec.buses

    def bus(self, bus_id: str) -> BusSpec:
        return next(b for b in self.spec.buses if b.id == bus_id)

    def signal(self, name: str) -> Signal:
        return self.signals[name]

    def value(self, signal: str, t: float) -> float:
        """Signal value at scenario time t.  Time is held within [0, duration]: before the start
        and after the end the world stands still (so a slope never reaches its failure time)."""
        return self._compiled[signal](min(max(t, 0.0), self.spec.duration))


def _compile_signals(path: Path, spec: ScenarioFile) -> dict[str, TimeFunction]:
    """Compile every signal after the ones it depends on; unknown ids and cycles are errors."""
    by_id = {s.id: (i, s) for i, s in enumerate(spec.signals)}
    compiled: dict[str, TimeFunction] = {}
    visiting: set[str] = set()

    def visit(name: str) -> TimeFunction:
        if name in compiled:
            return compiled[name]
        i, sig = by_id[name]
        where = f"signals[{i}] (id {name!r})"
        if name in visiting:
            raise ConfigError(path, where, "depends on itself through other signals")
        visiting.add(name)
        inputs: dict[str, TimeFunction] = {}
        for dep in sig.depends_on():
            if dep not in by_id:
                raise ConfigError(path, where, f"reads signal {dep!r}, which is not in 'signals'")
            inputs[dep] = visit(dep)
        visiting.discard(name)
        compiled[name] = sig.compile(inputs, spec.duration)
        return compiled[name]

    for name in by_id:
        visit(name)
    return compiled


def load_scenario(path: str | Path, registry: str | Path | None = None) -> Scenario:
    """Load and check a scenario file, or raise ConfigError naming file, entity and field.
    `registry` overrides the file's own `registry` (thresholds for the ground truth)."""
    from cloud.registry import load_registry  # the registry's schema is the cloud's

    path = Path(path)
    spec = configfile.load(path, ScenarioFile)
    _check(spec, path)
    reg_path = Path(registry) if registry is not None else None
    if reg_path is None and spec.registry is not None:
        # Relative to the scenario file; a copy of a shipped scenario (edited elsewhere) still
        # finds the registry the shipped one names.
        candidates = [(path.parent / spec.registry).resolve(), (SHIPPED_DIR / spec.registry).resolve()]
        reg_path = next((c for c in candidates if c.exists()), None)
        if reg_path is None:
            raise ConfigError(path, "field 'registry'", f"no such file: {candidates[0]}")
    if reg_path is not None and spec.tenant is None:
        raise ConfigError(path, "field 'tenant'", "required with a registry: the tenant of the devices")
    return Scenario(path, spec, load_registry(reg_path) if reg_path is not None else None)


def _check(spec: ScenarioFile, path: Path) -> None:
    signals = configfile.index_by_id(path, "signals", spec.signals)
    for i, sig in enumerate(spec.signals):
        where = f"signals[{i}] (id {sig.id!r})"
        if isinstance(sig, SlopeCreep) and sig.failure_time <= spec.duration:
            raise ConfigError(
                path,
                f"{where}: field 'failure_time'",
                "must be after the scenario end (creep is infinite at failure)",
            )
        if isinstance(sig, Blizzard) and sig.end <= sig.start:
            raise ConfigError(path, f"{where}: field 'end'", "must be after 'start'")
        for fld, message in sig.check():
            raise ConfigError(path, f"{where}: field {fld!r}", message)
    buses = configfile.index_by_id(path, "buses", spec.buses)
    for i, bus in enumerate(spec.buses):
        if bus.port is not None and bus.type != "modbus_tcp":
            raise ConfigError(path, f"buses[{i}] (id {bus.id!r}): field 'port'", "only for modbus_tcp buses")
    configfile.index_by_id(path, "devices", spec.devices)
    for i, dev in enumerate(spec.devices):
        where = f"devices[{i}] (id {dev.id!r})"
        if dev.bus not in buses:
            raise ConfigError(path, f"{where}: field 'bus'", f"no bus with id {dev.bus!r} in 'buses'")
        kinds: set[str] = set()
        for k, feed in enumerate(dev.points):
            if feed.kind in kinds:
                raise ConfigError(
                    path, f"{where}: points[{k}]: field 'kind'", f"{feed.kind!r} is given twice"
                )
            kinds.add(feed.kind)
            if feed.signal not in signals:
                raise ConfigError(path, f"{where}: points[{k}]: field 'signal'", f"no signal {feed.signal!r}")
            if feed.error is not None and feed.error not in signals:
                raise ConfigError(path, f"{where}: points[{k}]: field 'error'", f"no signal {feed.error!r}")
        for name, (lo, hi) in dev.random_fields.items():
            if lo > hi:
                raise ConfigError(path, f"{where}: random_fields: field {name!r}", "low must not exceed high")
    _check_faults(spec, path, buses)


def _check_faults(spec: ScenarioFile, path: Path, buses: dict[str, BusSpec]) -> None:
    """Faults must name a device and point that exist, fit the device's transport, and lie in
    the scenario.  (Whether the transport is Modbus or ASCII is the bus's type.)"""
    devices = {d.id: d for d in spec.devices}
    for i, fault in enumerate(spec.faults):
        where = f"faults[{i}] ({fault.type_name})"
        if fault.end <= fault.start:
            raise ConfigError(path, f"{where}: field 'end'", "must be after 'start'")
        if fault.start >= spec.duration:
            raise ConfigError(path, f"{where}: field 'start'", "must be before the scenario end")
        if isinstance(fault, LinkLoss):
            # one uplink: its outages follow each other (they may touch)
            for j, other in enumerate(spec.faults[:i]):
                if isinstance(other, LinkLoss) and other.start < fault.end and fault.start < other.end:
                    raise ConfigError(path, f"{where}: field 'start'", f"overlaps faults[{j}] (link_loss)")
            continue
        dev = devices.get(fault.device)
        if dev is None:
            raise ConfigError(path, f"{where}: field 'device'", f"no device {fault.device!r}")
        if isinstance(fault, ValueFault) and fault.kind not in {p.kind for p in dev.points}:
            raise ConfigError(path, f"{where}: field 'kind'", f"{dev.id!r} has no point {fault.kind!r}")
        bus_type = buses[dev.bus].type
        if isinstance(fault, MODBUS_ONLY) and bus_type == "ascii_serial":
            raise ConfigError(path, f"{where}: field 'type'", "Modbus exceptions need a Modbus device")
        if isinstance(fault, RTU_ONLY) and bus_type != "modbus_rtu":
            raise ConfigError(path, f"{where}: field 'type'", "only RTU frames carry a CRC (TCP has none)")
        if isinstance(fault, ASCII_ONLY) and bus_type != "ascii_serial":
            raise ConfigError(path, f"{where}: field 'type'", "only ASCII devices send lines")
