"""The ingest benchmark's consumer scaling: rows to run, member configs, CPU/memory readings, output."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from benchmarks.ingest.runner import TABLE_HEADER, Plan, Result, parse_args, plans, ratio_lines, table_row
from benchmarks.ingest.subjects import (
    CLIENT_ID,
    SHARED_GROUP,
    BosaiConsumer,
    BosaiConsumers,
    Environment,
    bosai_subject,
    gateways_per_shard,
    metric_value,
    subject_label,
)
from benchmarks.ingest.usage import (
    CpuReading,
    cpu_percent,
    parse_stat_cpu_ticks,
    parse_status_kib,
    read_cpu,
    read_memory,
)
from benchmarks.loadgen import TENANT, LoadSpec, gateway_id, write_registry
from cloud.config import load_consumer_config
from cloud.mqtt import client_id
from cloud.registry import load_registry
from cloud.shard import shard_of


def labels(argv: list[str]) -> list[str]:
    return [p.label for p in plans(parse_args(argv))]


def test_defaults_run_one_bosai_consumer_as_before() -> None:
    args = parse_args([])
    assert (args.consumers, args.split) == ([1], ["shard"])
    assert plans(args) == [Plan("bosai")]
    assert labels(["--subject", "bosai", "--subject", "nodered"]) == ["bosai", "nodered"]


def test_a_consumer_list_gives_one_row_per_count_and_split() -> None:
    assert labels(["--consumers", "1,2,4"]) == ["bosai", "bosai x2 (shard)", "bosai x4 (shard)"]
    assert labels(["--consumers", "2", "--consumers", "4,2"]) == ["bosai x2 (shard)", "bosai x4 (shard)"]
    assert labels(["--consumers", "1,2", "--split", "shard,shared"]) == [
        "bosai",
        "bosai x2 (shard)",
        "bosai x2 (shared)",
    ]
    # The list applies to bosai only; the peer runs once, where it was named.
    assert labels(
        ["--subject", "bosai", "--subject", "nodered", "--consumers", "1,2", "--split", "shared"]
    ) == [
        "bosai",
        "bosai x2 (shared)",
        "nodered",
    ]
    rows = plans(parse_args(["--consumers", "1,2", "--split", "shared"]))
    assert [(p.consumers, p.split, p.slug) for p in rows] == [
        (1, None, "bosai"),
        (2, "shared", "bosai-x2-shared"),
    ]


@pytest.mark.parametrize("argv", [["--consumers", "0"], ["--consumers", "2,x"], ["--split", "replicas"]])
def test_bad_consumer_counts_and_splits_are_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert argv[0] in capsys.readouterr().err


def test_labels_and_factories() -> None:
    assert subject_label(1, "shard") == "bosai"
    assert subject_label(4, "shared") == "bosai x4 (shared)"
    assert Plan("bosai", 2, "shard").label == "bosai x2 (shard)"
    assert bosai_subject(1, "shared") is BosaiConsumer
    with pytest.raises(ValueError, match="split"):
        bosai_subject(2, "replicas")


def environment(tmp_path: Path) -> Environment:
    registry = write_registry(LoadSpec(gateways=20, sensors=2), tmp_path / "registry.yaml")
    return Environment("127.0.0.1", 1883, "http://127.0.0.1:8428", registry, tmp_path / "bosai")


def loaded_configs(consumers: BosaiConsumers) -> list[dict[str, object]]:
    """Each member's config as the consumer would read it, checked by cloud.config on the way."""
    out: list[dict[str, object]] = []
    for member in consumers.members:
        member.config_path.write_text(yaml.safe_dump(member.config()), encoding="utf-8")
        cfg = load_consumer_config(member.config_path)
        out.append(
            {
                "client_id": client_id(cfg),
                "shard": None if cfg.shard is None else (cfg.shard.index, cfg.shard.count),
                "group": cfg.shared_group,
                "metrics": cfg.metrics.listen,
                "alerts": cfg.alerts.log_path,
            }
        )
    return out


def test_shard_members_own_one_shard_each_with_their_own_directory_port_and_session(tmp_path: Path) -> None:
    consumers = BosaiConsumers(environment(tmp_path), 3, "shard")
    assert consumers.name == "bosai x3 (shard)"
    configs = loaded_configs(consumers)
    assert [c["shard"] for c in configs] == [(0, 3), (1, 3), (2, 3)]
    assert [c["client_id"] for c in configs] == [f"{CLIENT_ID}-s{i}of3" for i in range(3)]
    assert all(c["group"] is None for c in configs)
    assert len({c["metrics"] for c in configs}) == 3
    workdirs = [m.workdir for m in consumers.members]
    assert workdirs == [tmp_path / "bosai" / f"member-{i}" for i in range(3)]
    assert all(str(c["alerts"]).startswith(str(w)) for c, w in zip(configs, workdirs, strict=True))


