"""Security events from the broker (failed logins, TLS failures, ACL denials), counted and
logged by the consumer so that an attack on the broker shows up where operators look.

The broker is where a stolen or revoked gateway's login fails; Mosquitto only writes it to its
log.  cloud.brokerlog follows that log; this module keeps the counts by kind for /metrics and
the health points, and logs each event with its source, at most once a minute per source and
kind (a brute-force attempt must not flood the consumer's log), with the number left unsaid.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path

from cloud.brokerlog import BrokerLogFollower, SecurityEvent

log = logging.getLogger(__name__)

LOG_EVERY_S = 60.0
MAX_SOURCES = 10_000  # rate-limit entries kept; beyond, the oldest are forgotten


class BrokerSecurity:
    def __init__(self, broker_log: Path, *, from_start: bool = False) -> None:
        self._lock = threading.Lock()
        self._by_kind: Counter[str] = Counter()
        self._last_logged: dict[tuple[str, str], tuple[float, int]] = {}  # -> (time, suppressed)
        self._follower = BrokerLogFollower(broker_log, self.record, from_start=from_start)

    def start(self) -> None:
        log.info("following the broker's log %s for failed logins and ACL denials", self._follower.path)
        self._follower.start()

    def stop(self) -> None:
        self._follower.stop()

    def by_kind(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_kind)

    def record(self, event: SecurityEvent) -> None:
        key = (event.kind, event.source.rsplit(":", 1)[0] or event.client_id or event.username)
        now = time.monotonic()
        with self._lock:
            self._by_kind[event.kind] += 1
            last = self._last_logged.get(key)
            if last is not None and now - last[0] < LOG_EVERY_S:
                self._last_logged[key] = (last[0], last[1] + 1)
                return
            suppressed = last[1] if last is not None else 0
            self._last_logged.pop(key, None)
            self._last_logged[key] = (now, 0)
            if len(self._last_logged) > MAX_SOURCES:
                del self._last_logged[next(iter(self._last_logged))]
        more = f" (and {suppressed} more like it in the last minute)" if suppressed else ""
        log.warning("security: broker %s%s", event.describe(), more)
