"""A gateway brought online the way a technician does it, end to end, with real parts only:

the authority creates the broker's config, a real Mosquitto runs that config as generated (TLS
only, no anonymous access, per-gateway ACL); `bosai gateway provision` turns a site sheet into a
signed bundle and registry entries; `bosai gateway install` puts it on the "gateway"; the agent
(`bosai edge run --bundle`, a separate process at DEBUG) polls simulated Modbus sensors and
publishes over TLS; the consumer (a separate process at DEBUG, logging in with the authority's
cloud credentials) stores the readings.  Then the gateway is revoked: the broker cuts it off,
its next login is refused and counted by the consumer as a security event from the broker's log;
an older and an altered bundle are refused by the agent.  Finally every log of the run (agent,
consumer, broker) is searched for every secret the run created.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pwd
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bosai.paths import PROFILES_DIR
from provision.authority import Authority
from provision.gateways import init_authority, provision, rotate
from simulators.runner import Endpoints, SimulatorSet
from tests.servers import GeneratedMosquitto, free_port, http_request, stop_process
from tests.simulated import serve
from tests.waiting import wait_for
from wire import bundle
from wire.clock import ScaledClock

pytestmark = pytest.mark.integration

TENANT, GATEWAY = "demo-city", "gw01"
WAIT_S = 60.0
REGISTRY = f"""\
tenants:
  - {{id: {TENANT}, name: デモ市}}
