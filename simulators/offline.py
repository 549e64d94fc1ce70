"""A scenario's readings without serving anything: what a gateway polling every device at a fixed
interval would report, computed directly from the virtual devices.

Used by detection evaluation (`bosai evaluate`) and by tests that need hours of realistic data in
milliseconds.  Values are `measured` (truth + seeded noise + value faults, as a depth for
distance-to-depth points); a transport fault at the poll time gives no value, with the fault's
name as the reason (what the edge would turn into a quality flag), except a slow answer that
still comes within `timeout_s` (the bus timeout), which is a value.  Encoding quantisation and link
faults are not modelled: the served path covers those.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edge.profiles import load_profiles
from simulators.devices import VirtualDevice, build_devices
from simulators.faults import Slow
from simulators.scenario import Scenario

DEFAULT_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class Sample:
    device: str
    kind: str
    t: float  # scenario seconds
    value: float | None  # None: the device did not answer (see `fault`)
    unit: str
    fault: str = ""  # name of the transport fault that hit this poll, if any


def scenario_samples(
    scenario: Scenario,
    profiles_dir: Path,
    interval_s: float = DEFAULT_INTERVAL_S,
    devices: dict[str, VirtualDevice] | None = None,
    timeout_s: float = 1.0,
) -> Iterator[Sample]:
    """Every device polled every `interval_s` from t = 0 to the end, in time order."""
    devs = devices if devices is not None else build_devices(scenario, load_profiles(profiles_dir))
    steps = math.floor(scenario.duration / interval_s + 1e-9)
    for k in range(steps + 1):
        t = k * interval_s
        for dev in devs.values():
            fault = dev.transport_fault(t)
            if isinstance(fault, Slow) and fault.delay < timeout_s:
                fault = None
            for feed in dev.spec.points:
                point = dev.point(feed.kind)
                if fault is not None:
                    yield Sample(dev.id, feed.kind, t, None, point.unit, fault.type_name)
                    continue
                yield Sample(dev.id, feed.kind, t, dev.measured(feed.kind, t, as_distance=False), point.unit)
