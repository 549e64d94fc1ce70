"""Slope failure-time forecast by the inverse-velocity method (Fukuzono 1985), on one series.

In tertiary creep the acceleration follows a = A v^alpha (Voight 1989); with alpha ~ 2 the inverse
velocity 1/v falls on a straight line in time and reaches zero at the failure time.  The method is
only valid once acceleration has started, and 1/v of raw 60 s differences is mostly noise, so the
practice (Carlà et al. 2017; Intrieri, Carlà et al. 2019) is: smooth the velocity, find the onset
of acceleration, fit 1/v robustly from there, give an uncertainty band, update as data arrive, and
refuse when the slope is not accelerating.  Here:

1. Velocity bins.  Samples are grouped into consecutive bins; a bin's velocity is the Theil-Sen
   slope of its samples (robust to a spike, with a 95 % interval), in units per day, placed at the
   bin's mean sample time.  Consecutive bins share their boundary sample, so no movement between
   bins is lost.  Only the current bin's samples are kept (thinned beyond `MAX_BIN_SAMPLES`), plus
   one small record per closed bin over two fit windows: memory is bounded, and the O(n^2) fits
   run once per bin, not per sample.
2. Adaptive bin length.  Placed at its centre, a bin of length L misdates the velocity of a
   hyperbolic creep (the mean velocity over [a, b] belongs to the logarithmic, not the arithmetic,
   mean of the times to failure) by about L^2 / (12 (t_f - t)): 3 min for 1 h bins 1 h before
   failure, under 10 s when L <= (t_f - t) / 6.  So each new bin lasts
   L = clamp((t_f - t) / 6, 5 min, bin_s), t_f being the latest fitted failure time (bin_s while
   there is none), and at least `MIN_BIN_INTERVALS` sample intervals so that a sparse series
   still gets a velocity per bin: 10 min bins 1 h before failure, 5 min from 30 min before, so the
   forecast follows the last minutes.  What misdating remains is corrected: once a first fit
   gives t_f, each bin is re-placed where the alpha = 2 velocity equals its mean velocity and the
   line is fitted again.
3. Direction.  Movement in the net direction over the window (sign of the summed displacement of
   its bins) counts as positive: a tilt towards negative angles is a movement like any other.
4. Moving at all.  The latest bin's velocity must be significantly positive (95 % interval above
   zero), and only the latest run of bins moving in the net direction is used, if at least half
   of them are significant: 1/v of a velocity lost in the noise means nothing, and a quiet
   sensor (constant + noise) is refused here.
5. Fit.  A weighted Theil-Sen line of 1/v against time: the median of the pairwise slopes, each
   weighted by its inverse variance from the two bins' velocity uncertainties (sigma(1/v) =
   sigma(v) / v^2; sigma(v) from the bin's interval, at least one sensor step over the bin and
   `MIN_RELATIVE_SIGMA` of v).  Weighting matters: 1/v of the fast recent bins is known a hundred
   times better than that of yesterday's slow ones, and the unweighted line (every point alike)
   misses the failure time by 10-60 min at 1 h before it on the calibration scenario, against
   1-4 min weighted.
6. Onset of acceleration.  The fit uses the longest window ending at the latest bin and starting
   in that run (so at most `fit_window_s` back) on which 1/v is straight: the line leaves as many
   bins above as below (sign test), passes through the latest `PRESENT_POINTS` bins, the bins
   scatter about it by at most `MAX_DISPERSION` times their own uncertainty, and the older half of
   the window already accelerates on its own.  Older bins (steady creep before the onset, a rain
   pulse) are dropped until a window passes.
7. Decision.  Refuse unless Sen's 95 % interval of the *unweighted* slope of 1/v on that window
   is entirely negative ("not accelerating"; "decelerating" when entirely positive): a rank test,
   free of assumptions about the noise.  Then refuse what a periodic or passing disturbance can
   produce and the 1/v line alone does not tell from tertiary creep (calibration: a daily
   thermal cycle on steady creep, rain pulses): an acceleration sustained for less than
   `MIN_SPAN_FRACTION` of the fit window, a failure further ahead than `MAX_EXTRAPOLATION` times
   the span fitted (the velocity has not yet grown by half), or a mean velocity over the fit
   window not significantly (1 %) above the mean over the window before it (with the default
   24 h window: the daily velocity of the practice).  So a forecast needs 1.5 fit windows of data
   (36 h by default).
8. Forecast.  Failure time where the line reaches zero; the band is +-1.96 standard errors of
   that crossing (delta method on the weighted slope and level at the robust centre, scaled up by
   the residuals' dispersion).  With the centre near the recent bins, the level's uncertainty
   matters as much as the slope's, so a band from the slope interval alone would be too narrow.
   `forecast(now)` refuses when the failure time is past or beyond `max_horizon_s`, or the
   velocity is below `min_velocity_per_day`.

The analysis runs when a bin closes (it also sizes the next bin); `forecast(now)` only checks the
result against `now`, so the engine may ask on every sample.  Calibration and its figures:
benchmarks/calibrate_failure_forecast.py.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cloud.detect.trend import Rate, theil_sen_rate

DAY = 86400.0
MIN_BIN_S = 300.0  # shortest bin: 5 samples of a 60 s poll, enough for a robust slope
BIN_FRACTION = 6.0  # bin length = time to failure / this (see the module docstring)
MIN_BIN_INTERVALS = 4  # a bin spans at least this many typical sample intervals
MIN_BIN_SAMPLES = 3
MAX_BIN_SAMPLES = 120  # beyond, the bin's samples are thinned (every other dropped)
MIN_SIGNIFICANT_FRACTION = 0.5  # of the bins in the moving run, with a velocity interval above 0
MIN_RELATIVE_SIGMA = 0.02  # a bin velocity is never trusted better than 2 % (caps its weight)
MIN_SIGN_TEST_POINTS = 10  # the sign test needs this many bins to say anything
PRESENT_POINTS = 3  # the latest bins the line must pass through
MAX_DISPERSION = 2.0  # bins may scatter about the line by this many times their uncertainty
MIN_HALF_POINTS = 4  # the older half of a window is tested on its own from this many bins
MIN_SPAN_FRACTION = 2.0 / 3.0  # of fit_window_s: an acceleration must outlast half a daily cycle
MAX_EXTRAPOLATION = 2.0  # failure at most this many times the fitted span ahead (v up 50 %)
Z95 = 1.959964  # two-sided 95 % normal quantile
Z99 = 2.575829  # two-sided 99 %
Z99_ONE_SIDED = 2.326348
MAD_TO_SIGMA = 1.4826  # median absolute deviation -> standard deviation, normal noise


@dataclass(frozen=True, slots=True)
class FailureForecast:
    t_failure: float  # epoch s, where the robust 1/v line reaches zero
    earliest: float  # band from the fit's confidence interval (95 %)
    latest: float
    velocity_per_day: float  # current smoothed velocity (series units per day, positive = moving)
    inverse_velocity: float  # days per unit, at the last bin
    onset: float  # epoch s where the accelerating phase used for the fit begins
    points: int  # velocity bins in the fit


@dataclass(frozen=True, slots=True)
class _Bin:
    start: float
    end: float
    t: float  # mean sample time
    rate: Rate  # per second


def _hours(seconds: float) -> str:
    return f"{seconds / 3600.0:.1f} h"


def _days(seconds: float) -> str:
    if seconds < DAY:
        return f"{seconds / 3600.0:g} h"
    return f"{seconds / DAY:g} day" + ("" if seconds == DAY else "s")


def _log_mean_time(b: _Bin, t_failure: float) -> float:
    """Where the alpha = 2 velocity equals the bin's mean velocity, given the failure time:
    t_f - L / ln((t_f - start) / (t_f - end)).  The bin's own time when t_f is not beyond it."""
    near, far = t_failure - b.end, t_failure - b.start
    if near <= 0.0 or far <= near:
        return b.t
    return t_failure - (far - near) / math.log(far / near)


