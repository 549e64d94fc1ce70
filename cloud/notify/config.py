"""Notifier configs (one YAML list item each, tagged by `type`) and `build_notifiers`.

    notifiers:
      - type: webhook
        id: duty-slack
        url_file: secrets/slack-webhook.url      # 0600; Slack/Teams URLs are credentials
        format: slack
        categories: [disaster]
        min_level: 2
      - type: smtp
        id: duty-mail
        host: smtp.example.jp
        username: bosai
        password_file: secrets/smtp.password     # 0600
        sender: bosai@example.jp
        to: [duty@example.jp]
      - type: smtp
        id: chief-mail
        tier: 1                                  # hears handovers (not acknowledged in time)
        ...

Every channel shares the filters of `NotifierFilters`.  Everything that can be wrong is found by
`build_notifiers` at load, before anything connects, and reported as a ConfigError naming the
file, the notifier and the field: a missing or group-readable secret file, a URL that would send
alert contents (and a secret URL) in clear text over the network, a duplicate id, an unknown
time zone.

Adding a channel: a `...Config(NotifierFilters, tag="...")` struct here, joined to
`NotifierConfig`; a module with a class taking `(config, config_path, where)` that validates
its fields and implements cloud.notify.base.Notifier; and one entry in
cloud.notify.CHANNELS.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Sequence
from datetime import tzinfo
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from cloud.notify.base import Notifier
from cloud.notify.text import JST
from wire.alerts import Alert, AlertEvent, Category
from wire.configfile import ConfigError, resolve
from wire.ids import Ident

DEFAULT_TIMEZONE = "Asia/Tokyo"

Timeout = Annotated[float, msgspec.Meta(gt=0, le=300)]
NonEmptyIdents = Annotated[list[Ident], msgspec.Meta(min_length=1)]


def _all_categories() -> list[Category]:
    return ["disaster", "maintenance"]


class NotifierFilters(
    msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True, tag_field="type"
):
    """Which alert events a channel's recipients hear about; every channel has these."""

    # Recipients tier: 0 = the duty officer; 1, 2 = whom an unacknowledged alert is handed over
    # to.  A channel hears events whose notify_tier is at least its own: after a handover to
    # tier 1 everyone already involved (tiers 0 and 1) hears the news.
    tier: Annotated[int, msgspec.Meta(ge=0, le=9)] = 0
    tenants: NonEmptyIdents | None = None  # None: every tenant
    categories: Annotated[list[Category], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=_all_categories
    )
    # Compared with the episode's peak level, so the resolve of a level-3 episode reaches a
    # channel that only hears level 3 and above.
    min_level: Annotated[int, msgspec.Meta(ge=1, le=5)] = 1
    events: Annotated[list[AlertEvent], msgspec.Meta(min_length=1)] | None = None  # None: all
    timezone: str = DEFAULT_TIMEZONE  # times in messages are shown in this zone

    def accepts(self, alert: Alert) -> bool:
        if alert.silenced:  # inside a maintenance window: recorded, not notified
            return False
        return (
            self.tier <= alert.notify_tier
            and (self.tenants is None or alert.tenant in self.tenants)
            and alert.category in self.categories
            and max(alert.peak_level, alert.level) >= self.min_level
            and (self.events is None or alert.event in self.events)
        )


class WebhookConfig(NotifierFilters, tag="webhook", kw_only=True, frozen=True, forbid_unknown_fields=True):
    """HTTP POST of each alert event: the Alert JSON (generic), or a Slack / Teams message."""

    id: Ident
    url: str | None = None  # exactly one of url and url_file
    url_file: str | None = None  # 0600 file holding the URL: Slack/Teams URLs are secrets
    format: Literal["generic", "slack", "teams"] = "generic"
    timeout_s: Timeout = 10.0
    ca_file: str | None = None  # CA for an https server with a private CA; None: system store


class SmtpConfig(NotifierFilters, tag="smtp", kw_only=True, frozen=True, forbid_unknown_fields=True):
    """E-mail through an SMTP relay; an episode's mails thread together in mail clients."""

    id: Ident
    host: str
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 587
    # starttls (submission, 587), ssl (implicit TLS, 465) or none (a relay on this machine only)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password_file: str | None = None  # 0600; needed with username
    sender: str
    to: Annotated[list[str], msgspec.Meta(min_length=1)]
    timeout_s: Timeout = 30.0
    ca_file: str | None = None  # CA for a relay with a private CA; None: the system store


NotifierConfig = WebhookConfig | SmtpConfig


def build_notifiers(
    configs: Sequence[NotifierConfig], config_path: Path, where: str = "alerts: notifiers"
) -> list[Notifier]:
    """One notifier per config, validated, with its secrets read; or ConfigError.

    `where` is the location of the list in the config file, for error messages:
    `consumer.yaml: alerts: notifiers[1] (id 'duty-slack'): field 'url_file': ...`.
    """
    from cloud.notify import CHANNELS  # the registry imports the channel modules, which import us

    first_index: dict[str, int] = {}
    notifiers: list[Notifier] = []
    for i, config in enumerate(configs):
        at = f"{where}[{i}] (id {config.id!r})"
        if config.id in first_index:
            raise ConfigError(
                config_path, f"{at}: field 'id'", f"duplicate id (also {where}[{first_index[config.id]}])"
            )
        first_index[config.id] = i
        channel = CHANNELS.get(type(config))
        if channel is None:  # a config struct added without its registration
            raise ConfigError(config_path, f"{at}: field 'type'", "no notifier registered for this type")
        notifiers.append(channel(config, config_path, at))
    return notifiers


# -- helpers for the channels' own checks ----------------------------------------------------


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses: traffic that never leaves the machine."""
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def zone(name: str, config_path: Path, where: str) -> tzinfo:
    """The tzinfo for a config's `timezone`, or ConfigError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if name == DEFAULT_TIMEZONE:
            return JST  # a fixed +09:00 when the machine has no tz database
        raise ConfigError(
            config_path, f"{where}: field 'timezone'", f"unknown time zone {name!r} (e.g. Asia/Tokyo)"
        ) from None


def tls_context(ca_file: str | None, config_path: Path, where: str) -> ssl.SSLContext:
    """Verification on, TLS 1.2 minimum; the CA file (relative to the config) or the system store."""
    ca = resolve(config_path, ca_file) if ca_file else None
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(config_path, f"{where}: field 'ca_file'", f"cannot load {ca}: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
