"""Modbus RTU for the simulator: on a serial line, and in a TCP stream as converters carry it.

Written from the MODBUS over Serial Line Specification and Implementation Guide V1.02:

- the RTU frame (2.2, 2.5.1): the address of the slave (0 broadcast, 1..247), the PDU, and a CRC of
  two bytes sent low byte first;
- the CRC (2.5.1.2, 6.2.2): CRC-16 over address and PDU, register preset to 0xFFFF, the
  polynomial 0xA001 applied to the bits in the order they are sent (least significant first);
- the slave's side of the master/slave protocol (2.1, 2.4): one request at a time, a broadcast
  is executed and never answered, a frame with a bad CRC is discarded without a reply.

A line frames a message by 3.5 character times of silence (2.5.1.1). A pseudo-terminal or a TCP
stream keeps no character timing, so requests are cut out of the byte stream by their function
code: 01 to 06 are 8 bytes, 15 and 16 are 9 bytes plus their byte count, and any other function
ends at the first CRC that checks out. To resynchronise after noise, a frame whose CRC fails loses
its first byte and the search starts again one byte later, and bytes that cannot start a request
are skipped up to the next whole request of those functions. ``frame_gap_s`` of silence ends an
incomplete frame, the 3.5 characters of a real line stretched to outlast scheduling delays: it is
dropped. No baud rate is simulated: bytes leave as soon as they are written.

The PDUs are served by :class:`simulators.modbus_server.ModbusPduServer`, as over Modbus TCP.
A unit id without a device is silent on the serial line, where nobody owns that address; over
TCP it is answered with exception 0x0B (gateway target device failed to respond) by default, as
a converter that knows its units does, like :class:`~simulators.modbus_server.ModbusTcpServer`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable, Mapping
from typing import Self

import serial  # type: ignore[import-untyped]  # pyserial ships no type hints

from simulators.modbus_server import ModbusDevice, ModbusPduServer, TcpListener

logger = logging.getLogger(__name__)

FRAME_GAP_S = 0.1
"""Silence after which an incomplete frame is dropped."""
_MIN_FRAME = 4  # address, function code, CRC
_MAX_FRAME = 256  # the largest RTU frame (2.5.1.1)
_MAX_QUEUED = 32  # requests waiting on one line; a master sends one and waits for its reply
_MBAP_PAD = bytes(6)  # address + PDU is an MBAP frame without its first six bytes
_SIZED = frozenset((1, 2, 3, 4, 5, 6, 15, 16))  # functions whose request size is in the request


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """The CRC-16 of an RTU frame (CRC-16/MODBUS); it is sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(message: bytes) -> bytes:
    """``message`` (address and PDU) followed by its CRC, low byte first: an RTU frame."""
    return message + crc16(message).to_bytes(2, "little")


def _crc_ok(buffer: bytes | bytearray, size: int) -> bool:
    return crc16(memoryview(buffer)[: size - 2]) == buffer[size - 2] | buffer[size - 1] << 8


def _frame_size(buffer: bytes | bytearray) -> int | None:
    """The size of the request frame at the start of ``buffer`` (at least 4 bytes long), or
    None until more bytes tell it."""
    function = buffer[1]
    if 1 <= function <= 6:
        return 8  # address, function, two 16-bit fields, CRC
    if function in (15, 16):
        return 9 + buffer[6] if len(buffer) >= 7 else None  # ..., byte count, data, CRC
    crc = crc16(buffer[:2])  # any other function: up to the first CRC that checks out
    for size in range(_MIN_FRAME, min(len(buffer), _MAX_FRAME) + 1):
        if crc == buffer[size - 2] | buffer[size - 1] << 8:
            return size
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ buffer[size - 2]) & 0xFF]
    return None if len(buffer) < _MAX_FRAME else _MAX_FRAME


def _next_sized_frame(buffer: bytearray) -> int:
    """The offset of the first whole, CRC-checked request of a function 01-06, 15 or 16 after
    the start of ``buffer``; 0 if there is none yet."""
    for start in range(1, len(buffer) - _MIN_FRAME + 1):
        rest = bytes(buffer[start:])
        if rest[1] in _SIZED:
            size = _frame_size(rest)
            if size is not None and size <= len(rest) and _crc_ok(rest, size):
                return start
    return 0


