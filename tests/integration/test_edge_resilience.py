"""Proof that the edge agent loses nothing (issue 4), with real parts only: the gateway agent as
a separate process (`bosai edge run`), the simulators' devices on their real protocols, a real
Mosquitto, the real cloud consumer writing to a real VictoriaMetrics, and, one after the other,
what goes wrong in the field:

1. steady state;
2. the broker stopped (SIGTERM) for a few seconds, then started again;
3. steady;
4. the broker crashed (kill -9), then started again from what it had saved;
5. the agent killed (kill -9) while it replays the backlog of a third broker outage, then
   started again on the same config and the same outbox;
6. the uplink blackholed for longer than the MQTT keepalive;
7. the uplink reset (the modem re-attaches);
8. steady, then a clean stop of the agent (SIGTERM: it waits for its PUBACKs).

Ground truth: the agent's outbox says which sequence numbers it allocated (1..N, from its
`next_seq` counter) and, after the clean stop, that nothing is left unacknowledged.  An
independent MQTT 5 recorder with a persistent session says what the broker carried, duplicates
included.  The test checks that every seq 1..N reached the broker, that the consumer counted no
loss, and that VictoriaMetrics holds every distinct reading exactly once with its sample time
and value: no row lost, none duplicated.  The figures are printed (`pytest -s`) and written to
resilience.json in the test's tmp dir.

Timing: everything runs at real speed (the agent is a separate process on real time).  paho
reconnects with a doubling backoff (1, 2, 4, 8 s ...), so after a broker outage of 6 s the agent
and the consumer are back 7 s after it began; outages are kept that short to keep the test near
a minute and a half.  A link window is fixed when an uplink proxy starts, and the broker and
agent phases take however long the reconnects take, so the proxy that carries the link cuts is
started while the agent is down after its kill -9, with windows counted from that moment, on
the port the agent's config names; until then a proxy without windows relays that port.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bosai.demo import DEMO_REGISTRY
from bosai.paths import PROFILES_DIR
from cloud.config import load_consumer_config
from cloud.consumer import Consumer
from cloud.points import QUALITY_CODES, ts_ms
from cloud.stats import ConsumerStats
from simulators.gateway_config import write_gateway_config
from simulators.runner import Endpoints, SimulatorSet, default_scenario_path, load_scenario
from simulators.uplink import LinkWindow, UplinkProxy, UplinkStats, via_proxy
from tests.pipeline import write_consumer_config
from tests.servers import Mosquitto, VictoriaMetrics
from tests.waiting import wait_for
from wire import topics
from wire.clock import ScaledClock
from wire.telemetry import DecodeError, Quality, Telemetry, decode_telemetry

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCENARIO = "quiet-day"
START_AT = 6 * 3600.0  # scenario time at the start: the river is rising, nothing crosses a threshold
WAIT_S = 60.0  # generous bound for anything that should take a few seconds (2 busy cores)

FIRST_STEADY_S = 8.0
STEADY_S = 6.0
BROKER_OUTAGE_S = 6.0  # the agent's paho retries at +1, +3, +7 s: back 1 s after the broker
# Shorter: the recorder retries every second, so it is back on the broker well before the agent
# (+7 s) and sees the agent's replay the moment it starts; that is when the agent is killed.
REPLAY_OUTAGE_S = 4.0
# Link windows, in seconds after the link proxy starts (the agent takes ~2 s to start).
BLACKHOLE_AT, BLACKHOLE_S = 10.0, 15.0  # longer than the agent's keepalive (10 s)
RESET_AT, RESET_S = 31.0, 5.0  # 6 s after the blackhole: the agent is connected again by then
FINAL_STEADY_S = 6.0


# --------------------------------------------------------------------------------------------
# Parts


@dataclass(frozen=True, slots=True)
class Delivery:
    arrived: float  # wall clock
    seq: int
    sent: float  # when the agent sealed the message (wall clock, from the payload)
    payload: bytes
    message: Telemetry


class Recorder:
    """An independent MQTT 5 subscriber with a persistent session: what the broker carried.

    It subscribes again on every connect (after a broker crash the session may be gone), and
    can kill the agent the moment a message sealed after a given time arrives (phase 5).
    """

    def __init__(self, broker: Mosquitto) -> None:
        self.deliveries: list[Delivery] = []
        self.undecodable: list[str] = []
        self.disconnects = 0
        self.killed_at: float | None = None
        self._kill: tuple[int, float] | None = None  # (agent pid, kill on a message sealed after)
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="resilience-recorder", protocol=mqtt.MQTTv5
        )
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 1)  # back on the broker before the agent (1, 2, 4 s backoff)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect(broker.host, broker.port, clean_start=False, properties=props)
        client.loop_start()
        self.client = client
        assert self._subscribed.wait(WAIT_S), "the recorder could not subscribe"

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not rc.is_failure:
            client.subscribe(topics.telemetry_filter(), qos=1)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        if not any(c.is_failure for c in codes):
            self._subscribed.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        self._subscribed.clear()
        with self._lock:
            self.disconnects += 1

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        arrived = time.time()
        payload = bytes(msg.payload)
        try:  # an exception here would end paho's network thread
            t = decode_telemetry(payload, max_past_s=86400.0)
        except DecodeError as exc:
            with self._lock:
                self.undecodable.append(f"{msg.topic}: {exc}")
            return
        sent = t.sent.timestamp()
        with self._lock:
            if self._kill is not None and sent > self._kill[1]:
                os.kill(self._kill[0], signal.SIGKILL)  # right now, before the agent deletes its acks
                self._kill, self.killed_at = None, time.time()
            self.deliveries.append(Delivery(arrived, t.seq, sent, payload, t))

    def kill_on_message_sealed_after(self, pid: int, after: float) -> None:
        with self._lock:
            self._kill = (pid, after)

    def snapshot(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def seqs(self) -> set[int]:
        return {d.seq for d in self.snapshot()}

    def has_sealed_after(self, t: float) -> bool:
        return any(d.sent > t for d in self.snapshot())

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Field:
    """The simulated devices and the uplink proxy, on their own asyncio loop in a thread."""

    def __init__(self, workdir: Path, broker: Mosquitto) -> None:
        scenario = load_scenario(default_scenario_path(SCENARIO))
        self.clock = ScaledClock(start=time.time(), speed=1.0)  # the agent runs on real time
        self.sims = SimulatorSet(scenario, self.clock, workdir, PROFILES_DIR, start_at=START_AT)
        self.proxy: UplinkProxy | None = None
        self.proxy_address: tuple[str, int] = ("127.0.0.1", 0)
        self._broker = (broker.host, broker.port)
        self._endpoints: Endpoints | None = None
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="field", daemon=True)

    def start(self) -> Endpoints:
        self._thread.start()
        assert self._ready.wait(WAIT_S), "the simulators did not start"
        if self._error is not None:
            raise self._error
        assert self._endpoints is not None
        return self._endpoints

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.ident is not None:  # started
            self._thread.join(WAIT_S)

    def scenario_time(self) -> float:
        return self.sims.scenario_time()

    def wall(self, scenario_t: float) -> float:
        """Wall-clock time of a scenario time (the clock runs at real speed)."""
        return self.sims.origin + scenario_t

    def replace_proxy(self, windows: list[LinkWindow]) -> UplinkProxy:
        """Close the current proxy and serve one with `windows` on the same port."""

        async def swap() -> None:
            assert self.proxy is not None
            await self.proxy.close()
            await self._start_proxy(windows, self.proxy_address[1])

        self._call(swap())
        assert self.proxy is not None
        return self.proxy

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(WAIT_S)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.sims as endpoints:
            self._endpoints = endpoints
            await self._start_proxy([], 0)
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                if self.proxy is not None:
                    await self.proxy.close()

    async def _start_proxy(self, windows: list[LinkWindow], port: int) -> None:
        self.proxy = UplinkProxy(self._broker, windows, self.clock, self.sims.scenario_time, port=port)
        self.proxy_address = await self.proxy.start()


class AgentProcess:
    """`bosai edge run` as a child process; each run's output goes to agent-N.log."""

    def __init__(self, config: Path, logdir: Path) -> None:
        self.config = config
        self.logdir = logdir
        self.logs: list[Path] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.logdir / f"agent-{len(self.logs) + 1}.log"
        self.logs.append(log)
        argv = [
            sys.executable,
            "-m",
            "bosai",
            "--log-level",
            "DEBUG",
            "edge",
            "run",
            "--config",
            str(self.config),
        ]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=out)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait(self, timeout: float = WAIT_S) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def terminate(self) -> int:
        """Clean stop: SIGTERM, and the agent waits for its PUBACKs before it exits."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 25) -> str:
        if not self.logs:
            return "(the agent never started)"
        text = self.logs[-1].read_text(errors="replace").splitlines()[-lines:]
        return f"--- last {lines} lines of {self.logs[-1]}:\n" + "\n".join(text)


@dataclass(frozen=True)
class OutboxState:
    next_seq: int
    unacked: list[int]  # seqs still in the `messages` table
    staged: int  # readings not yet sealed into a message (0 for an outbox without that stage)


def read_outbox(path: Path) -> OutboxState:
    """The agent's outbox, opened read-only (the agent is stopped or dead when this is called)."""
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        (next_seq,) = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        unacked = [int(s) for (s,) in db.execute("SELECT seq FROM messages ORDER BY seq")]
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        staged = db.execute("SELECT COUNT(*) FROM staged").fetchone()[0] if "staged" in tables else 0
    finally:
        db.close()
    return OutboxState(int(next_seq), unacked, int(staged))


