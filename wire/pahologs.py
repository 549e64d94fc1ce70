"""The logger paho-mqtt writes its packet log to, without an error line for every lost socket.

paho logs at ERROR each time its socket fails: `failed to receive on socket: [Errno 104]
Connection reset by peer` when a link drops, `Client is not connected. Socket: None` before every
reconnect attempt while the broker is down (and once more after a clean `disconnect()`).  The
publisher and the consumer already warn once per disconnect and explain a failed connection once;
an ERROR line every backoff interval through a three-hour outage would bury those lines, and a
gateway's journal is read by people looking for real errors.

So these records are demoted to DEBUG, where paho's packet log lives (kept when DEBUG is on), and
the last one is kept for the disconnect warning to name the cause (`last_transport_error`).
paho's other errors (an exception in a callback, an unknown command) stay errors.

One client per logger name per process (the agent's publisher, a consumer shard): a cause is kept
per name, not per client.
"""

from __future__ import annotations

import logging
import threading

# How paho's messages about a lost or missing socket begin (paho/mqtt/client.py, MQTT_LOG_ERR).
TRANSPORT_ERRORS = ("failed to receive on socket", "timeout on socket", "Client is not connected")


class _TransportErrorsAreDebug(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or not str(record.msg).startswith(TRANSPORT_ERRORS):
            return True
        if not str(record.msg).startswith("Client is not connected"):  # a restatement, not a cause
            with self._lock:
                self.last = record.getMessage()
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)

    def take(self) -> str | None:
        with self._lock:
            last, self.last = self.last, None
        return last


def _installed(logger: logging.Logger) -> _TransportErrorsAreDebug | None:
    return next((f for f in logger.filters if isinstance(f, _TransportErrorsAreDebug)), None)


def paho_logger(name: str) -> logging.Logger:
    """The logger `name` (e.g. "paho.mqtt.edge") for `Client.enable_logger`, filter installed once."""
    logger = logging.getLogger(name)
    if _installed(logger) is None:
        logger.addFilter(_TransportErrorsAreDebug())
    return logger


def disconnect_reason(reason: object, name: str) -> str:
    """paho's reason for a disconnect, with the socket error behind it when there was one (taken)."""
    cause = last_transport_error(name)
    return str(reason) if cause is None else f"{reason}: {cause}"


def last_transport_error(name: str) -> str | None:
    """paho's socket error since the last call (e.g. for a disconnect warning), or None."""
    installed = _installed(logging.getLogger(name))
    return None if installed is None else installed.take()
