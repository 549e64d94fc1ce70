"""Edge agent benchmark: CPU and memory of the real agent polling 32 sensors at 1 Hz.

Everything that runs is real, nothing is stubbed:

- Mosquitto (tests.servers.Mosquitto) on a free loopback port;
- 32 simulated sensors speaking the real protocols (simulators.runner.SimulatorSet), served
  from a thread of this process with its own event loop: 16 radar level sensors behind a
  Modbus TCP converter, and 8 pressure level transmitters plus 8 inclinometers sharing one
  Modbus RTU bus (a pseudo-terminal);
- the agent as a subprocess, `python -m bosai edge run --config GW.yaml`, every sensor at
  `interval: 1.0` and one message per second (`publish.batch_interval: 1.0`);
- an MQTT subscriber in this process that decodes every telemetry message.

Only the agent process is measured.  After a warm-up, its CPU time (utime + stime from
/proc/PID/stat) is taken over the window, and its resident memory (VmRSS every second, VmHWM
at the end).  The simulators and the subscriber run in this process, so their CPU is not counted.
Readings are counted from what reached the broker, by sample time inside the window.  So
"polls/s" is what the agent really took, not what it was configured to take.

The floor is the same 32 slaves read at 1 Hz by a bare pymodbus loop in a subprocess (no
decoding, no outbox, no MQTT), measured the same way.  The agent's figures against the floor
are the cost of everything the agent adds to the protocol library.

    .venv/bin/python -m benchmarks.edge_agent --duration 60

Progress goes to stderr; the results go to stdout as a Markdown table and one line of JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from benchmarks.ingest import usage
from bosai.paths import PROFILES_DIR, REPO_ROOT

# The floor worker is this module run as a subprocess, and its RSS must be that of a bare
# pymodbus loop, not of the harness: so the harness's imports (simulators, paho, the test
# servers, the wire contract) are made inside the functions that use them.
if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from simulators.runner import Endpoints
    from tests.servers import Mosquitto
    from wire.telemetry import Telemetry

TENANT, GATEWAY = "demo-city", "bench-gw"
TCP_BUS, RTU_BUS = "plc-tcp", "rs485-1"
INTERVAL = 1.0  # seconds between polls of each sensor, and between telemetry messages
# A real RS-485 bus cannot serve 16 slaves a second at the config defaults (9600 baud, 50 ms
# pause): a request and its answer take about 25 ms on the wire at 9600 baud, so 16 x 75 ms
# is over a second.  At 19200 baud with a 20 ms pause the cycle takes about half a second.  A pty
# has no baud rate, so these settings only make the agent's pauses match a bus that can keep up.
RTU_BAUDRATE = 19200
RTU_PAUSE = 0.02
AGENT_LOG_LEVEL = "WARNING"  # a failing sensor is logged; routine INFO lines are not
FIRST_MESSAGE_TIMEOUT = 60.0  # wall seconds for the agent to start and publish (slow, loaded box)
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Device:
    """One simulated sensor: the gateway config's sensor entry and the scenario's device."""

    id: str
    profile: str
    bus: str
    unit_id: int
    points: tuple[dict[str, Any], ...]  # the scenario's feed for each point of the profile
    # What a bare loop reads for this profile: (function, first register, count), the same single
    # request the agent's read planner makes.
    floor_read: tuple[str, int, int]


RADAR = ({"kind": "river_level", "signal": "river", "noise": 0.005},)
PRESSURE = ({"kind": "river_level", "signal": "river", "noise": 0.01},)
INCLINOMETER = (
    {"kind": "tilt_x", "signal": "tilt_x", "noise": 0.002},
    {"kind": "tilt_y", "signal": "tilt_y", "noise": 0.002},
    {"kind": "sensor_temperature", "signal": "enclosure_temp", "noise": 0.05},
)


def devices() -> list[Device]:
    """16 radar sensors on the TCP bus; 8 pressure transmitters and 8 inclinometers on RTU."""
    out = [
        Device(f"river-radar-{u:02d}", "radar-level-rl", TCP_BUS, u, RADAR, ("holding", 0, 2))
        for u in range(1, 17)
    ]
    out += [
        Device(f"river-pt-{u:02d}", "pressure-level-pt", RTU_BUS, u, PRESSURE, ("holding", 3, 2))
        for u in range(1, 9)
    ]
    out += [
        Device(f"slope-incl-{u:02d}", "inclinometer-modbus-im", RTU_BUS, u, INCLINOMETER, ("input", 0, 4))
        for u in range(9, 17)
    ]
    return out


def write_scenario(path: Path, seconds: float) -> Path:
    """A quiet world (nothing crosses a threshold) that lasts `seconds`, served by devices()."""
    scenario = {
        "name": "bench-32-sensors",
        "description": "32 Modbus sensors on two buses for the edge agent benchmark",
        "duration": seconds,
        "seed": 1,
        "buses": [{"id": TCP_BUS, "type": "modbus_tcp"}, {"id": RTU_BUS, "type": "modbus_rtu"}],
        "signals": [
            {"id": "river", "model": "constant", "value": 1.5, "unit": "m"},
            {"id": "tilt_x", "model": "constant", "value": 0.02, "unit": "deg"},
            {"id": "tilt_y", "model": "constant", "value": -0.01, "unit": "deg"},
            {"id": "enclosure_temp", "model": "diurnal", "mean": -1.0, "amplitude": 0.5},
        ],
        "devices": [
            {"id": d.id, "profile": d.profile, "bus": d.bus, "unit_id": d.unit_id, "points": list(d.points)}
            for d in devices()
        ],
    }
    path.write_text(yaml.safe_dump(scenario, sort_keys=False), encoding="utf-8")
    return path


def write_gateway(path: Path, endpoints: Endpoints, broker_url: str) -> Path:
    """The agent's config, written from edge/config.py's schema, pointed at the simulators."""
    host, port = endpoints.modbus_tcp[TCP_BUS]
    gateway = {
        "tenant": TENANT,
        "gateway": GATEWAY,
        "mqtt": {"url": broker_url, "protocol": "5", "allow_insecure": True},
        "outbox": {"path": str(path.parent / "outbox.sqlite")},
        "publish": {"batch_interval": INTERVAL},
        "profiles_dir": str(PROFILES_DIR),
        "buses": [
            {"id": TCP_BUS, "type": "modbus_tcp", "host": host, "port": port},
            {
                "id": RTU_BUS,
                "type": "modbus_rtu",
                "port": endpoints.serial[RTU_BUS],
                "baudrate": RTU_BAUDRATE,
                "pause": RTU_PAUSE,
            },
        ],
        "sensors": [
            {"id": d.id, "profile": d.profile, "bus": d.bus, "unit_id": d.unit_id, "interval": INTERVAL}
            for d in devices()
        ],
    }
    path.write_text(yaml.safe_dump(gateway, sort_keys=False), encoding="utf-8")
    return path


# -- the parts that run around the measured process ---------------------------------------------


class SimulatorThread:
    """The simulated sensors on a thread with its own event loop, so that their CPU is spent in
    this process and the agent subprocess is measured alone."""

    def __init__(self, scenario: Path, workdir: Path) -> None:
        from simulators.runner import SimulatorSet, load_scenario
        from wire.clock import RealClock

        self._sims = SimulatorSet(load_scenario(scenario), RealClock(), workdir, PROFILES_DIR)
        self._thread = threading.Thread(target=self._serve, name="simulators", daemon=True)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._endpoints: Endpoints | None = None
        self._error: BaseException | None = None

    def start(self, timeout: float = 30.0) -> Endpoints:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"simulators not serving after {timeout:.0f} s")
        if self._endpoints is None:
            raise RuntimeError(f"simulators failed to start: {self._error!r}")
        return self._endpoints

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STOP_TIMEOUT)

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start(); the thread must not die silently
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with self._sims as endpoints:
            self._endpoints = endpoints
            self._ready.set()
            await self._stop.wait()


class TelemetryRecorder:
    """An MQTT subscriber that keeps every telemetry message of the gateway with its arrival time."""

    def __init__(self, broker: Mosquitto) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from wire import topics

        self.messages: list[tuple[float, Telemetry]] = []  # (arrival, epoch seconds; message)
        self.rejected = 0
        self._lock = threading.Lock()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-recorder", protocol=mqtt.MQTTv5
        )
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        self._client.subscribe(topics.telemetry(TENANT, GATEWAY), qos=1)
        if not subscribed.wait(30):
            raise RuntimeError("could not subscribe to the broker")

    def _on_message(self, _client: Any, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        from wire.telemetry import DecodeError, decode_telemetry

        arrival = time.time()
        try:
            telemetry = decode_telemetry(bytes(msg.payload))
        except DecodeError:
            with self._lock:
                self.rejected += 1
            return
        with self._lock:
            self.messages.append((arrival, telemetry))

    def snapshot(self) -> list[tuple[float, Telemetry]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# -- measuring a process from /proc ---------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (fields 14 and 15 of /proc/PID/stat)."""
    return usage.parse_stat_cpu_ticks(Path(f"/proc/{pid}/stat").read_text()) / usage.CLOCK_TICKS


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return {key: usage.parse_status_kib(status, key) for key in ("VmRSS", "VmHWM")}


