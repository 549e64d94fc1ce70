"""The embedded default store: line protocol appended to one file per UTC day.

Files are named `readings-YYYYMMDD.lp` after the UTC day of each point's timestamp (alert points
go to the same files), so a late replayed reading lands next to its neighbours.  The files need
no server and can be loaded into any InfluxDB later (`influx write --precision ms`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from cloud.lineproto import ParsedLine, parse_line
from cloud.writers import StoreUnavailable

log = logging.getLogger(__name__)

_DAY_MS = 86_400_000
_MAX_OPEN = 4  # today, yesterday and a replayed day or two


class LpFileWriter:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = f"line-protocol files in {directory}"
        self._files: OrderedDict[int, TextIO] = OrderedDict()

    def write(self, lines: list[str]) -> None:
        """Append and flush to the OS (so a killed process loses nothing); a failing disk is
        StoreUnavailable: the batch stays in the spool and comes again (lines of it that were
        already appended are then in the file twice; loading them into InfluxDB overwrites
        the copies, the points being keyed by sample time)."""
        touched: set[int] = set()
        try:
            for ln in lines:
                day = int(ln.rsplit(" ", 1)[1]) // _DAY_MS
                self._file(day).write(ln + "\n")
                touched.add(day)
            for day in touched:
                if day in self._files:
                    self._files[day].flush()
        except OSError as exc:
            raise StoreUnavailable(f"{self.directory}: {exc}") from None

    def close(self) -> None:
        for f in self._files.values():
            try:
                f.close()
            except OSError as exc:
                log.warning("cannot close a line-protocol file in %s: %s", self.directory, exc)
        self._files.clear()

    def _file(self, day: int) -> TextIO:
        f = self._files.get(day)
        if f is not None:
            self._files.move_to_end(day)
            return f
        self.directory.mkdir(parents=True, exist_ok=True)
        name = datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("readings-%Y%m%d.lp")
        f = open(self.directory / name, "a", encoding="utf-8")  # noqa: SIM115 - kept open across writes
        self._files[day] = f
        while len(self._files) > _MAX_OPEN:
            _, oldest = self._files.popitem(last=False)
            oldest.close()
        return f


def read_lp_file(path: Path) -> Iterator[ParsedLine]:
    """Every point in a line-protocol file (blank lines and # comments skipped)."""
    with open(path, encoding="utf-8") as f:
        for n, text in enumerate(f, start=1):
            text = text.rstrip("\n")
            if not text.strip() or text.startswith("#"):
                continue
            try:
                yield parse_line(text)
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: {exc}") from None


def read_lp_dir(directory: Path) -> Iterator[ParsedLine]:
    """Every point in a store directory, day file by day file (oldest first)."""
    for path in sorted(directory.glob("readings-*.lp")):
        yield from read_lp_file(path)
