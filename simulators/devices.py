"""Virtual devices: a scenario device entry bound to its profile and the scenario's signals.

A device knows, for each of its profile's points, the true physical value at scenario time t
(`truth`, in the point's unit: what the edge should report after decoding) and what the sensor
itself measures (`measured`: truth plus seeded gaussian noise and any value fault, and for snow
sensors the distance down to the surface rather than the depth).  The transports encode
`measured` values, and ask `transport_fault` whether to answer at all (simulators/faults.py).
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

from edge.profiles import AsciiFormat, AsciiPoint, ModbusPoint, Profile
from simulators.encoding import ascii_number
from simulators.faults import (
    Drift,
    Garbled,
    LinkLoss,
    PartialLine,
    Spike,
    Stuck,
    TransportFault,
    ValueFault,
)
from simulators.scenario import DeviceSpec, Scenario
from wire import units
from wire.configfile import ConfigError
from wire.units import LENGTH_UNITS_PER_METRE

LINE_NOISE = "#?~*%&@!\x00\x7f"  # what a ground loop or a loose RS-232 pin puts in a line

# How many evenly spaced scenario times each ASCII template is rendered at, at load, to check
# that every line it produces matches the profile (catches e.g. a number too wide for the regex).
_TEMPLATE_CHECKS = 49


@dataclass
class VirtualDevice:
    spec: DeviceSpec
    profile: Profile
    scenario: Scenario
    _factor: dict[str, float] = field(default_factory=dict)  # signal unit -> point unit
    _error_factor: dict[str, float] = field(default_factory=dict)  # error signal unit -> point unit
    _rng: dict[str, random.Random] = field(default_factory=dict)
    _value_faults: list[ValueFault] = field(default_factory=list)
    _transport_faults: list[TransportFault] = field(default_factory=list)
    _fault_rng: random.Random = field(default_factory=random.Random)
    _stuck_at: dict[int, float] = field(default_factory=dict)  # index of a Stuck fault -> value
    faults_injected: dict[str, int] = field(default_factory=dict)  # fault type -> times applied

    @property
    def id(self) -> str:
        return self.spec.id

    def points(self) -> list[ModbusPoint | AsciiPoint]:
        if self.profile.modbus is not None:
            return list(self.profile.modbus.points)
        assert self.profile.ascii is not None
        return list(self.profile.ascii.points)

    def point(self, kind: str) -> ModbusPoint | AsciiPoint:
        return next(p for p in self.points() if p.kind == kind)

    def unit_factor(self, kind: str) -> float:
        """Multiply a value in the signal's unit by this to get the point's unit."""
        return self._factor[kind]

    def truth(self, kind: str, t: float) -> float:
        """Noise-free physical value of `kind` at scenario time t, in the point's unit."""
        return self.scenario.value(self.spec.feed(kind).signal, t) * self._factor[kind]

    def measured(self, kind: str, t: float, noisy: bool = True, as_distance: bool = True) -> float:
        """What the sensor measures: truth plus noise and value faults (unless `noisy` is
        False: the clean reading), as a distance for distance-to-depth points (unless
        `as_distance` is False: then as the depth the edge reports)."""
        feed = self.spec.feed(kind)
        value = self.truth(kind, t)
        if noisy and feed.noise > 0:
            value += self._rng[kind].gauss(0.0, feed.noise)
        if noisy and feed.error is not None:
            value += self.scenario.value(feed.error, t) * self._error_factor[kind]
        if noisy:
            value = self._apply_value_faults(kind, t, value)
        point = self.point(kind)
        if point.distance_to_depth and as_distance:
            assert self.spec.mounting_height is not None
            value = self.spec.mounting_height * LENGTH_UNITS_PER_METRE[point.unit] - value
        return value

    def _apply_value_faults(self, kind: str, t: float, value: float) -> float:
        stuck: float | None = None
        for n, fault in enumerate(self._value_faults):
            if fault.kind != kind or not fault.active(t):
                continue
            self._count(fault.type_name)
            if isinstance(fault, Spike):
                value += fault.magnitude
            elif isinstance(fault, Drift):
                value += fault.rate * (t - fault.start) / 3600.0
            elif isinstance(fault, Stuck):
                stuck = self._stuck_at.setdefault(n, value)
        return value if stuck is None else stuck

    def transport_fault(self, t: float) -> TransportFault | None:
        """The transport fault hitting a request at scenario time t, if any (first match in
        file order; `probability` rolls a seeded die per request)."""
        for fault in self._transport_faults:
            if fault.active(t) and (fault.probability >= 1 or self._fault_rng.random() < fault.probability):
                self._count(fault.type_name)
                return fault
        return None

    def _count(self, name: str) -> None:
        self.faults_injected[name] = self.faults_injected.get(name, 0) + 1


