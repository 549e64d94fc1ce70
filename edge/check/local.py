"""The checks that need nothing outside this box: the config, the secret files, the system clock."""

from __future__ import annotations

import stat

from edge.check.items import Checklist, Status
from edge.check.output import count
from edge.clocksync import clock_synchronized
from edge.config import LoadedGateway, config_hash
from wire.configfile import ConfigError, read_secret, resolve


def check_config(loaded: LoadedGateway, out: Checklist) -> None:
    cfg = loaded.config
    out.add(
        "config",
        "valid",
        Status.PASS,
        f"gateway {cfg.gateway}, tenant {cfg.tenant}: {count(len(cfg.sensors), 'sensor')} on "
        f"{count(len(cfg.buses), 'bus', 'buses')}, config hash {config_hash(loaded)}",
    )


def check_secrets(loaded: LoadedGateway, out: Checklist) -> None:
    mqtt = loaded.config.mqtt
    secrets = [
        ("password file", "mqtt: field 'password_file'", mqtt.password_file),
        ("client key", "mqtt: tls: field 'key_file'", mqtt.tls.key_file),
    ]
    if all(file is None for _, _, file in secrets):
        out.add(
            "secrets",
            "credentials",
            Status.WARN,
            "no password file and no client key configured: the gateway logs in without credentials, "
            "which a production broker refuses",
        )
        return
    for name, where, file in secrets:
        if file is None:
            continue
        try:
            read_secret(loaded.path, where, file)  # mode and content checks; the value is dropped
        except ConfigError as exc:
            out.add("secrets", name, Status.FAIL, exc.message)
            continue
        path = resolve(loaded.path, file)
        mode = stat.filemode(path.stat().st_mode)
        out.add("secrets", name, Status.PASS, f"{path}: present, readable by its owner only ({mode})")


def check_clock(out: Checklist) -> None:
    synced = clock_synchronized()
    if synced is True:
        out.add("clock", "synchronized", Status.PASS, "the system clock is synchronized (NTP or GPS)")
    elif synced is False:
        out.add(
            "clock",
            "synchronized",
            Status.WARN,
            "the system clock is not synchronized: timestamps may be refused by the cloud; check NTP "
            "('timedatectl status') or the GPS receiver",
        )
    else:
        out.add(
            "clock", "synchronized", Status.SKIP, "cannot tell on this system whether the clock is synced"
        )
