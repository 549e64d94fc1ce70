"""What every notification channel is: a filter (`accepts`) and a blocking, bounded `send`.

A channel never retries and never queues: it makes one delivery attempt within its timeout and
either returns or raises NotifyError saying whether trying again can help (`permanent`) and how
long the server asked us to wait (`retry_after`).  Queues, retries, backoff and logging live in
one place, cloud.notify.dispatch, so every channel behaves the same under failure.

Error messages must never carry a secret: Slack/Teams webhook URLs are credentials (the token
is the path), so channels name their target by scheme and host only (`safe_target`).
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

from wire.alerts import Alert


class NotifyError(Exception):
    """One delivery attempt failed.

    permanent: trying again cannot help (HTTP 400/401/403/404, SMTP 5xx: the payload, the
        credentials or the recipient are refused); the dispatcher gives the alert up at once.
    retry_after: seconds the server asked us to wait (HTTP 429/503 Retry-After), or None.
    """

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after


class Notifier(Protocol):
    id: str

    def accepts(self, alert: Alert) -> bool:
        """Whether this channel's recipients should hear about this alert event."""
        ...

    def send(self, alert: Alert) -> None:
        """Deliver once, blocking at most about the channel's timeout; raise NotifyError."""
        ...


def safe_target(url: str) -> str:
    """`https://hooks.slack.com` for a secret webhook URL: what may appear in logs and errors."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a malformed port: say nothing rather than echo the URL
        port = ""
    return f"{parts.scheme}://{host}{port}"
