"""The consumer's side of the broker's security events: counted by kind, logged with their
source, at most once a minute per source."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cloud.brokerlog import SecurityEvent
from cloud.security import BrokerSecurity


def event(kind: str, source: str) -> SecurityEvent:
    return SecurityEvent(kind, "", source, "", "Client <unknown> disconnected, not authorised.", 0.0)


def test_events_are_counted_by_kind_and_logged_once_a_minute_per_source(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    security = BrokerSecurity(tmp_path / "mosquitto.log")
    with caplog.at_level(logging.WARNING, logger="cloud.security"):
        for port in range(100):  # a brute-force attempt from one address
            security.record(event("auth_failed", f"203.0.113.7:{40000 + port}"))
        security.record(event("auth_failed", "198.51.100.2:5000"))
        security.record(event("acl_denied", "203.0.113.7:41000"))
    assert security.by_kind() == {"auth_failed": 101, "acl_denied": 1}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith("security: broker auth_failed from 203.0.113.7:40000")
    assert "198.51.100.2:5000" in lines[1] and "acl_denied" in lines[2]
