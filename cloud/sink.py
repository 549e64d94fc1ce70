"""The store path: a queue and a thread in front of a Writer.

Detection and alerting hand lines over with `put()` and go on; whatever the writer does (a slow
disk, a database retrying) happens on this thread.  This is the seam where issue 6 adds a
durable spool and acknowledges MQTT messages only once their lines are stored.
"""

from __future__ import annotations

import logging
import queue
import threading

from cloud.writers import Writer

log = logging.getLogger(__name__)

_STOP = object()


class StoreSink:
    def __init__(self, writer: Writer, *, max_queued_batches: int = 100_000) -> None:
        self.writer = writer
        self.lost = 0  # lines dropped because the writer raised (a bug; counted as write errors)
        self._logged = False
        self._queue: queue.Queue[list[str] | threading.Event | object] = queue.Queue(max_queued_batches)
        self._thread = threading.Thread(target=self._run, name="bosai-store", daemon=True)
        self._thread.start()

    def put(self, lines: list[str]) -> None:
        if lines:
            self._queue.put(lines)

    def mark(self, done: threading.Event) -> None:
        """Set `done` once every line put so far has been handed to the writer and flushed."""
        self._queue.put(done)

    def flush(self, timeout: float) -> bool:
        done = threading.Event()
        self.mark(done)
        return done.wait(timeout)

    def close(self, timeout: float = 60.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("store thread did not finish within %.0f s", timeout)
        self.writer.close()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    self.writer.flush()
                    return
                if isinstance(item, threading.Event):
                    self.writer.flush()
                    item.set()
                elif isinstance(item, list):
                    self.writer.write(item)
            except Exception:
                # A writer bug must not stop the store path; the lines are counted as lost.
                log.log(
                    logging.DEBUG if self._logged else logging.ERROR, "store writer failed", exc_info=True
                )
                self._logged = True
                if isinstance(item, list):
                    self.lost += len(item)
                elif isinstance(item, threading.Event):
                    item.set()
