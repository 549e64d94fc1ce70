"""The outbox: staging, sealing with restart-proof sequence numbers, bounds, crash recovery."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge.outbox import FIRST_SEQ, Outbox, OutboxBusy, OutboxError


def make_payload(seq: int, readings: list[bytes]) -> bytes:
    return b'{"seq":%d,"readings":[%s]}' % (seq, b",".join(readings))


def readings_of(payload: bytes) -> list[int]:
    return [int(r["n"]) for r in json.loads(payload)["readings"]]


def reading(n: int, size: int = 0) -> bytes:
    return json.dumps({"n": n, "pad": "x" * size}).encode()


def seal(box: Outbox, max_readings: int = 100, max_bytes: int = 1_000_000) -> list[int]:
    return [
        s.seq for s in box.seal(make_payload, max_readings=max_readings, max_bytes=max_bytes, created=1.0)
    ]


def put(box: Outbox, *numbers: int, urgent: bool = False) -> list[int]:
    box.stage([reading(n) for n in numbers], urgent=urgent, created=1.0)
    return seal(box)


def test_staged_readings_are_sealed_into_numbered_messages(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.stage([reading(1), reading(2)], urgent=False, created=1.0)
    box.stage([reading(3)], urgent=False, created=2.0)
    assert box.staged == 3 and box.depth == 0
    assert seal(box) == [FIRST_SEQ]
    assert box.staged == 0 and box.depth == 1
    payload = box.payload(FIRST_SEQ)
    assert payload is not None and readings_of(payload) == [1, 2, 3]
    assert seal(box) == []  # nothing staged: no empty message


def test_messages_split_at_max_readings_and_max_bytes(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.stage([reading(n) for n in range(7)], urgent=False, created=1.0)
    seqs = seal(box, max_readings=3)
    assert [readings_of(box.payload(s) or b"") for s in seqs] == [[0, 1, 2], [3, 4, 5], [6]]

    box.stage([reading(n, size=400) for n in range(5)], urgent=False, created=1.0)
    seqs = seal(box, max_bytes=1000)  # about two 420-byte readings per message
    sizes = [len(readings_of(box.payload(s) or b"")) for s in seqs]
    assert sizes == [2, 2, 1]


def test_urgent_readings_get_their_own_messages_sealed_first(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.stage([reading(1)], urgent=False, created=1.0)
    box.stage([reading(2)], urgent=True, created=1.0)
    box.stage([reading(3)], urgent=False, created=1.0)
    sealed = box.seal(make_payload, max_readings=100, max_bytes=10**6, created=1.0)
    assert [(s.urgent, readings_of(box.payload(s.seq) or b"")) for s in sealed] == [
        (True, [2]),
        (False, [1, 3]),
    ]
    assert box.index() == [(sealed[0].seq, True), (sealed[1].seq, False)]


def test_seq_continues_across_reopen_even_when_everything_was_acked(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    seqs = [put(box, n)[0] for n in range(3)]
    assert seqs == [FIRST_SEQ, FIRST_SEQ + 1, FIRST_SEQ + 2]
    assert box.delete(seqs) == 3
    assert box.depth == 0 and box.size_bytes == 0
    box.close()

    box = Outbox(path)
    assert put(box, 9) == [FIRST_SEQ + 3]
    box.close()


def test_wal_and_full_sync(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    db = box._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    box.close()


def test_delete_on_ack_and_a_duplicate_ack_is_harmless(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    (a,) = put(box, 1)
    (b,) = put(box, 2)
    size_b = len(box.payload(b) or b"")
    assert box.depth == 2
    assert box.delete([a]) == 1
    assert box.delete([a]) == 0
    assert box.payload(a) is None
    assert box.index() == [(b, False)]
    assert box.depth == 1 and box.size_bytes == size_b


def test_unacked_messages_and_staged_readings_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    seqs = [put(box, n)[0] for n in range(5)]
    box.delete([seqs[1], seqs[3]])
    box.stage([reading(42)], urgent=True, created=3.0)  # reported, not yet sealed
    box.close()

    box = Outbox(path)
    assert box.depth == 3 and box.staged == 1
    assert [s for s, _ in box.index()] == [seqs[0], seqs[2], seqs[4]]
    (sealed,) = box.seal(make_payload, max_readings=10, max_bytes=10**6, created=4.0)
    assert sealed.seq == seqs[-1] + 1 and sealed.urgent
    assert readings_of(box.payload(sealed.seq) or b"") == [42]


def test_kill_9_right_after_stage_loses_nothing(tmp_path: Path) -> None:
    """A process that stages and is killed at once: the reading is on disk."""
    path = tmp_path / "o.sqlite"
    code = (
        "import os, signal, sys\n"
        "from edge.outbox import Outbox\n"
        f"box = Outbox({str(path)!r})\n"
        "box.stage([b'{\"n\":7}'], urgent=False, created=1.0)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], check=False)
    assert proc.returncode == -9
    box = Outbox(path)
    assert box.staged == 1
    (seq,) = seal(box)
    assert readings_of(box.payload(seq) or b"") == [7]


def test_bound_drops_oldest_normal_messages_first_and_counts_persistently(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, max_messages=3)
    urgent = put(box, 0, urgent=True)[0]
    normal = [put(box, n)[0] for n in range(1, 5)]
    assert box.depth == 3
    assert box.dropped == 2 and box.dropped_readings == 2
    # the urgent message is kept although it is the oldest
    assert [s for s, _ in box.index()] == [urgent, normal[-2], normal[-1]]
    box.close()

    box = Outbox(path, max_messages=3)
    assert (box.dropped, box.dropped_readings, box.depth) == (2, 2, 3)
    assert put(box, 9) == [normal[-1] + 1]  # seq never reused
    assert box.dropped == 3


def test_urgent_messages_are_dropped_only_when_nothing_else_is_left(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_messages=2)
    seqs = [put(box, n, urgent=True)[0] for n in range(4)]
    assert [s for s, _ in box.index()] == seqs[-2:]
    assert box.dropped == 2


def test_byte_bound(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_bytes=3000)
    for n in range(10):
        box.stage([reading(n, size=900)], urgent=False, created=1.0)
        seal(box)
    assert box.size_bytes <= 3000
    assert box.depth == 3 and box.dropped == 7
    assert [readings_of(box.payload(s) or b"") for s, _ in box.index()] == [[7], [8], [9]]


def test_seq_never_reused_even_without_meta_row(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    for n in range(4):
        put(box, n)
    box.close()
    db = sqlite3.connect(path)
    db.execute("DELETE FROM meta")
    db.commit()
    db.close()
    box = Outbox(path)
    assert put(box, 5) == [FIRST_SEQ + 4]


def test_an_outbox_of_the_first_release_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE messages (seq INTEGER PRIMARY KEY, created REAL NOT NULL, payload BLOB NOT NULL);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        "INSERT INTO messages VALUES (41, 1.0, X'7B7D'); INSERT INTO meta VALUES ('next_seq', 42);"
    )
    db.commit()
    db.close()
    box = Outbox(path)
    assert box.index() == [(41, False)] and box.depth == 1 and box.size_bytes == 2
    assert put(box, 1) == [42]


def test_unopenable_outbox_says_where(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxError, match=r"not-a-db\.sqlite"):
        Outbox(bad)


def test_unwritable_outbox_raises_outbox_error(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    Outbox(path).close()
    box = Outbox(path)
    box._db.execute("PRAGMA query_only = ON")  # every write now fails, as on a read-only card
    with pytest.raises(OutboxError, match=r"o\.sqlite"):
        box.stage([reading(1)], urgent=False, created=1.0)
    assert box.staged == 0


def test_the_stream_id_is_kept_with_the_counter(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    first = Outbox(path)
    stream = first.stream
    first.close()
    assert Outbox(path).stream == stream  # the same counter, the same stream
    assert Outbox(tmp_path / "other.sqlite").stream != stream  # a new outbox numbers anew
    assert len(stream) == 16 and int(stream, 16) >= 0


def test_one_agent_per_outbox_and_a_killed_one_leaves_no_lock(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    first = Outbox(path)
    with pytest.raises(OutboxBusy, match=rf"in use by another agent \(process {os.getpid()}\)"):
        Outbox(path)
    first.close()
    Outbox(path).close()  # free once closed

    # Another process holds it, then is killed: the OS releases the lock with the process.
    code = "import sys; from edge.outbox import Outbox; box = Outbox(sys.argv[1]); print('open', flush=True)"
    holder = subprocess.Popen(
        [sys.executable, "-c", code + "; input()", str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        with pytest.raises(OutboxBusy, match=rf"\(process {holder.pid}\)"):
            Outbox(path)
    finally:
        holder.kill()  # SIGKILL: no close, no cleanup
        holder.wait()
    Outbox(path).close()