@dataclass(frozen=True)
class Usage:
    start: float  # epoch seconds of the window
    end: float
    cpu_percent: float  # of one core, mean over the window
    rss_mean_mib: float
    rss_max_mib: float
    hwm_mib: float  # peak resident set since the process started (warm-up included)


def measure(proc: subprocess.Popen[bytes], seconds: float, label: str) -> Usage:
    """Sample a running process for `seconds`: CPU time at both ends, VmRSS once a second."""
    pid = proc.pid
    start, t0, cpu0 = time.time(), time.monotonic(), cpu_seconds(pid)
    rss: list[int] = []
    tick = 0
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{label} exited with code {proc.returncode} during the measurement")
        rss.append(memory_kib(pid)["VmRSS"])
        tick += 1
        if tick % 10 == 0:
            progress(f"  {label}: {tick} s of {seconds:.0f} s, RSS {rss[-1] / 1024:.1f} MiB")
        next_at = t0 + tick  # on a fixed grid, so sampling does not drift
        if next_at >= t0 + seconds:
            time.sleep(max(0.0, t0 + seconds - time.monotonic()))
            break
        time.sleep(max(0.0, next_at - time.monotonic()))
    cpu1, wall, end = cpu_seconds(pid), time.monotonic() - t0, time.time()
    # The kernel updates VmHWM lazily (per-CPU RSS counters are folded in now and then), so it
    # can trail a VmRSS sample taken moments before; the peak is at least either.
    hwm = max(memory_kib(pid)["VmHWM"], *rss)
    return Usage(
        start=start,
        end=end,
        cpu_percent=100.0 * (cpu1 - cpu0) / wall,
        rss_mean_mib=sum(rss) / len(rss) / 1024,
        rss_max_mib=max(rss) / 1024,
        hwm_mib=hwm / 1024,
    )


