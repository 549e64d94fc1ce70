"""CRC-16/MODBUS, RTU request framing and the slave's PDU handling."""

from __future__ import annotations

import random
import struct

from bosai.paths import PROFILES_DIR
from edge.profiles import load_profiles
from simulators.devices import build_devices
from simulators.modbus_rtu import RequestFramer, crc16, with_crc
from simulators.modbus_slave import ModbusSlaves, RegisterBank
from simulators.runner import default_scenario_path, load_scenario

REQUEST = bytes.fromhex("01030000000A")


def test_crc_vector() -> None:
    assert with_crc(REQUEST) == REQUEST + bytes([0xC5, 0xCD])
    assert crc16(REQUEST) == 0xCDC5


def test_crc_of_a_frame_with_its_crc_is_zero() -> None:
    frame = with_crc(bytes.fromhex("0204000000 02".replace(" ", "")))
    assert crc16(frame) == 0


def test_framer_handles_partial_reads() -> None:
    framer = RequestFramer()
    frame = with_crc(REQUEST)
    assert framer.feed(frame[:3]) == []
    assert framer.feed(frame[3:7]) == []
    assert framer.feed(frame[7:] + frame[:1]) == [REQUEST]
    assert framer.feed(frame[1:]) == [REQUEST]


def test_framer_resyncs_after_garbage() -> None:
    framer = RequestFramer()
    other = with_crc(bytes.fromhex("030400000002"))
    stream = b"\x00\xff\x13" + with_crc(REQUEST) + b"\x55" * 11 + other + b"\x01\x03"
    assert framer.feed(stream) == [REQUEST, other[:-2]]


def test_framer_drops_corrupted_frame_and_keeps_the_next() -> None:
    framer = RequestFramer()
    bad = bytearray(with_crc(REQUEST))
    bad[4] ^= 0x01
    assert framer.feed(bytes(bad) + with_crc(REQUEST)) == [REQUEST]


def test_framer_on_random_bytes_byte_by_byte() -> None:
    rng = random.Random(1)
    framer = RequestFramer()
    frames = [
        with_crc(bytes([rng.randint(1, 5), 3]) + struct.pack(">HH", rng.randint(0, 9), 2)) for _ in range(20)
    ]
    stream = b"".join(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 5))) + f for f in frames)
    got = [out for b in stream for out in framer.feed(bytes([b]))]
    for f in frames:
        assert f[:-2] in got


def _slaves() -> ModbusSlaves:
    scenario = load_scenario(default_scenario_path("demo-storm"))
    devices = build_devices(scenario, load_profiles(PROFILES_DIR))
    banks = {
        d.spec.unit_id: RegisterBank(d)
        for d in devices.values()
        if d.spec.bus == "rs485-1" and d.spec.unit_id
    }
    return ModbusSlaves(banks, lambda: 6.5 * 3600)


def _pdu(slaves: ModbusSlaves, unit: int, request: bytes) -> bytes | None:
    """The response PDU, or None when no unit answers."""
    reply = slaves.handle(unit, request)
    return None if reply is None else reply.pdu


def test_slave_reads_and_exceptions() -> None:
    slaves = _slaves()
    # unit 4 (pressure-level-pt): decimals register 3, level int16 at 4
    resp = _pdu(slaves, 4, bytes([3]) + struct.pack(">HH", 3, 2))
    assert resp is not None and resp[:2] == bytes([3, 4])
    decimals, raw = struct.unpack(">hh", resp[2:])
    assert decimals == 3 and abs(raw / 1000 - 3.99) < 0.06
    assert _pdu(slaves, 4, bytes([4]) + struct.pack(">HH", 3, 2)) == bytes(
        [0x84, 0x02]
    )  # not an input register
    assert _pdu(slaves, 4, bytes([3]) + struct.pack(">HH", 5, 1)) == bytes([0x83, 0x02])  # unmapped address
    assert _pdu(slaves, 4, bytes([3]) + struct.pack(">HH", 3, 0)) == bytes([0x83, 0x03])  # count 0
    assert _pdu(slaves, 4, bytes([6]) + struct.pack(">HH", 4, 1)) == bytes([0x86, 0x01])  # write: unsupported
    assert _pdu(slaves, 9, bytes([3]) + struct.pack(">HH", 4, 1)) is None  # nobody is unit 9
    assert slaves.requests_served == 5


def test_slave_serves_both_registers_of_a_float_from_one_sample() -> None:
    slaves = _slaves()
    resp = _pdu(slaves, 3, bytes([4]) + struct.pack(">HH", 0, 4))  # tilt x, tilt y, temperature (BADC)
    assert resp is not None and resp[1] == 8
    x, y = struct.unpack(">hh", resp[2:6])
    b, a, d, c = resp[6:10]
    (temp,) = struct.unpack(">f", bytes([a, b, c, d]))
    assert 0.2 < x / 100 < 0.5 and -0.1 < y / 100 < 0
    assert -3 < temp < -1
