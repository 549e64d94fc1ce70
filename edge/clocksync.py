"""Is the system clock synchronized?  Sample times are only as good as the gateway's clock.

A gateway without a battery-backed clock boots at the time it was switched off (or 1970) and
keeps that until NTP (or GPS) sets it.  Readings taken meanwhile carry wrong sample times,
which the cloud rejects as too old or, worse, accepts at the wrong place in a series.  The
kernel knows whether its clock is disciplined: `adjtimex(2)` returns TIME_ERROR (5) while it is
not.  The agent reports this in its health message and warns at start; fixing the clock is the
OS's job (chrony or systemd-timesyncd on the gateway image).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

TIME_ERROR = 5  # adjtimex: "clock not synchronized"
_TIMEX_BYTES = 512  # struct timex is 208 bytes on 64-bit Linux; zeroed, so modes = 0: read only


def clock_synchronized() -> bool | None:
    """True or False on Linux; None where it cannot be told (other systems, no libc)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        state = libc.adjtimex(ctypes.create_string_buffer(_TIMEX_BYTES))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return bool(state != TIME_ERROR)
