"""Alerting end to end (issue 5), real parts only: Mosquitto, an HTTP webhook receiver
(http.server.ThreadingHTTPServer) and an SMTP server (aiosmtpd), with the cloud consumer in
process and the duty officers' commands run as `bosai alerts ...` (bosai.cli.main).

1. A simulated flood (typhoon-flood, a window around the rise, in compressed time) goes through
   simulators -> edge agent -> Mosquitto -> consumer; the webhook (generic JSON and Slack format)
   and the mail server receive exactly one raised/escalated per ground-truth up-crossing of each
   river gauge, with the Japanese level names; the retained alert topics hold the latest event
   of every episode; replaying the same readings through cloud.replay gives the same alerts.
2. The lifecycle: acknowledge, escalation clearing the ack, resolve by hand, a new episode only
   when the level rises again; reminders and the handover to a tier-1 recipient.
3. Episodes survive a consumer restart (and an ack given while no consumer runs).
4. A gateway whose connection drops raises gateway_offline from its Last Will; its birth message
   resolves it.
5. A maintenance window silences one site's notifications, not its MQTT state, not other sites.
6. A webhook that accepts connections and never answers delays neither e-mail nor storage.

Tests 2-6 publish telemetry themselves (paho, QoS 1) for a small registry written here, so
their expectations do not depend on the tuning of the demo registry.  Negative checks ("nothing
was notified") use ordering instead of sleeps: each notifier delivers in submission order, so
once a later event has arrived, an earlier one that was going to arrive has arrived too.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import io
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
import pytest
import yaml
from aiosmtpd.controller import Controller
from paho.mqtt.enums import CallbackAPIVersion

from bosai import cli as bosai_cli
from bosai.demo import DEMO_REGISTRY
from bosai.paths import PROFILES_DIR
from cloud.alerts.manager import key_of
from cloud.config import load_consumer_config
from cloud.consumer import Consumer
from cloud.registry import load_registry
from cloud.replay import Replayer
from edge.agent import Agent
from edge.config import load_gateway
from simulators.gateway_config import write_gateway_config
from simulators.runner import SimulatorSet, default_scenario_path, load_scenario
from simulators.truth import read_truth
from tests.servers import Mosquitto, free_port
from tests.waiting import wait_for as wait_until
from wire import topics
from wire.alerts import Alert, alert_decoder
from wire.clock import ScaledClock
from wire.status import Status
from wire.telemetry import Reading, Telemetry, encode

pytestmark = pytest.mark.integration

TIMEOUT = 20.0  # generous: every wait below normally ends within a second or two
DASHBOARD = "https://grafana.example.jp/d/bosai-overview?var-site={site}&var-sensor={sensor}"


# -- receivers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Post:
    path: str
    body: dict[str, Any]


class WebhookReceiver:
    """A real HTTP server answering every POST with 200 "ok" and recording it."""

    def __init__(self, port: int = 0) -> None:
        self.posts: list[Post] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.posts.append(Post(self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [p.body for p in self.posts if p.path == path]

    def alerts(self, path: str) -> list[Alert]:
        """The generic-format posts of `path`, in arrival order."""
        return [msgspec.convert(b, Alert) for b in self.bodies(path)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class Mail:
    message: EmailMessage
    at: float

    @property
    def alert_id(self) -> str:
        return str(self.message["X-Bosai-Alert-Id"])

    @property
    def event(self) -> str:
        return str(self.message["X-Bosai-Event"])

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        text: str = part.get_content()
        return text


class MailReceiver:
    """aiosmtpd on a free loopback port (plain SMTP: security "none" is allowed to loopback)."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.mails.append(Mail(message, time.monotonic()))
        return "250 Message accepted for delivery"

    def close(self) -> None:
        self.controller.stop()


