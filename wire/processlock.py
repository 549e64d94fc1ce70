"""One process at a time on a piece of state: the edge agent's outbox, the consumer's spool.

An exclusive `flock` on a lock file, held for the process's lifetime and released by the OS
when the process dies, so a `kill -9` never leaves a stale lock behind.  The file holds the
holder's pid, so that the refusal can say who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import BinaryIO


def hold(path: Path) -> BinaryIO | None:
    """The lock on `path` for as long as the returned file stays open; None if another holds it."""
    f = open(path, "ab+")  # noqa: SIM115 - held open as the lock
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    f.truncate(0)
    f.write(f"{os.getpid()}\n".encode())
    f.flush()
    return f


def holder(path: Path) -> str:
    """Who holds the lock on `path`, for a message: "process 1234", or "another process"."""
    with contextlib.suppress(OSError, ValueError):
        return f"process {int(path.read_text().split()[0])}"
    return "another process"


def held_by_another(path: Path) -> bool:
    """Whether another process holds the lock on `path` now (taken and released at once if free)."""
    if not path.exists():
        return False
    with open(path, "rb") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return False
