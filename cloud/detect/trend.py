"""Robust rate of change and trend forecast for one series (river level, tilt, displacement...).

`RateWindow` keeps the samples of the last `window_s` seconds and estimates the rate of change with
the Theil-Sen estimator: the median of the slopes between every pair of samples, with the 95 %
confidence interval of Sen (1968), computed here exactly as `scipy.stats.theilslopes` does (a test
holds them equal) at a tenth of its cost per call (0.07 against 0.7 ms for 60 samples: the
wrapper's argument handling, not the fit, dominated).  Why Theil-Sen rather than least
squares: one wild reading (a debris strike on a pressure gauge, a garbled line that still parsed)
moves a least-squares slope arbitrarily far, but cannot move a median of pairwise slopes, and the
interval comes from ranks, so it needs no assumption about the noise distribution.

Cost and memory: a sensor is fed forever and one process holds thousands of series, so
- the window is bounded twice: by time (samples older than `t - window_s` are dropped on `add`)
  and by count: beyond `max_samples` the older half of the window is thinned to every other
  sample, which keeps the window's time coverage (what the slope's precision depends on most) and
  the recent samples at full resolution;
- `add` is O(1) amortised; the fit (O(n^2) pairs, n <= max_samples) runs only when `rate` or
  `fitted` is asked and the window changed since the last fit.

`forecast_crossing` extrapolates the robust line to a threshold: the central estimate from the
Theil-Sen slope, the band from the two confidence-interval slopes, all through the fitted value
at `now` (the median intercept, median(value - slope * t): a single outlier does not move it
either).  It answers only when the trend is significant and heads towards the target, so noise
on a flat river never produces "danger level in 40 h".
"""

from __future__ import annotations

import functools
import math
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

CONFIDENCE = 0.95


@dataclass(frozen=True, slots=True)
class Rate:
    per_s: float  # Theil-Sen slope, series units per second
    low: float  # 95 % confidence bounds of the slope, per second (low <= per_s <= high)
    high: float
    n: int  # samples used
    span_s: float  # time covered by them

    @property
    def significant(self) -> bool:
        """The confidence interval excludes zero: the series really is rising or falling."""
        return self.low > 0.0 or self.high < 0.0


@dataclass(frozen=True, slots=True)
class _Fit:
    rate: Rate
    t_ref: float  # time origin of the fit (the first sample), for numerical conditioning
    intercept: float  # value of the line at t_ref


REFITS_PER_WINDOW = 60