class InverseVelocity:
    """Fukuzono inverse-velocity forecast on a displacement (mm) or tilt (deg) series."""

    def __init__(
        self,
        *,
        bin_s: float = 3600.0,
        fit_window_s: float = 24 * 3600.0,
        min_points: int = 6,
        max_horizon_s: float = 7 * 86400.0,
        min_velocity_per_day: float = 0.0,
    ) -> None:
        if bin_s <= 0 or fit_window_s <= bin_s or max_horizon_s <= 0:
            raise ValueError("need bin_s > 0, fit_window_s > bin_s and max_horizon_s > 0")
        if min_points < 3:
            raise ValueError(f"min_points must be >= 3, got {min_points}")
        self.bin_s = float(bin_s)
        self.fit_window_s = float(fit_window_s)
        self.min_points = min_points
        self.max_horizon_s = float(max_horizon_s)
        self.min_velocity_per_day = float(min_velocity_per_day)
        self._last_t = -math.inf
        self._intervals: deque[float] = deque(maxlen=9)  # recent sample intervals, for their median
        self._last_value = math.nan
        self._resolution = math.inf  # smallest change seen: the sensor's step, if it has one
        self._bin_t: list[float] = []
        self._bin_v: list[float] = []
        self._bin_len = self.bin_s
        self._bins: deque[_Bin] = deque(maxlen=math.ceil(2 * self.fit_window_s / min(MIN_BIN_S, bin_s)) + 4)
        self._t_failure_hint: float | None = None  # latest fitted failure time, sizes the bins
        self._analysis: FailureForecast | str = f"too few velocity points (0 of {min_points})"
        self._refused = ""

    # -- feeding -------------------------------------------------------------------------------

    def add(self, t: float, value: float) -> None:
        """Add a sample; one not newer than the last, or not finite, is ignored."""
        if not (math.isfinite(t) and math.isfinite(value)) or t <= self._last_t:
            return
        if self._bin_t:
            gap = t - self._last_t
            self._intervals.append(gap)
            step = abs(value - self._last_value)
            if step > 1e-9 * abs(value):  # not a float rounding artefact
                self._resolution = min(self._resolution, step)
            if gap > self._bin_len:  # a hole in the data: close what we have, restart at t
                self._close_bin()
                self._start_bin(t, value)
            else:
                self._bin_t.append(t)
                self._bin_v.append(value)
                if t - self._bin_t[0] >= self._bin_len:
                    self._close_bin()
                    self._start_bin(t, value)  # the boundary sample belongs to both bins
                elif len(self._bin_t) > MAX_BIN_SAMPLES:
                    self._bin_t, self._bin_v = self._bin_t[::2], self._bin_v[::2]
        else:
            self._start_bin(t, value)
        self._last_t = t
        self._last_value = value

    def _start_bin(self, t: float, value: float) -> None:
        self._bin_t, self._bin_v = [t], [value]
        length = self.bin_s
        if self._t_failure_hint is not None:
            length = (self._t_failure_hint - t) / BIN_FRACTION
        length = min(max(length, min(MIN_BIN_S, self.bin_s)), self.bin_s)
        if self._intervals:
            length = max(length, MIN_BIN_INTERVALS * statistics.median(self._intervals))
        self._bin_len = length

    def _close_bin(self) -> None:
        times, values = self._bin_t, self._bin_v
        if len(times) >= MIN_BIN_SAMPLES and times[-1] - times[0] >= self._bin_len / 2:
            rate = theil_sen_rate(times, values)
            if rate is not None:
                self._bins.append(_Bin(times[0], times[-1], sum(times) / len(times), rate))
        horizon = times[-1] - 2.0 * self.fit_window_s  # the fit window and the one before
        while self._bins and self._bins[0].t < horizon:
            self._bins.popleft()
        self._analysis = self._analyse()
        fitted = self._analysis
        self._t_failure_hint = fitted.t_failure if isinstance(fitted, FailureForecast) else None

    # -- reading -------------------------------------------------------------------------------

    def velocity_per_day(self) -> float | None:
        """Velocity of the latest complete bin, units per day, signed like the series (None
        before the first bin closes)."""
        return self._bins[-1].rate.per_s * DAY if self._bins else None

    def forecast(self, now: float) -> FailureForecast | None:
        """The failure forecast from the bins closed so far, or None (see `refused`)."""
        result = self._analysis
        if isinstance(result, str):
            self._refused = result
            return None
        if now - self._last_t > self.fit_window_s:
            self._refused = f"no data for {_hours(now - self._last_t)}"
            return None
        if result.t_failure <= now:
            self._refused = "failure time already past: the fit no longer describes the slope"
            return None
        if result.t_failure - now > self.max_horizon_s:
            self._refused = f"failure beyond {_days(self.max_horizon_s)}"
            return None
        self._refused = ""
        return result

    @property
    def refused(self) -> str:
        """Why the last `forecast` returned None, in plain words ("" if it did not)."""
        return self._refused

    # -- analysis ------------------------------------------------------------------------------

    def _analyse(self) -> FailureForecast | str:
        """The forecast from the closed bins, or why there is none (independent of `now`)."""
        window_start = self._bins[-1].end - self.fit_window_s if self._bins else 0.0
        before = [b for b in self._bins if b.t < window_start]
        bins = [b for b in self._bins if b.t >= window_start]
        if len(bins) < self.min_points:
            return f"too few velocity points ({len(bins)} of {self.min_points})"
        net = sum(b.rate.per_s * (b.end - b.start) for b in bins)
        if net == 0.0:
            return "not moving"
        sign = 1.0 if net > 0 else -1.0

        def slowest(b: _Bin) -> float:  # lower 95 % bound of the velocity in the net direction
            return b.rate.low if sign > 0 else -b.rate.high

        if slowest(bins[-1]) <= 0.0:
            return "not moving measurably (velocity within the noise)"
        run = len(bins)
        while run > 0 and sign * bins[run - 1].rate.per_s > 0.0:
            run -= 1
        moving = bins[run:]
        if sum(1 for b in moving if slowest(b) > 0.0) < MIN_SIGNIFICANT_FRACTION * len(moving):
            return "not moving measurably (velocity within the noise)"
        if len(moving) < self.min_points:
            return f"too few velocity points ({len(moving)} of {self.min_points})"
        velocity = sign * moving[-1].rate.per_s * DAY
        if velocity < self.min_velocity_per_day:
            return f"velocity {velocity:.3g}/day below the minimum {self.min_velocity_per_day:g}/day"

        speed = np.array([sign * b.rate.per_s * DAY for b in moving])  # units/day, all > 0
        speed_sigma = np.array([self._speed_sigma(b) for b in moving])
        inverse = 1.0 / speed  # days per unit
        sigma = np.maximum(speed_sigma, MIN_RELATIVE_SIGMA * speed) * inverse**2  # dv / v^2
        overall = theil_sen_rate([b.t for b in moving], list(inverse))
        if overall is not None and overall.low > 0.0:
            return "decelerating"
        min_span = MIN_SPAN_FRACTION * self.fit_window_s
        if moving[-1].end - moving[0].start < min_span:
            return f"moving for {_hours(moving[-1].end - moving[0].start)} only ({_hours(min_span)} needed)"
        found = self._onset(moving, inverse, sigma, min_span)
        if found is None:
            return f"not accelerating: 1/v on no straight falling line over {_hours(min_span)} or more"
        start, line = found
        used, inverse, sigma = moving[start:], inverse[start:], sigma[start:]
        trend = theil_sen_rate([b.t for b in used], list(inverse))  # the rank test: unweighted
        if trend is None or trend.high >= 0.0 or line.slope >= 0.0:
            return "decelerating" if trend is not None and trend.low > 0.0 else "not accelerating"
        # Re-place each bin where the alpha = 2 velocity equals its mean velocity, and refit.
        refit = _fit_inverse_velocity(
            np.array([_log_mean_time(b, line.t_failure) for b in used]), inverse, sigma
        )
        if refit.slope < 0.0:
            line = refit

        span = used[-1].end - used[0].start
        ahead = line.t_failure - used[-1].end
        if ahead > MAX_EXTRAPOLATION * span:
            return (
                f"failure {_hours(ahead)} ahead is more than {MAX_EXTRAPOLATION:g} times "
                f"the {_hours(span)} of acceleration fitted"
            )
        if why := self._not_faster_than_before(before, bins, sign):
            return why
        band = Z95 * line.se
        return FailureForecast(
            t_failure=line.t_failure,
            earliest=line.t_failure - band,
            latest=line.t_failure + band,
            velocity_per_day=velocity,
            inverse_velocity=float(inverse[-1]),
            onset=used[0].start,
            points=len(used),
        )

    def _speed_sigma(self, b: _Bin) -> float:
        """Standard uncertainty of a bin's velocity, units/day: from its 95 % interval, but never
        below one sensor step over the bin (a staircase of a coarse sensor, e.g. an inclinometer
        in 0.01 deg, can give identical pairwise slopes and so an interval of zero width)."""
        from_interval = (b.rate.high - b.rate.low) / (2 * Z95)
        from_steps = self._resolution / (b.end - b.start) if math.isfinite(self._resolution) else 0.0
        return max(from_interval, from_steps) * DAY

    def _mean_velocity(self, bins: list[_Bin]) -> tuple[float, float]:
        """Time-weighted mean velocity of bins (units/day) and its variance."""
        total = sum(b.end - b.start for b in bins)
        mean = sum(b.rate.per_s * (b.end - b.start) for b in bins) / total * DAY
        var = sum((self._speed_sigma(b) * (b.end - b.start)) ** 2 for b in bins) / total**2
        return mean, var

    def _onset(
        self,
        bins: list[_Bin],
        inverse: npt.NDArray[np.float64],
        sigma: npt.NDArray[np.float64],
        min_span: float,
    ) -> tuple[int, _Line] | None:
        """The longest window ending at the last bin, spanning at least `min_span`, on which 1/v
        is straight (module docstring, step 6): its first bin's index and its line, or None."""
        times = np.array([b.t for b in bins])
        for start in range(len(bins) - self.min_points + 1):
            if bins[-1].end - bins[start].start < min_span:
                break
            if not _older_half_accelerates(times[start:], inverse[start:]):
                continue
            line = _fit_inverse_velocity(times[start:], inverse[start:], sigma[start:])
            if _straight(line.residuals):
                return start, line
        return None

    def _not_faster_than_before(self, before: list[_Bin], window: list[_Bin], sign: float) -> str:
        """Why the mean velocity over the fit window is not significantly (1 %) above the mean
        over the window before it ("" if it is).  A daily thermal cycle or a passing rain pulse
        accelerates a slope for hours; only tertiary creep makes each day faster than the last."""
        covered = sum(b.end - b.start for b in before)
        if covered < self.fit_window_s / 2:
            return (
                f"not enough history: {_hours(covered)} of velocity in the {_hours(self.fit_window_s)} "
                "before the fit window, to tell an acceleration from a daily cycle"
            )
        mean_now, var_now = self._mean_velocity(window)
        mean_before, var_before = self._mean_velocity(before)
        if sign * (mean_now - mean_before) <= Z99_ONE_SIDED * math.sqrt(var_now + var_before):
            return (
                f"not accelerating: {sign * mean_now:.3g}/day over the last {_hours(self.fit_window_s)}, "
                f"{sign * mean_before:.3g}/day over the {_hours(self.fit_window_s)} before"
            )
        return ""


