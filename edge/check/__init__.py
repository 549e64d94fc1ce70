"""The technician's on-site checklist: is this gateway ready to hand over?

`run_checks` goes through, in order: the config, the secret files, the system clock, every bus
(the port opens; with `scan`, which unit ids answer at which baud), every sensor read once with
its normal driver (the path of `bosai edge run --once`), and the broker (DNS, TCP, TLS with
verification, MQTT login with the gateway's credentials, then disconnect; nothing is published,
because the cloud watches the gateway's status topic).  Each step is a `CheckItem` whose detail
is written for someone in the field: what was seen, and for a FAIL what to do next.

It opens the serial ports itself, so it is run with the agent stopped; a port the agent holds is
reported as busy, and while the agent holds its outbox the MQTT login is skipped (the broker
makes the login the client id: logging in would disconnect the agent).  No secret is ever part
of an item: files are named, never shown.

The modules: `items` (what a check yields), `local` (config, secrets, clock), `buses` (bus scans
and sensor reads), `broker` (DNS to MQTT login), `output` (text, JSON, exit code, command-line
values, shared wording) and `runner` (the order, and the command's front end).
"""

from __future__ import annotations

from edge.check.buses import _judge_readings as _judge_readings  # the unit tests judge readings directly
from edge.check.items import CheckItem, OnItem, Status
from edge.check.output import (
    DEFAULT_BAUDS,
    DEFAULT_UNITS,
    checklist_json,
    column_widths,
    exit_code,
    format_checklist,
    format_item,
    format_summary,
    parse_bauds,
    parse_units,
)
from edge.check.runner import check_broker, run_and_print, run_checks

__all__ = [
    "DEFAULT_BAUDS",
    "DEFAULT_UNITS",
    "CheckItem",
    "OnItem",
    "Status",
    "check_broker",
    "checklist_json",
    "column_widths",
    "exit_code",
    "format_checklist",
    "format_item",
    "format_summary",
    "parse_bauds",
    "parse_units",
    "run_and_print",
    "run_checks",
]
