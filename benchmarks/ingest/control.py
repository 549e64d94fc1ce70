"""Saturation without overflow: how many messages the publishers keep waiting for the subject.

The backlog the publishers keep at the broker is `--backlog-seconds` of the subject's own pace (at
least BACKLOG_FLOOR messages, at most `--backlog-cap`), refilled once it halves: enough to keep the
subject busy across the fraction of a second the control loop lags, little enough that the drain
after the window is short and the broker stays far below its max_queued_messages.
"""

from __future__ import annotations

from typing import Protocol

BACKLOG_FLOOR = 5000
RATE_SMOOTHING = 0.3
CONTROL_STEP = 0.25  # seconds between two looks at the backlog


class Switch(Protocol):
    """A threading or multiprocessing Event: set while the publishers must wait."""

    def set(self) -> None: ...

    def clear(self) -> None: ...

    def is_set(self) -> bool: ...


class BacklogControl:
    """Pauses the publishers while the subject has more than `seconds` of its own work waiting (at
    least BACKLOG_FLOOR messages, at most `cap`), and lets them go again once that has halved.

    `waiting` is what was published and not yet processed: from the subject's counter when it has
    one (current), else the broker's $SYS count of held messages (up to a second old)."""

    def __init__(self, pause: Switch, seconds: float, cap: int) -> None:
        self.pause = pause
        self.seconds = seconds
        self.cap = cap
        self.taking = 0.0  # messages/s the subject takes, smoothed
        self._last: tuple[float, int, int] | None = None  # (t, published, waiting) a second ago

    def update(self, t: float, published: int, waiting: int) -> None:
        if self._last is None:
            self._last = (t, published, waiting)
        elif t - self._last[0] >= 1.0:
            t0, published0, waiting0 = self._last
            taken = (published - published0) - (waiting - waiting0)  # came in minus piled up
            rate = max(0.0, taken / (t - t0))
            self.taking = (1 - RATE_SMOOTHING) * self.taking + RATE_SMOOTHING * rate
            self._last = (t, published, waiting)
        limit = min(self.cap, max(BACKLOG_FLOOR, int(self.seconds * self.taking)))
        if waiting > limit:
            self.pause.set()
        elif waiting < limit // 2:
            self.pause.clear()
