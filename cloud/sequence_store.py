"""Sequence accounting kept across consumer restarts (cloud.sequence), in the alert state file.

Without it a restarted consumer would forget the gaps it had seen: numbers lost before the
restart would stop counting as lost, and a QoS 1 redelivery after a crash would look new instead
of duplicated.  The gateways whose accounting changed are written once per tick (one
transaction); a crash loses at most the last second of accounting, which then shows a few
redelivered messages as new, never a reading.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import msgspec

from cloud.sequence import GatewaySeq, SequenceTracker

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS sequences (
    tenant TEXT NOT NULL, gateway TEXT NOT NULL, state BLOB NOT NULL,
    PRIMARY KEY (tenant, gateway)
) WITHOUT ROWID;
"""


class SequenceStore:
    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(GatewaySeq)

    def load(self, tracker: SequenceTracker) -> int:
        """Put the stored accounting into `tracker`; returns the number of gateways."""
        n = 0
        for tenant, gateway, blob in self._db.execute("SELECT tenant, gateway, state FROM sequences"):
            try:
                tracker.gateways[(str(tenant), str(gateway))] = self._decoder.decode(blob)
                n += 1
            except msgspec.DecodeError as exc:  # a newer/older layout: start that gateway afresh
                log.warning(
                    "sequence state of %s/%s unreadable (%s); starting it afresh", tenant, gateway, exc
                )
        return n

    def save(self, tracker: SequenceTracker) -> None:
        """Write the gateways whose accounting changed since the last save."""
        if not tracker.changed:
            return
        keys, tracker.changed = tracker.changed, set()
        rows = [
            (t, g, self._encoder.encode(tracker.gateways[(t, g)]))
            for t, g in keys
            if (t, g) in tracker.gateways
        ]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO sequences VALUES (?,?,?)", rows)

    def close(self) -> None:
        self._db.close()
