"""Outbox replay benchmark: how fast a gateway empties its outbox after a long outage.

An outage of `--hours` at a site with `--sensors` sensors polled every `--interval` seconds,
batched once a second, leaves one message per second in the outbox.  The outbox is filled with
exactly those messages (real readings, real encoding, on disk with fsync), then the edge
publisher is started against a real Mosquitto with a subscriber that receives every message, and
the time until the outbox is empty and everything has arrived is measured.

Two runs in one invocation, same broker, same messages:

- `outbox`: the agent's publisher, durable (PUBACK -> delete in SQLite), with the replay rate
  unbounded (`--replay-rate`, default: no bound) so the figure is the capacity;
- `paho`: the floor, a bare paho loop publishing the same payloads at QoS 1 with the same
  in-flight window, no outbox.  The ratio is what durability costs.

The fill rate (staging and sealing the outage's readings one batch at a time, fsync each) is
reported too: it is what the gateway spends storing an outage's data as it happens.

    .venv/bin/python -m benchmarks.outbox_replay --hours 6

Progress goes to stderr; results to stdout as a Markdown table and one line of JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.agent import _RawTelemetry
from edge.outbox import DEFAULT_MAX_BYTES, Outbox
from edge.publisher import WINDOW, Publisher
from tests.servers import Mosquitto
from wire import topics
from wire.clock import RealClock
from wire.mqttconf import MqttConfig
from wire.telemetry import Reading, encode, utc_from_epoch

TENANT, GATEWAY = "demo-city", "gw-bench"
PAHO_QUEUE_AHEAD = 10_000
KINDS = ("river_level", "snow_depth", "tilt_x", "tilt_y", "air_temperature")


def progress(msg: str) -> None:
    print(f"[outbox_replay] {msg}", file=sys.stderr, flush=True)


class Counter:
    """Counts telemetry messages arriving at the broker's subscriber."""

    def __init__(self, broker: Mosquitto) -> None:
        self.count = 0
        self.last = 0.0
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-counter", protocol=mqtt.MQTTv5
        )
        ready = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: ready.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(topics.telemetry_filter(), qos=1)
        if not ready.wait(10):
            raise RuntimeError("subscriber not ready")

    def _on_message(self, _c: Any, _u: Any, _m: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.count += 1
            self.last = time.monotonic()

    def wait_for(self, n: int, timeout: float) -> float:
        """Monotonic time the n-th message arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.count >= n:
                    return self.last
            time.sleep(0.01)
        raise RuntimeError(f"only {self.count} of {n} messages arrived")

    def reset(self) -> None:
        with self._lock:
            self.count = 0

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def fill(box: Outbox, messages: int, sensors: int) -> tuple[float, int]:
    """One message per second of outage, each with one reading per sensor. Returns (s, readings)."""
    t0 = time.perf_counter()
    start = time.time() - messages
    readings = 0
    for i in range(messages):
        ts = utc_from_epoch(start + i)
        batch = [
            encode(Reading(f"sensor-{s:03d}", KINDS[s % len(KINDS)], ts, 1.0 + 0.001 * ((i + s) % 997), "m"))
            for s in range(sensors)
        ]
        box.stage(batch, urgent=False, created=start + i)
        sent = utc_from_epoch(start + i)

        def make(seq: int, rs: list[bytes], sent: dt.datetime = sent) -> bytes:
            return encode(
                _RawTelemetry(1, TENANT, GATEWAY, seq, sent, [msgspec.Raw(r) for r in rs], box.stream)
            )

        box.seal(make, max_readings=1000, max_bytes=200_000, created=start + i)
        readings += len(batch)
    return time.perf_counter() - t0, readings


def replay_outbox(
    broker: Mosquitto, box: Outbox, counter: Counter, rate: float, n: int, workdir: Path
) -> float:
    cfg = MqttConfig(url=broker.url, allow_insecure=True, client_id="bench-gw")

    async def main() -> float:
        pub = Publisher(
            cfg, TENANT, GATEWAY, box, RealClock(), config_path=workdir / "gw.yaml", replay_rate=rate
        )
        t0 = time.monotonic()
        pub.start()
        while box.depth and time.monotonic() - t0 < 3600:
            await asyncio.sleep(0.05)
        await pub.stop()
        return t0

    t0 = asyncio.run(main())
    return counter.wait_for(n, 60) - t0


def replay_paho(broker: Mosquitto, payloads: list[bytes], counter: Counter) -> float:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(WINDOW)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    if not connected.wait(10):
        raise RuntimeError("paho did not connect")
    topic = topics.telemetry(TENANT, GATEWAY)
    t0 = time.monotonic()
    # Queue ahead freely, but not past paho's 16-bit message ids (a reused id is refused).
    pending: deque[mqtt.MQTTMessageInfo] = deque()
    for p in payloads:
        pending.append(client.publish(topic, p, qos=1))
        while len(pending) > PAHO_QUEUE_AHEAD:
            pending.popleft().wait_for_publish(60)
    for info in pending:
        info.wait_for_publish(60)
    elapsed = counter.wait_for(len(payloads), 60) - t0
    client.loop_stop()
    client.disconnect()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.outbox_replay",
        description="Outbox replay after an outage: the agent's durable publisher against a bare paho loop.",
    )
    parser.add_argument("--hours", type=float, default=6.0, help="outage length; one message per second (6)")
    parser.add_argument("--sensors", type=int, default=8, help="readings per message (8)")
    parser.add_argument("--replay-rate", type=float, default=1e9, help="publisher's bound, messages/s (none)")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where the outbox file goes (a temp dir on disk)"
    )
    args = parser.parse_args(argv)
    messages = int(args.hours * 3600)
    with tempfile.TemporaryDirectory(prefix="bench-replay-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        box = Outbox(workdir / "outbox.sqlite", max_messages=messages + 1, max_bytes=DEFAULT_MAX_BYTES * 8)
        progress(f"filling the outbox with {messages} messages ({args.hours:g} h at 1 message/s)")
        fill_s, readings = fill(box, messages, args.sensors)
        size = box.size_bytes
        payloads = [p for _, p in box.after(0, messages)]
        progress(f"filled in {fill_s:.1f} s ({messages / fill_s:.0f} messages/s), {size / 1e6:.1f} MB")
        with Mosquitto(workdir / "mosquitto") as broker:
            counter = Counter(broker)
            try:
                progress("replaying through the edge publisher (outbox, PUBACK -> delete)")
                outbox_s = replay_outbox(broker, box, counter, args.replay_rate, messages, workdir)
                progress(f"outbox: {outbox_s:.1f} s")
                counter.reset()
                progress("publishing the same payloads with a bare paho loop (no outbox)")
                paho_s = replay_paho(broker, payloads, counter)
                progress(f"paho: {paho_s:.1f} s")
            finally:
                counter.close()
        box.close()
    result = {
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "outage_h": args.hours,
        "messages": messages,
        "readings": readings,
        "outbox_mb": round(size / 1e6, 2),
        "fill_msgs_per_s": round(messages / fill_s),
        "outbox_msgs_per_s": round(messages / outbox_s),
        "outbox_readings_per_s": round(readings / outbox_s),
        "paho_msgs_per_s": round(messages / paho_s),
        "outbox_vs_paho": round(paho_s / outbox_s, 2),
        "outage_h_replayed_per_min": round(messages / outbox_s * 60 / 3600, 1),
    }
    columns = [
        ("messages", "messages"),
        ("readings", "readings"),
        ("outbox MB", "outbox_mb"),
        ("fill msg/s", "fill_msgs_per_s"),
        ("replay msg/s", "outbox_msgs_per_s"),
        ("readings/s", "outbox_readings_per_s"),
        ("bare paho msg/s", "paho_msgs_per_s"),
        ("outbox / paho", "outbox_vs_paho"),
    ]
    print("| " + " | ".join(name for name, _ in columns) + " |")
    print("|" + "---:|" * len(columns))
    print("| " + " | ".join(str(result[key]) for _, key in columns) + " |")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
