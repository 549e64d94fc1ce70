"""The technician's on-site checklist: is this gateway ready to hand over?

`run_checks` goes through, in order: the config, the secret files, the system clock, every bus
(the port opens; with `scan`, which unit ids answer at which baud), every sensor read once with
its normal driver (the path of `bosai edge run --once`), and the broker (DNS, TCP, TLS with
verification, MQTT login with the gateway's credentials, then disconnect; nothing is published,
because the cloud watches the gateway's status topic).  Each step is a `CheckItem` whose detail
is written for someone in the field: what was seen, and for a FAIL what to do next.

It opens the serial ports itself, so it is run with the agent stopped; a port the agent holds is
reported as busy.  No secret is ever part of an item: files are named, never shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import socket
import ssl
import stat
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

import msgspec

from edge.agent import Agent
from edge.clocksync import clock_synchronized
from edge.config import (
    AsciiSerialBus,
    Bus,
    LoadedGateway,
    ModbusRtuBus,
    ModbusTcpBus,
    SensorConfig,
    config_hash,
)
from edge.profiles import Profile
from edge.scan import (
    PortError,
    Probe,
    Sweep,
    baud_order,
    connect_tcp,
    listen_ascii,
    open_serial,
    scan_rtu,
    scan_tcp,
    shown_line,
)
from wire.configfile import ConfigError, read_secret, resolve
from wire.mqttconf import MqttConfig, read_password, tls_context
from wire.telemetry import Quality, Reading

DEFAULT_BAUDS = (9600, 19200, 38400, 4800, 115200)
DEFAULT_UNITS = range(1, 17)
TCP_CONNECT_TIMEOUT = 3.0  # seconds, at least: a cellular or busy plant network can be slow
CERT_EXPIRY_WARN_DAYS = 14
AUTH_REFUSED = frozenset({0x86, 0x87, 0x8A, 0x8C})  # bad credentials, not authorized, banned, bad method

OnItem = Callable[["CheckItem"], None]
log = logging.getLogger(__name__)


class Status(enum.Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class CheckItem:
    section: str  # "config", "secrets", "clock", "bus plc-tcp", "sensor river-radar-01", "broker"
    name: str  # short: "answers", "TLS handshake", "login", ...
    status: Status
    detail: str  # for a technician in the field: what was seen, and for FAIL what to do next


class _Checklist:
    """Collects items in order and hands each to `on_item` as soon as it is known."""

    def __init__(self, on_item: OnItem | None) -> None:
        self.items: list[CheckItem] = []
        self._on_item = on_item

    def add(self, section: str, name: str, status: Status, detail: str) -> CheckItem:
        item = CheckItem(section, name, status, detail)
        self.items.append(item)
        if self._on_item is not None:
            self._on_item(item)
        return item


async def run_checks(
    loaded: LoadedGateway,
    *,
    scan: bool = True,
    scan_bauds: Sequence[int] = DEFAULT_BAUDS,
    scan_units: Sequence[int] = DEFAULT_UNITS,
    broker_timeout: float = 10.0,
    on_item: OnItem | None = None,
) -> list[CheckItem]:
    """The whole checklist, in order; `on_item` sees each item as it completes."""
    out = _Checklist(on_item)
    _check_config(loaded, out)
    _check_secrets(loaded, out)
    _check_clock(out)
    usable: set[str] = set()
    for bus in loaded.config.buses:
        if await _check_bus(loaded, bus, out, scan=scan, bauds=scan_bauds, units=scan_units):
            usable.add(bus.id)
    await _check_sensors(loaded, usable, out)
    await _check_broker(loaded, broker_timeout, out)
    return out.items


async def check_broker(
    loaded: LoadedGateway, *, timeout: float = 10.0, on_item: OnItem | None = None
) -> list[CheckItem]:
    """Only the broker part of the checklist: DNS, TCP, TLS, login."""
    out = _Checklist(on_item)
    await _check_broker(loaded, timeout, out)
    return out.items


# -- config, secrets, clock ---------------------------------------------------------------------


def _check_config(loaded: LoadedGateway, out: _Checklist) -> None:
    cfg = loaded.config
    out.add(
        "config",
        "valid",
        Status.PASS,
        f"gateway {cfg.gateway}, tenant {cfg.tenant}: {_count(len(cfg.sensors), 'sensor')} on "
        f"{_count(len(cfg.buses), 'bus', 'buses')}, config hash {config_hash(loaded)}",
    )


def _check_secrets(loaded: LoadedGateway, out: _Checklist) -> None:
    mqtt = loaded.config.mqtt
    secrets = [
        ("password file", "mqtt: field 'password_file'", mqtt.password_file),
        ("client key", "mqtt: tls: field 'key_file'", mqtt.tls.key_file),
    ]
    if all(file is None for _, _, file in secrets):
        out.add(
            "secrets",
            "credentials",
            Status.WARN,
            "no password file and no client key configured: the gateway logs in without credentials, "
            "which a production broker refuses",
        )
        return
    for name, where, file in secrets:
        if file is None:
            continue
        try:
            read_secret(loaded.path, where, file)  # mode and content checks; the value is dropped
        except ConfigError as exc:
            out.add("secrets", name, Status.FAIL, exc.message)
            continue
        path = resolve(loaded.path, file)
        mode = stat.filemode(path.stat().st_mode)
        out.add("secrets", name, Status.PASS, f"{path}: present, readable by its owner only ({mode})")


def _check_clock(out: _Checklist) -> None:
    synced = clock_synchronized()
    if synced is True:
        out.add("clock", "synchronized", Status.PASS, "the system clock is synchronized (NTP or GPS)")
    elif synced is False:
        out.add(
            "clock",
            "synchronized",
            Status.WARN,
            "the system clock is not synchronized: timestamps may be refused by the cloud; check NTP "
            "('timedatectl status') or the GPS receiver",
        )
    else:
        out.add(
            "clock", "synchronized", Status.SKIP, "cannot tell on this system whether the clock is synced"
        )


# -- buses --------------------------------------------------------------------------------------


async def _check_bus(
    loaded: LoadedGateway,
    bus: Bus,
    out: _Checklist,
    *,
    scan: bool,
    bauds: Sequence[int],
    units: Sequence[int],
) -> bool:
    """Items for one bus; True if its port could be opened (its sensors are worth reading)."""
    section = f"bus {bus.id}"
    sensors = [s for s in loaded.config.sensors if s.bus == bus.id]
    try:
        if isinstance(bus, ModbusTcpBus):
            took = await connect_tcp(bus.host, bus.port, max(TCP_CONNECT_TIMEOUT, bus.timeout))
            out.add(
                section, "connects", Status.PASS, f"{bus.host}:{bus.port} answered in {took * 1000:.0f} ms"
            )
        else:
            await open_serial(bus)
            out.add(section, "port opens", Status.PASS, f"{bus.port} at {bus.baudrate} baud {_framing(bus)}")
    except PortError as exc:
        out.add(section, "connects" if isinstance(bus, ModbusTcpBus) else "port opens", Status.FAIL, str(exc))
        return False
    if not scan:
        return True
    try:
        if isinstance(bus, ModbusRtuBus):
            await _scan_rtu(bus, sensors, bauds, units, out)
        elif isinstance(bus, ModbusTcpBus):
            await _scan_tcp(bus, sensors, units, out)
        else:
            await _check_ascii_line(loaded, bus, sensors, bauds, out)
    except PortError as exc:
        out.add(section, "scan", Status.FAIL, str(exc))
    except Exception as exc:  # a bug in the scan must not cost the technician the rest of the list
        log.exception("bus %s: the scan failed", bus.id)
        out.add(section, "scan", Status.FAIL, f"the scan failed unexpectedly ({exc!r}); please report this")
    return True


async def _scan_rtu(
    bus: ModbusRtuBus,
    sensors: list[SensorConfig],
    bauds: Sequence[int],
    units: Sequence[int],
    out: _Checklist,
) -> None:
    section = f"bus {bus.id}"
    configured = [s.unit_id for s in sensors if s.unit_id is not None]

    def report_sweep(sweep: Sweep) -> None:
        if sweep.answered:
            out.add(
                section, f"answers at {sweep.baudrate} baud", Status.PASS, _units_found(sweep, configured)
            )

    result = await scan_rtu(bus, bauds, units, configured, on_sweep=report_sweep)
    at_config = result.sweeps[0]
    others_found = sorted({u for s in result.sweeps for u in s.answered} - set(configured))
    for unit in sorted(set(configured)):
        if unit in at_config.answered:
            continue
        elsewhere = result.where(unit)
        if elsewhere:
            if at_config.answered:  # the others speak the configured speed: the device is wrong
                todo = f"set the device to {bus.baudrate} baud (the other units on this bus answer at it)"
            else:
                todo = f"set 'baudrate: {elsewhere[0]}' on bus {bus.id}, or the device to {bus.baudrate}"
            detail = f"unit {unit} answers at {_join(elsewhere)} baud, config says {bus.baudrate}: {todo}"
        elif at_config.results.get(unit) is Probe.GARBLED:
            detail = (
                f"unit {unit}: garbled answers at {bus.baudrate} baud: check parity and stop bits "
                f"(config says {_framing(bus)}), termination and grounding; two devices with the same "
                "unit id also do this"
            )
        else:
            tried = _join([s.baudrate for s in result.sweeps if s.baudrate is not None])
            detail = (
                f"unit {unit} does not answer at any speed tried ({tried} baud): check power, wiring "
                "(A/B swapped?), termination and the unit id set on the device"
            )
            if others_found:
                one = len(others_found) == 1
                detail += (
                    f"; {_unit_list(others_found)} {'answers' if one else 'answer'} but "
                    f"{'is' if one else 'are'} not in the config: is {'that' if one else 'one of them'} "
                    "this device?"
                )
        out.add(section, f"unit {unit}", Status.FAIL, detail)
    bauds_tried = _join([s.baudrate for s in result.sweeps if s.baudrate is not None])
    coverage = f"tried {bauds_tried} baud, {_unit_list(at_config.tried)} in {result.seconds:.1f} s"
    garbled = [s.baudrate for s in result.sweeps if s.units(Probe.GARBLED) and s.baudrate is not None]
    if garbled:
        coverage += f"; garbled answers at {_join(garbled)} baud (parity or stop bits may differ)"
    anything = any(s.answered for s in result.sweeps)
    if anything:
        out.add(section, "scan", Status.PASS, coverage)
    else:
        out.add(section, "scan", Status.WARN, f"no device answers: {coverage}")


async def _scan_tcp(
    bus: ModbusTcpBus, sensors: list[SensorConfig], units: Sequence[int], out: _Checklist
) -> None:
    section = f"bus {bus.id}"
    configured = [s.unit_id for s in sensors if s.unit_id is not None]
    sweep = await scan_tcp(bus, [*units, *configured])
    if sweep.answered:
        out.add(section, "answers", Status.PASS, _units_found(sweep, configured))
    else:
        out.add(section, "answers", Status.WARN, f"no unit answers ({_unit_list(sweep.tried)} tried)")
    for unit in sorted(set(configured)):
        outcome = sweep.results.get(unit)
        if outcome is Probe.ANSWERED:
            continue
        if outcome is Probe.NO_TARGET:
            detail = (
                f"the converter at {bus.host} says unit {unit} behind it does not answer: check the "
                "RS-485 side (power, wiring, baud rate and the unit id set on the device)"
            )
        elif outcome is Probe.GARBLED:
            detail = f"unit {unit}: malformed answer from {bus.host}:{bus.port}: is this a Modbus TCP device?"
        else:
            detail = (
                f"no answer from unit {unit} at {bus.host}:{bus.port} within {bus.timeout:g} s: check the "
                "unit id set on the device (and behind a converter: its serial side)"
            )
        out.add(section, f"unit {unit}", Status.FAIL, detail)


async def _check_ascii_line(
    loaded: LoadedGateway,
    bus: AsciiSerialBus,
    sensors: list[SensorConfig],
    bauds: Sequence[int],
    out: _Checklist,
) -> None:
    section = f"bus {bus.id}"
    fmt = loaded.profiles[sensors[0].profile].ascii if sensors else None
    if fmt is None:
        out.add(section, "line arrives", Status.SKIP, "no sensor on this bus, so no line format to check")
        return
    first = await asyncio.to_thread(listen_ascii, bus, fmt, bus.baudrate, bus.timeout)
    if first.clean is not None:
        detail = f"a clean line at {bus.baudrate} baud: {shown_line(first.clean)}"
        out.add(section, "line arrives", Status.PASS, detail)
        return
    tried = [bus.baudrate]
    for baud in baud_order(bus.baudrate, bauds)[1:]:
        probe = await asyncio.to_thread(listen_ascii, bus, fmt, baud, bus.timeout)
        tried.append(baud)
        if probe.clean is not None:
            out.add(
                section,
                "line arrives",
                Status.FAIL,
                f"a clean line arrives at {baud} baud, config says {bus.baudrate}: set 'baudrate: {baud}' "
                f"on bus {bus.id} (seen: {shown_line(probe.clean)})",
            )
            return
    if first.garbled:
        detail = (
            f"only garbled lines at {bus.baudrate} baud: check baud rate, parity and data bits (config says "
            f"{_framing(bus)}), or whether profile {sensors[0].profile} matches this device's output"
        )
    else:
        detail = (
            f"nothing arrives at {bus.baudrate} baud within {bus.timeout:g} s: check the cable (TX/RX "
            "crossed?) and power"
        )
        if fmt.mode == "polled":
            detail += f", and that the device answers the poll command {fmt.poll_command!r}"
    if len(tried) > 1:
        detail += f" (also tried {_join(tried[1:])} baud: no clean line)"
    out.add(section, "line arrives", Status.FAIL, detail)


# -- sensors ------------------------------------------------------------------------------------


async def _check_sensors(loaded: LoadedGateway, usable: set[str], out: _Checklist) -> None:
    """Every sensor once with its normal driver, the path of `bosai edge run --once`."""
    cfg = loaded.config
    readable = [s for s in cfg.sensors if s.bus in usable]
    by_sensor: dict[str, list[Reading]] = {}
    if readable:
        subset = LoadedGateway(loaded.path, msgspec.structs.replace(cfg, sensors=readable), loaded.profiles)
        for r in await Agent(subset).read_once():
            by_sensor.setdefault(r.sensor, []).append(r)
    for s in cfg.sensors:
        section = f"sensor {s.id}"
        if s.bus not in usable:
            out.add(section, "reads", Status.SKIP, f"not read: bus {s.bus} could not be opened (see above)")
            continue
        readings = by_sensor.get(s.id, [])
        status, detail = _judge_readings(s, loaded.bus(s.bus), loaded.profiles[s.profile], readings)
        out.add(section, "reads", status, detail)


_COMM_FAILURES = (Quality.TIMEOUT, Quality.CRC, Quality.EXCEPTION, Quality.ERROR)


def _judge_readings(
    sensor: SensorConfig, bus: Bus, profile: Profile, readings: list[Reading]
) -> tuple[Status, str]:
    if not readings:
        return Status.FAIL, "the driver returned no readings (a bug: please report it)"
    values = ", ".join(
        f"{r.kind} {r.value:.6g} {r.unit}" if r.value is not None else f"{r.kind} {r.q.value}"
        for r in readings
    )
    bad = [r.q for r in readings if r.q is not Quality.OK]
    if not bad:
        return Status.PASS, f"{values}; quality ok"
    comm = [q for q in bad if q in _COMM_FAILURES]
    flag = comm[0] if comm else bad[0]
    status = Status.FAIL if comm else Status.WARN
    if len(bad) == len(readings) and len(set(bad)) == 1:
        values = f"no value ({flag.value})"  # one flag for every point: say it once
    return status, f"{values}: {_reading_hint(flag, sensor, bus, profile)}"


def _reading_hint(q: Quality, sensor: SensorConfig, bus: Bus, profile: Profile) -> str:
    if isinstance(bus, ModbusRtuBus):
        where = f"unit {sensor.unit_id} on {bus.port} at {bus.baudrate} baud"
    elif isinstance(bus, ModbusTcpBus):
        where = f"unit {sensor.unit_id} via {bus.host}:{bus.port}"
    else:
        where = f"{bus.port} at {bus.baudrate} baud"
    modbus = not isinstance(bus, AsciiSerialBus)
    if q is Quality.TIMEOUT:
        if modbus:
            return (
                f"no answer from {where} within {bus.timeout:g} s: check the unit id and baud rate (see the "
                "bus scan above), wiring (A/B swapped?) and power"
            )
        hint = f"no line from {where} within {bus.timeout:g} s: check the cable (TX/RX crossed?), power, baud"
        if profile.ascii is not None and profile.ascii.mode == "polled":
            hint += f", and that the device answers the poll command {profile.ascii.poll_command!r}"
        return hint
    if q is Quality.CRC:
        if modbus:
            return (
                f"garbled answers (CRC error) from {where}: check parity and stop bits, termination and "
                "grounding; two devices with the same unit id also do this"
            )
        return (
            f"only garbled lines from {where}: check baud rate, parity and data bits, or whether profile "
            f"{profile.model} matches this device's output"
        )
    if q is Quality.EXCEPTION:
        return (
            f"{where} answered with a Modbus exception: the registers of profile {profile.model} do not "
            "exist on this device (wrong profile or firmware?), or a converter reports its unit silent"
        )
    if q is Quality.ERROR:
        return f"the bus could not be used ({where}): see the bus checks above"
    if q is Quality.INVALID:
        return (
            "the device answers but marks its value invalid: is the sensor obstructed, iced over or still "
            "warming up?"
        )
    return (
        f"the decoded value is outside the physical range of profile {profile.model}: wrong profile "
        "(scaling, word order) or mounting height?"
    )


# -- broker -------------------------------------------------------------------------------------


async def _check_broker(loaded: LoadedGateway, timeout: float, out: _Checklist) -> None:
    cfg = loaded.config.mqtt
    host, port = cfg.host, cfg.port
    skip_rest = ["TCP connect", "TLS handshake" if cfg.use_tls else "TLS", "login"]

    def skip(names: list[str], why: str) -> None:
        for name in names:
            out.add("broker", name, Status.SKIP, f"not tried: {why}")

    try:
        address = await _resolve(host, port, timeout)
    except OSError as exc:
        out.add("broker", "DNS", Status.FAIL, _dns_problem(host, exc, timeout))
        skip(skip_rest, "the host name does not resolve")
        return
    shown = "is an IP address (no lookup needed)" if address == host else f"resolves to {address}"
    out.add("broker", "DNS", Status.PASS, f"{host} {shown}")

    try:
        took = await asyncio.to_thread(_tcp_connect, address, port, timeout)
    except OSError as exc:
        out.add("broker", "TCP connect", Status.FAIL, _tcp_problem(address, port, exc, timeout))
        skip(skip_rest[1:], "no TCP connection")
        return
    out.add("broker", "TCP connect", Status.PASS, f"{address}:{port} answered in {took * 1000:.0f} ms")

    context: ssl.SSLContext | None = None
    if cfg.use_tls:
        try:
            context = tls_context(cfg.tls, loaded.path)
        except ConfigError as exc:
            out.add("broker", "TLS handshake", Status.FAIL, exc.message)
            skip(["login"], "TLS is not set up")
            return
        try:
            seen = await asyncio.to_thread(_tls_handshake, context, address, host, port, timeout)
        except (OSError, ssl.SSLError) as exc:
            out.add("broker", "TLS handshake", Status.FAIL, _tls_problem(exc, cfg, loaded.path, timeout))
            skip(["login"], "the TLS handshake failed")
            return
        status, detail = _judge_certificate(seen, cfg)
        out.add("broker", "TLS handshake", status, detail)
    else:
        out.add(
            "broker",
            "TLS",
            Status.WARN,
            "plain mqtt:// (allow_insecure): the password and all data cross the link in clear; use "
            "mqtts:// in the field",
        )

    try:
        password = read_password(cfg, loaded.path)
    except ConfigError:
        skip(["login"], "the password file cannot be used (see secrets above)")
        return
    client_id = _check_client_id(cfg, loaded)
    result = await asyncio.to_thread(_mqtt_login, cfg, host, port, password, context, client_id, timeout)
    out.add("broker", "login", *result)


async def _resolve(host: str, port: int, timeout: float) -> str:
    """The first address of `host` (an IP literal is returned as it is); OSError."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return host
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise OSError("timed out") from None
    address = infos[0][4][0]
    assert isinstance(address, str)
    return address