@dataclass
class AsciiDevice(VirtualDevice):
    """A device that prints lines; `fmt` is the profile's line format."""

    _fields_rng: random.Random = field(default_factory=random.Random)

    @property
    def fmt(self) -> AsciiFormat:
        assert self.profile.ascii is not None
        return self.profile.ascii

    def lines(self, t: float, noisy: bool = True) -> list[str]:
        """The lines the device sends at scenario time t (without terminators)."""
        values: dict[str, int | float | str] = dict(self.spec.fields)
        for name, (lo, hi) in self.spec.random_fields.items():
            values[name] = self._fields_rng.randint(lo, hi)
        for p in self.fmt.points:
            assert isinstance(p, AsciiPoint)
            values[p.group] = ascii_number(p, self.measured(p.kind, t, noisy))
        return [template.format(**values) for template in self.spec.format]

    def payload(self, t: float, fault: TransportFault | None = None) -> bytes:
        """The bytes sent at scenario time t, terminators included, damaged by `fault`:
        `garbled` replaces about a fifth of each line's characters with line noise,
        `partial_line` cuts one line short and loses its terminator."""
        fmt = self.fmt
        lines = self.lines(t)
        term = fmt.line_terminator
        rng = self._fault_rng
        if isinstance(fault, Garbled):
            lines = [
                "".join(rng.choice(LINE_NOISE) if rng.random() < 0.2 else c for c in line) for line in lines
            ]
            k = rng.randrange(len(lines))  # at least one character of noise
            if lines[k]:
                i = rng.randrange(len(lines[k]))
                lines[k] = lines[k][:i] + rng.choice(LINE_NOISE) + lines[k][i + 1 :]
        text = "".join(line + term for line in lines)
        if isinstance(fault, PartialLine):
            k = rng.randrange(len(lines))
            cut = rng.randrange(1, max(2, len(lines[k])))
            text = "".join((line[:cut] if n == k else line + term) for n, line in enumerate(lines))
        return text.encode(fmt.encoding, errors="replace")


def build_devices(scenario: Scenario, profiles: dict[str, Profile]) -> dict[str, VirtualDevice]:
    """Bind every scenario device to its profile; raise ConfigError on any mismatch."""
    out: dict[str, VirtualDevice] = {}
    used_units: set[tuple[str, int]] = set()
    ascii_buses: set[str] = set()
    for i, spec in enumerate(scenario.devices):
        where = f"devices[{i}] (id {spec.id!r})"
        profile = profiles.get(spec.profile)
        if profile is None:
            raise ConfigError(scenario.path, f"{where}: field 'profile'", f"no profile {spec.profile!r}")
        bus = scenario.bus(spec.bus)
        dev: VirtualDevice
        if profile.protocol == "modbus":
            if bus.type not in ("modbus_tcp", "modbus_rtu"):
                raise ConfigError(
                    scenario.path, f"{where}: field 'bus'", f"profile {profile.model!r} needs a Modbus bus"
                )
            if spec.unit_id is None or (spec.unit_id == 0 and bus.type == "modbus_rtu"):
                raise ConfigError(
                    scenario.path,
                    f"{where}: field 'unit_id'",
                    "a Modbus device needs a unit id (1-247 on RTU)",
                )
            if (spec.bus, spec.unit_id) in used_units:
                raise ConfigError(scenario.path, f"{where}: field 'unit_id'", "already used on this bus")
            used_units.add((spec.bus, spec.unit_id))
            dev = VirtualDevice(spec, profile, scenario)
        else:
            if bus.type != "ascii_serial":
                raise ConfigError(
                    scenario.path,
                    f"{where}: field 'bus'",
                    f"profile {profile.model!r} needs an ascii_serial bus",
                )
            if spec.bus in ascii_buses:
                raise ConfigError(
                    scenario.path, f"{where}: field 'bus'", "an ASCII serial line serves one device"
                )
            ascii_buses.add(spec.bus)
            dev = AsciiDevice(spec, profile, scenario, _fields_rng=_rng(scenario.seed, spec.id, "fields"))
        _bind_points(dev, where)
        _bind_faults(dev)
        if isinstance(dev, AsciiDevice):
            _check_templates(dev, where)
        out[spec.id] = dev
    return out


