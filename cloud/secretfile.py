"""Reading secrets (MQTT password, InfluxDB token) from files only their owner can read."""

from __future__ import annotations

import stat
from pathlib import Path

from cloud.config import resolve
from wire.configfile import ConfigError


def read_secret(config_path: Path, where: str, relative: str) -> str:
    """The first line of the secret file named by a config field, or ConfigError.

    Refuses files that group or others can read: a leaked token writes into every tenant's data.
    The secret itself never appears in a message.
    """
    path = resolve(config_path, relative)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(config_path, where, f"file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(config_path, where, f"cannot read {path}: {exc.__class__.__name__}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(config_path, where, f"{path} is accessible by group/others; run: chmod 600 {path}")
    secret = text.splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise ConfigError(config_path, where, f"{path} is empty")
    return secret