sites: []
gateways: []
sensors: []
include: ["gateways.d/*/*.yaml"]
"""
RIVER_LEVEL = {
    "unit": "m",
    "range": [-2.0, 30.0],
    "thresholds": [
        {"level": 1, "value": 2.0, "name": "standby", "name_ja": "水防団待機水位"},
        {"level": 2, "value": 2.6, "name": "flood caution", "name_ja": "氾濫注意水位"},
    ],
}


class Run:
    """The processes of one run and where they log."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.logs: list[Path] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{name}.log"
        self.logs.append(log)
        out = log.open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "bosai", "--log-level", "DEBUG", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def bosai(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """A one-shot command at DEBUG; its output is one of the logs searched for secrets."""
        result = subprocess.run(
            [sys.executable, "-m", "bosai", "--log-level", "DEBUG", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        log = self.tmp / f"cmd-{len(self.logs)}.log"
        log.write_text(result.stdout + result.stderr, encoding="utf-8")
        self.logs.append(log)
        return result

    def close(self) -> None:
        for proc in self.procs:
            stop_process(proc)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    r = Run(tmp_path)
    try:
        yield r
    finally:
        r.close()


def metric(url: str, name: str, **labels: str) -> float:
    try:
        status, body = http_request(url, timeout=2.0)
    except OSError:  # not listening yet
        return -1.0
    if status != 200:
        return -1.0
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name) and (not want or want in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def write_sheet(path: Path, endpoints: Endpoints) -> Path:
    host, port = endpoints.modbus_tcp["plc-tcp"]
    sheet: dict[str, Any] = {
        "tenant": TENANT,
        "gateway": GATEWAY,
        "name": "旭橋 水位局",
        "sites": [{"id": "asahibashi", "name": "石狩川 旭橋", "type": "river"}],
        "buses": [
            {"id": "plc-tcp", "type": "modbus_tcp", "host": host, "port": port},
            {"id": "rs485-1", "type": "modbus_rtu", "port": endpoints.serial["rs485-1"], "pause": 0.01},
        ],
        "sensors": [
            {
                "id": "river-radar-01",
                "site": "asahibashi",
                "profile": "radar-level-rl",
                "bus": "plc-tcp",
                "unit_id": 1,
                "interval": 1,
                "channels": {"river_level": RIVER_LEVEL},
            },
            {
                "id": "river-pt-02",
                "site": "asahibashi",
                "profile": "pressure-level-pt",
                "bus": "rs485-1",
                "unit_id": 4,
                "interval": 1,
                "channels": {"river_level": RIVER_LEVEL},
            },
        ],
        "publish": {"batch_interval": 0.5, "health_interval": 5},
    }
    path.write_text(yaml.safe_dump(sheet, allow_unicode=True), encoding="utf-8")
    return path


def start_broker(tmp: Path) -> tuple[Authority, GeneratedMosquitto]:
    registry = tmp / "cloud" / "registry.yaml"
    registry.parent.mkdir()
    registry.write_text(REGISTRY, encoding="utf-8")
    port, cert_port = free_port(), free_port()
    workdir = tmp / "broker"
    (tmp / "broker-data").mkdir()
    authority = init_authority(
        tmp / "authority",
        broker_hosts=["127.0.0.1", "localhost"],
        registry=registry,
        port=port,
        cert_port=cert_port,
        cloud_port=free_port(),
        log_file=str(GeneratedMosquitto.log_file(workdir)),
        # Started as root, Mosquitto would drop to user "mosquitto", who cannot read tmp_path.
        run_as_user=pwd.getpwuid(os.getuid()).pw_name,
        persistence_dir=str(tmp / "broker-data"),
    )
    conf = (authority.broker_dir / "mosquitto.conf").read_text()
    broker = GeneratedMosquitto(workdir, conf, port)
    broker.start()
    # `bosai gateway revoke` reloads the broker the way systemd would: SIGHUP.
    assert broker._proc is not None
    settings = yaml.safe_load(authority.settings_path.read_text())
    settings["reload_command"] = ["kill", "-HUP", str(broker._proc.pid)]
    authority.settings_path.write_text(yaml.safe_dump(settings))
    return Authority(authority.root), broker


def consumer_config(tmp: Path, authority: Authority, broker: GeneratedMosquitto, metrics_port: int) -> Path:
    raw = {
        "mqtt": {
            "url": authority.settings.cloud_broker_url,  # the consumer's own listener
            "client_id": "cloud-test",
            "username": "bosai-cloud",
            "password_file": str(authority.root / "cloud" / "mqtt-password"),
            "tls": {"ca_file": str(authority.root / "cloud" / "ca.crt")},
        },
        "registry": str(authority.registry_path),
        "store": {"type": "lpfile", "path": str(tmp / "store")},
        "alerts": {"log_path": str(tmp / "alerts.jsonl"), "state_path": str(tmp / "alerts.db")},
        "quarantine_path": str(tmp / "quarantine.jsonl"),
        "spool": {"path": str(tmp / "spool")},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}", "health_every_s": 2},
        "security": {"broker_log": str(broker.log_path)},
    }
    path = tmp / "consumer.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def secrets_of(authority: Authority, bundles: list[Path]) -> dict[str, str]:
    """Every secret of the run, by name, as it could appear in a log (and base64 forms)."""
    found: dict[str, str] = {
        "cloud password": (authority.root / "cloud" / "mqtt-password").read_text().strip()
    }
    keys = {"CA key": "ca/ca.key", "signing key": "signing/signing.key", "server key": "broker/server.key"}
    for name, rel in keys.items():
        body = "".join(
            line for line in (authority.root / rel).read_text().splitlines() if "-----" not in line
        )
        found[name] = body[8:48]  # a stretch of the key material
    trust = [authority.signing_public_path.read_bytes()]
    for path in bundles:
        manifest, _ = bundle.read_bundle_file(path, trust)
        secret = manifest.file("mqtt-password")
        assert secret is not None
        password = secret.data.decode().strip()
        found[f"password of {path.name}"] = password
        found[f"base64 password of {path.name}"] = base64.b64encode(secret.data).decode()[:24]
        payload = json.loads(path.read_bytes())["payload"]
        found[f"payload of {path.name}"] = payload[len(payload) // 2 : len(payload) // 2 + 40]
    return found


def test_provisioned_gateway_publishes_over_tls_is_revoked_and_no_log_holds_a_secret(
    tmp_path: Path, run: Run
) -> None:
    authority, broker = start_broker(tmp_path)
    metrics_port = free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    gw_etc, gw_state = tmp_path / "gw" / "etc", tmp_path / "gw" / "state"
    me = pwd.getpwuid(os.getuid()).pw_name
    bundles: list[Path] = []

    def scenario(endpoints: Endpoints) -> None:
        sheet = write_sheet(tmp_path / "sheet.yaml", endpoints)
        # Office: provision (v1), then rotate (v2) as after a lost laptop; v1 is what an
        # attacker might try to put back.
        v1 = provision(
            authority, sheet, out=tmp_path / "gw01-v1.bundle", profiles_dir=PROFILES_DIR
        ).bundle_path
        v2 = rotate(
            authority, GATEWAY, TENANT, out=tmp_path / "gw01-v2.bundle", profiles_dir=PROFILES_DIR
        ).bundle_path
        bundles.extend([v1, v2])
        broker.reload()  # the broker learns the gateway's login

        run.start(
            "consumer",
            "cloud",
            "run",
            "--config",
            str(consumer_config(tmp_path, authority, broker, metrics_port)),
        )
        wait_for(
            lambda: metric(metrics_url, "bosai_consumer_messages_total") >= 0,
            "the consumer's /metrics",
            WAIT_S,
        )

        # On the gateway: install v2 with the trust anchor, then run the agent from it.
        trust = str(authority.signing_public_path)
        installed = run.bosai(
            "gateway",
            "install",
            str(v2),
            "--trust-key",
            trust,
            "--etc",
            str(gw_etc),
            "--state-dir",
            str(gw_state),
            "--agent-user",
            me,
        )
        assert installed.returncode == 0, installed.stderr
        agent_argv = [
            "edge",
            "run",
            "--bundle",
            str(gw_etc / "gateway.bundle"),
            "--trust-key",
            str(gw_etc / "signing.pub"),
            "--state-dir",
            str(gw_state),
        ]
        agent = run.start("agent", *agent_argv)
        wait_for(
            lambda: metric(metrics_url, "bosai_consumer_readings_accepted_total") >= 6,
            "readings from the provisioned gateway over TLS",
            WAIT_S,
        )
        stored = "".join(p.read_text() for p in (tmp_path / "store").glob("*.lp"))
        assert "river-radar-01" in stored and "river-pt-02" in stored

        # Revoked: the broker drops it at the reload and refuses its next logins.
        revoked = run.bosai("gateway", "revoke", GATEWAY, "--authority", str(authority.root))
        assert revoked.returncode == 0, revoked.stderr
        assert "broker reloaded" in revoked.stdout
        wait_for(
            lambda: "refused this gateway's login" in (tmp_path / "agent.log").read_text(errors="replace"),
            "the agent logging its refused login",
            WAIT_S,
        )
        wait_for(
            lambda: (
                metric(metrics_url, "bosai_consumer_broker_security_events_total", kind="auth_failed") >= 1
            ),
            "the consumer counting the refused login",
            WAIT_S,
        )
        accepted_at_revoke = metric(metrics_url, "bosai_consumer_readings_accepted_total")
        assert stop_process(agent) == 0

        # An older bundle (rollback) and an altered one are refused at start.
        older = run.bosai(*[a if a != str(gw_etc / "gateway.bundle") else str(v1) for a in agent_argv])
        assert older.returncode == 2 and "older (version 1)" in older.stderr, older.stderr
        altered = tmp_path / "altered.bundle"
        data = bytearray(v2.read_bytes())
        data[len(data) // 3] ^= 0x02
        altered.write_bytes(bytes(data))
        altered.chmod(0o600)
        refused = run.bosai(*[a if a != str(gw_etc / "gateway.bundle") else str(altered) for a in agent_argv])
        assert refused.returncode == 2 and "bundle refused" in refused.stderr, refused.stderr
        # Nothing from the revoked gateway arrived after the revocation took effect.
        assert metric(metrics_url, "bosai_consumer_readings_accepted_total") == accepted_at_revoke

    async def body(_sims: SimulatorSet, endpoints: Endpoints, _clock: ScaledClock) -> None:
        await asyncio.to_thread(scenario, endpoints)

    try:
        serve("quiet-day", body, tmp_path, at=3600.0, speed=60.0, timeout=4 * WAIT_S)
    finally:
        run.close()
        broker.stop()

    logs = {p.name: p.read_text(errors="replace") for p in [*run.logs, broker.log_path]}
    # Both ran at DEBUG, paho's packet log included (it would show a CONNECT's contents).
    assert "Sending CONNECT" in logs["agent.log"] and "Sending CONNECT" in logs["consumer.log"]
    for secret_name, secret in secrets_of(authority, bundles).items():
        for log_name, text in logs.items():
            assert secret not in text, f"{secret_name} appears in {log_name}"
    # The broker's log names the source of the refused login; Mosquitto never logs passwords.
    assert re.search(r"New connection from 127\.0\.0\.1:\d+", logs[broker.log_path.name])
