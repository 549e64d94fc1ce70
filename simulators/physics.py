"""Physical signal models: each one a pure function of scenario time (seconds since the start).

Pure functions make the ground truth exact and reproducible: the value a sensor should report at
time t is `model.value_at(t)`, whatever the polling order, speed or noise.  Each model is a
msgspec struct tagged by `model:` in the scenario file and named by `id:`; adding a model is one
struct here plus its entry in `Signal`.  Units are the model's `unit` field (defaults shown);
devices convert between length units.
"""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Literal

import msgspec

from wire.ids import Ident
from wire.telemetry import Unit

Seconds = Annotated[float, msgspec.Meta(ge=0)]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0)]
HOUR = 3600.0
DAY = 86400.0


class _Model(msgspec.Struct, tag_field="model", forbid_unknown_fields=True, frozen=True, kw_only=True):
    id: Ident  # the signal's name, which devices refer to


class Constant(_Model, tag="constant", frozen=True):
    """A value that does not change (a test fixture, a sensor's supply voltage)."""

    value: float
    unit: Unit = ""

    def value_at(self, t: float) -> float:
        return self.value


class FloodHydrograph(_Model, tag="flood_hydrograph", frozen=True):
    """River stage: base flow plus a gamma-shaped flood wave (Nash unit-hydrograph shape).

    stage(t) = base + peak_rise * x**shape * exp(shape * (1 - x)),  x = (t - onset) / time_to_peak

    which is `base` before `onset`, peaks at exactly base + peak_rise at onset + time_to_peak and
    recedes more slowly than it rose (larger `shape` = sharper wave).
    """

    base: float  # stage before the rain event, m
    peak_rise: float  # stage rise at the peak above base, m
    onset: Seconds  # when the river starts to respond
    time_to_peak: PositiveSeconds  # from onset to the peak
    shape: Annotated[float, msgspec.Meta(gt=0)] = 3.0
    unit: Unit = "m"

    def value_at(self, t: float) -> float:
        if t <= self.onset:
            return self.base
        x = (t - self.onset) / self.time_to_peak
        return self.base + self.peak_rise * math.pow(x, self.shape) * math.exp(self.shape * (1.0 - x))


class Blizzard(_Model, tag="blizzard", frozen=True):
    """Snow depth during a snowfall event, with settling of the fresh snow and of the old pack.

    Snowfall intensity P(s) (cm/h of fresh snow) is a trapezoid: 0 before `start`, rising linearly
    over `ramp` to `peak_rate`, holding, and falling linearly to 0 at `end`.  A fresh layer
    deposited at time s compacts to `settled_fraction` of its thickness with time constant
    `settling_time`:  thickness(t) = dP * (c + (1 - c) * exp(-(t - s) / tau)).  The old pack
    settles at a constant `pack_settling` cm/h (valid over the hours of a storm).  The depth is

        depth(t) = max(0, initial_depth - pack_settling * t) + integral of P * settling kernel

    evaluated in closed form (P is piecewise linear), so there is no numerical integration error.
    """

    initial_depth: Annotated[float, msgspec.Meta(ge=0)]  # cm
    start: Seconds
    end: Seconds
    peak_rate: Annotated[float, msgspec.Meta(ge=0)]  # cm/h of fresh snow
    ramp: Seconds = HOUR
    settled_fraction: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.8
    settling_time: PositiveSeconds = 6 * HOUR
    pack_settling: Annotated[float, msgspec.Meta(ge=0)] = 0.1  # cm/h
    unit: Unit = "cm"

    def _segments(self) -> list[tuple[float, float, float, float]]:
        """(s0, s1, P(s0), P(s1)) in cm/s for the linear pieces of the intensity."""
        ramp = min(self.ramp, (self.end - self.start) / 2)
        p = self.peak_rate / HOUR
        knots = [(self.start, 0.0), (self.start + ramp, p), (self.end - ramp, p), (self.end, 0.0)]
        return [(a, b, pa, pb) for (a, pa), (b, pb) in itertools.pairwise(knots) if b > a]

    def value_at(self, t: float) -> float:
        depth = max(0.0, self.initial_depth - self.pack_settling * t / HOUR)
        c, tau = self.settled_fraction, self.settling_time
        for s0, s1, p0, p1 in self._segments():
            if t <= s0:
                break
            if t < s1:  # clip the segment at t, interpolating the intensity
                p1 = p0 + (p1 - p0) * (t - s0) / (s1 - s0)
                s1 = t
            k = (p1 - p0) / (s1 - s0)
            fallen = (p0 + p1) / 2 * (s1 - s0)
            # integral of (p0 + k (s - s0)) * exp(-(t - s) / tau) ds over [s0, s1]
            decayed = tau * (
                math.exp(-(t - s1) / tau) * (p1 - k * tau) - math.exp(-(t - s0) / tau) * (p0 - k * tau)
            )
            depth += c * fallen + (1 - c) * decayed
        return depth


class SlopeCreep(_Model, tag="slope_creep", frozen=True):
    """Ground tilt of an unstable slope: background drift plus tertiary creep up to failure.

    Tertiary creep after Fukuzono (1985) / Voight (1989): acceleration a = A v**alpha.  With
    alpha = 2 the velocity is v = 1 / (A (tf - t)) (so 1/v falls linearly to zero at the failure
    time tf) and the displacement since t = 0 is u = (1/A) ln(tf / (tf - t)).  The displacement of
    a block of height `lever` turns into tilt atan(u / lever).  Background drift (natural
    thermal/seasonal tilt, 3-8 arc-seconds/day) adds linearly.

    The model is only defined for t < failure_time: the scenario must end before it.
    """

    failure_time: PositiveSeconds  # tf, seconds after the scenario start
    A: Annotated[float, msgspec.Meta(gt=0)]  # 1/mm; 1/A is the displacement per unit of ln(tf/(tf-t))
    initial: float = 0.0  # deg at t = 0
    drift: float = 5.0  # arc-seconds per day
    lever: Annotated[float, msgspec.Meta(gt=0)] = 1.0  # m
    direction: Literal[1, -1] = 1
    unit: Unit = "deg"

    def displacement_mm(self, t: float) -> float:
        if t >= self.failure_time:
            raise ValueError(f"slope creep is undefined at t={t} >= failure time {self.failure_time}")
        t = max(t, 0.0)
        return math.log(self.failure_time / (self.failure_time - t)) / self.A

    def value_at(self, t: float) -> float:
        creep = math.degrees(math.atan(self.displacement_mm(t) / 1000.0 / self.lever))
        return self.initial + self.drift / 3600.0 * t / DAY + self.direction * creep


class Diurnal(_Model, tag="diurnal", frozen=True):
    """A daily cycle, e.g. air temperature: mean + amplitude * cos(2 pi (t - peak_time) / period)."""

    mean: float
    amplitude: float = 0.0
    peak_time: float = 14 * HOUR  # scenario time of the daily maximum
    period: PositiveSeconds = DAY
    unit: Unit = "degC"

    def value_at(self, t: float) -> float:
        return self.mean + self.amplitude * math.cos(2 * math.pi * (t - self.peak_time) / self.period)


Signal = Constant | FloodHydrograph | Blizzard | SlopeCreep | Diurnal
