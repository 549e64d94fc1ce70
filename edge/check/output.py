"""How the checklist is shown: aligned text (item by item as they complete), JSON, the summary
and the exit code; the command-line values (--scan-bauds, --scan-units); and the wording helpers
the checks share."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from edge.check.items import CheckItem, Status
from edge.config import LoadedGateway, ModbusTcpBus

DEFAULT_BAUDS = (9600, 19200, 38400, 4800, 115200)
DEFAULT_UNITS = range(1, 17)


_COLORS = {
    Status.PASS: "\033[32m",
    Status.WARN: "\033[33m",
    Status.FAIL: "\033[1;31m",
    Status.SKIP: "\033[2m",
}
_RESET = "\033[0m"


def column_widths(loaded: LoadedGateway, scan_bauds: Sequence[int] = DEFAULT_BAUDS) -> tuple[int, int]:
    """Section and name widths that fit every item of this gateway's checklist (for printing
    items one by one as they complete, aligned)."""
    cfg = loaded.config
    sections = ["secrets", *(f"bus {b.id}" for b in cfg.buses), *(f"sensor {s.id}" for s in cfg.sensors)]
    bauds = [*scan_bauds, *(b.baudrate for b in cfg.buses if not isinstance(b, ModbusTcpBus))]
    names = ["TLS handshake", *(f"answers at {b} baud" for b in bauds)]
    return max(map(len, sections)), max(map(len, names))


def format_item(item: CheckItem, *, color: bool, section_width: int = 0, name_width: int = 0) -> str:
    word = item.status.value
    if color:
        word = f"{_COLORS[item.status]}{word}{_RESET}"
    return f"{word}  {item.section.ljust(section_width)}  {item.name.ljust(name_width)}  {item.detail}"


def counts(items: Sequence[CheckItem]) -> dict[str, int]:
    def n(status: Status) -> int:
        return sum(1 for i in items if i.status is status)

    return {
        "passed": n(Status.PASS),
        "failed": n(Status.FAIL),
        "warnings": n(Status.WARN),
        "skipped": n(Status.SKIP),
    }


def format_summary(items: Sequence[CheckItem], *, color: bool) -> str:
    """`12 passed, 1 failed, 1 warning` (warnings and skipped only when there are any)."""
    c = counts(items)
    parts = [f"{c['passed']} passed", f"{c['failed']} failed"]
    if c["warnings"]:
        parts.append(count(c["warnings"], "warning"))
    if c["skipped"]:
        parts.append(f"{c['skipped']} skipped")
    line = ", ".join(parts)
    if color:
        line = f"{_COLORS[Status.FAIL if c['failed'] else Status.PASS]}{line}{_RESET}"
    return line


def format_checklist(items: Sequence[CheckItem], *, color: bool) -> str:
    """Aligned columns STATUS SECTION CHECK DETAIL (status as a word, colour only added), then a
    blank line and the summary."""
    section_width = max((len(i.section) for i in items), default=0)
    name_width = max((len(i.name) for i in items), default=0)
    lines = [format_item(i, color=color, section_width=section_width, name_width=name_width) for i in items]
    return "\n".join([*lines, "", format_summary(items, color=color)])


class _JsonItem(msgspec.Struct):
    section: str
    name: str
    status: str
    detail: str


class _JsonChecklist(msgspec.Struct):
    ok: bool
    summary: dict[str, int]
    items: list[_JsonItem]


def checklist_json(items: Sequence[CheckItem]) -> str:
    """`{"ok": ..., "summary": {"passed": ...}, "items": [{"section", "name", "status", "detail"}]}`"""
    doc = _JsonChecklist(
        ok=not any(i.status is Status.FAIL for i in items),
        summary=counts(items),
        items=[_JsonItem(i.section, i.name, i.status.value, i.detail) for i in items],
    )
    return msgspec.json.format(msgspec.json.encode(doc).decode(), indent=2)


def exit_code(items: Sequence[CheckItem]) -> int:
    """0 if nothing failed, 1 otherwise."""
    return 1 if any(i.status is Status.FAIL for i in items) else 0


# -- command-line values and wording --------------------------------------------------------------


def parse_bauds(text: str) -> list[int]:
    """ "9600,19200" -> [9600, 19200]; ValueError in words."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not 50 <= int(part) <= 4_000_000:
            raise ValueError(f"{part!r} is not a baud rate (e.g. 9600,19200)")
        out.append(int(part))
    return list(dict.fromkeys(out))


def parse_units(text: str) -> list[int]:
    """ "1-16,20" -> [1, ..., 16, 20] (Modbus unit ids 0-247); ValueError in words."""
    out: set[int] = set()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"{part.strip()!r} is not a unit id or range (e.g. 1-16,20)")
        first, last = int(lo), int(hi) if sep else int(lo)
        if first > last or last > 247:
            raise ValueError(f"{part.strip()!r}: unit ids run from 0 to 247, low to high")
        out.update(range(first, last + 1))
    return sorted(out)


def count(n: int, word: str, plural: str | None = None) -> str:
    """`1 sensor`, `3 sensors`; `plural` where adding an s is wrong (`2 buses`)."""
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def join(values: Sequence[object]) -> str:
    """`9600, 19200`: a list as it reads in a detail."""
    return ", ".join(str(v) for v in values)


def unit_list(units: Sequence[int]) -> str:
    """`units 1-16, 20` / `units 2, 3, 4` / `unit 4`: four or more consecutive ids as a range."""
    ids = sorted(set(units))
    if not ids:
        return "no units"
    runs: list[str] = []
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        if j - i >= 3:  # four or more in a row
            runs.append(f"{ids[i]}-{ids[j]}")
        else:
            runs += [str(u) for u in ids[i : j + 1]]
        i = j + 1
    return f"{'unit' if len(ids) == 1 else 'units'} {', '.join(runs)}"