def _dns_problem(host: str, exc: OSError, timeout: float) -> str:
    why = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
    return (
        f"cannot resolve {host} ({why}, {timeout:g} s allowed): check the uplink (is the mobile modem "
        "connected?) and the DNS server ('resolvectl status')"
    )


def _tcp_connect(address: str, port: int, timeout: float) -> float:
    start = time.monotonic()
    with socket.create_connection((address, port), timeout=timeout):
        return time.monotonic() - start


def _tcp_problem(address: str, port: int, exc: OSError, timeout: float) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {address}:{port}: the broker is down, or listens on another port"
    if isinstance(exc, TimeoutError):
        return (
            f"no answer from {address}:{port} within {timeout:g} s: the uplink is down, or a firewall "
            f"(or the mobile operator) blocks port {port}"
        )
    return f"cannot connect to {address}:{port}: {exc.strerror or exc}"


@dataclass(frozen=True)
class _Handshake:
    version: str
    cert: dict[str, object]  # getpeercert(): empty when not verified


def _tls_handshake(context: ssl.SSLContext, address: str, host: str, port: int, timeout: float) -> _Handshake:
    with (
        socket.create_connection((address, port), timeout=timeout) as sock,
        context.wrap_socket(sock, server_hostname=host) as tls,
    ):
        return _Handshake(tls.version() or "TLS", dict(tls.getpeercert() or {}))


