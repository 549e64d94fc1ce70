"""Webhook channel: one HTTP POST per alert event, in one of three formats.

- `generic`: the Alert itself as JSON (the wire schema, wire/alerts.py), for automation.
- `slack`: a Slack incoming-webhook message, `{"text": subject, "blocks": [section]}`; `text`
  is what the phone notification shows, the section carries the body as mrkdwn.
- `teams`: a Microsoft Teams "Workflows" (Power Automate) webhook message: `{"type": "message",
  "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}`
  with an Adaptive Card 1.4 (subject, a FactSet of the facts, Action.OpenUrl per link).  The
  legacy Office 365 connector MessageCard is retired, so it is not offered.

The outcome of an attempt, for the dispatcher: 2xx delivered (Slack answers 200 "ok", Teams
Workflows 202); 408/425/429 and 5xx are worth retrying, with the server's Retry-After; any other
4xx (400 bad payload, 401/403 revoked, 404/410 deleted channel) is permanent.  Redirects are
not followed: urllib would turn the POST into a GET and lose the alert, and a webhook that moved
needs its new URL in the config anyway.

The URL of a Slack or Teams webhook is the credential, so it is read from a 0600 `url_file`,
and only scheme and host ever appear in logs and errors (response bodies echoing the path, as
some servers' 404 pages do, are redacted).
"""

from __future__ import annotations

import email.utils
import http.client
import logging
import time
import urllib.error
import urllib.request
from datetime import tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from cloud.notify import text
from cloud.notify.base import NotifyError, safe_target
from cloud.notify.config import WebhookConfig, is_loopback, tls_context, zone
from wire.alerts import Alert
from wire.configfile import ConfigError, read_secret

log = logging.getLogger(__name__)

USER_AGENT = "bosai-notifier/1"
RETRYABLE_STATUS = frozenset({408, 425, 429})  # and every 5xx
MAX_RESPONSE_BYTES = 64 * 1024
SLACK_SECTION_LIMIT = 3000  # Slack refuses a section text longer than this
TEAMS_MAX_ACTIONS = 5