@functools.lru_cache(maxsize=256)
def _pairs(n: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Indices (i, j), i < j, of every pair of n samples (cached: windows keep a few sizes)."""
    i, j = np.triu_indices(n, 1)
    return i, j


@functools.cache
def _z(confidence: float) -> float:
    return NormalDist().inv_cdf((1.0 + confidence) / 2.0)


def _ties_term(values: Sequence[float]) -> float:
    """Sum of k (k - 1) (2k + 5) over the groups of k equal values (Sen 1968, eq. 2.6)."""
    # Python's Counter beats np.unique several times over on a window's few dozen values.
    return float(sum(_tie_weight(k) for k in Counter(values).values() if k > 1))


def _theil_sen(
    times: Sequence[float], values: Sequence[float], confidence: float, distinct_times: bool = False
) -> _Fit | None:
    """Theil-Sen line through (times, values); None with fewer than 2 distinct times.

    The same estimator and interval as `scipy.stats.theilslopes(values, times, confidence,
    method="joint")` (a unit test holds them equal), without its per-call overhead (about 0.7 ms,
    mostly argument handling), which dominated the cost of a forecaster fed thousands of series.
    Slope: median of the pairwise slopes; intercept: median of value - slope * t; interval: the
    order statistics of the pairwise slopes given by the variance of Kendall's S, ties corrected
    (Sen 1968, eq. 2.6).

    Cost: it runs for every sample of every rate-watched series, so it makes few numpy calls
    (pair indices cached per size, no n x n matrices, sorts instead of np.median) and counts ties
    with a Counter (what that buys the consumer: `python -m benchmarks.consumer_cpu`).
    Carrying the sorted slopes from fit to fit (delete the pairs that left, insert the new) was
    tried and was slower at these window sizes: numpy's per-call cost dominates, not the sort."""
    n = len(times)
    if n < 2 or times[-1] <= times[0]:
        return None
    t_ref = times[0]
    x = np.fromiter(times, dtype=float, count=n)
    x -= t_ref  # epoch seconds lose precision in the pair slopes
    y = np.fromiter(values, dtype=float, count=n)
    i, j = _pairs(n)
    dx = x[j] - x[i]
    dy = y[j] - y[i]
    if not distinct_times:
        keep = dx != 0.0  # a slope is the same from either end: no need for dx > 0
        dx, dy = dx[keep], dy[keep]
    slopes = dy / dx
    slopes.sort()
    count = len(slopes)
    mid = count // 2
    slope = float(slopes[mid]) if count % 2 else float((slopes[mid - 1] + slopes[mid]) / 2.0)
    residuals = y - slope * x
    residuals.sort()
    half = n // 2
    intercept = float(residuals[half]) if n % 2 else float((residuals[half - 1] + residuals[half]) / 2.0)
    # Times strictly increasing (as RateWindow keeps them) have no ties; values may (quantised).
    x_ties = 0.0 if distinct_times else _ties_term(times)
    variance = (n * (n - 1) * (2 * n + 5) - x_ties - _ties_term(values)) / 18.0
    spread = _z(confidence) * math.sqrt(max(variance, 0.0))
    low = float(slopes[max(round((count - spread) / 2.0) - 1, 0)])  # indices as scipy's
    high = float(slopes[min(round((count + spread) / 2.0), count - 1)])
    if not (math.isfinite(slope) and math.isfinite(intercept) and math.isfinite(low) and math.isfinite(high)):
        return None
    low, high = min(low, slope), max(high, slope)  # rounding on (near-)exact lines
    return _Fit(Rate(slope, low, high, n, times[-1] - times[0]), t_ref, intercept)


def _tie_weight(k: int) -> int:
    return k * (k - 1) * (2 * k + 5)


def theil_sen_rate(
    times: Sequence[float], values: Sequence[float], confidence: float = CONFIDENCE
) -> Rate | None:
    """Theil-Sen rate of (times, values) with its `confidence` interval, or None with fewer than
    two distinct times.  Times in seconds, increasing."""
    fit = _theil_sen(times, values, confidence)
    return None if fit is None else fit.rate


class RateWindow:
    """Samples of one series over the last `window_s` s; robust (Theil-Sen) rate of change."""

    def __init__(self, window_s: float, *, min_samples: int = 6, max_samples: int = 120) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        if min_samples < 2 or max_samples < max(min_samples, 4):
            raise ValueError(
                f"need 2 <= min_samples <= max_samples, max_samples >= 4, got {min_samples}, {max_samples}"
            )
        self.window_s = float(window_s)
        self.min_samples = min_samples
        self.max_samples = max_samples
        self._t: deque[float] = deque()
        self._v: deque[float] = deque()
        self._fit: _Fit | None = None
        self._dirty = False
        self._fitted_at: float | None = None  # time of the newest sample in the current fit
        self._recent: Rate | None = None  # fit of the newer half, computed when asked

    def __len__(self) -> int:
        return len(self._t)

    def add(self, t: float, value: float) -> None:
        """Add a sample; one not newer than the last, or not finite, is ignored."""
        if not (math.isfinite(t) and math.isfinite(value)):
            return
        if self._t and t <= self._t[-1]:
            return
        self._t.append(t)
        self._v.append(value)
        horizon = t - self.window_s
        while self._t[0] < horizon:
            self._t.popleft()
            self._v.popleft()
        if len(self._t) > self.max_samples:
            self._thin()
        self._dirty = True

    def _thin(self) -> None:
        """Drop every other sample of the older half: the window keeps its span, the recent
        samples their full resolution, and the count falls to about 3/4 of max_samples."""
        half = len(self._t) // 2
        times, values = list(self._t), list(self._v)
        keep_t = times[:half:2] + times[half:]
        keep_v = values[:half:2] + values[half:]
        self._t, self._v = deque(keep_t), deque(keep_v)

    def _current_fit(self) -> _Fit | None:
        """Refit at most once per 1/60 of the window of sample time: a 1 Hz series with a 1 h window
        is refitted once a minute, not every second (the fit costs O(n^2) in the samples)."""
        if self._dirty:
            newest = self._t[-1] if self._t else None
            recent = (
                self._fit is not None
                and self._fitted_at is not None
                and newest is not None
                and newest - self._fitted_at < self.window_s / REFITS_PER_WINDOW
            )
            if recent:
                return self._fit
            self._dirty = False
            self._fit = None
            self._recent = None
            self._fitted_at = newest
            if len(self._t) >= self.min_samples and self._t[-1] - self._t[0] >= self.window_s / 4:
                self._fit = _theil_sen(self._t, self._v, CONFIDENCE, distinct_times=True)
        return self._fit

    def rate(self) -> Rate | None:
        """The robust rate, None with fewer than `min_samples` or a span < window_s / 4."""
        fit = self._current_fit()
        return None if fit is None else fit.rate

    def recent_rate(self) -> Rate | None:
        """The robust rate of the newer half of the window (what the trend is doing lately)."""
        self._current_fit()
        if self._recent is None and self._fit is not None:
            half = len(self._t) // 2
            times, values = list(self._t)[half:], list(self._v)[half:]
            fit = _theil_sen(times, values, CONFIDENCE, distinct_times=True) if len(times) >= 3 else None
            self._recent = fit.rate if fit is not None else None
        return self._recent

    def fitted(self, t: float) -> float | None:
        """Value of the robust line at t (median intercept), None when `rate` is None."""
        fit = self._current_fit()
        if fit is None:
            return None
        return fit.intercept + fit.rate.per_s * (t - fit.t_ref)

    def clear(self) -> None:
        self._t.clear()
        self._v.clear()
        self._fit = None
        self._dirty = False
        self._fitted_at = None


@dataclass(frozen=True, slots=True)
class Crossing:
    target: float
    eta: float  # central estimate (epoch s) from the Theil-Sen slope, from the fitted value now
    earliest: float  # from the faster CI bound
    latest: float  # from the slower CI bound


def forecast_crossing(window: RateWindow, now: float, target: float, horizon_s: float) -> Crossing | None:
    """When the series reaches `target` if the trend holds.  None unless the trend is significant
    AND heads towards the target (target above the fitted value now: rate.low > 0; below: rate.high < 0)
    AND eta - now <= horizon_s.  If the target is already reached by the fitted value, None.

    The central estimate follows the robust trend of the window's newer half (a flood wave
    steepens, then flattens: the recent trend says more about the next hour than the whole
    window's).  The band spans the crossing times of the 95 % slope intervals of both the whole
    window and its newer half, and is at least one sample spacing and 5 % of the lead time either
    side.  It is a guide, not a calibrated 95 % interval: on the shipped scenarios it held the true
    crossing time in about half of the forecasts (BENCHMARKS.md), because a straight line on a
    curving series is biased, not just uncertain."""
    rate = window.rate()
    value_now = window.fitted(now)
    if rate is None or value_now is None:
        return None
    gap = target - value_now
    if gap > 0 and rate.low > 0:
        fast, slow = rate.high, rate.low
    elif gap < 0 and rate.high < 0:
        fast, slow = rate.low, rate.high
    else:  # reached already, flat within its uncertainty, or heading away
        return None
    eta = now + gap / rate.per_s
    if eta - now > horizon_s:
        return None
    earliest, latest = now + gap / fast, now + gap / slow
    recent = window.recent_rate()
    if recent is not None and recent.per_s * gap > 0:
        # The central estimate follows the recent trend; the band spans both.
        whole_eta, eta = eta, now + gap / recent.per_s
        if eta - now > horizon_s:
            return None
        for r in (recent.low, recent.high):
            if r * gap > 0:
                earliest, latest = min(earliest, now + gap / r), max(latest, now + gap / r)
        earliest, latest = min(earliest, eta, whole_eta), max(latest, eta, whole_eta)
    floor = max(rate.span_s / max(rate.n - 1, 1), 0.05 * (eta - now))
    return Crossing(
        target=target, eta=eta, earliest=min(earliest, eta - floor), latest=max(latest, eta + floor)
    )
