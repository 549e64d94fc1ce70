"""Alert lifecycle: detection's observations in, episode events out.

One episode per condition key (wire.alerts explains the events).  Rules:
- raised / escalated / deescalated / resolved follow the observed level; an escalation clears an
  acknowledgement (there is news to look at) and restarts the handover clock;
- a disaster alert not acknowledged is re-sent every `renotify_after` (reminder) and handed over
  to the next recipients tier every `escalate_after` (handover), up to the highest tier that has a
  notifier; maintenance alerts by default do neither;
- a duty officer acknowledges or resolves by hand (`bosai alerts ack|resolve`, via the store);
  a condition resolved by hand that persists raises a new episode only when its level rises;
- inside a maintenance window (site, sensor or gateway) events are recorded, logged, stored and
  published on MQTT but not notified; when the window ends, episodes still open are notified;
- detail updates (same level, fresher value/forecast) refresh the stored alert silently, so a
  reminder carries the latest figures.

`emit(alert, notify)` does the outputs (cloud.alerts.outputs).  Times: `now` is clock time for the
consumer and data time for replay, so episodes replay deterministically.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from cloud.alerts.store import AlertStore, Episode, MaintenanceWindow
from cloud.detect.observation import AlertKey, Observation
from wire.alerts import Alert, AlertEvent, AlertStatus

log = logging.getLogger(__name__)

Emit = Callable[[Alert, bool], None]
WINDOWS_REFRESH_S = 5.0


@dataclass(frozen=True)
class Escalation:
    renotify_after_s: float | None = None
    escalate_after_s: float | None = None


def key_of(alert: Alert) -> AlertKey:
    return AlertKey(alert.tenant, alert.condition, alert.sensor, alert.kind, alert.gateway)


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class AlertManager:
    def __init__(
        self,
        store: AlertStore,
        emit: Emit,
        *,
        disaster: Escalation = Escalation(),
        maintenance: Escalation = Escalation(),
        max_tier: int = 0,
        links: Callable[[Alert], list[str]] | None = None,
    ) -> None:
        self.store = store
        self.emit = emit
        self.policy = {"disaster": disaster, "maintenance": maintenance}
        self.max_tier = max_tier
        self.links = links
        self.events = 0
        self._windows: list[MaintenanceWindow] = []
        self._windows_at: float | None = None

    def active_levels(self) -> list[tuple[AlertKey, int]]:
        return [(key_of(ep.alert), ep.level) for ep in self.store.unresolved()]

    # --- detection in ---

    def observe(self, obs: Observation, now: float) -> None:
        ep = self.store.open_episode(obs.key.as_text())
        if ep is None:
            if obs.level > 0 and not obs.update:
                self._raise(obs, now)
            return
        if obs.update:
            ep.alert = msgspec.structs.replace(
                ep.alert, value=obs.value, rate=obs.rate, rate_unit=obs.rate_unit, forecast=obs.forecast
            )
            self.store.save(ep)
            return
        if obs.level == ep.level:
            return
        event: AlertEvent
        status: AlertStatus = ep.status  # type: ignore[assignment]
        if obs.level == 0:
            event, status = "resolved", "resolved"
            ep.resolved_at = now
        elif obs.level > ep.level:
            event, status = "escalated", "active"
            ep.attention_since = now
        else:
            event = "deescalated"
        previous = ep.level
        ep.level = obs.level
        ep.status = status
        ep.alert = self._alert(obs, ep, event, status, previous)
        self._send(ep, now)

    def _raise(self, obs: Observation, now: float) -> None:
        raised = obs.ts
        ep = Episode(
            id=str(uuid.uuid4()),
            key=obs.key.as_text(),
            tenant=obs.key.tenant,
            status="active",
            level=obs.level,
            raised_at=now,
            attention_since=now,
            last_notified=now,
            notify_tier=0,
            reminders=0,
            silenced=False,
            resolved_at=None,
            pending="",
            pending_by="",
            pending_at=None,
            alert=Alert(
                v=1,
                id="",
                tenant=obs.key.tenant,
                condition=obs.key.condition,
                category=obs.key.category,
                event="raised",
                status="active",
                level=obs.level,
                ts=obs.ts,
                raised_at=raised,
                reason=obs.reason,
            ),
        )
        ep.alert = self._alert(obs, ep, "raised", "active", 0)
        self._send(ep, now)

    def _alert(
        self, obs: Observation, ep: Episode, event: AlertEvent, status: AlertStatus, previous: int
    ) -> Alert:
        old = ep.alert
        cleared_ack = event == "escalated"
        alert = Alert(
            v=1,
            id=ep.id,
            tenant=obs.key.tenant,
            condition=obs.key.condition,
            category=obs.key.category,
            event=event,
            status=status,
            level=obs.level,
            ts=obs.ts,
            raised_at=old.raised_at,
            reason=obs.reason,
            site=obs.site,
            site_name=obs.site_name,
            sensor=obs.key.sensor,
            kind=obs.key.kind,
            gateway=obs.gateway or obs.key.gateway,
            level_name=obs.level_name,
            level_name_ja=obs.level_name_ja,
            threshold=obs.threshold,
            value=obs.value,
            unit=obs.unit,
            rate=obs.rate,
            rate_unit=obs.rate_unit,
            forecast=obs.forecast,
            previous_level=previous,
            peak_level=max(old.peak_level, obs.level),
            acked_by="" if cleared_ack else old.acked_by,
            acked_at=None if cleared_ack else old.acked_at,
            notify_tier=ep.notify_tier,
        )
        if self.links is not None:
            alert = msgspec.structs.replace(alert, links=self.links(alert))
        return alert

    # --- time passing, duty officers ---

    def tick(self, now: float) -> None:
        for ep in self.store.pending():
            self._carry_out(ep, now)
        windows = self._current_windows(now)
        for ep in self.store.unresolved():
            if ep.silenced and not self._silenced(ep.alert, now, windows):
                ep.silenced = False
                self._resend(ep, now, "reminder")
                continue
            if ep.status != "active" or ep.silenced:
                continue
            policy = self.policy[ep.alert.category]
            due_handover = (
                policy.escalate_after_s is not None
                and ep.notify_tier < self.max_tier
                and now - ep.attention_since >= policy.escalate_after_s * (ep.notify_tier + 1)
            )
            if due_handover:
                ep.notify_tier += 1
                self._resend(ep, now, "handover")
            elif policy.renotify_after_s is not None and now - ep.last_notified >= policy.renotify_after_s:
                ep.reminders += 1
                self._resend(ep, now, "reminder")

    def _carry_out(self, ep: Episode, now: float) -> None:
        action, by = ep.pending, ep.pending_by or "?"
        ep.pending, ep.pending_by = "", ""
        when = _dt(ep.pending_at or now)
        if ep.status == "resolved" or action not in ("ack", "resolve"):
            self.store.save(ep)
            return
        if action == "ack":
            ep.status = "acknowledged"
            ep.alert = msgspec.structs.replace(
                ep.alert, event="acknowledged", status="acknowledged", acked_by=by, acked_at=when, ts=when
            )
            log.info("alert %s acknowledged by %s", ep.id, by)
        else:
            ep.status = "resolved"
            ep.resolved_at = now
            ep.alert = msgspec.structs.replace(
                ep.alert,
                event="resolved",
                status="resolved",
                level=0,
                previous_level=ep.level,
                resolved_by=by,
                ts=when,
                reason=f"{ep.alert.reason} — resolved by hand by {by}",
            )
            ep.level = 0
            log.info("alert %s resolved by %s", ep.id, by)
        self._send(ep, now)

    def _resend(self, ep: Episode, now: float, event: AlertEvent) -> None:
        ep.alert = msgspec.structs.replace(ep.alert, event=event, notify_tier=ep.notify_tier, ts=_dt(now))
        self._send(ep, now)

    def _send(self, ep: Episode, now: float) -> None:
        if ep.alert.event in ("raised", "escalated") or not ep.silenced:
            ep.silenced = self._silenced(ep.alert, now, self._current_windows(now))
        ep.alert = msgspec.structs.replace(ep.alert, silenced=ep.silenced, notify_tier=ep.notify_tier)
        ep.last_notified = now
        self.store.save(ep)
        self.events += 1
        self.emit(ep.alert, not ep.silenced)

    # --- maintenance windows ---

    def _current_windows(self, now: float) -> list[MaintenanceWindow]:
        if self._windows_at is None or abs(now - self._windows_at) >= WINDOWS_REFRESH_S:
            self._windows = self.store.windows()
            self._windows_at = now
        return self._windows

    @staticmethod
    def _silenced(alert: Alert, t: float, windows: list[MaintenanceWindow]) -> bool:
        return any(w.covers(alert.tenant, alert.site, alert.sensor, alert.gateway, t) for w in windows)