# -- the two runs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    run: str
    sensors: int
    polls_per_s: float  # sensor reads actually taken per second
    polls_percent: float  # of the polls due in the window (count_polls)
    readings_per_s: float | None  # values (a sensor gives one per point); None: not decoded
    messages_per_s: float | None  # telemetry messages that reached the broker; None: no MQTT
    cpu_percent: float
    rss_mean_mib: float
    rss_max_mib: float
    hwm_mib: float
    not_ok_fraction: float  # readings (or reads) with a quality flag other than ok


def run_agent(gw: Path, recorder: TelemetryRecorder, args: argparse.Namespace, workdir: Path) -> Result:
    from tests.servers import stop_process
    from wire.telemetry import Quality

    argv = [sys.executable, "-m", "bosai", "--log-level", AGENT_LOG_LEVEL]
    argv += ["edge", "run", "--config", str(gw)]
    log_path = workdir / "agent.log"
    progress(f"agent: {' '.join(argv[1:])} (log {log_path})")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + FIRST_MESSAGE_TIMEOUT
        while not recorder.snapshot():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent published nothing (exit code {proc.poll()}):\n{tail(log_path)}")
            time.sleep(0.1)
        progress(f"agent: first message received; warming up {args.warmup:.0f} s")
        time.sleep(args.warmup)
        progress(f"agent: measuring {args.duration:.0f} s")
        usage = measure(proc, args.duration, "agent")
        # Readings sampled at the end of the window are still in the agent's current batch.
        time.sleep(2 * INTERVAL + 1.0)
    finally:
        code = stop_process(proc)
    if code not in (0, 130):
        progress(f"agent: exit code {code}\n{tail(log_path)}")
    messages = recorder.snapshot()
    readings = [r for _, m in messages for r in m.readings]
    polls = {(r.sensor, r.ts.timestamp()) for r in readings}  # a poll's readings share its sample time
    taken, due = count_polls(polls, usage.start, usage.end)
    in_window = [r for r in readings if usage.start <= r.ts.timestamp() < usage.end]
    # Messages per second from the spacing of their arrivals: a count in the window would be off
    # by one whenever a message lands just on either side of an edge.
    arrived = [arrival for arrival, _ in messages if usage.start <= arrival < usage.end]
    message_rate = (len(arrived) - 1) / (arrived[-1] - arrived[0]) if len(arrived) > 1 else 0.0
    window = usage.end - usage.start
    not_ok = sum(1 for r in in_window if r.q is not Quality.OK)
    if recorder.rejected:
        progress(f"agent: {recorder.rejected} messages failed the wire contract's validation")
    return Result(
        run="edge agent",
        sensors=len(devices()),
        polls_per_s=taken / window,
        polls_percent=100.0 * taken / due,
        readings_per_s=len(in_window) / window,
        messages_per_s=message_rate,
        cpu_percent=usage.cpu_percent,
        rss_mean_mib=usage.rss_mean_mib,
        rss_max_mib=usage.rss_max_mib,
        hwm_mib=usage.hwm_mib,
        not_ok_fraction=not_ok / len(in_window) if in_window else 1.0,
    )


