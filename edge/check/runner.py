"""The checklist in order, and the command's front end that runs it and prints it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import TextIO

from edge.check.broker import check_broker_steps
from edge.check.buses import check_bus, check_sensors
from edge.check.items import CheckItem, Checklist, OnItem
from edge.check.local import check_clock, check_config, check_secrets
from edge.check.output import (
    DEFAULT_BAUDS,
    DEFAULT_UNITS,
    checklist_json,
    column_widths,
    exit_code,
    format_item,
    format_summary,
)
from edge.config import LoadedGateway


async def run_checks(
    loaded: LoadedGateway,
    *,
    scan: bool = True,
    scan_bauds: Sequence[int] = DEFAULT_BAUDS,
    scan_units: Sequence[int] = DEFAULT_UNITS,
    broker_timeout: float = 10.0,
    on_item: OnItem | None = None,
) -> list[CheckItem]:
    """The whole checklist, in order; `on_item` sees each item as it completes."""
    out = Checklist(on_item)
    check_config(loaded, out)
    check_secrets(loaded, out)
    check_clock(out)
    usable: set[str] = set()
    for bus in loaded.config.buses:
        if await check_bus(loaded, bus, out, scan=scan, bauds=scan_bauds, units=scan_units):
            usable.add(bus.id)
    await check_sensors(loaded, usable, out)
    await check_broker_steps(loaded, broker_timeout, out)
    return out.items


async def check_broker(
    loaded: LoadedGateway, *, timeout: float = 10.0, on_item: OnItem | None = None
) -> list[CheckItem]:
    """Only the broker part of the checklist: DNS, TCP, TLS, login."""
    out = Checklist(on_item)
    await check_broker_steps(loaded, timeout, out)
    return out.items


def run_and_print(
    loaded: LoadedGateway,
    *,
    scan: bool = True,
    scan_bauds: Sequence[int] = DEFAULT_BAUDS,
    scan_units: Sequence[int] = DEFAULT_UNITS,
    broker_timeout: float = 10.0,
    as_json: bool = False,
    color: bool | None = None,
    stream: TextIO | None = None,
    title: str | None = None,
) -> int:
    """Run the checklist and print it (items as they complete, or JSON at the end); the exit
    code: 0 if nothing failed, 1 otherwise.  `color` None: when writing to a terminal.  `title`:
    the first line of the text output (default: gateway, tenant and config path)."""
    out = stream if stream is not None else sys.stdout
    if color is None:
        color = not as_json and out.isatty()
    on_item: OnItem | None = None
    if not as_json:
        cfg = loaded.config
        if title is None:
            title = f"on-site check of gateway {cfg.gateway} (tenant {cfg.tenant}), config {loaded.path}"
        print(title, file=out)
        widths = column_widths(loaded, scan_bauds)

        def on_item(item: CheckItem) -> None:
            line = format_item(item, color=bool(color), section_width=widths[0], name_width=widths[1])
            print(line, file=out, flush=True)

    with _agent_logs_quiet():
        items = asyncio.run(
            run_checks(
                loaded,
                scan=scan,
                scan_bauds=scan_bauds,
                scan_units=scan_units,
                broker_timeout=broker_timeout,
                on_item=on_item,
            )
        )
    if as_json:
        print(checklist_json(items), file=out)
    else:
        print(file=out)
        print(format_summary(items, color=bool(color)), file=out)
    return exit_code(items)


@contextlib.contextmanager
def _agent_logs_quiet() -> Iterator[None]:
    """The poller's "sensor X cannot read" warnings repeat checklist items; hide them unless
    the log level is DEBUG (errors, such as a driver bug, still show)."""
    poller = logging.getLogger("edge.poller")
    before = poller.level
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        poller.setLevel(logging.ERROR)
    try:
        yield
    finally:
        poller.setLevel(before)
