"""Every fault of the `sensor-faults` scenario, observed the way a field engineer would: with
pymodbus's own client and pyserial on the simulators' real TCP port and pseudo-terminals (not the
edge agent), checked against the ground truth file the run writes."""

from __future__ import annotations

import asyncio
import re
import struct
import time
from pathlib import Path
from typing import Any

import pytest
import serial
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from bosai.paths import PROFILES_DIR
from edge.profiles import load_profiles
from simulators.modbus_rtu import crc16, with_crc
from simulators.runner import Endpoints, SimulatorSet, default_scenario_path, load_scenario
from tests.simulated import Body, TruthFile, serve
from wire.clock import ScaledClock

FAULT_TYPES = {
    "spike",
    "stuck",
    "drift",
    "dropout",
    "exception",
    "bad_crc",
    "garbled",
    "partial_line",
    "slow",
    "link_loss",
}


def run(body: Body, tmp_path: Path, at: float, speed: float = 10.0) -> SimulatorSet:
    """Serve the sensor-faults scenario from scenario time `at` and run `body` against it."""
    return serve("sensor-faults", body, tmp_path, at, speed, timeout=20)


def rtu_client(ep: Endpoints, timeout: float = 1.0) -> AsyncModbusSerialClient:
    return AsyncModbusSerialClient(
        ep.serial["rs485-1"], framer=FramerType.RTU, baudrate=9600, timeout=timeout, retries=0
    )


async def read_pt_level(client: AsyncModbusSerialClient) -> float:
    rr = await client.read_holding_registers(3, count=2, device_id=4)  # decimals, level (int16)
    assert not rr.isError(), rr
    decimals, raw = struct.unpack(">Hh", struct.pack(">HH", *rr.registers))
    return float(raw / 10**decimals)


async def read_radar_level(client: AsyncModbusTcpClient) -> float:
    rr = await client.read_holding_registers(0, count=2, device_id=1)
    assert not rr.isError(), rr
    value = client.convert_from_registers(rr.registers, client.DATATYPE.FLOAT32, word_order="little")
    assert isinstance(value, float)
    return value


def test_spike_is_served_and_recorded_in_the_truth(tmp_path: Path) -> None:
    seen: list[tuple[float, float]] = []

    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        client = rtu_client(ep)
        assert await client.connect()
        try:
            seen.append((clock.now(), await read_pt_level(client)))
        finally:
            client.close()

    sims = run(body, tmp_path, at=3300)  # spike window 3240-3420 s
    truth = TruthFile(sims.truth_path)
    (spike,) = truth.faults("spike")
    assert spike["device"] == "river-pt-02" and spike["magnitude"] == 2.5
    t, level = seen[0]
    assert spike["start"] <= t < spike["end"]
    # +2.5 m on a ~1.3 m river; noise 0.01 m, 1 mm steps
    assert level == pytest.approx(truth.value("river-pt-02", "river_level", t) + 2.5, abs=0.05)
    assert sims.faults_injected()["spike"] == 1


def test_drift_grows_with_time_since_its_start(tmp_path: Path) -> None:
    seen: list[tuple[float, float]] = []

    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        client = rtu_client(ep)
        assert await client.connect()
        try:
            rr = await client.read_input_registers(0, count=1, device_id=2)  # distance, mm
            assert not rr.isError()
            seen.append((clock.now(), 300.0 - rr.registers[0] / 10))
        finally:
            client.close()

    sims = run(body, tmp_path, at=3600 + 2 * 3600)  # drift 1.5 cm/h since 3600 s: +3 cm
    truth = TruthFile(sims.truth_path)
    t, depth = seen[0]
    drift = 1.5 * (t - truth.faults("drift")[0]["start"]) / 3600
    assert drift == pytest.approx(3.0, abs=0.05)
    assert depth == pytest.approx(truth.value("snow-laser-01", "snow_depth", t) + drift, abs=1.2)


def test_stuck_repeats_one_reading_while_the_river_moves(tmp_path: Path) -> None:
    stuck: list[float] = []
    healthy: list[float] = []

    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        host, port = ep.modbus_tcp["plc-tcp"]
        tcp = AsyncModbusTcpClient(host, port=port, timeout=1, retries=0)
        rtu = rtu_client(ep)
        assert await tcp.connect() and await rtu.connect()
        try:
            for _ in range(4):
                stuck.append(await read_radar_level(tcp))
                healthy.append(await read_pt_level(rtu))
                await asyncio.sleep(0.3)  # 180 s of scenario time
        finally:
            tcp.close()
            rtu.close()

    run(body, tmp_path, at=7300, speed=600)  # stuck window 7200-10800 s
    assert len(set(stuck)) == 1  # bit for bit the same reading
    assert len(set(healthy)) > 1  # the backup gauge on the same river still moves (noise 1 cm)


