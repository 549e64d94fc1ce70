"""The disk spool, the store thread draining it, and the flood guard."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from cloud.quarantine import Quarantine
from cloud.sink import STORE_REJECTED, StoreSink
from cloud.spool import Spool
from cloud.throttle import FloodGuard
from cloud.writers import StoreRejected, StoreUnavailable


def drain_all(spool: Spool, max_lines: int = 1000) -> list[str]:
    out: list[str] = []
    while (batch := spool.read(max_lines, 0.5)) is not None:
        out += batch.lines
        spool.done(batch)
    return out


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_lines_come_out_in_order_and_acks_follow_durability(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync=False)
    acked: list[int] = []
    for i in range(100):
        spool.put([f"m v={i} {i}", f"m w={i} {i}"], lambda i=i: acked.append(i))  # type: ignore[misc]
    wait_for(lambda: len(acked) == 100)
    assert acked == list(range(100))
    assert spool.pending_lines == 200
    lines = drain_all(spool, max_lines=7)
    assert lines == [ln for i in range(100) for ln in (f"m v={i} {i}", f"m w={i} {i}")]
    assert spool.pending_lines == 0 and spool.pending_bytes == 0
    spool.close()
    spool.close_reader()


def test_unstored_lines_survive_a_restart_and_stored_ones_do_not_come_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync=False)
    for i in range(10):
        spool.put([f"m v={i} {i}"])
    wait_for(lambda: spool.pending_lines == 10)
    batch = spool.read(4, 1.0)
    assert batch is not None
    spool.done(batch)  # 4 stored; 6 not
    spool.close()
    spool.close_reader()

    again = Spool(tmp_path, fsync=False)
    assert again.recovered_lines == 6
    again.put(["m v=10 10"])
    wait_for(lambda: again.pending_lines == 7)
    assert drain_all(again) == [f"m v={i} {i}" for i in range(4, 11)]
    again.close()
    again.close_reader()
    third = Spool(tmp_path, fsync=False)
    assert third.recovered_lines == 0 and drain_all(third) == []
    third.close()
    third.close_reader()


def test_a_torn_last_line_is_cut_at_start(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync=False)
    spool.put(["m v=1 1", "m v=2 2"])
    wait_for(lambda: spool.pending_lines == 2)
    spool.close()
    spool.close_reader()
    seg = sorted(tmp_path.glob("seg-*.lp"))[-1]
    with open(seg, "ab") as f:
        f.write(b"m v=3")  # killed in the middle of a write: never acknowledged
    again = Spool(tmp_path, fsync=False)
    assert drain_all(again) == ["m v=1 1", "m v=2 2"]
    again.close()
    again.close_reader()


def test_segments_roll_and_finished_ones_are_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=1000, fsync=False)
    for i in range(200):
        spool.put([f"measurement value={i} {i}"])  # ~30 bytes each
        if i % 20 == 19:
            wait_for(lambda i=i: spool.pending_lines == i + 1)  # type: ignore[misc]
    assert len(list(tmp_path.glob("seg-*.lp"))) > 3
    assert drain_all(spool, max_lines=13) == [f"measurement value={i} {i}" for i in range(200)]
    assert len(list(tmp_path.glob("seg-*.lp"))) <= 2
    spool.close()
    spool.close_reader()


def test_a_full_spool_holds_acknowledgements_until_the_store_catches_up(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100, fsync=False)
    acked: list[int] = []
    spool.put(["x" * 60 + " 1"], lambda: acked.append(1))
    wait_for(lambda: acked == [1])
    spool.put(["y" * 60 + " 2"], lambda: acked.append(2))  # does not fit beside the first
    time.sleep(0.3)
    assert acked == [1]
    batch = spool.read(10, 1.0)
    assert batch is not None and len(batch.lines) == 1
    spool.done(batch)
    wait_for(lambda: acked == [1, 2])
    spool.close()
    spool.close_reader()


def test_mark_stored_waits_for_the_store(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync=False)
    spool.put(["m v=1 1"])
    done = threading.Event()
    spool.mark_stored(done)
    time.sleep(0.1)
    assert not done.is_set()
    drain_all(spool)
    assert done.wait(2.0)
    empty = threading.Event()
    spool.mark_stored(empty)  # nothing pending: at once
    assert empty.wait(2.0)
    spool.close()
    spool.close_reader()


class ScriptedWriter:
    """Fails as told, records what it stored."""

    name = "scripted"

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.outage = 0  # fail this many more calls
        self.retry_after: float | None = None
        self.calls = 0

    def write(self, lines: list[str]) -> None:
        self.calls += 1
        if self.outage:
            self.outage -= 1
            raise StoreUnavailable("HTTP 503: busy", self.retry_after)
        if any("bad" in ln for ln in lines):
            raise StoreRejected("HTTP 400: unable to parse 'bad'")
        self.stored += lines

    def close(self) -> None:
        pass


def test_the_sink_retries_an_unavailable_store_and_keeps_order(tmp_path: Path) -> None:
    writer = ScriptedWriter()
    writer.outage, writer.retry_after = 2, 0.1  # honoured, with a floor of 0.5 s
    sink = StoreSink(writer, Spool(tmp_path / "spool", fsync=False), Quarantine(None))
    for i in range(50):
        sink.put([f"m v={i} {i}"])
    assert sink.flush(10.0)
    assert writer.stored == [f"m v={i} {i}" for i in range(50)]
    assert sink.retries == 2 and not sink.failing
    sink.close(5.0)


def test_the_sink_quarantines_exactly_the_lines_the_store_refuses(tmp_path: Path) -> None:
    writer = ScriptedWriter()
    quarantine = Quarantine(tmp_path / "q.jsonl")
    sink = StoreSink(writer, Spool(tmp_path / "spool", fsync=False), quarantine, batch_lines=64)
    lines = [f"m v={i} {i}" if i not in (7, 40) else f"bad {i}" for i in range(64)]
    sink.put(lines)
    assert sink.flush(10.0)
    assert writer.stored == [ln for ln in lines if not ln.startswith("bad")]
    assert sink.rejected == 2
    assert writer.calls < 30  # bisection, not one request per line
    quarantine.close()
    text = (tmp_path / "q.jsonl").read_text()
    assert text.count(STORE_REJECTED) == 2 and "bad 7" in text and "bad 40" in text
    sink.close(5.0)


def test_stopping_during_an_outage_leaves_the_lines_for_the_next_start(tmp_path: Path) -> None:
    writer = ScriptedWriter()
    writer.outage = 10**9
    sink = StoreSink(writer, Spool(tmp_path / "spool", fsync=False), Quarantine(None))
    sink.put(["m v=1 1", "m v=2 2"])
    time.sleep(0.3)
    sink.close(1.0)
    writer.outage = 0
    sink2 = StoreSink(writer, Spool(tmp_path / "spool", fsync=False), Quarantine(None))
    assert sink2.flush(5.0)
    assert writer.stored == ["m v=1 1", "m v=2 2"]
    sink2.close(5.0)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_the_flood_guard_throttles_only_the_flooding_gateway_and_lifts() -> None:
    clock = FakeClock()
    guard = FloodGuard(bad_per_s=10, bad_burst=50, throttled_per_s=5, clock=clock)
    for _ in range(50):
        guard.rejected("t/bad")
    assert guard.admit("t/bad") and guard.throttled() == 0
    guard.rejected("t/bad")  # the 51st within the same instant
    assert guard.throttled() == 1
    admitted = sum(guard.admit("t/bad") for _ in range(1000))
    assert admitted == 5  # its per-second reading budget
    assert guard.admit("t/good")  # others untouched
    assert guard.sample("t/bad") == 995 and guard.sample("t/bad") == 0  # once per second
    clock.t += 1.0
    assert sum(guard.admit("t/bad") for _ in range(100)) == 5
    clock.t += 3.0  # refilled to over half: lifted
    assert guard.admit("t/bad") and guard.throttled() == 0


@pytest.mark.parametrize(
    "value, expected", [("120", 120.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 60.0), ("x", None)]
)
def test_retry_after_takes_seconds_or_an_http_date(value: str, expected: float | None) -> None:
    from cloud.writers.influx import retry_after_s

    now = datetime.fromisoformat("2015-10-21T07:27:00+00:00").timestamp()
    assert retry_after_s(value, now=now) == expected


def test_two_processes_cannot_share_a_spool(tmp_path: Path) -> None:
    from cloud.spool import SpoolBusy

    first = Spool(tmp_path, fsync=False)
    with pytest.raises(SpoolBusy, match="in use"):
        Spool(tmp_path, fsync=False)
    first.close()
    first.close_reader()
    second = Spool(tmp_path, fsync=False)  # free again
    second.close()
    second.close_reader()
