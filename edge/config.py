"""Gateway config: which buses, which sensors on them, where to publish.

Validated completely at load (types by msgspec, cross references here), so that a technician
sees every mistake before the agent touches a serial port.  Errors name file, entity, field.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from edge.outbox import DEFAULT_MAX_BYTES, DEFAULT_MAX_MESSAGES
from edge.profiles import Profile, load_profiles, points_of
from edge.report import ReportPolicy, policy_problems
from wire import configfile
from wire.configfile import ConfigError
from wire.ids import Ident
from wire.mqttconf import MqttConfig, check_url

Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class ModbusTcpBus(msgspec.Struct, tag="modbus_tcp", forbid_unknown_fields=True, frozen=True):
    id: Ident
    host: str
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 502
    timeout: Positive = 1.0  # seconds per request
    retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 1
    pause: NonNegative = 0.0  # seconds between requests on this bus


class ModbusRtuBus(msgspec.Struct, tag="modbus_rtu", forbid_unknown_fields=True, frozen=True):
    id: Ident
    port: str  # /dev/ttyUSB0, /dev/ttyS1, or a pty path in tests
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    timeout: Positive = 0.5
    retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 1
    pause: NonNegative = 0.05  # RS-485 turnaround and slave recovery time between requests


class AsciiSerialBus(msgspec.Struct, tag="ascii_serial", forbid_unknown_fields=True, frozen=True):
    id: Ident
    port: str
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    timeout: Positive = 2.0  # how long to wait for a (complete) answer
    pause: NonNegative = 0.0


Bus = ModbusTcpBus | ModbusRtuBus | AsciiSerialBus


class SensorConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: Ident
    profile: Ident  # model id of a file in the profiles folder
    bus: Ident
    site: Ident | None = None  # informational on the edge; the cloud registry is authoritative
    unit_id: Annotated[int, msgspec.Meta(ge=0, le=247)] | None = None  # Modbus slave / unit id
    interval: Positive = 60.0  # sampling interval, seconds
    mounting_height: Positive | None = None  # metres, for distance-to-depth snow sensors
    # Adaptive reporting (deadband, heartbeat, fast mode near a level); none: every sample is sent.
    report: ReportPolicy | None = None


class OutboxConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    path: str = "/var/lib/bosai/outbox.sqlite"  # relative paths are relative to this file
    # When an outage fills the outbox, the oldest normal messages are dropped (and counted),
    # urgent (fast-mode) ones last.  See edge/outbox.py.
    max_messages: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_MAX_MESSAGES
    max_bytes: Annotated[int, msgspec.Meta(ge=65536)] = DEFAULT_MAX_BYTES


class PublishConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # Readings are grouped into one message per `batch_interval` seconds (or `max_batch` readings).
    batch_interval: Positive = 1.0
    max_batch: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 200
    # Backlog after an outage is replayed at most this fast (messages/s) while live data goes first.
    replay_rate: Positive = 50.0
    # MQTT 5: keep a message the broker says nobody subscribed to, and send it again later.
    require_subscriber: bool = True
    health_interval: Positive = 60.0  # seconds between health messages


class GatewayConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    tenant: Ident
    gateway: Ident
    mqtt: MqttConfig
    buses: Annotated[list[Bus], msgspec.Meta(min_length=1)]
    sensors: Annotated[list[SensorConfig], msgspec.Meta(min_length=1)]
    outbox: OutboxConfig = OutboxConfig()
    publish: PublishConfig = PublishConfig()
    profiles_dir: str = "../profiles"  # relative to this file


class LoadedGateway(msgspec.Struct, frozen=True):
    """A validated config together with the profiles its sensors use."""

    path: str
    config: GatewayConfig
    profiles: dict[str, Profile]

    def bus(self, bus_id: str) -> Bus:
        return next(b for b in self.config.buses if b.id == bus_id)

    def resolve(self, p: str) -> Path:
        """A path from the config file: relative paths are relative to that file."""
        return configfile.resolve(self.path, p)


def config_hash(gateway: LoadedGateway) -> str:
    """A short fingerprint of what the agent runs: the config and the profiles its sensors use.

    Computed from the parsed values, not the file bytes, so comments and formatting do not
    change it, while any setting that changes behaviour does.
    """
    used = sorted({s.profile for s in gateway.config.sensors})
    canonical = msgspec.json.encode([gateway.config, [gateway.profiles[m] for m in used]])
    return "sha256:" + hashlib.sha256(canonical).hexdigest()[:16]


def load_gateway(path: str | Path) -> LoadedGateway:
    """Load and cross-check a gateway config; raise ConfigError naming file, entity, field."""
    path = Path(path)
    cfg = configfile.load(path, GatewayConfig)
    profiles_dir = (path.parent / cfg.profiles_dir).resolve()
    if not profiles_dir.is_dir():
        raise ConfigError(path, "field 'profiles_dir'", f"folder {profiles_dir} does not exist")
    profiles = load_profiles(profiles_dir)

    bus_by_id = configfile.index_by_id(path, "buses", cfg.buses)
    url_problem = check_url(cfg.mqtt)
    if url_problem:
        raise ConfigError(path, "mqtt: field 'url'", url_problem)

    configfile.index_by_id(path, "sensors", cfg.sensors)
    used_slaves: dict[tuple[str, int], str] = {}
    for i, s in enumerate(cfg.sensors):
        where = f"sensors[{i}] (id {s.id!r})"
        if s.bus not in bus_by_id:
            raise ConfigError(path, f"{where}: field 'bus'", f"no bus with id {s.bus!r}")
        if s.profile not in profiles:
            raise ConfigError(
                path, f"{where}: field 'profile'", f"no profile {s.profile!r} in {profiles_dir}"
            )
        prof = profiles[s.profile]
        bus = bus_by_id[s.bus]
        if prof.protocol == "modbus":
            if not isinstance(bus, ModbusTcpBus | ModbusRtuBus):
                raise ConfigError(path, f"{where}: field 'bus'", f"profile {prof.model!r} needs a Modbus bus")
            if s.unit_id is None:
                raise ConfigError(path, f"{where}: field 'unit_id'", "required for Modbus sensors")
            key = (s.bus, s.unit_id)
            if key in used_slaves:
                raise ConfigError(
                    path, f"{where}: field 'unit_id'", f"{s.unit_id} is already used by {used_slaves[key]!r}"
                )
            used_slaves[key] = s.id
        else:
            if not isinstance(bus, AsciiSerialBus):
                raise ConfigError(
                    path, f"{where}: field 'bus'", f"profile {prof.model!r} needs an ascii_serial bus"
                )
            if any(o.bus == s.bus for o in cfg.sensors[:i]):
                raise ConfigError(
                    path,
                    f"{where}: field 'bus'",
                    "an ASCII serial line serves one device (RS-232 is point to point)",
                )
        points = points_of(prof)
        if s.report is not None:
            kinds = [p.kind for p in points]
            for field, problem in policy_problems(s.report, kinds, s.interval):
                raise ConfigError(path, f"{where}: field {field!r}", problem)
        if any(p.distance_to_depth for p in points) and s.mounting_height is None:
            raise ConfigError(
                path,
                f"{where}: field 'mounting_height'",
                f"profile {prof.model!r} measures distance to the "
                "surface; give the sensor's height above the ground in metres",
            )
    return LoadedGateway(str(path), cfg, profiles)
