"""Shared fixtures: real servers (tests/servers.py) on free loopback ports, one per test.

Each server starts in well under a second here, so every test gets fresh ones and may stop,
kill or restart them freely.  A missing binary makes the fixture fail (an error naming
scripts/install-test-deps.sh), never skip: the suite must not go green without its servers.
For one server shared by a module, use the class directly:
`with InfluxDB1(tmp_path_factory.mktemp("influxdb")) as server: yield server`.

`pty` is a pseudo-terminal pair (master fd, slave path): a serial port for driver tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import InfluxDB1, Mosquitto, VictoriaMetrics


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """Plain-TCP Mosquitto allowing anonymous clients: `.url` is mqtt://127.0.0.1:PORT."""
    with Mosquitto(tmp_path / "mosquitto") as server:
        yield server


@pytest.fixture
def mosquitto_tls(tmp_path: Path) -> Iterator[Mosquitto]:
    """TLS-only Mosquitto: `.url` is mqtts://127.0.0.1:PORT, verify it with `.ca_file`."""
    with Mosquitto(tmp_path / "mosquitto-tls", tls=True) as server:
        yield server


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """VictoriaMetrics taking InfluxDB v2 writes at `.url` (see the class for series naming)."""
    with VictoriaMetrics(tmp_path / "victoria-metrics") as server:
        yield server


@pytest.fixture
def influxdb1(tmp_path: Path) -> Iterator[InfluxDB1]:
    """InfluxDB 1.6 with /write and InfluxQL /query at `.url`; no databases yet, no auth."""
    with InfluxDB1(tmp_path / "influxdb") as server:
        yield server


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    os.set_blocking(master, False)
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)