def run_floor(gw: Path, args: argparse.Namespace, workdir: Path) -> Result:
    argv = [sys.executable, "-m", "benchmarks.edge_agent", "--floor-worker", str(gw)]
    log_path = workdir / "floor.log"
    progress(f"floor: bare pymodbus loop; warming up {args.warmup:.0f} s")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log
        )
    try:
        time.sleep(args.warmup)
        progress(f"floor: measuring {args.duration:.0f} s")
        usage = measure(proc, args.duration, "floor")
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            out, _ = proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    try:
        reads: list[list[Any]] = json.loads(out)["reads"]
    except ValueError:
        raise RuntimeError(f"the floor loop gave no results:\n{tail(log_path)}") from None
    taken, due = count_polls({(sensor, t) for sensor, t, _ in reads}, usage.start, usage.end)
    failed = sum(1 for _, t, ok in reads if usage.start <= t < usage.end and not ok)
    window = usage.end - usage.start
    return Result(
        run="bare pymodbus loop (floor)",
        sensors=len(devices()),
        polls_per_s=taken / window,
        polls_percent=100.0 * taken / due,
        readings_per_s=None,
        messages_per_s=None,
        cpu_percent=usage.cpu_percent,
        rss_mean_mib=usage.rss_mean_mib,
        rss_max_mib=usage.rss_max_mib,
        hwm_mib=usage.hwm_mib,
        not_ok_fraction=failed / taken if taken else 1.0,
    )


def count_polls(polls: set[tuple[str, float]], start: float, end: float) -> tuple[int, int]:
    """(polls taken, polls due) inside [start, end), from (sensor id, sample time) pairs.

    Each sensor is polled on a fixed grid (edge/poller.py, and the floor loop), so the slots a
    sensor had in the window follow from the phase of its own sample times.  Dividing by the
    window's length instead would let each window edge add or drop a poll per sensor (up to 32
    in a short window), which would hide or invent a few missed polls."""
    times: dict[str, list[float]] = {d.id: [] for d in devices()}
    for sensor, t in polls:
        times[sensor].append(t)
    taken = due = 0
    for sampled in times.values():
        taken += sum(1 for t in sampled if start <= t < end)
        if not sampled:  # never answered: every slot of the window was missed
            due += math.ceil((end - start) / INTERVAL)
            continue
        phase = min(sampled, key=lambda t: abs(t - start))
        due += math.ceil((end - phase) / INTERVAL) - math.ceil((start - phase) / INTERVAL)
    return taken, due


async def floor_worker(gw_path: Path) -> None:
    """The floor: each bus read by plain pymodbus, every slave once a second, results thrown away.

    Prints {"reads": [[sensor id, epoch seconds, ok], ...]} on stdout at SIGTERM."""
    from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
    from pymodbus.client.base import ModbusBaseClient

    gw = yaml.safe_load(gw_path.read_text(encoding="utf-8"))
    reads: list[tuple[str, float, bool]] = []
    clients: list[ModbusBaseClient] = []

    async def poll_bus(client: ModbusBaseClient, on_bus: list[Device], pause: float) -> None:
        await client.connect()
        next_cycle = time.time()
        while True:
            for d in on_bus:
                function, address, count = d.floor_read
                t = time.time()
                try:
                    if function == "holding":
                        rr = await client.read_holding_registers(address, count=count, device_id=d.unit_id)
                    else:
                        rr = await client.read_input_registers(address, count=count, device_id=d.unit_id)
                    ok = not rr.isError()
                except Exception:  # a failed read is counted, like the agent's quality flag
                    ok = False
                reads.append((d.id, t, ok))
                await asyncio.sleep(pause)
            # A fixed grid like the agent's; a cycle that overran starts the next one at once.
            next_cycle = max(next_cycle + INTERVAL, time.time())
            await asyncio.sleep(next_cycle - time.time())

    tasks = []
    for bus in gw["buses"]:
        client: ModbusBaseClient
        if bus["type"] == "modbus_tcp":
            client = AsyncModbusTcpClient(bus["host"], port=bus["port"], timeout=1.0)
        else:
            client = AsyncModbusSerialClient(bus["port"], baudrate=bus["baudrate"], timeout=0.5)
        clients.append(client)
        on_bus = [d for d in devices() if d.bus == bus["id"]]
        tasks.append(asyncio.create_task(poll_bus(client, on_bus, bus.get("pause", 0.0))))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for client in clients:
        client.close()
    print(json.dumps({"reads": reads}))


