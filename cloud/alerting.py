"""Alerting: what happens on each alert state change.

1. append the Alert as one JSON line to the alert log (flushed at once: it is the record of what
   the duty officers were told),
2. publish it retained, QoS 1, on bosai/v1/{tenant}/alerts/{site}/{sensor}/{kind},
3. hand its `alerts` point to the store path (never waiting for the database),
4. call the registered hooks (the demo prints alerts live; webhook/e-mail notifiers come later).

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
from wire import topics
from wire.alerts import Alert

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]  # (topic, payload); sends retained with QoS 1
Hook = Callable[[Alert], None]


class Alerting:
    def __init__(
        self,
        log_path: Path | None,
        publish: Publish | None,
        store: Callable[[list[str]], None],
        hooks: list[Hook],
    ) -> None:
        self.log_path = log_path
        self.publish = publish
        self.store = store
        self.hooks = hooks  # the same list object as Consumer.on_alert, so late registration works
        self.count = 0
        self.failures = 0
        self._file: BinaryIO | None = None
        self._warned: set[str] = set()

    def handle(self, alert: Alert) -> None:
        self.count += 1
        data = msgspec.json.encode(alert)
        self._step("alert log", lambda: self._append(data))
        if self.publish is not None:
            publish = self.publish
            topic = topics.alert(alert.tenant, alert.site, alert.sensor, alert.kind)
            self._step("MQTT publish", lambda: publish(topic, data))
        self._step("store", lambda: self.store([points.alert_line(alert)]))
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
