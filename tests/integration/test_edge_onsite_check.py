"""`bosai edge check` on a rehearsal site: the shipped demo gateway pointed at the simulators (Modbus
TCP, Modbus RTU and ASCII over ptys) and at a real Mosquitto with TLS and a password file.

A pty carries bytes whatever speed its ends are set to, so the RTU slaves and the polled ASCII
device here answer only while the port is set to *their* baud rate (read from the tty's termios,
which the edge sets when it opens the port), as a real device at another speed hears only noise.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import serial
import yaml

from edge.check import CheckItem, Status, check_broker, run_checks
from edge.config import ModbusRtuBus, load_gateway
from edge.scan import PortError, open_serial
from simulators.ascii_serial import AsciiSerialServer
from simulators.devices import AsciiDevice
from simulators.gateway_config import write_gateway_config
from simulators.modbus_rtu import ModbusRtuServer
from simulators.modbus_slave import ModbusSlaves, RegisterBank
from simulators.runner import Endpoints, SimulatorSet
from tests.servers import Mosquitto, make_tls_files, write_password_file
from tests.simulated import serve
from wire.clock import ScaledClock

pytestmark = pytest.mark.integration

USER = "gw01"
PASSWORD = f"pw-{secrets.token_hex(16)}"  # random, so finding it in the output is never a coincidence
ROOT = Path(__file__).resolve().parents[2]
RTU_UNITS = {"snow-laser-01": 2, "slope-incl-01": 3, "river-pt-02": 4}


def _tty_speed(fd: int) -> int:
    return int(termios.tcgetattr(fd)[4])


class BaudRtuServer(ModbusRtuServer):
    """Modbus RTU slaves that hear requests only at `baud`."""

    def __init__(self, slaves: ModbusSlaves, link: Path, baud: int) -> None:
        super().__init__(slaves, link)
        self._speed = getattr(termios, f"B{baud}")
        self._tty = -1

    def start(self) -> Path:
        link = super().start()
        self._tty = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)  # to read the line's speed
        return link

    def close(self) -> None:
        os.close(self._tty)
        super().close()

    def _on_data(self, data: bytes) -> None:
        if _tty_speed(self._tty) == self._speed:
            super()._on_data(data)


class BaudAsciiServer(AsciiSerialServer):
    """A polled ASCII device that hears its poll command only at `baud`."""

    def __init__(self, device: AsciiDevice, link: Path, sims: SimulatorSet, baud: int) -> None:
        super().__init__(device, link, sims.clock, sims.scenario_time)
        self._speed = getattr(termios, f"B{baud}")
        self._tty = -1

    def start(self) -> Path:
        link = super().start()
        self._tty = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        return link

    async def close(self) -> None:
        os.close(self._tty)
        await super().close()

    def _on_data(self, data: bytes) -> None:
        if _tty_speed(self._tty) == self._speed:
            super()._on_data(data)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """TLS-only Mosquitto that knows one user, USER with PASSWORD, and refuses anonymous clients."""
    work = tmp_path_factory.mktemp("broker")
    passwords = write_password_file(work / "passwd", {USER: PASSWORD})
    with Mosquitto(work / "mosquitto", tls=True, password_file=passwords, allow_anonymous=False) as server:
        yield server


def gateway_config(
    broker: Mosquitto,
    endpoints: Endpoints,
    out: Path,
    *,
    password: str = PASSWORD,
    ca_file: Path | None = None,
) -> Path:
    """The demo gateway at the simulators, logging in to `broker` over TLS as USER."""
    path = write_gateway_config(endpoints, broker.url, out)
    secret = out.parent / "mqtt-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["mqtt"] = {
        "url": broker.url,
        "username": USER,
        "password_file": str(secret),
        "tls": {"ca_file": str(ca_file or broker.ca_file)},
        "keepalive": 10,
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def set_bus(path: Path, bus_id: str, **fields: Any) -> None:
    raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    for bus in raw["buses"]:
        if bus["id"] == bus_id:
            bus.update(fields)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")


def dev_link(tmp_path: Path, name: str) -> Path:
    return tmp_path / "dev" / name


def rtu_at(sims: SimulatorSet, link: Path, baud: int, devices: list[str]) -> BaudRtuServer:
    banks = {RTU_UNITS[d]: RegisterBank(sims.devices[d]) for d in devices}
    server = BaudRtuServer(ModbusSlaves(banks, sims.scenario_time), link, baud)
    server.start()
    return server


async def bosai(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bosai",
        *argv,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def find(items: list[CheckItem], section: str, name: str) -> CheckItem:
    matches = [i for i in items if i.section == section and i.name == name]
    assert len(matches) == 1, (section, name, items)
    return matches[0]


def test_everything_good_passes_and_the_password_is_never_shown(tmp_path: Path, broker: Mosquitto) -> None:
    result: dict[str, Any] = {}

    async def body(sims: SimulatorSet, endpoints: Endpoints, _clock: ScaledClock) -> None:
        path = gateway_config(broker, endpoints, tmp_path / "gw" / "gw.yaml")
        rtu = rtu_at(sims, dev_link(tmp_path, "rs485-9600"), 9600, list(RTU_UNITS))
        set_bus(path, "rs485-1", port=str(dev_link(tmp_path, "rs485-9600")))
        try:
            argv = ["--log-level", "DEBUG", "edge", "check", "--config", str(path), "--json"]
            result["rc"], result["out"], result["err"] = await bosai(*argv, "--scan-units", "1-8")
        finally:
            rtu.close()

    serve("quiet-day", body, tmp_path, at=3600.0, speed=60.0, timeout=60)
    assert PASSWORD not in result["out"] and PASSWORD not in result["err"]
    assert result["rc"] == 0, result["out"] + result["err"]
    doc = msgspec.json.decode(result["out"])
    items = [CheckItem(i["section"], i["name"], Status(i["status"]), i["detail"]) for i in doc["items"]]
    not_passed = [i for i in items if i.status is not Status.PASS and i.section != "clock"]
    assert not_passed == []
    assert find(items, "clock", "synchronized").status in (Status.PASS, Status.WARN, Status.SKIP)
    assert doc["ok"] is True and doc["summary"]["failed"] == 0
    sections = [i.section for i in items]
    assert sections[:3] == ["config", "secrets", "clock"]
    assert sections[-4:] == ["broker"] * 4
    assert find(items, "bus rs485-1", "answers at 9600 baud").detail == "units 2, 3, 4"
    assert "unit 1" in find(items, "bus plc-tcp", "answers").detail
    assert "clean line at 9600 baud" in find(items, "bus snow-serial", "line arrives").detail
    for sensor in ("river-radar-01", "snow-laser-01", "slope-incl-01", "river-pt-02", "snow-us-02"):
        assert find(items, f"sensor {sensor}", "reads").detail.endswith("quality ok")
    assert "verified: certificate CN=localhost" in find(items, "broker", "TLS handshake").detail
    assert "logged in as 'gw01'" in find(items, "broker", "login").detail
    # The login left nothing behind: no message published, a clean DISCONNECT.
    log = broker.log_path.read_text(errors="replace")
    assert "Received DISCONNECT from bosai-demo-city-gw01-check" in log
    assert "PUBLISH from bosai-demo-city-gw01-check" not in log


def test_devices_at_another_baud_and_a_missing_unit_fail_naming_where_they_answer(
    tmp_path: Path, broker: Mosquitto
) -> None:
    items: list[CheckItem] = []
    seen: list[CheckItem] = []

    async def body(sims: SimulatorSet, endpoints: Endpoints, clock: ScaledClock) -> None:
        path = gateway_config(broker, endpoints, tmp_path / "gw" / "gw.yaml")
        # Units 2 and 3 were set to 19200 baud, unit 4 is not there; the config says 9600 for all.
        rtu = rtu_at(sims, dev_link(tmp_path, "rs485-19200"), 19200, ["snow-laser-01", "slope-incl-01"])
        device = sims.devices["slope-incl-02"]
        assert isinstance(device, AsciiDevice)
        inclinometer = BaudAsciiServer(device, dev_link(tmp_path, "incl-19200"), sims, 19200)
        inclinometer.start()
        set_bus(path, "rs485-1", port=str(dev_link(tmp_path, "rs485-19200")), timeout=0.2, retries=0)
        set_bus(path, "incl-serial", port=str(dev_link(tmp_path, "incl-19200")), timeout=0.5)
        try:
            items.extend(
                await run_checks(
                    load_gateway(path),
                    scan_bauds=(9600, 19200, 38400),
                    scan_units=range(1, 9),
                    broker_timeout=5,
                    on_item=seen.append,
                )
            )
        finally:
            rtu.close()
            await inclinometer.close()

    serve("quiet-day", body, tmp_path, at=3600.0, speed=60.0, timeout=60)
    assert seen == items  # each item was handed out as it completed
    unit2 = find(items, "bus rs485-1", "unit 2")
    assert unit2.status is Status.FAIL
    assert "unit 2 answers at 19200 baud, config says 9600" in unit2.detail
    assert find(items, "bus rs485-1", "unit 3").status is Status.FAIL
    unit4 = find(items, "bus rs485-1", "unit 4")
    assert unit4.status is Status.FAIL and "does not answer at any speed tried" in unit4.detail
    answers = find(items, "bus rs485-1", "answers at 19200 baud")
    assert answers.status is Status.PASS and answers.detail == "units 2, 3"
    line = find(items, "bus incl-serial", "line arrives")
    assert (
        line.status is Status.FAIL and "a clean line arrives at 19200 baud, config says 9600" in line.detail
    )
    for sensor in ("snow-laser-01", "slope-incl-01", "river-pt-02"):
        reads = find(items, f"sensor {sensor}", "reads")
        assert reads.status is Status.FAIL and reads.detail.startswith(
            "no value (timeout): no answer from unit"
        )
    assert find(items, "sensor river-radar-01", "reads").status is Status.PASS
    assert find(items, "broker", "login").status is Status.PASS


def test_wrong_password_fails_the_login_as_not_authorized(tmp_path: Path, broker: Mosquitto) -> None:
    wrong = f"wrong-{secrets.token_hex(16)}"
    result: dict[str, Any] = {}

    async def body(sims: SimulatorSet, endpoints: Endpoints, _clock: ScaledClock) -> None:
        path = gateway_config(broker, endpoints, tmp_path / "gw" / "gw.yaml", password=wrong)
        argv = ["--log-level", "DEBUG", "edge", "check", "--config", str(path), "--no-scan"]
        result["rc"], result["out"], result["err"] = await bosai(*argv)

    serve("quiet-day", body, tmp_path, at=3600.0, speed=60.0, timeout=60)
    out = result["out"]
    assert wrong not in out and wrong not in result["err"]
    assert result["rc"] == 1, out + result["err"]
    [login] = [line for line in out.splitlines() if line.startswith("FAIL") and " login " in line]
    assert "broker refused the login (not authorized)" in login
    assert "ask provisioning for a new bundle" in login
    assert re.fullmatch(r"\d+ passed, 1 failed(, 1 warning)?", out.rstrip().splitlines()[-1])  # summary


def test_a_ca_file_of_another_ca_fails_the_tls_handshake(tmp_path: Path, broker: Mosquitto) -> None:
    other = make_tls_files(tmp_path / "other-ca")
    serial_buses = ("rs485-1", "snow-serial", "incl-serial")
    endpoints = Endpoints({"plc-tcp": ("127.0.0.1", 1)}, {b: "/dev/null" for b in serial_buses})
    path = gateway_config(broker, endpoints, tmp_path / "gw" / "gw.yaml", ca_file=other.ca_file)
    items = asyncio.run(check_broker(load_gateway(path), timeout=5))
    assert [i.name for i in items] == ["DNS", "TCP connect", "TLS handshake", "login"]
    tls = items[2]
    assert tls.status is Status.FAIL
    assert "certificate verify failed" in tls.detail and str(other.ca_file) in tls.detail
    assert items[3].status is Status.SKIP


def test_a_port_held_by_another_program_is_reported_busy(pty: tuple[int, str]) -> None:
    _master, port = pty
    bus = ModbusRtuBus(id="rs485-1", port=port)
    holder = serial.Serial(port, exclusive=True)  # as the running agent holds it
    try:
        with pytest.raises(PortError, match="in use by another program"):
            asyncio.run(open_serial(bus))
    finally:
        holder.close()
    asyncio.run(open_serial(bus))  # free again
    with pytest.raises(PortError, match="does not exist"):
        asyncio.run(open_serial(ModbusRtuBus(id="rs485-1", port="/dev/ttyNOPE9")))


def test_the_login_is_not_tried_while_the_agent_runs(tmp_path: Path, broker: Mosquitto) -> None:
    serial_buses = ("rs485-1", "snow-serial", "incl-serial")
    endpoints = Endpoints({"plc-tcp": ("127.0.0.1", 1)}, {b: "/dev/null" for b in serial_buses})
    loaded = load_gateway(gateway_config(broker, endpoints, tmp_path / "gw" / "gw.yaml"))
    outbox = loaded.resolve(loaded.config.outbox.path)
    logged_before = len(broker.log_path.read_text(errors="replace"))
    # Another process with the gateway's outbox open, as the running agent has it.
    code = "import sys; from edge.outbox import Outbox; box = Outbox(sys.argv[1]); print('open', flush=True)"
    code += "; input()"  # held until killed
    agent = subprocess.Popen(
        [sys.executable, "-c", code, str(outbox)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert agent.stdout is not None and agent.stdout.readline() == "open\n"
        items = asyncio.run(check_broker(loaded, timeout=5))
    finally:
        agent.kill()
        agent.wait()
    assert [(i.name, i.status) for i in items] == [
        ("DNS", Status.PASS),
        ("TCP connect", Status.PASS),
        ("TLS handshake", Status.PASS),
        ("login", Status.SKIP),
    ]
    assert f"the agent is running (process {agent.pid} holds {outbox})" in items[3].detail
    logged = broker.log_path.read_text(errors="replace")[logged_before:]
    assert "-check" not in logged  # no login, so the agent was not disconnected
    # With the agent gone (killed: the OS released its lock) the login is tried again.
    items = asyncio.run(check_broker(loaded, timeout=5))
    assert items[3].status is Status.PASS, items[3]
