"""The store path: the disk spool (cloud.spool) and a thread draining it into the store.

Detection and alerting hand lines over with `put()` and go on: the spool makes them durable and
then runs the message's acknowledgement; this thread writes them to the store in order, in
batches of up to `batch_lines`.  Whatever the store does happens here, never on the worker:

- store unavailable (down, 429, 5xx, timeouts): the same batch again after the server's
  Retry-After, or after an exponential backoff with jitter (0.5 s doubling to 30 s); the spool
  meanwhile keeps everything on disk;
- store rejects the data (a 4xx about the lines): the batch is split in halves until the bad
  lines are isolated (log2(n) extra requests), the good ones are written and each bad one goes
  to the quarantine with the store's message.  Nothing is retried forever, nothing good is lost.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from cloud.quarantine import Quarantine
from cloud.spool import Spool
from cloud.writers import StoreRejected, StoreUnavailable, Writer

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 300.0  # a server asking for longer is asked again after this
READ_WAIT_S = 0.2
STORE_REJECTED = "store_rejected"  # quarantine reason of lines the store refused


class _Stopping(Exception):
    pass


class StoreSink:
    def __init__(
        self,
        writer: Writer,
        spool: Spool,
        quarantine: Quarantine,
        *,
        batch_lines: int = 5000,
        linger_s: float = 0.0,
    ) -> None:
        """`linger_s`: with less than a batch pending, wait this long for more before writing
        (the store's flush interval: fewer, larger requests at the cost of some latency)."""
        self.writer = writer
        self.spool = spool
        self.quarantine = quarantine
        self.batch_lines = batch_lines
        self.linger_s = linger_s
        self.written = 0  # lines the store accepted
        self.retries = 0  # requests retried
        self.errors = 0  # requests that failed, whatever the reason
        self.rejected = 0  # lines the store refused, quarantined
        self._failing_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bosai-store", daemon=True)
        self._thread.start()

    def put(self, lines: list[str], on_durable: Callable[[], None] | None = None) -> None:
        """Queue lines for the store; `on_durable()` runs once they are in the spool (Spool.put)."""
        self.spool.put(lines, on_durable)

    def mark(self, done: threading.Event) -> None:
        """Set `done` once every line put so far is in the store."""
        self.spool.mark_stored(done)

    def flush(self, timeout: float) -> bool:
        done = threading.Event()
        self.mark(done)
        return done.wait(timeout)

    @property
    def failing(self) -> bool:
        return self._failing_since is not None

    def close(self, timeout: float = 30.0) -> None:
        """Make everything put durable, give the store until `timeout` to take it, then stop.
        What it did not take stays in the spool for the next start."""
        deadline = time.monotonic() + timeout
        self.spool.close(max(1.0, deadline - time.monotonic()))
        # A store that is down gets no grace period: the lines are safe in the spool anyway.
        while self.spool.pending_lines and time.monotonic() < deadline and not self.failing:
            time.sleep(0.05)
        if self.spool.pending_lines:
            log.warning(
                "stopping with %d lines not yet stored; they stay in the spool %s for the next start",
                self.spool.pending_lines,
                self.spool.directory,
            )
        self._stop.set()
        self._thread.join(max(1.0, deadline - time.monotonic()))
        self.spool.close_reader()
        self.writer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self.spool.read(self.batch_lines, READ_WAIT_S, self.linger_s)
            if batch is None:
                continue
            try:
                self._store(batch.lines)
            except _Stopping:
                return
            self.spool.done(batch)

    def _store(self, lines: list[str]) -> None:
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                self._write(lines)
            except StoreRejected as exc:
                self._recovered()
                if len(lines) == 1:
                    self._quarantine(lines[0], str(exc))
                    return
                half = len(lines) // 2
                self._store(lines[:half])
                self._store(lines[half:])
                return
            except StoreUnavailable as exc:
                self.retries += 1
                wait = backoff * random.uniform(0.8, 1.2)
                if exc.retry_after is not None:
                    wait = min(max(exc.retry_after, FIRST_BACKOFF_S), MAX_RETRY_AFTER_S)
                self._failed(exc, wait)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                if self._stop.wait(wait):
                    raise _Stopping from None
                continue
            except Exception:
                # A writer bug: treat like an outage (the lines stay in the spool), loudly.
                self.retries += 1
                log.exception("store writer failed unexpectedly; retrying in %.0f s", backoff)
                if self._stop.wait(backoff):
                    raise _Stopping from None
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            self.written += len(lines)
            self._recovered()
            return

    def _write(self, lines: list[str]) -> None:
        try:
            self.writer.write(lines)
        except Exception:
            self.errors += 1
            raise

    def _failed(self, exc: StoreUnavailable, wait: float) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning(
                "%s unavailable: %s; keeping lines in the spool (%d waiting), retrying in %.1f s",
                self.writer.name,
                exc,
                self.spool.pending_lines,
                wait,
            )
        else:
            log.debug("%s still unavailable: %s; retrying in %.1f s", self.writer.name, exc, wait)

    def _recovered(self) -> None:
        if self._failing_since is not None:
            log.info(
                "%s accepts writes again after %.0f s; draining %d spooled lines in order",
                self.writer.name,
                time.monotonic() - self._failing_since,
                self.spool.pending_lines,
            )
            self._failing_since = None

    def _quarantine(self, line: str, detail: str) -> None:
        self.rejected += 1
        log.warning("%s refused a line; quarantined: %s", self.writer.name, detail[:200])
        self.quarantine.add(
            topic="(store)", reason=STORE_REJECTED, detail=detail, received=time.time(), payload=line.encode()
        )
