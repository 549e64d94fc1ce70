"""InfluxDB (2.x, 3.x, or any server speaking the v2 write API) through influxdb-client.

One synchronous request per batch: the spool (cloud.spool) already batches, orders and keeps
the lines, and the store thread (cloud.sink) decides about retries, so influxdb-client's own
batching thread and retry loop (which gives up after a while and drops the batch) are not used.
HTTP answers map onto the two writer errors:

- 400, 413, 422: the lines are bad (or the batch too large): StoreRejected, the sink bisects;
- 401, 403, 404: credentials or bucket are wrong: StoreUnavailable (an operator fixes the
  config; the spool keeps the data meanwhile, which beats dropping it);
- 429, 5xx, timeouts, refused connections: StoreUnavailable, with the server's Retry-After.
"""

from __future__ import annotations

import logging
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from cloud.config import InfluxStore
from cloud.writers import StoreRejected, StoreUnavailable
from wire.configfile import read_secret

log = logging.getLogger(__name__)

DATA_ERRORS = frozenset({400, 413, 422})


class InfluxWriter:
    def __init__(self, store: InfluxStore, config_path: Path) -> None:
        token = ""  # no Authorization header, for servers without auth
        if store.token_file:
            token = read_secret(config_path, "store: field 'token_file'", store.token_file)
        self.store = store
        self.name = f"InfluxDB {store.url} bucket {store.bucket}"
        self._client = InfluxDBClient(url=store.url, token=token, org=store.org, timeout=store.timeout_ms)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            self._api.write(
                bucket=self.store.bucket,
                org=self.store.org,
                record="\n".join(lines),
                write_precision=WritePrecision.MS,  # type: ignore[arg-type]  # a str constant
            )
        except ApiException as exc:
            detail = describe(exc)
            if exc.status in DATA_ERRORS:
                raise StoreRejected(detail) from None
            raise StoreUnavailable(detail, retry_after_s(getattr(exc, "retry_after", None))) from None
        except Exception as exc:  # urllib3: refused, reset, timeout, DNS
            raise StoreUnavailable(f"{exc.__class__.__name__}: {exc}"[:300]) from None

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]
        # Drop the objects now: left to the interpreter's exit, their __del__ runs a second time
        # and prints an ImportError traceback from urllib3.
        del self._api, self._client


def retry_after_s(value: Any, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if value is None:
        return None
    text = str(value).strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def describe(exc: ApiException) -> str:
    # The HTTP status and the server's message; never the request headers (the token).
    body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body or "")
    return f"HTTP {exc.status}: {body[:300]}"