# --------------------------------------------------------------------------------------------
# Phases


@dataclass(frozen=True)
class Outage:
    name: str
    start: float  # wall clock
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def broker_outage(
    name: str, broker: Mosquitto, recorder: Recorder, consumer: Consumer, down_s: float, *, crash: bool
) -> Outage:
    """Stop (SIGTERM) or crash (kill -9) the broker for `down_s` seconds, then start it again."""
    disconnects = recorder.disconnects
    start = time.time()
    if crash:
        broker.kill()
    else:
        broker.stop()
    # Both clients really saw the broker go away (not just a pause they slept through).
    wait_for(lambda: recorder.disconnects > disconnects, "the recorder to see the broker go")
    wait_for(lambda: not consumer.wait_ready(0), "the consumer to see the broker go")
    time.sleep(max(0.0, start + down_s - time.time()))
    broker.start()
    return Outage(name, start, time.time())


def wait_recovered(recorder: Recorder, consumer: Consumer, since: float) -> None:
    """The agent publishes live data again (a message sealed after `since` reached the broker)
    and the consumer is subscribed again."""
    wait_for(lambda: recorder.has_sealed_after(since + 0.5), "the agent to publish again")
    assert consumer.wait_ready(WAIT_S), "the consumer did not reconnect"


# --------------------------------------------------------------------------------------------
# The timeline


