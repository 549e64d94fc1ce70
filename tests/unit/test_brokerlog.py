"""Security events from Mosquitto's log: parsing real Mosquitto 2.0.11 lines (captured from the
broker started with provision.mosquitto.broker_conf, each failure provoked for real, see
tests/integration/test_broker_security.py) and following the file through rotation."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud.brokerlog import (
    ACL_DENIED,
    AUTH_FAILED,
    MAX_DETAIL,
    TLS_FAILED,
    BrokerLogFollower,
    ConnectionTable,
    SecurityEvent,
    parse,
)
from tests.waiting import wait_for

# One broker's log, in order: a readiness probe, a good login, two denied publishes, wrong
# password, unknown user and anonymous logins, plain MQTT to the TLS port (logged both ways seen),
# a gateway with a certificate, no certificate, a certificate from another CA, a revoked
# certificate after a reload, and a revoked password after a reload.
REAL_LOG = """\
2026-12-06T07:23:52: mosquitto version 2.0.11 starting
2026-12-06T07:23:52: Config loaded from /tmp/bsexp/run1/bosai.conf.
2026-12-06T07:23:52: Opening ipv4 listen socket on port 47353.
2026-12-06T07:23:52: Opening ipv4 listen socket on port 33275.
2026-12-06T07:23:52: mosquitto version 2.0.11 running
2026-12-06T07:30:31+0000: Client connection from 127.0.0.1 failed: error:0A000126:SSL routines::unexpected eof while reading.
2026-12-06T07:23:53: New connection from 127.0.0.1:50685 on port 47353.
2026-12-06T07:23:53: New client connected from 127.0.0.1:50685 as t1-gwa (p5, c1, k60, u't1/gwa').
2026-12-06T07:23:53: No will message specified.
2026-12-06T07:23:53: Sending CONNACK to t1-gwa (0, 0)
2026-12-06T07:23:53: Denied PUBLISH from t1-gwa (d0, q1, r0, m1, 'bosai/v1/t1/gwb/telemetry', ... (1 bytes))
2026-12-06T07:23:53: Sending PUBACK to t1-gwa (m1, rc135)
2026-12-06T07:23:54: Denied PUBLISH from t1-gwa (d0, q1, r0, m2, 'bosai/v1/t2/gwa/telemetry', ... (1 bytes))
2026-12-06T07:23:54: Sending PUBACK to t1-gwa (m2, rc135)
2026-12-06T07:23:54: Received PUBLISH from t1-gwa (d0, q1, r0, m3, 'bosai/v1/t1/gwa/telemetry', ... (1 bytes))
2026-12-06T07:23:54: Sending PUBACK to t1-gwa (m3, rc16)
2026-12-06T07:23:54: Received SUBSCRIBE from t1-gwa
2026-12-06T07:23:54: \t# (QoS 1)
2026-12-06T07:23:54: t1-gwa 1 #
2026-12-06T07:23:54: Sending SUBACK to t1-gwa
2026-12-06T07:23:54: Received DISCONNECT from t1-gwa
2026-12-06T07:23:54: Client t1-gwa disconnected.
2026-12-06T07:23:55: New connection from 127.0.0.1:37587 on port 47353.
2026-12-06T07:23:55: Sending CONNACK to 127.0.0.1 (0, 135)
2026-12-06T07:23:55: Client <unknown> disconnected, not authorised.
2026-12-06T07:23:55: New connection from 127.0.0.1:35731 on port 47353.
2026-12-06T07:23:55: Sending CONNACK to 127.0.0.1 (0, 135)
2026-12-06T07:23:55: Client <unknown> disconnected, not authorised.
2026-12-06T07:23:56: New connection from 127.0.0.1:50733 on port 47353.
2026-12-06T07:23:56: Sending CONNACK to 127.0.0.1 (0, 135)
2026-12-06T07:23:56: Client <unknown> disconnected, not authorised.
2026-12-06T07:23:56: Client connection from 127.0.0.1 failed: error:0A00010B:SSL routines::wrong version number.
2026-12-06T07:30:10+0000: New connection from 127.0.0.1:43799 on port 47353.
2026-12-06T07:30:10+0000: OpenSSL Error[0]: error:0A00010B:SSL routines::wrong version number
2026-12-06T07:30:10+0000: Client <unknown> disconnected: Protocol error.
2026-12-06T07:23:57: New connection from 127.0.0.1:34733 on port 33275.
2026-12-06T07:23:57: New client connected from 127.0.0.1:34733 as anon (p5, c1, k60, u't1/gwc').
2026-12-06T07:23:57: No will message specified.
2026-12-06T07:23:57: Sending CONNACK to anon (0, 0)
2026-12-06T07:23:57: Denied PUBLISH from anon (d0, q1, r0, m1, 'bosai/v1/t1/gwb/telemetry', ... (1 bytes))
2026-12-06T07:23:57: Sending PUBACK to anon (m1, rc135)
2026-12-06T07:23:58: New connection from 127.0.0.1:40941 on port 33275.
2026-12-06T07:23:58: OpenSSL Error[0]: error:0A0000C7:SSL routines::peer did not return a certificate
2026-12-06T07:23:58: Client <unknown> disconnected: Protocol error.
2026-12-06T07:23:58: OpenSSL Error[0]: error:0A000126:SSL routines::unexpected eof while reading
2026-12-06T07:23:58: Client anon closed its connection.
2026-12-06T07:23:59: New connection from 127.0.0.1:40443 on port 33275.
2026-12-06T07:23:59: OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed
2026-12-06T07:23:59: Client <unknown> disconnected: Protocol error.
2026-12-06T07:24:01: Reloading config.
2026-12-06T07:30:13+0000: Client connection from 127.0.0.1 failed: error:0A000086:SSL routines::certificate verify failed.
2026-12-06T07:24:02: New connection from 127.0.0.1:32923 on port 47353.
2026-12-06T07:24:02: Sending CONNACK to 127.0.0.1 (0, 135)
2026-12-06T07:24:02: Client <unknown> disconnected, not authorised.
2026-12-06T07:24:04: mosquitto version 2.0.11 terminating
"""  # noqa: E501 (real log lines, unchanged)

EXPECTED = [
    (ACL_DENIED, "t1-gwa", "127.0.0.1:50685", "t1/gwa", "bosai/v1/t1/gwb/telemetry"),
    (ACL_DENIED, "t1-gwa", "127.0.0.1:50685", "t1/gwa", "bosai/v1/t2/gwa/telemetry"),
    (AUTH_FAILED, "", "127.0.0.1:37587", "", "not authorised"),
    (AUTH_FAILED, "", "127.0.0.1:35731", "", "not authorised"),
    (AUTH_FAILED, "", "127.0.0.1:50733", "", "not authorised"),
    (TLS_FAILED, "", "127.0.0.1", "", "wrong version number"),
    (TLS_FAILED, "", "127.0.0.1:43799", "", "wrong version number"),
    (ACL_DENIED, "anon", "127.0.0.1:34733", "t1/gwc", "bosai/v1/t1/gwb/telemetry"),
    (TLS_FAILED, "", "127.0.0.1:40941", "", "peer did not return a certificate"),
    (TLS_FAILED, "", "127.0.0.1:40443", "", "certificate verify failed"),
    (TLS_FAILED, "", "127.0.0.1", "", "certificate verify failed"),
    (AUTH_FAILED, "", "127.0.0.1:32923", "", "not authorised"),
]


def events_of(text: str, table: ConnectionTable | None = None) -> list[SecurityEvent]:
    table = table if table is not None else ConnectionTable()
    return [e for line in text.splitlines() if (e := parse(line, table)) is not None]


def summary(events: list[SecurityEvent]) -> list[tuple[str, str, str, str]]:
    return [(e.kind, e.client_id, e.source, e.username) for e in events]


def test_real_log_gives_each_failure_with_its_source() -> None:
    events = events_of(REAL_LOG)
    assert summary(events) == [expected[:4] for expected in EXPECTED]
    for event, expected in zip(events, EXPECTED, strict=True):
        assert expected[4] in event.detail
        assert not event.detail.startswith("2026")  # the timestamp is not part of the broker's words
        assert event.at == pytest.approx(time.time(), abs=60)


def test_routine_lines_are_not_events() -> None:
    routine = [line for line in REAL_LOG.splitlines() if "unexpected eof" in line or "Received" in line]
    assert len(routine) >= 3
    assert events_of("\n".join(routine)) == []


def test_default_epoch_and_other_timestamp_formats() -> None:
    for prefix in ("1701234567: ", "07:23:55: ", "2026-12-06T07:23:55+0900: ", ""):
        lines = (
            f"{prefix}New connection from 10.1.2.3:40000 on port 8883.\n"
            f"{prefix}Client <unknown> disconnected, not authorised.\n"
        )
        assert summary(events_of(lines)) == [(AUTH_FAILED, "", "10.1.2.3:40000", "")], prefix


def test_concurrent_refusals_from_one_address_are_all_reported_with_that_address() -> None:
    # Real: two gateways cut off by a reload reconnected at once.
    log = """\
