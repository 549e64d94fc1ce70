"""The simulated cellular uplink (simulators/uplink.py) between a real paho MQTT 5 client and a
real Mosquitto, in compressed time.

The gateway client connects through the proxy; a consumer connects to the broker directly and
sees what got through.  Windows are a second or three of wall time (SPEED scenario seconds per
wall second); MQTT keepalives are wall seconds, since paho and Mosquitto run on real time.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulators.uplink import LinkWindow, UplinkProxy
from tests.servers import Mosquitto
from wire.clock import ScaledClock

pytestmark = pytest.mark.integration

SPEED = 600.0  # scenario seconds per wall second
TIMEOUT = 5.0  # wall seconds
T = TypeVar("T")

TELEMETRY = "bosai/v1/demo-city/gw01/telemetry"
STATUS = "bosai/v1/demo-city/gw01/status"
# MQTT 3.1.1 by hand, for exact byte counts: CONNECT (client id "raw", clean, keepalive 60 s),
# its CONNACK, PINGREQ and PINGRESP.
CONNECT = b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03raw"
CONNACK = b"\x20\x02\x00\x00"
PINGREQ, PINGRESP = b"\xc0\x00", b"\xd0\x00"


def wall(start: float, end: float, mode: str = "blackhole") -> LinkWindow:
    """A window given in wall seconds after the clock's start."""
    assert mode in ("blackhole", "reset")
    return LinkWindow(start * SPEED, end * SPEED, "reset" if mode == "reset" else "blackhole")


@dataclass
class Link:
    proxy: UplinkProxy
    clock: ScaledClock
    host: str
    port: int

    def now(self) -> float:
        """Scenario seconds since the clock's start."""
        return self.clock.elapsed()

    def wait_until(self, t: float) -> None:
        time.sleep(max(0.0, (t - self.now()) / SPEED))

    def wall_until(self, t: float) -> float:
        return max(0.0, (t - self.now()) / SPEED)


