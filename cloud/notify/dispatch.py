"""Delivery of alert events to every notifier that accepts them, without ever blocking the caller.

    submit(alert) --(accepts?)--> one bounded deque per notifier --> one worker thread each
                                                                     send(); retry with backoff

Why one thread and one queue per notifier: a mail relay that hangs for its 30 s timeout, or is
down for an hour, must delay neither ingestion (submit returns at once) nor the webhook next to
it.  Within a notifier, events are delivered in the order submitted, one at a time, so the
`raised`, `escalated`, `resolved` of an episode arrive in that order; a failing event holds back
the ones behind it while it is retried.

Retries: after a failed attempt the worker waits `retry_initial_s`, doubling per consecutive
failure of that notifier up to `retry_max_s`, and at least the server's Retry-After.  The count
carries over from event to event until a delivery succeeds, so a notifier that is down is tried
at a slow, steady pace instead of every event starting again from the shortest wait.  An event
is given up when its error is permanent (NotifyError.permanent) or when it has waited
`give_up_after_s` since it was submitted (it still gets one attempt; a six-hour-old "raised" is
no longer news, and the episode's later events carry the current state).

A full queue (`max_pending`, when a notifier has been down for a long time) drops its oldest
maintenance event first, then its oldest event: disaster alerts are what must get through.

Logging follows the "once when it breaks, once when it recovers" rule: a notifier that starts
failing logs one error, then nothing per retry until a delivery succeeds again, which logs one
line.  Events given up are logged each (each is a notification nobody received).  Only notifier
ids and NotifyError messages are logged; channels keep secrets out of those (base.safe_target).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cloud.notify.base import Notifier, NotifyError
from wire.alerts import Alert

log = logging.getLogger(__name__)

DROP_LOG_INTERVAL_S = 60.0  # a full queue logs at most this often


@dataclass
class NotifierStats:
    sent: int = 0  # events delivered
    attempts_failed: int = 0  # failed attempts, retried or not
    given_up: int = 0  # events abandoned: permanent error or too old
    dropped: int = 0  # events pushed out of a full queue, or left at shutdown
    pending: int = 0  # events queued or being delivered
    last_error: str = ""


@dataclass
class _Item:
    alert: Alert
    submitted: float  # time.monotonic()


class _Channel:
    """One notifier's queue, worker and counters; everything mutable is guarded by `cond`."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.id = notifier.id
        self.cond = threading.Condition()
        self.queue: deque[_Item] = deque()
        self.in_flight = False
        self.stats = NotifierStats()
        self.failing = False  # between the first failure and the next success: log quietly
        self.consecutive_failures = 0  # drives the backoff; reset by a success
        self.last_drop_log = -math.inf
        self.drops_unlogged = 0
        self.filter_error_logged = False
        self.unexpected_error_logged = False
        self.thread: threading.Thread | None = None


