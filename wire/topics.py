"""Versioned MQTT topic names.

    bosai/v1/{tenant}/{gateway}/telemetry   readings (QoS 1)
    bosai/v1/{tenant}/{gateway}/status      retained birth message, Last Will "offline"
    bosai/v1/{tenant}/{gateway}/health      gateway health (counters, outbox depth)
    bosai/v1/{tenant}/alerts/sites/{site}/{sensor}/{kind}/{condition}   retained alert state
    bosai/v1/{tenant}/alerts/gateways/{gateway}/{condition}             retained alert state

The version segment changes only when a message schema breaks compatibility, so a broker can
route old and new gateways side by side during a rollout.
"""

from dataclasses import dataclass

from wire.ids import is_ident

ROOT = "bosai"
VERSION = "v1"
PREFIX = f"{ROOT}/{VERSION}"


def telemetry(tenant: str, gateway: str) -> str:
    return f"{PREFIX}/{tenant}/{gateway}/telemetry"


def status(tenant: str, gateway: str) -> str:
    return f"{PREFIX}/{tenant}/{gateway}/status"


def health(tenant: str, gateway: str) -> str:
    return f"{PREFIX}/{tenant}/{gateway}/health"


def alert(tenant: str, site: str, sensor: str, kind: str, condition: str) -> str:
    return f"{PREFIX}/{tenant}/alerts/sites/{site}/{sensor}/{kind}/{condition}"


def gateway_alert(tenant: str, gateway: str, condition: str) -> str:
    return f"{PREFIX}/{tenant}/alerts/gateways/{gateway}/{condition}"


# Subscriptions used by the cloud consumer.  `tenant` may be "+" for a consumer serving all
# tenants, or one tenant id for a consumer (or shard) dedicated to it.
def telemetry_filter(tenant: str = "+") -> str:
    return f"{PREFIX}/{tenant}/+/telemetry"


def status_filter(tenant: str = "+") -> str:
    return f"{PREFIX}/{tenant}/+/status"


def health_filter(tenant: str = "+") -> str:
    return f"{PREFIX}/{tenant}/+/health"


def alerts_filter(tenant: str = "+") -> str:
    return f"{PREFIX}/{tenant}/alerts/#"


@dataclass(frozen=True, slots=True)
class GatewayTopic:
    tenant: str
    gateway: str
    channel: str  # "telemetry" | "status" | "health"


_GATEWAY_CHANNELS = frozenset({"telemetry", "status", "health"})


def parse_gateway_topic(topic: str) -> GatewayTopic | None:
    """Split `bosai/v1/{tenant}/{gateway}/{channel}`; None if the topic is not one of ours."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != ROOT or parts[1] != VERSION:
        return None
    _, _, tenant, gateway, channel = parts
    if channel not in _GATEWAY_CHANNELS or not is_ident(tenant) or not is_ident(gateway):
        return None
    return GatewayTopic(tenant, gateway, channel)
