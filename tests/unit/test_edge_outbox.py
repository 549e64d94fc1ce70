from __future__ import annotations

import sqlite3
from pathlib import Path

from edge.outbox import FIRST_SEQ, Outbox


def payload_of(seq: int) -> bytes:
    return f"msg-{seq}".encode()


def test_seq_continues_across_reopen_even_when_everything_was_acked(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    seqs = [box.append(payload_of, created=1.0) for _ in range(3)]
    assert seqs == [FIRST_SEQ, FIRST_SEQ + 1, FIRST_SEQ + 2]
    assert box.delete(seqs) == 3
    assert box.depth == 0
    box.close()

    box = Outbox(path)
    assert box.append(payload_of, created=2.0) == FIRST_SEQ + 3
    box.close()


def test_wal_and_full_sync(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    db = box._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    box.close()


def test_payload_gets_its_own_seq_and_delete_on_ack(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    a = box.append(payload_of, created=1.0)
    b = box.append(payload_of, created=2.0)
    assert box.payload(a) == payload_of(a)
    assert box.depth == 2
    assert box.delete([a]) == 1
    assert box.delete([a]) == 0  # a duplicate PUBACK is harmless
    assert box.payload(a) is None
    assert box.after(0, 10) == [(b, payload_of(b))]
    assert box.depth == 1


def test_unacked_messages_replay_oldest_first_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    seqs = [box.append(payload_of, created=float(i)) for i in range(5)]
    box.delete([seqs[1], seqs[3]])
    box.close()

    box = Outbox(path)
    assert box.depth == 3
    assert [s for s, _ in box.after(0, 100)] == [seqs[0], seqs[2], seqs[4]]
    assert [s for s, _ in box.after(seqs[0], 1)] == [seqs[2]]  # paging with a window


def test_bound_drops_oldest_and_counts_persistently(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, max_messages=3)
    seqs = [box.append(payload_of, created=float(i)) for i in range(5)]
    assert box.depth == 3
    assert box.dropped == 2
    assert [s for s, _ in box.after(0, 10)] == seqs[2:]
    box.close()

    box = Outbox(path, max_messages=3)
    assert box.dropped == 2
    assert box.depth == 3
    assert box.append(payload_of, created=9.0) == seqs[-1] + 1  # seq never reused
    assert box.dropped == 3


def test_seq_never_reused_even_without_meta_row(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    for _ in range(4):
        box.append(payload_of, created=0.0)
    box.close()
    db = sqlite3.connect(path)
    db.execute("DELETE FROM meta")
    db.commit()
    db.close()
    box = Outbox(path)
    assert box.append(payload_of, created=0.0) == FIRST_SEQ + 4


def test_unopenable_outbox_says_where(tmp_path: Path) -> None:
    import pytest

    from edge.outbox import OutboxError

    bad = tmp_path / "not-a-db.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxError, match=r"not-a-db\.sqlite"):
        Outbox(bad)