@dataclass(frozen=True, slots=True)
class _Line:
    slope: float  # of 1/v, days per unit per second
    t_failure: float  # epoch s where the line reaches zero (inf unless slope < 0)
    se: float  # standard error of t_failure, s
    residuals: npt.NDArray[np.float64]  # (1/v - line) / sigma, per bin


def _weighted_median(values: npt.NDArray[np.float64], weights: npt.NDArray[np.float64]) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2.0)])


def _dispersion(residuals: npt.NDArray[np.float64]) -> float:
    """Robust scale of normalised residuals: about 1 when the bins' intervals tell the truth."""
    return MAD_TO_SIGMA * float(np.median(np.abs(residuals)))


def _fit_inverse_velocity(
    times: npt.NDArray[np.float64], inverse: npt.NDArray[np.float64], sigma: npt.NDArray[np.float64]
) -> _Line:
    """Weighted Theil-Sen line of 1/v against time and its zero crossing.

    Slope: the median of the pairwise slopes weighted by their inverse variances
    dt^2 / (sigma_i^2 + sigma_j^2).  Level: the weighted median of the residual intercepts at the
    weighted median time (the robust centre).  Standard error of the zero crossing by the delta
    method on the weighted least-squares variances of slope and level, scaled by the residuals'
    dispersion when the bins scatter more than their intervals claimed."""
    ref = float(times[-1])  # epoch seconds squared lose precision
    t = times - ref
    weights = 1.0 / sigma**2
    i, j = np.triu_indices(len(t), 1)
    dt = t[j] - t[i]
    slope = _weighted_median((inverse[j] - inverse[i]) / dt, dt**2 / (sigma[i] ** 2 + sigma[j] ** 2))
    centre = _weighted_median(t, weights)
    level = _weighted_median(inverse - slope * (t - centre), weights)
    residuals = (inverse - (level + slope * (t - centre))) / sigma
    if not slope < 0.0:
        return _Line(slope, math.inf, math.inf, residuals)
    mean_t = float(np.average(t, weights=weights))
    var_slope = 1.0 / float(np.sum(weights * (t - mean_t) ** 2))
    level_at_mean = level + slope * (mean_t - centre)
    var_level = 1.0 / float(np.sum(weights))
    se = max(1.0, _dispersion(residuals)) * math.sqrt(
        (level_at_mean / slope**2) ** 2 * var_slope + var_level / slope**2
    )
    return _Line(slope, ref + centre - level / slope, se, residuals)


