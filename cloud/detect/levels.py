"""Threshold levels with hysteresis and minimum duration, for one series.

For a value v and a threshold T of a channel (direction rising: v >= T; falling: v <= T;
absolute: |v| >= T):

- a level is *entered* once every sample for `min_duration_s` has reached its threshold (0: at
  once; the quality checks deal with spikes, this is against noise riding on a value right at a
  threshold);
- it is *left* when the value is back past the threshold by more than `clear_margin` (at once),
  or has stayed short of the threshold itself for `clear_hold_s` (if set), to the highest level
  still held.

A value hovering at a threshold therefore raises once and does not flap.  The same tracker serves
river stage (m), snow depth (cm), tilt (deg), rates (mm/day) and new snowfall (cm).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Direction = Literal["rising", "falling", "absolute"]


class LevelTracker:
    def __init__(
        self,
        thresholds: Sequence[tuple[int, float]],  # (level, threshold value), levels ascending
        direction: Direction = "rising",
        clear_margin: float = 0.0,
        min_duration_s: float = 0.0,
        clear_hold_s: float | None = None,
    ) -> None:
        self.thresholds = sorted(thresholds)
        self.direction = direction
        self.clear_margin = clear_margin
        self.min_duration_s = min_duration_s
        self.clear_hold_s = clear_hold_s
        self.level = 0
        self._reached_since: dict[int, float] = {}  # level -> start of the unbroken run reaching it
        self._short_since: float | None = None  # start of the run short of the current threshold

    def reached(self, value: float, margin: float = 0.0) -> int:
        """Highest level whose threshold `value` reaches, `margin` counted in the safe direction."""
        level = 0
        for lvl, t in self.thresholds:
            if self.direction == "rising":
                hit = value >= t - margin
            elif self.direction == "falling":
                hit = value <= t + margin
            else:
                hit = abs(value) >= t - margin
            if hit:
                level = lvl
        return level

    def update(self, t: float, value: float) -> int:
        """Feed one sample (time order); returns the level after it."""
        reached = self.reached(value)
        for lvl, _ in self.thresholds:
            if lvl <= reached:
                self._reached_since.setdefault(lvl, t)
            else:
                self._reached_since.pop(lvl, None)
        confirmed = 0
        for lvl, since in self._reached_since.items():
            if t - since >= self.min_duration_s:
                confirmed = max(confirmed, lvl)
        if confirmed > self.level:
            self.level = confirmed
            self._short_since = None
            return self.level
        if self.level == 0:
            return 0
        held = self.reached(value, self.clear_margin)
        if held < self.level:
            self.level = held
            self._short_since = None
            return self.level
        if reached < self.level:
            if self._short_since is None:
                self._short_since = t
            if self.clear_hold_s is not None and t - self._short_since >= self.clear_hold_s:
                self.level = reached
                self._short_since = None
        else:
            self._short_since = None
        return self.level

    def reset(self, level: int = 0) -> None:
        """Forget the history: at `level`, as if it had just been entered."""
        self.level = level
        self._reached_since.clear()
        self._short_since = None

    def threshold_of(self, level: int) -> float | None:
        return next((v for lvl, v in self.thresholds if lvl == level), None)

    def next_threshold(self) -> tuple[int, float] | None:
        """The level above the current one and its threshold, if any."""
        return next(((lvl, v) for lvl, v in self.thresholds if lvl > self.level), None)