class RtuFramer:
    """Cuts RTU requests out of a byte stream, dropping bytes until a frame's CRC checks out."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.dropped = 0
        """Bytes discarded: frames with a bad CRC, noise, incomplete frames."""

    @property
    def pending(self) -> int:
        """Bytes received that are not yet a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """The requests completed by ``data``: address and PDU, without the CRC."""
        buffer = self._buffer
        buffer += data
        frames = []
        while len(buffer) >= _MIN_FRAME:
            size = _frame_size(buffer)
            if size is not None and size <= len(buffer):
                if _crc_ok(buffer, size):
                    frames.append(bytes(buffer[: size - 2]))
                    del buffer[:size]
                else:
                    self._drop(1)
                continue
            noise = 0 if buffer[1] in _SIZED else _next_sized_frame(buffer)
            if not noise:
                break  # a request on its way
            self._drop(noise)
        return frames

    def flush(self) -> list[bytes]:
        """The line fell silent in the middle of a frame: drop it, byte by byte, keeping the
        whole requests that come to light behind it."""
        frames = []
        while self._buffer:
            self._drop(1)
            frames += self.feed(b"")
        return frames

    def _drop(self, size: int) -> None:
        logger.debug("RTU framing: dropping %s", self._buffer[:size].hex(" "))
        self.dropped += size
        del self._buffer[:size]


class _RtuLine:
    """One RTU byte stream (a serial line, a TCP connection): requests are answered one at a
    time, in order, through ``write``."""

    def __init__(
        self, server: ModbusPduServer, write: Callable[[bytes], None], frame_gap_s: float
    ) -> None:
        self._server = server
        self._write = write
        self._frame_gap_s = frame_gap_s
        self.framer = RtuFramer()
        self._requests: deque[bytes] = deque()
        self._gap: asyncio.TimerHandle | None = None
        self.worker: asyncio.Task[None] | None = None

    def received(self, data: bytes) -> None:
        self._queue(self.framer.feed(data))
        if self._gap is not None:
            self._gap.cancel()
            self._gap = None
        loop = asyncio.get_running_loop()
        if self.framer.pending:
            self._gap = loop.call_later(self._frame_gap_s, self._fell_silent)
        self._start()

    def _fell_silent(self) -> None:
        self._gap = None
        self._queue(self.framer.flush())
        self._start()

    def _queue(self, requests: list[bytes]) -> None:
        for request in requests:
            if len(self._requests) < _MAX_QUEUED:
                self._requests.append(request)
            else:
                logger.warning("RTU master sends without waiting: request dropped")

    def _start(self) -> None:
        if self.worker is None and self._requests:
            self.worker = asyncio.get_running_loop().create_task(self._serve(), name="RTU line")

    async def _serve(self) -> None:
        try:
            while self._requests:
                request = self._requests.popleft()
                pdu = await self._server.respond(_MBAP_PAD + request)
                if pdu is not None:
                    self._write(with_crc(request[:1] + pdu))
        finally:
            self.worker = None

    def close(self) -> asyncio.Task[None] | None:
        """Stop serving; the request being served, if any, is cancelled (its task returned)."""
        if self._gap is not None:
            self._gap.cancel()
        self._requests.clear()
        worker = self.worker
        if worker is not None:
            worker.cancel()
        return worker