2026-12-06T07:27:30+0000: New connection from 127.0.0.1:37243 on port 35401.
2026-12-06T07:27:30+0000: New connection from 127.0.0.1:44801 on port 35401.
2026-12-06T07:27:30+0000: Sending CONNACK to 127.0.0.1 (0, 135)
2026-12-06T07:27:30+0000: Client <unknown> disconnected, not authorised.
2026-12-06T07:27:30+0000: Sending CONNACK to 127.0.0.1 (0, 135)
2026-12-06T07:27:30+0000: Client <unknown> disconnected, not authorised.
"""
    table = ConnectionTable()
    assert {e.source for e in events_of(log, table)} == {"127.0.0.1:37243", "127.0.0.1:44801"}
    assert len(table) == 0


def test_the_refusing_connack_picks_the_connection_of_its_address() -> None:
    log = """\
New connection from 10.0.0.1:1111 on port 8883.
New connection from 10.0.0.2:2222 on port 8883.
Sending CONNACK to 10.0.0.2 (0, 135)
Client <unknown> disconnected, not authorised.
"""
    assert [e.source for e in events_of(log)] == ["10.0.0.2:2222"]


def test_connections_that_end_unidentified_are_forgotten() -> None:
    table = ConnectionTable()
    events_of(REAL_LOG, table)
    # Only identified clients stay (for later ACL denials); no connection is left pending.
    assert table.client("t1-gwa") == ("127.0.0.1:50685", "t1/gwa")
    assert len(table) == 2


def test_connection_table_is_bounded() -> None:
    table = ConnectionTable(limit=100)
    for i in range(1000):
        parse(f"New connection from 10.0.{i // 256}.{i % 256}:{1000 + i} on port 8883.", table)
        parse(
            f"New client connected from 10.9.{i // 256}.{i % 256}:{i} as c{i} (p5, c1, k60, u't/g{i}').",
            table,
        )
    assert len(table) <= 200
    assert table.client("c999") == (f"10.9.3.{999 % 256}:999", "t/g999")
    assert table.client("c0") == ("", "")


def test_denial_by_an_unknown_client_and_a_client_without_username() -> None:
    table = ConnectionTable()
    parse("New client connected from [::1]:5000 as weird id (p5, c1, k60).", table)
    (event,) = events_of("Denied PUBLISH from weird id (d0, q1, r0, m7, 'a/b', ... (12 bytes))", table)
    assert (event.client_id, event.source, event.username) == ("weird id", "[::1]:5000", "")
    (event,) = events_of("Denied PUBLISH from ghost (d0, q0, r1, m0, 'x', ... (0 bytes))")
    assert (event.kind, event.client_id, event.source) == (ACL_DENIED, "ghost", "")


def test_long_details_are_trimmed() -> None:
    topic = "t/" + "x" * 1000
    (event,) = events_of(f"Denied PUBLISH from c (d0, q1, r0, m1, '{topic}', ... (1 bytes))")
    assert len(event.detail) == MAX_DETAIL and event.detail.endswith("...")


def test_describe_is_one_line_naming_the_source() -> None:
    event = SecurityEvent(ACL_DENIED, "t1-gwa", "127.0.0.1:5", "t1/gwa", "Denied PUBLISH ...", 0.0)
    assert (
        event.describe() == "acl_denied from 127.0.0.1:5 (client 't1-gwa', user 't1/gwa'): Denied PUBLISH ..."
    )
    bare = SecurityEvent(AUTH_FAILED, "", "", "", "Client <unknown> disconnected, not authorised.", 0.0)
    assert (
        bare.describe() == "auth_failed from unknown source: Client <unknown> disconnected, not authorised."
    )


# ------------------------------------------------------------------------------------------------
# Following the file

WRONG_PASSWORD = (
    "New connection from 192.0.2.7:{port} on port 8883.\nClient <unknown> disconnected, not authorised.\n"
)


def append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


class Collector:
    def __init__(self) -> None:
        self.events: list[SecurityEvent] = []
        self.lock = threading.Lock()

    def __call__(self, event: SecurityEvent) -> None:
        with self.lock:
            self.events.append(event)

    def sources(self) -> list[str]:
        with self.lock:
            return [e.source for e in self.events]


Follow = Callable[..., Collector]


@pytest.fixture
def follow() -> Iterator[Follow]:
    """start(path, from_start=False): a running follower of `path` and what it reported."""
    followers: list[BrokerLogFollower] = []

    def start(path: Path, *, from_start: bool = False) -> Collector:
        collector = Collector()
        follower = BrokerLogFollower(path, collector, from_start=from_start, poll_s=0.02)
        follower.start()
        followers.append(follower)
        return collector

    yield start
    for follower in followers:
        follower.stop()


def test_follows_from_the_end_by_default(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "mosquitto.log"
    log.write_text(WRONG_PASSWORD.format(port=1))
    seen = follow(log)
    time.sleep(0.1)  # the follower has opened the file at its end
    append(log, WRONG_PASSWORD.format(port=2))
    wait_for(lambda: seen.sources() == ["192.0.2.7:2"], "the new line only", 5)


def test_from_start_and_a_file_that_appears_later(tmp_path: Path, follow: Follow) -> None:
    old = tmp_path / "old.log"
    old.write_text(WRONG_PASSWORD.format(port=1))
    from_start = follow(old, from_start=True)
    wait_for(lambda: from_start.sources() == ["192.0.2.7:1"], "the line already in the file", 5)
    later = tmp_path / "later.log"
    seen = follow(later)
    time.sleep(0.1)
    later.write_text(WRONG_PASSWORD.format(port=3))  # a new file is read from its start
    wait_for(lambda: seen.sources() == ["192.0.2.7:3"], "the line of the file created later", 5)


def test_rotation_and_truncation(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "mosquitto.log"
    log.write_text("")
    seen = follow(log)
    time.sleep(0.1)
    append(log, WRONG_PASSWORD.format(port=1))
    wait_for(lambda: len(seen.sources()) == 1, "first event", 5)
    # logrotate: rename, the broker writes a last line to the old file, then reopens a new one.
    os.rename(log, tmp_path / "mosquitto.log.1")
    append(tmp_path / "mosquitto.log.1", WRONG_PASSWORD.format(port=2))
    time.sleep(0.1)
    append(log, WRONG_PASSWORD.format(port=3))
    wait_for(lambda: len(seen.sources()) == 3, "events from both files", 5)
    # copytruncate style: the same file emptied, then written again.
    log.write_text("")
    time.sleep(0.1)
    append(log, WRONG_PASSWORD.format(port=4))
    wait_for(lambda: len(seen.sources()) == 4, "the event after truncation", 5)
    assert seen.sources() == [f"192.0.2.7:{p}" for p in (1, 2, 3, 4)]


def test_a_partial_line_waits_for_its_end(tmp_path: Path, follow: Follow) -> None:
    log = tmp_path / "mosquitto.log"
    log.write_text("")
    seen = follow(log)
    time.sleep(0.1)
    append(log, "New connection from 192.0.2.7:9 on port 8883.\nClient <unknown> disconnected, not auth")
    time.sleep(0.2)
    assert seen.sources() == []
    append(log, "orised.\n")
    wait_for(lambda: seen.sources() == ["192.0.2.7:9"], "the completed line", 5)


def test_a_failing_callback_does_not_stop_following(tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"
    log.write_text(WRONG_PASSWORD.format(port=1) + WRONG_PASSWORD.format(port=2))
    calls: list[str] = []

    def flaky(event: SecurityEvent) -> None:
        calls.append(event.source)
        if len(calls) == 1:
            raise RuntimeError("boom")

    follower = BrokerLogFollower(log, flaky, from_start=True, poll_s=0.02)
    follower.start()
    try:
        wait_for(lambda: len(calls) == 2, "both events despite the exception", 5)
    finally:
        started = time.monotonic()
        follower.stop()
        assert time.monotonic() - started < 1.0