def _tls_problem(exc: BaseException, cfg: MqttConfig, config_path: str, timeout: float) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = exc.verify_message or str(exc)
        lowered = message.lower()
        ca = resolve(config_path, cfg.tls.ca_file) if cfg.tls.ca_file else None
        if "hostname mismatch" in lowered or "ip address mismatch" in lowered:
            hint = (
                f"the certificate is not valid for {cfg.host}: use the name the broker's certificate was "
                "issued for in mqtt.url"
            )
        elif "expired" in lowered:
            hint = "the broker's certificate has expired (or this gateway's clock is wrong: see clock above)"
        elif "not yet valid" in lowered:
            hint = (
                "the certificate is not valid yet: this gateway's clock is probably wrong (see clock above)"
            )
        elif ca is not None:
            hint = (
                f"the broker's certificate is not signed by the CA in {ca}: the bundle's CA file does not "
                "belong to this broker (or something on the path intercepts TLS)"
            )
        else:
            hint = (
                "the broker's certificate is not signed by a CA in the system trust store: the config "
                "should name the project CA in mqtt.tls.ca_file"
            )
        return f"certificate verify failed: {message}: {hint}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no TLS answer within {timeout:g} s: is port {cfg.port} the broker's TLS port?"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        return f"TLS handshake failed ({reason}): is port {cfg.port} the broker's TLS (mqtts) port?"
    return f"the connection broke during the TLS handshake: {exc}"


