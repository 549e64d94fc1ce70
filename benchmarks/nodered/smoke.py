"""Smoke run of the Node-RED peer: real Mosquitto, real VictoriaMetrics, real Node-RED.

Telemetry from three gateways (valid wire format, a few readings each, some with a bad quality
and no value, one unregistered sensor now and then) is published with QoS 1; afterwards every
reading must be in VictoriaMetrics exactly once, with the tags, value, quality code and
millisecond time that cloud/points.reading_line gives it, and the unregistered one must not be.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from benchmarks.nodered.flow import FlowSettings, InfluxApi
from benchmarks.nodered.peer import NodeRedPeer, install
from cloud import lineproto, points
from cloud.registry import Gateway, Registry, RegistryFile, Sensor, Site, Tenant
from tests.servers import Mosquitto, VictoriaMetrics
from wire import topics
from wire.telemetry import Quality, Reading, Telemetry, encode

TENANT = "smoke-city"
UNREGISTERED = "not-registered-99"
# Logged at every start with these settings (projects off, flows_cred.json in plain text).
EXPECTED_WARNINGS = ("Projects disabled", "Using unencrypted credentials")
Key = tuple[str, frozenset[tuple[str, str]], int]  # (field, tags, ts_ms)


def say(msg: str) -> None:
    print(f"[nodered-smoke] {msg}", flush=True)


def registry() -> Registry:
    """Three gateways; names with spaces, commas and Japanese, and one sensor without a name."""
    sites = [
        Site("river-1", TENANT, "石狩川 旭橋", "river"),
        Site("snow-1", TENANT, "中央 5条通, residential", "snow"),
        Site("slope-1", TENANT, "神居古潭 斜面3", "slope"),
    ]
    sensors = [
        Sensor("river-radar-01", TENANT, "gw-a", "river-1", "旭橋 radar gauge"),
        Sensor("river-pt-02", TENANT, "gw-a", "river-1", ""),
        Sensor("snow-laser-01", TENANT, "gw-b", "snow-1", "snow laser"),
        Sensor("slope-incl-01", TENANT, "gw-c", "slope-1", "inclinometer = 1"),
    ]
    gateways = [Gateway(g, TENANT) for g in ("gw-a", "gw-b", "gw-c")]
    return Registry(RegistryFile([Tenant(TENANT, "Smoke")], sites, gateways, sensors))


CHANNELS = {  # per sensor: (kind, unit) of its readings
    "river-radar-01": [("river_level", "m")],
    "river-pt-02": [("river_level", "m")],
    "snow-laser-01": [("snow_depth", "cm"), ("sensor_temperature", "degC")],
    "slope-incl-01": [("tilt_x", "deg"), ("tilt_y", "deg"), ("sensor_temperature", "")],
}


def telemetry(reg: Registry, n: int, t0: float) -> list[Telemetry]:
    """`n` messages, round robin over the gateways, one per gateway-second of sample time; the
    sample times carry microseconds, which the ms timestamps must truncate."""
    gateways = sorted({s.gateway for s in reg.sensors.values()})
    seq: dict[str, int] = defaultdict(int)
    out = []
    for i in range(n):
        gw = gateways[i % len(gateways)]
        ts = datetime.fromtimestamp(t0 + i + 0.123456, tz=UTC)
        readings = []
        for sensor in sorted(s.id for s in reg.sensors.values() if s.gateway == gw):
            for j, (kind, unit) in enumerate(CHANNELS[sensor]):
                if (i + j) % 17 == 5:
                    readings.append(Reading(sensor, kind, ts, None, unit, Quality.TIMEOUT))
                else:
                    readings.append(Reading(sensor, kind, ts, round(1.0 + i * 0.001 + j * 0.25, 3), unit))
        if i % 50 == 7:
            readings.append(Reading(UNREGISTERED, "river_level", ts, 9.0, "m"))
        out.append(Telemetry(1, TENANT, gw, seq[gw], ts, readings))
        seq[gw] += 1
    return out


def expected_samples(reg: Registry, messages: list[Telemetry]) -> dict[Key, float]:
    """What the consumer would write, as VictoriaMetrics stores it: one series per field."""
    out: dict[Key, float] = {}
    for m in messages:
        for r in m.readings:
            sensor = reg.sensor_for(m.tenant, m.gateway, r.sensor)
            if sensor is None:
                continue
            p = lineproto.parse_line(points.reading_line(r, sensor, reg.site_of(sensor)))
            tags = frozenset(p.tags.items())
            for field, value in p.fields.items():
                assert isinstance(value, int | float)
                out[(field, tags, p.ts_ms)] = float(value)
    return out


def stored_samples(
    vm: VictoriaMetrics, api: InfluxApi, bucket: str
) -> tuple[dict[Key, list[float]], list[str]]:
    """Every `readings_*` sample in VictoriaMetrics, and the problems seen with labels."""
    out: dict[Key, list[float]] = defaultdict(list)
    problems: list[str] = []
    for row in vm.export('{__name__=~"readings_.*"}'):
        labels = dict(row["metric"])
        field = labels.pop("__name__").removeprefix("readings_")
        if api == "v1" and labels.pop("db", None) != bucket:
            problems.append(f"series without db={bucket!r}: {row['metric']}")
        tags = frozenset(labels.items())
        for ts, value in zip(row["timestamps"], row["values"], strict=True):
            out[(field, tags, int(ts))].append(float(value))
    return out, problems


def publish(mosquitto: Mosquitto, messages: list[Telemetry]) -> None:
    """Each message with QoS 1, returning once the broker has acknowledged all of them."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bosai-nodered-smoke", protocol=MQTTProtocolVersion.MQTTv5
    )
    client.max_inflight_messages_set(100)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        infos = [client.publish(topics.telemetry(m.tenant, m.gateway), encode(m), qos=1) for m in messages]
        for info in infos:
            info.wait_for_publish(timeout=30)
            if not info.is_published():
                raise RuntimeError(f"message {info.mid} not acknowledged by the broker")
    finally:
        client.disconnect()
        client.loop_stop()


