"""Time-series writers: where the spool's lines end up (readings, alerts, detections, health).

A writer stores one batch synchronously and says what went wrong in one of two ways, because
the two call for opposite handling (cloud.sink):

- `StoreUnavailable`: the store cannot take anything now (down, timeout, 429/5xx, bad
  credentials); the same batch is tried again later, honouring `retry_after`;
- `StoreRejected`: the store refuses this data (a 4xx about the lines themselves); retrying
  would fail forever, so the batch is split to find the bad lines, which are quarantined.

Adding a store is one module here plus a branch in `open_writer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from cloud.config import InfluxStore, LineProtocolFileStore, Store, resolve


class StoreUnavailable(Exception):
    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after  # seconds the store asked us to wait (Retry-After)


class StoreRejected(Exception):
    """The store refused the lines themselves (e.g. HTTP 400 or 422)."""


class Writer(Protocol):
    name: str  # for logs: the store's URL or directory (never credentials)

    def write(self, lines: list[str]) -> None:
        """Store `lines`; on return they are stored.  Raises StoreUnavailable or StoreRejected."""
        ...

    def close(self) -> None: ...


def open_writer(store: Store, config_path: Path) -> Writer:
    """The writer for a store config; relative paths are relative to `config_path`."""
    if isinstance(store, LineProtocolFileStore):
        from cloud.writers.lpfile import LpFileWriter

        return LpFileWriter(resolve(config_path, store.path))
    assert isinstance(store, InfluxStore)
    from cloud.writers.influx import InfluxWriter

    return InfluxWriter(store, config_path)


class TeeWriter:
    """The same lines to a primary store and an archive: a batch is done when both have it
    (re-writing it to the one that already had it is harmless: points overwrite themselves)."""

    def __init__(self, primary: Writer, archive: Writer) -> None:
        self.primary = primary
        self.archive = archive
        self.name = f"{primary.name} + {archive.name}"

    def write(self, lines: list[str]) -> None:
        self.primary.write(lines)
        self.archive.write(lines)

    def close(self) -> None:
        try:
            self.primary.close()
        finally:
            self.archive.close()