class LoopThread:
    """An asyncio loop in a thread of its own, so the test body can block on paho."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


@contextmanager
def uplink(broker: Mosquitto, windows: list[LinkWindow], **kwargs: Any) -> Iterator[Link]:
    clock = ScaledClock(time.time(), SPEED)
    proxy = UplinkProxy((broker.host, broker.port), windows, clock, clock.elapsed, **kwargs)
    loop = LoopThread()
    try:
        host, port = loop.run(proxy.start())
        yield Link(proxy, clock, host, port)
    finally:
        loop.run(proxy.close())
        loop.stop()


class Client:
    """A paho MQTT 5 client; connects and disconnects are queued with their scenario time."""

    def __init__(
        self,
        client_id: str,
        host: str,
        port: int,
        now: Callable[[], float],
        *,
        keepalive: int = 30,
        will: bool = False,
    ) -> None:
        self.paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.paho.reconnect_delay_set(1, 1)
        if will:
            self.paho.will_set(STATUS, b'{"state": "offline"}', qos=1)
        self.now = now
        self.events: queue.Queue[tuple[str, float]] = queue.Queue()
        self.messages: queue.Queue[tuple[mqtt.MQTTMessage, float]] = queue.Queue()
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = lambda *_: self.events.put(("disconnect", self.now()))
        self.paho.on_message = lambda _c, _u, msg: self.messages.put((msg, self.now()))
        self._subscribed = threading.Event()
        self.paho.on_subscribe = lambda *_: self._subscribed.set()
        self.paho.connect_async(host, port, keepalive=keepalive)
        # paho's loop_start() checks the keepalive once a second; a tighter loop makes a 1 s
        # keepalive give up in about 2 s, so the windows can stay short.
        self._thread = threading.Thread(
            target=self.paho.loop_forever, kwargs={"timeout": 0.05, "retry_first_connection": True}
        )
        self._thread.start()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            self.events.put(("connect", self.now()))

    def next_event(self, timeout: float = TIMEOUT) -> tuple[str, float]:
        return self.events.get(timeout=timeout)

    def wait_connected(self) -> float:
        kind, t = self.next_event()
        assert kind == "connect"
        return t

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.paho.subscribe(topic, qos=1)
        assert self._subscribed.wait(TIMEOUT), "no SUBACK"

    def receive(self, timeout: float = TIMEOUT) -> tuple[mqtt.MQTTMessage, float]:
        return self.messages.get(timeout=timeout)

    def stop(self) -> None:
        self.paho.disconnect()
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive()


@contextmanager
def clients(*made: Client) -> Iterator[None]:
    try:
        yield
    finally:
        for c in made:
            c.stop()


def test_windows_are_validated_and_link_up_follows_scenario_time() -> None:
    with pytest.raises(ValueError, match="end after"):
        LinkWindow(10, 10)
    with pytest.raises(ValueError, match="overlap"):
        UplinkProxy(("127.0.0.1", 1), [LinkWindow(0, 10), LinkWindow(5, 20)], ScaledClock(0, 1), float)
    now = 0.0
    proxy = UplinkProxy(
        ("127.0.0.1", 1), [LinkWindow(20, 30, "reset"), LinkWindow(10, 20)], ScaledClock(0, 1), lambda: now
    )
    states = []
    for now in (0, 9.9, 10, 19.9, 20, 29.9, 30):
        window = proxy.window_at(now)
        states.append((proxy.link_up(), window.mode if window else None))
    assert states == [
        (True, None),
        (True, None),
        (False, "blackhole"),
        (False, "blackhole"),
        (False, "reset"),
        (False, "reset"),
        (True, None),
    ]


def test_messages_pass_both_ways_while_the_link_is_up(mosquitto: Mosquitto) -> None:
    with uplink(mosquitto, [wall(60, 61)]) as link:
        consumer = Client("consumer", mosquitto.host, mosquitto.port, link.now)
        gw = Client("gw01", link.host, link.port, link.now)
        with clients(consumer, gw):
            consumer.wait_connected()
            gw.wait_connected()
            consumer.subscribe("bosai/#")
            gw.subscribe("bosai/v1/demo-city/gw01/cmd")

            info = gw.paho.publish(TELEMETRY, b'{"seq": 1}', qos=1)
            info.wait_for_publish(TIMEOUT)
            msg, _ = consumer.receive()
            assert (msg.topic, msg.payload) == (TELEMETRY, b'{"seq": 1}')

            consumer.paho.publish("bosai/v1/demo-city/gw01/cmd", b"ping", qos=1)
            msg, _ = gw.receive()
            assert msg.payload == b"ping"
            assert link.proxy.link_up()
            stats = link.proxy.stats
            assert stats.connections == 1
            assert stats.bytes_up > len(b'{"seq": 1}') + len(TELEMETRY)
            assert stats.bytes_down > len(b"ping")
            assert (stats.held, stats.dropped, stats.resets, stats.refused) == (0, 0, 0, 0)


def test_blackhole_holds_bytes_of_open_and_new_connections(mosquitto: Mosquitto) -> None:
    window = wall(0.5, 1.5)
    with uplink(mosquitto, [window]) as link:
        stats = link.proxy.stats
        link.wait_until(window.start)
        assert not link.proxy.link_up()
        # A connection made during the window is accepted but reaches nobody until it ends.
        with socket.create_connection((link.host, link.port), timeout=TIMEOUT) as sock:
            sock.sendall(CONNECT)
            sock.settimeout(link.wall_until(window.end) - 0.2)
            with pytest.raises(TimeoutError):
                sock.recv(100)
            assert (stats.connections, stats.bytes_up, stats.bytes_down) == (1, 0, 0)
            assert stats.held == len(CONNECT)

            sock.settimeout(TIMEOUT)
            assert sock.recv(100) == CONNACK
            assert link.now() >= window.end
            sock.sendall(PINGREQ)
            assert sock.recv(100) == PINGRESP
        assert stats.bytes_up == len(CONNECT) + len(PINGREQ)
        assert stats.bytes_down == len(CONNACK) + len(PINGRESP)
        assert (stats.held, stats.dropped, stats.overflows) == (len(CONNECT), 0, 0)


def test_blackhole_shorter_than_keepalive_only_delays_a_qos1_message(mosquitto: Mosquitto) -> None:
    window = wall(1.0, 2.5)
    with uplink(mosquitto, [window]) as link:
        consumer = Client("consumer", mosquitto.host, mosquitto.port, link.now)
        gw = Client("gw01", link.host, link.port, link.now, keepalive=30, will=True)
        with clients(consumer, gw):
            consumer.wait_connected()
            consumer.subscribe("bosai/#")
            assert gw.wait_connected() < window.start

            link.wait_until(window.start)
            info = gw.paho.publish(TELEMETRY, b'{"seq": 7}', qos=1)
            with pytest.raises(queue.Empty):
                consumer.receive(timeout=link.wall_until(window.end) - 0.1)
            assert not info.is_published()

            msg, t = consumer.receive()
            assert (msg.topic, msg.payload) == (TELEMETRY, b'{"seq": 7}')  # not the will
            assert t >= window.end
            info.wait_for_publish(TIMEOUT)  # the PUBACK came back through the same connection
            assert info.is_published()
            assert gw.events.empty(), "the connection survived the window"
            stats = link.proxy.stats
            assert stats.connections == 1
            assert stats.held >= len(TELEMETRY) + len(b'{"seq": 7}')
            assert stats.dropped == 0


def test_blackhole_longer_than_keepalive_drops_the_connection(mosquitto: Mosquitto) -> None:
    window = wall(1.0, 4.0)
    with uplink(mosquitto, [window]) as link:
        consumer = Client("consumer", mosquitto.host, mosquitto.port, link.now)
        gw = Client("gw01", link.host, link.port, link.now, keepalive=1)
        with clients(consumer, gw):
            consumer.wait_connected()
            consumer.subscribe(TELEMETRY)
            assert gw.wait_connected() < window.start

            link.wait_until(window.start)
            gw.paho.publish(TELEMETRY, b'{"seq": 8}', qos=1)
            kind, t = gw.next_event()  # paho's keepalive gives up: no PINGRESP within 1 s
            assert kind == "disconnect"
            assert window.start <= t < window.end
            # Its reconnects are accepted but held; the first to get through does after the window.
            while (event := gw.next_event())[0] != "connect":
                pass
            assert event[1] >= window.end
            # Held in the abandoned connection (delivered before its close when the link returns,
            # unless the broker gave up on it first) and resent by paho after the new CONNACK:
            # at least once, never before the window ends.
            msg, t = consumer.receive()
            assert msg.payload == b'{"seq": 8}'
            assert t >= window.end
            stats = link.proxy.stats
            assert stats.connections >= 2
            assert stats.held > len(TELEMETRY)
            assert (stats.resets, stats.refused, stats.overflows) == (0, 0, 0)


def test_reset_closes_connections_at_the_window_start_and_refuses_new_ones(mosquitto: Mosquitto) -> None:
    window = wall(1.0, 2.6, "reset")
    with uplink(mosquitto, [window]) as link:
        consumer = Client("consumer", mosquitto.host, mosquitto.port, link.now)
        gw = Client("gw01", link.host, link.port, link.now, keepalive=30, will=True)
        with clients(consumer, gw):
            consumer.wait_connected()
            consumer.subscribe(STATUS)
            assert gw.wait_connected() < window.start

            kind, t = gw.next_event()
            assert kind == "disconnect"
            assert window.start <= t < window.start + 0.5 * SPEED
            # The broker was reset too, so it publishes the will at once, not after a keepalive.
            msg, t = consumer.receive()
            assert msg.payload == b'{"state": "offline"}'
            assert t < window.end

            while (event := gw.next_event())[0] != "connect":
                pass
            assert event[1] >= window.end
            stats = link.proxy.stats
            assert stats.resets == 1
            assert stats.refused >= 1  # paho retried once a second during the window
            assert stats.connections == 2 + stats.refused
            assert stats.held == 0


def test_a_connection_holding_too_much_is_reset(mosquitto: Mosquitto) -> None:
    window = wall(0.5, 1.5)
    with uplink(mosquitto, [window], max_held=1000) as link:
        with socket.create_connection((link.host, link.port), timeout=TIMEOUT) as sock:
            sock.sendall(CONNECT)
            assert sock.recv(100) == CONNACK
            link.wait_until(window.start)
            sock.sendall(b"\x00" * 2000)
            with suppress(ConnectionResetError):  # RST, or FIN if the RST lost the race
                assert sock.recv(100) == b""
        stats = link.proxy.stats
        assert link.now() < window.end
        assert stats.overflows == 1
        assert 1000 < stats.held == stats.dropped <= 2000