@dataclass
class Run:
    """What the timeline left behind for the checks."""

    outages: list[Outage]
    deliveries: list[Delivery]  # what the recorder received, in order, duplicates included
    at_kill: OutboxState  # the outbox right after the agent's kill -9
    delivered_before_kill: set[int]
    final: OutboxState  # the outbox after the clean stop
    consumer: ConsumerStats
    store: StoreRead
    lines_written_after_drain: int  # by the consumer, while the store was read (expected: 0)
    link: UplinkStats
    recorder_disconnects: int
    undecodable: list[str]
    paho_errors: list[str]  # ERROR lines of paho's own log in the agent's logs (expected: none)
    diagnostics: str  # where to look when a check fails


def run_timeline(tmp: Path, victoria: VictoriaMetrics) -> Run:
    outages: list[Outage] = []
    with Mosquitto(tmp / "mosquitto", autosave_on_changes=True) as broker:
        recorder = Recorder(broker)
        consumer = Consumer(
            load_consumer_config(
                write_consumer_config(tmp, broker, victoria, DEMO_REGISTRY, "resilience-cloud")
            ),
            tmp / "consumer.yaml",
        )
        field = Field(tmp / "sim", broker)
        agent: AgentProcess | None = None
        try:
            consumer.start()
            assert consumer.wait_ready(WAIT_S), "consumer did not subscribe"
            endpoints = field.start()
            gw_yaml = write_gateway_config(
                endpoints,
                via_proxy(broker.url, field.proxy_address),
                tmp / "gw.yaml",
                interval=1.0,
                batch_interval=1.0,
                rtu_pause=0.005,
            )
            outbox_path = tmp / "gw-outbox.sqlite"
            agent = AgentProcess(gw_yaml, tmp)

            # 1. steady
            agent.start()
            wait_for(lambda: bool(recorder.snapshot()), f"the agent's first message\n{agent.tail()}")
            time.sleep(FIRST_STEADY_S)

            # 2. broker SIGTERM;  3. steady
            outage = broker_outage("broker-sigterm", broker, recorder, consumer, BROKER_OUTAGE_S, crash=False)
            outages.append(outage)
            wait_recovered(recorder, consumer, outage.end)
            time.sleep(STEADY_S)

            # 4. broker kill -9
            outage = broker_outage("broker-kill9", broker, recorder, consumer, BROKER_OUTAGE_S, crash=True)
            outages.append(outage)
            wait_recovered(recorder, consumer, outage.end)
            time.sleep(STEADY_S)

            # 5. agent kill -9 in the middle of its replay after a third broker outage: the first
            # message sealed during the outage that reaches the recorder pulls the trigger.
            recorder.kill_on_message_sealed_after(agent.pid, time.time() + 0.5)
            outage = broker_outage("replay-outage", broker, recorder, consumer, REPLAY_OUTAGE_S, crash=False)
            outages.append(outage)
            wait_for(
                lambda: recorder.killed_at is not None, f"the agent's replay, to kill it ({agent.logs[-1]})"
            )
            code = agent.wait()
            assert code == -signal.SIGKILL, f"the agent exited with {code}, not killed\n{agent.tail()}"
            assert recorder.killed_at is not None  # for mypy
            at_kill = read_outbox(outbox_path)
            delivered_before_kill = recorder.seqs()
            outages.append(Outage("agent-kill9", recorder.killed_at, recorder.killed_at))

            # 6., 7. the link: a proxy with a blackhole and a reset window, counted from now
            now = field.scenario_time()
            blackhole = LinkWindow(now + BLACKHOLE_AT, now + BLACKHOLE_AT + BLACKHOLE_S, "blackhole")
            reset = LinkWindow(now + RESET_AT, now + RESET_AT + RESET_S, "reset")
            link = field.replace_proxy([blackhole, reset])
            agent.start()
            wait_recovered(recorder, consumer, time.time())
            wait_for(lambda: field.scenario_time() >= reset.end, "the link windows to pass", timeout=90)
            outages.append(Outage("blackhole", field.wall(blackhole.start), field.wall(blackhole.end)))
            outages.append(Outage("reset", field.wall(reset.start), field.wall(reset.end)))

            # 8. steady, then a clean stop; then everything the agent allocated must arrive
            wait_recovered(recorder, consumer, field.wall(reset.end))
            time.sleep(FINAL_STEADY_S)
            code = agent.terminate()
            assert code == 0, f"the agent's clean stop exited with {code}\n{agent.tail()}"
            final = read_outbox(outbox_path)
            allocated = set(range(1, final.next_seq))
            wait_for(lambda: recorder.seqs() >= allocated, "the recorder to have every seq")

            def consumer_has_all() -> bool:
                c = consumer.stats
                return c.messages - c.messages_rejected - c.duplicated >= len(allocated)

            wait_for(consumer_has_all, "the consumer to have processed every seq")
            consumer.drain(WAIT_S)
            lines_written = consumer.stats.lines_written
            store = read_store(victoria, measure(recorder.snapshot()))
            lines_written_after_drain = consumer.stats.lines_written - lines_written
        finally:
            if agent is not None:
                agent.kill()
            field.stop()
            consumer.stop()
            recorder.close()
        logs = ", ".join(str(p) for p in agent.logs)
        return Run(
            outages=outages,
            deliveries=recorder.snapshot(),
            at_kill=at_kill,
            delivered_before_kill=delivered_before_kill,
            final=final,
            consumer=consumer.stats,
            store=store,
            lines_written_after_drain=lines_written_after_drain,
            link=link.stats,
            recorder_disconnects=recorder.disconnects,
            undecodable=list(recorder.undecodable),
            paho_errors=[
                line
                for path in agent.logs
                for line in path.read_text(errors="replace").splitlines()
                if " ERROR paho.mqtt." in line
            ],
            diagnostics=f"agent logs: {logs}\n{broker.log_tail()}",
        )


