"""Physical signal models: each one a function of scenario time (seconds since the start).

Most models are closed forms, so the ground truth is exact and reproducible: the value a sensor
should report at time t is `model.value_at(t)`, whatever the polling order, speed or noise.  A
model that needs a numerical solution or another signal (snow melt driven by the air
temperature) tabulates itself once at load in `compile`; `Scenario.value` always goes through
the compiled function.  Each model is a msgspec struct tagged by `model:` in the scenario file
and named by `id:`; adding a model is one struct here plus its entry in `Signal`.  Units are the
model's `unit` field (defaults shown); devices convert between length units.

    constant          a fixed value
    diurnal           daily cycle (air temperature), optionally warming or cooling day by day
    flood_hydrograph  river stage as a gamma-shaped wave (no rainfall behind it)
    rainfall_runoff   river stage from a rain hyetograph: runoff coefficient, Nash cascade of
                      linear reservoirs, base flow, rating curve
    blizzard          snow depth in one snowfall event, with settling
    snowpack          snow depth over several snowfall events, settling and degree-day melt
    slope_creep       slope tilt or displacement: tertiary creep to failure (Fukuzono/Voight),
                      rainfall pulses, background drift
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Literal

import msgspec

from wire.ids import Ident
from wire.telemetry import Unit

Seconds = Annotated[float, msgspec.Meta(ge=0)]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
HOUR = 3600.0
DAY = 86400.0
ARCSEC_PER_DEG = 3600.0
MAX_TABLE_STEP = 60.0  # s: tabulated (numerical) models step at most this long, then interpolate


TimeFunction = Callable[[float], float]


class _Model(msgspec.Struct, tag_field="model", forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base of every model.  A scenario compiles each signal once at load (`compile`), in the
    order of `depends_on`, so a model may tabulate a numerical solution or read another signal
    (snow melt driven by the air temperature); closed-form models just return `value_at`."""

    id: Ident  # the signal's name, which devices refer to

    def value_at(self, t: float) -> float:
        raise NotImplementedError

    def depends_on(self) -> tuple[str, ...]:
        """Ids of the other signals this model reads."""
        return ()

    def compile(self, inputs: Mapping[str, TimeFunction], duration: float) -> TimeFunction:
        """The signal as a function of scenario time on [0, duration]; `inputs` holds the
        compiled signals named by `depends_on`."""
        return self.value_at

    def check(self) -> list[tuple[str, str]]:
        """(field, message) for parameter combinations the types alone cannot rule out."""
        return []

    def forcings(self) -> dict[str, str]:
        """Driving inputs worth recording in the ground truth: name -> unit (e.g. rain, mm/h)."""
        return {}

    def forcing_at(self, name: str, t: float) -> float:
        raise KeyError(name)


def _table(values: Sequence[float], step: float) -> TimeFunction:
    """Linear interpolation in values[k] = f(k * step), held constant outside the table."""
    last = len(values) - 1
    assert last >= 1

    def f(t: float) -> float:
        x = min(max(t / step, 0.0), float(last))
        k = min(int(x), last - 1)
        return values[k] + (values[k + 1] - values[k]) * (x - k)

    return f


def _table_steps(duration: float) -> tuple[int, float]:
    n = max(1, math.ceil(duration / MAX_TABLE_STEP - 1e-9))
    return n, duration / n


class Constant(_Model, tag="constant", frozen=True):
    """A value that does not change (a test fixture, a sensor's supply voltage, bare ground)."""

    value: float
    unit: Unit = ""

    def value_at(self, t: float) -> float:
        return self.value


class Diurnal(_Model, tag="diurnal", frozen=True):
    """A daily cycle, e.g. air temperature:

        mean + trend * t / 1 day + amplitude * cos(2 pi (t - peak_time) / period)

    `trend` (per day) lets a warm air mass arrive over a few days (or a cold one: negative)."""

    mean: float
    amplitude: float = 0.0
    peak_time: float = 14 * HOUR  # scenario time of the daily maximum
    period: PositiveSeconds = DAY
    trend: float = 0.0  # change of the mean per day
    unit: Unit = "degC"

    def value_at(self, t: float) -> float:
        cycle = self.amplitude * math.cos(2 * math.pi * (t - self.peak_time) / self.period)
        return self.mean + self.trend * t / DAY + cycle


