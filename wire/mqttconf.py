"""MQTT connection settings shared by the edge agent and the cloud consumer."""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from wire.configfile import ConfigError, check_private, read_secret, resolve

log = logging.getLogger(__name__)


class TlsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    ca_file: str | None = None  # None: the system trust store
    cert_file: str | None = None  # client certificate (X.509 auth)
    key_file: str | None = None
    # Turning verification off is for a bench test only; clients warn loudly when it is off.
    insecure_skip_verify: bool = False


class MqttConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # mqtts://host:8883 (TLS, the production default) or mqtt://host:1883 (plain; needs
    # allow_insecure: true, because credentials and data would cross the link in clear).
    url: str
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str | None = None
    username: str | None = None
    password_file: str | None = None  # must be 0600; the password never sits in a config file
    tls: TlsConfig = TlsConfig()
    keepalive: Annotated[int, msgspec.Meta(ge=5, le=3600)] = 30
    allow_insecure: bool = False

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def use_tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"


def check_url(cfg: MqttConfig) -> str | None:
    """A problem with the broker URL in words, or None.  Used by both config loaders."""
    parts = urlsplit(cfg.url)
    if parts.scheme not in ("mqtt", "mqtts"):
        return "must start with mqtts:// (or mqtt:// for a bench test)"
    if not parts.hostname:
        return "has no host name"
    if parts.scheme == "mqtt" and not cfg.allow_insecure:
        return (
            "plain mqtt:// sends credentials and data in clear; use mqtts://, "
            "or set allow_insecure: true for a bench test"
        )
    if parts.scheme == "mqtt":
        log.warning(
            "plain mqtt:// to %s (allow_insecure): credentials and data cross the link in clear; "
            "bench use only",
            parts.hostname,
        )
    return None


def tls_context(tls: TlsConfig, config_path: str | Path) -> ssl.SSLContext:
    """Verification on, TLS 1.2 minimum, the CA file or the system trust store, optional client
    certificate.  Raises ConfigError naming the field of a file that cannot be loaded."""
    where = "mqtt: tls"
    ca = resolve(config_path, tls.ca_file) if tls.ca_file else None
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(config_path, f"{where}: field 'ca_file'", f"cannot load {ca}: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file:
        cert = resolve(config_path, tls.cert_file)
        key = resolve(config_path, tls.key_file) if tls.key_file else None
        # The private key must be as private as a password file (read_secret's rule); a key
        # inside the certificate file would have to be too.
        check_private(config_path, f"{where}: field {'key_file' if key else 'cert_file'!r}", key or cert)
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                config_path, f"{where}: field 'cert_file'", f"cannot load {cert}: {exc}"
            ) from None
    elif tls.key_file:
        raise ConfigError(config_path, f"{where}: field 'key_file'", "needs cert_file too")
    if tls.insecure_skip_verify:
        log.warning(
            "!!! TLS CERTIFICATE VERIFICATION IS OFF (insecure_skip_verify) !!! Anyone on the path can "
            "impersonate the broker and read the credentials.  Use this on a bench only."
        )
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def read_password(cfg: MqttConfig, config_path: str | Path) -> str | None:
    """The broker password from `password_file` (0600), or None when no file is configured."""
    if cfg.password_file is None:
        return None
    return read_secret(config_path, "mqtt: field 'password_file'", cfg.password_file)


def probe_broker(host: str, port: int, tls: ssl.SSLContext | None, timeout: float = 10.0) -> str:
    """Why a connection to the broker fails, in the socket's or TLS's own words (blocking).

    paho reports a failed TCP or TLS connect without its cause; this tries once more, by hand, so
    that the one warning of an outage can say "Connection refused" or "certificate verify failed".
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if tls is not None:
                with tls.wrap_socket(sock, server_hostname=host):
                    pass
    except (OSError, ssl.SSLError) as exc:
        return str(exc) or type(exc).__name__
    return "TCP and TLS work now; the broker may have been restarting"
