"""The disk spool in front of the store: what the broker was told is safe is on disk.

Every line the consumer stores (readings, alerts, detections, health) is appended here first,
and a message's MQTT acknowledgement waits until its lines are written and fsync'd.  A separate
reader (cloud.sink) drains the spool to the database in order and moves a cursor forward once
the database has accepted a batch.  So:

- a database outage only makes the spool grow: detection and alerting go on, and the backlog
  drains in order when the database is back;
- `kill -9` of the consumer loses nothing: what was acknowledged is in the spool, and what was
  not is redelivered by the broker (its points overwrite themselves, being keyed by sample time);
- memory stays bounded: the reader holds one batch, the writer one group of entries.

This is the disk buffer with end-to-end acknowledgement that log shippers use (Vector's disk
buffers, Fluent Bit's filesystem storage), sized for our lines.

On disk: `seg-NNNNNNNNNN.lp` files of newline-terminated lines, rolled at `segment_bytes`, and a
`cursor` file ("segment offset") saying how far the store has accepted them.  The cursor is
replaced atomically but not fsync'd: after a power cut it may lag, which only writes a few
batches twice.  A torn last line (a crash mid-write) is cut off at start: it was never
acknowledged.  When the unstored part reaches `max_bytes`, `put()` blocks: the consumer stops
reading from the broker, which keeps the messages (nothing is dropped here).

Entries are committed in the order they were put, and their callbacks (MQTT acks, barriers)
run in that order on the spool's thread.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from wire import processlock

log = logging.getLogger(__name__)

QUEUE_ENTRIES = 10_000  # entries between the worker and the spool thread (then put() blocks)
GROUP_ENTRIES = 5_000  # at most this many entries per write + fsync
CURSOR = "cursor"


@dataclass(frozen=True, order=True, slots=True)
class Position:
    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class Batch:
    lines: list[str]
    end: Position
    size: int  # bytes


@dataclass(slots=True)
class _Entry:
    lines: list[str]
    on_durable: Callable[[], None] | None = None
    on_stored: threading.Event | None = None


_STOP = _Entry([])


class SpoolBusy(RuntimeError):
    """Another process has the spool: two writers would interleave and both drain it."""


class Spool:
    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 16 << 20,
        fsync: bool = True,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.appended_lines = 0
        self.stored_lines = 0
        self.recovered_lines = 0  # unstored lines found at start (left by the previous run)
        self._cond = threading.Condition()
        self._queue: queue.Queue[_Entry] = queue.Queue(QUEUE_ENTRIES)
        self._stored_waiters: list[tuple[Position, threading.Event]] = []
        self._closing = False
        self._full_logged = False
        self._behind_since: float | None = None  # monotonic time the spool last stopped being empty

        directory.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock(directory)
        self._segments = self._recover()
        self._cursor = self._read_cursor()
        for n in [n for n in self._segments if n < self._cursor.segment]:  # stored, not yet removed
            self._segment_path(n).unlink(missing_ok=True)
        self._segments = [n for n in self._segments if n >= self._cursor.segment]
        self._pending_bytes = sum(self._segment_size(n) for n in self._segments) - self._cursor.offset
        self.recovered_lines = self._count_pending_lines()
        self._pending_lines = self.recovered_lines
        if self._pending_lines:
            self._behind_since = time.monotonic()
            log.info(
                "spool %s: %d lines (%d bytes) from the previous run not yet stored; draining them first",
                directory,
                self._pending_lines,
                self._pending_bytes,
            )
        self._write_no = (self._segments[-1] if self._segments else 0) + 1
        self._write_file = self._open_segment(self._write_no)
        self._write_offset = 0
        self._committed = Position(self._write_no, 0)
        self._read_file: tuple[int, BinaryIO] | None = None  # (segment, open for reading)
        self._thread = threading.Thread(target=self._run, name="bosai-spool", daemon=True)
        self._thread.start()

    # --- producer side (the consumer's worker thread) ---

    def put(self, lines: list[str], on_durable: Callable[[], None] | None = None) -> None:
        """Append `lines` (in order with every earlier put); `on_durable()` runs on the spool
        thread once they, and everything put before them, are on disk.  Blocks while full."""
        self._queue.put(_Entry(lines, on_durable))

    def mark_stored(self, event: threading.Event) -> None:
        """Set `event` once everything put so far has been accepted by the store."""
        self._queue.put(_Entry([], on_stored=event))

    def close(self, timeout: float = 10.0) -> None:
        """Commit what was put and stop taking more (unstored lines stay for the next start);
        reading goes on until `close_reader()`."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("spool thread did not finish within %.0f s", timeout)
            return
        self._write_file.close()
        self._lock_file.close()  # releases the lock

    def close_reader(self) -> None:
        """After the last read (the store thread has stopped)."""
        if self._read_file is not None:
            self._read_file[1].close()
            self._read_file = None

    # --- reader side (the store thread) ---

    def read(self, max_lines: int, timeout: float, linger: float = 0.0) -> Batch | None:
        """Up to `max_lines` committed, unstored lines after the cursor (None if there are none
        within `timeout`).  With fewer pending, wait up to `linger` seconds for a full batch.
        The same lines come again until `done()` is called with the batch."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._cursor < self._committed or self._closing, timeout):
                return None
            if linger > 0:
                self._cond.wait_for(lambda: self._pending_lines >= max_lines or self._closing, linger)
            if not self._cursor < self._committed:
                return None
            committed = self._committed
        lines: list[str] = []
        size = 0
        seg, off = self._cursor.segment, self._cursor.offset
        while len(lines) < max_lines:
            if seg == committed.segment and off >= committed.offset:
                break
            f = self._reader(seg)
            f.seek(off)
            limit = committed.offset if seg == committed.segment else None
            while len(lines) < max_lines and (limit is None or off < limit):
                raw = f.readline()
                if not raw:
                    break
                off += len(raw)
                size += len(raw)
                lines.append(raw[:-1].decode("utf-8"))
            if len(lines) >= max_lines or seg == committed.segment:
                break
            seg, off = self._next_segment(seg), 0  # this one is complete: go on to the next
        if not lines:
            if Position(seg, off) != self._cursor:  # only skipped finished (or empty) segments
                self.done(Batch([], Position(seg, off), 0))
            return None
        return Batch(lines, Position(seg, off), size)

    def done(self, batch: Batch) -> None:
        """The store accepted `batch`: move the cursor past it."""
        with self._cond:
            self._cursor = batch.end
            self._pending_bytes -= batch.size
            self._pending_lines -= len(batch.lines)
            self.stored_lines += len(batch.lines)
            if self._pending_lines == 0:
                self._behind_since = None
            finished = [n for n in self._segments if n < batch.end.segment]
            self._segments = [n for n in self._segments if n >= batch.end.segment]
            ready = [e for p, e in self._stored_waiters if p <= self._cursor]
            self._stored_waiters = [(p, e) for p, e in self._stored_waiters if not p <= self._cursor]
            self._cond.notify_all()
        self._write_cursor(batch.end)
        for n in finished:
            if self._read_file is not None and self._read_file[0] == n:
                self._read_file[1].close()
                self._read_file = None
            try:
                os.unlink(self._segment_path(n))
            except OSError as exc:
                log.warning("spool: cannot remove %s: %s", self._segment_path(n), exc)
        for e in ready:
            e.set()

    # --- state ---

    @property
    def pending_lines(self) -> int:
        return self._pending_lines

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def behind_s(self) -> float:
        """Seconds since the spool last held no unstored line (0 when it holds none)."""
        since = self._behind_since
        return 0.0 if since is None else time.monotonic() - since

    # --- the spool thread ---

    def _run(self) -> None:
        stopping = False
        while not stopping:
            group = [self._queue.get()]
            while len(group) < GROUP_ENTRIES:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if any(e is _STOP for e in group):
                stopping = True
                group = [e for e in group if e is not _STOP]
            try:
                self._commit(group)
            except Exception:
                # Nothing of this group is acknowledged: the broker redelivers those messages
                # after a restart.  A disk that cannot be written is fatal for durability.
                log.critical(
                    "spool %s: cannot write; stopping acknowledgements", self.directory, exc_info=True
                )
                return

    def _commit(self, group: list[_Entry]) -> None:
        data = "".join(ln + "\n" for e in group for ln in e.lines).encode("utf-8")
        n_lines = sum(len(e.lines) for e in group)
        if data:
            self._wait_for_room(len(data))
            if self._write_offset >= self.segment_bytes:
                self._roll()
            self._write_file.write(data)
            self._write_file.flush()
            if self.fsync:
                os.fsync(self._write_file.fileno())
            self._write_offset += len(data)
            self.appended_lines += n_lines
        with self._cond:
            if data:
                self._committed = Position(self._write_no, self._write_offset)
                self._pending_bytes += len(data)
                self._pending_lines += n_lines
                if self._behind_since is None:
                    self._behind_since = time.monotonic()
                self._cond.notify_all()
            committed = self._committed
            waiters = [e.on_stored for e in group if e.on_stored is not None]
            now_ready = [e for e in waiters if committed <= self._cursor]
            self._stored_waiters += [(committed, e) for e in waiters if not committed <= self._cursor]
        for e in now_ready:
            e.set()
        for entry in group:
            if entry.on_durable is not None:
                try:
                    entry.on_durable()
                except Exception:
                    log.exception("spool: acknowledgement callback failed")

    def _wait_for_room(self, size: int) -> None:
        with self._cond:
            while (
                self._pending_bytes > 0 and self._pending_bytes + size > self.max_bytes and not self._closing
            ):
                if not self._full_logged:
                    log.error(
                        "spool %s is full (%d bytes not yet stored): pausing intake until the store "
                        "catches up; the broker keeps the messages",
                        self.directory,
                        self._pending_bytes,
                    )
                    self._full_logged = True
                self._cond.wait(1.0)
            if self._full_logged and self._pending_bytes + size <= self.max_bytes:
                log.info("spool %s has room again", self.directory)
                self._full_logged = False

    def _roll(self) -> None:
        self._write_file.close()
        self._write_no += 1
        self._write_file = self._open_segment(self._write_no)
        self._write_offset = 0

    # --- files ---

    def _segment_path(self, n: int) -> Path:
        return self.directory / f"seg-{n:010d}.lp"

    def _segment_size(self, n: int) -> int:
        try:
            return self._segment_path(n).stat().st_size
        except FileNotFoundError:
            return 0

    def _open_segment(self, n: int) -> BinaryIO:
        f = open(self._segment_path(n), "ab")  # noqa: SIM115 - the spool's current segment
        with self._cond:
            if n not in self._segments:
                self._segments.append(n)
        return f

    def _next_segment(self, n: int) -> int:
        with self._cond:
            later = [s for s in self._segments if s > n]
        return min(later) if later else n + 1

    def _reader(self, n: int) -> BinaryIO:
        if self._read_file is None or self._read_file[0] != n:
            if self._read_file is not None:
                self._read_file[1].close()
            self._read_file = (n, open(self._segment_path(n), "rb"))  # noqa: SIM115
        return self._read_file[1]

    def _recover(self) -> list[int]:
        """Segments on disk, oldest first; a torn last line is cut off."""
        numbers = sorted(int(p.name[4:-3]) for p in self.directory.glob("seg-*.lp") if p.name[4:-3].isdigit())
        for n in numbers:
            path = self._segment_path(n)
            with open(path, "rb+") as f:
                size = f.seek(0, os.SEEK_END)
                if size == 0:
                    continue
                f.seek(max(0, size - 1))
                if f.read(1) == b"\n":
                    continue
                # Find the last complete line and cut after it.
                keep = _last_newline_end(f, size)
                log.warning(
                    "spool: %s ends in a torn line (a crash while writing); cutting %d bytes",
                    path,
                    size - keep,
                )
                f.truncate(keep)
        return numbers

    def _read_cursor(self) -> Position:
        first = Position(self._segments[0], 0) if self._segments else Position(1, 0)
        try:
            seg_s, off_s = (self.directory / CURSOR).read_text().split()
            cursor = Position(int(seg_s), int(off_s))
        except FileNotFoundError:
            return first
        except (OSError, ValueError) as exc:
            log.warning("spool: unreadable cursor (%s); storing the whole spool again (harmless)", exc)
            return first
        if cursor.segment not in self._segments:
            later = [n for n in self._segments if n > cursor.segment]
            return Position(later[0], 0) if later else Position(cursor.segment, 0)
        if cursor.offset > self._segment_size(cursor.segment):
            log.warning("spool: cursor beyond its segment; storing that segment again (harmless)")
            return Position(cursor.segment, 0)
        return cursor

    def _write_cursor(self, pos: Position) -> None:
        tmp = self.directory / (CURSOR + ".tmp")
        try:
            tmp.write_text(f"{pos.segment} {pos.offset}\n")
            os.replace(tmp, self.directory / CURSOR)
        except OSError as exc:  # only costs writing some lines twice after a restart
            log.warning("spool: cannot save the cursor: %s", exc)

    def _count_pending_lines(self) -> int:
        total = 0
        for n in self._segments:
            with open(self._segment_path(n), "rb") as f:
                if n == self._cursor.segment:
                    f.seek(self._cursor.offset)
                while chunk := f.read(1 << 20):
                    total += chunk.count(b"\n")
        return total


def _last_newline_end(f: BinaryIO, size: int) -> int:
    """Offset just after the last b"\\n" in a binary file of `size` bytes (0 if none)."""
    pos = size
    while pos > 0:
        step = min(1 << 16, pos)
        pos -= step
        f.seek(pos)
        chunk = f.read(step)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return pos + i + 1
    return 0


def _lock(directory: Path) -> BinaryIO:
    """An exclusive lock on the spool directory for this process's lifetime (released by the OS
    when the process dies, so a killed consumer never leaves a stale lock)."""
    f = processlock.hold(directory / "lock")
    if f is None:
        who = processlock.holder(directory / "lock")
        raise SpoolBusy(f"spool {directory} is in use by another consumer process ({who})")
    return f
