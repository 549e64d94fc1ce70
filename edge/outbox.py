"""Durable outbox: every telemetry message is on disk before it is published, until PUBACK.

SQLite in WAL mode with synchronous=FULL, so a message that `append` returned survives a power
cut.  Rows: (seq, created, payload).  The per-gateway sequence number is allocated here, in the
same transaction as the insert, from a counter kept in the `meta` table: it keeps counting
across restarts even when every row has been acknowledged and deleted, so the cloud can tell a
restart from lost messages.

Bounded: at most `max_messages` rows.  When a long outage fills it, the *oldest* messages are
dropped (and counted in `dropped`, persisted): after a multi-day outage the freshest data is the
most useful to the duty officer, and a gateway must never fill its disk and die.  The cloud
sees the dropped range as a gap in `seq`.

Not thread-safe on purpose: the agent uses it from the asyncio loop thread only (the MQTT
network thread hands its callbacks over with call_soon_threadsafe).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger(__name__)

FIRST_SEQ = 1
DEFAULT_MAX_MESSAGES = 100_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    created REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class OutboxError(Exception):
    """The outbox file cannot be opened (permissions, full disk, not a database)."""


class Outbox:
    def __init__(self, path: str | Path, max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self.path = Path(path)
        self.max_messages = max_messages
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) below.
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            (max_seq,) = self._db.execute("SELECT MAX(seq) FROM messages").fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open the outbox {self.path}: {exc}") from exc
        stored = self._meta("next_seq")
        # Both sources, in case the meta row was lost: never reuse a sequence number.
        self._next_seq = max(stored if stored is not None else FIRST_SEQ, (max_seq or 0) + 1)
        self.dropped = self._meta("dropped") or 0
        self._depth: int = self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        self._dropping = False

    def _meta(self, key: str) -> int | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @property
    def depth(self) -> int:
        """Messages waiting for PUBACK (including ones already sent once)."""
        return self._depth

    def append(self, make_payload: Callable[[int], bytes], created: float) -> int:
        """Allocate the next seq, store `make_payload(seq)`, and return seq (durable on return)."""
        seq = self._next_seq
        payload = make_payload(seq)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "INSERT INTO messages(seq, created, payload) VALUES (?, ?, ?)", (seq, created, payload)
            )
            self._set_meta("next_seq", seq + 1)
            excess = self._depth + 1 - self.max_messages
            if excess > 0:
                self._db.execute(
                    "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages ORDER BY seq LIMIT ?)",
                    (excess,),
                )
                self._set_meta("dropped", self.dropped + excess)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._next_seq = seq + 1
        self._depth += 1
        if excess > 0:
            self._depth -= excess
            self.dropped += excess
            if not self._dropping:  # once per episode of a full outbox
                log.warning(
                    "outbox full (%d messages): dropping the oldest unsent messages (%d dropped so far)",
                    self.max_messages,
                    self.dropped,
                )
            self._dropping = True
        return seq

    def delete(self, seqs: Iterable[int]) -> int:
        """Forget acknowledged messages, in one transaction; returns how many were there.

        The publisher batches PUBACKs into one call: a lost delete (power cut) only means a
        duplicate after restart, which the cloud tolerates, but one fsync per PUBACK would
        make replay after an outage crawl on an SD card.
        """
        keys = [(s,) for s in seqs]
        if not keys:
            return 0
        before = self._db.total_changes
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("DELETE FROM messages WHERE seq = ?", keys)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        gone = self._db.total_changes - before
        self._depth -= gone
        if self._depth < self.max_messages:
            self._dropping = False
        return gone

    def after(self, seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` stored messages with a seq above `seq`, oldest first."""
        rows = self._db.execute(
            "SELECT seq, payload FROM messages WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()
        return [(int(s), bytes(p)) for s, p in rows]

    def payload(self, seq: int) -> bytes | None:
        row = self._db.execute("SELECT payload FROM messages WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        self._db.close()