# --------------------------------------------------------------------------------------------
# Accounting


Series = tuple[str, str]  # (sensor, kind)
Stored = dict[Series, list[tuple[int, float]]]  # (sample time in ms, value), as exported


@dataclass
class SeriesCheck:
    series: Series
    lost: int = 0  # sample times measured but not stored
    extra: int = 0  # sample times stored but never measured
    examples: tuple[int, ...] = ()  # a few of the lost or extra sample times (ms)
    duplicated: int = 0  # stored samples beyond one per sample time
    wrong: tuple[tuple[str, str, int, float, float], ...] = ()  # (sensor, kind, ms, measured, stored)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.extra or self.duplicated or self.wrong)


def first_deliveries(deliveries: list[Delivery]) -> dict[int, Delivery]:
    """seq -> its first delivery."""
    first: dict[int, Delivery] = {}
    for d in deliveries:
        first.setdefault(d.seq, d)
    return first


@dataclass
class Measured:
    """What the agent measured: the readings of the distinct messages the broker carried, by
    series and sample time (ms).  A reading may be reported again with its own sample time (a
    free-running sensor's line stays the freshest value for several polls): that is one sample,
    stored once."""

    readings: int
    q: dict[Series, dict[int, float]]  # sample time -> quality code, every reading
    value: dict[Series, dict[int, float]]  # sample time -> value, ok readings
    conflicting: list[tuple[str, str, int]]  # one series and sample time, different readings

    @property
    def samples(self) -> int:
        return sum(len(by_time) for by_time in self.q.values())


