"""A complete disaster alert for notifier tests (unit and integration), changed per test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from wire.alerts import Alert, Forecast

T0 = datetime(2025, 7, 1, 4, 2, 5, tzinfo=UTC)  # 13:02:05 in Tokyo
EPISODE = "demo-city.river-radar-01.river_level.level.20250701T040205Z"


def river_alert(**changes: Any) -> Alert:
    """River stage level 3 raised, with rate, forecast and a dashboard link."""
    alert = Alert(
        v=1,
        id=EPISODE,
        tenant="demo-city",
        condition="level",
        category="disaster",
        event="raised",
        status="active",
        level=3,
        ts=T0,
        raised_at=T0,
        reason="river_level 3.02 m reached 避難判断水位 / evacuation judgement (3.00 m)",
        site="ishikari-asahibashi",
        site_name="石狩川 旭橋",
        sensor="river-radar-01",
        kind="river_level",
        gateway="gw01",
        level_name="evacuation judgement",
        level_name_ja="避難判断水位",
        threshold=3.0,
        value=3.02,
        unit="m",
        rate=0.12,
        rate_unit="m/h",
        forecast=Forecast(
            kind="next_level",
            eta=T0 + timedelta(minutes=63),
            earliest=T0 + timedelta(minutes=48),
            latest=T0 + timedelta(minutes=88),
            target_level=4,
            target_value=3.8,
        ),
        previous_level=2,
        peak_level=3,
        links=["https://grafana.example.jp/d/river?var-site=ishikari-asahibashi&from=now-6h"],
    )
    return msgspec.structs.replace(alert, **changes)
