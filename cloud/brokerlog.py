"""Failed authentication made visible: security events read from Mosquitto's log file.

The broker is where logins fail, and Mosquitto 2.0 tells only its log.  `BrokerLogFollower`
follows that file like `tail -F` and hands each security event to a callback (the consumer
counts and logs them):

- `auth_failed`: a refused login (wrong or rotated password, unknown or revoked user, anonymous);
- `tls_failed`: a TLS handshake that failed (no client certificate, a certificate from another
  CA or a revoked one, plain MQTT sent to a TLS port);
- `acl_denied`: a publish the ACL refused (a gateway writing another gateway's topic).

What Mosquitto 2.0.11 logs (seen with provision/mosquitto.broker_conf, lines after the
timestamp; the unit tests hold real ones):

    New connection from 127.0.0.1:37587 on port 8883.                  notice
    Sending CONNACK to 127.0.0.1 (0, 135)                               debug
    Client <unknown> disconnected, not authorised.                      notice
    New connection from 127.0.0.1:40443 on port 8884.
    OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed    error
    Client <unknown> disconnected: Protocol error.
    Client connection from 127.0.0.1 failed: error:0A00010B:SSL routines::wrong version number.
    New client connected from 127.0.0.1:46697 as t1-gwa (p5, c1, k60, u't1/gwa').
    Denied PUBLISH from t1-gwa (d0, q1, r0, m1, 'bosai/v1/t1/gwb/telemetry', ... (1 bytes))   debug

A refused login names neither the client id nor the username, and no line carries the
source's port except "New connection from".  So `ConnectionTable` remembers connections that
were opened but not yet identified, and a refusal or TLS failure is attributed to the oldest
one (from the address of the refusing CONNACK when that debug line is there): Mosquitto
handles a connection's handshake and CONNECT right after accepting it, so with one client at a
time this is exact, and with concurrent logins the address is right and the port may be that of
another connection from the same address.  Mosquitto never logs passwords.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import msgspec

log = logging.getLogger(__name__)

AUTH_FAILED = "auth_failed"
TLS_FAILED = "tls_failed"
ACL_DENIED = "acl_denied"

MAX_CONNECTIONS = 10_000  # remembered connections and client ids, each (oldest forgotten first)
MAX_DETAIL = 300  # characters of the broker's message kept in an event
MAX_LINE = 64 * 1024  # a longer "line" is not a Mosquitto log line: dropped, not buffered forever


class SecurityEvent(msgspec.Struct, frozen=True):
    kind: str  # AUTH_FAILED | TLS_FAILED | ACL_DENIED
    client_id: str  # "" when the log does not tell
    source: str  # "ip:port", or "ip" when the broker logged only the address, "" when unknown
    username: str  # "" when unknown (Mosquitto does not log the username of a refused login)
    detail: str  # the broker's own words, trimmed (Mosquitto never logs passwords)
    at: float  # time.time() when read

    def describe(self) -> str:
        """One log line: `auth_failed from 1.2.3.4:5 (client 'x', user 'y'): <broker's words>`."""
        who = ", ".join(
            f"{name} {value!r}"
            for name, value in (("client", self.client_id), ("user", self.username))
            if value
        )
        return (
            f"{self.kind} from {self.source or 'unknown source'}{f' ({who})' if who else ''}: {self.detail}"
        )


class _Client(msgspec.Struct, frozen=True):
    source: str
    username: str


class ConnectionTable:
    """What earlier log lines said about connections, bounded to `limit` entries of each kind."""

    def __init__(self, limit: int = MAX_CONNECTIONS) -> None:
        self.limit = limit
        self._pending: OrderedDict[str, str] = OrderedDict()  # source -> listener port, oldest first
        self._clients: OrderedDict[str, _Client] = OrderedDict()  # client id -> who it is
        self._refused_address = ""  # target of the last refusing CONNACK (debug line)

    def __len__(self) -> int:
        return len(self._pending) + len(self._clients)

    def opened(self, source: str, listener_port: str) -> None:
        self._pending.pop(source, None)
        self._pending[source] = listener_port
        while len(self._pending) > self.limit:
            self._pending.popitem(last=False)

    def identified(self, source: str, client_id: str, username: str) -> None:
        self._pending.pop(source, None)
        self._clients.pop(client_id, None)
        self._clients[client_id] = _Client(source, username)
        while len(self._clients) > self.limit:
            self._clients.popitem(last=False)

    def client(self, client_id: str) -> tuple[str, str]:
        """(source, username) of a connected client id; ("", "") if unknown."""
        found = self._clients.get(client_id)
        return (found.source, found.username) if found is not None else ("", "")

    def refused(self, address: str) -> None:
        self._refused_address = address

    def _oldest_pending(self) -> str:
        for source in self._pending:
            if not self._refused_address or _address_of(source) == self._refused_address:
                return source
        return next(iter(self._pending), "")

    def peek_unidentified(self) -> str:
        """The source of the connection a failure belongs to, kept until that connection ends."""
        return self._oldest_pending()

    def end_unidentified(self) -> str:
        """The source of an unidentified connection that ended now; forgotten."""
        source = self._oldest_pending()
        self._pending.pop(source, None)
        self._refused_address = ""
        return source


def _address_of(source: str) -> str:
    address, sep, port = source.rpartition(":")
    return address if sep and port.isdigit() else source


# A timestamp prefix: "1701234567: " (Mosquitto's default) or a log_timestamp_format such as
# "2026-12-06T07:23:52+0000: " or "07:23:52: ", i.e. a token ending in a digit, then ": ".
_TIMESTAMP = re.compile(r"^\S*\d: ")
_NEW_CONNECTION = re.compile(r"New connection from (?P<source>\S+) on port (?P<port>\d+)\.$")
_CONNECTED = re.compile(
    r"New client connected from (?P<source>\S+) as (?P<cid>.*) "
    r"\(p\d+, c\d+, k\d+(?:, u'(?P<user>.*)')?\)\.$"
)
_CONNACK = re.compile(r"Sending CONNACK to (?P<target>.*) \(\d+, (?P<rc>\d+)\)$")
_NOT_AUTHORISED = re.compile(r"Client (?P<cid>.*) disconnected, not authorised\.$")
_UNKNOWN_ENDED = re.compile(r"Client <unknown> (?:disconnected|closed its connection|has exceeded timeout)")
_OPENSSL_ERROR = re.compile(r"OpenSSL Error\[0\]: (?P<error>.*)$")
_NOT_TLS = re.compile(r"Client connection from (?P<address>\S+) failed: (?P<error>.*)$")
_DENIED = re.compile(
    r"Denied PUBLISH from (?P<cid>.*) \(d\d, q\d, r\d, m\d+, '(?P<topic>.*)', \.\.\. \(\d+ bytes\)\)$"
)
UNKNOWN_CLIENT = "<unknown>"
# A connection closed before or during the handshake (a health check or port probe connecting
# and closing, a gateway losing power or link) is routine, not an authentication failure.
_BENIGN_TLS_ERRORS = ("unexpected eof while reading",)


def parse(line: str, connections: ConnectionTable) -> SecurityEvent | None:
    """The security event a broker log line reports, if any; updates `connections` either way."""
    message = _TIMESTAMP.sub("", line.rstrip("\r\n"), count=1).strip()
    if m := _NEW_CONNECTION.match(message):
        connections.opened(m["source"], m["port"])
    elif m := _CONNECTED.match(message):
        connections.identified(m["source"], m["cid"], m["user"] or "")
    elif m := _CONNACK.match(message):
        if m["rc"] != "0":
            connections.refused(m["target"])
    elif m := _NOT_AUTHORISED.match(message):
        cid = "" if m["cid"] == UNKNOWN_CLIENT else m["cid"]
        if cid:
            source, username = connections.client(cid)
        else:
            source, username = connections.end_unidentified(), ""
        return _event(AUTH_FAILED, cid, source, username, message)
    elif _UNKNOWN_ENDED.match(message):
        connections.end_unidentified()
    elif m := _OPENSSL_ERROR.match(message):
        if not any(benign in m["error"] for benign in _BENIGN_TLS_ERRORS):
            return _event(TLS_FAILED, "", connections.peek_unidentified(), "", message)
    elif m := _NOT_TLS.match(message):
        if not any(benign in m["error"] for benign in _BENIGN_TLS_ERRORS):
            return _event(TLS_FAILED, "", m["address"], "", message)
    elif m := _DENIED.match(message):
        source, username = connections.client(m["cid"])
        return _event(ACL_DENIED, m["cid"], source, username, message)
    return None


def _event(kind: str, client_id: str, source: str, username: str, message: str) -> SecurityEvent:
    detail = message if len(message) <= MAX_DETAIL else message[: MAX_DETAIL - 3] + "..."
    return SecurityEvent(kind, client_id, source, username, detail, time.time())


class BrokerLogFollower:
    """A daemon thread following Mosquitto's log file like `tail -F`, calling `on_event`.

    From the end of the file unless `from_start`; a file that does not exist yet is waited for
    and then read from its start.  A rotated file (renamed and replaced, as logrotate does) is
    read to its end before the new one is opened; a truncated file is read again from its start.
    """

    def __init__(
        self,
        path: Path,
        on_event: Callable[[SecurityEvent], None],
        *,
        from_start: bool = False,
        poll_s: float = 0.5,
    ) -> None:
        self.path = Path(path)
        self.on_event = on_event
        self.from_start = from_start
        self.poll_s = poll_s
        self.connections = ConnectionTable()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._partial = b""

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        # Opened (and positioned at its end) before returning, not in the thread: an event
        # logged right after start() must not be skipped as "before the start".
        file, identity = self._open(seek_end=not self.from_start)
        self._thread = threading.Thread(
            target=self._run, args=(file, identity), name="broker-log", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=2.0)

    def _run(self, file: BinaryIO | None, identity: tuple[int, int] | None) -> None:
        # A file that appears (or replaces this one) later is new: read whole.
        try:
            while not self._stop.is_set():
                if file is None:
                    file, identity = self._open(seek_end=False)
                    if file is None:
                        self._stop.wait(self.poll_s)
                        continue
                if self._read_available(file):
                    continue
                # At the end of the file: has it been replaced or truncated meanwhile?
                current = _identity(self.path)
                if current != identity:
                    self._read_available(file)  # what was written before the rename
                    file.close()
                    file, self._partial = None, b""
                    continue
                if os.fstat(file.fileno()).st_size < file.tell():
                    file.seek(0)
                    self._partial = b""
                    continue
                self._stop.wait(self.poll_s)
        except Exception:
            log.exception("following the broker log %s stopped", self.path)
        finally:
            if file is not None:
                file.close()

    def _open(self, *, seek_end: bool) -> tuple[BinaryIO | None, tuple[int, int] | None]:
        try:
            file = self.path.open("rb")
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            log.warning("cannot read the broker log %s: %s", self.path, exc)
            return None, None
        st = os.fstat(file.fileno())
        if seek_end:
            file.seek(0, os.SEEK_END)
        return file, (st.st_dev, st.st_ino)

    def _read_available(self, file: BinaryIO) -> bool:
        """Handle every complete line available now; whether anything was read."""
        chunk = file.read(65536)
        if not chunk:
            return False
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        if len(self._partial) > MAX_LINE:
            self._partial = b""
        for raw in lines:
            self._handle(raw.decode("utf-8", errors="replace"))
        return True

    def _handle(self, line: str) -> None:
        event = parse(line, self.connections)
        if event is None:
            return
        try:
            self.on_event(event)
        except Exception:
            log.exception("handling broker security event %s failed", event.kind)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