def measure(deliveries: list[Delivery]) -> Measured:
    seen: dict[Series, dict[int, set[tuple[int, float | None]]]] = defaultdict(lambda: defaultdict(set))
    readings = 0
    for d in first_deliveries(deliveries).values():
        for r in d.message.readings:
            readings += 1
            value = r.value if r.q is Quality.OK else None
            seen[(r.sensor, r.kind)][ts_ms(r.ts)].add((QUALITY_CODES[r.q], value))
    q: dict[Series, dict[int, float]] = defaultdict(dict)
    values: dict[Series, dict[int, float]] = defaultdict(dict)
    for series, by_time in seen.items():
        for t, variants in by_time.items():
            for code, value in variants:
                q[series][t] = code
                if value is not None:
                    values[series][t] = value
    conflicting = [(*s, t) for s, by_time in seen.items() for t, v in by_time.items() if len(v) > 1]
    return Measured(readings, dict(q), dict(values), conflicting)


@dataclass
class StoreRead:
    q: Stored
    value: Stored
    waited_s: float  # until every measured sample was visible (or the timeout)


def read_store(victoria: VictoriaMetrics, want: Measured, timeout: float = 30.0) -> StoreRead:
    """Both fields as stored, read again (after a flush) until every measured sample is visible
    or `timeout` passes: a sample still missing then is lost, not late."""
    began = time.monotonic()

    def complete(stored: Stored, expected: dict[Series, dict[int, float]]) -> bool:
        return all(set(by_time) <= {t for t, _ in stored.get(s, [])} for s, by_time in expected.items())

    while True:
        victoria.force_flush()
        q, value = _export(victoria, "readings_q"), _export(victoria, "readings_value")
        waited = time.monotonic() - began
        if (complete(q, want.q) and complete(value, want.value)) or waited > timeout:
            return StoreRead(q, value, waited)
        time.sleep(0.5)


def _export(victoria: VictoriaMetrics, name: str) -> Stored:
    """Every sample of a VictoriaMetrics series name, by (sensor, kind)."""
    stored: Stored = defaultdict(list)
    for row in victoria.export(f'{{__name__="{name}",gateway="gw01"}}'):
        m = row["metric"]
        stored[(m["sensor"], m["kind"])] += zip(row["timestamps"], row["values"], strict=True)
    return stored


