"""Time-series writers: where accepted readings and alert points end up.

A writer takes line-protocol lines (see cloud.points) and must never block the caller for long;
the consumer calls it from its own store thread anyway (cloud.sink), so a slow database never
delays detection or alerts.  Adding a store is one module here plus a branch in `open_writer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from cloud.config import InfluxStore, LineProtocolFileStore, Store, resolve


class Writer(Protocol):
    @property
    def written(self) -> int:
        """Lines the store has accepted."""
        ...

    @property
    def failed(self) -> int:
        """Lines given up on (after retries)."""
        ...

    def write(self, lines: list[str]) -> None: ...

    def flush(self) -> None:
        """Return once every line written so far is stored or given up on (bounded wait)."""
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
    """The same lines to a primary store and an archive; counters are the primary's."""

    def __init__(self, primary: Writer, archive: Writer) -> None:
        self.primary = primary
        self.archive = archive

    @property
    def written(self) -> int:
        return self.primary.written

    @property
    def failed(self) -> int:
        return self.primary.failed

    def write(self, lines: list[str]) -> None:
        self.primary.write(lines)
        self.archive.write(lines)

    def flush(self) -> None:
        self.primary.flush()
        self.archive.flush()

    def close(self) -> None:
        try:
            self.primary.close()
        finally:
            self.archive.close()
