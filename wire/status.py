"""Gateway status (retained birth message / Last Will) and health messages."""

from __future__ import annotations

from typing import Literal

import msgspec

from wire.ids import Ident
from wire.telemetry import AwareDatetime, Quality


class Status(msgspec.Struct, frozen=True):
    """Published retained on connect ("online") and registered as Last Will ("offline").

    The Last Will is fixed at connect time, so it carries no timestamp of the disconnection;
    the cloud uses its arrival time for that.  `config_hash` identifies the configuration the
    agent runs (`bosai edge validate` prints the same hash), so staff can see which gateways
    still run an old one.
    """

    v: Literal[1]
    tenant: Ident
    gateway: Ident
    state: Literal["online", "offline"]
    since: AwareDatetime | None = None
    agent_version: str = ""
    config_hash: str = ""


class SensorHealth(msgspec.Struct, frozen=True):
    """One sensor as the gateway sees it (counters since the agent started)."""

    polls: int  # requests made
    errors: int  # requests that failed (timeout, crc, exception, error)
    failing: bool  # the last request failed
    quality: Quality | None  # flag of the last sample (the worst of its points)
    last_ok: AwareDatetime | None  # sample time of the last sample with every point ok
    fast: bool  # in fast mode (near a threshold or changing fast): sampled and reported more often
    reported: int  # samples sent
    suppressed: int  # samples not sent by the report policy (within the deadband, before the heartbeat)


class Health(msgspec.Struct, frozen=True):
    """Published every `publish.health_interval` seconds while connected (retained, latest only)."""

    v: Literal[1]
    tenant: Ident
    gateway: Ident
    ts: AwareDatetime
    uptime_s: float
    agent_version: str
    config_hash: str
    outbox_depth: int  # messages waiting for PUBACK
    outbox_bytes: int
    outbox_oldest_age_s: float  # 0 when empty
    outbox_dropped: int  # messages dropped by the outbox bound, ever (persisted)
    outbox_dropped_readings: int
    messages_acked: int  # since the agent started
    reconnects: int
    unrouted: int  # PUBACKs saying nobody subscribed (kept and resent)
    clock_synced: bool | None = None  # the gateway's clock is NTP/GPS-disciplined (None: unknown)
    sensors: dict[str, SensorHealth] = {}


status_decoder = msgspec.json.Decoder(Status)
health_decoder = msgspec.json.Decoder(Health)
