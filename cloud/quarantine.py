"""Quarantine: every rejected message or reading, with its reason, as one JSON line.

Operators read it to find a misconfigured gateway or a probing client, so it keeps the evidence:
topic, reason, detail, arrival time and the payload (text if it is UTF-8, else base64; cut to
MAX_PAYLOAD_BYTES so a flood of huge messages cannot fill the disk quickly).  Rotation and a size
cap are left to logrotate (copytruncate) for now.

With a `topic` template (e.g. "bosai/v1/{tenant}/quarantine") each entry is also published,
QoS 0 and not retained, for live tooling; {tenant} is the tenant of the message's topic, and
entries whose topic names no tenant (store rejections, garbage topics) go to the file only.
Callers run on the worker and the store threads, hence the lock.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import msgspec

from wire import topics

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 4096


class QuarantineEntry(msgspec.Struct, omit_defaults=True):
    received: str  # arrival time, ISO 8601 UTC
    topic: str
    reason: str
    detail: str
    payload: str
    payload_encoding: str = "utf-8"  # or "base64"
    truncated: bool = False
    seq: int | None = None  # for reading-level rejections: the message's sequence number


class Quarantine:
    def __init__(
        self,
        path: Path | None,
        *,
        topic: str | None = None,
        publish: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.path = path
        self.topic = topic
        self.publish = publish
        self.entries = 0
        self._file: TextIO | None = None
        self._failing = False
        self._encoder = msgspec.json.Encoder()
        self._lock = threading.Lock()

    def add(
        self, *, topic: str, reason: str, detail: str, received: float, payload: bytes, seq: int | None = None
    ) -> None:
        if self.path is None and (self.topic is None or self.publish is None):
            return
        truncated = len(payload) > MAX_PAYLOAD_BYTES
        raw = payload[:MAX_PAYLOAD_BYTES]
        text, encoding = _as_text(raw, truncated)
        entry = QuarantineEntry(
            received=datetime.fromtimestamp(received, tz=UTC).isoformat(timespec="milliseconds"),
            topic=topic,
            reason=reason,
            detail=detail[:1000],
            payload=text,
            payload_encoding=encoding,
            truncated=truncated,
            seq=seq,
        )
        data = self._encoder.encode(entry)
        with self._lock:
            self.entries += 1
            if self.path is not None:
                self._append(self.path, data)
        if self.topic is not None and self.publish is not None:
            where = topics.parse_gateway_topic(topic)
            if where is not None:
                try:
                    self.publish(self.topic.format(tenant=where.tenant), data)
                except Exception as exc:  # the file has it; a broker hiccup must not matter here
                    log.debug("cannot publish a quarantine entry: %s", exc)

    def _append(self, path: Path, data: bytes) -> None:
        try:
            if self._file is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - line-buffered, kept open
            self._file.write(data.decode("utf-8") + "\n")
            if self._failing:
                log.info("quarantine file %s is writable again", path)
                self._failing = False
        except OSError as exc:
            if not self._failing:
                log.warning("cannot write quarantine file %s: %s", path, exc)
                self._failing = True

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _as_text(raw: bytes, truncated: bool) -> tuple[str, str]:
    """(text, "utf-8") if the payload is UTF-8 text, else (base64, "base64")."""
    # A cut may have split the last character (up to 3 bytes of it); that still counts as text.
    for cut in range(4 if truncated else 1):
        try:
            return raw[: len(raw) - cut].decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            continue
    return base64.b64encode(raw).decode("ascii"), "base64"


@dataclass
class QuarantineGroup:
    """Rejections of one gateway for one reason (cloud CLI: `bosai cloud quarantine`)."""

    gateway: str  # "tenant/gateway" of the topic, or the topic itself when it names none
    reason: str
    count: int
    first: str  # ISO arrival times
    last: str
    example: str  # the latest detail


def summarize(path: Path, since: str | None = None) -> tuple[list[QuarantineGroup], int]:
    """Group a quarantine file by gateway and reason, most frequent first; entries received
    before `since` (ISO 8601, compared as text in UTC) are skipped.  Also returns the number of
    lines that are not quarantine entries (a torn last line, a hand edit)."""
    decoder = msgspec.json.Decoder(QuarantineEntry)
    groups: dict[tuple[str, str], QuarantineGroup] = {}
    unreadable = 0
    with open(path, "rb") as f:
        for raw in f:
            try:
                e = decoder.decode(raw)
            except (msgspec.DecodeError, UnicodeDecodeError):
                unreadable += 1
                continue
            if since is not None and e.received < since:
                continue
            where = topics.parse_gateway_topic(e.topic)
            gateway = f"{where.tenant}/{where.gateway}" if where else e.topic
            g = groups.get((gateway, e.reason))
            if g is None:
                groups[(gateway, e.reason)] = QuarantineGroup(
                    gateway, e.reason, 1, e.received, e.received, e.detail
                )
            else:
                g.count += 1
                g.first, g.last = min(g.first, e.received), max(g.last, e.received)
                g.example = e.detail
    return sorted(groups.values(), key=lambda g: (-g.count, g.gateway, g.reason)), unreadable