# -- reporting ------------------------------------------------------------------------------------


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": os.getloadavg()[0],
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def describe(info: dict[str, Any]) -> str:
    return (
        f"{info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, Linux {info['kernel']}, "
        f"load {info['loadavg_at_start']:.2f} at start, {info['date']}"
    )


TABLE_HEADER = (
    "| run | sensors | polls/s (% of the 32/s due) | readings/s | messages/s | CPU % of one core "
    "| RSS MiB mean / max | peak RSS (VmHWM) MiB | readings not ok |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def table_row(r: Result) -> str:
    def opt(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    return (
        f"| {r.run} | {r.sensors} | {r.polls_per_s:.2f} ({r.polls_percent:.1f} %) "
        f"| {opt(r.readings_per_s, '.2f')} | {opt(r.messages_per_s, '.2f')} | {r.cpu_percent:.1f} "
        f"| {r.rss_mean_mib:.1f} / {r.rss_max_mib:.1f} | {r.hwm_mib:.1f} | {r.not_ok_fraction:.4f} |"
    )


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.edge_agent",
        description="CPU and RSS of the real edge agent polling 32 simulated Modbus sensors at 1 Hz "
        "and publishing to a real Mosquitto, and of a bare pymodbus loop over the same sensors "
        "(the floor).  Progress on stderr; a Markdown table and a JSON line on stdout.",
    )
    parser.add_argument(
        "--duration", type=float, default=60.0, metavar="S", help="measurement window (default 60)"
    )
    parser.add_argument(
        "--warmup", type=float, default=10.0, metavar="S", help="warm-up before it (default 10)"
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the bare pymodbus loop")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the JSON results to FILE")
    parser.add_argument(
        "--workdir", type=Path, metavar="DIR", help="keep configs and logs here (default: a temporary folder)"
    )
    parser.add_argument("--floor-worker", type=Path, metavar="GW", help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be positive and --warmup not negative")
    return args


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from tests.servers import Mosquitto

    info = machine()
    progress(f"machine: {describe(info)}")
    # Long enough for both runs and their start-up: the world stands still after its end anyway.
    scenario = write_scenario(workdir / "scenario.yaml", 2 * (args.warmup + args.duration) + 3600)
    results: list[Result] = []
    with Mosquitto(workdir / "mosquitto") as broker:
        sims = SimulatorThread(scenario, workdir / "sim")
        endpoints = sims.start()
        progress(f"simulators: Modbus TCP {endpoints.modbus_tcp[TCP_BUS]}, RTU {endpoints.serial[RTU_BUS]}")
        try:
            gw = write_gateway(workdir / "gateway.yaml", endpoints, broker.url)
            recorder = TelemetryRecorder(broker)
            try:
                results.append(run_agent(gw, recorder, args, workdir))
            finally:
                recorder.close()
            if not args.no_floor:
                results.append(run_floor(gw, args, workdir))
        finally:
            sims.stop()
    info["loadavg_at_end"] = os.getloadavg()[0]
    return {
        "benchmark": "edge_agent",
        "machine": info,
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "interval_s": INTERVAL,
            "batch_interval_s": INTERVAL,
            "rtu_baudrate": RTU_BAUDRATE,
            "rtu_pause_s": RTU_PAUSE,
            "sensors": {
                p: sum(1 for d in devices() if d.profile == p) for p in sorted({d.profile for d in devices()})
            },
        },
        "results": [asdict(r) for r in results],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.floor_worker is not None:
        asyncio.run(floor_worker(args.floor_worker))
        return 0
    with contextlib.ExitStack() as stack:
        if args.workdir is not None:
            workdir = args.workdir.resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-edge-")))
        try:
            report = run(args, workdir)
        except RuntimeError as exc:
            progress(f"benchmark failed: {exc}")
            return 1
    info = report["machine"]
    print(f"machine: {describe(info)}")
    print()
    print(TABLE_HEADER)
    for r in report["results"]:
        print(table_row(Result(**r)))
    print()
    line = json.dumps(report, ensure_ascii=False)
    print(line)
    if args.json is not None:
        args.json.write_text(line + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