def _compare(expected: Mapping[Series, Mapping[int, float]], stored: Stored) -> list[SeriesCheck]:
    """Per series: measured (ms -> value) against the stored samples.  VictoriaMetrics keeps
    about 12 significant digits, so values are compared with a relative tolerance."""
    checks = []
    for series in sorted(set(expected) | set(stored)):
        want = expected.get(series, {})
        got = stored.get(series, [])
        counts = Counter(t for t, _ in got)
        values = dict(got)
        wrong = tuple(
            (*series, t, v, values[t])
            for t, v in sorted(want.items())
            if t in values and not math.isclose(values[t], v, rel_tol=1e-9, abs_tol=1e-9)
        )
        checks.append(
            SeriesCheck(
                series,
                lost=len(set(want) - set(counts)),
                extra=len(set(counts) - set(want)),
                examples=tuple(sorted(set(want) ^ set(counts))[:5]),
                duplicated=sum(c - 1 for c in counts.values()),
                wrong=wrong,
            )
        )
    return checks


@dataclass
class Accounting:
    n: int  # sequence numbers the agent allocated: 1..n
    first: dict[int, Delivery]  # seq -> its first delivery
    missing: list[int]  # allocated, never carried by the broker
    unknown: list[int]  # carried, never allocated
    changed: list[int]  # carried more than once with different content
    readings: int  # readings in the distinct messages
    samples: int  # distinct (series, sample time): what the database must hold
    conflicting: list[tuple[str, str, int]]  # one series and sample time with different values
    series: int
    checks: list[SeriesCheck]
    redelivered_after_kill: list[int]  # unacknowledged at the kill, carried before and after it

    @property
    def lost_rows(self) -> int:
        return sum(c.lost for c in self.checks)

    @property
    def duplicated_rows(self) -> int:
        return sum(c.duplicated for c in self.checks)


def account(run: Run) -> Accounting:
    n = run.final.next_seq - 1
    first = first_deliveries(run.deliveries)
    payloads: dict[int, set[bytes]] = defaultdict(set)
    copies: Counter[int] = Counter()
    for d in run.deliveries:
        payloads[d.seq].add(d.payload)
        copies[d.seq] += 1
    measured = measure(run.deliveries)
    return Accounting(
        n=n,
        first=first,
        missing=sorted(set(range(1, n + 1)) - set(first)),
        unknown=sorted(set(first) - set(range(1, n + 1))),
        changed=sorted(s for s, p in payloads.items() if len(p) > 1),
        readings=measured.readings,
        samples=measured.samples,
        conflicting=measured.conflicting,
        series=len(measured.q),
        checks=_compare(measured.q, run.store.q) + _compare(measured.value, run.store.value),
        redelivered_after_kill=[
            s for s in run.at_kill.unacked if s in run.delivered_before_kill and copies[s] > 1
        ],
    )


def figures(run: Run, acc: Accounting, wall_s: float) -> dict[str, Any]:
    c = run.consumer
    return {
        "messages": acc.n,
        "readings": acc.readings,
        "samples": acc.samples,
        "series": acc.series,
        "deliveries": len(run.deliveries),
        "outages": [{"name": o.name, "seconds": round(o.seconds, 1)} for o in run.outages],
        "lost": len(acc.missing) + c.lost + acc.lost_rows,
        "lost_at_broker": len(acc.missing),
        "lost_rows": acc.lost_rows,
        "duplicated_msgs": len(run.deliveries) - len(acc.first),
        "duplicated_rows": acc.duplicated_rows,
        "consumer": {
            "messages": c.messages,
            "lost": c.lost,
            "duplicated": c.duplicated,
            "reordered": c.reordered,
            "readings_accepted": c.readings_accepted,
            "rejected": c.rejected_by_reason,
            "write_errors": c.write_errors,
        },
        "agent_kill9": {
            "unacked_in_outbox": len(run.at_kill.unacked),
            "staged_readings": run.at_kill.staged,
            "carried_before_and_after": len(acc.redelivered_after_kill),
        },
        "store": {
            "visible_after_s": round(run.store.waited_s, 1),
            "lines_written_after_drain": run.lines_written_after_drain,
        },
        "uplink": asdict(run.link),
        "recorder_disconnects": run.recorder_disconnects,
        "wall_s": round(wall_s, 1),
    }


def write_deliveries(deliveries: list[Delivery], path: Path) -> None:
    """What the broker carried, one line per delivery, for the diagnosis of a failure."""
    with path.open("w", encoding="utf-8") as out:
        for d in deliveries:
            line = {"seq": d.seq, "arrived": d.arrived, "sent": d.sent, "readings": len(d.message.readings)}
            out.write(json.dumps(line) + "\n")