class SilentServer:
    """Accepts TCP connections and never answers: a webhook endpoint that hangs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.accepted: list[float] = []  # time.monotonic() of each connection
        self._held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            self.accepted.append(time.monotonic())
            self._held.append(conn)  # kept open, never read, never answered

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for conn in self._held:
            conn.close()
        self.thread.join(5)


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
def smtp() -> Iterator[MailReceiver]:
    server = MailReceiver()
    yield server
    server.close()


def generic_hook(receiver: WebhookReceiver, path: str, **options: Any) -> dict[str, Any]:
    return {"type": "webhook", "id": path.strip("/"), "url": receiver.url(path), **options}


def mail_notifier(receiver: MailReceiver, **options: Any) -> dict[str, Any]:
    return {
        "type": "smtp",
        "id": "duty-mail",
        "host": "127.0.0.1",
        "port": receiver.port,
        "security": "none",
        "sender": "bosai@city.example.jp",
        "to": ["duty@city.example.jp"],
        **options,
    }


# -- MQTT clients ------------------------------------------------------------------------------


def _connect(
    broker: Mosquitto, client_id: str, setup: Callable[[mqtt.Client], None] | None = None
) -> mqtt.Client:
    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_connect = lambda *_a: connected.set()
    if setup is not None:
        setup(client)
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    assert connected.wait(TIMEOUT), f"{client_id} could not connect"
    return client


class AlertWatcher:
    """Subscribes before anything happens and records every live alert event (and, optionally,
    every telemetry message) the broker carried."""

    def __init__(self, broker: Mosquitto, tenant: str, *, telemetry: bool = False) -> None:
        self.alerts: list[Alert] = []
        self.telemetry: dict[int, Telemetry] = {}  # by seq: a redelivered message counts once
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = _connect(broker, f"watcher-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: subscribed.set()
        filters = [(topics.alerts_filter(tenant), 1)]
        if telemetry:
            filters.append((topics.telemetry_filter(tenant), 1))
        self.client.subscribe(filters)
        assert subscribed.wait(TIMEOUT), "watcher could not subscribe"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            if msg.topic.endswith("/telemetry"):
                # Not decode_telemetry: its time checks use the wall clock, and compressed-time
                # readings are in the wall clock's future.
                t = msgspec.json.decode(msg.payload, type=Telemetry)
                self.telemetry[t.seq] = t
            elif not msg.retain:
                self.alerts.append(alert_decoder.decode(msg.payload))

    def of(self, sensor: str) -> list[Alert]:
        with self.lock:
            return [a for a in self.alerts if a.sensor == sensor]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def retained_alerts(broker: Mosquitto, tenant: str) -> dict[str, Alert]:
    """Topic -> retained alert, as a client connecting now sees them.

    The retained messages are sent right after the SUBACK; a marker published afterwards on a
    topic of the same SUBSCRIBE arrives after all of them, so nothing is missed or waited for."""
    found: dict[str, Alert] = {}
    marker = f"bosai-test/marker/{uuid.uuid4().hex}"
    subscribed, marked = threading.Event(), threading.Event()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == marker:
            marked.set()
        elif msg.retain:
            found[msg.topic] = alert_decoder.decode(msg.payload)

    client = _connect(broker, f"late-{uuid.uuid4().hex[:8]}")
    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    client.subscribe([(topics.alerts_filter(tenant), 1), (marker, 1)])
    assert subscribed.wait(TIMEOUT)
    client.publish(marker, b"-", qos=1)
    assert marked.wait(TIMEOUT), "marker not delivered"
    client.loop_stop()
    client.disconnect()
    return found


def expected_retained(events: list[Alert]) -> dict[str, Alert]:
    """The latest event on each episode topic (a later episode of a key replaces the earlier)."""
    latest: dict[str, Alert] = {}
    for a in events:
        latest[key_of(a).topic(a.site)] = a
    return latest


class GatewayClient:
    """A gateway's MQTT connection, as edge/publisher.py makes it: Last Will on its status topic,
    retained birth message, QoS 1 telemetry with a sequence number."""

    def __init__(self, broker: Mosquitto, tenant: str, gateway: str) -> None:
        self.tenant, self.gateway = tenant, gateway
        self.seq = 0
        will = encode(Status(1, tenant, gateway, "offline"))

        def setup(client: mqtt.Client) -> None:
            client.will_set(topics.status(tenant, gateway), will, qos=1, retain=True)

        self.client = _connect(broker, f"bosai-{tenant}-{gateway}", setup)

    def _publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"no PUBACK for {topic}"

    def birth(self) -> None:
        status = Status(1, self.tenant, self.gateway, "online", since=datetime.now(UTC))
        self._publish(topics.status(self.tenant, self.gateway), encode(status), retain=True)

    def send(self, *readings: tuple[str, datetime, float]) -> None:
        """One telemetry message: (sensor, sample time, river level in m) each."""
        batch = [Reading(sensor, "river_level", ts, value, "m") for sensor, ts, value in readings]
        message = Telemetry(1, self.tenant, self.gateway, self.seq, datetime.now(UTC), batch)
        self.seq += 1
        self._publish(topics.telemetry(self.tenant, self.gateway), encode(message))

    def drop(self) -> None:
        """The connection dies (power cut, cable): the socket closes without DISCONNECT."""
        self.client.loop_stop()
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class SampleClock:
    """Sample times of the published readings: every 10 minutes from 4 hours ago, so that the
    data look like a real gauge's (the rates are physical) and are never in the future."""

    def __init__(self) -> None:
        self.t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)

    def next(self) -> datetime:
        self.t += timedelta(minutes=10)
        return self.t


# -- the cloud ---------------------------------------------------------------------------------

TENANT, GATEWAY = "test-city", "gw-t1"
SITES = {"river-a": "石狩川 A橋", "river-b": "忠別川 B橋"}
SENSORS = {"gauge-a": "river-a", "gauge-b": "river-b"}
STAGES = [
    (1, 2.0, "standby", "水防団待機水位"),
    (2, 2.6, "flood caution", "氾濫注意水位"),
    (3, 3.2, "evacuation judgement", "避難判断水位"),
    (4, 3.8, "flood danger", "氾濫危険水位"),
]
NAME_JA = {level: ja for level, _, _, ja in STAGES}
CLEAR_MARGIN = 0.1


