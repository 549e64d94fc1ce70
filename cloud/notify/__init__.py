"""Alert notifiers: webhook (generic JSON, Slack, Teams) and e-mail, behind one dispatcher.

    configs (config.py) --build_notifiers--> notifiers (webhook.py, smtp.py: one blocking send)
    Dispatcher (dispatch.py): one queue and one worker thread per notifier, retries with backoff

The alert manager calls `Dispatcher.submit(alert)` for every alert event; it never blocks and
never raises, so a hanging mail relay delays neither ingestion nor the other channels.  The
message text is shared by every channel (text.py).

Adding a channel: its config struct in config.py (joined to `NotifierConfig`), one module with a
class built from `(config, config_path, where)` that implements base.Notifier, and one entry in
`CHANNELS` below.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloud.notify.base import Notifier, NotifyError
from cloud.notify.config import NotifierConfig, SmtpConfig, WebhookConfig, build_notifiers
from cloud.notify.dispatch import Dispatcher, NotifierStats
from cloud.notify.smtp import SmtpNotifier
from cloud.notify.webhook import WebhookNotifier

# config struct -> factory(config, config_path, where) validating the config and reading secrets
CHANNELS: dict[type[Any], Callable[[Any, Path, str], Notifier]] = {
    WebhookConfig: WebhookNotifier,
    SmtpConfig: SmtpNotifier,
}

__all__ = [
    "CHANNELS",
    "Dispatcher",
    "Notifier",
    "NotifierConfig",
    "NotifierStats",
    "NotifyError",
    "SmtpConfig",
    "WebhookConfig",
    "build_notifiers",
]
