"""InfluxDB (2.x, 3.x, or any server speaking the v2 write API) through influxdb-client.

influxdb-client's batching write API collects lines into batches of `batch_size` or every
`flush_interval` ms, writes them from its own threads and retries failed batches with backoff.
Its `flush()` does nothing (a TODO upstream), so this writer counts lines handed over and lines
reported back by the success/error callbacks, and `flush()` waits until the two meet.

Lines of a batch given up on after the retries are counted as failed and logged; keeping them
for a later retry (a spool on disk) is the durability work of issue 6.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import WriteOptions
from influxdb_client.domain.write_precision import WritePrecision

from cloud.config import InfluxStore
from wire.configfile import read_secret

log = logging.getLogger(__name__)

# influxdb-client logs every retry and every failed batch at WARNING/ERROR; this writer reports
# failures itself, once, then quietly until the server accepts writes again.
logging.getLogger("influxdb_client.client.write.retry").setLevel(logging.ERROR)
logging.getLogger("influxdb_client.client.write_api").setLevel(logging.CRITICAL)

RETRY_INTERVAL_MS = 1000
MAX_RETRIES = 5
MAX_RETRY_DELAY_MS = 30_000
MAX_RETRY_TIME_MS = 120_000
FLUSH_TIMEOUT_S = 30.0


class InfluxWriter:
    def __init__(self, store: InfluxStore, config_path: Path) -> None:
        token = ""  # no Authorization header, for servers without auth
        if store.token_file:
            token = read_secret(config_path, "store: field 'token_file'", store.token_file)
        self.store = store
        self._lock = threading.Condition()
        self._submitted = 0
        self._written = 0
        self._failed = 0
        self.retries = 0
        self._failing = False
        self._client = InfluxDBClient(url=store.url, token=token, org=store.org, timeout=store.timeout_ms)
        self._api = self._client.write_api(
            write_options=WriteOptions(
                batch_size=store.batch_size,
                flush_interval=store.flush_interval_ms,
                retry_interval=RETRY_INTERVAL_MS,
                max_retries=MAX_RETRIES,
                max_retry_delay=MAX_RETRY_DELAY_MS,
                max_retry_time=MAX_RETRY_TIME_MS,
            ),
            success_callback=self._on_success,
            error_callback=self._on_error,
            retry_callback=self._on_retry,
        )

    @property
    def written(self) -> int:
        return self._written

    @property
    def failed(self) -> int:
        return self._failed

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        with self._lock:
            self._submitted += len(lines)
        self._api.write(
            bucket=self.store.bucket,
            org=self.store.org,
            record=lines,
            write_precision=WritePrecision.MS,  # type: ignore[arg-type]  # a str constant
        )

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._written + self._failed < self._submitted:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning(
                        "InfluxDB flush timed out with %d lines pending",
                        self._submitted - self._written - self._failed,
                    )
                    return
                self._lock.wait(left)

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]  # waits for the batches in flight
        self._client.close()  # type: ignore[no-untyped-call]
        # Drop the objects now: left to the interpreter's exit, their __del__ runs a second time
        # and prints an ImportError traceback from urllib3.
        del self._api, self._client

    # Callbacks run on influxdb-client's threads; `data` is the batch body, one line per point.
    def _on_success(self, conf: tuple[str, str, str], data: Any) -> None:
        with self._lock:
            self._written += _count_lines(data)
            self._lock.notify_all()
        if self._failing:
            log.info("InfluxDB %s accepts writes again", self.store.url)
            self._failing = False

    def _on_error(self, conf: tuple[str, str, str], data: Any, exc: BaseException) -> None:
        n = _count_lines(data)
        with self._lock:
            self._failed += n
            self._lock.notify_all()
        if not self._failing:
            log.warning("InfluxDB %s: %d lines not written: %s", self.store.url, n, _describe(exc))
            self._failing = True
        else:
            log.debug("InfluxDB still failing: %d lines not written: %s", n, _describe(exc))

    def _on_retry(self, conf: tuple[str, str, str], data: Any, exc: BaseException) -> None:
        self.retries += 1
        log.debug("InfluxDB write retry: %s", _describe(exc))


def _count_lines(data: Any) -> int:
    if isinstance(data, bytes | bytearray):
        return data.count(b"\n") + 1
    return str(data).count("\n") + 1


def _describe(exc: BaseException) -> str:
    # ApiException carries the HTTP status and the server's message; never the request headers.
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None)
    return f"HTTP {status}: {str(body)[:200]}" if status else f"{exc.__class__.__name__}: {exc}"
