"""What detection tells the alert manager: the current level of one condition."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from wire import alerts as wa
from wire import topics
from wire.alerts import Category, Forecast


@dataclass(frozen=True, slots=True)
class AlertKey:
    """One alertable condition: of a sensor's series, or of a gateway (sensor = kind = "")."""

    tenant: str
    condition: str
    sensor: str = ""
    kind: str = ""
    gateway: str = ""  # only part of the identity for gateway conditions

    @property
    def category(self) -> Category:
        return "disaster" if self.condition in wa.DISASTER_CONDITIONS else "maintenance"

    def topic(self, site: str) -> str:
        if not self.sensor:
            return topics.gateway_alert(self.tenant, self.gateway, self.condition)
        return topics.alert(self.tenant, site, self.sensor, self.kind, self.condition)

    def as_text(self) -> str:
        subject = f"{self.sensor}/{self.kind}" if self.sensor else f"gateway {self.gateway}"
        return f"{self.tenant}/{subject}/{self.condition}"


def gateway_key(tenant: str, gateway: str, condition: str) -> AlertKey:
    return AlertKey(tenant, condition, gateway=gateway)


@dataclass(frozen=True, slots=True)
class Observation:
    """The level of `key` changed (or, with `update`, its details moved while the level held)."""

    key: AlertKey
    level: int  # 0: the condition is clear
    ts: datetime  # sample time of the data behind it (clock time for silence/offline)
    reason: str
    site: str = ""
    site_name: str = ""
    gateway: str = ""
    level_name: str = ""
    level_name_ja: str = ""
    threshold: float | None = None
    value: float | None = None
    unit: str = ""
    rate: float | None = None
    rate_unit: str = ""
    forecast: Forecast | None = None
    update: bool = False  # same level, fresher value/rate/forecast: no notification
