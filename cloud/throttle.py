"""Per-gateway flood guard: one gateway sending garbage must not slow the others.

Each gateway (the `tenant/gateway` of the topic, which the broker's ACL ties to its
credentials) has a bucket of `bad_burst` rejections refilled at `bad_per_s`.  A gateway that
empties it is **throttled**: from then on only `throttled_per_s` of its messages are read; the
rest are rejected unread as `rate_limited` (counted, acknowledged, and sampled into the
quarantine at most once per second per gateway with the number skipped).  Reading a message is
the expensive part (decoding, validation, quarantine writes); skipping one costs a dictionary
lookup.  The throttle lifts once the gateway's bucket has refilled to half.

While throttled the gateway's valid messages are skipped too: its sequence accounting then shows
them as lost, which is the honest account.  A healthy gateway never comes near: the edge agent
sends valid messages, and the default budget is 200 rejections at once, 20 per second.

The consumer asks `admit()` when a message's turn comes on the worker, not when it arrives: a
flood is queued long before its first messages are found bad.  The lock is for stats readers.
The table holds at most MAX_GATEWAYS entries (least recently seen dropped), so messages on
made-up topics cannot grow it without bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_GATEWAYS = 100_000
SAMPLE_EVERY_S = 1.0


@dataclass(slots=True)
class _Bucket:
    bad_tokens: float
    updated: float
    throttled: bool = False
    read_tokens: float = 0.0
    skipped: int = 0  # rejected unread since the last quarantine sample
    skipped_total: int = 0
    last_sample: float = -1e18


class FloodGuard:
    def __init__(
        self,
        bad_per_s: float,
        bad_burst: int,
        throttled_per_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bad_per_s = bad_per_s
        self.bad_burst = float(bad_burst)
        self.throttled_per_s = throttled_per_s
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, gateway: str) -> bool:
        """Should this message be read?  False: reject it unread (the gateway is flooding)."""
        with self._lock:
            b = self._buckets.get(gateway)
            if b is None or not b.throttled:
                return True
            now = self.clock()
            self._refill(gateway, b, now)
            if not b.throttled:
                return True
            if b.read_tokens >= 1.0:
                b.read_tokens -= 1.0
                return True
            b.skipped += 1
            b.skipped_total += 1
            return False

    def rejected(self, gateway: str) -> None:
        """A message (or reading) of this gateway was read and rejected."""
        with self._lock:
            now = self.clock()
            b = self._buckets.get(gateway)
            if b is None:
                b = self._buckets[gateway] = _Bucket(self.bad_burst, now)
                while len(self._buckets) > MAX_GATEWAYS:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(gateway)
                self._refill(gateway, b, now)
            b.bad_tokens -= 1.0
            if b.bad_tokens < 0 and not b.throttled:
                b.throttled = True
                b.bad_tokens = 0.0
                b.read_tokens = self.throttled_per_s
                log.warning(
                    "gateway %s floods bad messages (over %d at %.0f/s): reading only %.0f of its "
                    "messages per second until it stops; the rest are rejected as rate_limited",
                    gateway,
                    self.bad_burst,
                    self.bad_per_s,
                    self.throttled_per_s,
                )

    def sample(self, gateway: str) -> int:
        """For the quarantine: how many messages were skipped since the last sample, once per
        SAMPLE_EVERY_S per gateway (0: do not write an entry now)."""
        with self._lock:
            b = self._buckets.get(gateway)
            if b is None or not b.skipped:
                return 0
            now = self.clock()
            if now - b.last_sample < SAMPLE_EVERY_S:
                return 0
            n, b.skipped, b.last_sample = b.skipped, 0, now
            return n

    def throttled(self) -> int:
        with self._lock:
            return sum(1 for b in self._buckets.values() if b.throttled)

    def _refill(self, gateway: str, b: _Bucket, now: float) -> None:
        dt = max(0.0, now - b.updated)
        b.updated = now
        b.bad_tokens = min(self.bad_burst, b.bad_tokens + dt * self.bad_per_s)
        if b.throttled:
            b.read_tokens = min(max(1.0, self.throttled_per_s), b.read_tokens + dt * self.throttled_per_s)
            if b.bad_tokens >= self.bad_burst / 2:
                b.throttled = False
                log.info("gateway %s no longer floods: reading all its messages again", gateway)
