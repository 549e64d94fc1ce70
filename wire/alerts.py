"""Alert messages, published retained on `bosai/v1/{tenant}/alerts/{site}/{sensor}/{kind}`.

The retained message is the current state of that (sensor, kind) alert, so a duty officer's
client that connects late still sees what is active.  `state` follows the episode lifecycle:
raised -> escalated* -> resolved.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from wire.ids import Ident
from wire.telemetry import AwareDatetime

AlertState = Literal["raised", "escalated", "deescalated", "resolved"]


class Alert(msgspec.Struct, frozen=True, omit_defaults=True):
    v: Literal[1]
    id: str  # stable for the whole episode
    tenant: Ident
    site: Ident
    site_name: str
    sensor: Ident
    kind: str
    state: AlertState
    level: int  # 0 when resolved
    level_name: str  # English name of the level ("" when resolved)
    level_name_ja: str  # Japanese name of the level, e.g. 避難判断水位
    threshold: float | None
    value: float
    unit: str
    ts: AwareDatetime  # sample time of the reading that changed the state
    raised_at: AwareDatetime  # sample time the episode began
    reason: str  # plain words for the duty officer
    previous_level: int = 0


alert_decoder = msgspec.json.Decoder(Alert)
