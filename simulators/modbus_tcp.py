"""Modbus TCP server (MBAP framing) for one TCP bus, serving several unit ids.

MBAP header: transaction id (2), protocol id (2, always 0), length (2, unit id + PDU), unit id (1).
A unit id nobody answers to gets exception 0x0B, like a TCP-to-RS-485 converter whose slave is
silent.  A malformed header closes the connection (a real server cannot resynchronise a stream).
A unit in a dropout fault sends nothing (the client times out); a slow one answers late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct

from simulators.modbus_slave import GATEWAY_TARGET_FAILED, ModbusSlaves

log = logging.getLogger(__name__)
MBAP = struct.Struct(">HHHB")


class ModbusTcpServer:
    def __init__(self, slaves: ModbusSlaves, host: str = "127.0.0.1", port: int = 0) -> None:
        self.slaves = slaves
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> tuple[str, int]:
        """Listen; return (host, port) actually bound (port 0 picks a free one)."""
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                tid, protocol, length, unit = MBAP.unpack(await reader.readexactly(MBAP.size))
                if protocol != 0 or not 2 <= length <= 254:
                    log.debug("bad MBAP header (protocol %d, length %d); closing", protocol, length)
                    break
                pdu = await reader.readexactly(length - 1)
                reply = self.slaves.handle(unit, pdu)
                if reply is None:
                    response = bytes([(pdu[0] if pdu else 0) | 0x80, GATEWAY_TARGET_FAILED])
                elif reply.pdu is None:
                    continue
                else:
                    response = reply.pdu
                    if reply.delay > 0:
                        await asyncio.sleep(reply.delay)
                writer.write(MBAP.pack(tid, 0, len(response) + 1, unit) + response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
