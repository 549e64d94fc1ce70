"""MQTT connection settings shared by the edge agent and the cloud consumer."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec


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
    return None
