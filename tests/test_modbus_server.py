"""Zayton's Modbus TCP simulator server over real sockets: pymodbus client and raw MBAP frames."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from simulators.modbus_server import (
    ModbusDevice,
    ModbusError,
    ModbusTcpServer,
    RegisterMemory,
    Silence,
    Table,
)

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
DEADLINE = 5.0  # seconds any single socket read may take before the test fails


@contextlib.asynccontextmanager
async def connected(
    server: ModbusTcpServer, reply_timeout: float = 2.0
) -> AsyncIterator[AsyncModbusTcpClient]:
    client = AsyncModbusTcpClient(HOST, port=server.port, timeout=reply_timeout, retries=0)
    assert await client.connect()
    try:
        yield client
    finally:
        client.close()


@contextlib.asynccontextmanager
async def raw(
    server: ModbusTcpServer,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(HOST, server.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def frame(transaction: int, unit: int, pdu: bytes, *, protocol: int = 0) -> bytes:
    return struct.pack(">HHHB", transaction, protocol, len(pdu) + 1, unit) + pdu


async def reply(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """Read one response frame: (transaction id, unit id, PDU)."""
    async with asyncio.timeout(DEADLINE):
        transaction, protocol, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
        assert protocol == 0
        return transaction, unit, await reader.readexactly(length - 1)


def memory() -> RegisterMemory:
    mem = RegisterMemory(holding=200, input=200, coils=64, discrete=64)
    mem.set_registers(Table.HOLDING, 0, [0x1234, 0xFFFF, 0, 42])
    mem.set_registers(Table.INPUT, 100, [7, 8, 9])
    mem.set_registers(Table.COILS, 0, [1, 0, 1, 1, 0, 0, 0, 0, 1])
    mem.set_registers(Table.DISCRETE, 60, [1, 1, 0, 1])
    return mem


class SlowDevice(RegisterMemory):
    def __init__(self, delay: float) -> None:
        super().__init__(holding=10)
        self.delay = delay
        self.started = asyncio.Event()

    async def handle(
        self, function: int, address: int, count: int, values: Sequence[int] | None
    ) -> Sequence[int] | None:
        self.started.set()
        await asyncio.sleep(self.delay)
        return await super().handle(function, address, count, values)


class SilentDevice:
    async def handle(
        self, function: int, address: int, count: int, values: Sequence[int] | None
    ) -> Sequence[int] | None:
        raise Silence


class FailingDevice:
    def __init__(self, code: int) -> None:
        self.code = code

    async def handle(
        self, function: int, address: int, count: int, values: Sequence[int] | None
    ) -> Sequence[int] | None:
        raise ModbusError(self.code)


class ShortAnswerDevice:
    async def handle(
        self, function: int, address: int, count: int, values: Sequence[int] | None
    ) -> Sequence[int] | None:
        return [1] * (count - 1)


def test_reads_each_table() -> None:
    async def scenario() -> None:
        async with ModbusTcpServer({1: memory()}) as server, connected(server) as client:
            rr = await client.read_holding_registers(0, count=5, device_id=1)
            assert not rr.isError()
            assert rr.registers == [0x1234, 0xFFFF, 0, 42, 0]
            rr = await client.read_input_registers(100, count=3, device_id=1)
            assert rr.registers == [7, 8, 9]
            rr = await client.read_coils(0, count=10, device_id=1)
            assert rr.bits[:10] == [
                True,
                False,
                True,
                True,
                False,
                False,
                False,
                False,
                True,
                False,
            ]
            rr = await client.read_discrete_inputs(60, count=4, device_id=1)
            assert rr.bits[:4] == [True, True, False, True]
            rr = await client.read_holding_registers(75, count=125, device_id=1)
            assert rr.registers == [0] * 125
            assert server.registers_served == 5 + 3 + 125

    asyncio.run(scenario())


def test_writes_then_read_back() -> None:
    async def scenario() -> None:
        mem = memory()
        async with ModbusTcpServer({3: mem}) as server, connected(server) as client:
            assert not (await client.write_coil(5, True, device_id=3)).isError()
            assert not (await client.write_coil(0, False, device_id=3)).isError()
            assert not (await client.write_register(10, 0xBEEF, device_id=3)).isError()
            bits = [True, False, False, True, True, False, True, False, True, True, True]
            assert not (await client.write_coils(20, bits, device_id=3)).isError()
            words = list(range(1000, 1123))
            assert not (await client.write_registers(50, words, device_id=3)).isError()

            rr = await client.read_coils(0, count=6, device_id=3)
            assert rr.bits[:6] == [False, False, True, True, False, True]
            rr = await client.read_coils(20, count=11, device_id=3)
            assert rr.bits[:11] == bits
            rr = await client.read_holding_registers(10, count=1, device_id=3)
            assert rr.registers == [0xBEEF]
            rr = await client.read_holding_registers(50, count=123, device_id=3)
            assert rr.registers == words
        assert mem.get_registers(Table.HOLDING, 10, 1) == [0xBEEF]
        assert mem.get_registers(Table.COILS, 20, 4) == [1, 0, 0, 1]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("pdu", "code"),
    [
        pytest.param(bytes([0x07]), 0x01, id="fc07-read-exception-status"),
        pytest.param(bytes([0x2B, 0x0E, 0x01, 0x00]), 0x01, id="fc43-device-identification"),
        pytest.param(bytes([0x03, 0x00, 0x00, 0x00, 0x00]), 0x03, id="read-0-registers"),
        pytest.param(bytes([0x03, 0x00, 0x00, 0x00, 0x7E]), 0x03, id="read-126-registers"),
        pytest.param(bytes([0x04, 0x00, 0x00, 0x00, 0x7E]), 0x03, id="read-126-inputs"),
        pytest.param(bytes([0x01, 0x00, 0x00, 0x07, 0xD1]), 0x03, id="read-2001-coils"),
        pytest.param(bytes([0x03, 0x00, 0x00, 0x00]), 0x03, id="truncated-read"),
        pytest.param(bytes([0x05, 0x00, 0x01, 0x12, 0x34]), 0x03, id="coil-value-not-ff00"),
        pytest.param(bytes([0x10, 0, 0, 0, 2, 3, 0, 1, 0]), 0x03, id="fc16-byte-count"),
        pytest.param(bytes([0x10, 0, 0, 0, 0, 0]), 0x03, id="fc16-zero-registers"),
        pytest.param(bytes([0x0F, 0, 0, 0x07, 0xB1, 0xF7]) + bytes(247), 0x03, id="fc15-1969"),
        pytest.param(bytes([0x0F, 0, 0, 0, 9, 1, 0xFF]), 0x03, id="fc15-byte-count"),
        pytest.param(bytes([0x03, 0x00, 0xC8, 0x00, 0x01]), 0x02, id="read-past-holding"),
        pytest.param(bytes([0x03, 0xFF, 0xFF, 0x00, 0x02]), 0x02, id="read-past-0xffff"),
        pytest.param(bytes([0x04, 0x00, 0xC7, 0x00, 0x02]), 0x02, id="read-past-input"),
        pytest.param(bytes([0x02, 0x00, 0x00, 0x00, 0x01]), 0x02, id="no-discrete-inputs"),
        pytest.param(bytes([0x06, 0x00, 0xC8, 0x00, 0x01]), 0x02, id="write-past-holding"),
        pytest.param(bytes([0x10, 0, 0xC7, 0, 2, 4, 0, 1, 0, 2]), 0x02, id="fc16-past-holding"),
    ],
)
def test_exception_responses(pdu: bytes, code: int) -> None:
    async def scenario() -> None:
        mem = RegisterMemory(holding=200, input=200, coils=16)
        async with ModbusTcpServer({1: mem}) as server, raw(server) as (reader, writer):
            writer.write(frame(0x4242, 1, pdu))
            assert await reply(reader) == (0x4242, 1, bytes([pdu[0] | 0x80, code]))
        assert mem.get_registers(Table.HOLDING, 0, 200) == [0] * 200

    asyncio.run(scenario())


def test_exception_codes_through_pymodbus() -> None:
    async def scenario() -> None:
        devices: dict[int, ModbusDevice] = {
            1: RegisterMemory(holding=10),
            2: FailingDevice(4),
            3: ShortAnswerDevice(),
        }
        async with ModbusTcpServer(devices) as server, connected(server) as client:
            rr = await client.read_holding_registers(8, count=3, device_id=1)
            assert rr.isError()
            assert rr.exception_code == 0x02
            rr = await client.read_holding_registers(0, count=1, device_id=99)
            assert rr.isError()
            assert rr.exception_code == 0x0B
            rr = await client.write_register(0, 1, device_id=2)
            assert rr.isError()
            assert rr.exception_code == 0x04
            rr = await client.read_input_registers(0, count=4, device_id=3)
            assert rr.isError()
            assert rr.exception_code == 0x04
            rr = await client.read_holding_registers(0, count=2, device_id=1)
            assert rr.registers == [0, 0]

    asyncio.run(scenario())


def test_slow_device_does_not_hold_up_another_connection() -> None:
    async def scenario() -> None:
        slow = SlowDevice(delay=1.0)
        slow.set_registers(Table.HOLDING, 0, [11])
        fast = RegisterMemory(holding=10)
        fast.set_registers(Table.HOLDING, 0, [22])
        async with (
            ModbusTcpServer({1: slow, 2: fast}) as server,
            connected(server, reply_timeout=3.0) as first,
            connected(server) as second,
        ):

            async def read_slow() -> list[int]:
                rr = await first.read_holding_registers(0, count=1, device_id=1)
                return list(rr.registers)

            slow_read = asyncio.create_task(read_slow())
            async with asyncio.timeout(DEADLINE):
                await slow.started.wait()
            rr = await second.read_holding_registers(0, count=1, device_id=2)
            assert rr.registers == [22]
            assert not slow_read.done()
            assert await slow_read == [11]

    asyncio.run(scenario())


def test_silent_device_makes_the_client_time_out() -> None:
    async def scenario() -> None:
        devices: dict[int, ModbusDevice] = {1: SilentDevice(), 2: RegisterMemory(holding=1)}
        async with ModbusTcpServer(devices) as server:
            async with connected(server, reply_timeout=0.3) as client:
                with pytest.raises(ModbusException):
                    await client.read_holding_registers(0, count=1, device_id=1)
            assert server.requests == 1
            async with connected(server) as client:
                assert not (await client.read_holding_registers(0, count=1, device_id=2)).isError()

    asyncio.run(scenario())


def test_many_unit_ids_behind_one_port() -> None:
    async def scenario() -> None:
        devices: dict[int, ModbusDevice] = {}
        for unit in range(1, 248):
            mem = RegisterMemory(input=4)
            mem.set_registers(Table.INPUT, 0, [unit, 0xFFFF - unit])
            devices[unit] = mem
        async with ModbusTcpServer(devices) as server, connected(server) as client:
            for unit in range(1, 248):
                rr = await client.read_input_registers(0, count=2, device_id=unit)
                assert rr.registers == [unit, 0xFFFF - unit]

    asyncio.run(scenario())


def test_pipelined_and_split_requests_are_answered_in_order() -> None:
    async def scenario() -> None:
        slow = SlowDevice(delay=0.05)
        slow.set_registers(Table.HOLDING, 0, [0xAAAA])
        yielding = SlowDevice(delay=0)  # asyncio.sleep(0): yields to the loop once
        yielding.set_registers(Table.HOLDING, 0, [0xCCCC])
        fast = RegisterMemory(holding=10)
        fast.set_registers(Table.HOLDING, 0, [0xBBBB])
        devices: dict[int, ModbusDevice] = {1: slow, 2: fast, 3: SilentDevice(), 4: yielding}
        read_one = bytes([0x03, 0x00, 0x00, 0x00, 0x01])
        async with ModbusTcpServer(devices) as server, raw(server) as (reader, writer):
            units = [2, 1, 3, 2, 4, 9, 2]  # fast, slow, silent, fast, yielding, unknown, fast
            writer.write(b"".join(frame(100 + i, unit, read_one) for i, unit in enumerate(units)))
            assert await reply(reader) == (100, 2, bytes([0x03, 2, 0xBB, 0xBB]))
            assert await reply(reader) == (101, 1, bytes([0x03, 2, 0xAA, 0xAA]))
            assert await reply(reader) == (103, 2, bytes([0x03, 2, 0xBB, 0xBB]))
            assert await reply(reader) == (104, 4, bytes([0x03, 2, 0xCC, 0xCC]))
            assert await reply(reader) == (105, 9, bytes([0x83, 0x0B]))
            assert await reply(reader) == (106, 2, bytes([0x03, 2, 0xBB, 0xBB]))

            request = frame(10, 2, read_one) + frame(11, 2, bytes([0x06, 0x00, 0x01, 0x12, 0x34]))
            for i in range(len(request)):  # one byte per segment
                writer.write(request[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.001)
            assert await reply(reader) == (10, 2, bytes([0x03, 2, 0xBB, 0xBB]))
            assert await reply(reader) == (11, 2, bytes([0x06, 0x00, 0x01, 0x12, 0x34]))
        assert fast.get_registers(Table.HOLDING, 1, 1) == [0x1234]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("protocol", "length"),
    [
        pytest.param(1, 6, id="protocol-1"),
        pytest.param(0, 1, id="length-1"),
        pytest.param(0, 255, id="length-255"),
    ],
)
def test_malformed_mbap_closes_the_connection(protocol: int, length: int) -> None:
    async def scenario() -> None:
        async with ModbusTcpServer({1: RegisterMemory(holding=10)}) as server:
            async with raw(server) as (reader, writer):
                header = struct.pack(">HHHB", 1, protocol, length, 1)
                writer.write(header + bytes([0x03, 0, 0, 0, 1]))
                async with asyncio.timeout(DEADLINE):
                    assert await reader.read() == b""
            async with connected(server) as client:  # the listener itself keeps serving
                assert not (await client.read_holding_registers(0, count=1, device_id=1)).isError()

    asyncio.run(scenario())


def test_broadcast_write_reaches_every_device_without_reply() -> None:
    async def scenario() -> None:
        units = {unit: RegisterMemory(holding=4) for unit in (1, 2, 3)}
        read_one = bytes([0x03, 0x00, 0x02, 0x00, 0x01])
        async with ModbusTcpServer(units) as server, raw(server) as (reader, writer):
            writer.write(frame(1, 0, bytes([0x06, 0x00, 0x02, 0x00, 0x63])))
            writer.write(frame(2, 0, read_one))  # a broadcast read is ignored
            writer.write(frame(3, 2, read_one))
            assert await reply(reader) == (3, 2, bytes([0x03, 2, 0x00, 0x63]))
        assert all(mem.get_registers(Table.HOLDING, 2, 1) == [0x63] for mem in units.values())

    asyncio.run(scenario())


def test_function_code_counter() -> None:
    async def scenario() -> None:
        async with ModbusTcpServer({1: memory()}) as server, connected(server) as client:
            await client.read_holding_registers(0, count=10, device_id=1)
            await client.read_holding_registers(0, count=10, device_id=1)
            await client.read_input_registers(0, count=10, device_id=1)
            await client.read_coils(0, count=10, device_id=1)
            await client.write_register(0, 1, device_id=1)
            await client.read_holding_registers(0, count=10, device_id=42)  # 0x0B, still counted
        assert server.function_codes == Counter({3: 3, 4: 1, 1: 1, 6: 1})
        assert server.requests == 6
        assert server.registers_served == 30
        assert set(server.function_codes) - {1, 2, 3, 4} == {6}

    asyncio.run(scenario())


def test_stop_closes_client_connections() -> None:
    async def scenario() -> None:
        slow = SlowDevice(delay=30)
        server = ModbusTcpServer({1: slow})
        await server.start()
        async with raw(server) as (reader, writer):
            writer.write(frame(1, 1, bytes([0x03, 0x00, 0x00, 0x00, 0x01])))
            async with asyncio.timeout(DEADLINE):
                await slow.started.wait()  # the request is read: closing sends FIN, not RST
                await server.stop()
                assert await reader.read() == b""
        with pytest.raises(RuntimeError, match="not started"):
            _ = server.port

    asyncio.run(scenario())


def test_register_memory_checks_its_arguments() -> None:
    mem = RegisterMemory(holding=4, coils=4)
    with pytest.raises(ValueError, match="outside"):
        mem.set_registers(Table.HOLDING, 3, [1, 2])
    with pytest.raises(ValueError, match=r"0\.\.0xffff"):
        mem.set_registers("holding", 0, [0x10000])
    with pytest.raises(ValueError, match=r"0\.\.0x1"):
        mem.set_registers(Table.COILS, 0, [2])
    with pytest.raises(ValueError, match="unit ids"):
        ModbusTcpServer({0: mem})
    assert mem.get_registers("coils", 0, 4) == [0, 0, 0, 0]
