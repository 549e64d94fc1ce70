"""Load generator for the ingest benchmark: a registry of G gateways x S sensors and their telemetry.

Everything is deterministic, so the point set a subject must store is known exactly from how many
messages of each gateway the broker accepted:

- gateway g (`gw-0001` ...) has S river level sensors (`gw-0001-rl01` ...) at its own site, one
  tenant (`bench-city`);
- a gateway's readings form one stream: reading k (0, 1, 2, ...) is of sensor k % S at sample
  number n = k // S, time t0 + n * interval, value `level(g, s, n)`;
- message seq (from 1) carries readings (seq - 1) * R ... seq * R - 1, with the gateway's `stream`
  id, so the consumer's sequence accounting sees a clean, gap-free stream.

The payloads are encoded up front (wire.telemetry.encode) by each publisher process for its own
slice of the gateways, so publishing costs no encoding time.  Publishers (paho-mqtt 2.x, MQTT 5,
QoS 1) go as fast as the broker takes it, or at `rate` messages/s, and stop at `stop`; each says how
many messages of each gateway the broker acknowledged.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import multiprocessing.synchronize as mps
import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from wire import topics
from wire.telemetry import Reading, Telemetry, encode

TENANT = "bench-city"
KIND, UNIT = "river_level", "m"
LEVEL_MEAN, LEVEL_AMPLITUDE, LEVEL_PERIOD = 1.5, 0.05, 600  # metres; samples per cycle
DECIMALS = 4  # values a store keeps exactly (VictoriaMetrics keeps about 12 significant digits)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ACK_TIMEOUT = 60.0  # seconds a publisher waits for the broker's PUBACKs before failing the run


@dataclass(frozen=True)
class LoadSpec:
    gateways: int
    sensors: int  # per gateway
    readings: int = 10  # per message
    interval_ms: int = 60_000  # between two samples of one sensor
    t0_ms: int = 0  # sample time of every sensor's first sample (ms since the epoch)
    # `sent` of every message (ms since the epoch); 0: a second after its newest reading.  The
    # consumer takes `sent` as the gateway's sign of life, so a run whose samples lie in the past
    # (a backlog, as after an outage) sets it to the time of the run.
    sent_ms: int = 0

    def __post_init__(self) -> None:
        if min(self.gateways, self.sensors, self.readings, self.interval_ms) < 1:
            raise ValueError(f"gateways, sensors, readings and interval must be positive: {self}")


def gateway_id(g: int) -> str:
    return f"gw-{g + 1:04d}"


def sensor_id(g: int, s: int) -> str:
    return f"{gateway_id(g)}-rl{s + 1:02d}"


def site_id(g: int) -> str:
    return f"site-{g + 1:04d}"


def stream_id(g: int) -> str:
    return f"{g + 1:x}"


def site_name(g: int) -> str:
    return f"bench river {g + 1}"


def sensor_name(g: int, s: int) -> str:
    return f"level gauge {s + 1} of gateway {g + 1}"


def level(g: int, s: int, n: int) -> float:
    """Sample n of sensor s of gateway g: a slow wave well below the first threshold, so detection
    runs on every sample (quality checks, rate, forecast) without raising alerts."""
    phase = (g * 7 + s * 13) % LEVEL_PERIOD
    x = LEVEL_MEAN + LEVEL_AMPLITUDE * math.sin(2 * math.pi * (n + phase) / LEVEL_PERIOD)
    return round(x, DECIMALS)


def registry_document(spec: LoadSpec) -> dict[str, Any]:
    """The registry (cloud/registry.py schema): river level channels configured as in the demo
    registry, except that silence is never alerted (`stale_after_s: null`): the benchmark's sample
    times lie in the past, and the benchmark measures ingest, not a flood of maintenance alerts."""
    channel = {
        "unit": UNIT,
        "range": [-2.0, 30.0],
        "direction": "rising",
        "clear_margin": 0.10,
        "rate": {"unit": "m/h", "window_s": 1800},
        "forecast": {"window_s": 3600, "horizon_s": 21600},
        "quality": {"min_scale": 0.01, "max_rate_per_h": 10.0, "flatline_s": 1800},
        "stale_after_s": None,
        "thresholds": [
            {"level": 1, "value": 2.00, "name": "standby"},
            {"level": 2, "value": 2.60, "name": "flood caution"},
            {"level": 3, "value": 3.20, "name": "evacuation judgement"},
            {"level": 4, "value": 3.80, "name": "flood danger"},
            {"level": 5, "value": 4.60, "name": "overflow"},
        ],
    }
    g_range = range(spec.gateways)
    return {
        "tenants": [{"id": TENANT, "name": "ingest benchmark"}],
        "sites": [
            {"id": site_id(g), "tenant": TENANT, "name": site_name(g), "type": "river"} for g in g_range
        ],
        # Offline only after a day of silence: a run's messages carry its start as `sent`.
        "gateways": [
            {
                "id": gateway_id(g),
                "tenant": TENANT,
                "name": f"bench gateway {g + 1}",
                "offline_after_s": 86400,
            }
            for g in g_range
        ],
        "sensors": [
            {
                "id": sensor_id(g, s),
                "tenant": TENANT,
                "gateway": gateway_id(g),
                "site": site_id(g),
                "name": sensor_name(g, s),
                "channels": {KIND: channel},
            }
            for g in g_range
            for s in range(spec.sensors)
        ],
    }


def write_registry(spec: LoadSpec, path: Path) -> Path:
    path.write_text(yaml.safe_dump(registry_document(spec), sort_keys=False), encoding="utf-8")
    return path


def sample_time_ms(spec: LoadSpec, n: int) -> int:
    return spec.t0_ms + n * spec.interval_ms


def samples_of(spec: LoadSpec, messages: int, s: int) -> int:
    """How many samples of sensor s the first `messages` messages of its gateway carry."""
    total = messages * spec.readings
    return max(0, (total - s + spec.sensors - 1) // spec.sensors)


def span_ms(spec: LoadSpec, messages: int) -> int:
    """From the first to the last sample time of `messages` messages per gateway."""
    return max(0, samples_of(spec, messages, 0) - 1) * spec.interval_ms


def telemetry(spec: LoadSpec, g: int, seq: int) -> Telemetry:
    readings: list[Reading] = []
    for k in range((seq - 1) * spec.readings, seq * spec.readings):
        s, n = k % spec.sensors, k // spec.sensors
        ts = _EPOCH + timedelta(milliseconds=sample_time_ms(spec, n))
        readings.append(Reading(sensor_id(g, s), KIND, ts, level(g, s, n), UNIT))
    sent = (
        _EPOCH + timedelta(milliseconds=spec.sent_ms)
        if spec.sent_ms
        else readings[-1].ts + timedelta(seconds=1)
    )
    return Telemetry(1, TENANT, gateway_id(g), seq, sent, readings, stream_id(g))


def payload(spec: LoadSpec, g: int, seq: int) -> bytes:
    return encode(telemetry(spec, g, seq))


def topic(g: int) -> str:
    return topics.telemetry(TENANT, gateway_id(g))


def publisher_gateways(gateways: int, publishers: int, index: int) -> list[int]:
    """The gateways publisher `index` owns (every `publishers`-th one)."""
    return list(range(index, gateways, publishers))


def schedule(spec: LoadSpec, gateways: Sequence[int], per_gateway: int) -> Iterator[tuple[int, int]]:
    """(gateway, seq) in publishing order: round-robin over the gateways, so every gateway's stream
    advances together, and any prefix holds a prefix of each gateway's sequence."""
    for seq in range(1, per_gateway + 1):
        for g in gateways:
            yield g, seq


