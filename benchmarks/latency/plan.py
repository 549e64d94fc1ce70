"""Pure arithmetic of the latency benchmark: the background load's shape, the probes' timetable
and percentiles.  No I/O, so tests/unit/test_latency_bench.py can check it directly."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

SENSORS_PER_GATEWAY = 10  # like a deployed gateway batching its sensors into one message
PREPARE_SLACK = 1.2  # messages prepared beyond (rate x run time): publishers must not run dry


@dataclass(frozen=True)
class BackgroundPlan:
    """G gateways x S sensors, each gateway sending one message of S readings every period."""

    gateways: int
    sensors_per_gateway: int
    messages_per_s: float  # all gateways together
    per_gateway: int  # messages encoded up front for each gateway

    @property
    def sensors(self) -> int:
        return self.gateways * self.sensors_per_gateway

    @property
    def readings_per_s(self) -> float:
        return self.messages_per_s * self.sensors_per_gateway

    @property
    def period_s(self) -> float:
        """Seconds between two messages of one gateway (also the spacing of its sample times)."""
        return self.gateways / self.messages_per_s


def background_plan(sensors: int, interval_s: float, rate: float | None, run_s: float) -> BackgroundPlan:
    """`sensors` split over gateways of SENSORS_PER_GATEWAY; each reports every `interval_s`
    (readings/s = sensors / interval_s), unless `rate` gives the messages/s of them all."""
    if sensors < 1 or interval_s <= 0 or run_s <= 0 or (rate is not None and rate <= 0):
        raise ValueError("sensors, interval, rate and run time must be positive")
    per_gateway_sensors = min(SENSORS_PER_GATEWAY, sensors)
    gateways = math.ceil(sensors / per_gateway_sensors)
    messages_per_s = rate if rate is not None else gateways / interval_s
    per_gateway = math.ceil(messages_per_s * run_s * PREPARE_SLACK / gateways) + 1
    return BackgroundPlan(gateways, per_gateway_sensors, messages_per_s, per_gateway)


@dataclass(frozen=True)
class ProbeSlot:
    index: int
    high_at: float  # seconds after the window opens: the reading that crosses the threshold
    low_at: float  # ... and the one back below it by more than clear_margin (resolves it)


def probe_slots(duration_s: float, every_s: float) -> list[ProbeSlot]:
    """One crossing every `every_s` within the window, each resolved half a period later, so the
    next crossing raises a new episode (and a new notification)."""
    if duration_s <= 0 or every_s <= 0:
        raise ValueError("duration and probe period must be positive")
    count = max(1, math.floor(duration_s / every_s + 1e-9))
    return [ProbeSlot(i, i * every_s, i * every_s + every_s / 2) for i in range(count)]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) with linear interpolation between order statistics (numpy's default
    "linear" method); None for no values."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within 0..1, got {q}")
    if not values:
        return None
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def cpu_percent(cpu_before_s: float, cpu_after_s: float, wall_s: float) -> float:
    """CPU time spent over a wall-clock window, as a percentage of one core."""
    if wall_s <= 0:
        raise ValueError("the window must have a positive length")
    return 100.0 * (cpu_after_s - cpu_before_s) / wall_s


def parse_sensor_counts(text: str) -> list[int]:
    """Sensor counts from "100,1000,10000" (or "100,1k,10k"); ValueError naming a bad item."""
    counts: list[int] = []
    for item in text.split(","):
        word = item.strip().lower()
        scale = 1000 if word.endswith("k") else 1
        digits = word[:-1] if scale > 1 else word
        if not digits.isdigit() or int(digits) * scale < 1:
            raise ValueError(f"not a positive sensor count: {item!r}")
        counts.append(int(digits) * scale)
    return counts
