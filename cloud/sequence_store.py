"""Sequence accounting kept across consumer restarts (cloud.sequence), in the alert state file.

Without it a restarted consumer would forget the gaps it had seen: numbers lost before the
restart would stop counting as lost, and a QoS 1 redelivery after a crash would look new instead
of duplicated.  The consumer saves the gateways whose accounting changed before it acknowledges
their messages (one transaction per group of acknowledgements), so after a crash every
acknowledged number is on record: the messages not on record are exactly those the broker
redelivers.
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
    def __init__(self, path: Path | str, *, fsync: bool = True) -> None:
        """`fsync` as the spool's: without it a commit survives a process crash but maybe not a
        power cut (then the last acknowledged numbers would show as lost; no reading is)."""
        self._db = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
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
