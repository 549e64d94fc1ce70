"""The field side: every bus (the port opens; with a scan, which unit ids answer at which baud,
through edge/scan.py) and every sensor read once with its normal driver, each judged in words a
technician can act on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import msgspec

from edge.agent import Agent
from edge.check.items import Checklist, Status
from edge.check.output import join, unit_list
from edge.config import (
    AsciiSerialBus,
    Bus,
    LoadedGateway,
    ModbusRtuBus,
    ModbusTcpBus,
    SensorConfig,
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
from wire.telemetry import Quality, Reading

TCP_CONNECT_TIMEOUT = 3.0  # seconds, at least: a cellular or busy plant network can be slow

log = logging.getLogger(__name__)


# -- buses --------------------------------------------------------------------------------------


async def check_bus(
    loaded: LoadedGateway,
    bus: Bus,
    out: Checklist,
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
    out: Checklist,
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
            detail = f"unit {unit} answers at {join(elsewhere)} baud, config says {bus.baudrate}: {todo}"
        elif at_config.results.get(unit) is Probe.GARBLED:
            detail = (
                f"unit {unit}: garbled answers at {bus.baudrate} baud: check parity and stop bits "
                f"(config says {_framing(bus)}), termination and grounding; two devices with the same "
                "unit id also do this"
            )
        else:
            tried = join([s.baudrate for s in result.sweeps if s.baudrate is not None])
            detail = (
                f"unit {unit} does not answer at any speed tried ({tried} baud): check power, wiring "
                "(A/B swapped?), termination and the unit id set on the device"
            )
            if others_found:
                one = len(others_found) == 1
                detail += (
                    f"; {unit_list(others_found)} {'answers' if one else 'answer'} but "
                    f"{'is' if one else 'are'} not in the config: is {'that' if one else 'one of them'} "
                    "this device?"
                )
        out.add(section, f"unit {unit}", Status.FAIL, detail)
    bauds_tried = join([s.baudrate for s in result.sweeps if s.baudrate is not None])
    coverage = f"tried {bauds_tried} baud, {unit_list(at_config.tried)} in {result.seconds:.1f} s"
    garbled = [s.baudrate for s in result.sweeps if s.units(Probe.GARBLED) and s.baudrate is not None]
    if garbled:
        coverage += f"; garbled answers at {join(garbled)} baud (parity or stop bits may differ)"
    anything = any(s.answered for s in result.sweeps)
    if anything:
        out.add(section, "scan", Status.PASS, coverage)
    else:
        out.add(section, "scan", Status.WARN, f"no device answers: {coverage}")


async def _scan_tcp(
    bus: ModbusTcpBus, sensors: list[SensorConfig], units: Sequence[int], out: Checklist
) -> None:
    section = f"bus {bus.id}"
    configured = [s.unit_id for s in sensors if s.unit_id is not None]
    sweep = await scan_tcp(bus, [*units, *configured])
    if sweep.answered:
        out.add(section, "answers", Status.PASS, _units_found(sweep, configured))
    else:
        out.add(section, "answers", Status.WARN, f"no unit answers ({unit_list(sweep.tried)} tried)")
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
    out: Checklist,
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
        detail += f" (also tried {join(tried[1:])} baud: no clean line)"
    out.add(section, "line arrives", Status.FAIL, detail)


# -- sensors ------------------------------------------------------------------------------------


async def check_sensors(loaded: LoadedGateway, usable: set[str], out: Checklist) -> None:
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


# -- wording of bus settings and scan results ---------------------------------------------------


def _framing(bus: ModbusRtuBus | AsciiSerialBus) -> str:
    return f"{bus.bytesize}{bus.parity}{bus.stopbits}"


def _units_found(sweep: Sweep, configured: Sequence[int]) -> str:
    found = sweep.answered
    known = [u for u in found if u in configured]
    extra = [u for u in found if u not in configured]
    text = unit_list(known) if known else "no configured unit"
    if extra:
        text += f" (not in the config: {unit_list(extra)})"
    return text