def summary_line(fig: dict[str, Any]) -> str:
    outages = ", ".join(
        f"{o['name']} {o['seconds']:.0f}s" if o["seconds"] else o["name"] for o in fig["outages"]
    )
    kill = fig["agent_kill9"]
    return (
        f"resilience: messages={fig['messages']} readings={fig['readings']} outages={outages}; "
        f"lost={fig['lost']} duplicated_msgs={fig['duplicated_msgs']} "
        f"duplicated_rows={fig['duplicated_rows']} (consumer duplicated={fig['consumer']['duplicated']}; "
        f"{kill['unacked_in_outbox']} messages unacknowledged at the agent's kill -9, "
        f"{kill['carried_before_and_after']} of them carried before and after it; {fig['wall_s']:.0f} s)"
    )


# --------------------------------------------------------------------------------------------
# The test


def test_edge_agent_loses_nothing(tmp_path: Path, victoria: VictoriaMetrics) -> None:
    began = time.monotonic()
    run = run_timeline(tmp_path, victoria)
    acc = account(run)
    fig = figures(run, acc, time.monotonic() - began)
    (tmp_path / "resilience.json").write_text(json.dumps(fig, indent=2), encoding="utf-8")
    write_deliveries(run.deliveries, tmp_path / "deliveries.jsonl")
    print(f"\n{summary_line(fig)}\nfigures: {tmp_path / 'resilience.json'}")
    where = run.diagnostics

    # The edge: after the clean stop everything it allocated was acknowledged...
    assert run.final.unacked == [] and run.final.staged == 0, f"left in the outbox: {run.final}\n{where}"
    # ...and the broker carried every allocated seq, each time with the same content.
    assert not run.undecodable, run.undecodable[:5]
    assert acc.missing == [], (
        f"seqs the agent allocated that never reached the broker: {acc.missing}\n{where}"
    )
    assert acc.unknown == [], f"seqs above the outbox's counter: {acc.unknown}"
    assert acc.changed == [], f"seqs carried twice with different content: {acc.changed}"
    assert acc.conflicting == [], f"one series and sample time with different values: {acc.conflicting[:5]}"
    assert acc.series == 11, "six devices, eleven series"
    # The cloud: every message and reading accepted, none lost.
    c = run.consumer
    assert c.lost == 0, c.summary()
    assert c.messages_rejected == 0 and c.readings_rejected == 0, c.rejected_by_reason
    assert c.write_errors == 0, c.summary()
    # The database: every sample exactly once, with its sample time and value.
    bad = [x for x in acc.checks if not x.ok]
    assert bad == [], f"stored rows differ from the measured ones: {bad}\n{where}"

    # Sanity: the outages really happened and hit what they were meant to hit.
    by_name = {o.name: o for o in run.outages}
    for name in ("broker-sigterm", "broker-kill9", "replay-outage"):
        o = by_name[name]
        held = [d for d in acc.first.values() if o.start + 0.5 < d.sent < o.end]
        assert len(held) >= 2, f"{name}: only {len(held)} messages sealed while the broker was down"
        assert all(d.arrived > o.end for d in held), name
    assert run.recorder_disconnects >= 3
    # Three broker outages, a blackhole and resets: the agent said so once each, paho never as an error.
    assert run.paho_errors == [], run.paho_errors[:5]
    # The agent died with messages on disk that the broker had not acknowledged.
    assert run.at_kill.unacked or run.at_kill.staged, f"the kill -9 found an empty outbox: {run.at_kill}"
    # The blackhole: nothing sealed during it got through before it ended, and all of it arrived.
    bh = by_name["blackhole"]
    held = [d for d in acc.first.values() if bh.start + 0.5 < d.sent < bh.end]
    through = [d.seq for d in held if d.arrived < bh.end - 0.5]
    assert len(held) >= 5 and through == [], f"through the blackhole: {through} of {len(held)}"
    assert run.link.held > 0
    # The reset: the agent's connection was cut, or its attempts refused, during the window.
    assert run.link.resets + run.link.refused >= 1, run.link
    assert any(d.arrived >= by_name["reset"].end for d in acc.first.values())