def counts_after(gateways: Sequence[int], published: int) -> dict[int, int]:
    """Messages of each gateway in the first `published` messages of `schedule`."""
    q = len(gateways)
    return {g: (published - i + q - 1) // q if published > i else 0 for i, g in enumerate(gateways)}


@dataclass(frozen=True)
class SeriesExpectation:
    """What the store must hold for one sensor: samples n = 0 .. count-1."""

    gateway: int
    sensor: int
    count: int

    @property
    def id(self) -> str:
        return sensor_id(self.gateway, self.sensor)

    def value(self, n: int) -> float:
        return level(self.gateway, self.sensor, n)

    def tags(self) -> dict[str, str]:
        """The tags of cloud.points.reading_line for this sensor."""
        g = self.gateway
        return {
            "tenant": TENANT,
            "site": site_id(g),
            "site_name": site_name(g),
            "gateway": gateway_id(g),
            "sensor": self.id,
            "sensor_name": sensor_name(g, self.sensor),
            "kind": KIND,
            "unit": UNIT,
        }


def expected_series(spec: LoadSpec, messages: Mapping[int, int]) -> dict[str, SeriesExpectation]:
    """Per sensor id, the samples that `messages` (gateway -> messages acknowledged) put in the store."""
    out: dict[str, SeriesExpectation] = {}
    for g, m in messages.items():
        for s in range(spec.sensors):
            e = SeriesExpectation(g, s, samples_of(spec, m, s))
            if e.count:
                out[e.id] = e
    return out


def expected_points(spec: LoadSpec, messages: Mapping[int, int]) -> Iterator[tuple[str, int, float]]:
    """Every (sensor id, time ms, value) the store must hold once; for small sets (tests)."""
    for e in expected_series(spec, messages).values():
        for n in range(e.count):
            yield e.id, sample_time_ms(spec, n), e.value(n)


# -- publishing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublisherJob:
    index: int
    spec: LoadSpec
    publishers: int
    per_gateway: int  # messages prepared for each gateway (the most it can publish)
    host: str
    port: int
    rate: float | None  # this publisher's messages/s; None: as fast as the broker takes them
    inflight: int  # QoS 1 messages awaiting PUBACK at once


@dataclass(frozen=True)
class PublisherResult:
    index: int
    published: int  # acknowledged by the broker
    counts: dict[int, int]  # gateway -> messages acknowledged (a prefix of its sequence)
    first: float  # epoch seconds of the first and the last publish
    last: float
    exhausted: bool  # ran out of prepared messages before `stop`
    error: str | None = None


@dataclass
class PublisherControl:
    """Shared with the publisher processes: go, pause (broker backlog too deep), stop, progress."""

    ready: mps.Semaphore
    go: mps.Event
    pause: mps.Event
    stop: mps.Event
    published: Any  # multiprocessing Array of 'q', one per publisher
    results: mp.Queue[PublisherResult]

    @classmethod
    def create(cls, ctx: Any, publishers: int) -> PublisherControl:
        return cls(
            ctx.Semaphore(0),
            ctx.Event(),
            ctx.Event(),
            ctx.Event(),
            # No lock: each publisher writes only its own slot, and aligned 8-byte writes are whole.
            ctx.Array("q", publishers, lock=False),
            ctx.Queue(),
        )


def run_publisher(job: PublisherJob, control: PublisherControl) -> None:
    """Process body: encode the slice, connect, then publish from `go` until `stop` or done."""
    gateways = publisher_gateways(job.spec.gateways, job.publishers, job.index)
    prepared = [
        (topic(g), payload(job.spec, g, seq)) for g, seq in schedule(job.spec, gateways, job.per_gateway)
    ]
    try:
        result = _publish(job, control, gateways, prepared)
    except Exception as exc:  # reported to the runner, which fails the run with it
        result = PublisherResult(job.index, 0, {}, 0.0, 0.0, False, f"{type(exc).__name__}: {exc}")
        control.ready.release()
    control.results.put(result)


def _publish(
    job: PublisherJob, control: PublisherControl, gateways: list[int], prepared: list[tuple[str, bytes]]
) -> PublisherResult:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    window = threading.BoundedSemaphore(job.inflight)
    acked = [0]
    lock = threading.Lock()

    def on_publish(_c: Any, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        with lock:
            acked[0] += 1
        window.release()

    connected = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-publisher-{job.index}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(job.inflight)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    refused: list[str] = []

    def on_connect(_c: Any, _u: Any, _flags: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            refused.append(str(rc))
        connected.set()

    client.on_connect = on_connect
    client.connect(job.host, job.port, keepalive=60)
    client.loop_start()
    try:
        if not connected.wait(30):
            raise RuntimeError(f"publisher {job.index}: no CONNACK from {job.host}:{job.port}")
        if refused:
            raise RuntimeError(f"publisher {job.index}: the broker refused the connection: {refused[0]}")
        control.ready.release()
        control.go.wait()
        first = time.time()
        start = time.monotonic()
        sent = 0
        for t, body in prepared:
            if control.stop.is_set():
                break
            while control.pause.is_set() and not control.stop.is_set():
                time.sleep(0.01)
            if job.rate is not None:
                due = start + sent / job.rate
                delay = due - time.monotonic()
                if delay > 0 and control.stop.wait(delay):  # a slow rate must not delay the stop
                    break
            if not window.acquire(timeout=ACK_TIMEOUT):
                raise RuntimeError(f"publisher {job.index}: no PUBACK for {ACK_TIMEOUT:.0f} s")
            info = client.publish(t, body, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise RuntimeError(f"publisher {job.index}: publish failed: {mqtt.error_string(info.rc)}")
            sent += 1
            control.published[job.index] = sent
        last = time.time()
        exhausted = sent == len(prepared)
        # Every message handed to paho must be acknowledged, or the expected set would be wrong.
        deadline = time.monotonic() + ACK_TIMEOUT
        while acked[0] < sent:
            if time.monotonic() > deadline:
                raise RuntimeError(f"publisher {job.index}: {sent - acked[0]} messages never acknowledged")
            time.sleep(0.01)
        control.published[job.index] = sent
    finally:
        client.disconnect()
        client.loop_stop()
    return PublisherResult(job.index, sent, counts_after(gateways, sent), first, last, exhausted)


class Publishers:
    """P publisher processes over one broker; `start()` waits until all are encoded and connected."""

    def __init__(self, jobs: Sequence[PublisherJob]) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter: nothing of the runner's threads
        self.jobs = list(jobs)
        self.control = PublisherControl.create(ctx, len(self.jobs))
        self._procs = [
            ctx.Process(
                target=run_publisher, args=(job, self.control), name=f"publisher-{job.index}", daemon=True
            )
            for job in self.jobs
        ]

    def start(self, timeout: float) -> None:
        for p in self._procs:
            p.start()
        deadline = time.monotonic() + timeout
        for _ in self._procs:
            if not self.control.ready.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"publishers not ready (encoded and connected) after {timeout:.0f} s")

    def go(self) -> None:
        self.control.go.set()

    def published(self) -> int:
        return sum(self.control.published[:])

    def stop(self, timeout: float = 120.0) -> list[PublisherResult]:
        self.control.stop.set()
        self.control.go.set()
        results: list[PublisherResult] = []
        deadline = time.monotonic() + timeout
        try:
            for _ in self._procs:
                results.append(self.control.results.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            raise RuntimeError(f"only {len(results)} of {len(self._procs)} publishers reported") from None
        finally:
            for p in self._procs:
                p.join(5)
                if p.is_alive():
                    p.kill()
        return sorted(results, key=lambda r: r.index)