def test_shared_members_join_one_group_under_distinct_client_ids(tmp_path: Path) -> None:
    configs = loaded_configs(BosaiConsumers(environment(tmp_path), 2, "shared"))
    assert [c["group"] for c in configs] == [SHARED_GROUP, SHARED_GROUP]
    assert [c["shard"] for c in configs] == [None, None]
    assert len({c["client_id"] for c in configs}) == 2


def test_one_consumer_keeps_the_plain_config(tmp_path: Path) -> None:
    config = BosaiConsumer(environment(tmp_path)).config()
    assert "shard" not in config and "shared_group" not in config
    assert config["mqtt"]["client_id"] == CLIENT_ID
    with pytest.raises(ValueError):
        BosaiConsumers(environment(tmp_path), 1, "shard")
    with pytest.raises(ValueError):
        BosaiConsumer(environment(tmp_path), index=2, count=2)


def test_gateways_per_shard_follows_the_consumers_hash(tmp_path: Path) -> None:
    registry = load_registry(environment(tmp_path).registry)
    shares = gateways_per_shard(registry, 4)
    assert sum(shares) == 20
    assert shares[1] == sum(1 for g in range(20) if shard_of(TENANT, gateway_id(g), 4) == 1)


def test_metric_value_sums_one_metric_over_its_labels() -> None:
    text = "\n".join(
        [
            "# HELP bosai_consumer_messages_lost Telemetry sequence numbers skipped",
            'bosai_consumer_messages_lost{consumer="a"} 3.0',
            'bosai_consumer_messages_lost{consumer="b"} 4.0',
            'bosai_consumer_messages_lost_other{consumer="a"} 100.0',
            'bosai_consumer_messages_received_total{consumer="a"} 1.5e+06',
        ]
    )
    assert metric_value(text, "bosai_consumer_messages_lost") == 7.0
    assert metric_value(text, "bosai_consumer_messages_received_total") == 1_500_000.0
    assert metric_value(text, "bosai_consumer_alerts_total") is None


def test_proc_parsing_and_cpu_percent() -> None:
    stat = "1234 (python -m (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 100 200 300"
    assert parse_stat_cpu_ticks(stat) == 300
    status = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    assert (parse_status_kib(status, "VmRSS"), parse_status_kib(status, "VmSwap")) == (102400, 0)
    start = CpuReading(10.0, {1: 5.0, 2: 1.0})
    end = CpuReading(20.0, {1: 12.0, 3: 3.0})  # 2 ended, 3 started: 7 + 3 CPU seconds in 10 s
    assert cpu_percent(start, end) == pytest.approx(100.0)
    me = read_cpu([os.getpid()])
    assert me.seconds[os.getpid()] > 0
    memory = read_memory([os.getpid()])
    assert 0 < memory.rss_mib <= memory.peak_mib


def result(subject: str, kind: str, consumers: int, rate: float) -> Result:
    return Result(
        subject=subject,
        kind=kind,
        consumers=consumers,
        split="shard" if consumers > 1 else None,
        gateways=100,
        sensors=10,
        readings_per_message=10,
        batch_size=5000,
        publishers=2,
        rate=None,
        window_s=60.0,
        measured_by="subject counter",
        messages_per_s=rate,
        readings_per_s=rate * 10,
        offered_messages_per_s=rate,
        db_readings_per_s=rate * 10,
        backlog_min=10,
        publishers_exhausted=False,
        messages=1000,
        readings=10000,
        drain_s=1.0,
        verified=True,
        missing=0,
        duplicates=0,
        wrong_values=0,
        unexpected=0,
        bad_tags=0,
        cpu_percent=181.4,
        rss_mib=250.2,
        rss_peak_mib=260.0,
        notes=[],
    )


def test_table_rows_carry_processes_cpu_and_memory() -> None:
    row = table_row(result("bosai x2 (shard)", "bosai", 2, 12_345.0))
    header = TABLE_HEADER.splitlines()[0]
    assert row.count("|") == header.count("|")
    cells = [c.strip() for c in row.strip("|").split("|")]
    named = dict(zip([h.strip() for h in header.strip("|").split("|")], cells, strict=True))
    assert named["subject"] == "bosai x2 (shard)" and named["processes"] == "2"
    assert (named["messages/s"], named["CPU %"], named["RSS MiB"]) == ("12,345", "181", "250")
    missing = replace(result("nodered", "nodered", 1, 1.0), cpu_percent=None, rss_mib=None)
    assert "| - | - |" in table_row(missing)


def test_ratios_compare_peers_with_the_first_row_and_scaling_rows_with_one_consumer() -> None:
    rows = [
        result("bosai", "bosai", 1, 10_000.0),
        result("bosai x2 (shard)", "bosai", 2, 18_000.0),
        result("nodered", "nodered", 1, 4_000.0),
    ]
    assert ratio_lines(rows) == [
        "bosai x2 (shard) / bosai: 1.80x the messages/s",
        "bosai / nodered: 2.50x the messages/s",
    ]
