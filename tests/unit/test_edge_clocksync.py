"""The clock check asks the kernel; whatever this machine says, the answer is a bool on Linux."""

from __future__ import annotations

import ctypes
import sys

import pytest

from edge import clocksync


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adjtimex is Linux")
def test_linux_gives_a_bool_that_matches_adjtimex() -> None:
    libc = ctypes.CDLL(None)
    state = libc.adjtimex(ctypes.create_string_buffer(512))
    assert clocksync.clock_synchronized() is (state != clocksync.TIME_ERROR)


def test_other_systems_say_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert clocksync.clock_synchronized() is None
