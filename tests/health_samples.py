"""A complete gateway health message (every optional field set) for the tests of what the cloud
writes from it (unit and integration), changed per test."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from wire.status import Health, SensorHealth


def gateway_health(ts: datetime, sensors: dict[str, SensorHealth], /, **changes: Any) -> Health:
    """Gateway gw1 of tenant city-a: two messages queued, one reconnect, clock synchronised."""
    health = Health(
        v=1,
        tenant="city-a",
        gateway="gw1",
        ts=ts,
        uptime_s=300.5,
        agent_version='0.1.0 "beta"',
        config_hash="sha256:ab12",
        outbox_depth=2,
        outbox_bytes=512,
        outbox_oldest_age_s=1.5,
        outbox_dropped=0,
        outbox_dropped_readings=0,
        messages_acked=298,
        reconnects=1,
        unrouted=0,
        clock_synced=True,
        sensors=sensors,
    )
    return msgspec.structs.replace(health, **changes)
