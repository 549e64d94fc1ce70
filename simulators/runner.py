"""Run a scenario's virtual devices on their buses: the API the demo and end-to-end tests use.

    scenario = load_scenario(default_scenario_path("demo-storm"))
    sims = SimulatorSet(scenario, clock, workdir, profiles_dir)
    async with sims as endpoints:
        ...  # point the edge at endpoints.modbus_tcp[bus] / endpoints.serial[bus]
        sims.truth("river-radar-01", "river_level", clock.now())

Scenario time is clock.now() - clock.start for a ScaledClock (the storm starts at the clock's
start), and counts from __aenter__ otherwise; `start_at` shifts it to begin mid-scenario.  Served
values are truth + seeded noise + scheduled faults, quantised by the profile's encoding.  On exit
the ground truth (simulators/truth.py) is written to {workdir}/truth.jsonl or `truth_path`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.profiles import load_profiles
from simulators.ascii_serial import AsciiSerialServer
from simulators.devices import AsciiDevice, VirtualDevice, build_devices
from simulators.modbus_rtu import ModbusRtuServer
from simulators.modbus_slave import ModbusSlaves, RegisterBank
from simulators.modbus_tcp import ModbusTcpServer
from simulators.scenario import Scenario, load_scenario
from simulators.truth import TRUTH_STEP_S, scenario_truth, write_truth
from simulators.uplink import LinkWindow, UplinkProxy
from wire.clock import Clock, ScaledClock

__all__ = [
    "Endpoints",
    "SimulatorSet",
    "default_scenario_path",
    "load_scenario",
    "resolve_scenario",
    "scenario_names",
]

SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"


def default_scenario_path(name: str) -> Path:
    """ "demo-storm" -> simulators/scenarios/demo-storm.yaml"""
    return SCENARIOS_DIR / f"{name}.yaml"


def scenario_names() -> list[str]:
    return sorted(p.stem for p in SCENARIOS_DIR.glob("*.yaml"))


def resolve_scenario(name_or_file: str) -> Path:
    """A scenario file given by path (anything ending in .yaml/.yml, or an existing file) or
    by shipped name.  FileNotFoundError, listing the shipped names, if there is none."""
    given = Path(name_or_file)
    path = (
        given if given.suffix in (".yaml", ".yml") or given.exists() else default_scenario_path(name_or_file)
    )
    if not path.exists():
        raise FileNotFoundError(f"no scenario {name_or_file!r}; shipped: {', '.join(scenario_names())}")
    return path


@dataclass(frozen=True)
class Endpoints:
    modbus_tcp: dict[str, tuple[str, int]]  # bus id -> (host, port)
    serial: dict[str, str]  # bus id -> path of the pty symlink for the edge
    uplink: tuple[str, int] | None = None  # the proxy the gateway reaches its broker through


class SimulatorSet:
    def __init__(
        self,
        scenario: Scenario,
        clock: Clock,
        workdir: Path,
        profiles_dir: Path,
        host: str = "127.0.0.1",
        *,
        start_at: float = 0.0,
        truth_path: Path | None = None,
        uplink: tuple[str, int] | None = None,
    ) -> None:
        """`start_at`: scenario time at the clock's start (e.g. jump to the flood peak);
        `truth_path`: where the ground truth goes on exit (default {workdir}/truth.jsonl);
        `uplink`: the broker's (host, port): serve an uplink proxy to it that carries out the
        scenario's link-loss faults (simulators/uplink.py)."""
        self.scenario = scenario
        self.clock = clock
        self.workdir = Path(workdir)
        self.host = host
        self.truth_path = truth_path or self.workdir / "truth.jsonl"
        self.devices: dict[str, VirtualDevice] = build_devices(scenario, load_profiles(profiles_dir))
        self._start_at = start_at
        self._origin = (clock.start if isinstance(clock, ScaledClock) else clock.now()) - start_at
        self._tcp: list[ModbusTcpServer] = []
        self._rtu: list[ModbusRtuServer] = []
        self._ascii: list[AsciiSerialServer] = []
        self._uplink_target = uplink
        self.uplink: UplinkProxy | None = None
        self._served_before = 0  # by servers already closed

    @property
    def origin(self) -> float:
        """Clock time (epoch seconds) of scenario time 0."""
        return self._origin

    def scenario_time(self) -> float:
        return self.clock.now() - self._origin

    async def __aenter__(self) -> Endpoints:
        if not isinstance(self.clock, ScaledClock):
            self._origin = self.clock.now() - self._start_at
        tcp: dict[str, tuple[str, int]] = {}
        serial: dict[str, str] = {}
        try:
            for bus in self.scenario.buses:
                on_bus = [d for d in self.devices.values() if d.spec.bus == bus.id]
                link = self.workdir / "dev" / bus.id
                if bus.type == "ascii_serial":
                    for dev in on_bus:
                        assert isinstance(dev, AsciiDevice)
                        server = AsciiSerialServer(dev, link, self.clock, self.scenario_time)
                        self._ascii.append(server)
                        serial[bus.id] = str(server.start())
                    continue
                slaves = ModbusSlaves(
                    {d.spec.unit_id: RegisterBank(d) for d in on_bus if d.spec.unit_id is not None},
                    self.scenario_time,
                )
                if bus.type == "modbus_tcp":
                    tcp_server = ModbusTcpServer(slaves, self.host, bus.port or 0)
                    self._tcp.append(tcp_server)
                    tcp[bus.id] = await tcp_server.start()
                else:
                    rtu = ModbusRtuServer(slaves, link)
                    self._rtu.append(rtu)
                    serial[bus.id] = str(rtu.start())
            uplink = None
            if self._uplink_target is not None:
                windows = [LinkWindow(f.start, f.end, f.mode) for f in self.scenario.link_losses()]
                self.uplink = UplinkProxy(
                    self._uplink_target, windows, self.clock, self.scenario_time, host=self.host
                )
                uplink = await self.uplink.start()
        except BaseException:
            await self._close()
            raise
        return Endpoints(tcp, serial, uplink)

    async def __aexit__(self, *exc: object) -> None:
        await self._close()
        self.write_truth()

    async def _close(self) -> None:
        self._served_before = self.requests_served
        for tcp in self._tcp:
            await tcp.close()
        for rtu in self._rtu:
            rtu.close()
        for asc in self._ascii:
            await asc.close()
        self._tcp, self._rtu, self._ascii = [], [], []
        if self.uplink is not None:
            await self.uplink.close()

    @property
    def requests_served(self) -> int:
        """Modbus requests answered (exceptions included) plus ASCII polls answered."""
        modbus: list[ModbusTcpServer | ModbusRtuServer] = [*self._tcp, *self._rtu]
        served = sum(s.slaves.requests_served for s in modbus)
        return self._served_before + served + sum(s.requests_served for s in self._ascii)

    def truth(self, device_id: str, kind: str, t: float) -> float:
        """Noise-free physical value of `kind` at clock time t (epoch seconds), in the point's unit."""
        return self.devices[device_id].truth(kind, t - self._origin)

    def faults_injected(self) -> dict[str, int]:
        """How many times each fault type was applied (requests hit, readings altered)."""
        total: dict[str, int] = {}
        for dev in self.devices.values():
            for name, n in dev.faults_injected.items():
                total[name] = total.get(name, 0) + n
        return total

    def write_truth(self, path: Path | None = None, step_s: float = TRUTH_STEP_S) -> Path:
        """Write the ground truth (simulators/truth.py) with this run's clock times."""
        records = scenario_truth(self.scenario, self.devices, self._origin, step_s)
        return write_truth(records, path or self.truth_path)
