"""Durable outbox: every reading is on disk from the moment it is reported until the PUBACK.

SQLite in WAL mode with synchronous=FULL, so whatever a method returned from survives a power
cut as well as `kill -9`.  Two stages:

- `stage(readings)`: the readings of one poll that the report policy sends, each stored as its
  encoded JSON, right away.  A reading is never only in memory, even for the second until the
  next batch, so a crash between sampling and batching loses nothing.
- `seal(...)`: the staged readings become telemetry messages, in one transaction: each message
  gets the next per-gateway sequence number (from a counter in the `meta` table, so numbering
  continues across restarts even when every row was acknowledged and deleted, and the cloud
  can tell a restart from lost messages).  Urgent readings (fast mode, near a threshold) go
  into their own messages, sealed first, so that they can be sent before any backlog.

`delete(seqs)` forgets acknowledged messages.  Readings staged or sealed before a crash are
found again on the next start (`stage` rows are sealed, `messages` rows replayed).

Bounded by `max_messages` and `max_bytes` (payload bytes), staged readings included in neither
(they are sealed within a second).  When a long outage hits a bound, the *oldest normal*
messages are dropped first, urgent ones only when nothing else is left: after a multi-day
outage the freshest data and the data near thresholds are what the duty officer needs, and a
gateway must never fill its disk and die.  Dropped messages and readings are counted
(persistently) and reported in the health message; the cloud sees the dropped range as a gap.

Not thread-safe on purpose: the agent uses it from the asyncio loop thread only (the MQTT
network thread hands its callbacks over with call_soon_threadsafe).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wire import processlock

log = logging.getLogger(__name__)

FIRST_SEQ = 1
DEFAULT_MAX_MESSAGES = 100_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024  # fits any SD card a gateway has, with room for the OS
_DELETE_CHUNK = 500  # seqs per DELETE statement (SQLite limits the number of parameters)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    created REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS staged (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    urgent INTEGER NOT NULL,
    reading BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
# Columns added after the first release; an outbox written by an older agent is upgraded in place.
_ADDED_COLUMNS = {
    "urgent": "ALTER TABLE messages ADD COLUMN urgent INTEGER NOT NULL DEFAULT 0",
    "readings": "ALTER TABLE messages ADD COLUMN readings INTEGER NOT NULL DEFAULT 0",
}

# make_payload(seq, encoded readings) -> the message bytes
PayloadMaker = Callable[[int, list[bytes]], bytes]


class OutboxError(Exception):
    """The outbox cannot be opened or written (permissions, full disk, not a database)."""


class OutboxBusy(OutboxError):
    """Another agent has this outbox open: two would interleave sequence numbers and sends."""


def lock_path(path: str | Path) -> Path:
    """The lock file an agent holds beside its outbox while it runs (`wire.processlock`)."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


@dataclass(frozen=True, slots=True)
class Sealed:
    seq: int
    urgent: bool


