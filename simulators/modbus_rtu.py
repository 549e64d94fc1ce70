"""Modbus RTU slaves on a pseudo-terminal: several unit ids sharing one virtual RS-485 bus.

RTU frame: unit id (1) + PDU + CRC-16/MODBUS (2, low byte first).  Real slaves delimit frames by
3.5 character times of silence; a pty has no timing, so requests are framed by content instead:
FC3/FC4 requests (like every fixed-length request) are exactly 8 bytes, and a window is a frame
only if its CRC checks.  Partial reads wait for more bytes; garbage is skipped one byte at a time
until a CRC-valid frame lines up.  Frames for a unit not on this bus get no answer, as on a real
bus.  Variable-length requests (FC15/16) are not recognised, so they go unanswered.  A corrupted
CRC flips bits of the CRC's low byte; a slow unit's answer is written after its delay.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from simulators.modbus_slave import ModbusSlaves
from simulators.pty_link import PtyLink

REQUEST_LENGTH = 8


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (reflected poly 0x8005, init 0xFFFF).  Sent low byte first."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc


def with_crc(frame: bytes) -> bytes:
    return frame + crc16(frame).to_bytes(2, "little")


class RequestFramer:
    """Turns a byte stream from the master into CRC-valid request frames (unit id + PDU)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        frames = []
        while len(self._buf) >= REQUEST_LENGTH:
            candidate = bytes(self._buf[:REQUEST_LENGTH])
            if crc16(candidate[:-2]) == int.from_bytes(candidate[-2:], "little"):
                frames.append(candidate[:-2])
                del self._buf[:REQUEST_LENGTH]
            else:
                del self._buf[0]
        return frames


class ModbusRtuServer:
    def __init__(self, slaves: ModbusSlaves, link: Path) -> None:
        self.slaves = slaves
        self._pty = PtyLink(link)
        self._framer = RequestFramer()

    def start(self) -> Path:
        """Open the pty; returns the symlink the edge should open.  Needs a running event loop."""
        return self._pty.open(self._on_data)

    def close(self) -> None:
        self._pty.close()

    def _on_data(self, data: bytes) -> None:
        for frame in self._framer.feed(data):
            reply = self.slaves.handle(frame[0], frame[1:])
            if reply is None or reply.pdu is None:
                continue
            out = with_crc(frame[:1] + reply.pdu)
            if reply.corrupt_crc:
                out = out[:-2] + bytes([out[-2] ^ 0x5A]) + out[-1:]
            if reply.delay > 0:
                asyncio.get_running_loop().call_later(reply.delay, self._pty.write, out)
            else:
                self._pty.write(out)