def write_registry(tmp: Path) -> Path:
    """Two river gauges on one gateway.  Quality checks are loose (min_scale 0.5 m) and there is
    no silence-based stale/offline alert: these tests are about the alert lifecycle."""
    channel = {
        "unit": "m",
        "range": [-2.0, 30.0],
        "clear_margin": CLEAR_MARGIN,
        "stale_after_s": None,
        "quality": {"min_scale": 0.5},
        "thresholds": [{"level": lv, "value": v, "name": n, "name_ja": ja} for lv, v, n, ja in STAGES],
    }
    raw = {
        "tenants": [{"id": TENANT, "name": "テスト市"}],
        "sites": [{"id": s, "tenant": TENANT, "name": name, "type": "river"} for s, name in SITES.items()],
        "gateways": [{"id": GATEWAY, "tenant": TENANT, "name": "試験 gateway", "offline_after_s": None}],
        "sensors": [
            {
                "id": sensor,
                "tenant": TENANT,
                "gateway": GATEWAY,
                "site": site,
                "channels": {"river_level": channel},
            }
            for sensor, site in SENSORS.items()
        ],
    }
    path = tmp / "registry.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def write_config(
    tmp: Path, broker: Mosquitto, registry: Path, notifiers: list[dict[str, Any]], **alerts: Any
) -> Path:
    raw = {
        "mqtt": {"url": broker.url, "protocol": "5", "allow_insecure": True, "client_id": "it-alerts-cloud"},
        "registry": str(registry),
        "store": {"type": "lpfile", "path": "store"},
        "alerts": {
            "log_path": "alerts.jsonl",
            "state_path": "alerts.db",
            "dashboard_url": DASHBOARD,
            "notifiers": notifiers,
            **alerts,
        },
        "quarantine_path": "quarantine.jsonl",
    }
    path = tmp / "consumer.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


class Cloud:
    """A started consumer; `events` is every alert event it emitted, in order."""

    def __init__(self, config: Path, clock: ScaledClock | None = None) -> None:
        self.events: list[Alert] = []
        self.emitted_at: list[float] = []
        self.consumer = Consumer(load_consumer_config(config), config, clock=clock)
        self.consumer.on_alert.append(self._record)
        self.consumer.start()
        assert self.consumer.wait_ready(TIMEOUT), "consumer did not subscribe"

    def _record(self, alert: Alert) -> None:
        self.events.append(alert)
        self.emitted_at.append(time.monotonic())

    def of(self, sensor: str) -> list[Alert]:
        return [a for a in self.events if a.sensor == sensor]

    def stop(self) -> None:
        self.consumer.stop()


@contextlib.contextmanager
def running(config: Path, clock: ScaledClock | None = None) -> Iterator[Cloud]:
    cloud = Cloud(config, clock)
    try:
        yield cloud
    finally:
        cloud.stop()