class Outbox:
    def __init__(
        self,
        path: str | Path,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("max_messages and max_bytes must be at least 1")
        self.path = Path(path)
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = processlock.hold(lock_path(self.path))
        except OSError as exc:
            raise OutboxError(f"cannot open the outbox {self.path}: {exc}") from exc
        if lock is None:
            who = processlock.holder(lock_path(self.path))
            raise OutboxBusy(
                f"the outbox {self.path} is in use by another agent ({who}): one agent per gateway "
                "(is the bosai-agent service running?)"
            )
        self._lock = lock
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) below.
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
            for name, ddl in _ADDED_COLUMNS.items():
                if name not in columns:
                    self._db.execute(ddl)
            self._db.execute("CREATE INDEX IF NOT EXISTS messages_drop_order ON messages(urgent, seq)")
            max_seq, depth, size = self._db.execute(
                "SELECT MAX(seq), COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages"
            ).fetchone()
            self._staged: int = self._db.execute("SELECT COUNT(*) FROM staged").fetchone()[0]
            stream = self._meta("stream")
            if stream is None:  # a new outbox (or one from the first release): a new numbering stream
                stream = secrets.randbits(63)
                self._set_meta("stream", stream)
        except (OSError, sqlite3.Error) as exc:
            lock.close()
            raise OutboxError(f"cannot open the outbox {self.path}: {exc}") from exc
        self.stream = f"{stream:016x}"  # sent with every message: see wire.telemetry.Telemetry.stream
        self._next_seq = _next_seq(self._meta("next_seq"), max_seq)
        self.dropped = self._meta("dropped") or 0
        self.dropped_readings = self._meta("dropped_readings") or 0
        self._depth: int = depth
        self._bytes: int = size
        self._dropping = False

    # -- state ------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Messages waiting for PUBACK (including ones already sent once)."""
        return self._depth

    @property
    def size_bytes(self) -> int:
        """Payload bytes of the messages waiting."""
        return self._bytes

    @property
    def staged(self) -> int:
        """Readings stored but not yet sealed into a message."""
        return self._staged

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def oldest_created(self) -> float | None:
        """Clock time the oldest waiting message was sealed (None when empty)."""
        (t,) = self._db.execute("SELECT MIN(created) FROM messages").fetchone()
        return None if t is None else float(t)

    def index(self) -> list[tuple[int, bool]]:
        """(seq, urgent) of every waiting message, oldest first: the replay queue after a start."""
        rows = self._db.execute("SELECT seq, urgent FROM messages ORDER BY seq").fetchall()
        return [(int(s), bool(u)) for s, u in rows]

    def payload(self, seq: int) -> bytes | None:
        row = self._db.execute("SELECT payload FROM messages WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else bytes(row[0])

    def after(self, seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` stored messages with a seq above `seq`, oldest first (for inspection)."""
        rows = self._db.execute(
            "SELECT seq, payload FROM messages WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()
        return [(int(s), bytes(p)) for s, p in rows]

    # -- writing ----------------------------------------------------------------------------

    def stage(self, readings: Sequence[bytes], *, urgent: bool, created: float) -> None:
        """Store encoded readings until the next `seal` (durable on return)."""
        if not readings:
            return
        with self._transaction():
            self._db.executemany(
                "INSERT INTO staged(created, urgent, reading) VALUES (?, ?, ?)",
                [(created, int(urgent), r) for r in readings],
            )
        self._staged += len(readings)

    def seal(
        self, make_payload: PayloadMaker, *, max_readings: int, max_bytes: int, created: float
    ) -> list[Sealed]:
        """Turn every staged reading into messages (urgent ones first) in one transaction.

        A message holds at most `max_readings` readings and `max_bytes` bytes of them.
        """
        if not self._staged:
            return []
        rows = self._db.execute("SELECT urgent, reading FROM staged ORDER BY urgent DESC, id").fetchall()
        chunks = _chunks([(bool(u), bytes(r)) for u, r in rows], max_readings, max_bytes)
        sealed: list[Sealed] = []
        seq = self._next_seq
        added = 0
        with self._transaction():
            for urgent, readings in chunks:
                payload = make_payload(seq, readings)
                self._db.execute(
                    "INSERT INTO messages(seq, created, payload, urgent, readings) VALUES (?, ?, ?, ?, ?)",
                    (seq, created, payload, int(urgent), len(readings)),
                )
                sealed.append(Sealed(seq, urgent))
                added += len(payload)
                seq += 1
            self._db.execute("DELETE FROM staged")
            self._set_meta("next_seq", seq)
            dropped = self._enforce_bounds(len(sealed), added)
        self._next_seq = seq
        self._staged = 0
        self._depth += len(sealed)
        self._bytes += added
        self._account_drops(dropped)
        gone = {s for s, _, _ in dropped}
        return [s for s in sealed if s.seq not in gone]

    def delete(self, seqs: Iterable[int]) -> int:
        """Forget acknowledged messages, in one transaction; returns how many were there.

        The publisher batches PUBACKs into one call: a lost delete (power cut) only means a
        duplicate after restart, which the cloud tolerates, but one fsync per PUBACK would
        make replay after an outage crawl on an SD card.
        """
        keys = list(seqs)
        if not keys:
            return 0
        sizes: list[int] = []
        with self._transaction():
            for i in range(0, len(keys), _DELETE_CHUNK):
                chunk = keys[i : i + _DELETE_CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = f"DELETE FROM messages WHERE seq IN ({marks}) RETURNING LENGTH(payload)"
                sizes += [int(n) for (n,) in self._db.execute(sql, chunk).fetchall()]
        gone = len(sizes)
        self._bytes -= sum(sizes)
        self._depth -= gone
        if self._depth < self.max_messages and self._bytes < self.max_bytes:
            self._dropping = False
        return gone

    def close(self) -> None:
        self._db.close()
        self._lock.close()  # releases the lock: another agent may open it now

    # -- internals --------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self.path)

    def _meta(self, key: str) -> int | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _enforce_bounds(self, added_messages: int, added_bytes: int) -> list[tuple[int, int, int]]:
        """Inside the sealing transaction: drop the oldest normal (then urgent) messages until
        both bounds hold.  Returns (seq, payload bytes, readings) of the dropped ones."""
        depth = self._depth + added_messages
        size = self._bytes + added_bytes
        if depth <= self.max_messages and size <= self.max_bytes:
            return []
        dropped: list[tuple[int, int, int]] = []
        # Oldest normal first, then oldest urgent; read lazily, a few at a time.
        cursor = self._db.execute("SELECT seq, LENGTH(payload), readings FROM messages ORDER BY urgent, seq")
        while depth > self.max_messages or size > self.max_bytes:
            row = cursor.fetchone()
            if row is None or depth <= 1:
                break  # never drop the message just sealed for being large on its own
            seq, nbytes, nreadings = int(row[0]), int(row[1]), int(row[2])
            dropped.append((seq, nbytes, nreadings))
            depth -= 1
            size -= nbytes
        cursor.close()
        self._db.executemany("DELETE FROM messages WHERE seq = ?", [(s,) for s, _, _ in dropped])
        self._set_meta("dropped", self.dropped + len(dropped))
        self._set_meta("dropped_readings", self.dropped_readings + sum(r for _, _, r in dropped))
        return dropped

    def _account_drops(self, dropped: list[tuple[int, int, int]]) -> None:
        if not dropped:
            return
        self._depth -= len(dropped)
        self._bytes -= sum(b for _, b, _ in dropped)
        self.dropped += len(dropped)
        self.dropped_readings += sum(r for _, _, r in dropped)
        if not self._dropping:  # once per episode of a full outbox
            log.warning(
                "outbox full (%d messages / %d bytes at most): dropping the oldest normal messages "
                "(%d messages, %d readings dropped so far)",
                self.max_messages,
                self.max_bytes,
                self.dropped,
                self.dropped_readings,
            )
        self._dropping = True


@dataclass(frozen=True, slots=True)
class Summary:
    """What an outbox holds, read without disturbing the agent that may be running on it."""

    messages: int
    urgent: int
    bytes: int
    staged: int
    oldest_created: float | None
    next_seq: int
    dropped: int
    dropped_readings: int


def summarize(path: str | Path) -> Summary:
    """Read-only look at an outbox file (SQLite WAL lets it run beside the writing agent)."""
    try:
        db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise OutboxError(f"cannot open the outbox {path}: {exc}") from exc
    try:
        messages, urgent, size, oldest, max_seq = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(urgent), 0), COALESCE(SUM(LENGTH(payload)), 0), MIN(created), "
            "MAX(seq) FROM messages"
        ).fetchone()
        (staged,) = db.execute("SELECT COUNT(*) FROM staged").fetchone()
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error as exc:
        raise OutboxError(f"cannot read the outbox {path}: {exc}") from exc
    finally:
        db.close()
    return Summary(
        messages=int(messages),
        urgent=int(urgent),
        bytes=int(size),
        staged=int(staged),
        oldest_created=None if oldest is None else float(oldest),
        next_seq=_next_seq(meta.get("next_seq"), max_seq),
        dropped=int(meta.get("dropped", 0)),
        dropped_readings=int(meta.get("dropped_readings", 0)),
    )


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error; SQLite errors become OutboxError."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot write the outbox {self._path}: {exc}") from exc

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.Error as commit_exc:
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                    self._db.execute("ROLLBACK")
                raise OutboxError(f"cannot write the outbox {self._path}: {commit_exc}") from commit_exc
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise OutboxError(f"cannot write the outbox {self._path}: {exc}") from exc


def _next_seq(stored: int | None, max_seq: int | None) -> int:
    """From the counter and the highest stored number both, in case the counter row was lost:
    a sequence number is never reused."""
    return max(int(stored) if stored is not None else FIRST_SEQ, int(max_seq or 0) + 1)


def _chunks(
    readings: list[tuple[bool, bytes]], max_readings: int, max_bytes: int
) -> list[tuple[bool, list[bytes]]]:
    """Consecutive runs of the same urgency, split at `max_readings` and `max_bytes`."""
    out: list[tuple[bool, list[bytes]]] = []
    size = 0
    for urgent, r in readings:
        n = len(r) + 1  # the comma
        if not out or out[-1][0] != urgent or len(out[-1][1]) >= max_readings or size + n > max_bytes:
            out.append((urgent, []))
            size = 0
        out[-1][1].append(r)
        size += n
    return out