class RtuSerialServer(ModbusPduServer):
    """Modbus RTU slaves by unit id on the serial device ``port`` (a pseudo-terminal in tests).

    The device is opened with pyserial (8 data bits, no parity, one stop bit; a pseudo-terminal
    ignores all three) and read through the event loop without blocking it. A unit id without a
    device stays silent unless ``answer_absent_units``.
    """

    def __init__(
        self,
        devices: Mapping[int, ModbusDevice],
        port: str,
        *,
        baudrate: int = 9600,
        answer_absent_units: bool = False,
        frame_gap_s: float = FRAME_GAP_S,
    ) -> None:
        super().__init__(devices, answer_absent_units=answer_absent_units)
        self.port = port
        self.baudrate = baudrate
        self._frame_gap_s = frame_gap_s
        self._serial: serial.Serial | None = None
        self._line: _RtuLine | None = None
        self._outgoing = bytearray()

    @property
    def framer(self) -> RtuFramer:
        """The framer of the line, which counts the bytes it dropped."""
        if self._line is None:
            raise RuntimeError(f"the Modbus RTU server on {self.port} is not started")
        return self._line.framer

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._serial = serial.Serial(self.port, baudrate=self.baudrate, timeout=0, write_timeout=0)
        self._line = _RtuLine(self, self._write, self._frame_gap_s)
        loop.add_reader(self._serial.fileno(), self._read)
        logger.info("Modbus RTU server on %s at %d baud", self.port, self.baudrate)

    async def stop(self) -> None:
        """Stop serving and close the serial device."""
        if self._serial is None or self._line is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._serial.fileno())
        loop.remove_writer(self._serial.fileno())
        worker = self._line.close()
        if worker is not None:
            await asyncio.gather(worker, return_exceptions=True)
        self._serial.close()
        self._serial = None
        self._line = None
        self._outgoing.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _read(self) -> None:
        assert self._serial is not None  # noqa: S101 - the reader is removed before closing
        assert self._line is not None  # noqa: S101
        try:
            data = os.read(self._serial.fileno(), 4096)
        except BlockingIOError:
            return
        except OSError as err:  # the device went away (a pseudo-terminal closed)
            data = b""
            logger.warning("Modbus RTU server on %s: %s", self.port, err)
        if not data:
            asyncio.get_running_loop().remove_reader(self._serial.fileno())
            logger.warning("Modbus RTU server on %s: the line is gone, stopped reading", self.port)
            return
        self._line.received(data)

    def _write(self, frame: bytes) -> None:
        self._outgoing += frame
        self._flush()

    def _flush(self) -> None:
        if self._serial is None:
            return
        fd = self._serial.fileno()
        try:
            written = os.write(fd, self._outgoing)
        except BlockingIOError:
            written = 0
        del self._outgoing[:written]
        loop = asyncio.get_running_loop()
        if self._outgoing:
            loop.add_writer(fd, self._flush)
        else:
            loop.remove_writer(fd)


class _RtuConnection(asyncio.Protocol):
    """One TCP client of :class:`RtuOverTcpServer`: an RTU line of its own."""

    def __init__(self, server: RtuOverTcpServer, frame_gap_s: float) -> None:
        self._server = server
        self._frame_gap_s = frame_gap_s
        self.transport: asyncio.Transport  # set by connection_made, before any other call
        self.line: _RtuLine
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def pending(self) -> asyncio.Task[None] | None:
        return self.line.worker

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - create_server gives streams
        self.transport = transport
        self.line = _RtuLine(self._server, self._write, self._frame_gap_s)
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self.line.close()
        self.closed.set_result(None)
        logger.debug("RTU client %s gone (%s)", self.transport.get_extra_info("peername"), exc)

    def data_received(self, data: bytes) -> None:
        self.line.received(data)

    def _write(self, frame: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(frame)


class RtuOverTcpServer(TcpListener):
    """Modbus RTU frames in a TCP stream, as a transparent serial-to-Ethernet converter passes
    them: a TCP listener whose every connection is an RTU line of its own.

    A unit id without a device is answered with exception 0x0B unless ``answer_absent_units``
    is False, which makes it silent as behind a converter that only forwards bytes.
    """

    kind = "Modbus RTU-over-TCP"

    def __init__(
        self,
        devices: Mapping[int, ModbusDevice],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        answer_absent_units: bool = True,
        frame_gap_s: float = FRAME_GAP_S,
    ) -> None:
        super().__init__(devices, host=host, port=port, answer_absent_units=answer_absent_units)
        self._frame_gap_s = frame_gap_s

    def _connection(self) -> asyncio.Protocol:
        return _RtuConnection(self, self._frame_gap_s)
