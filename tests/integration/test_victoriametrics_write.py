"""The real write path: influxdb-client's batching write API into a real VictoriaMetrics.

VictoriaMetrics stands in for InfluxDB 2/3 (none is installable here): it accepts the v2 write
API that influxdb-client speaks.  It keeps numeric fields only, so string fields and exact name
escaping are checked against InfluxDB 1.6 in test_lineproto_influxdb1.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import WriteOptions
from influxdb_client.domain.write_precision import WritePrecision

from cloud import lineproto
from tests.servers import VictoriaMetrics, http_request

pytestmark = pytest.mark.integration

NOW_MS = 1_763_700_000_000  # fixed "now" (Nov 2025); the server is started with 100y retention
DAY_MS = 86_400_000


def reading(site: str, site_name: str, value: float, ts: int, note: str = "") -> str:
    return lineproto.line(
        "readings",
        {
            "tenant": "demo-city",
            "site": site,
            "site_name": site_name,
            "sensor": "wl-1",
            "kind": "water_level",
        },
        {
            "value": lineproto.float_field(value),
            "q": lineproto.int_field(0),
            "note": lineproto.string_field(note),
        },
        ts,
    )


def write_batched(server: VictoriaMetrics, bucket: str, lines: list[str], batch_size: int) -> list[str]:
    """Write through influxdb-client's batching API; returns the errors its callbacks reported."""
    errors: list[str] = []

    def on_error(conf: Any, data: Any, exc: Exception) -> None:
        errors.append(f"{conf}: {exc}")

    with InfluxDBClient(url=server.url, token="x", org="bosai") as client:
        write_api = client.write_api(
            write_options=WriteOptions(batch_size=batch_size, flush_interval=200, max_retries=0),
            error_callback=on_error,
        )
        write_api.write(bucket=bucket, record=lines, write_precision=WritePrecision.MS)
        write_api.close()  # flushes what is still batched
    server.force_flush()
    return errors


def exported(server: VictoriaMetrics, metric: str) -> dict[str, list[tuple[int, float]]]:
    """site -> [(ms, value)] for one metric."""
    return {
        series["metric"]["site"]: list(zip(series["timestamps"], series["values"], strict=True))
        for series in server.export(f'{{__name__="{metric}"}}')
    }


def test_batched_points_arrive_once_with_exact_values_and_times(victoria: VictoriaMetrics) -> None:
    # 2 sites x 250 points, 2 years old up to now, in batches that do not divide the total.
    expected: dict[str, list[tuple[int, float]]] = {"s1": [], "s2": []}
    lines = []
    for i in range(250):
        ts = NOW_MS - 2 * 365 * DAY_MS + i * 3 * DAY_MS + i  # spread over two years, odd ms
        # Sensor-like decimals: VictoriaMetrics keeps only ~12 significant digits (see servers.py).
        for site, value in (("s1", round(i * 0.1, 1)), ("s2", -i - 0.5)):
            expected[site].append((ts, value))
            lines.append(reading(site, f"{site} 石狩川 旭橋", value, ts))

    assert write_batched(victoria, "bosai", lines, batch_size=64) == []

    assert exported(victoria, "readings_value") == expected
    assert exported(victoria, "readings_q") == {
        site: [(t, 0) for t, _ in pts] for site, pts in expected.items()
    }


def test_series_naming_and_labels(victoria: VictoriaMetrics) -> None:
    # Documents how VictoriaMetrics maps line protocol: <measurement>_<field>, tags as labels,
    # no label for the bucket/org of the v2 API; names with spaces/commas/Japanese come back exactly.
    name = "中央 5条通, residential a=b"
    assert write_batched(victoria, "some-bucket", [reading("s1", name, 1.25, NOW_MS)], batch_size=10) == []
    [series] = victoria.export('{__name__="readings_value"}')
    assert series["metric"] == {
        "__name__": "readings_value",
        "tenant": "demo-city",
        "site": "s1",
        "site_name": name,
        "sensor": "wl-1",
        "kind": "water_level",
    }
    assert series["values"] == [1.25]
    assert series["timestamps"] == [NOW_MS]
    # String fields become a series too, with value 0: read strings from InfluxDB, not from here.
    [note] = victoria.export('{__name__="readings_note"}')
    assert note["values"] == [0]


def test_duplicate_point_is_exported_once(victoria: VictoriaMetrics) -> None:
    # A replayed message (same series, same sample time, same value) in two separate writes.
    old = NOW_MS - 400 * DAY_MS
    line = reading("s1", "site", 3.25, old)
    assert write_batched(victoria, "bosai", [line, reading("s1", "site", 4.5, old + 1)], batch_size=10) == []
    assert write_batched(victoria, "bosai", [line], batch_size=10) == []
    assert exported(victoria, "readings_value") == {"s1": [(old, 3.25), (old + 1, 4.5)]}


def test_replaced_characters_read_back_as_lineproto_promises(victoria: VictoriaMetrics) -> None:
    # Backslashes in tags become "/" and newlines become spaces (cloud/lineproto.py): here the
    # point must arrive, not be silently dropped by a newline split or read back differently.
    lines = [
        reading("s1", "back\\slash\\", 1.0, NOW_MS),
        reading("s2", "two\nlines", 2.0, NOW_MS, note="multi\nline note"),
    ]
    assert write_batched(victoria, "bosai", lines, batch_size=10) == []
    names = {
        s["metric"]["site"]: s["metric"]["site_name"] for s in victoria.export('{__name__="readings_value"}')
    }
    assert names == {"s1": "back/slash/", "s2": "two lines"}


def test_precision_ms_is_what_the_client_sends(victoria: VictoriaMetrics) -> None:
    # The exact request influxdb-client makes: without precision=ms, ms stamps would be read as ns.
    body = reading("s1", "site", 9.5, NOW_MS).encode()
    status, _ = http_request(
        f"{victoria.url}/api/v2/write?org=bosai&bucket=bosai&precision=ms", method="POST", data=body
    )
    assert status == 204
    victoria.force_flush()
    assert exported(victoria, "readings_value") == {"s1": [(NOW_MS, 9.5)]}