def _judge_certificate(seen: _Handshake, cfg: MqttConfig) -> tuple[Status, str]:
    if cfg.tls.insecure_skip_verify:
        return Status.WARN, (
            f"{seen.version}, but the certificate is NOT verified (insecure_skip_verify): anyone on the "
            "path can impersonate the broker and read the credentials; remove it after the bench test"
        )
    subject = _name(seen.cert.get("subject"))
    issuer = _name(seen.cert.get("issuer"))
    not_after = seen.cert.get("notAfter")
    expiry = ""
    status = Status.PASS
    if isinstance(not_after, str):
        ends = ssl.cert_time_to_seconds(not_after)
        days = (ends - time.time()) / 86400
        expiry = f", valid until {datetime.fromtimestamp(ends, UTC):%Y-%m-%d} ({days:.0f} days)"
        if days < CERT_EXPIRY_WARN_DAYS:
            status = Status.WARN
            expiry += ": renew the broker's certificate soon"
    return status, f"{seen.version}, verified: certificate {subject} issued by {issuer}{expiry}"


def _name(rdns: object) -> str:
    """`CN=broker.example.jp, O=...` from getpeercert()'s nested tuples."""
    parts: list[str] = []
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C"}
    if isinstance(rdns, tuple):
        for rdn in rdns:
            for key, value in rdn:
                parts.append(f"{short.get(key, key)}={value}")
    return ", ".join(parts) or "(no subject)"