def subacks(mosquitto: Mosquitto, client_id: str) -> int:
    return mosquitto.log_path.read_text(errors="replace").count(f"Sending SUBACK to {client_id}")


def wait_subscribed(mosquitto: Mosquitto, client_id: str, before: int = 0, timeout: float = 30.0) -> None:
    """Node-RED logs "Connected" before it subscribes; messages published in between would be
    dropped by a broker without the subscription, so wait for a SUBACK to it in the broker's log
    (more than `before` of them: pass subacks() taken before a restart)."""
    deadline = time.monotonic() + timeout
    while subacks(mosquitto, client_id) <= before:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no SUBACK to {client_id} within {timeout:g} s\n{mosquitto.log_tail()}")
        time.sleep(0.05)


def compare(expected: dict[Key, float], stored: dict[Key, list[float]]) -> list[str]:
    problems = []
    missing = [k for k in expected if k not in stored]
    extra = [k for k in stored if k not in expected]
    twice = [k for k, v in stored.items() if len(v) > 1]
    wrong = [
        k for k, v in stored.items() if k in expected and not math.isclose(v[0], expected[k], rel_tol=1e-9)
    ]
    for what, keys in (
        ("missing", missing),
        ("unexpected", extra),
        ("stored twice", twice),
        ("wrong", wrong),
    ):
        if keys:
            problems.append(f"{len(keys)} samples {what}, e.g. {keys[0]} -> {stored.get(keys[0])}")
    return problems


def check(
    vm: VictoriaMetrics, api: InfluxApi, bucket: str, reg: Registry, sent: list[Telemetry], log: str
) -> list[str]:
    """Problems with what the peer stored for `sent` (empty: all there once, and nothing else)
    and with its log (errors, unexpected warnings)."""
    stored, problems = stored_samples(vm, api, bucket)
    problems += compare(expected_samples(reg, sent), stored)
    for line in log.splitlines():
        if "[error]" in line or ("[warn]" in line and not any(w in line for w in EXPECTED_WARNINGS)):
            problems.append(f"Node-RED logged: {line}")
    return problems


def quality_samples(reg: Registry, sent: list[Telemetry]) -> int:
    """How many `readings_q` samples `sent` makes (one per registered reading)."""
    return sum(1 for k in expected_samples(reg, sent) if k[0] == "q")


def node_version() -> str:
    return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()


def run_smoke(cache_dir: Path | None, *, api: InfluxApi = "v2", messages: int = 200) -> int:
    started = time.monotonic()
    t = time.monotonic()
    install_dir = install(cache_dir)
    say(f"install: {install_dir} ready in {time.monotonic() - t:.1f} s (node {node_version()})")
    reg = registry()
    sent = telemetry(reg, messages, t0=time.time() - messages - 60)
    expected = expected_samples(reg, sent)
    readings = sum(len(m.readings) for m in sent)
    with (
        tempfile.TemporaryDirectory(prefix="bosai-nodered-smoke-") as tmp,
        Mosquitto(Path(tmp) / "mosquitto") as mosquitto,
        VictoriaMetrics(Path(tmp) / "vm") as vm,
    ):
        say(f"Mosquitto at {mosquitto.url}, VictoriaMetrics at {vm.url}")
        settings = FlowSettings(mosquitto.host, mosquitto.port, vm.url, api=api)
        t = time.monotonic()
        with NodeRedPeer(settings, reg, install_dir=install_dir, workdir=Path(tmp) / "nodered") as peer:
            wait_subscribed(mosquitto, settings.client_id)
            say(
                f"Node-RED at {peer.url} (pid {peer.pid}) connected and subscribed to "
                f"{settings.topic} in {time.monotonic() - t:.1f} s; write API {api}, "
                f"batch {settings.batch_size} points or {settings.flush_interval_ms} ms"
            )
            t = time.monotonic()
            publish(mosquitto, sent)
            say(
                f"published {len(sent)} messages ({readings} readings) from 3 gateways with QoS 1 "
                f"in {time.monotonic() - t:.2f} s"
            )
            count = vm.wait_for_samples('{__name__="readings_q"}', quality_samples(reg, sent))
            say(
                f"{count} quality samples in VictoriaMetrics "
                f"{time.monotonic() - t:.2f} s after the first publish"
            )
            log = peer.log_text()
        problems = check(vm, api, settings.bucket, reg, sent, log)
        stored, _ = stored_samples(vm, api, settings.bucket)
    skipped = sum(1 for m in sent for r in m.readings if r.sensor == UNREGISTERED)
    n_value = sum(1 for k in expected if k[0] == "value")
    say(
        f"expected {len(expected)} samples ({n_value} values, {len(expected) - n_value} quality codes; "
        f"{skipped} readings of an unregistered sensor left out), stored {len(stored)}"
    )
    for p in problems:
        say(f"FAIL: {p}")
    if not problems:
        say("OK: every reading stored once, with its tags, value, quality code and ms time")
    say(f"total {time.monotonic() - started:.1f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(run_smoke(None))