class Dispatcher:
    def __init__(
        self,
        notifiers: Sequence[Notifier],
        *,
        max_pending: int = 1000,
        retry_initial_s: float = 2.0,
        retry_max_s: float = 300.0,
        give_up_after_s: float = 6 * 3600.0,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        if not 0 < retry_initial_s <= retry_max_s:
            raise ValueError("need 0 < retry_initial_s <= retry_max_s")
        if give_up_after_s <= 0:
            raise ValueError("give_up_after_s must be positive")
        ids = [n.id for n in notifiers]
        if len(set(ids)) != len(ids):
            raise ValueError(f"notifier ids must be unique: {ids}")
        self.max_pending = max_pending
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.give_up_after_s = give_up_after_s
        self._channels = [_Channel(n) for n in notifiers]
        self._started = False
        self._closing = False  # close() called: accept nothing new, drain until the deadline
        self._close_deadline = math.inf  # time.monotonic() by which workers stop
        self._rejected_logged = False

    # -- caller side -------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        for ch in self._channels:
            ch.thread = threading.Thread(target=self._work, args=(ch,), name=f"notify-{ch.id}", daemon=True)
            ch.thread.start()

    def submit(self, alert: Alert) -> None:
        """Queue `alert` for every notifier that accepts it.  Never blocks, never raises."""
        now = time.monotonic()
        for ch in self._channels:
            try:
                self._enqueue(ch, alert, now)
            except Exception:  # a bug here must break neither the caller nor the other notifiers
                log.exception("notifier %r: submit failed for alert %s", ch.id, getattr(alert, "id", "?"))

    def stats(self) -> dict[str, NotifierStats]:
        out: dict[str, NotifierStats] = {}
        for ch in self._channels:
            with ch.cond:
                out[ch.id] = replace(ch.stats, pending=len(ch.queue) + int(ch.in_flight))
        return out

    def close(self, timeout: float) -> None:
        """Deliver what is pending for up to `timeout` seconds, then stop the workers.

        Events still undelivered then are counted as dropped and logged.  A worker stuck inside
        a send() is a daemon thread bounded by its channel's timeout; it is not waited for."""
        deadline = time.monotonic() + max(0.0, timeout)
        self._closing = True
        for ch in self._channels:
            with ch.cond:
                self._close_deadline = deadline
                ch.cond.notify_all()
        for ch in self._channels:
            if ch.thread is not None:
                ch.thread.join(max(0.0, deadline - time.monotonic()))
        for ch in self._channels:
            with ch.cond:
                left = len(ch.queue) + int(ch.in_flight)
                ch.stats.dropped += len(ch.queue)
                ch.queue.clear()
            if left:
                log.warning("notifier %r: %d alert event(s) not delivered at shutdown", ch.id, left)

    # -- queue -------------------------------------------------------------------------------

    def _enqueue(self, ch: _Channel, alert: Alert, now: float) -> None:
        try:
            wanted = ch.notifier.accepts(alert)
        except Exception:
            if not ch.filter_error_logged:
                ch.filter_error_logged = True
                log.exception("notifier %r: accepts() failed; alert %s not queued", ch.id, alert.id)
            return
        if not wanted:
            return
        if self._closing:
            with ch.cond:
                ch.stats.dropped += 1
            if not self._rejected_logged:
                self._rejected_logged = True
                log.warning("notifier dispatch is closing: alert %s (%s) not queued", alert.id, alert.event)
            return
        with ch.cond:
            if len(ch.queue) >= self.max_pending:
                self._drop_one(ch, now)
            ch.queue.append(_Item(alert, now))
            ch.cond.notify()

    def _drop_one(self, ch: _Channel, now: float) -> None:
        """Make room: the oldest maintenance event, else the oldest event.  Holds ch.cond."""
        victim = next((i for i, item in enumerate(ch.queue) if item.alert.category != "disaster"), 0)
        item = ch.queue[victim]
        del ch.queue[victim]
        ch.stats.dropped += 1
        ch.drops_unlogged += 1
        if now - ch.last_drop_log >= DROP_LOG_INTERVAL_S:
            log.warning(
                "notifier %r: %d events waiting, queue full; dropped %d event(s), latest %s (%s, %s)",
                ch.id,
                len(ch.queue),
                ch.drops_unlogged,
                item.alert.id,
                item.alert.category,
                item.alert.event,
            )
            ch.last_drop_log = now
            ch.drops_unlogged = 0

    # -- worker ------------------------------------------------------------------------------

    def _work(self, ch: _Channel) -> None:
        while True:
            with ch.cond:
                while not ch.queue and not self._closing:
                    ch.cond.wait()
                if not ch.queue or time.monotonic() >= self._close_deadline:
                    return
                item = ch.queue.popleft()
                ch.in_flight = True
            try:
                self._deliver(ch, item)
            finally:
                with ch.cond:
                    ch.in_flight = False

    def _deliver(self, ch: _Channel, item: _Item) -> None:
        """Send `item` until delivered, given up, or the dispatcher stops."""
        alert = item.alert
        while True:
            error = self._attempt(ch, alert)
            if error is None:
                return
            age = time.monotonic() - item.submitted
            if error.permanent:
                self._give_up(ch, alert, f"permanent error: {error.message}")
                return
            if age >= self.give_up_after_s:
                self._give_up(ch, alert, f"still failing after {age:.0f} s: {error.message}")
                return
            delay = min(self.retry_max_s, self.retry_initial_s * 2 ** min(ch.consecutive_failures - 1, 60))
            if error.retry_after is not None:
                delay = max(delay, error.retry_after)
            delay = min(delay, self.give_up_after_s - age)  # the last attempt falls on the deadline
            if not self._wait(ch, time.monotonic() + delay):
                with ch.cond:
                    ch.stats.dropped += 1
                return

    def _attempt(self, ch: _Channel, alert: Alert) -> NotifyError | None:
        try:
            ch.notifier.send(alert)
        except NotifyError as exc:
            error = exc
        except Exception as exc:  # a channel bug: retry like a transient error, traceback once
            if not ch.unexpected_error_logged:
                ch.unexpected_error_logged = True
                log.error("notifier %r: send() raised %s", ch.id, exc.__class__.__name__, exc_info=True)
            error = NotifyError(f"{exc.__class__.__name__}: {exc}")
        else:
            with ch.cond:
                ch.stats.sent += 1
                recovered, ch.failing = ch.failing, False
                failures, ch.consecutive_failures = ch.consecutive_failures, 0
            if recovered:
                log.info("notifier %r: delivering again (after %d failed attempt(s))", ch.id, failures)
            return None
        with ch.cond:
            ch.stats.attempts_failed += 1
            ch.stats.last_error = error.message
            # A permanent error is about this event (logged when given up), not the channel's health.
            first = not error.permanent and not ch.failing
            if not error.permanent:
                ch.consecutive_failures += 1
                ch.failing = True
        if first:
            log.error(
                "notifier %r: delivery failing: %s (retrying with backoff; logged again when it recovers)",
                ch.id,
                error.message,
            )
        return error

    def _give_up(self, ch: _Channel, alert: Alert, why: str) -> None:
        with ch.cond:
            ch.stats.given_up += 1
        log.error("notifier %r: gave up alert %s (%s): %s", ch.id, alert.id, alert.event, why)

    def _wait(self, ch: _Channel, until: float) -> bool:
        """Sleep until `until`; False when the dispatcher's close deadline comes first."""
        with ch.cond:
            while True:
                now = time.monotonic()
                if now >= self._close_deadline:
                    return False
                if now >= until:
                    return True
                ch.cond.wait(min(until, self._close_deadline) - now)