def _rng(seed: int, *names: str) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`, so this is stable across runs and versions.
    return random.Random("/".join([str(seed), *names]))


def _bind_points(dev: VirtualDevice, where: str) -> None:
    path: Path = dev.scenario.path
    kinds = [p.kind for p in dev.points()]
    for k, given in enumerate(dev.spec.points):
        if given.kind not in kinds:
            raise ConfigError(
                path,
                f"{where}: points[{k}]: field 'kind'",
                f"profile {dev.profile.model!r} has no such point",
            )
    for p in dev.points():
        feed = next((f for f in dev.spec.points if f.kind == p.kind), None)
        if feed is None:
            raise ConfigError(
                path, f"{where}: field 'points'", f"missing {p.kind!r} (every profile point needs a signal)"
            )
        k = dev.spec.points.index(feed)
        dev._factor[p.kind] = _conversion(dev, feed.signal, p.unit, f"{where}: points[{k}]: field 'signal'")
        if feed.error is not None:
            dev._error_factor[p.kind] = _conversion(
                dev, feed.error, p.unit, f"{where}: points[{k}]: field 'error'"
            )
        if p.distance_to_depth and dev.spec.mounting_height is None:
            raise ConfigError(
                path, f"{where}: field 'mounting_height'", "required: the sensor measures distance"
            )
        dev._rng[p.kind] = _rng(dev.scenario.seed, dev.spec.id, p.kind)


def _conversion(dev: VirtualDevice, signal: str, unit: str, where: str) -> float:
    """Factor from a signal's unit to a point's, if they measure the same quantity."""
    given = _signal_unit(dev.scenario, signal)
    factor = units.conversion(given, unit)
    if factor is None:
        raise ConfigError(
            dev.scenario.path, where, f"signal {signal!r} is in {given!r} but the point is in {unit!r}"
        )
    return factor


def _bind_faults(dev: VirtualDevice) -> None:
    for fault in dev.scenario.faults_of(dev.id):
        if isinstance(fault, ValueFault):
            dev._value_faults.append(fault)
        elif not isinstance(fault, LinkLoss):  # the uplink's, not a device's
            dev._transport_faults.append(fault)
    dev._fault_rng = _rng(dev.scenario.seed, dev.spec.id, "faults")


def _signal_unit(scenario: Scenario, name: str) -> str:
    return scenario.signal(name).unit


def _check_templates(dev: AsciiDevice, where: str) -> None:
    path = dev.scenario.path
    if not dev.spec.format:
        raise ConfigError(
            path, f"{where}: field 'format'", "an ASCII device needs one line template per line"
        )
    names = set(dev.spec.fields) | set(dev.spec.random_fields) | {p.group for p in dev.fmt.points}
    for j, template in enumerate(dev.spec.format):
        for _, name, _, _ in string.Formatter().parse(template):
            if name is not None and name not in names:
                raise ConfigError(path, f"{where}: format[{j}]", f"unknown field {{{name}}}")
    patterns = [re.compile(p) for p in dev.fmt.patterns]
    matched: set[int] = set()
    duration = dev.scenario.duration
    state = dev._fields_rng.getstate()  # the check must not shift the served random sequence
    for k in range(_TEMPLATE_CHECKS):
        t = duration * k / (_TEMPLATE_CHECKS - 1)
        try:
            lines = dev.lines(t, noisy=False)
        except (ValueError, TypeError) as exc:
            raise ConfigError(path, f"{where}: field 'format'", f"cannot format: {exc}") from None
        for j, line in enumerate(lines):
            hits = [n for n, pat in enumerate(patterns) if pat.fullmatch(line)]
            if not hits:
                raise ConfigError(
                    path,
                    f"{where}: format[{j}]",
                    f"line {line!r} (scenario time {t:.0f} s) matches no pattern "
                    f"of profile {dev.profile.model!r}",
                )
            matched.update(hits)
    dev._fields_rng.setstate(state)
    missing = [dev.fmt.patterns[n] for n in range(len(patterns)) if n not in matched]
    if missing:
        raise ConfigError(
            path, f"{where}: field 'format'", f"no template produces a line for pattern {missing[0]!r}"
        )