def test_exception_on_one_slave_leaves_the_others_on_the_bus_alone(tmp_path: Path) -> None:
    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        client = rtu_client(ep)
        assert await client.connect()
        try:
            rr = await client.read_input_registers(0, count=4, device_id=3)
            assert rr.isError() and rr.exception_code == 4  # slave device failure
            assert 1.0 < await read_pt_level(client) < 1.6
        finally:
            client.close()

    sims = run(body, tmp_path, at=5500)
    assert sims.faults_injected() == {"exception": 1}


def test_dropout_times_out_and_other_slaves_answer(tmp_path: Path) -> None:
    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        client = rtu_client(ep, timeout=0.5)
        assert await client.connect()
        try:
            with pytest.raises(ModbusException):  # no answer at all: a timeout
                await client.read_input_registers(0, count=2, device_id=2)
            assert 1.5 < await read_pt_level(client) < 2.5
        finally:
            client.close()

    sims = run(body, tmp_path, at=12700)
    assert sims.faults_injected()["dropout"] == 1


def _raw_rtu(link: str, request: bytes, expect: int, times: int) -> list[bytes]:
    out = []
    with serial.Serial(link, 9600, timeout=0.5) as port:
        for _ in range(times):
            port.reset_input_buffer()
            port.write(request)
            out.append(bytes(port.read(expect)))
    return out


def test_bad_crc_hits_about_the_given_fraction_of_answers(tmp_path: Path) -> None:
    answers: list[bytes] = []

    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        request = with_crc(bytes([4, 3]) + struct.pack(">HH", 3, 2))
        answers.extend(await asyncio.to_thread(_raw_rtu, ep.serial["rs485-1"], request, 9, 40))

    sims = run(body, tmp_path, at=14500, speed=1)  # probability 0.5
    assert all(len(a) == 9 and a[:3] == bytes([4, 3, 4]) for a in answers)  # whole frames
    bad = [a for a in answers if crc16(a[:-2]) != int.from_bytes(a[-2:], "little")]
    assert 8 <= len(bad) <= 32  # binomial(40, 0.5): far outside this once in ~10^4 runs
    assert sims.faults_injected()["bad_crc"] == len(bad)


def test_slow_answers_late_on_tcp_and_rtu(tmp_path: Path) -> None:
    async def tcp_body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        host, port = ep.modbus_tcp["plc-tcp"]
        impatient = AsyncModbusTcpClient(host, port=port, timeout=1, retries=0)
        assert await impatient.connect()
        try:
            with pytest.raises(ModbusException):
                await read_radar_level(impatient)
        finally:
            impatient.close()
        patient = AsyncModbusTcpClient(host, port=port, timeout=6, retries=0)
        assert await patient.connect()
        try:
            began = time.monotonic()
            assert 1.5 < await read_radar_level(patient) < 2.5
            assert time.monotonic() - began >= 3.0
        finally:
            patient.close()

    run(tcp_body, tmp_path, at=16300, speed=1)

    async def rtu_body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        client = rtu_client(ep, timeout=0.5)
        assert await client.connect()
        try:
            began = time.monotonic()
            rr = await client.read_input_registers(0, count=2, device_id=3)
            late = time.monotonic() - began
            assert not rr.isError() and 0.3 <= late < 0.5
            began = time.monotonic()
            await read_pt_level(client)  # the next slave is not held up
            assert time.monotonic() - began < 0.2
        finally:
            client.close()

    run(rtu_body, tmp_path / "rtu", at=18100, speed=1)


def _lines(link: str, count: int, poll: bytes | None = None) -> list[bytes]:
    """`count` raw reads up to a line terminator (or a 0.4 s gap), polling before each if asked."""
    out = []
    with serial.Serial(link, 9600, timeout=0.4) as port:
        port.reset_input_buffer()
        for _ in range(count):
            if poll is not None:
                port.write(poll)
                out.append(bytes(port.read_until(b"\r\n") + port.read_until(b"\r\n")))
            else:
                out.append(bytes(port.read_until(b"\r\n")))
    return out


def test_garbled_lines_are_mixed_with_clean_ones(tmp_path: Path) -> None:
    pattern = re.compile(load_profiles(PROFILES_DIR)["ultrasonic-snow-us"].ascii.patterns[0])  # type: ignore[union-attr]
    lines: list[bytes] = []

    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        lines.extend(await asyncio.to_thread(_lines, ep.serial["snow-serial"], 30))

    sims = run(body, tmp_path, at=9000, speed=100)  # a line every 0.1 s
    text = [line.decode("ascii", errors="replace").rstrip("\r\n") for line in lines if line]
    clean = [t for t in text if pattern.fullmatch(t)]
    assert all(line.endswith(b"\r\n") for line in lines if line)  # garbling keeps the framing
    assert 5 <= len(clean) <= len(text) - 5, text
    assert sims.faults_injected()["garbled"] == len(text) - len(clean)


