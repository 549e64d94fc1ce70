"""The checklist's items: a status word, where, what, and a detail for the technician."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

OnItem = Callable[["CheckItem"], None]


class Status(enum.Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class CheckItem:
    section: str  # "config", "secrets", "clock", "bus plc-tcp", "sensor river-radar-01", "broker"
    name: str  # short: "answers", "TLS handshake", "login", ...
    status: Status
    detail: str  # for a technician in the field: what was seen, and for FAIL what to do next


class Checklist:
    """Collects items in order and hands each to `on_item` as soon as it is known."""

    def __init__(self, on_item: OnItem | None) -> None:
        self.items: list[CheckItem] = []
        self._on_item = on_item

    def add(self, section: str, name: str, status: Status, detail: str) -> CheckItem:
        item = CheckItem(section, name, status, detail)
        self.items.append(item)
        if self._on_item is not None:
            self._on_item(item)
        return item