class WebhookNotifier:
    def __init__(self, config: WebhookConfig, config_path: Path, where: str) -> None:
        self.id = config.id
        self.config = config
        self.url = load_url(config, config_path, where)
        self.target = safe_target(self.url)  # what logs may show
        self.tz = zone(config.timezone, config_path, where)
        self.ack = text.ack_command(config_path)
        handlers: list[urllib.request.BaseHandler] = [_RefuseRedirects()]
        if urlsplit(self.url).scheme == "https":
            handlers.append(
                urllib.request.HTTPSHandler(context=tls_context(config.ca_file, config_path, where))
            )
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return f"WebhookNotifier(id={self.id!r}, format={self.config.format!r}, target={self.target!r})"

    def accepts(self, alert: Alert) -> bool:
        return self.config.accepts(alert)

    def send(self, alert: Alert) -> None:
        body, content_type = payload(alert, self.config.format, self.tz, self.ack)
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": content_type, "User-Agent": USER_AGENT},
        )
        try:
            with self._opener.open(request, timeout=self.config.timeout_s) as response:
                response.read(MAX_RESPONSE_BYTES)  # let the server finish; the content is not needed
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except urllib.error.URLError as exc:  # refused, DNS, TLS, timeout while connecting
            raise NotifyError(f"{self.target}: {self._redact(str(exc.reason))}") from None
        except TimeoutError:
            raise NotifyError(f"{self.target}: no answer within {self.config.timeout_s:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            detail = self._redact(str(exc)) or exc.__class__.__name__
            raise NotifyError(f"{self.target}: {detail}") from None

    def _http_error(self, exc: urllib.error.HTTPError) -> NotifyError:
        status = exc.code
        try:
            snippet = exc.read(4096).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            snippet = ""
        # Redact before cutting, so a cut cannot leave the start of a token behind.
        detail = " ".join(self._redact(snippet).split())[:200]
        message = f"{self.target} answered HTTP {status}" + (f": {detail}" if detail else "")
        if 300 <= status < 400:
            return NotifyError(f"{message} (redirect not followed: configure the final URL)", permanent=True)
        if status in RETRYABLE_STATUS or status >= 500:
            return NotifyError(message, retry_after=parse_retry_after(exc.headers.get("Retry-After")))
        return NotifyError(message, permanent=True)

    def _redact(self, message: str) -> str:
        """The message without the secret part of the URL, should the server or OS echo it."""
        parts = urlsplit(self.url)
        for secret in (self.url, parts.path + ("?" + parts.query if parts.query else ""), parts.query):
            if len(secret) > 1:
                message = message.replace(secret, "/…")
        return message


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


def load_url(config: WebhookConfig, config_path: Path, where: str) -> str:
    """The webhook URL from `url` or the 0600 `url_file`, checked; or ConfigError."""
    if config.url is None and config.url_file is None:
        raise ConfigError(
            config_path,
            f"{where}: field 'url'",
            "set url, or url_file naming a 0600 file that holds the URL (Slack and Teams URLs are secrets)",
        )
    if config.url is not None and config.url_file is not None:
        raise ConfigError(config_path, f"{where}: field 'url_file'", "set url or url_file, not both")
    if config.url_file is not None:
        field = f"{where}: field 'url_file'"
        url = read_secret(config_path, field, config.url_file)
        problem = url_problem(url)
        if problem:  # never echo the URL from a secret file
            raise ConfigError(config_path, field, f"the URL in {config.url_file} {problem}")
        return url
    assert config.url is not None
    problem = url_problem(config.url)
    if problem:
        raise ConfigError(config_path, f"{where}: field 'url'", f"{config.url!r} {problem}")
    if config.format != "generic" and not is_loopback(urlsplit(config.url).hostname or ""):
        log.warning(
            "notifier %r: a %s webhook URL is a credential; keep it in a 0600 file named by url_file "
            "rather than in %s",
            config.id,
            config.format,
            config_path,
        )
    return config.url


def url_problem(url: str) -> str | None:
    """What is wrong with a webhook URL, in words, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        return "must start with https://"
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "has an invalid port"
    if not parts.hostname:
        return "has no host name"
    if any(c.isspace() for c in url):
        return "contains white space"
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return (
            "must use https://: plain http:// would send the alert contents and the URL (a "
            "secret for Slack and Teams) in clear text; http:// is only allowed to 127.0.0.1, ::1 "
            "or localhost"
        )
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# -- payloads ----------------------------------------------------------------------------------


def payload(
    alert: Alert, format: str, tz: tzinfo = text.JST, ack: str = text.ACK_COMMAND
) -> tuple[bytes, str]:
    """(body, content type) of the POST for `format`."""
    if format == "slack":
        return msgspec.json.encode(slack_message(alert, tz, ack)), "application/json; charset=utf-8"
    if format == "teams":
        return msgspec.json.encode(teams_message(alert, tz, ack)), "application/json; charset=utf-8"
    return msgspec.json.encode(alert), "application/json"


def slack_message(alert: Alert, tz: tzinfo = text.JST, ack: str = text.ACK_COMMAND) -> dict[str, Any]:
    subject = text.subject(alert)
    section = (
        f"*{_slack_escape(subject)}*\n{_slack_escape(text.body(alert, tz, with_headline=False, ack=ack))}"
    )
    if len(section) > SLACK_SECTION_LIMIT:
        section = section[: SLACK_SECTION_LIMIT - 1] + "…"
    return {
        "text": _slack_escape(subject),  # the notification line; the channel shows the blocks
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": section}}],
    }


def _slack_escape(s: str) -> str:
    # Slack's mrkdwn gives &, < and > a meaning (links, mentions); these three must be escaped.
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def teams_message(alert: Alert, tz: tzinfo = text.JST, ack: str = text.ACK_COMMAND) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": text.subject(alert),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        },
        {
            "type": "FactSet",
            "facts": [{"title": label, "value": value} for label, value in text.facts(alert, tz)],
        },
    ]
    if alert.status == "active":
        body.append(
            {
                "type": "TextBlock",
                "text": f"確認するには / to acknowledge: {ack} {alert.id}",
                "wrap": True,
                "isSubtle": True,
            }
        )
    links = [link for link in alert.links if link.startswith(("https://", "http://"))]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "msteams": {"width": "Full"},
    }
    if links:
        shown = links[:TEAMS_MAX_ACTIONS]
        title = "ダッシュボード dashboard"
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": f"{title} {i}" if len(shown) > 1 else title, "url": link}
            for i, link in enumerate(shown, start=1)
        ]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }
