"""Gateway status (retained birth message / Last Will) and health messages."""

from __future__ import annotations

from typing import Literal

import msgspec

from wire.ids import Ident
from wire.telemetry import AwareDatetime


class Status(msgspec.Struct, frozen=True):
    """Published retained on connect ("online") and registered as Last Will ("offline").

    The Last Will is fixed at connect time, so it carries no timestamp of the disconnection;
    the cloud uses its arrival time for that.
    """

    v: Literal[1]
    tenant: Ident
    gateway: Ident
    state: Literal["online", "offline"]
    since: AwareDatetime | None = None
    agent_version: str = ""


class Health(msgspec.Struct, frozen=True):
    v: Literal[1]
    tenant: Ident
    gateway: Ident
    ts: AwareDatetime
    outbox_depth: int
    outbox_oldest_age_s: float
    published: int
    sensor_errors: dict[str, int] = {}


status_decoder = msgspec.json.Decoder(Status)
health_decoder = msgspec.json.Decoder(Health)
