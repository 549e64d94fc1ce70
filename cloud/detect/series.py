"""All detection for one series (tenant, sensor, kind), in the order a reading goes through it:

1. quality flag: only flagged readings for `failing_after_s` -> sensor_failing (maintenance);
2. data quality (cloud.detect.quality): out of range, spikes and impossible jumps (suspect_data),
   a stuck value (flatline) -> maintenance alerts, and the sample is held back from step 3, so a
   spiking or stuck sensor cannot raise a disaster alert;
3. disaster detectors, each optional per channel (registry): levels with hysteresis and minimum
   duration, rate of change (Theil-Sen), trend forecast of the next level, JMA new snowfall with the
   road class's dispatch level, inverse-velocity failure forecast.

Each condition is a LevelTracker, so raising and clearing follow one rule everywhere.  A reading
not newer than the last one evaluated is ignored by steps 2-3 (an outbox replaying its backlog
after live data): late data never moves the state backwards in time.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cloud.detect.inverse_velocity import FailureForecast, InverseVelocity
from cloud.detect.levels import LevelTracker
from cloud.detect.observation import AlertKey, Observation
from cloud.detect.quality import QualityConfig, SeriesQuality, Verdict
from cloud.detect.snow import NewSnowfall
from cloud.detect.texts import clock, fmt, forecast_text, label, span
from cloud.detect.trend import Crossing, RateWindow, forecast_crossing
from cloud.registry import Channel, RoadClass, Sensor, Site, Threshold, rate_factor
from wire import alerts as wa
from wire.alerts import Forecast
from wire.telemetry import Quality

SUSPECT_CLEAR_S = 1800.0  # suspect_data clears after this long without a suspect sample
UPDATE_S = 300.0  # active disaster conditions refresh their value/rate/forecast this often
FAILURE_EVERY_S = 60.0  # the failure forecast is refitted at most this often (sample time)
FAILURE_CLEAR_HOLD_S = 2 * 3600.0  # a failure alert clears after this long without a forecast


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The series' derived values after a sample, for storage (measurement `detections`)."""

    t: float
    rate: float | None = None  # in rate_unit
    rate_unit: str = ""
    next_level: int | None = None
    next_level_eta: float | None = None
    next_level_earliest: float | None = None
    next_level_latest: float | None = None
    new_snow: dict[int, float] | None = None
    failure_time: float | None = None
    failure_earliest: float | None = None
    failure_latest: float | None = None
    velocity_per_day: float | None = None


