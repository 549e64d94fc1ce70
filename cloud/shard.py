"""Which consumer process owns which gateway: a stable hash of "tenant/gateway" modulo the count.

Sequence accounting and detection keep state per gateway and per sensor, so every message of a
gateway must reach one consumer process, always the same one.  A sensor belongs to one gateway and
a message carries one gateway's readings, so the unit of partitioning is the gateway: shard
`index` of `count` owns the gateways with `shard_of(tenant, gateway, count) == index` and
subscribes to their topics only (cloud.mqtt.subscriptions).

The hash is SHA-256, not Python's `hash()`: the latter is salted per process (PYTHONHASHSEED), so
two consumers would disagree about who owns what.  Its definition is simple enough to check by
hand (first 8 bytes of SHA-256 of the UTF-8 "tenant/gateway", big-endian, modulo the count):

    printf 'demo-city/gw01' | sha256sum | cut -c1-16    # hex; that number modulo the count

Changing the count moves most gateways to another shard; docs/scaling.md says what that means
for detection state and broker sessions.  No shard configured means one shard owning everything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cloud.config import ConsumerConfig
from cloud.registry import Gateway, Registry


def shard_of(tenant: str, gateway: str, count: int) -> int:
    """The shard index (0 <= index < count) owning this gateway; the same in every process."""
    if count < 1:
        raise ValueError(f"shard count must be at least 1, not {count}")
    digest = hashlib.sha256(f"{tenant}/{gateway}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True, slots=True)
class Shard:
    """The part of the registry one consumer serves: an optional tenant, then a hash partition."""

    index: int = 0
    count: int = 1
    tenant: str | None = None  # only this tenant's gateways; None: every tenant

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index {self.index} is not in 0..{self.count - 1}")

    @classmethod
    def of(cls, config: ConsumerConfig) -> Shard:
        """The consumer's shard; without a `shard:` section, 0 of 1 (all gateways of its tenants)."""
        if config.shard is None:
            return cls(tenant=config.tenant)
        return cls(config.shard.index, config.shard.count, config.tenant)

    def owns(self, tenant: str, gateway: str) -> bool:
        if self.tenant is not None and tenant != self.tenant:
            return False
        return shard_of(tenant, gateway, self.count) == self.index

    def owned_gateways(self, registry: Registry) -> list[Gateway]:
        """The registered gateways this shard owns, in registry order."""
        return [g for g in registry.data.gateways if self.owns(g.tenant, g.id)]

    def describe(self) -> str:
        """e.g. "shard 1 of 4 (indexes 0-3), tenant demo-city"."""
        text = f"shard {self.index} of {self.count} (indexes 0-{self.count - 1})"
        return f"{text}, tenant {self.tenant}" if self.tenant else text


def owns(config: ConsumerConfig, tenant: str, gateway: str) -> bool:
    """Whether the consumer configured by `config` is the one that handles this gateway."""
    return Shard.of(config).owns(tenant, gateway)


def owned_gateways(registry: Registry, config: ConsumerConfig) -> list[Gateway]:
    """The registered gateways the consumer configured by `config` handles (tenant and shard)."""
    return Shard.of(config).owned_gateways(registry)
