"""Zayton's own Modbus TCP server, serving simulated meters and PLCs over real sockets.

Written from the specifications, not from another implementation:

- MODBUS Application Protocol Specification V1.1b3: function codes 01-06, 15 and 16, their PDU
  layouts, quantity limits and exception codes (01 illegal function, 02 illegal data address,
  03 illegal data value, 04 server device failure, 0B gateway target device failed to respond).
- MODBUS Messaging on TCP/IP Implementation Guide V1.0b: the MBAP header (transaction id,
  protocol id 0, length, unit id), framing over a TCP stream and the unit id of a gateway.

One listener serves many unit ids, like a serial-to-Ethernet converter. Devices are async so a
simulator can inject faults: sleep (slow), raise ModbusError or Silence (no reply at all). Each
connection is served in request order; connections are independent.

:class:`ModbusPduServer` is the part that does not depend on the framing (devices by unit id, the
PDU, exception responses, broadcast, counters): :class:`ModbusTcpServer` puts the MBAP framing
around it, :mod:`simulators.modbus_rtu` the RTU framing of a serial line.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
import sys
import types
from array import array
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from enum import IntEnum, StrEnum
from typing import Protocol, Self, TypeAlias, TypeVar, cast

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


class ExceptionCode(IntEnum):
    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    SERVER_DEVICE_FAILURE = 0x04
    GATEWAY_TARGET_FAILED = 0x0B


class ModbusError(Exception):
    """Raised by a device to answer with a Modbus exception response carrying ``code``."""

    def __init__(self, code: int, message: str = "") -> None:
        if not 1 <= code <= 0xFF:
            raise ValueError(f"a Modbus exception code is 1..255, got {code}")
        super().__init__(message or f"Modbus exception code {code:#04x}")
        self.code = code


class Silence(Exception):
    """Raised by a device to send no reply at all, like a dead device on a serial line."""


class ModbusDevice(Protocol):
    """``handle`` starts right in the socket callback, without a task until it first suspends:
    no ``asyncio.timeout()`` or TaskGroup before its first real ``await``."""

    async def handle(
        self, function: int, address: int, count: int, values: Sequence[int] | None
    ) -> Sequence[int] | None:
        """Serve one request: reads return ``count`` words (or 0/1 bits), writes return None."""


class Table(StrEnum):
    COILS = "coils"
    DISCRETE = "discrete"
    HOLDING = "holding"
    INPUT = "input"


Request: TypeAlias = tuple[int, int, Sequence[int] | None]  # address, count, written values

_MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id
_PREFIX = struct.Struct(">HHH")  # the part of the MBAP header that frames the stream
_PAIR = struct.Struct(">HH")  # address + quantity (or value)
_MULTI = struct.Struct(">HHB")  # address + quantity + byte count
_WORDS = [struct.Struct(f">{n}H") for n in range(126)]
_BIG_ENDIAN_HOST = sys.byteorder == "big"
_MAX_QUEUED = 32  # frames waiting on one connection before we stop reading from it


def _checked(address: int, count: int, values: Sequence[int] | None) -> Request:
    if address + count > 0x10000:
        raise ModbusError(ExceptionCode.ILLEGAL_DATA_ADDRESS)
    return address, count, values


def _parse_read(frame: bytes) -> Request:
    if len(frame) != 12:
        raise ModbusError(ExceptionCode.ILLEGAL_DATA_VALUE)
    address, count = _PAIR.unpack_from(frame, 8)
    if not 1 <= count <= (2000 if frame[7] <= 2 else 125):  # bits or registers
        raise ModbusError(ExceptionCode.ILLEGAL_DATA_VALUE)
    return _checked(address, count, None)


def _parse_write_single(frame: bytes) -> Request:
    if len(frame) != 12:
        raise ModbusError(ExceptionCode.ILLEGAL_DATA_VALUE)
    address, value = _PAIR.unpack_from(frame, 8)
    if frame[7] == 5:  # a coil is written as 0xFF00 (on) or 0x0000 (off), nothing else
        if value not in (0xFF00, 0x0000):
            raise ModbusError(ExceptionCode.ILLEGAL_DATA_VALUE)
        value = 1 if value else 0
    return address, 1, (value,)


def _parse_write_multiple(frame: bytes) -> Request:
    if len(frame) < 13:
        raise ModbusError(ExceptionCode.ILLEGAL_DATA_VALUE)
    address, count, size = _MULTI.unpack_from(frame, 8)
    coils = frame[7] == 15
    limit, expected_size = (1968, (count + 7) // 8) if coils else (123, 2 * count)
    if not 1 <= count <= limit or size != expected_size or len(frame) != 13 + size:
        raise ModbusError(ExceptionCode.ILLEGAL_DATA_VALUE)
    if coils:
        bits = [(frame[13 + (i >> 3)] >> (i & 7)) & 1 for i in range(count)]
        return _checked(address, count, bits)
    words = array("H", frame[13:])
    if not _BIG_ENDIAN_HOST:
        words.byteswap()
    return _checked(address, count, words)


_PARSERS: dict[int, Callable[[bytes], Request]] = {1: _parse_read, 2: _parse_read, 3: _parse_read}
_PARSERS |= {4: _parse_read, 5: _parse_write_single, 6: _parse_write_single}
_PARSERS |= {15: _parse_write_multiple, 16: _parse_write_multiple}
TABLE_OF: dict[int, Table] = {1: Table.COILS, 2: Table.DISCRETE, 3: Table.HOLDING, 4: Table.INPUT}
"""The table each function code reads or writes."""
TABLE_OF |= {5: Table.COILS, 6: Table.HOLDING, 15: Table.COILS, 16: Table.HOLDING}


def _parse(function: int, frame: bytes) -> Request:
    parser = _PARSERS.get(function)
    if parser is None:
        raise ModbusError(ExceptionCode.ILLEGAL_FUNCTION)
    return parser(frame)


def _pack_words(words: Sequence[int]) -> bytes:
    if isinstance(words, array) and words.typecode == "H":
        big_endian = array("H", words)
        if not _BIG_ENDIAN_HOST:
            big_endian.byteswap()
        return big_endian.tobytes()
    return _WORDS[len(words)].pack(*words)


def _pack_bits(bits: Sequence[int]) -> bytes:  # bit i of the request is bit i % 8 of byte i // 8
    octets = (bits[i : i + 8] for i in range(0, len(bits), 8))
    return bytes(sum(1 << j for j, bit in enumerate(octet) if bit) for octet in octets)


class RegisterMemory:
    """The default device: four zero-filled tables served as they are."""

    def __init__(
        self, *, holding: int = 0, input: int = 0, coils: int = 0, discrete: int = 0
    ) -> None:
        sizes = dict(zip(Table, (coils, discrete, holding, input), strict=True))
        if not all(0 <= size <= 0x10000 for size in sizes.values()):
            raise ValueError(f"table sizes must be 0..65536, got {sizes}")
        self._tables: dict[Table, array[int]] = {
            table: array("B" if table in (Table.COILS, Table.DISCRETE) else "H", [0]) * size
            for table, size in sizes.items()
        }
        self._by_function = {function: self._tables[t] for function, t in TABLE_OF.items()}

    def set_registers(self, table: Table | str, address: int, words: Sequence[int]) -> None:
        """Store ``words`` (0/1 for coils and discrete inputs) from ``address`` on."""
        memory = self._range(Table(table), address, len(words))
        top = 1 if memory.typecode == "B" else 0xFFFF
        if not all(0 <= word <= top for word in words):
            raise ValueError(f"{table} values must be 0..{top:#x}, got {list(words)!r}")
        memory[address : address + len(words)] = array(memory.typecode, words)

    def block(self, table: Table) -> array[int]:
        """The live storage of a table, for writers compiled once (simulators)."""
        return self._tables[table]

    def put(self, table: Table, address: int, words: Sequence[int]) -> None:
        """:meth:`set_registers` for words that are known to fit (from the codec): no checks
        beyond the bounds."""
        memory = self._tables[table]
        if address + len(words) > len(memory):  # a slice past the end would grow the array
            raise ValueError(f"{table} {address}+{len(words)} is outside its {len(memory)} items")
        memory[address : address + len(words)] = array(memory.typecode, words)

    def get_registers(self, table: Table | str, address: int, count: int) -> list[int]:
        memory = self._range(Table(table), address, count)
        return memory[address : address + count].tolist()

    def _range(self, table: Table, address: int, count: int) -> array[int]:
        memory = self._tables[table]
        if address < 0 or count < 0 or address + count > len(memory):
            raise ValueError(f"{table} {address}+{count} is outside its {len(memory)} items")
        return memory

    async def handle(
        self, function: int, address: int, count: int, values: Sequence[int] | None
    ) -> Sequence[int] | None:
        return self.serve(function, address, count, values)

    def serve(
        self, function: int, address: int, count: int, values: Sequence[int] | None
    ) -> Sequence[int] | None:
        """:meth:`handle` without the coroutine, for callers that are not a socket."""
        memory = self._by_function.get(function)
        if memory is None:
            raise ModbusError(ExceptionCode.ILLEGAL_FUNCTION)
        end = address + count
        if address < 0 or end > len(memory):
            raise ModbusError(ExceptionCode.ILLEGAL_DATA_ADDRESS)
        if values is None:
            return memory[address:end]
        memory[address:end] = array(memory.typecode, values)
        return None


class _Connection(asyncio.Protocol):
    """One client connection: splits the byte stream into frames, answers them in order."""

    def __init__(self, server: ModbusTcpServer) -> None:
        self._server = server
        self._buffer = bytearray()
        self._queue: deque[bytes] = deque()
        self.transport: asyncio.Transport  # set by connection_made, before any other call
        self._paused = False
        self.worker: asyncio.Task[None] | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def pending(self) -> asyncio.Task[None] | None:
        return self.worker

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - create_server gives streams
        self.transport = transport
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._queue.clear()
        if self.worker is not None:
            self.worker.cancel()
        self.closed.set_result(None)
        logger.debug("client %s gone (%s)", self.transport.get_extra_info("peername"), exc)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        buffer = self._buffer
        buffer += data
        size, start = len(buffer), 0
        while size - start >= 6:
            _, protocol, length = _PREFIX.unpack_from(buffer, start)
            if protocol != 0 or not 2 <= length <= 254:
                logger.warning("bad MBAP header (protocol %d, length %d)", protocol, length)
                transport.close()  # stops reading, flushes replies already written
                return
            end = start + 6 + length
            if end > size:
                break
            self._queue.append(bytes(buffer[start:end]))
            start = end
        if start:
            del buffer[:start]
        if self.worker is None:
            self._serve(transport)
        if len(self._queue) >= _MAX_QUEUED and not self._paused:
            self._paused = True  # a slow device and a client that keeps sending: stop reading
            transport.pause_reading()

    def _serve(self, transport: asyncio.Transport) -> None:
        """Answer queued frames in order, right here while devices answer at once (this saves a
        loop iteration per request); a device that suspends gets a task finishing its request."""
        queue = self._queue
        while queue:
            answer = self._server.process(queue.popleft())
            try:
                waiting_on = answer.send(None)
            except StopIteration as done:
                if done.value is not None:
                    transport.write(done.value)
            else:
                finish = self._finish(transport, _resume(answer, waiting_on))
                self.worker = asyncio.get_running_loop().create_task(finish)
                return
        if self._paused:
            self._paused = False
            transport.resume_reading()

    async def _finish(self, transport: asyncio.Transport, answer: Awaitable[bytes | None]) -> None:
        reply = await answer
        self.worker = None
        if not transport.is_closing():
            if reply is not None:
                transport.write(reply)
            self._serve(transport)


@types.coroutine
def _resume(coro: Coroutine[object, None, _T], waiting_on: object) -> Generator[object, None, _T]:
    """Finish, inside a task, a coroutine started by hand that is waiting on ``waiting_on``."""
    while True:
        try:
            yield waiting_on  # the task waits on it as the coroutine would have
            step = functools.partial(coro.send, None)
        except asyncio.CancelledError as exc:  # the only thing a task throws in: pass it on
            step = functools.partial(coro.throw, exc)
        try:
            waiting_on = step()
        except StopIteration as done:
            return cast(_T, done.value)


class ModbusPduServer:
    """Devices by unit id (1..255) answering requests whatever their framing: PDU parsing and
    execution, exception responses, broadcast and the request counters.

    A framing hands :meth:`respond` each request in the MBAP layout: the unit id at offset 6, the
    PDU from offset 7. Unit id 0 is a broadcast: a write is executed on every device and nobody
    replies. A unit id without a device is answered with exception 0x0B (gateway target device
    failed to respond) when ``answer_absent_units``, else not at all.
    """

    def __init__(
        self, devices: Mapping[int, ModbusDevice], *, answer_absent_units: bool = True
    ) -> None:
        bad = [unit for unit in devices if not 1 <= unit <= 255]
        if bad:
            raise ValueError(f"unit ids must be 1..255 (0 is broadcast), got {bad}")
        self.devices = devices
        self.answer_absent_units = answer_absent_units
        self.requests = 0
        self.registers_served = 0  # words answered to function 03 and 04
        self.function_codes: Counter[int] = Counter()

    async def respond(self, frame: bytes) -> bytes | None:
        """The response PDU to the request in ``frame`` (MBAP layout); None means no reply."""
        unit, function = frame[6], frame[7]
        self.requests += 1
        self.function_codes[function] += 1
        if unit == 0:
            await self._broadcast(function, frame)
            return None
        try:
            return await self._execute(unit, function, frame)
        except ModbusError as err:
            return bytes((function | 0x80, err.code))
        except Silence:
            return None
        except Exception:
            logger.exception("unit %d failed on function %d", unit, function)
            return bytes((function | 0x80, ExceptionCode.SERVER_DEVICE_FAILURE))

    async def _execute(self, unit: int, function: int, frame: bytes) -> bytes:
        device = self.devices.get(unit)
        if device is None:
            if not self.answer_absent_units:
                raise Silence
            raise ModbusError(ExceptionCode.GATEWAY_TARGET_FAILED)
        address, count, values = _parse(function, frame)
        result = await device.handle(function, address, count, values)
        if values is not None:
            return frame[7:12]  # a write echoes function, address and value or quantity
        if result is None or len(result) != count:
            logger.error("unit %d answered function %d with %r", unit, function, result)
            raise ModbusError(ExceptionCode.SERVER_DEVICE_FAILURE)
        if function >= 3:
            self.registers_served += count
            return bytes((function, 2 * count)) + _pack_words(result)
        return bytes((function, (count + 7) // 8)) + _pack_bits(result)

    async def _broadcast(self, function: int, frame: bytes) -> None:
        try:
            address, count, values = _parse(function, frame)
        except ModbusError:
            values = None
        if values is None:
            logger.debug("ignoring broadcast of function %d: not a valid write", function)
            return
        for unit, device in self.devices.items():
            try:
                await device.handle(function, address, count, values)
            except (ModbusError, Silence) as err:
                logger.debug("broadcast to unit %d: %r", unit, err)
            except Exception:
                logger.exception("unit %d failed on broadcast function %d", unit, function)


class Served(Protocol):
    """A client connection of a TCP listener, as the listener sees it when it stops."""

    transport: asyncio.Transport
    closed: asyncio.Future[None]

    @property
    def pending(self) -> asyncio.Task[None] | None:
        """The request being answered, if any."""


class TcpListener(ModbusPduServer):
    """A TCP listener serving devices by unit id; subclasses choose the framing."""

    kind = "Modbus TCP"

    def __init__(
        self,
        devices: Mapping[int, ModbusDevice],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        answer_absent_units: bool = True,
    ) -> None:
        super().__init__(devices, answer_absent_units=answer_absent_units)
        self.host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self.connections: set[Served] = set()

    def _connection(self) -> asyncio.Protocol:
        raise NotImplementedError

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"the {self.kind} server on {self.host} is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._connection, self.host, self._port)
        logger.info("%s server listening on %s:%d", self.kind, self.host, self.port)

    async def stop(self) -> None:
        """Close the listener and every client connection, and wait until they are gone."""
        if self._server is None:
            return
        self._server.close()
        connections = list(self.connections)
        for connection in connections:
            connection.transport.abort()
        await self._server.wait_closed()
        await asyncio.gather(*(connection.closed for connection in connections))
        pending = [c.pending for c in connections if c.pending is not None]
        await asyncio.gather(*pending, return_exceptions=True)
        self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class ModbusTcpServer(TcpListener):
    """A Modbus TCP listener serving ``devices`` by unit id (1..255).

    An unknown unit id is answered with exception 0x0B, as a serial-to-Ethernet converter does.
    Unit id 0 is a broadcast: a write is executed on every device and nobody replies.
    """

    def __init__(
        self, devices: Mapping[int, ModbusDevice], *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(devices, host=host, port=port)

    def _connection(self) -> asyncio.Protocol:
        return _Connection(self)

    async def process(self, frame: bytes) -> bytes | None:
        """Answer one complete MBAP frame; None means no reply."""
        pdu = await self.respond(frame)
        if pdu is None:
            return None
        transaction, _, _, unit = _MBAP.unpack_from(frame)
        return _MBAP.pack(transaction, 0, len(pdu) + 1, unit) + pdu