def _straight(residuals: npt.NDArray[np.float64]) -> bool:
    """Does the line describe the bins (normalised residuals, oldest first)?  Each test at 1 %:
    - as many bins above as below (sign test): a line carried by a few fast bins while the
      others all lie on one side is not their trend;
    - the latest `PRESENT_POINTS` bins on the line: yesterday's acceleration does not forecast
      when the slope now moves slower (or faster) than the line says;
    - a scatter at most `MAX_DISPERSION` times what the bins' own intervals explain."""
    nonzero = residuals[residuals != 0.0]
    if len(nonzero) >= MIN_SIGN_TEST_POINTS:
        above = int(np.sum(nonzero > 0.0))
        if abs(2 * above - len(nonzero)) > Z99 * math.sqrt(len(nonzero)):
            return False
    recent = residuals[-PRESENT_POINTS:]
    if abs(float(np.mean(recent))) * math.sqrt(len(recent)) > Z99:
        return False
    return _dispersion(residuals) <= MAX_DISPERSION


def _older_half_accelerates(times: npt.NDArray[np.float64], inverse: npt.NDArray[np.float64]) -> bool:
    """Sen's 95 % interval of the unweighted 1/v slope over the older half of the window is
    entirely negative (True too when the window is too short to split).  Tertiary creep
    accelerates all along; steady creep ending in a sudden jump (a rain pulse) does not, yet the
    weighted line, carried by the fast recent bins, may pass the other tests."""
    half = len(times) // 2
    if half < MIN_HALF_POINTS:
        return True
    older = theil_sen_rate(list(times[:half]), list(inverse[:half]))
    return older is not None and older.high < 0.0
