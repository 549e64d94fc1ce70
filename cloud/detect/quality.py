"""Data quality of one series, sample by sample: is this value fit to detect disasters on?

A spiking or stuck sensor must not wake a duty officer, and a real flood must not be thrown away
as a spike.  Each sample gets one verdict:

- OUT_OF_RANGE outside the configured physical range (bounds inclusive).
- FLATLINE     part of a run of values within `flatline_epsilon` of each other that has lasted
               `flatline_s` and `flatline_min_samples`: the sensor is stuck.  Every sample of the
               run from detection on is FLATLINE until a value leaves the band.
- SUSPECT      an outlier against the recent accepted history, or an impossible jump.
- OK           everything else; only OK samples join the history the next ones are judged by.

Outliers (a Hampel filter made causal and trend-aware).  A trailing median lags a steady trend by
half its window (a river rising 1 m/h, 15 one-minute samples: 12 cm behind, a dozen noise
scales), so the new value is compared with a robust line through the last `window` accepted
samples.  Its slope is the median of the slopes between samples half a window apart (a cheap
Theil-Sen: n/2 disjoint pairs instead of n(n-1)/2, one bad sample spoils one pair), its
intercept the median of the detrended values, and the scale is 1.4826 * the median absolute
residual (the MAD of residuals whose median is zero by construction), floored at `min_scale`
(quantised or very quiet data would otherwise have a scale of 0 and make every step an outlier)
and at the median of the scales of recent windows (SCALE_MEMORY of them, one every window/2
accepted samples): the MAD of 15 residuals scatters by ~30 %, and the windows where it comes out
small would flag pure gaussian noise 0.23 % of the time (3 false suspects a day at one sample a
minute) when min_scale is left at 0; with the memory, 0.002 %.
A value is an outlier when it is farther than k * scale from the line's prediction at its time,
the tolerance widened by the prediction's own uncertainty,
sqrt(1 + 1/n + c (t - t_mean)^2 / sum (t_i - t_mean)^2): the textbook line-prediction factor, with
c = 2.1 for this slope estimator's variance relative to least squares.  That factor is about 1.24
for the next sample of a full, evenly spaced window, and grows after a gap, when an extrapolated
slope is worth less.  Plain Python: for 15 samples the fit takes ~9 us, numpy ~55 us (call
overheads).

Impossible jumps: with `max_rate_per_h`, a value farther from the last accepted one than
max_rate_per_h * hours elapsed + k * scale is SUSPECT, even before there is history to fit.

Changes of trend.  A river that starts rising abruptly (a kink in the series, not a step) leaves
the old line and its first samples are SUSPECT.  Once TREND_MIN_RUN suspects lie on a line as
tight as the series' noise, no faster than max_rate_per_h, that extrapolated back passes within
the outlier tolerance of the last accepted sample, they are a new trend: the run becomes the new
history and the series is OK again.  A sudden 2-8 m/h rise from a flat river is held back for 2
one-minute samples, not for shift_confirm_s.  A spike or an offset jumps away from the last
accepted value and never qualifies.

Level shifts.  A recalibrated or remounted sensor jumps once and stays: its samples keep being
SUSPECT.  When a run of suspects has lasted `shift_confirm_s` and they agree with each other
(robust scale about their own line, times k, smaller than their distance from the reference), the
run becomes the new history (`shifts` += 1) and the series is OK again.  A spike does not last that
long, and garbage does not agree with itself.  While the history is shorter than `window` (after
a start or a restart) such a run replaces it as soon as it has more samples than the history:
five samples can make a line with a wrong slope and a near-zero scale, and then the history is
the doubtful side.

Restarts (history forgotten, the sample accepted): after a gap longer than
max(STALE_AFTER_S, 20 * window * typical spacing), since week-old history says nothing about today;
and when a detected flatline ends, since the stuck values are no history of the real signal and the
real value has moved on meanwhile.

Fewer than min(5, window) accepted samples: no fit, accept (range and max-rate checks still apply).

Cost: O(window) per sample plus two sorts of ~window/2 and window values; memory O(window).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass

MAD_TO_SIGMA = 1.4826  # 1 / Phi^-1(3/4): MAD of gaussian noise -> its standard deviation
MIN_HISTORY = 5  # accepted samples needed before the outlier test judges anything
STALE_AFTER_S = 6 * 3600.0  # a gap longer than this (at least) makes the history stale
STALE_SPACINGS = 20  # ... or longer than this many windows of the history's typical spacing
SLOPE_VARIANCE_RATIO = 2.1  # half-window pair slopes vs least squares, for the prediction band
SCALE_MEMORY = 8  # past window scales whose median floors the scale (kept across restarts)
TREND_MIN_RUN = 3  # suspects needed before a run can be taken as a change of trend
TREND_TIGHTNESS = 3.0  # a new trend's residual scale may be this many times the series' noise


class Verdict(enum.StrEnum):
    OK = "ok"  # use it for detection
    SUSPECT = "suspect"  # spike or impossible jump vs recent history: held back from detection
    FLATLINE = "flatline"  # part of a flat run: the sensor is stuck
    OUT_OF_RANGE = "out_of_range"


@dataclass(frozen=True, slots=True)
class QualityConfig:
    range: tuple[float, float] | None = None
    window: int = 15  # accepted samples the outlier test compares with
    k: float = 6.0  # outlier if |residual| > k * scale
    min_scale: float = 0.0  # floor of the robust scale (sensor resolution/noise, series unit)
    max_rate_per_h: float | None = None  # physically impossible change rate (series unit per hour)
    shift_confirm_s: float = 1800.0  # suspect samples consistent with each other this long: a real
    # level shift (recalibration, new mounting): accepted from then on
    flatline_s: float | None = None  # None: no flatline check
    flatline_epsilon: float = 0.0  # values within this of each other count as "the same"
    flatline_min_samples: int = 10


@dataclass(frozen=True, slots=True)
class _Line:
    """Robust line through a set of samples: value(t) = centre + slope * (t - t_mean)."""

    t_mean: float
    centre: float
    slope: float  # per second
    scale: float  # robust residual scale (not floored)
    spread: float  # sum of (t_i - t_mean)^2
    n: int

    def at(self, t: float) -> float:
        return self.centre + self.slope * (t - self.t_mean)

    def widening(self, t: float) -> float:
        """How much wider the tolerance at `t` is than the noise alone (line-prediction factor)."""
        d2 = (t - self.t_mean) ** 2
        return math.sqrt(
            1.0 + 1.0 / self.n + (SLOPE_VARIANCE_RATIO * d2 / self.spread if self.spread else 0.0)
        )


def _median_sorted(xs: list[float]) -> float:
    n = len(xs)
    mid = n // 2
    return xs[mid] if n % 2 else 0.5 * (xs[mid - 1] + xs[mid])


def _median(xs: list[float]) -> float:
    return _median_sorted(sorted(xs))


def robust_line(ts: list[float], vs: list[float]) -> _Line:
    """The robust line described in the module docstring; needs at least 2 samples with distinct
    times (times are strictly increasing in a series, so any 2 samples do)."""
    n = len(ts)
    half = (n + 1) // 2
    slopes = [(vs[i + half] - vs[i]) / (ts[i + half] - ts[i]) for i in range(n - half)]
    slope = _median(slopes)
    t_mean = sum(ts) / n
    detrended = [v - slope * (t - t_mean) for t, v in zip(ts, vs, strict=True)]
    centre = _median(detrended)
    scale = MAD_TO_SIGMA * _median([abs(x - centre) for x in detrended])
    spread = sum((t - t_mean) ** 2 for t in ts)
    return _Line(t_mean, centre, slope, scale, spread, n)


class SeriesQuality:
    def __init__(self, config: QualityConfig) -> None:
        if config.window < 2:
            raise ValueError(f"window must be at least 2 samples, got {config.window}")
        if config.k <= 0 or config.min_scale < 0:
            raise ValueError("k must be positive and min_scale not negative")
        self.config = config
        self._min_history = min(MIN_HISTORY, config.window)
        self._history: deque[tuple[float, float]] = deque(maxlen=config.window)
        self._last_t: float | None = None  # latest sample checked, whatever its verdict
        self._last_accepted: tuple[float, float] | None = None
        self._line: _Line | None = None  # fit of the current history (None: too short to judge)
        # Window scales sampled every window/2 accepted samples, and their median: a floor for the
        # scale that does not dip when one window's MAD happens to come out small.
        self._scales: deque[float] = deque(maxlen=SCALE_MEMORY)
        self._scale_memory = 0.0
        self._accepted_since_scale = 0
        self._reference: float | None = None
        # The current run of suspects (reset by an accepted sample).
        self._suspects: deque[tuple[float, float]] = deque(maxlen=max(config.window, MIN_HISTORY))
        self._suspect_since: float | None = None
        self._run_len = 0  # suspects in the run (the deque keeps the last `window`)
        self._run_too_fast = False  # some suspect of the run broke max_rate_per_h
        self._last_suspect: tuple[float, float] | None = None
        self._shifts = 0
        # The current flat run: values within [lo, hi], hi - lo <= epsilon.
        self._flat_start: float | None = None
        self._flat_lo = 0.0
        self._flat_hi = 0.0
        self._flat_count = 0
        self._flat_detected = False

    @property
    def flat_since(self) -> float | None:
        """Start of the current flat run once it is a flatline."""
        return self._flat_start if self._flat_detected else None

    @property
    def suspect_since(self) -> float | None:
        """First sample of the current run of suspects."""
        return self._suspect_since

    @property
    def last_suspect(self) -> tuple[float, float] | None:
        """(t, value) of the latest suspect sample."""
        return self._last_suspect

    @property
    def shifts(self) -> int:
        """Level shifts accepted so far (changes of trend taken after a few suspects are not
        counted: they are the signal, not the sensor)."""
        return self._shifts

    @property
    def reference(self) -> float | None:
        """The robust centre the latest sample was measured against: the history's line at that
        sample's time (or the last accepted value while the history is too short to fit)."""
        return self._reference

    def check(self, t: float, value: float) -> Verdict:
        """The verdict on one sample.  A sample not newer than the last one checked (or not
        finite) is not judged, leaves the state alone, and is SUSPECT: it cannot be placed in a
        causal history, so it is held back."""
        if not (math.isfinite(t) and math.isfinite(value)) or (
            self._last_t is not None and t <= self._last_t
        ):
            return Verdict.SUSPECT
        self._last_t = t
        cfg = self.config
        if cfg.range is not None and not cfg.range[0] <= value <= cfg.range[1]:
            return Verdict.OUT_OF_RANGE
        if cfg.flatline_s is not None and self._flat(t, value):
            return Verdict.FLATLINE
        if self._last_accepted is not None and t - self._last_accepted[0] > self._stale_after():
            self._restart()
        outlier, too_fast = self._judge(t, value)
        if outlier or too_fast:
            return self._suspect(t, value, too_fast)
        self._accept(t, value)
        return Verdict.OK

    # --- outliers, trend changes and level shifts ---

    def _noise(self) -> float:
        """The scale outliers are measured in: the window's robust scale, floored at min_scale and
        at the typical scale of the recent windows (see SCALE_MEMORY)."""
        line = self._line
        if line is None:
            return self.config.min_scale
        return max(line.scale, self.config.min_scale, self._scale_memory)

    def _judge(self, t: float, value: float) -> tuple[bool, bool]:
        """(outlier against the history's line, faster than max_rate_per_h from the last accepted)."""
        cfg = self.config
        line = self._line
        scale = self._noise()
        outlier = too_fast = False
        if line is not None:
            self._reference = line.at(t)
            outlier = abs(value - self._reference) > cfg.k * scale * line.widening(t)
        else:
            self._reference = self._last_accepted[1] if self._last_accepted is not None else None
        if cfg.max_rate_per_h is not None and self._last_accepted is not None:
            t0, v0 = self._last_accepted
            too_fast = abs(value - v0) > cfg.max_rate_per_h * (t - t0) / 3600.0 + cfg.k * scale
        return outlier, too_fast

    def _suspect(self, t: float, value: float, too_fast: bool) -> Verdict:
        if self._suspect_since is None:
            self._suspect_since = t
            self._suspects.clear()
            self._run_len = 0
            self._run_too_fast = False
        self._suspects.append((t, value))
        self._run_len += 1
        self._run_too_fast = self._run_too_fast or too_fast
        self._last_suspect = (t, value)
        if len(self._suspects) < min(TREND_MIN_RUN, self._min_history):
            return Verdict.SUSPECT
        own = robust_line([s[0] for s in self._suspects], [s[1] for s in self._suspects])
        if self._continues(own):
            self._restart_from_run()
            return Verdict.OK
        if len(self._suspects) >= self._min_history and self._is_new_level(own, t):
            if t - self._suspect_since >= self.config.shift_confirm_s:
                self._restart_from_run()
                self._shifts += 1
                return Verdict.OK
            if len(self._history) < self.config.window and self._run_len > len(self._history):
                # A history shorter than the consistent run that contradicts it (just after a
                # start or a restart) is the doubtful side: a few samples can give a line with
                # a wrong slope and a near-zero scale.
                self._restart_from_run()
                return Verdict.OK
        return Verdict.SUSPECT

    def _continues(self, own: _Line) -> bool:
        """A change of trend, not a jump: the run of suspects lies on a line as tight as the
        series' noise, no faster than max_rate_per_h, that starts from the last accepted sample
        (extrapolated back to it, it passes within the outlier tolerance).  A river that starts
        rising abruptly (a kink, not a step) is held back only for these few samples; a spike
        or an offset jumps away from the last accepted value and fails this."""
        cfg = self.config
        if self._run_too_fast or self._run_len > cfg.window or self._last_accepted is None:
            return False
        noise = self._noise()
        if own.scale > TREND_TIGHTNESS * noise:
            return False
        if cfg.max_rate_per_h is not None and abs(own.slope) * 3600.0 > cfg.max_rate_per_h:
            return False
        t0, v0 = self._last_accepted
        return abs(own.at(t0) - v0) <= cfg.k * noise * own.widening(t0)

    def _is_new_level(self, own: _Line, t: float) -> bool:
        """The run of suspects is one new level (or trend): tight about its own line compared
        with its distance from where the old history says the value should be."""
        spread = max(own.scale, self.config.min_scale)
        if self._line is not None:
            expected = self._line.at(t)
        elif self._last_accepted is not None:
            expected = self._last_accepted[1]
        else:
            return True  # nothing to disagree with (only max-rate suspects can get here)
        return abs(own.at(t) - expected) > self.config.k * spread

    def _restart_from_run(self) -> None:
        run = list(self._suspects)
        self._restart()
        for ts, v in run:
            self._accept(ts, v)

    # --- history ---

    def _accept(self, t: float, value: float) -> None:
        self._history.append((t, value))
        self._last_accepted = (t, value)
        self._suspect_since = None
        self._suspects.clear()
        if len(self._history) >= self._min_history:
            self._line = robust_line([h[0] for h in self._history], [h[1] for h in self._history])
            self._accepted_since_scale += 1
            if self._accepted_since_scale >= max(1, self.config.window // 2):
                self._accepted_since_scale = 0
                self._scales.append(self._line.scale)
                self._scale_memory = _median(list(self._scales))
        else:
            self._line = None

    def _restart(self) -> None:
        """Forget the history (not the last accepted value: the max-rate check still applies)."""
        self._history.clear()
        self._line = None
        self._suspect_since = None
        self._suspects.clear()

    def _stale_after(self) -> float:
        h = self._history
        if len(h) < 2:
            return STALE_AFTER_S
        spacing = (h[-1][0] - h[0][0]) / (len(h) - 1)
        return max(STALE_AFTER_S, STALE_SPACINGS * self.config.window * spacing)

    # --- flatline ---

    def _flat(self, t: float, value: float) -> bool:
        """Feed the flat-run tracker; True when this sample belongs to a detected flatline.

        A value leaving the band starts a new run at that value alone (exact for epsilon 0; with
        a positive epsilon a few earlier in-band values could have joined, so detection may come
        a little later than the tightest definition would give)."""
        cfg = self.config
        assert cfg.flatline_s is not None
        lo, hi = min(self._flat_lo, value), max(self._flat_hi, value)
        if self._flat_start is None or hi - lo > cfg.flatline_epsilon:
            if self._flat_detected:
                self._restart()  # moving again after being stuck: the stuck values are no history
            self._flat_start, self._flat_lo, self._flat_hi = t, value, value
            self._flat_count = 1
            self._flat_detected = False
            return False
        self._flat_lo, self._flat_hi = lo, hi
        self._flat_count += 1
        if (
            not self._flat_detected
            and t - self._flat_start >= cfg.flatline_s
            and self._flat_count >= cfg.flatline_min_samples
        ):
            self._flat_detected = True
        return self._flat_detected
