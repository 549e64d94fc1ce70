"""Recent clean samples of the series whose detectors need long history, kept on disk so that a
consumer restart does not blind them: 24 h of new snowfall (a restart mid-blizzard would
otherwise restart the count at zero and a plow dispatch could come a day late) and the
inverse-velocity forecast (36 h of history before it forecasts).  Short-window detectors (levels,
rates, trends, quality) warm up in minutes and are not journalled.

At start the engine is fed the journal silently (cloud.detect.engine.Engine.warm_up), then the
alert store's levels are restored on top.  Writes are batched per tick (one transaction a
second); a crash loses at most the last second of warm-up data, never a reading (those are in
the time-series store).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from cloud.registry import Channel

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    tenant TEXT NOT NULL, sensor TEXT NOT NULL, kind TEXT NOT NULL, t REAL NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (tenant, sensor, kind, t)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS journal_t ON journal(t);
"""
PRUNE_EVERY_S = 600.0


def journalled(channel: Channel) -> bool:
    """Channels whose detectors need more history than a restart can wait for."""
    return channel.snowfall or channel.failure_forecast is not None


def keep_s(channel: Channel) -> float:
    """How much history the channel's detectors use."""
    keep = 25 * 3600.0 if channel.snowfall else 0.0
    ff = channel.failure_forecast
    if ff is not None:
        keep = max(keep, 1.5 * ff.fit_window_s + ff.bin_s)
    return keep


class Journal:
    def __init__(self, path: Path | str, keep_s: float) -> None:
        self.keep_s = keep_s
        self._db = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._pending: list[tuple[str, str, str, float, float]] = []
        self._pruned_at: float | None = None

    def add(self, tenant: str, sensor: str, kind: str, t: float, value: float) -> None:
        self._pending.append((tenant, sensor, kind, t, value))

    def flush(self, now: float) -> None:
        """Write what was added since the last flush; prune old samples now and then."""
        if self._pending:
            rows, self._pending = self._pending, []
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO journal VALUES (?,?,?,?,?)", rows)
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now
            self._db.execute("DELETE FROM journal WHERE t < ?", (now - self.keep_s,))

    def samples(self, since: float) -> Iterator[tuple[str, str, str, float, float]]:
        """Every journalled sample newer than `since`, per series in time order."""
        rows = self._db.execute(
            "SELECT tenant, sensor, kind, t, value FROM journal WHERE t >= ? "
            "ORDER BY tenant, sensor, kind, t",
            (since,),
        )
        for tenant, sensor, kind, t, value in rows:
            yield str(tenant), str(sensor), str(kind), float(t), float(value)

    def close(self) -> None:
        self._db.close()
