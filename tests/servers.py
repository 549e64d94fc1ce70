"""Real servers for integration tests: Mosquitto, VictoriaMetrics and InfluxDB 1.x from Debian.

Each server runs as a child process on free loopback ports with all its files (config, data, log)
in a directory of its own, so tests never touch a system service and can run side by side.
Use one as a context manager, or call `.start()` / `.stop()` yourself: a stopped server starts
again on the same port with the same data (outage tests).  `.stop()` is graceful (SIGTERM), so
Mosquitto saves its persistence file and InfluxDB/VictoriaMetrics flush; `.kill()` is a crash.

If a binary is missing, starting raises `ServerError` telling to run scripts/install-test-deps.sh:
the suite fails instead of going green by skipping.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import pwd
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

INSTALL_HINT = "run scripts/install-test-deps.sh (as root) to install the test servers"
START_TIMEOUT = 30.0  # each server is normally ready within 1-2 s; a slow CI box gets slack
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 40


class ServerError(RuntimeError):
    """A test server could not be found, started or queried."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_request(
    url: str, *, method: str = "GET", data: bytes | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    """(status, body) of one HTTP request; HTTP error statuses are returned, not raised."""
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _http_ok(url: str) -> bool:
    try:
        status, _ = http_request(url, timeout=1.0)
    except OSError:
        return False
    return 200 <= status < 300