def test_partial_lines_lose_their_terminator(tmp_path: Path) -> None:
    replies: list[bytes] = []

    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        replies.extend(await asyncio.to_thread(_lines, ep.serial["incl-serial"], 20, b"R\r\n"))

    sims = run(body, tmp_path, at=10900)
    whole = re.compile(rb"X=[+-]\d{2}\.\d{3}\r\nY=[+-]\d{2}\.\d{3}\r\n")
    cut = [r for r in replies if not whole.fullmatch(r)]
    assert cut and len(cut) < len(replies)
    assert all(r.count(b"\r\n") < 2 for r in cut)  # one line lost its end
    assert sims.faults_injected()["partial_line"] == len(cut)


def test_ascii_dropout_is_silence(tmp_path: Path) -> None:
    replies: list[bytes] = []

    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        replies.extend(await asyncio.to_thread(_lines, ep.serial["incl-serial"], 2, b"R\r\n"))

    run(body, tmp_path, at=19900)
    assert replies == [b"", b""]


def test_truth_lists_every_fault_type_and_the_registry_crossings(tmp_path: Path) -> None:
    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        pass

    sims = run(body, tmp_path, at=0)
    truth = TruthFile(sims.truth_path)
    faults = truth.of_type("fault")
    assert {r["fault"] for r in faults} == FAULT_TYPES
    scenario = load_scenario(default_scenario_path("sensor-faults"))
    assert len(faults) == len(scenario.faults)
    for row, spec in zip(faults, scenario.faults, strict=True):
        assert row["start"] == pytest.approx(sims.origin + spec.start)
        assert row["end"] == pytest.approx(sims.origin + spec.end)
    crossings = truth.of_type("crossing")
    assert {(r["device"], r["level"], r["direction"]) for r in crossings} == {
        ("river-radar-01", 1, "up"),
        ("river-pt-02", 1, "up"),
    }
    assert all(r["site"] == "ishikari-asahibashi" and r["name_ja"] == "水防団待機水位" for r in crossings)


# Scenario time -> (device, the quality flags the edge may give its readings then).  Probabilistic
# faults allow `ok` too; the first read of each window decides nothing on its own.
EDGE_CHECKPOINTS = [
    (5500.0, "slope-incl-01", {"exception"}),
    (12700.0, "snow-laser-01", {"timeout"}),
    (16300.0, "river-radar-01", {"timeout"}),  # answers 3 s late: after the 1 s timeout and a retry
    (19900.0, "slope-incl-02", {"timeout"}),
]


@pytest.mark.parametrize(("at", "device", "flags"), EDGE_CHECKPOINTS)
def test_edge_agent_flags_transport_faults_and_never_invents_a_value(
    tmp_path: Path, at: float, device: str, flags: set[str]
) -> None:
    from edge.agent import Agent
    from edge.config import load_gateway
    from simulators.gateway_config import write_gateway_config

    readings: list[Any] = []

    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        gw = write_gateway_config(ep, "mqtt://127.0.0.1:1", tmp_path / "gw.yaml")
        readings.extend(await Agent(load_gateway(gw), clock).read_once())

    run(body, tmp_path, at=at)
    by_device: dict[str, set[str]] = {}
    for r in readings:
        by_device.setdefault(r.sensor, set()).add(r.q.value)
        assert (r.value is None) == (r.q.value != "ok")  # a flag, never a value
    assert by_device.pop(device) <= flags, device
    assert all(q == {"ok"} for q in by_device.values()), by_device  # the others are unaffected


def test_edge_agent_sees_bad_crc_as_crc(tmp_path: Path) -> None:
    from edge.agent import Agent
    from edge.config import load_gateway
    from simulators.gateway_config import write_gateway_config

    flags: list[str] = []

    async def body(sims: SimulatorSet, ep: Endpoints, clock: ScaledClock) -> None:
        agent = Agent(
            load_gateway(write_gateway_config(ep, "mqtt://127.0.0.1:1", tmp_path / "gw.yaml")), clock
        )
        for _ in range(6):
            flags.extend(r.q.value for r in await agent.read_once() if r.sensor == "river-pt-02")

    run(body, tmp_path, at=14450)  # half the answers corrupted, one retry per read
    assert set(flags) <= {"ok", "crc"} and "crc" in flags and "ok" in flags