def bosai(config: Path, *args: str) -> str:
    """`bosai alerts --config CONFIG ARGS...` in process; its standard output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = bosai_cli.main(["alerts", "--config", str(config), *args])
    assert code == 0, f"bosai alerts {' '.join(args)} exited {code}: {out.getvalue()}"
    return out.getvalue()


def events(alerts: list[Alert]) -> list[tuple[str, int]]:
    return [(a.event, a.level) for a in alerts]


# -- 1. simulator to notifications -----------------------------------------------------------

SPEED = 2400.0  # 8 h of sensor time in 12 s
START_AT = 7.0 * 3600  # scenario time at the clock's start: the river at about 1.7 m, rising
RUN_S = 8.0 * 3600  # to scenario time 15 h: past the danger crossing (14.5 h), before the peak
# An alert may come this much before the true crossing: the river rises about 0.3 m/h, so a
# reading past the threshold 20 min early would need 0.1 m of noise (10 sigma of the gauges).
EARLY_S = 20 * 60
# It must come with the first reading taken this long after the crossing, when the true level is
# 0.05 m past the threshold (5 sigma).  Counted in readings, not in seconds, because on a busy
# machine sampling itself lags: at 2400x a quarter-second stall is ten minutes of sensor time.
LATE_S = 10 * 60
RIVER_GAUGES = ("river-radar-01", "river-pt-02")
DEMO_TENANT = "demo-city"


def _compressed_time_registry(tmp: Path) -> Path:
    """The shipped demo registry, with gateway silence judged over 6 h instead of 10 min: at
    2400x, 10 min of sensor time is a quarter of a second, which a busy test machine can stall
    for; gateway liveness is test 4's subject, not this one's."""
    raw = yaml.safe_load(DEMO_REGISTRY.read_text(encoding="utf-8"))
    for gateway in raw["gateways"]:
        gateway["offline_after_s"] = 6 * 3600
    path = tmp / "registry.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


async def _run_field(tmp: Path, broker: Mosquitto, clock: ScaledClock) -> SimulatorSet:
    scenario = load_scenario(default_scenario_path("typhoon-flood"))
    sims = SimulatorSet(scenario, clock, tmp / "sim", PROFILES_DIR, start_at=START_AT)
    async with sims as endpoints:
        gw_path = write_gateway_config(
            endpoints, broker.url, tmp / "gateway.yaml", interval=120.0, rtu_pause=0.005, batch_interval=60.0
        )
        agent = Agent(load_gateway(gw_path), clock)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        while clock.elapsed() < RUN_S and not task.done():
            await asyncio.sleep(0.1)
        stop.set()
        await task
    assert agent.stats.outbox_depth == 0, "the gateway did not deliver everything"
    return sims


def test_simulated_flood_notifies_each_stage_crossing_exactly_once(
    tmp_path: Path, mosquitto: Mosquitto, webhook: WebhookReceiver, smtp: MailReceiver
) -> None:
    registry_path = _compressed_time_registry(tmp_path)
    registry = load_registry(registry_path)
    duty = {"categories": ["disaster"]}
    config = write_config(
        tmp_path,
        mosquitto,
        registry_path,
        [
            generic_hook(webhook, "/json", **duty),
            generic_hook(webhook, "/slack", format="slack", **duty),
            mail_notifier(smtp, **duty),
        ],
        # Reminders run on the consumer's clock, which is compressed here (15 min = 0.4 s):
        # test 2 covers them, this one counts state changes.
        disaster={"renotify_after_min": None, "escalate_after_min": None},
    )
    watcher = AlertWatcher(mosquitto, DEMO_TENANT, telemetry=True)
    # The consumer runs on the field's clock, so the data are live to it.
    clock = ScaledClock(start=time.time(), speed=SPEED)
    try:
        with running(config, clock) as cloud:
            sims = asyncio.run(_run_field(tmp_path, mosquitto, clock))
            cloud.consumer.drain(TIMEOUT)
            accepted = cloud.consumer.stats.readings_accepted
            assert cloud.consumer.stats.readings_rejected == 0
            notified = [a for a in cloud.events if a.category == "disaster" and not a.silenced]
            wait_until(
                lambda: (
                    len(webhook.bodies("/json")) >= len(notified)
                    and len(webhook.bodies("/slack")) >= len(notified)
                    and len(smtp.mails) >= len(notified)
                ),
                "every disaster alert delivered to the webhooks and by mail",
            )
        retained = retained_alerts(mosquitto, DEMO_TENANT)
        wait_until(
            lambda: (
                len(watcher.alerts) >= len(cloud.events)
                and sum(len(m.readings) for m in list(watcher.telemetry.values())) >= accepted
            ),
            "the watcher saw every alert event and reading",
        )
    finally:
        watcher.close()

    # --- the window the field ran over, and what the ground truth says happened in it ----------
    readings = sorted(
        ((m.gateway, r) for m in watcher.telemetry.values() for r in m.readings), key=lambda x: x[1].ts
    )
    first, last = readings[0][1].ts.timestamp(), readings[-1][1].ts.timestamp()
    truth = read_truth(sims.truth_path)
    crossings = [c for c in truth if c["type"] == "crossing" and first <= c["t"] <= last]
    assert {c["device"] for c in crossings} == set(RIVER_GAUGES), (
        "the typhoon window crosses river stages only"
    )
    assert all(c["direction"] == "up" for c in crossings), "the window ends before the river falls"
    sampled = {g: sorted(r.ts.timestamp() for _, r in readings if r.sensor == g) for g in RIVER_GAUGES}
    for c in crossings:  # no crossing where noise or the end of the run could decide whether it is seen
        gauge_window = sampled[c["device"]]
        assert gauge_window[0] + EARLY_S + 600 <= c["t"] < gauge_window[-1] - LATE_S, (
            f"crossing too near the window's edge: {c}"
        )
    expected: dict[str, list[tuple[str, int, str]]] = {}
    for gauge in RIVER_GAUGES:
        ups = sorted((c for c in crossings if c["device"] == gauge), key=lambda c: c["t"])
        assert [c["level"] for c in ups] == [1, 2, 3, 4], f"{gauge}: the flood should cross all four stages"
        expected[gauge] = [
            ("raised" if i == 0 else "escalated", c["level"], c["name_ja"]) for i, c in enumerate(ups)
        ]

    # --- the generic webhook: exactly those alerts, each near its true crossing -----------------
    got = webhook.alerts("/json")
    assert {a.sensor for a in got} == set(RIVER_GAUGES), "no disaster alert on any other sensor"
    assert len(got) == sum(len(v) for v in expected.values())
    for gauge in RIVER_GAUGES:
        mine = [a for a in got if a.sensor == gauge]
        assert [(a.event, a.level, a.level_name_ja) for a in mine] == expected[gauge], gauge
        assert len({a.id for a in mine}) == 1, f"{gauge}: one episode from raise to danger"
        ups = sorted((c for c in crossings if c["device"] == gauge), key=lambda c: c["t"])
        for a, c in zip(mine, ups, strict=True):
            delay = a.ts.timestamp() - c["t"]
            due = next(t for t in sampled[gauge] if t >= c["t"] + LATE_S)
            assert delay >= -EARLY_S and a.ts.timestamp() <= due, (
                f"{gauge} level {a.level}: alert {delay:+.0f} s from the crossing, due {due - c['t']:+.0f} s"
            )
            assert a.condition == "level" and a.category == "disaster" and a.kind == "river_level"
            assert (
                a.tenant == DEMO_TENANT and a.site == "ishikari-asahibashi" and a.site_name == "石狩川 旭橋"
            )
            assert a.threshold == c["threshold"] and a.value is not None and a.value >= c["threshold"]
            assert a.unit == "m" and a.rate is not None and a.rate > 0 and a.rate_unit == "m/h"
            assert "石狩川 旭橋" in a.reason and c["name_ja"] in a.reason
            assert a.links == [DASHBOARD.format(site=a.site, sensor=a.sensor)]
            if a.forecast is not None:  # time to the next stage, when the trend is significant
                assert a.forecast.kind == "next_level" and a.forecast.target_level == a.level + 1
                assert a.forecast.earliest <= a.forecast.eta <= a.forecast.latest and a.forecast.eta > a.ts
    assert any(a.forecast is not None for a in got), "a steadily rising river gets a next-stage forecast"

    # --- Slack and e-mail carry the same alerts, in words ---------------------------------------
    slack = webhook.bodies("/slack")
    assert len(slack) == len(got)
    for message, a in zip(slack, got, strict=True):
        assert (
            a.level_name_ja in message["text"]
            and a.site_name in message["text"]
            and a.event in message["text"]
        )
        assert a.sensor in message["blocks"][0]["text"]["text"]
    mails = list(smtp.mails)
    assert len(mails) == len(got)
    roots: dict[str, str] = {}
    for mail, a in zip(mails, got, strict=True):
        assert (mail.alert_id, mail.event) == (a.id, a.event)
        assert a.level_name_ja in mail.subject and a.site_name in mail.subject and a.event in mail.subject
        assert a.value is not None and f"{a.value:.6g} m" in mail.body and a.site_name in mail.body
        assert a.links[0] in mail.body, mail.body
        assert "bosai alerts" in mail.body and f"ack {a.id}" in mail.body, "how to acknowledge"
        if a.event == "raised":
            roots[a.id] = str(mail.message["Message-ID"])
        else:  # an episode's mails are one conversation in the duty officer's mail client
            assert mail.message["In-Reply-To"] == roots[a.id]

    # --- MQTT: every event was published; the retained topics hold each episode's latest ---------
    with watcher.lock:
        assert watcher.alerts == cloud.events
    assert retained == expected_retained(cloud.events)
    for gauge in RIVER_GAUGES:
        topic = topics.alert(DEMO_TENANT, "ishikari-asahibashi", gauge, "river_level", "level")
        assert (retained[topic].event, retained[topic].level) == ("escalated", 4)

    # --- the same readings replayed offline give the same disaster alerts -----------------------
    replay = Replayer(registry)
    seen: set[tuple[str, str, datetime]] = set()
    for _gateway, r in readings:
        if (r.sensor, r.kind, r.ts) not in seen:
            seen.add((r.sensor, r.kind, r.ts))
            replay.feed(registry.sensors[(DEMO_TENANT, r.sensor)], r)

    def disaster(alerts: list[Alert]) -> list[tuple[datetime, str, str, str, str, int]]:
        # Replay is in time order, the consumer in arrival order: they agree within a series.
        return sorted(
            (a.ts, a.sensor, a.kind, a.condition, a.event, a.level)
            for a in alerts
            if a.category == "disaster"
        )

    assert disaster(replay.alerts) == disaster(cloud.events)
    maintenance = sorted(
        {f"{a.condition}:{a.sensor or a.gateway}" for a in cloud.events if a.category != "disaster"}
    )
    delays = [
        round(a.ts.timestamp() - c["t"])
        for gauge in RIVER_GAUGES
        for a, c in zip(
            [a for a in got if a.sensor == gauge],
            sorted((c for c in crossings if c["device"] == gauge), key=lambda c: c["t"]),
            strict=True,
        )
    ]
    print(
        f"\nflood window {(first - sims.origin) / 3600:.2f}-{(last - sims.origin) / 3600:.2f} h: "
        f"{len(readings)} readings, "
        f"{len(got)} disaster notifications, delays vs truth {delays} s; "
        f"{len(cloud.events) - len(notified)} maintenance events {maintenance}"
    )


# -- 2. lifecycle over MQTT and the duty officers' commands -----------------------------------


def test_ack_escalation_and_manual_resolve(
    tmp_path: Path, mosquitto: Mosquitto, webhook: WebhookReceiver, smtp: MailReceiver
) -> None:
    config = write_config(
        tmp_path, mosquitto, write_registry(tmp_path), [generic_hook(webhook, "/duty"), mail_notifier(smtp)]
    )
    watcher = AlertWatcher(mosquitto, TENANT)
    gw = GatewayClient(mosquitto, TENANT, GATEWAY)
    at = SampleClock()
    topic_a = topics.alert(TENANT, "river-a", "gauge-a", "river_level", "level")

    def duty_a() -> list[Alert]:
        return [a for a in webhook.alerts("/duty") if a.sensor == "gauge-a"]

    try:
        with running(config):
            for value in (1.5, 2.1, 2.7):  # standby, then flood caution
                gw.send(("gauge-a", at.next(), value))
            wait_until(lambda: len(duty_a()) >= 2, "raised and escalated on the webhook")
            raised, escalated = duty_a()
            assert events([raised, escalated]) == [("raised", 1), ("escalated", 2)]
            assert escalated.id == raised.id and escalated.level_name_ja == "氾濫注意水位"
            assert escalated.status == "active" and escalated.previous_level == 1

            listed = bosai(config, "list")
            assert raised.id[:8] in listed and "氾濫注意水位" in listed and "gauge-a" in listed
            out = bosai(config, "ack", raised.id, "--by", "duty-officer")
            assert raised.id in out
            wait_until(lambda: len(duty_a()) >= 3, "the acknowledgement notified")
            ack = duty_a()[2]
            assert (ack.event, ack.status, ack.acked_by, ack.id) == (
                "acknowledged",
                "acknowledged",
                "duty-officer",
                raised.id,
            )
            assert ack.level == 2 and ack.acked_at is not None
            wait_until(lambda: len(smtp.mails) >= 3, "the acknowledgement mailed")
            assert smtp.mails[2].event == "acknowledged" and "duty-officer" in smtp.mails[2].subject
            late = retained_alerts(mosquitto, TENANT)
            assert late[topic_a].event == "acknowledged" and late[topic_a].id == raised.id

            gw.send(("gauge-a", at.next(), 3.3))  # evacuation judgement: news, the ack is cleared
            wait_until(lambda: len(duty_a()) >= 4, "the escalation notified")
            up = duty_a()[3]
            assert (up.event, up.level, up.status, up.acked_by, up.acked_at) == (
                "escalated",
                3,
                "active",
                "",
                None,
            )
            assert up.id == raised.id and up.peak_level == 3

            bosai(config, "resolve", raised.id[:8], "--by", "duty-officer")
            wait_until(lambda: len(duty_a()) >= 5, "the manual resolution notified")
            done = duty_a()[4]
            assert (done.event, done.status, done.level, done.resolved_by) == (
                "resolved",
                "resolved",
                0,
                "duty-officer",
            )
            assert done.id == raised.id and done.previous_level == 3
            assert "no open alerts" in bosai(config, "list")

            # Resolved by hand while the river stays at level 3: no new episode for the same level.
            # gauge-b's alert is the marker: once it is delivered, a gauge-a event would have been.
            gw.send(("gauge-a", at.next(), 3.35))
            gw.send(("gauge-b", at.next(), 2.2))
            wait_until(
                lambda: any(a.sensor == "gauge-b" for a in webhook.alerts("/duty")), "gauge-b notified"
            )
            assert len(duty_a()) == 5
            gw.send(("gauge-a", at.next(), 3.9))  # the level rises: a new episode
            wait_until(lambda: len(duty_a()) >= 6, "the new episode notified")
            again = duty_a()[5]
            assert (again.event, again.level, again.level_name_ja) == ("raised", 4, "氾濫危険水位")
            assert again.id != raised.id
            wait_until(lambda: len(smtp.mails) >= 7, "every event mailed")
        late = retained_alerts(mosquitto, TENANT)
        wait_until(lambda: len(watcher.of("gauge-a")) >= 6, "every gauge-a event on MQTT")
        watcher_a = watcher.of("gauge-a")
    finally:
        gw.close()
        watcher.close()

    assert events(duty_a()) == [
        ("raised", 1),
        ("escalated", 2),
        ("acknowledged", 2),
        ("escalated", 3),
        ("resolved", 0),
        ("raised", 4),
    ]
    assert [(m.alert_id, m.event) for m in smtp.mails] == [(a.id, a.event) for a in webhook.alerts("/duty")]
    assert [(a.id, a.event) for a in watcher_a] == [(a.id, a.event) for a in duty_a()]
    assert late[topic_a] == again


def test_unacknowledged_alert_reminds_then_hands_over(
    tmp_path: Path, mosquitto: Mosquitto, webhook: WebhookReceiver
) -> None:
    config = write_config(
        tmp_path,
        mosquitto,
        write_registry(tmp_path),
        [generic_hook(webhook, "/duty"), generic_hook(webhook, "/chief", tier=1)],
        disaster={"renotify_after_min": 0.02, "escalate_after_min": 0.05},  # 1.2 s and 3 s
    )
    gw = GatewayClient(mosquitto, TENANT, GATEWAY)
    at = SampleClock()

    def heard(path: str, sensor: str) -> list[Alert]:
        return [a for a in webhook.alerts(path) if a.sensor == sensor]

    try:
        with running(config):
            gw.send(("gauge-a", at.next(), 2.7))  # straight to flood caution
            wait_until(lambda: len(heard("/chief", "gauge-a")) >= 1, "the handover to tier 1")
            duty = heard("/duty", "gauge-a")
            first_handover = next(i for i, a in enumerate(duty) if a.event == "handover")
            assert duty[0].event == "raised" and duty[0].notify_tier == 0
            before = [a.event for a in duty[1:first_handover]]
            assert before and set(before) == {"reminder"}, f"reminders before the handover: {before}"
            handover = heard("/chief", "gauge-a")[0]
            assert (handover.event, handover.notify_tier, handover.level) == ("handover", 1, 2)
            assert handover == duty[first_handover], "tier 1 hears nothing before the handover"
            assert all(a.status == "active" and a.id == duty[0].id for a in duty)

            bosai(config, "ack", duty[0].id, "--by", "chief")
            wait_until(
                lambda: all(  # both tiers are involved now: both hear the ack
                    any(a.event == "acknowledged" for a in heard(path, "gauge-a"))
                    for path in ("/duty", "/chief")
                ),
                "the ack on both tiers",
            )
            acked_at = len(heard("/duty", "gauge-a"))

            # gauge-b, never acknowledged, keeps reminding: two of its reminders delivered after
            # the ack show that time passed beyond gauge-a's renotify interval without a reminder.
            gw.send(("gauge-b", at.next(), 2.1))
            wait_until(
                lambda: sum(a.event == "reminder" for a in heard("/duty", "gauge-b")) >= 2,
                "gauge-b's reminders",
            )
            assert events(heard("/duty", "gauge-a")[acked_at - 1 :]) == [("acknowledged", 2)]

            gw.send(("gauge-a", at.next(), 3.3))  # escalation clears the ack: reminders resume
            wait_until(
                lambda: (
                    [a.event for a in heard("/duty", "gauge-a")[acked_at:]][:2] == ["escalated", "reminder"]
                ),
                "a reminder after the escalation",
            )
            up = heard("/duty", "gauge-a")[acked_at]
            assert (up.level, up.status, up.acked_by, up.notify_tier) == (3, "active", "", 1)
    finally:
        gw.close()
    chief = webhook.alerts("/chief")
    assert chief[0] == handover and "raised" not in {a.event for a in chief if a.sensor == "gauge-a"}
    assert all(a.notify_tier >= 1 for a in chief), "tier 1 hears only what was handed over to it"


# -- 3. state survives a restart ---------------------------------------------------------------


def test_episode_survives_a_consumer_restart(
    tmp_path: Path, mosquitto: Mosquitto, webhook: WebhookReceiver
) -> None:
    config = write_config(tmp_path, mosquitto, write_registry(tmp_path), [generic_hook(webhook, "/duty")])
    gw = GatewayClient(mosquitto, TENANT, GATEWAY)
    at = SampleClock()
    try:
        with running(config) as first:
            gw.send(("gauge-a", at.next(), 2.1))
            gw.send(("gauge-a", at.next(), 2.7))
            wait_until(lambda: len(webhook.alerts("/duty")) >= 2, "raised and escalated")
            first.consumer.drain(TIMEOUT)
        episode = webhook.alerts("/duty")[0].id

        # While no consumer runs: the river stays at level 2 (the broker keeps the message for the
        # consumer's persistent session) and a duty officer acknowledges.
        gw.send(("gauge-a", at.next(), 2.75))
        bosai(config, "ack", episode, "--by", "night-duty")

        with running(config) as second:
            wait_until(lambda: len(webhook.alerts("/duty")) >= 3, "the ack carried out by the new consumer")
            wait_until(lambda: second.consumer.stats.readings_accepted >= 1, "the queued reading processed")
            gw.send(("gauge-a", at.next(), 1.85))  # below standby - clear margin: resolved
            wait_until(lambda: len(webhook.alerts("/duty")) >= 4, "the resolution")
            second.consumer.drain(TIMEOUT)
            assert second.consumer.stats.readings_accepted == 2
    finally:
        gw.close()

    heard = webhook.alerts("/duty")
    assert events(heard) == [("raised", 1), ("escalated", 2), ("acknowledged", 2), ("resolved", 0)]
    assert {a.id for a in heard} == {episode}, "the same episode from raise to resolve"
    assert heard[2].acked_by == "night-duty" and heard[3].resolved_by == "" and heard[3].previous_level == 2
    assert events(second.events) == [("acknowledged", 2), ("resolved", 0)], (
        "no second raise after the restart"
    )


# -- 4. gateway offline ------------------------------------------------------------------------


def test_gateway_offline_from_last_will_and_back(
    tmp_path: Path, mosquitto: Mosquitto, webhook: WebhookReceiver, smtp: MailReceiver
) -> None:
    config = write_config(
        tmp_path, mosquitto, write_registry(tmp_path), [generic_hook(webhook, "/tech"), mail_notifier(smtp)]
    )
    topic = topics.gateway_alert(TENANT, GATEWAY, "gateway_offline")
    with running(config) as cloud:
        gw = GatewayClient(mosquitto, TENANT, GATEWAY)
        gw.birth()
        gw.send(("gauge-a", SampleClock().next(), 1.2))
        wait_until(lambda: cloud.consumer.stats.readings_accepted == 1, "the gateway's reading")
        assert cloud.events == []
        gw.drop()  # Mosquitto publishes the Last Will
        wait_until(lambda: len(webhook.alerts("/tech")) >= 1, "gateway_offline notified")
        down = webhook.alerts("/tech")[0]
        assert (down.event, down.condition, down.category, down.level) == (
            "raised",
            "gateway_offline",
            "maintenance",
            1,
        )
        assert down.gateway == GATEWAY and down.sensor == "" and "Last Will" in down.reason
        assert retained_alerts(mosquitto, TENANT)[topic] == down

        back = GatewayClient(mosquitto, TENANT, GATEWAY)  # reconnects: a new birth message
        try:
            back.birth()
            wait_until(lambda: len(webhook.alerts("/tech")) >= 2, "back online notified")
        finally:
            back.close()
        up = webhook.alerts("/tech")[1]
        assert (up.event, up.status, up.level, up.id) == ("resolved", "resolved", 0, down.id)
        wait_until(lambda: len(smtp.mails) >= 2, "both mailed")
    assert [m.event for m in smtp.mails] == ["raised", "resolved"]
    assert "maintenance" in smtp.mails[0].subject and "gateway_offline" in smtp.mails[0].subject
    assert GATEWAY in smtp.mails[0].subject
    assert events(cloud.events) == [("raised", 1), ("resolved", 0)]
    assert retained_alerts(mosquitto, TENANT)[topic] == up


# -- 5. maintenance window ---------------------------------------------------------------------


def test_maintenance_window_silences_one_site(
    tmp_path: Path, mosquitto: Mosquitto, webhook: WebhookReceiver, smtp: MailReceiver
) -> None:
    config = write_config(
        tmp_path, mosquitto, write_registry(tmp_path), [generic_hook(webhook, "/duty"), mail_notifier(smtp)]
    )
    until = (datetime.now(UTC) + timedelta(hours=2)).astimezone().isoformat(timespec="seconds")
    out = bosai(
        config,
        "silence",
        "--tenant",
        TENANT,
        "--site",
        "river-a",
        "--until",
        until,
        "--reason",
        "weir repair",
    )
    window = out.split("maintenance window ")[1].split()[0]
    assert "site river-a" in bosai(config, "windows") and "weir repair" in bosai(config, "windows")
    watcher = AlertWatcher(mosquitto, TENANT)
    gw = GatewayClient(mosquitto, TENANT, GATEWAY)
    at = SampleClock()
    try:
        with running(config) as cloud:
            gw.send(("gauge-a", at.next(), 2.1), ("gauge-a", at.next(), 2.7))  # site river-a, silenced
            gw.send(("gauge-b", at.next(), 2.1))  # site river-b, notified
            wait_until(lambda: len(webhook.alerts("/duty")) >= 1 and len(smtp.mails) >= 1, "river-b notified")
            wait_until(
                lambda: len(watcher.of("gauge-a")) >= 2 and len(watcher.of("gauge-b")) >= 1,
                "the alerts on MQTT",
            )
            assert [(a.sensor, a.event) for a in webhook.alerts("/duty")] == [("gauge-b", "raised")]
            assert [m.alert_id for m in smtp.mails] == [webhook.alerts("/duty")[0].id]
            silenced = watcher.of("gauge-a")
            assert events(silenced) == [("raised", 1), ("escalated", 2)]
            assert all(a.silenced for a in silenced) and not watcher.of("gauge-b")[0].silenced
            late = retained_alerts(mosquitto, TENANT)
            assert late[topics.alert(TENANT, "river-a", "gauge-a", "river_level", "level")] == silenced[-1]

            # The window ends early: the episode still open is notified then, with its level now.
            bosai(config, "unsilence", window)
            wait_until(lambda: len(webhook.alerts("/duty")) >= 2, "river-a notified after the window")
            resumed = webhook.alerts("/duty")[1]
            assert (resumed.sensor, resumed.event, resumed.level, resumed.silenced) == (
                "gauge-a",
                "reminder",
                2,
                False,
            )
            assert resumed.id == silenced[0].id
            wait_until(lambda: len(smtp.mails) >= 2, "and mailed")
    finally:
        gw.close()
        watcher.close()
    assert [a.sensor for a in cloud.events] == ["gauge-a", "gauge-a", "gauge-b", "gauge-a"]


# -- 6. a dead notifier does not block ---------------------------------------------------------

HANG_TIMEOUT_S = 2.0  # the webhook's timeout_s


def test_hanging_webhook_delays_neither_mail_nor_storage(
    tmp_path: Path, mosquitto: Mosquitto, smtp: MailReceiver
) -> None:
    silent = SilentServer()
    port = silent.port
    hook = {
        "type": "webhook",
        "id": "hung",
        "url": f"http://127.0.0.1:{port}/hook",
        "timeout_s": HANG_TIMEOUT_S,
    }
    config = write_config(tmp_path, mosquitto, write_registry(tmp_path), [hook, mail_notifier(smtp)])
    gw = GatewayClient(mosquitto, TENANT, GATEWAY)
    at = SampleClock()
    revived: WebhookReceiver | None = None
    try:
        with running(config) as cloud:
            gw.send(("gauge-a", at.next(), 2.1))
            gw.send(("gauge-a", at.next(), 2.7))
            gw.send(("gauge-b", at.next(), 2.1))
            wait_until(lambda: len(smtp.mails) >= 3, "every alert mailed while the webhook hangs")
            for mail, emitted in zip(smtp.mails, cloud.emitted_at, strict=True):
                assert mail.at - emitted < HANG_TIMEOUT_S, "a mail waited for the hanging webhook"
            assert [m.event for m in smtp.mails] == ["raised", "escalated", "raised"]

            # Readings keep flowing into the store while the webhook times out and is retried.
            for i in range(20):
                gw.send(("gauge-b", at.next(), 2.1 + 0.01 * i))
            wait_until(lambda: cloud.consumer.stats.readings_accepted == 23, "every reading accepted")
            cloud.consumer.drain(TIMEOUT)
            stats = cloud.consumer.stats
            assert stats.lines_written >= 23 and stats.write_errors == 0
            stored = [line for f in (tmp_path / "store").glob("*.lp") for line in f.read_text().splitlines()]
            assert sum(line.startswith("readings,") for line in stored) == 23
            wait_until(lambda: len(silent.accepted) >= 2, "the webhook retried after its timeout")

            # The webhook comes back on the same address: everything queued arrives, in order.
            silent.close()
            revived = WebhookReceiver(port)
            receiver = revived
            wait_until(lambda: len(receiver.alerts("/hook")) >= 3, "the queued alerts delivered", timeout=30)
            assert [(a.id, a.event) for a in receiver.alerts("/hook")] == [
                (a.id, a.event) for a in cloud.events
            ]
    finally:
        gw.close()
        silent.close()
        if revived is not None:
            revived.close()