class SeriesDetector:
    def __init__(
        self, sensor: Sensor, site: Site, kind: str, channel: Channel, road: RoadClass | None, tz: ZoneInfo
    ) -> None:
        self.sensor, self.site, self.kind, self.channel, self.road, self.tz = (
            sensor,
            site,
            kind,
            channel,
            road,
            tz,
        )
        self.where = site.name or site.id
        q = channel.quality
        self.quality = SeriesQuality(
            QualityConfig(
                range=channel.range,
                window=q.window,
                k=q.k,
                min_scale=q.min_scale,
                max_rate_per_h=q.max_rate_per_h,
                shift_confirm_s=q.shift_confirm_s,
                flatline_s=q.flatline_s,
                flatline_epsilon=q.flatline_epsilon,
                flatline_min_samples=q.flatline_min_samples,
            )
        )
        ths = [(t.level, t.value) for t in channel.thresholds]
        self.levels = (
            LevelTracker(
                ths, channel.direction, channel.clear_margin, channel.min_duration_s, channel.clear_hold_s
            )
            if ths
            else None
        )
        self.rate_window = RateWindow(channel.rate.window_s) if channel.rate else None
        self.rate_factor = rate_factor(channel.unit, channel.rate.unit) if channel.rate else None
        self.rate_levels = (
            LevelTracker(
                [(t.level, t.value) for t in channel.rate.thresholds],
                "rising",
                channel.rate.clear_margin,
                channel.rate.min_duration_s,
            )
            if channel.rate and channel.rate.thresholds
            else None
        )
        self.trend = RateWindow(channel.forecast.window_s) if channel.forecast and ths else None
        self.snow = NewSnowfall() if channel.snowfall else None
        self.snow_levels = (
            LevelTracker([(1, road.new_snow_cm)], "rising") if self.snow is not None and road else None
        )
        ff = channel.failure_forecast
        self.iv = (
            InverseVelocity(
                bin_s=ff.bin_s,
                fit_window_s=ff.fit_window_s,
                min_points=ff.min_points,
                max_horizon_s=ff.max_horizon_s,
            )
            if ff
            else None
        )
        self.failure_levels = (
            LevelTracker([(ff.level, ff.alert_within_s)], "falling", math.inf, 0.0, FAILURE_CLEAR_HOLD_S)
            if ff
            else None
        )
        # Maintenance condition levels (0/1) and their bookkeeping.
        self.maint: dict[str, int] = {}
        self.first_bad: float | None = None  # sample time of the first flagged reading in a run
        self.bad_flag: Quality | None = None
        self.last_reading: float | None = None  # sample time of the latest reading of any quality
        self.last_eval: float | None = None
        self.last_suspect: float | None = None
        self.last_update: dict[str, float] = {}
        # Latest derived values (also read by evaluation).  The rate and the next-level forecast
        # are computed when asked (an alert, a `detections` point, the evaluation), not for every
        # sample: a Theil-Sen fit costs more than the rest of a sample's detection, and most
        # samples raise nothing.
        self._level_sample: tuple[float, float] | None = None  # (t, smoothed value) last levelled
        self._next_level_key: tuple[float, int] | None = None  # (t, level) _next_level is for
        self._next_level: tuple[Crossing, int, float] | None = None  # crossing, level, threshold
        self.failure: FailureForecast | None = None
        self._failure_fitted_at: float | None = None
        self._recent: deque[tuple[float, float]] = deque()  # for smooth_s

    # --- keys ---

    def key(self, condition: str) -> AlertKey:
        return AlertKey(self.sensor.tenant, condition, self.sensor.id, self.kind, self.sensor.gateway)

    def _obs(self, condition: str, level: int, t: float, reason: str, **details: object) -> Observation:
        return Observation(
            self.key(condition),
            level,
            _ts(t),
            reason,
            site=self.site.id,
            site_name=self.site.name,
            gateway=self.sensor.gateway,
            unit=self.channel.unit,
            **details,  # type: ignore[arg-type]
        )

    def forget_levels(self) -> None:
        """After a silent warm-up on journalled history: every condition back to 0 (the alert
        store, restored next, is the authority on what is active) and no judgement of silence
        from samples taken before the restart."""
        for tracker in (self.levels, self.rate_levels, self.snow_levels, self.failure_levels):
            if tracker is not None:
                tracker.reset()
        self.maint.clear()
        self.first_bad = None
        self.last_reading = None
        self.last_suspect = None

    def restore(self, condition: str, level: int) -> None:
        """Resume at a level the alert store says is active (after a restart), so the next
        reading clears or keeps it instead of raising it again."""
        tracker = {
            wa.LEVEL: self.levels,
            wa.RATE: self.rate_levels,
            wa.SNOW_DISPATCH: self.snow_levels,
            wa.FAILURE_FORECAST: self.failure_levels,
        }.get(condition)
        if tracker is not None:
            tracker.reset(level)
        elif condition in wa.MAINTENANCE_CONDITIONS:
            self.maint[condition] = level
            if condition == wa.SUSPECT_DATA:
                self.last_suspect = self.last_suspect or 0.0

    # --- input ---

    def reading(self, t: float, q: Quality, value: float | None) -> list[Observation]:
        out: list[Observation] = []
        self.last_reading = t if self.last_reading is None else max(self.last_reading, t)
        self._set(out, wa.STALE, 0, t, lambda: f"{self._name()}: readings again")
        if q is not Quality.OK or value is None:
            if self.first_bad is None:
                self.first_bad, self.bad_flag = t, q
            if t - self.first_bad >= self.channel.failing_after_s:
                first = self.first_bad
                self._set(
                    out,
                    wa.SENSOR_FAILING,
                    1,
                    t,
                    lambda: (
                        f"{self._name()}: only {q.value} readings since {clock(first, self.tz)} "
                        f"({span(t - first)}); no value to detect on"
                    ),
                )
            return out
        self.first_bad = None
        self._set(out, wa.SENSOR_FAILING, 0, t, lambda: f"{self._name()}: good readings again")
        if self.last_eval is not None and t <= self.last_eval:
            return out
        self.last_eval = t
        verdict = self.quality.check(t, value)
        if verdict is Verdict.OUT_OF_RANGE:
            self._out_of_range(out, t, value)
            return out
        self._set(out, wa.OUT_OF_RANGE, 0, t, lambda: f"{self._name()}: back inside its range")
        if verdict is Verdict.SUSPECT:
            self.last_suspect = t
            ref = self.quality.reference
            self._set(
                out,
                wa.SUSPECT_DATA,
                1,
                t,
                lambda: (
                    f"{self._name()}: {fmt(value)} {self.channel.unit} is far from the recent "
                    f"{fmt(ref) if ref is not None else '?'} {self.channel.unit} (spike or impossible jump); "
                    "held back from detection"
                ),
                value=value,
            )
            return out
        if verdict is Verdict.FLATLINE:
            since = self.quality.flat_since or t
            self._set(
                out,
                wa.FLATLINE,
                1,
                t,
                lambda: (
                    f"{self._name()}: the same {fmt(value)} {self.channel.unit} since "
                    f"{clock(since, self.tz)} ({span(t - since)}): the sensor looks stuck; "
                    "held back from detection"
                ),
                value=value,
            )
            return out
        self._set(out, wa.FLATLINE, 0, t, lambda: f"{self._name()}: moving again ({fmt(value)})", value=value)
        self._clear_suspect(out, t)
        self._detect(out, t, value)
        return out

    def out_of_range(self, t: float, value: float) -> list[Observation]:
        """A reading the ingest rejected as outside the registered range."""
        out: list[Observation] = []
        self._out_of_range(out, t, value)
        return out

    def tick(self, now: float, gateway_offline: bool) -> list[Observation]:
        out: list[Observation] = []
        stale_after = self.channel.stale_after_s
        last = self.last_reading
        if stale_after is not None and last is not None and not gateway_offline and now - last >= stale_after:
            self._set(
                out,
                wa.STALE,
                1,
                now,
                lambda: (
                    f"{self._name()}: no reading since {clock(last, self.tz)} ({span(now - last)}; "
                    f"expected within {span(stale_after)})"
                ),
            )
        self._clear_suspect(out, now)
        return out

    # --- detectors ---

    @property
    def rate(self) -> float | None:
        """The robust rate of change over the rate window, in the channel's rate unit."""
        if self.rate_window is None or self.rate_factor is None:
            return None
        r = self.rate_window.rate()  # fitted once per change of the window (and REFITS_PER_WINDOW)
        return None if r is None else r.per_s * self.rate_factor

    @property
    def crossing(self) -> Crossing | None:
        """When the trend reaches the next level (None: no significant trend towards it)."""
        nxt = self._next_level_crossing()
        return nxt[0] if nxt else None

    @property
    def crossing_level(self) -> int | None:
        nxt = self._next_level_crossing()
        return nxt[1] if nxt else None

    def _detect(self, out: list[Observation], t: float, value: float) -> None:
        if self.rate_window is not None:
            self.rate_window.add(t, value)
        if self.trend is not None:
            self.trend.add(t, value)
        if self.levels is not None:
            self._levels(out, t, value)
        if self.rate_levels is not None and self.rate is not None:
            self._rate_levels(out, t, value)
        if self.snow is not None:
            self.snow.add(t, value)
            if self.snow_levels is not None:
                self._snow(out, t)
        if self.iv is not None:
            self.iv.add(t, value)
            self._failure(out, t, value)

    def _danger_rate(self, value: float) -> float:
        """The rate's magnitude in the dangerous direction, 0 when not significant or safe-going."""
        assert self.rate_window is not None and self.rate_factor is not None
        r = self.rate_window.rate()
        if r is None or not r.significant:
            return 0.0
        per_s = r.per_s
        if self.channel.direction == "falling" or (self.channel.direction == "absolute" and value < 0):
            per_s = -per_s
        return max(per_s * self.rate_factor, 0.0)

    def _smoothed(self, t: float, value: float) -> float:
        window = self.channel.smooth_s
        if window <= 0:
            return value
        self._recent.append((t, value))
        while self._recent and self._recent[0][0] <= t - window:
            self._recent.popleft()
        return statistics.median(v for _, v in self._recent)

    def _levels(self, out: list[Observation], t: float, value: float) -> None:
        tracker = self.levels
        assert tracker is not None
        previous = tracker.level
        value = self._smoothed(t, value)
        new = tracker.update(t, value)
        self._level_sample = (t, value)
        if new == previous:
            if new > 0 and self._refresh_due(wa.LEVEL, t):
                self._refresh(out, wa.LEVEL, new, t, value, self._next_level_forecast())
            return
        out.append(self._level_obs(t, value, new, previous, self._next_level_forecast()))

    def _next_level_crossing(self) -> tuple[Crossing, int, float] | None:
        """(crossing, level, threshold) of the next level from the latest levelled sample, computed
        once per sample and level, when first asked."""
        sample, levels = self._level_sample, self.levels
        if sample is None or levels is None or self.trend is None or self.channel.forecast is None:
            return None
        t, value = sample
        key = (t, levels.level)
        if key == self._next_level_key:
            return self._next_level
        self._next_level_key, self._next_level = key, None
        nxt = levels.next_threshold()
        if nxt is None:
            return None
        level, threshold = nxt
        target = -threshold if self.channel.direction == "absolute" and value < 0 else threshold
        crossing = forecast_crossing(self.trend, t, target, self.channel.forecast.horizon_s)
        if crossing is not None:
            self._next_level = (crossing, level, threshold)
        return self._next_level

    def _next_level_forecast(self) -> Forecast | None:
        nxt = self._next_level_crossing()
        if nxt is None:
            return None
        crossing, level, threshold = nxt
        return Forecast(
            "next_level",
            _ts(crossing.eta),
            _ts(crossing.earliest),
            _ts(crossing.latest),
            target_level=level,
            target_value=threshold,
        )

    def _level_obs(self, t: float, value: float, new: int, previous: int, fc: Forecast | None) -> Observation:
        ch = self.channel
        unit = ch.unit
        shown = f"|{fmt(value)}|" if ch.direction == "absolute" else fmt(value)
        head = f"{self.where}: {self.kind} {shown} {unit}"
        if new > previous:
            th = self._threshold(new)
            reason = f"{head} reached {label(th.name, th.name_ja)} ({fmt(th.value)} {unit}), level {new}"
        else:
            left = self._threshold(previous)
            back = "above" if ch.direction == "falling" else "below"
            sign = "+" if ch.direction == "falling" else "-"
            margin = f" {sign} {fmt(ch.clear_margin)}" if ch.clear_margin else ""
            reason = f"{head} back {back} {label(left.name, left.name_ja)} ({fmt(left.value)}{margin} {unit})"
            if new == 0:
                reason += ", resolved"
            else:
                now_th = self._threshold(new)
                reason += f", now level {new} {label(now_th.name, now_th.name_ja)}"
        reason += self._rate_and_forecast_text(t, fc)
        th_new = self._threshold(new) if new else None
        return self._obs(
            wa.LEVEL,
            new,
            t,
            reason,
            level_name=th_new.name if th_new else "",
            level_name_ja=th_new.name_ja if th_new else "",
            threshold=th_new.value if th_new else None,
            value=value,
            rate=self.rate,
            rate_unit=ch.rate.unit if ch.rate and self.rate is not None else "",
            forecast=fc,
        )

    def _rate_and_forecast_text(self, t: float, fc: Forecast | None) -> str:
        parts = []
        if self.rate is not None and self.channel.rate is not None:
            parts.append(f"rate {fmt(self.rate)} {self.channel.rate.unit}")
        if fc is not None and fc.target_level is not None:
            th = self._threshold(fc.target_level)
            parts.append(forecast_text(fc, self.tz, label(th.name, th.name_ja), _ts(t)))
        return "; " + "; ".join(parts) if parts else ""

    def _threshold(self, level: int) -> Threshold:
        return next(th for th in self.channel.thresholds if th.level == level)

    def _refresh_due(self, condition: str, t: float) -> bool:
        last = self.last_update.get(condition)
        return last is None or t - last >= UPDATE_S

    def _refresh(
        self, out: list[Observation], condition: str, level: int, t: float, value: float, fc: Forecast | None
    ) -> None:
        """Every UPDATE_S of an active condition: fresher value, rate and forecast (no notification)."""
        if not self._refresh_due(condition, t):
            return
        self.last_update[condition] = t
        th = self._threshold(level) if condition == wa.LEVEL else None
        out.append(
            self._obs(
                condition,
                level,
                t,
                "",
                level_name=th.name if th else "",
                level_name_ja=th.name_ja if th else "",
                threshold=th.value if th else None,
                value=value,
                rate=self.rate,
                rate_unit=self.channel.rate.unit if self.channel.rate and self.rate is not None else "",
                forecast=fc,
                update=True,
            )
        )

    def _rate_levels(self, out: list[Observation], t: float, value: float) -> None:
        tracker, rc = self.rate_levels, self.channel.rate
        assert tracker is not None and rc is not None
        danger = self._danger_rate(value)
        previous = tracker.level
        new = tracker.update(t, danger)
        if new == previous:
            return
        ths = {th.level: th for th in rc.thresholds}
        shown = f"{fmt(danger)} {rc.unit} (over {span(rc.window_s)})"
        if new > previous:
            th = ths[new]
            reason = f"{self.where}: {self.kind} moving {shown}, past {label(th.name, th.name_ja)} "
            reason += f"({fmt(th.value)} {rc.unit}), level {new}"
        else:
            left = ths[previous]
            reason = f"{self.where}: {self.kind} moving {shown}, below {label(left.name, left.name_ja)} "
            reason += f"({fmt(left.value)} {rc.unit})" + (", resolved" if new == 0 else f", now level {new}")
        th_new = ths.get(new)
        out.append(
            self._obs(
                wa.RATE,
                new,
                t,
                reason,
                level_name=th_new.name if th_new else "",
                level_name_ja=th_new.name_ja if th_new else "",
                threshold=th_new.value if th_new else None,
                value=value,
                rate=danger,
                rate_unit=rc.unit,
            )
        )

    def _snow(self, out: list[Observation], t: float) -> None:
        tracker, road, snow = self.snow_levels, self.road, self.snow
        assert tracker is not None and road is not None and snow is not None
        end = snow.hour_end
        if end is None:
            return
        total = snow.totals().get(road.window_h, 0.0)
        previous = tracker.level
        new = tracker.update(end, total)
        if new == previous:
            return
        what = f"{fmt(total)} cm of new snow in {road.window_h} h (to {clock(end, self.tz)})"
        rule = f"{label(road.name, road.name_ja)} ({fmt(road.new_snow_cm)} cm)"
        if new:
            reason = f"{self.where}: {what} reached {rule}"
        else:
            reason = f"{self.where}: {what}, below {rule}, resolved"
        out.append(
            self._obs(
                wa.SNOW_DISPATCH,
                new,
                t,
                reason,
                level_name=road.name if new else "",
                level_name_ja=road.name_ja if new else "",
                threshold=road.new_snow_cm if new else None,
                value=total,
            )
        )

    def _failure(self, out: list[Observation], t: float, value: float) -> None:
        iv, tracker, ff = self.iv, self.failure_levels, self.channel.failure_forecast
        assert iv is not None and tracker is not None and ff is not None
        if self._failure_fitted_at is not None and t - self._failure_fitted_at < FAILURE_EVERY_S:
            return
        self._failure_fitted_at = t
        self.failure = iv.forecast(t)
        ttf = self.failure.t_failure - t if self.failure is not None else math.inf
        previous = tracker.level
        new = tracker.update(t, ttf)
        fc = None
        if self.failure is not None:
            f = self.failure
            fc = Forecast("failure", _ts(f.t_failure), _ts(f.earliest), _ts(f.latest))
        if new == previous:
            if new and fc is not None:
                self._refresh(out, wa.FAILURE_FORECAST, new, t, value, fc)
            return
        if new and fc is not None and self.failure is not None:
            reason = (
                f"{self.where}: {self.kind} accelerating ({fmt(self.failure.velocity_per_day)} "
                f"{self.channel.unit}/day); inverse-velocity " + forecast_text(fc, self.tz, "failure", _ts(t))
            )
        else:
            reason = f"{self.where}: {self.kind} no longer forecast to fail ({iv.refused}), resolved"
        out.append(
            self._obs(
                wa.FAILURE_FORECAST,
                new,
                t,
                reason,
                level_name=ff.name if new else "",
                level_name_ja=ff.name_ja if new else "",
                value=value,
                forecast=fc if new else None,
            )
        )

    # --- maintenance conditions ---

    def _set(
        self,
        out: list[Observation],
        condition: str,
        level: int,
        t: float,
        reason: object,
        value: float | None = None,
    ) -> None:
        """Set a 0/1 maintenance condition; `reason` is a callable, built only on a change."""
        if self.maint.get(condition, 0) == level:
            return
        self.maint[condition] = level
        text = reason() if callable(reason) else str(reason)
        if level == 0:
            text += ", resolved" if not text.endswith("resolved") else ""
        out.append(self._obs(condition, level, t, text, value=value, level_name=condition if level else ""))

    def _out_of_range(self, out: list[Observation], t: float, value: float) -> None:
        lo, hi = self.channel.range or (-math.inf, math.inf)
        self._set(
            out,
            wa.OUT_OF_RANGE,
            1,
            t,
            lambda: (
                f"{self._name()}: {fmt(value)} {self.channel.unit} outside its physical range "
                f"[{fmt(lo)}, {fmt(hi)}]; not stored"
            ),
            value=value,
        )

    def _clear_suspect(self, out: list[Observation], t: float) -> None:
        if self.maint.get(wa.SUSPECT_DATA) and (
            self.last_suspect is None or t - self.last_suspect >= SUSPECT_CLEAR_S
        ):
            self._set(
                out,
                wa.SUSPECT_DATA,
                0,
                t,
                lambda: f"{self._name()}: no suspect value for {span(SUSPECT_CLEAR_S)}",
            )

    def _name(self) -> str:
        return f"{self.sensor.id} {self.kind} ({self.where})"

    # --- storage ---

    def snapshot(self, t: float) -> Snapshot:
        snow = self.snow.totals() if self.snow is not None and self.snow.hour_end is not None else None
        c, f = self.crossing, self.failure
        return Snapshot(
            t=t,
            rate=self.rate,
            rate_unit=self.channel.rate.unit if self.channel.rate else "",
            next_level=self.crossing_level,
            next_level_eta=c.eta if c else None,
            next_level_earliest=c.earliest if c else None,
            next_level_latest=c.latest if c else None,
            new_snow=snow,
            failure_time=f.t_failure if f else None,
            failure_earliest=f.earliest if f else None,
            failure_latest=f.latest if f else None,
            velocity_per_day=f.velocity_per_day if f else None,
        )