def _check_client_id(cfg: MqttConfig, loaded: LoadedGateway) -> str:
    # Not the agent's own client id: if the agent were still connected, the broker would drop it
    # for ours and publish its Last Will ("offline") to the status topic the cloud watches.
    base = cfg.client_id or f"bosai-{loaded.config.tenant}-{loaded.config.gateway}"
    return f"{base}-check"


def _mqtt_login(
    cfg: MqttConfig,
    host: str,
    port: int,
    password: str | None,
    context: ssl.SSLContext | None,
    client_id: str,
    timeout: float,
) -> tuple[Status, str]:
    """CONNECT with the gateway's credentials, wait for CONNACK, DISCONNECT.  Publishes nothing
    (and sets no Last Will).  Blocking: run it in a thread."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
    from paho.mqtt.reasoncodes import ReasonCode

    v5 = cfg.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    )
    if cfg.username is not None or password is not None:
        client.username_pw_set(cfg.username, password)
    if context is not None:
        client.tls_set_context(context)
    client.connect_timeout = timeout
    answers: list[ReasonCode] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: answers.append(rc)
    who = f"as {cfg.username!r}" if cfg.username is not None else "without a user name"
    try:
        client.connect(host, port, keepalive=cfg.keepalive)
        deadline = time.monotonic() + timeout
        while not answers and time.monotonic() < deadline:
            if client.loop(timeout=0.1) not in (MQTTErrorCode.MQTT_ERR_SUCCESS,):
                break
    except (OSError, ssl.SSLError) as exc:
        return Status.FAIL, f"the MQTT connection failed: {exc}"
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
            client.loop(timeout=0.1)
    if not answers:
        return Status.FAIL, (
            f"no CONNACK within {timeout:g} s (the broker closed the connection or stayed silent): "
            "is this an MQTT broker, and does it accept this client id?"
        )
    rc = answers[0]
    said = rc.getName()
    if not rc.is_failure:
        return Status.PASS, f"logged in {who} (MQTT {cfg.protocol}), then disconnected without publishing"
    if rc.value in AUTH_REFUSED:
        return Status.FAIL, (
            "broker refused the login (not authorized): the credentials may be revoked or mistyped; ask "
            f"provisioning for a new bundle (broker said: {said}; user {cfg.username!r})"
        )
    return Status.FAIL, f"broker refused the connection: {said}"


# -- output -------------------------------------------------------------------------------------

_COLORS = {
    Status.PASS: "\033[32m",
    Status.WARN: "\033[33m",
    Status.FAIL: "\033[1;31m",
    Status.SKIP: "\033[2m",
}
_RESET = "\033[0m"


def column_widths(loaded: LoadedGateway, scan_bauds: Sequence[int] = DEFAULT_BAUDS) -> tuple[int, int]:
    """Section and name widths that fit every item of this gateway's checklist (for printing
    items one by one as they complete, aligned)."""
    cfg = loaded.config
    sections = ["secrets", *(f"bus {b.id}" for b in cfg.buses), *(f"sensor {s.id}" for s in cfg.sensors)]
    bauds = [*scan_bauds, *(b.baudrate for b in cfg.buses if not isinstance(b, ModbusTcpBus))]
    names = ["TLS handshake", *(f"answers at {b} baud" for b in bauds)]
    return max(map(len, sections)), max(map(len, names))


def format_item(item: CheckItem, *, color: bool, section_width: int = 0, name_width: int = 0) -> str:
    word = item.status.value
    if color:
        word = f"{_COLORS[item.status]}{word}{_RESET}"
    return f"{word}  {item.section.ljust(section_width)}  {item.name.ljust(name_width)}  {item.detail}"


def counts(items: Sequence[CheckItem]) -> dict[str, int]:
    def n(status: Status) -> int:
        return sum(1 for i in items if i.status is status)

    return {
        "passed": n(Status.PASS),
        "failed": n(Status.FAIL),
        "warnings": n(Status.WARN),
        "skipped": n(Status.SKIP),
    }


def format_summary(items: Sequence[CheckItem], *, color: bool) -> str:
    """`12 passed, 1 failed, 1 warning` (warnings and skipped only when there are any)."""
    c = counts(items)
    parts = [f"{c['passed']} passed", f"{c['failed']} failed"]
    if c["warnings"]:
        parts.append(_count(c["warnings"], "warning"))
    if c["skipped"]:
        parts.append(f"{c['skipped']} skipped")
    line = ", ".join(parts)
    if color:
        line = f"{_COLORS[Status.FAIL if c['failed'] else Status.PASS]}{line}{_RESET}"
    return line


def format_checklist(items: Sequence[CheckItem], *, color: bool) -> str:
    """Aligned columns STATUS SECTION CHECK DETAIL (status as a word, colour only added), then a
    blank line and the summary."""
    section_width = max((len(i.section) for i in items), default=0)
    name_width = max((len(i.name) for i in items), default=0)
    lines = [format_item(i, color=color, section_width=section_width, name_width=name_width) for i in items]
    return "\n".join([*lines, "", format_summary(items, color=color)])


class _JsonItem(msgspec.Struct):
    section: str
    name: str
    status: str
    detail: str


class _JsonChecklist(msgspec.Struct):
    ok: bool
    summary: dict[str, int]
    items: list[_JsonItem]


def checklist_json(items: Sequence[CheckItem]) -> str:
    """`{"ok": ..., "summary": {"passed": ...}, "items": [{"section", "name", "status", "detail"}]}`"""
    doc = _JsonChecklist(
        ok=not any(i.status is Status.FAIL for i in items),
        summary=counts(items),
        items=[_JsonItem(i.section, i.name, i.status.value, i.detail) for i in items],
    )
    return msgspec.json.format(msgspec.json.encode(doc).decode(), indent=2)


def exit_code(items: Sequence[CheckItem]) -> int:
    """0 if nothing failed, 1 otherwise."""
    return 1 if any(i.status is Status.FAIL for i in items) else 0


def run_and_print(
    loaded: LoadedGateway,
    *,
    scan: bool = True,
    scan_bauds: Sequence[int] = DEFAULT_BAUDS,
    scan_units: Sequence[int] = DEFAULT_UNITS,
    broker_timeout: float = 10.0,
    as_json: bool = False,
    color: bool | None = None,
    stream: TextIO | None = None,
    title: str | None = None,
) -> int:
    """Run the checklist and print it (items as they complete, or JSON at the end); the exit
    code: 0 if nothing failed, 1 otherwise.  `color` None: when writing to a terminal.  `title`:
    the first line of the text output (default: gateway, tenant and config path)."""
    out = stream if stream is not None else sys.stdout
    if color is None:
        color = not as_json and out.isatty()
    on_item: OnItem | None = None
    if not as_json:
        cfg = loaded.config
        if title is None:
            title = f"on-site check of gateway {cfg.gateway} (tenant {cfg.tenant}), config {loaded.path}"
        print(title, file=out)
        widths = column_widths(loaded, scan_bauds)

        def on_item(item: CheckItem) -> None:
            line = format_item(item, color=bool(color), section_width=widths[0], name_width=widths[1])
            print(line, file=out, flush=True)

    with _agent_logs_quiet():
        items = asyncio.run(
            run_checks(
                loaded,
                scan=scan,
                scan_bauds=scan_bauds,
                scan_units=scan_units,
                broker_timeout=broker_timeout,
                on_item=on_item,
            )
        )
    if as_json:
        print(checklist_json(items), file=out)
    else:
        print(file=out)
        print(format_summary(items, color=bool(color)), file=out)
    return exit_code(items)


@contextlib.contextmanager
def _agent_logs_quiet() -> Iterator[None]:
    """The poller's "sensor X cannot read" warnings repeat checklist items; hide them unless
    the log level is DEBUG (errors, such as a driver bug, still show)."""
    poller = logging.getLogger("edge.poller")
    before = poller.level
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        poller.setLevel(logging.ERROR)
    try:
        yield
    finally:
        poller.setLevel(before)


# -- command-line values and wording --------------------------------------------------------------


def parse_bauds(text: str) -> list[int]:
    """ "9600,19200" -> [9600, 19200]; ValueError in words."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not 50 <= int(part) <= 4_000_000:
            raise ValueError(f"{part!r} is not a baud rate (e.g. 9600,19200)")
        out.append(int(part))
    return list(dict.fromkeys(out))


