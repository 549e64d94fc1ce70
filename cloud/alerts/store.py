"""Alert episodes and maintenance windows in SQLite: what survives a consumer restart, and what
the duty officers' commands (`bosai alerts ...`) read and change from another process.

One row per episode; at most one unresolved episode per condition key (a partial unique index).
The CLI never publishes: it records an action (ack/resolve) and marks the row `pending`; the
running consumer picks pending rows up within a second and publishes and notifies the event, so
there is one writer of MQTT state and notifications.  If no consumer runs, the action is kept and
published when one starts.

WAL mode lets the CLI read and write beside the running consumer; every write is one short
transaction (busy_timeout covers the other side's).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from wire.alerts import Alert, alert_decoder

SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    tenant TEXT NOT NULL,
    status TEXT NOT NULL,            -- active | acknowledged | resolved
    level INTEGER NOT NULL,
    raised_at REAL NOT NULL,         -- clock time
    attention_since REAL NOT NULL,   -- raised or last escalated: handovers count from here
    last_notified REAL NOT NULL,
    notify_tier INTEGER NOT NULL DEFAULT 0,
    reminders INTEGER NOT NULL DEFAULT 0,
    silenced INTEGER NOT NULL DEFAULT 0,
    resolved_at REAL,
    pending TEXT NOT NULL DEFAULT '', -- action recorded by the CLI: 'ack' | 'resolve'
    pending_by TEXT NOT NULL DEFAULT '',
    pending_at REAL,
    alert BLOB NOT NULL              -- the latest Alert message (JSON)
);
CREATE UNIQUE INDEX IF NOT EXISTS episodes_open ON episodes(key) WHERE status != 'resolved';
CREATE INDEX IF NOT EXISTS episodes_pending ON episodes(pending) WHERE pending != '';
CREATE TABLE IF NOT EXISTS maintenance (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    site TEXT NOT NULL DEFAULT '',     -- '' = any
    sensor TEXT NOT NULL DEFAULT '',
    gateway TEXT NOT NULL DEFAULT '',
    start REAL NOT NULL,
    end REAL NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT ''
);
"""


class AlertStoreError(Exception):
    pass


@dataclass
class Episode:
    id: str
    key: str
    tenant: str
    status: str
    level: int
    raised_at: float
    attention_since: float
    last_notified: float
    notify_tier: int
    reminders: int
    silenced: bool
    resolved_at: float | None
    pending: str
    pending_by: str
    pending_at: float | None
    alert: Alert


@dataclass(frozen=True)
class MaintenanceWindow:
    id: int
    tenant: str
    site: str
    sensor: str
    gateway: str
    start: float
    end: float
    reason: str
    created_by: str

    def covers(self, tenant: str, site: str, sensor: str, gateway: str, t: float) -> bool:
        return (
            self.tenant == tenant
            and self.start <= t < self.end
            and (not self.site or self.site == site)
            and (not self.sensor or self.sensor == sensor)
            and (not self.gateway or self.gateway == gateway)
        )


_COLUMNS = (
    "id, key, tenant, status, level, raised_at, attention_since, last_notified, notify_tier, reminders, "
    "silenced, resolved_at, pending, pending_by, pending_at, alert"
)


class AlertStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise AlertStoreError(f"{path}: cannot open the alert store: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    # --- episodes ---

    def open_episode(self, key: str) -> Episode | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM episodes WHERE key = ? AND status != 'resolved'", (key,)
        ).fetchone()
        return _episode(row) if row else None

    def get(self, episode_id: str) -> Episode | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM episodes WHERE id = ?", (episode_id,)).fetchone()
        if row is None:  # the CLI accepts a unique prefix of the id, as git does
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM episodes WHERE id LIKE ? LIMIT 2", (episode_id + "%",)
            ).fetchall()
            row = rows[0] if len(rows) == 1 and len(episode_id) >= 4 else None
        return _episode(row) if row else None

    def save(self, ep: Episode) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO episodes ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                ep.id,
                ep.key,
                ep.tenant,
                ep.status,
                ep.level,
                ep.raised_at,
                ep.attention_since,
                ep.last_notified,
                ep.notify_tier,
                ep.reminders,
                int(ep.silenced),
                ep.resolved_at,
                ep.pending,
                ep.pending_by,
                ep.pending_at,
                msgspec.json.encode(ep.alert),
            ),
        )

    def unresolved(self) -> list[Episode]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM episodes WHERE status != 'resolved' ORDER BY raised_at"
        ).fetchall()
        return [_episode(r) for r in rows]

    def episodes(
        self, *, tenant: str | None = None, include_resolved: bool = False, limit: int = 200
    ) -> Iterator[Episode]:
        sql = f"SELECT {_COLUMNS} FROM episodes WHERE 1=1"
        args: list[object] = []
        if not include_resolved:
            sql += " AND status != 'resolved'"
        if tenant is not None:
            sql += " AND tenant = ?"
            args.append(tenant)
        sql += " ORDER BY raised_at DESC LIMIT ?"
        args.append(limit)
        for row in self._db.execute(sql, args).fetchall():
            yield _episode(row)

    def request(self, episode_id: str, action: str, by: str) -> Episode:
        """Record a duty officer's action for the consumer to carry out (CLI side)."""
        ep = self.get(episode_id)
        if ep is None:
            raise AlertStoreError(f"no alert {episode_id!r} (see `bosai alerts list`)")
        if ep.status == "resolved":
            raise AlertStoreError(f"alert {ep.id} is already resolved")
        if action == "ack" and ep.status == "acknowledged":
            raise AlertStoreError(f"alert {ep.id} is already acknowledged by {ep.alert.acked_by}")
        self._db.execute(
            "UPDATE episodes SET pending = ?, pending_by = ?, pending_at = ? WHERE id = ?",
            (action, by, time.time(), ep.id),
        )
        ep.pending, ep.pending_by = action, by
        return ep

    def pending(self) -> list[Episode]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM episodes WHERE pending != ''").fetchall()
        return [_episode(r) for r in rows]

    # --- maintenance windows ---

    def add_window(
        self,
        tenant: str,
        start: float,
        end: float,
        *,
        site: str = "",
        sensor: str = "",
        gateway: str = "",
        reason: str = "",
        created_by: str = "",
    ) -> int:
        if end <= start:
            raise AlertStoreError("a maintenance window must end after it starts")
        cur = self._db.execute(
            "INSERT INTO maintenance (tenant, site, sensor, gateway, start, end, reason, created_by) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (tenant, site, sensor, gateway, start, end, reason, created_by),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def remove_window(self, window_id: int) -> bool:
        return self._db.execute("DELETE FROM maintenance WHERE id = ?", (window_id,)).rowcount > 0

    def windows(self, now: float | None = None) -> list[MaintenanceWindow]:
        """Windows not yet over at `now` (all of them when None)."""
        sql = "SELECT id, tenant, site, sensor, gateway, start, end, reason, created_by FROM maintenance"
        rows = self._db.execute(
            sql + (" WHERE end > ?" if now is not None else "") + " ORDER BY start",
            (now,) if now is not None else (),
        ).fetchall()
        return [MaintenanceWindow(*r) for r in rows]


def _episode(row: tuple[object, ...]) -> Episode:
    (
        eid,
        key,
        tenant,
        status,
        level,
        raised_at,
        attention,
        notified,
        tier,
        reminders,
        silenced,
        resolved_at,
        pending,
        pending_by,
        pending_at,
        alert,
    ) = row
    return Episode(
        id=str(eid),
        key=str(key),
        tenant=str(tenant),
        status=str(status),
        level=int(level),  # type: ignore[call-overload]
        raised_at=float(raised_at),  # type: ignore[arg-type]
        attention_since=float(attention),  # type: ignore[arg-type]
        last_notified=float(notified),  # type: ignore[arg-type]
        notify_tier=int(tier),  # type: ignore[call-overload]
        reminders=int(reminders),  # type: ignore[call-overload]
        silenced=bool(silenced),
        resolved_at=float(resolved_at) if resolved_at is not None else None,  # type: ignore[arg-type]
        pending=str(pending),
        pending_by=str(pending_by),
        pending_at=float(pending_at) if pending_at is not None else None,  # type: ignore[arg-type]
        alert=alert_decoder.decode(alert),  # type: ignore[arg-type]
    )
