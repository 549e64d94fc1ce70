"""Alert lifecycle: acks and resolves from the CLI side of the store, reminders, handovers,
maintenance windows, and state surviving a restart."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cloud.alerts.manager import AlertManager, Escalation
from cloud.alerts.store import AlertStore, AlertStoreError
from cloud.detect.observation import AlertKey, Observation
from wire.alerts import Alert

T = 1_768_000_000.0
KEY = AlertKey("city", "level", "radar", "river_level", "gw01")


def obs(
    level: int, t: float = T, key: AlertKey = KEY, *, update: bool = False, value: float = 2.5
) -> Observation:
    return Observation(
        key,
        level,
        datetime.fromtimestamp(t, UTC),
        f"level {level}",
        site="bridge",
        site_name="旭橋",
        gateway="gw01",
        level_name=f"L{level}" if level else "",
        value=value,
        unit="m",
        update=update,
    )


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[Alert, bool]] = []

    def __call__(self, alert: Alert, notify: bool) -> None:
        self.sent.append((alert, notify))

    @property
    def events(self) -> list[tuple[str, int, bool]]:
        return [(a.event, a.notify_tier, n) for a, n in self.sent]


def manager(path: Path | str = ":memory:", **kw: Escalation | int) -> tuple[AlertManager, Sink]:
    sink = Sink()
    return AlertManager(AlertStore(path), sink, **kw), sink  # type: ignore[arg-type]


def test_reminder_then_handover_until_acknowledged(tmp_path: Path) -> None:
    mgr, sink = manager(
        tmp_path / "a.db", disaster=Escalation(renotify_after_s=600, escalate_after_s=1800), max_tier=1
    )
    mgr.observe(obs(2), T)
    for minutes in (5, 10, 20, 30, 40):
        mgr.tick(T + minutes * 60)
    assert sink.events == [
        ("raised", 0, True),
        ("reminder", 0, True),  # 10 min
        ("reminder", 0, True),  # 20 min
        ("handover", 1, True),  # 30 min: to tier 1
        ("reminder", 1, True),  # 40 min
    ]
    # The CLI (another process) records an ack; the manager carries it out on its next tick.
    cli = AlertStore(tmp_path / "a.db")
    episode_id = sink.sent[0][0].id
    cli.request(episode_id[:8], "ack", "sato")
    mgr.tick(T + 41 * 60)
    last = sink.sent[-1][0]
    assert (last.event, last.status, last.acked_by) == ("acknowledged", "acknowledged", "sato")
    mgr.tick(T + 90 * 60)
    assert sink.sent[-1][0].event == "acknowledged"  # no reminders once acknowledged
    with pytest.raises(AlertStoreError, match="already acknowledged"):
        cli.request(episode_id, "ack", "suzuki")
    # An escalation is news: it clears the acknowledgement and notifies again.
    mgr.observe(obs(3, T + 95 * 60), T + 95 * 60)
    esc = sink.sent[-1][0]
    assert (esc.event, esc.status, esc.acked_by, esc.peak_level) == ("escalated", "active", "", 3)


def test_resolve_by_hand_and_the_condition_persisting(tmp_path: Path) -> None:
    mgr, sink = manager(tmp_path / "a.db")
    mgr.observe(obs(2), T)
    AlertStore(tmp_path / "a.db").request(sink.sent[0][0].id, "resolve", "sato")
    mgr.tick(T + 1)
    resolved = sink.sent[-1][0]
    assert (resolved.event, resolved.status, resolved.resolved_by, resolved.level) == (
        "resolved",
        "resolved",
        "sato",
        0,
    )
    mgr.observe(obs(2, T + 60, update=True), T + 60)  # same level: nothing new
    mgr.observe(obs(0, T + 120), T + 120)  # clears: nothing to resolve
    assert len(sink.sent) == 2
    mgr.observe(obs(3, T + 180), T + 180)  # higher again: a new episode
    assert sink.sent[-1][0].event == "raised" and sink.sent[-1][0].id != resolved.id


def test_updates_refresh_the_stored_alert_silently() -> None:
    mgr, sink = manager(disaster=Escalation(renotify_after_s=600))
    mgr.observe(obs(1, value=2.1), T)
    mgr.observe(obs(1, T + 300, update=True, value=2.4), T + 300)
    assert len(sink.sent) == 1
    mgr.tick(T + 600)
    assert sink.sent[-1][0].event == "reminder" and sink.sent[-1][0].value == 2.4


def test_maintenance_window_silences_then_notifies_what_is_still_open(tmp_path: Path) -> None:
    mgr, sink = manager(tmp_path / "a.db")
    mgr.store.add_window("city", T - 60, T + 3600, site="bridge", reason="gauge calibration")
    other = AlertKey("city", "level", "snow", "snow_depth", "gw01")
    mgr.observe(obs(2), T)
    o = obs(1, key=other)
    mgr.observe(Observation(o.key, 1, o.ts, "snow", site="route12", gateway="gw01"), T)
    assert [(a.sensor, a.silenced, n) for a, n in sink.sent] == [
        ("radar", True, False),
        ("snow", False, True),
    ]
    mgr.tick(T + 1800)
    assert len(sink.sent) == 2
    mgr.tick(T + 3600 + 10)  # window over, the river alert is still open: notify it now
    assert (sink.sent[-1][0].sensor, sink.sent[-1][0].event, sink.sent[-1][1]) == ("radar", "reminder", True)


def test_state_survives_a_restart(tmp_path: Path) -> None:
    mgr, sink = manager(tmp_path / "a.db")
    mgr.observe(obs(2), T)
    mgr.store.close()
    again, sink2 = manager(tmp_path / "a.db")
    assert again.active_levels() == [(KEY, 2)]
    again.observe(obs(2, T + 60), T + 60)  # same level after the restart: no second raise
    again.observe(obs(0, T + 120), T + 120)
    assert [(a.event, a.id) for a, _ in sink2.sent] == [("resolved", sink.sent[0][0].id)]


def test_maintenance_alerts_get_no_reminders_by_default() -> None:
    mgr, sink = manager(disaster=Escalation(renotify_after_s=60))
    key = AlertKey("city", "flatline", "radar", "river_level", "gw01")
    mgr.observe(obs(1, key=key), T)
    mgr.tick(T + 3600)
    assert sink.events == [("raised", 0, True)]
    assert sink.sent[0][0].category == "maintenance"


def test_unknown_alert_id_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AlertStoreError, match="no alert 'nope'"):
        AlertStore(tmp_path / "a.db").request("nope", "ack", "sato")