def parse_units(text: str) -> list[int]:
    """ "1-16,20" -> [1, ..., 16, 20] (Modbus unit ids 0-247); ValueError in words."""
    out: set[int] = set()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"{part.strip()!r} is not a unit id or range (e.g. 1-16,20)")
        first, last = int(lo), int(hi) if sep else int(lo)
        if first > last or last > 247:
            raise ValueError(f"{part.strip()!r}: unit ids run from 0 to 247, low to high")
        out.update(range(first, last + 1))
    return sorted(out)


def _framing(bus: ModbusRtuBus | AsciiSerialBus) -> str:
    return f"{bus.bytesize}{bus.parity}{bus.stopbits}"


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _join(values: Sequence[object]) -> str:
    return ", ".join(str(v) for v in values)


def _unit_list(units: Sequence[int]) -> str:
    """`units 1-16, 20` / `units 2, 3, 4` / `unit 4`: four or more consecutive ids as a range."""
    ids = sorted(set(units))
    if not ids:
        return "no units"
    runs: list[str] = []
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        if j - i >= 3:  # four or more in a row
            runs.append(f"{ids[i]}-{ids[j]}")
        else:
            runs += [str(u) for u in ids[i : j + 1]]
        i = j + 1
    return f"{'unit' if len(ids) == 1 else 'units'} {', '.join(runs)}"


def _units_found(sweep: Sweep, configured: Sequence[int]) -> str:
    found = sweep.answered
    known = [u for u in found if u in configured]
    extra = [u for u in found if u not in configured]
    text = _unit_list(known) if known else "no configured unit"
    if extra:
        text += f" (not in the config: {_unit_list(extra)})"
    return text


__all__ = [
    "DEFAULT_BAUDS",
    "DEFAULT_UNITS",
    "CheckItem",
    "Status",
    "check_broker",
    "checklist_json",
    "column_widths",
    "exit_code",
    "format_checklist",
    "format_item",
    "format_summary",
    "parse_bauds",
    "parse_units",
    "run_and_print",
    "run_checks",
]
