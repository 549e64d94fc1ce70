"""Shards (cloud.shard) and the subscriptions and client ids that follow from them (cloud.mqtt).

The partition must be the same in every process (never Python's salted `hash()`), cover every
gateway exactly once, and turn into exact per-gateway topics that never overlap between shards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from cloud import cli
from cloud.config import ConsumerConfig
from cloud.mqtt import client_id, subscription_batches, subscriptions
from cloud.registry import Gateway, Registry, RegistryFile, Tenant
from cloud.shard import Shard, owned_gateways, owns, shard_of
from wire import topics

REPO = Path(__file__).resolve().parents[2]
TENANTS = ("city-a", "city-b", "town-c")


def registry(gateways_per_tenant: int = 40) -> Registry:
    return Registry(
        RegistryFile(
            tenants=[Tenant(t, t) for t in TENANTS],
            sites=[],
            gateways=[Gateway(f"gw-{i:03d}", t) for t in TENANTS for i in range(gateways_per_tenant)],
            sensors=[],
        )
    )


def config(**over: Any) -> ConsumerConfig:
    raw: dict[str, Any] = {
        "mqtt": {"url": "mqtt://127.0.0.1:1883", "allow_insecure": True},
        "registry": "registry.yaml",
        "store": {"type": "lpfile", "path": "store"},
    }
    raw.update(over)
    return msgspec.convert(raw, ConsumerConfig)


# --- the hash ---------------------------------------------------------------------------------

# Computed once and written down: if these change, every deployed shard layout changes with them.
EXPECTED = [
    # (tenant, gateway, count, shard)
    ("demo-city", "gw01", 2, 0),
    ("demo-city", "gw01", 3, 1),
    ("demo-city", "gw01", 4, 2),
    ("demo-city", "gw01", 16, 10),
    ("demo-city", "gw01", 4096, 3578),
    ("city-a", "gw-a1", 7, 6),
    ("city-b", "gw-01", 3, 1),
    ("city-b", "gw-01", 16, 12),
]


@pytest.mark.parametrize(("tenant", "gateway", "count", "shard"), EXPECTED)
def test_shard_numbers_are_fixed(tenant: str, gateway: str, count: int, shard: int) -> None:
    assert shard_of(tenant, gateway, count) == shard


def test_one_shard_owns_everything() -> None:
    assert {shard_of(t, f"gw{i}", 1) for t in TENANTS for i in range(50)} == {0}


def test_same_assignment_in_other_processes() -> None:
    """Fresh interpreters with different hash seeds (what a second consumer is) agree."""
    code = (
        "import json; from cloud.shard import shard_of; "
        f"print(json.dumps([shard_of(t, g, n) for t, g, n in {[e[:3] for e in EXPECTED]!r}]))"
    )
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
        ).stdout
        assert json.loads(out) == [e[3] for e in EXPECTED]


def test_shard_is_the_tenant_and_gateway_pair() -> None:
    """The same gateway id in two tenants is two gateways, placed independently."""
    # per gateway id, its shard in each tenant
    placements = {tuple(shard_of(t, f"gw-{i:03d}", 16) for t in TENANTS) for i in range(20)}
    assert any(len(set(p)) > 1 for p in placements)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 16])
def test_every_gateway_owned_by_exactly_one_shard(count: int) -> None:
    reg = registry(gateways_per_tenant=200)
    shards = [Shard(i, count) for i in range(count)]
    owned = [{(g.tenant, g.id) for g in s.owned_gateways(reg)} for s in shards]
    everything = {(g.tenant, g.id) for g in reg.data.gateways}
    assert set().union(*owned) == everything
    assert sum(len(o) for o in owned) == len(everything)  # pairwise disjoint
    # A fair spread: 600 gateways, no shard below half or above twice its share.
    share = len(everything) / count
    assert all(share / 2 <= len(o) <= share * 2 for o in owned), [len(o) for o in owned]


def test_tenant_option_narrows_the_shard() -> None:
    reg = registry()
    city_a = Shard(tenant="city-a")
    assert {g.tenant for g in city_a.owned_gateways(reg)} == {"city-a"}
    assert len(city_a.owned_gateways(reg)) == 40
    halves = [Shard(i, 2, "city-a").owned_gateways(reg) for i in range(2)]
    assert {g.tenant for h in halves for g in h} == {"city-a"}
    assert sorted(g.id for h in halves for g in h) == sorted(g.id for g in city_a.owned_gateways(reg))
    assert not Shard(0, 2, "city-a").owns("city-b", "gw-000")


def test_config_functions() -> None:
    reg = registry()
    everything = config()
    assert owns(everything, "city-b", "anything") and len(owned_gateways(reg, everything)) == 120
    one = config(tenant="town-c", shard={"index": 1, "count": 3})
    mine = owned_gateways(reg, one)
    assert mine and all(g.tenant == "town-c" and shard_of(g.tenant, g.id, 3) == 1 for g in mine)
    assert all(owns(one, g.tenant, g.id) for g in mine)
    assert not owns(one, "city-a", mine[0].id)
    assert Shard.of(one) == Shard(1, 3, "town-c")
    assert Shard.of(one).describe() == "shard 1 of 3 (indexes 0-2), tenant town-c"


def test_invalid_shards_refused() -> None:
    with pytest.raises(ValueError, match=r"not in 0\.\.1"):
        Shard(2, 2)
    with pytest.raises(ValueError, match="at least 1"):
        shard_of("city-a", "gw", 0)


# --- subscriptions and client ids -------------------------------------------------------------


def test_subscriptions_without_shard_are_wildcards() -> None:
    assert subscriptions(config()) == [
        "bosai/v1/+/+/telemetry",
        "bosai/v1/+/+/status",
        "bosai/v1/+/+/health",
    ]
    assert subscriptions(config(tenant="city-a"), registry()) == [
        "bosai/v1/city-a/+/telemetry",
        "bosai/v1/city-a/+/status",
        "bosai/v1/city-a/+/health",
    ]
    assert subscriptions(config(tenant="city-a", shared_group="ingest")) == [
        "$share/ingest/bosai/v1/city-a/+/telemetry",
        "$share/ingest/bosai/v1/city-a/+/status",
        "$share/ingest/bosai/v1/city-a/+/health",
    ]


def test_subscriptions_of_a_shard_are_its_gateways_topics() -> None:
    reg = registry()
    per_shard = [subscriptions(config(shard={"index": i, "count": 4}), reg) for i in range(4)]
    for i, filters in enumerate(per_shard):
        assert filters and not any("+" in f or "#" in f for f in filters)
        assert len(filters) == 3 * len(Shard(i, 4).owned_gateways(reg))
        for f in filters:
            where = topics.parse_gateway_topic(f)
            assert where is not None and shard_of(where.tenant, where.gateway, 4) == i
    every = [topic(g.tenant, g.id) for g in reg.data.gateways for topic in (topics.telemetry, topics.status)]
    every += [topics.health(g.tenant, g.id) for g in reg.data.gateways]
    flat = [f for filters in per_shard for f in filters]
    assert sorted(flat) == sorted(every)  # each topic in exactly one shard

    first = Shard(0, 4).owned_gateways(reg)[0]
    assert per_shard[0][:3] == [
        f"bosai/v1/{first.tenant}/{first.id}/telemetry",
        f"bosai/v1/{first.tenant}/{first.id}/status",
        f"bosai/v1/{first.tenant}/{first.id}/health",
    ]


def test_subscriptions_of_a_shard_with_tenant_and_group() -> None:
    reg = registry()
    filters = subscriptions(config(tenant="city-b", shared_group="g1", shard={"index": 0, "count": 2}), reg)
    assert filters and all(f.startswith("$share/g1/bosai/v1/city-b/gw-") for f in filters)
    assert len(filters) == 3 * len(Shard(0, 2, "city-b").owned_gateways(reg))


def test_shard_needs_the_registry() -> None:
    with pytest.raises(ValueError, match="registry"):
        subscriptions(config(shard={"index": 0, "count": 2}))


def test_shard_owning_nothing_subscribes_to_nothing() -> None:
    reg = Registry(RegistryFile(tenants=[Tenant("city-a", "A")], sites=[], gateways=[], sensors=[]))
    assert subscriptions(config(shard={"index": 0, "count": 2}), reg) == []


def test_client_ids_distinct_per_shard() -> None:
    ids = {client_id(config(shard={"index": i, "count": 3})) for i in range(3)}
    assert ids == {"bosai-cloud-all-s0of3", "bosai-cloud-all-s1of3", "bosai-cloud-all-s2of3"}
    assert client_id(config()) == "bosai-cloud-all"
    assert client_id(config(tenant="city-a", shard={"index": 0, "count": 2})) == "bosai-cloud-city-a-s0of2"
    # A new layout is a new session, even when the operator named the client.
    named = {"url": "mqtt://127.0.0.1:1883", "allow_insecure": True, "client_id": "cloud-1"}
    assert client_id(config(mqtt=named)) == "cloud-1"
    assert client_id(config(mqtt=named, shard={"index": 0, "count": 2})) == "cloud-1-s0of2"
    assert client_id(config(mqtt=named, shard={"index": 0, "count": 4})) == "cloud-1-s0of4"
    grouped = client_id(config(shared_group="g", shard={"index": 1, "count": 2}))
    assert grouped.startswith("bosai-cloud-all-s1of2-g-")


def test_subscription_batches() -> None:
    filters = [f"t/{i}" for i in range(250)]
    batches = subscription_batches(filters)
    assert [len(b) for b in batches] == [100, 100, 50]
    assert [f for b in batches for f in b] == filters
    assert subscription_batches(filters[:3], size=2) == [["t/0", "t/1"], ["t/2"]]
    assert subscription_batches([]) == []
    with pytest.raises(ValueError):
        subscription_batches(filters, size=0)


# --- bosai cloud check-config -----------------------------------------------------------------


def test_check_config_shows_the_shard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = registry(gateways_per_tenant=30)
    (tmp_path / "registry.yaml").write_text(
        yaml.safe_dump(msgspec.to_builtins(reg.data), allow_unicode=True), encoding="utf-8"
    )
    cfg = tmp_path / "consumer.yaml"
    cfg.write_text(
        "mqtt: {url: 'mqtt://127.0.0.1:1883', allow_insecure: true}\n"
        "registry: registry.yaml\nstore: {type: lpfile, path: store}\n"
        "tenant: city-a\nshard: {index: 1, count: 4}\n",
        encoding="utf-8",
    )
    parser = argparse.ArgumentParser(prog="bosai")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cloud", "check-config", "--config", str(cfg)])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    owned = len(Shard(1, 4, "city-a").owned_gateways(reg))
    assert f"shard 1 of 4 (indexes 0-3), tenant city-a: {owned} of 30 gateways" in out
    assert f"subscriptions: {3 * owned} topic filters: bosai/v1/city-a/gw-" in out
    assert f"({3 * owned - cli.SHOWN_FILTERS} more)" in out
    assert "client id bosai-cloud-city-a-s1of4" in out