def stop_process(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM (a normal service stop), wait, and SIGKILL only if it hangs; the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Server:
    """A child-process server with a work directory, a log file and a readiness check."""

    name = "server"

    def __init__(self, workdir: Path, binary: str) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        self.log_path = self.workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- to implement -------------------------------------------------------------------------
    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if self.running:
            return
        if shutil.which(self.binary) is None:
            raise ServerError(f"{self.name}: {self.binary} not found; {INSTALL_HINT}")
        # Append: after a restart the log tail still shows what happened before it.
        with self.log_path.open("ab") as log:
            log.write(f"--- test harness: starting {' '.join(self._argv())}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self._argv(), cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise ServerError(f"{self.name} exited with code {code} while starting\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError(f"{self.name} not ready after {timeout:.0f} s\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Graceful stop: SIGTERM, wait, and SIGKILL only if it hangs."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc)

    def kill(self) -> None:
        """Crash: SIGKILL, nothing saved that the server had not already written."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"({self.log_path} does not exist)"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path}:\n{tail}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# Mosquitto


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_tls_files(directory: Path, hosts: Iterable[str] = ("localhost", "127.0.0.1")) -> TlsFiles:
    """A throwaway CA and a server certificate it signed, valid for `hosts` (names or IPs)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    valid_from, valid_to = now - dt.timedelta(days=1), now + dt.timedelta(days=30)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("bosai test CA"))
        .issuer_name(name("bosai test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def san(host: str) -> x509.GeneralName:
        try:
            return x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            return x509.DNSName(host)

    hosts = list(hosts)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.SubjectAlternativeName([san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    files = TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    files.key_file.chmod(0o600)
    return files


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file with hashed passwords, made by the real `mosquitto_passwd`."""
    tool = "mosquitto_passwd"
    if shutil.which(tool) is None:
        raise ServerError(f"{tool} not found; {INSTALL_HINT}")
    path.write_text("")
    for user, password in users.items():
        subprocess.run([tool, "-b", str(path), user, password], check=True, capture_output=True)
    path.chmod(0o600)
    return path


class Mosquitto(Server):
    """Mosquitto 2.0 on 127.0.0.1 with persistence, so queued QoS 1 messages survive `.restart()`.

    `.url` is "mqtt://127.0.0.1:PORT" (or "mqtts://" with tls=True, then `.ca_file` is the CA to
    verify the broker with; the certificate is valid for 127.0.0.1 and localhost).
    """

    name = "mosquitto"

    def __init__(
        self,
        workdir: Path,
        *,
        tls: bool = False,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        allow_anonymous: bool = True,
        autosave_on_changes: bool = False,
    ) -> None:
        """`autosave_on_changes`: save the persistence file after every change (subscription,
        queued or retained message) instead of only at a graceful stop, so that sessions and
        subscriptions survive `.kill()` (Mosquitto only has, after a crash, what it saved)."""
        super().__init__(workdir, "/usr/sbin/mosquitto")
        self.port = free_port()
        self.tls = make_tls_files(self.workdir / "tls") if tls else None
        self.conf_path = self.workdir / "mosquitto.conf"
        self.conf_path.write_text(
            self._config(
                password_file=password_file,
                acl_file=acl_file,
                allow_anonymous=allow_anonymous,
                autosave_on_changes=autosave_on_changes,
            )
        )

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def ca_file(self) -> Path:
        if self.tls is None:
            raise ServerError("this broker has no TLS listener")
        return self.tls.ca_file

    def _config(
        self,
        *,
        password_file: Path | None,
        acl_file: Path | None,
        allow_anonymous: bool,
        autosave_on_changes: bool = False,
    ) -> str:
        data_dir = self.workdir / "data"
        data_dir.mkdir(exist_ok=True)
        lines = [
            # Started as root, Mosquitto would drop to user "mosquitto", which cannot write into
            # the test's private tmp dir; as any other user this line has no effect.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if allow_anonymous else 'false'}",
            "persistence true",
            f"persistence_location {data_dir}/",
            f"log_dest file {self.log_path}",
            "log_type all",
            "log_timestamp_format %H:%M:%S",
            "connection_messages true",
            # As in deploy/mosquitto/bosai.conf: the default (1000 per client) silently drops
            # QoS 1 messages for a subscriber that falls behind during a burst.
            "max_queued_messages 1000000",
        ]
        if autosave_on_changes:
            lines += ["autosave_interval 1", "autosave_on_changes true"]
        if password_file is not None:
            lines.append(f"password_file {password_file}")
        if acl_file is not None:
            lines.append(f"acl_file {acl_file}")
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
                "tls_version tlsv1.2",
            ]
        return "\n".join(lines) + "\n"

    def _argv(self) -> list[str]:
        return [self.binary, "-c", str(self.conf_path)]

    def _ready(self) -> bool:
        return port_open(self.port)


# --------------------------------------------------------------------------------------------
# VictoriaMetrics


class VictoriaMetrics(Server):
    """VictoriaMetrics (single node, v1.79) speaking the InfluxDB v2 write API at `.url`.

    Started with -retentionPeriod=100y (its default one month would silently drop historical
    samples) and -dedup.minScrapeInterval=1ms (a sample written twice with the same timestamp
    reads back once, like InfluxDB's overwrite of the same point).

    What it does with line protocol, checked against this server (test_victoriametrics_write.py):
    - `/api/v2/write?org=bosai&bucket=B&precision=ms` (what influxdb-client sends) answers 204.
      `readings,site=s1 value=1.5,q=0i,note="x" T` becomes one series per field, named
      `<measurement>_<field>` (`readings_value`, `readings_q`, `readings_note`), with the tags as
      labels.  Bucket and org add no label (only the v1 `/write?db=D` adds `db="D"`), so buckets
      do not separate data here.  Timestamps come back in ms.
    - String fields read back as 0; floats keep about 12 significant digits (1/3 reads back as
      0.333333333333, 0.30000000000000004 as 0.3), so compare sensor-like decimals.
    - With dedup, two writes of one series and timestamp with *different* values keep either
      value (both seen), so only a replay of the same value is a meaningful duplicate here.
    - A line it cannot parse is skipped with an error in its log while the request still
      answers 204; the body is split on newlines before parsing (see cloud/lineproto.py).
    """

    name = "victoria-metrics"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, "/usr/bin/victoria-metrics")
        self.port = free_port()
        self.data_dir = self.workdir / "data"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        return [
            self.binary,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.data_dir}",
            "-retentionPeriod=100y",
            "-dedup.minScrapeInterval=1ms",
            "-loggerLevel=INFO",
        ]

    def _ready(self) -> bool:
        return _http_ok(f"{self.url}/health")

    def force_flush(self) -> None:
        """Make everything written so far visible to queries and exports."""
        status, body = http_request(f"{self.url}/internal/force_flush")
        if status != 200:
            raise ServerError(f"force_flush: HTTP {status}: {body[:500]!r}")

    def wait_for_samples(self, match: str, count: int, timeout: float = 30.0) -> int:
        """Flush and count the samples matching `match` until there are at least `count`, or
        `timeout` passes; returns the last count.  Right after a flush, a sample written a moment
        before is sometimes not exported yet (seen under load), which is late, not lost."""
        deadline = time.monotonic() + timeout
        while True:
            self.force_flush()
            n = sum(len(row["values"]) for row in self.export(match))
            if n >= count or time.monotonic() > deadline:
                return n
            time.sleep(0.5)

    def export(self, match: str) -> list[dict[str, Any]]:
        """Series matching a PromQL selector, e.g. '{__name__="readings_value",db="b"}'.

        Each item: {"metric": {"__name__": ..., label: value}, "values": [...], "timestamps": [ms]}.
        """
        query = urllib.parse.urlencode({"match[]": match, "start": "0"})
        status, body = http_request(f"{self.url}/api/v1/export?{query}")
        if status != 200:
            raise ServerError(f"export {match}: HTTP {status}: {body[:500]!r}")
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------
# InfluxDB 1.x


class InfluxDB1(Server):
    """InfluxDB 1.6 (Debian): the v1 `/write` and InfluxQL `/query` APIs at `.url`, no auth."""

    name = "influxdb"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, "/usr/bin/influxd")
        self.port = free_port()
        self.rpc_port = free_port()  # backup/restore service; must not clash with a system influxd
        self.conf_path = self.workdir / "influxdb.conf"
        self.conf_path.write_text(self._config())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> str:
        d = self.workdir
        # Debian's build renamed upstream's `reporting-disabled` to `reporting-enabled`.
        return f"""\
reporting-enabled = false
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{d / "meta"}"
  logging-enabled = false
[data]
  dir = "{d / "data"}"
  wal-dir = "{d / "wal"}"
  query-log-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false
[logging]
  level = "warn"
  suppress-logo = true
"""

    def _argv(self) -> list[str]:
        return [self.binary, "run", "-config", str(self.conf_path)]

    def _ready(self) -> bool:
        return _http_ok(f"{self.url}/ping")

    def create_db(self, name: str) -> None:
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        self._post_query(f'CREATE DATABASE "{escaped}"')

    def write_lp(self, db: str, lines: Iterable[str], precision: str = "ms") -> None:
        """Write line protocol through the v1 /write API; raises with InfluxDB's error message."""
        query = urllib.parse.urlencode({"db": db, "precision": precision})
        body = "\n".join(lines).encode()
        status, resp = http_request(f"{self.url}/write?{query}", method="POST", data=body)
        if status != 204:
            raise ServerError(f"write to {db}: HTTP {status}: {resp.decode(errors='replace')}")

    def query(self, db: str, influxql: str, epoch: str = "ms") -> dict[str, Any]:
        """Run read-only InfluxQL through GET /query; times come back as epoch integers (`epoch`)."""
        params = urllib.parse.urlencode({"db": db, "q": influxql, "epoch": epoch})
        return self._check(influxql, *http_request(f"{self.url}/query?{params}"))

    def _post_query(self, influxql: str) -> dict[str, Any]:
        data = urllib.parse.urlencode({"q": influxql}).encode()
        return self._check(influxql, *http_request(f"{self.url}/query", method="POST", data=data))

    @staticmethod
    def _check(influxql: str, status: int, body: bytes) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(body) if body else {}
        errors = [r["error"] for r in result.get("results", []) if "error" in r]
        if status != 200 or "error" in result or errors:
            raise ServerError(f"query {influxql!r}: HTTP {status}: {body.decode(errors='replace')[:500]}")
        return result


def series_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten an InfluxQL /query result into one dict per row (tags of its series included)."""
    rows: list[dict[str, Any]] = []
    for statement in result.get("results", []):
        for series in statement.get("series", []):
            tags = series.get("tags", {})
            rows += [
                {**tags, **dict(zip(series["columns"], values, strict=True))} for values in series["values"]
            ]
    return rows


class GeneratedMosquitto(Server):
    """Mosquitto 2.0 running a complete config text made by the code under test (for example
    provision.mosquitto.broker_conf), unchanged: the test owns every line of it.

    `conf_text` must listen on `port` (the readiness check connects there) and should log to
    `GeneratedMosquitto.log_file(workdir)` for `.log_tail()` and `.reload()` to see the log.
    """

    name = "mosquitto"

    def __init__(self, workdir: Path, conf_text: str, port: int) -> None:
        super().__init__(workdir, "/usr/sbin/mosquitto")
        self.port = port
        self.conf_path = self.workdir / "mosquitto.conf"
        self.conf_path.write_text(conf_text)

    @classmethod
    def log_file(cls, workdir: Path) -> Path:
        """Where this server's log goes (the harness writes the broker's stderr there too)."""
        return Path(workdir) / f"{cls.name}.log"

    def _argv(self) -> list[str]:
        return [self.binary, "-c", str(self.conf_path)]

    def _ready(self) -> bool:
        return port_open(self.port)

    def reload(self, timeout: float = 10.0) -> None:
        """SIGHUP, as `systemctl reload mosquitto` does, and wait until the broker has reloaded.

        Mosquitto handles the signal in its main loop and applies the new password file, ACL and
        CRL right after logging "Reloading config.", before it serves any other client."""
        import signal

        if self._proc is None or not self.running:
            raise ServerError("mosquitto is not running")
        marker = "Reloading config."
        before = self._log_text().count(marker)
        self._proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self._log_text().count(marker) <= before:
            if time.monotonic() > deadline:
                raise ServerError(f"mosquitto did not log {marker!r} within {timeout:g} s\n{self.log_tail()}")
            time.sleep(0.02)

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
