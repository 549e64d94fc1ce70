"""Alert outputs: what happens on each alert event.

1. append the Alert as one JSON line to the alert log (flushed at once: it is the record of what
   the duty officers were told),
2. publish it retained, QoS 1, on its episode topic (wire.topics: .../alerts/sites/... or
   .../alerts/gateways/...), so the latest state of every condition is on the broker,
3. hand its `alerts` point to the store path (never waiting for the database),
4. unless silenced by a maintenance window, hand it to the notifier dispatcher (webhook, e-mail:
   queued, retried on their own threads, never blocking this one),
5. call the registered hooks (the demo prints alerts live).

A failing step is logged and the others still run: a notifier outage must not lose the record,
and a full disk must not silence the MQTT alert.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import BinaryIO

import msgspec

from cloud import points
from cloud.alerts.manager import key_of
from wire.alerts import Alert

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]  # (topic, payload); sends retained with QoS 1
Hook = Callable[[Alert], None]


class AlertOutputs:
    def __init__(
        self,
        log_path: Path | None,
        publish: Publish | None,
        store: Callable[[list[str]], None] | None,
        hooks: list[Hook],
        notify: Hook | None = None,
    ) -> None:
        self.log_path = log_path
        self.publish = publish
        self.store = store
        self.notify = notify
        self.hooks = hooks  # the same list object as Consumer.on_alert, so late registration works
        self.count = 0
        self.failures = 0
        self._file: BinaryIO | None = None
        self._warned: set[str] = set()

    def __call__(self, alert: Alert, notify: bool) -> None:
        self.count += 1
        data = msgspec.json.encode(alert)
        self._step("alert log", lambda: self._append(data))
        if self.publish is not None:
            publish = self.publish
            topic = key_of(alert).topic(alert.site)
            self._step("MQTT publish", lambda: publish(topic, data))
        if self.store is not None:
            store = self.store
            self._step("store", lambda: store([points.alert_line(alert)]))
        if notify and self.notify is not None:
            self._step("notify", partial(self.notify, alert))
        for hook in list(self.hooks):
            self._step(f"hook {getattr(hook, '__qualname__', hook)!r}", partial(hook, alert))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _append(self, data: bytes) -> None:
        if self.log_path is None:
            return
        if self._file is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.log_path, "ab")  # noqa: SIM115 - kept open across alerts
        self._file.write(data + b"\n")
        self._file.flush()

    def _step(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            self.failures += 1
            # Traceback once per step; afterwards quietly, so a broken hook cannot flood the log.
            first = what not in self._warned
            self._warned.add(what)
            log.log(logging.WARNING if first else logging.DEBUG, "alert %s failed", what, exc_info=True)
