"""The broker's side of provisioning: Mosquitto's password file, ACL file and broker config.

Every gateway gets its own MQTT identity `tenant/gateway` (ids never contain '/', so the name is
unambiguous across tenants, where gateway ids are only unique within a tenant), its own random
password (or a client certificate whose CN is that same name) and one explicit ACL block that
lets it write only its own topics and read only its own config.  Nothing here talks to a running
broker: the operator's tooling writes the files and sends Mosquitto SIGHUP to reload them.

The password hash is exactly what `mosquitto_passwd` of Mosquitto 2.0 writes, so the files can
be produced without the Mosquitto tools installed (e.g. on an operator's laptop) and checked:
    $7$<iterations>$<base64 salt, 12 bytes>$<base64 PBKDF2-HMAC-SHA512, 64 bytes>
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wire import topics
from wire.ids import is_ident

DEFAULT_CLOUD_USER = "bosai-cloud"
# Mosquitto 2.0's own choices (mosquitto_passwd): 12 random salt bytes, 101 PBKDF2 rounds.  Few
# rounds are acceptable because every password is 256 random bits: nothing to brute-force.
SALT_BYTES = 12
DEFAULT_ITERATIONS = 101
_SHA512_BYTES = 64


# `bosai/v1/{tenant}/alerts/...` is the cloud's alert state: a gateway with this id would own
# `bosai/v1/{tenant}/alerts/telemetry`, inside the alerts filter every alert reader subscribes to.
RESERVED_GATEWAY_IDS = frozenset({"alerts"})


def gateway_username(tenant: str, gateway: str) -> str:
    """The MQTT username (and client-certificate CN) of one gateway: `tenant/gateway`."""
    for what, value in (("tenant", tenant), ("gateway", gateway)):
        if not is_ident(value):
            raise ValueError(f"{what} id {value!r} is not a valid id (letters, digits, '.', '_', '-')")
    if gateway in RESERVED_GATEWAY_IDS:
        raise ValueError(f"gateway id {gateway!r} is reserved: its topics would overlap the alert topics")
    return f"{tenant}/{gateway}"


def new_password() -> str:
    """256 random bits, URL-safe base64: no ':' (the password file's separator) nor whitespace."""
    return secrets.token_urlsafe(32)


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS) -> str:
    """The password-file hash Mosquitto 2.0 writes and checks (`$7$`, PBKDF2-HMAC-SHA512)."""
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, _SHA512_BYTES)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(hashed: str, password: str) -> bool:
    """Whether `password` matches a password-file hash (`$7$` of Mosquitto 2.0, or the older `$6$`)."""
    parts = hashed.split("$")
    try:
        if len(parts) == 5 and parts[:2] == ["", "7"]:
            iterations, salt, expected = int(parts[2]), _unb64(parts[3]), _unb64(parts[4])
            if iterations < 1:
                return False
            actual = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(expected))
        elif len(parts) == 4 and parts[:2] == ["", "6"]:
            # Mosquitto 1.x: one round of SHA512 over password then salt.
            salt, expected = _unb64(parts[2]), _unb64(parts[3])
            actual = hashlib.sha512(password.encode() + salt).digest()
        else:
            return False
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(actual, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _check_username(username: str) -> None:
    # ':' separates user and hash in the password file; a line break would start a new entry.
    if not username or any(c in username for c in ":\r\n") or username != username.strip():
        raise ValueError(f"username {username!r} cannot be stored in a Mosquitto password file")


@dataclass
class _Entry:
    username: str
    hashed: str


class PasswordFile:
    """A Mosquitto password file, edited in place: the other users' lines, comments and entries
    this code does not understand are kept as they are, so provisioning one gateway never
    disturbs another's credentials (nor an operator's own entries)."""

    def __init__(self, lines: list[str | _Entry] | None = None) -> None:
        self._lines: list[str | _Entry] = lines if lines is not None else []

    @classmethod
    def load(cls, path: Path) -> PasswordFile:
        """Read `path`; a missing file is an empty password file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        lines: list[str | _Entry] = []
        for line in text.splitlines():
            username, sep, hashed = line.partition(":")
            if sep and username and not line.startswith("#") and username == username.strip():
                lines.append(_Entry(username, hashed))
            else:
                lines.append(line)
        return cls(lines)

    def _find(self, username: str) -> int | None:
        for i, line in enumerate(self._lines):
            if isinstance(line, _Entry) and line.username == username:
                return i
        return None

    def set(self, username: str, password: str) -> None:
        """Add `username`, or replace its password (the old one stops working at the next reload)."""
        _check_username(username)
        entry = _Entry(username, hash_password(password))
        i = self._find(username)
        if i is None:
            self._lines.append(entry)
            return
        # Mosquitto uses one entry per name; a duplicate further down (written by hand) would
        # become live if this one were removed later, so the name is kept exactly once.
        self.remove(username)
        self._lines.insert(i, entry)

    def remove(self, username: str) -> bool:
        """Remove every entry of `username`; whether there was one."""
        before = len(self._lines)
        self._lines = [
            line for line in self._lines if not (isinstance(line, _Entry) and line.username == username)
        ]
        return len(self._lines) != before

    def users(self) -> list[str]:
        return [line.username for line in self._lines if isinstance(line, _Entry)]

    def check(self, username: str, password: str) -> bool:
        """Whether `password` is `username`'s current password (for `bosai gateway check`)."""
        i = self._find(username)
        entry = self._lines[i] if i is not None else None
        return isinstance(entry, _Entry) and verify_password(entry.hashed, password)

    def text(self) -> str:
        out = [f"{line.username}:{line.hashed}" if isinstance(line, _Entry) else line for line in self._lines]
        return "".join(f"{line}\n" for line in out)

    def save(self, path: Path) -> None:
        """Write atomically with mode 0600: the broker never reads a half-written file."""
        write_private_file(Path(path), self.text())


def write_private_file(path: Path, text: str) -> None:
    """Replace `path` by `text` atomically with mode 0600 (write_atomically)."""
    write_atomically(path, text.encode("utf-8"), 0o600)


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` by `data` atomically (temporary file, fsync, rename) with `mode`.

    An existing file keeps its owner and group: Mosquitto drops root and reads its password file
    as user "mosquitto" (at every reload), so an operator who made the file the broker's once
    must not find it silently turned into root's by the next provisioning run.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        previous: os.stat_result | None = path.stat()
    except FileNotFoundError:
        previous = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0600; set before any byte is written
        if previous is not None and (previous.st_uid, previous.st_gid) != (os.geteuid(), os.getegid()):
            try:
                os.fchown(fd, previous.st_uid, previous.st_gid)
            except PermissionError:
                raise PermissionError(
                    f"{path}: cannot keep its owner {previous.st_uid}:{previous.st_gid} "
                    "(run as that user or as root)"
                ) from None
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename is only durable once the directory entry is on disk.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# ----------------------------------------------------------------------------------------------
# ACL


@dataclass(frozen=True)
class GatewayAccess:
    tenant: str
    gateway: str

    @property
    def username(self) -> str:
        return gateway_username(self.tenant, self.gateway)


def config_topic(tenant: str, gateway: str) -> str:
    # Not in wire/topics.py yet: the lead adds `topics.config` with the config push and this
    # module switches to it then.
    return f"{topics.PREFIX}/{tenant}/{gateway}/config"


ACL_HEADER = """\
# Mosquitto ACL for bosai.  GENERATED by `bosai gateway provision` (and rotate/revoke):
# do not edit by hand, the next provisioning run rewrites this file.
#
# One explicit block per gateway, no `pattern` lines: a gateway's MQTT username is
# "tenant/gateway" and it may write only its own telemetry, status and health topics and read
# only its own config, so a stolen gateway can neither forge another gateway's (or another
# tenant's) data nor read anything else.  Whatever is not granted here is denied.
"""

CLOUD_ACL_COMMENT = """\
# The cloud consumer: reads every gateway's topics, publishes alert state and quarantine
# notices, and pushes gateway configs.
"""


def acl_text(gateways: Iterable[GatewayAccess], *, cloud_users: Sequence[str] = (DEFAULT_CLOUD_USER,)) -> str:
    """The whole acl_file: one block per gateway (sorted by username), then the cloud users."""
    blocks = [ACL_HEADER]
    for gw in sorted(set(gateways), key=lambda g: g.username):
        t, g = gw.tenant, gw.gateway
        blocks.append(
            f"user {gw.username}\n"
            f"topic write {topics.telemetry(t, g)}\n"
            f"topic write {topics.status(t, g)}\n"
            f"topic write {topics.health(t, g)}\n"
            f"topic read {config_topic(t, g)}\n"
        )
    for user in sorted(set(cloud_users)):
        _check_username(user)
        if any(c.isspace() for c in user):
            raise ValueError(f"cloud username {user!r}: an ACL `user` line cannot hold whitespace")
        blocks.append(
            CLOUD_ACL_COMMENT + f"user {user}\n"
            f"topic read {topics.telemetry_filter()}\n"
            f"topic read {topics.status_filter()}\n"
            f"topic read {topics.health_filter()}\n"
            f"topic readwrite {topics.alerts_filter()}\n"
            f"topic write {topics.PREFIX}/+/quarantine\n"
            f"topic write {config_topic('+', '+')}\n"
        )
    return "\n".join(blocks)


# ----------------------------------------------------------------------------------------------
# Broker config

PRODUCTION_ETC_DIR = "/etc/mosquitto/bosai"

_HEADER = """\
# Mosquitto 2.0 broker config for bosai.  GENERATED by provision/mosquitto.py (broker_conf):
# change the generator, not this file.
#
# This is the whole /etc/mosquitto/mosquitto.conf, not a conf.d include: Debian's default
# mosquitto.conf already sets persistence_location and log_dest, and Mosquitto refuses to
# start when either is given twice.
#
# TLS only (no plain-text listener at all), no anonymous access, one password or client
# certificate and one ACL block per gateway (written by `bosai gateway provision`), and
# persistence so queued QoS 1 telemetry survives a broker restart.  After provisioning,
# rotating or revoking, reload with SIGHUP (`systemctl reload mosquitto`): Mosquitto re-reads
# the password file, the ACL and the CRL, and disconnects clients whose password is no longer
# valid, without dropping the others.
"""

_SECURITY = """\
# One set of security settings for every listener: the same password file and ACL apply
# whichever port a client comes in on.
per_listener_settings false
allow_anonymous false
password_file {etc}/passwords
acl_file {etc}/acl
"""

# Every listener: MQTT over TLS 1.2 or later with the broker's certificate from the project CA.
_TLS = """\
protocol mqtt
cafile {etc}/ca.crt
certfile {etc}/server.crt
keyfile {etc}/server.key
tls_version tlsv1.2
"""

_PASSWORD_LISTENER = """\
# Gateways log in with a username and password, over TLS only.  TLS 1.2 is the floor: older
# versions have known weaknesses.  The username ("tenant/gateway") replaces the client id the
# gateway sent, so no gateway's credentials can take another one's session over and disconnect
# it (Mosquitto otherwise lets any logged-in client use any client id).
listener {port}{bind}
{tls}use_username_as_clientid true
"""

_CERT_LISTENER = """\
# Gateways with a client certificate from the project CA.  The certificate's CN
# ("tenant/gateway") becomes the MQTT username, so the same ACL applies; a certificate listed
# in the CRL (revoked by `bosai gateway revoke`) is refused after a reload (SIGHUP).  That
# username is the client id too, as on the password listener.
listener {port}{bind}
{tls}require_certificate true
use_identity_as_username true
use_username_as_clientid true
crlfile {etc}/crl.pem
"""

_CLOUD_LISTENER = """\
# The cloud consumer's listener: username and password over TLS, keeping the client id the
# consumer sends, because each shard of one login needs its own persistent session
# ("bosai-cloud-s0of4", ...).  Bound to the cloud's own network only (loopback by default, or
# a private address): gateways cannot reach it, so their credentials cannot use it to choose a
# client id.
listener {port} {bind}
{tls}"""

_LOGGING = """\
# Failed logins and ACL denials must be visible (issue 7): the cloud consumer follows this log
# (cloud/brokerlog.py) and reports them as security events with their source address.
# What Mosquitto 2.0.11 logs, at which type:
#   notice       "New connection from ip:port on port N." (the source), "Client <unknown>
#                disconnected, not authorised." (bad or revoked password, unknown user,
#                anonymous), "Client connection from ip failed: ..." (not TLS at all)
#   error        "OpenSSL Error[0]: ..." (no client certificate, unknown CA, revoked certificate)
#   debug        "Denied PUBLISH from <client> (..., '<topic>', ...)": an ACL denial is logged
#                only at debug, which also logs every message received and sent (without
#                payloads): about a line per message, so it is off unless asked for
#                (`bosai gateway init-authority --log-acl-denials`); size logrotate for it.
# Mosquitto never logs passwords, at any type.
{log_dest}log_type error
log_type warning
log_type notice
log_type information
{debug}connection_messages true
log_timestamp true
log_timestamp_format %Y-%m-%dT%H:%M:%S%z
"""

_PERSISTENCE = """\
# Sessions, subscriptions and queued QoS 1 messages are saved to disk (every 30 s and at a
# graceful stop), so telemetry waiting for the consumer survives a broker restart.
persistence true
persistence_location {persistence_dir}
autosave_interval 30

# While the cloud consumer is down, the broker queues its QoS 1 telemetry in the consumer's
# persistent session.  Mosquitto's default keeps only 1000 messages per client and silently drops
# the rest; a consumer outage of an hour with a few hundred gateways exceeds that.  Keep far
# more (bounded, so a consumer that never returns cannot exhaust the broker's memory).
max_queued_messages 1000000
max_queued_bytes 2000000000
# Gateways batch readings; a telemetry payload is at most 256 KiB by the wire contract, plus
# topic and headers.  Larger packets are refused by the broker before they reach the consumer.
max_packet_size 266240
"""


def check_listeners(
    port: int, cert_port: int | None, cloud_port: int | None, cloud_bind_address: str
) -> None:
    """ValueError, in words for the operator, if the listeners cannot be configured like this."""
    ports = {"--port": port, "--cert-port": cert_port, "--cloud-port": cloud_port}
    given = {flag: p for flag, p in ports.items() if p is not None}
    for flag, p in given.items():
        if not 0 < p < 65536:
            raise ValueError(f"{flag} {p} is not a TCP port")
        same = [other for other, q in given.items() if q == p and other != flag]
        if same:
            raise ValueError(f"{flag} and {same[0]} are both {p}: each listener needs its own port")
    if cloud_port is not None and not cloud_bind_address.strip():
        raise ValueError("the cloud listener needs an address to bind to (loopback or a private one)")


def broker_conf(
    *,
    etc_dir: str = PRODUCTION_ETC_DIR,
    port: int = 8883,
    cert_port: int | None = 8884,
    cloud_port: int | None = 8885,
    cloud_bind_address: str = "127.0.0.1",
    bind_address: str | None = None,
    persistence_dir: str = "/var/lib/mosquitto/",
    log_file: str | None = None,
    run_as_user: str | None = None,
    log_acl_denials: bool = False,
) -> str:
    """The production broker config; the keyword arguments exist for other paths and for tests.

    `log_acl_denials` turns on Mosquitto's debug log, the only place it reports ACL denials.

    `cloud_port` is the consumer's listener on `cloud_bind_address` (never a public address:
    it is the one listener where a login may choose its client id).  None leaves the consumer
    on the password listener, where its client id is its username: one consumer process only.

    `log_file` None keeps Mosquitto's default log destination (the Debian package's
    /etc/mosquitto/mosquitto.conf sends it to /var/log/mosquitto/mosquitto.log);
    `run_as_user` None keeps Mosquitto's default (it drops root to user "mosquitto").
    """
    etc = etc_dir.rstrip("/") or "/"
    bind = f" {bind_address}" if bind_address else ""
    check_listeners(port, cert_port, cloud_port, cloud_bind_address)
    parts = [_HEADER]
    if run_as_user is not None:
        parts.append(f"# Mosquitto started as root drops to this user.\nuser {run_as_user}\n")
    parts.append(_SECURITY.format(etc=etc))
    tls = _TLS.format(etc=etc)
    parts.append(_PASSWORD_LISTENER.format(port=port, bind=bind, etc=etc, tls=tls))
    if cert_port is not None:
        parts.append(_CERT_LISTENER.format(port=cert_port, bind=bind, etc=etc, tls=tls))
    if cloud_port is not None:
        parts.append(_CLOUD_LISTENER.format(port=cloud_port, bind=cloud_bind_address, tls=tls))
    parts.append(
        _LOGGING.format(
            log_dest=f"log_dest file {log_file}\n" if log_file else "",
            debug="log_type debug\n" if log_acl_denials else "",
        )
    )
    dir_ = persistence_dir if persistence_dir.endswith("/") else persistence_dir + "/"
    parts.append(_PERSISTENCE.format(persistence_dir=dir_))
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------
# The examples shipped in deploy/mosquitto/

# Debian's mosquitto.service creates /var/log/mosquitto for the broker; its logrotate rule
# reloads Mosquitto after rotating this file (BrokerLogFollower follows the rotation).
PRODUCTION_LOG_FILE = "/var/log/mosquitto/mosquitto.log"
EXAMPLE_GATEWAYS = (GatewayAccess("demo-city", "gw01"),)


def deploy_examples() -> dict[str, str]:
    """deploy/mosquitto/ file name -> content: the production config and an example ACL."""
    return {
        "bosai.conf": broker_conf(log_file=PRODUCTION_LOG_FILE),
        "acl.example": acl_text(EXAMPLE_GATEWAYS),
    }


def write_deploy_examples(directory: Path) -> None:
    """Regenerate the shipped examples (`python -m provision.mosquitto deploy/mosquitto`)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    for name, text in deploy_examples().items():
        (Path(directory) / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    import sys

    write_deploy_examples(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("deploy/mosquitto"))