# --- rivers -----------------------------------------------------------------------------------


class FloodHydrograph(_Model, tag="flood_hydrograph", frozen=True):
    """River stage: base flow plus a gamma-shaped flood wave (Nash unit-hydrograph shape).

    stage(t) = base + peak_rise * x**shape * exp(shape * (1 - x)),  x = (t - onset) / time_to_peak

    which is `base` before `onset`, peaks at exactly base + peak_rise at onset + time_to_peak and
    recedes more slowly than it rose (larger `shape` = sharper wave).  A shape without a cause:
    use `rainfall_runoff` to drive the stage from rain.
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


class RainBlock(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One block of a hyetograph: a constant rain rate from `start` to `end`."""

    start: Seconds
    end: Seconds
    rate: NonNegative  # mm/h, catchment-average


class RatingCurve(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Stage-discharge relation of the gauge, Q = a (h - h0)^b (h0: stage of zero flow; b is
    about 1.5-2.5 for natural channels, 5/3 for a wide channel under Manning's law)."""

    a: Positive  # m3/s per m^b
    b: Positive
    h0: float = 0.0  # m, gauge datum

    def discharge(self, stage: float) -> float:
        """m3/s at stage h (0 at or below h0)."""
        return self.a * math.pow(max(stage - self.h0, 0.0), self.b)

    def stage(self, discharge: float) -> float:
        """The inverse: h = h0 + (Q / a)^(1/b)."""
        return self.h0 + math.pow(max(discharge, 0.0) / self.a, 1.0 / self.b)


class RainfallRunoff(_Model, tag="rainfall_runoff", frozen=True):
    """River stage at a gauge from catchment rainfall: a lumped rainfall-runoff model.

    1. Effective rain: a constant `runoff_coefficient` C (rational-method style) of the
       catchment-average rain rate r(t) (mm/h, piecewise constant `rain` blocks) runs off the
       catchment of `area` A km2:  inflow I(t) = C r A / 3.6  m3/s.
    2. Routing: a Nash cascade of n = `reservoirs` equal linear reservoirs, storage S_i = k Q_i
       (k = `k` seconds): dS_i/dt = Q_{i-1} - Q_i, Q_0 = I.  Its instantaneous unit hydrograph is
       the gamma density u(t) = (t/k)^(n-1) e^(-t/k) / (k (n-1)!) (the Nash IUH; lag n k, peak at
       (n-1) k), and the response to a rain block of constant inflow I from s to e is the
       difference of two S-curves, I [G(t - s) - G(t - e)], with the Erlang distribution
       G(tau) = 1 - e^(-tau/k) sum_{j<n} (tau/k)^j / j!.  The discharge is therefore evaluated
       in closed form, exactly, by superposing the blocks: no time step, no routing error, and
       the volume that left equals the effective rain that fell once G -> 1 (mass balance).
    3. Discharge at the gauge: Q = base_flow + routed runoff, m3/s (the catchment starts
       in equilibrium with the base flow; the reservoirs start empty of event water).
    4. Stage from the gauge's rating curve Q = a (h - h0)^b, inverted: h = h0 + (Q/a)^(1/b).
    """

    area: Positive  # km2 of catchment above the gauge
    runoff_coefficient: Annotated[float, msgspec.Meta(gt=0, le=1)]
    k: PositiveSeconds  # storage constant of each reservoir
    rating: RatingCurve
    reservoirs: Annotated[int, msgspec.Meta(ge=1, le=20)] = 3  # n of the Nash cascade
    base_flow: NonNegative = 0.0  # m3/s
    rain: list[RainBlock] = []
    unit: Unit = "m"

    def check(self) -> list[tuple[str, str]]:
        return [
            (f"rain[{i}].end", "must be after 'start'") for i, b in enumerate(self.rain) if b.end <= b.start
        ]

    def forcings(self) -> dict[str, str]:
        return {"rain": "mm/h"}

    def forcing_at(self, name: str, t: float) -> float:
        if name != "rain":
            raise KeyError(name)
        return self.rain_rate(t)

    def rain_rate(self, t: float) -> float:
        """Catchment rain at t, mm/h (blocks are [start, end); overlapping blocks add up)."""
        return sum(b.rate for b in self.rain if b.start <= t < b.end)

    def inflow(self, t: float) -> float:
        """Effective rain on the catchment as a flow, m3/s."""
        return self._flow(self.rain_rate(t))

    def _flow(self, rate_mm_h: float) -> float:
        return self.runoff_coefficient * rate_mm_h * self.area / 3.6

    def s_curve(self, tau: float) -> float:
        """Fraction of a sustained unit inflow that has reached the gauge after tau seconds
        (the Nash cascade's S-curve, the Erlang(n, k) distribution function)."""
        if tau <= 0:
            return 0.0
        x = tau / self.k
        if x > 50.0 + 10.0 * self.reservoirs:  # e^-x x^j / j! below 1e-20 for every j < n
            return 1.0
        term = total = 1.0
        for j in range(1, self.reservoirs):
            term *= x / j
            total += term
        return max(0.0, 1.0 - math.exp(-x) * total)

    def discharge(self, t: float) -> float:
        """Discharge at the gauge, m3/s."""
        routed = sum(
            self._flow(b.rate) * (self.s_curve(t - b.start) - self.s_curve(t - b.end)) for b in self.rain
        )
        return self.base_flow + routed

    def value_at(self, t: float) -> float:
        return self.rating.stage(self.discharge(t))


# --- snow -------------------------------------------------------------------------------------


def _trapezoid(
    start: float, end: float, ramp: float, peak_rate: float
) -> list[tuple[float, float, float, float]]:
    """(s0, s1, P(s0), P(s1)) in cm/s for the linear pieces of a trapezoid intensity: 0 at `start`,
    rising over `ramp` to `peak_rate` (cm/h), holding, falling to 0 at `end`."""
    ramp = min(ramp, (end - start) / 2)
    p = peak_rate / HOUR
    knots = [(start, 0.0), (start + ramp, p), (end - ramp, p), (end, 0.0)]
    return [(a, b, pa, pb) for (a, pa), (b, pb) in itertools.pairwise(knots) if b > a]


def _trapezoid_rate(start: float, end: float, ramp: float, peak_rate: float, t: float) -> float:
    """The trapezoid's intensity at t, cm/h."""
    if t <= start or t >= end:
        return 0.0
    ramp = min(ramp, (end - start) / 2)
    if ramp <= 0:
        return peak_rate
    return peak_rate * min(1.0, (t - start) / ramp, (end - t) / ramp)


def _settled_fresh(
    segments: Sequence[tuple[float, float, float, float]], c: float, tau: float, t: float
) -> float:
    """Thickness at t of the fresh snow that fell on the linear intensity pieces up to t, each
    layer deposited at s having compacted to dP * (c + (1 - c) exp(-(t - s) / tau)); exact."""
    depth = 0.0
    for s0, s1, p0, p1 in segments:
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


def _fallen(segments: Sequence[tuple[float, float, float, float]], t: float) -> float:
    """Fresh snow that fell up to t (uncompacted), cm."""
    total = 0.0
    for s0, s1, p0, p1 in segments:
        if t <= s0:
            break
        if t < s1:
            p1 = p0 + (p1 - p0) * (t - s0) / (s1 - s0)
            s1 = t
        total += (p0 + p1) / 2 * (s1 - s0)
    return total


class Blizzard(_Model, tag="blizzard", frozen=True):
    """Snow depth during a snowfall event, with settling of the fresh snow and of the old pack.

    Snowfall intensity P(s) (cm/h of fresh snow) is a trapezoid: 0 before `start`, rising linearly
    over `ramp` to `peak_rate`, holding, and falling linearly to 0 at `end`.  A fresh layer
    deposited at time s compacts to `settled_fraction` of its thickness with time constant
    `settling_time`:  thickness(t) = dP * (c + (1 - c) * exp(-(t - s) / tau)).  The old pack
    settles at a constant `pack_settling` cm/h (valid over the hours of a storm).  The depth is

        depth(t) = max(0, initial_depth - pack_settling * t) + integral of P * settling kernel

    evaluated in closed form (P is piecewise linear), so there is no numerical integration error.
    For several events and melt, see `snowpack`.
    """

    initial_depth: NonNegative  # cm
    start: Seconds
    end: Seconds
    peak_rate: NonNegative  # cm/h of fresh snow
    ramp: Seconds = HOUR
    settled_fraction: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.8
    settling_time: PositiveSeconds = 6 * HOUR
    pack_settling: NonNegative = 0.1  # cm/h
    unit: Unit = "cm"

    def _segments(self) -> list[tuple[float, float, float, float]]:
        return _trapezoid(self.start, self.end, self.ramp, self.peak_rate)

    def value_at(self, t: float) -> float:
        depth = max(0.0, self.initial_depth - self.pack_settling * t / HOUR)
        return depth + _settled_fresh(self._segments(), self.settled_fraction, self.settling_time, t)

    def forcings(self) -> dict[str, str]:
        return {"snowfall": "cm/h"}

    def forcing_at(self, name: str, t: float) -> float:
        if name != "snowfall":
            raise KeyError(name)
        return _trapezoid_rate(self.start, self.end, self.ramp, self.peak_rate, t)

    def snowfall_cm(self, t: float) -> float:
        """Fresh snow that has fallen since the start (before any settling), cm."""
        return _fallen(self._segments(), t)


class SnowEvent(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A snowfall event: trapezoid intensity of fresh snow, as in `blizzard`."""

    start: Seconds
    end: Seconds
    peak_rate: NonNegative  # cm/h of fresh snow
    ramp: Seconds = HOUR


class DegreeDayMelt(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Temperature-index melt: the depth falls by factor * max(0, T - base) per day."""

    temperature: Ident  # id of the air temperature signal, degC
    factor: NonNegative  # cm of depth per degC per day (fresh, low-density snow: a few cm)
    base: float = 0.0  # degC, below which nothing melts


class Snowpack(_Model, tag="snowpack", frozen=True):
    """Snow depth over a season's days: several snowfall events, settling, and degree-day melt.

    Accumulation acc(t) is the `blizzard` closed form summed over `events` (each a trapezoid of
    fresh-snow intensity; fresh snow settles to `settled_fraction` with time constant
    `settling_time`; the old pack settles at `pack_settling` cm/h):

        acc(t) = max(0, initial_depth - pack_settling t) + sum over events of settled fresh snow

    Without `melt` the depth is acc(t), exactly.  With `melt`, a temperature-index
    (degree-day) model driven by the signal `melt.temperature` removes depth: the scenario
    tabulates the depth at steps dt <= 60 s,

        D_0 = acc(0),  D_{k+1} = max(0, D_k + acc(t_{k+1}) - acc(t_k) - factor max(0, T - base) dt / 1 day)

    with T at the middle of the step, and interpolates linearly.  Melt never digs below bare
    ground; fresh snow falling on bare ground accumulates again.  (A simplification: the old
    pack keeps settling at `pack_settling` for initial_depth / pack_settling hours even if melt
    has thinned or removed it, and that settling then comes off the snow above.)
    """

    initial_depth: NonNegative  # cm
    events: list[SnowEvent] = []
    settled_fraction: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.8
    settling_time: PositiveSeconds = 6 * HOUR
    pack_settling: NonNegative = 0.1  # cm/h
    melt: DegreeDayMelt | None = None
    unit: Unit = "cm"

    def check(self) -> list[tuple[str, str]]:
        return [
            (f"events[{i}].end", "must be after 'start'")
            for i, e in enumerate(self.events)
            if e.end <= e.start
        ]

    def depends_on(self) -> tuple[str, ...]:
        return (self.melt.temperature,) if self.melt is not None else ()

    def _segments(self) -> list[list[tuple[float, float, float, float]]]:
        return [_trapezoid(e.start, e.end, e.ramp, e.peak_rate) for e in self.events]

    def accumulation(self, t: float) -> float:
        """Depth without melt at t, cm (exact)."""
        depth = max(0.0, self.initial_depth - self.pack_settling * t / HOUR)
        c, tau = self.settled_fraction, self.settling_time
        return depth + sum(_settled_fresh(seg, c, tau, t) for seg in self._segments())

    def value_at(self, t: float) -> float:
        if self.melt is not None:
            raise ValueError(
                f"snowpack {self.id!r} melts with signal {self.melt.temperature!r}: use Scenario.value"
            )
        return self.accumulation(t)

    def compile(self, inputs: Mapping[str, TimeFunction], duration: float) -> TimeFunction:
        if self.melt is None:
            return self.accumulation
        temperature = inputs[self.melt.temperature]
        factor, base = self.melt.factor, self.melt.base
        n, dt = _table_steps(duration)
        acc_prev = self.accumulation(0.0)
        depth = [acc_prev]
        for k in range(n):
            acc = self.accumulation((k + 1) * dt)
            melt = factor * max(0.0, temperature((k + 0.5) * dt) - base) * dt / DAY
            depth.append(max(0.0, depth[-1] + acc - acc_prev - melt))
            acc_prev = acc
        return _table(depth, dt)

    def forcings(self) -> dict[str, str]:
        return {"snowfall": "cm/h"}

    def forcing_at(self, name: str, t: float) -> float:
        if name != "snowfall":
            raise KeyError(name)
        return sum(_trapezoid_rate(e.start, e.end, e.ramp, e.peak_rate, t) for e in self.events)

    def snowfall_cm(self, t: float) -> float:
        """Fresh snow that has fallen since the start (before settling or melt), cm."""
        return sum(_fallen(seg, t) for seg in self._segments())


# --- slopes -----------------------------------------------------------------------------------


class RainPulse(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Extra downslope displacement after heavy rain, added over `duration` with a smooth
    (half-cosine) ramp: displacement * (1 - cos(pi (t - start) / duration)) / 2."""

    start: Seconds
    duration: PositiveSeconds
    displacement: NonNegative  # mm


class SlopeCreep(_Model, tag="slope_creep", frozen=True):
    """An unstable slope in tertiary (accelerating) creep up to failure, seen as tilt or displacement.

    Fukuzono (1985) / Voight (1989): in tertiary creep the acceleration follows a = A v^alpha
    (alpha > 1, usually close to 2; `alpha`, default 2).  With p = 1 / (alpha - 1) the solution
    that fails (v -> infinity) at t_f = `failure_time` and moves at v0 = `initial_velocity` at
    t = 0 is

        v(t) = v0 (t_f / (t_f - t))^p,        A = p / (v0^(alpha-1) t_f)  (property `A`)

    so 1/v = (1/v0) ((t_f - t) / t_f)^(alpha-1): a straight line reaching 0 at t_f for alpha = 2
    (the inverse-velocity method), concave for alpha < 2 and convex for alpha > 2.  The creep
    displacement since t = 0 is

        u(t) = v0 t_f ln(t_f / (t_f - t))                               for p = 1 (alpha = 2)
        u(t) = v0 t_f / (1 - p) (1 - ((t_f - t) / t_f)^(1 - p))          otherwise.

    Rainfall `pulses` add displacement with a half-cosine ramp (a wet spell pushing the slope).
    Simplification: the pulses do not move the failure time (a real slope would fail earlier).

    `output: tilt`: a block of height `lever` rotates by atan(u / lever), so the tilt is
    initial + drift * days + direction * atan(u / lever) in `unit` deg (or arcsec), with the
    background `drift` (thermal/seasonal, natural 3-8 arc-seconds/day) in arc-seconds per day.
    `output: displacement` (an extensometer): initial + drift * days + direction * u, in mm,
    drift in mm/day.  The model is only defined for t < failure_time: the scenario ends before.
    """

    failure_time: PositiveSeconds  # t_f, seconds after the scenario start
    initial_velocity: Positive  # v0, mm/day at t = 0
    alpha: Annotated[float, msgspec.Meta(gt=1)] = 2.0
    pulses: list[RainPulse] = []
    output: Literal["tilt", "displacement"] = "tilt"
    initial: float = 0.0  # value at t = 0, in `unit`
    drift: float | None = None  # per day: arc-seconds (tilt, default 5) or mm (displacement, default 0)
    lever: Positive = 1.0  # m, height of the tilting block (tilt only)
    direction: Literal[1, -1] = 1
    unit: Unit = "deg"  # tilt: deg or arcsec; displacement: mm

    def check(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if self.output == "tilt" and self.unit not in ("deg", "arcsec"):
            problems.append(("unit", "a tilt is in 'deg' or 'arcsec'"))
        if self.output == "displacement" and self.unit != "mm":
            problems.append(("unit", "a displacement is in 'mm' (write unit: mm)"))
        for i, pulse in enumerate(self.pulses):
            if pulse.start + pulse.duration >= self.failure_time:
                problems.append((f"pulses[{i}]", "must end before 'failure_time'"))
        return problems

    @property
    def p(self) -> float:
        return 1.0 / (self.alpha - 1.0)

    @property
    def A(self) -> float:
        """Voight's constant in a = A v^alpha with v in mm/s and a in mm/s^2."""
        v0 = self.initial_velocity / DAY
        return self.p / (math.pow(v0, self.alpha - 1.0) * self.failure_time)

    def _check_time(self, t: float) -> float:
        if t >= self.failure_time:
            raise ValueError(f"slope creep is undefined at t={t} >= failure time {self.failure_time}")
        return max(t, 0.0)

    def creep_mm(self, t: float) -> float:
        """Creep displacement since t = 0 (without pulses), mm."""
        t = self._check_time(t)
        tf, p = self.failure_time, self.p
        v0 = self.initial_velocity / DAY
        log_r = math.log((tf - t) / tf)  # <= 0
        if p == 1.0:
            return -v0 * tf * log_r
        # v0 tf / (1 - p) * (1 - r^(1-p)), with expm1 for accuracy when p is close to 1
        return -v0 * tf * math.expm1((1.0 - p) * log_r) / (1.0 - p)

    def pulse_mm(self, t: float) -> float:
        """Displacement added by the rainfall pulses up to t, mm."""
        total = 0.0
        for pulse in self.pulses:
            x = (t - pulse.start) / pulse.duration
            if x >= 1.0:
                total += pulse.displacement
            elif x > 0.0:
                total += pulse.displacement * (1.0 - math.cos(math.pi * x)) / 2.0
        return total

    def displacement_mm(self, t: float) -> float:
        """Slope movement since t = 0 (creep and pulses, without the background drift), mm."""
        return self.creep_mm(t) + self.pulse_mm(t)

    def velocity_mm_per_day(self, t: float) -> float:
        """Rate of `displacement_mm`, mm/day."""
        t = self._check_time(t)
        tf = self.failure_time
        v = self.initial_velocity * math.pow(tf / (tf - t), self.p)
        for pulse in self.pulses:
            x = (t - pulse.start) / pulse.duration
            if 0.0 < x < 1.0:
                v += pulse.displacement * math.pi / (2.0 * pulse.duration) * math.sin(math.pi * x) * DAY
        return v

    @property
    def drift_per_day(self) -> float:
        if self.drift is not None:
            return self.drift
        return 5.0 if self.output == "tilt" else 0.0

    def value_at(self, t: float) -> float:
        u = self.displacement_mm(t)
        days = max(t, 0.0) / DAY
        if self.output == "displacement":
            return self.initial + self.drift_per_day * days + self.direction * u
        tilt_deg = math.degrees(math.atan(u / 1000.0 / self.lever))
        if self.unit == "arcsec":
            return self.initial + self.drift_per_day * days + self.direction * tilt_deg * ARCSEC_PER_DEG
        return self.initial + self.drift_per_day / ARCSEC_PER_DEG * days + self.direction * tilt_deg


Signal = Constant | Diurnal | FloodHydrograph | RainfallRunoff | Blizzard | Snowpack | SlopeCreep
