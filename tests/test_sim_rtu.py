"""Modbus RTU from the simulator: on a serial line (a pseudo-terminal pair) and over TCP.

The tiny park is served with one gateway on each RTU transport; pymodbus 3.16.1 reads it as the
gateway would and must see what Modbus TCP serves. Raw frames check what pymodbus hides: bad
CRCs and broadcasts get no reply, and the line keeps serving after them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient, ModbusBaseClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from profiles.model import Profile
from profiles.plan import plan_reads
from simulators.faults import parse_fault
from simulators.modbus_rtu import RtuFramer, RtuOverTcpServer, RtuSerialServer, crc16, with_crc
from simulators.modbus_server import ModbusDevice, RegisterMemory, Table
from simulators.pty import PtyPair
from simulators.scenario import load_scenario
from simulators.serve import ParkSimulator, RtuTransport, SimClock
from tests.simclient import HOST, modbus_client

CST = timezone(timedelta(hours=8))
START = datetime(2026, 11, 23, 10, 0, tzinfo=CST).timestamp()  # a Monday, 10:00: lines run
SERIAL_GATEWAY = "gw-tiny-shoes"
TCP_GATEWAY = "gw-tiny-electronics"
GATEWAY_OF: dict[RtuTransport, str] = {"rtu": SERIAL_GATEWAY, "rtu-tcp": TCP_GATEWAY}
REPLY_TIMEOUT = 0.5  # seconds a client waits for an answer
QUIET_S = 0.3  # listening this long without a byte means no reply is coming
DEADLINE_S = 5.0  # a reply that is coming comes within this
READ_ONE = bytes([0x03, 0x00, 0x00, 0x00, 0x01])  # PDU: read holding register 0


def park() -> ParkSimulator:
    """The tiny park, frozen at START (no ticker), one gateway on each RTU transport."""
    return ParkSimulator(
        load_scenario("tiny"),
        clock=SimClock(START, wall=lambda: 0.0),
        tick_s=0,
        rtu_gateways={SERIAL_GATEWAY: "rtu", TCP_GATEWAY: "rtu-tcp"},
    )


@contextlib.asynccontextmanager
async def rtu_client(
    simulator: ParkSimulator, transport: RtuTransport
) -> AsyncIterator[ModbusBaseClient]:
    """A pymodbus RTU client on a served gateway, neither retrying nor reconnecting."""
    gateway = GATEWAY_OF[transport]
    client: ModbusBaseClient
    if transport == "rtu":
        client = AsyncModbusSerialClient(
            simulator.serial_ports[gateway],
            baudrate=9600,
            timeout=REPLY_TIMEOUT,
            retries=0,
            reconnect_delay=0,
        )
    else:
        client = AsyncModbusTcpClient(
            HOST,
            port=simulator.rtu_ports[gateway],
            framer=FramerType.RTU,
            timeout=REPLY_TIMEOUT,
            retries=0,
            reconnect_delay=0,
        )
    assert await client.connect()
    try:
        yield client
    finally:
        client.close()


def read(
    client: ModbusBaseClient, unit_id: int, function: int, address: int, count: int
) -> Awaitable[ModbusPDU]:
    match function:
        case 1:
            return client.read_coils(address, count=count, device_id=unit_id)
        case 2:
            return client.read_discrete_inputs(address, count=count, device_id=unit_id)
        case 3:
            return client.read_holding_registers(address, count=count, device_id=unit_id)
        case 4:
            return client.read_input_registers(address, count=count, device_id=unit_id)
        case _:
            raise ValueError(f"function code {function} is not a read")


async def read_plan(client: ModbusBaseClient, unit_id: int, profile: Profile) -> list[list[int]]:
    """The answers to every read of ``profile``'s plan, as words (or 0/1 bits)."""
    answers = []
    for plan in plan_reads(profile):
        response = await read(client, unit_id, plan.function_code, plan.address, plan.count)
        assert not response.isError(), (unit_id, plan, response)
        if plan.function_code in (1, 2):
            answers.append([int(bit) for bit in response.bits[: plan.count]])
        else:
            answers.append(list(response.registers))
    return answers


@dataclass
class RawLine:
    """Raw bytes on a line: ``send`` writes them; ``receive(size, seconds)`` returns once
    ``size`` bytes have come, or what came within ``seconds``."""

    send: Callable[[bytes], Awaitable[None]]
    receive: Callable[[int, float], Awaitable[bytes]]

    async def exchange(self, data: bytes, size: int) -> bytes:
        """Send ``data`` and return the ``size`` bytes of the reply (fewer after DEADLINE_S)."""
        await self.send(data)
        return await self.receive(size, DEADLINE_S)

    async def unanswered(self, data: bytes) -> bool:
        """Send ``data``: True if nothing comes back within QUIET_S."""
        await self.send(data)
        return await self.receive(1, QUIET_S) == b""


def _receive_fd(fd: int, size: int, seconds: float) -> bytes:
    received = b""
    deadline = time.monotonic() + seconds
    while len(received) < size:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        received += os.read(fd, size - len(received))
    return received


@contextlib.asynccontextmanager
async def raw_serial(path: str) -> AsyncIterator[RawLine]:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)

    async def send(data: bytes) -> None:
        os.write(fd, data)

    async def receive(size: int, seconds: float) -> bytes:
        return await asyncio.to_thread(_receive_fd, fd, size, seconds)

    try:
        yield RawLine(send, receive)
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def raw_tcp(port: int) -> AsyncIterator[RawLine]:
    reader, writer = await asyncio.open_connection(HOST, port)

    async def send(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    async def receive(size: int, seconds: float) -> bytes:
        received = b""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while len(received) < size and (more := await reader.read(size - len(received))):
                    received += more
        return received

    try:
        yield RawLine(send, receive)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def raw_rtu(
    devices: dict[int, ModbusDevice], transport: RtuTransport
) -> AsyncIterator[tuple[RtuSerialServer | RtuOverTcpServer, RawLine]]:
    """``devices`` served on ``transport``, and a raw line to them."""
    if transport == "rtu":
        with PtyPair() as (simulator_end, gateway_end):
            async with (
                RtuSerialServer(devices, simulator_end) as serial_server,
                raw_serial(gateway_end) as line,
            ):
                yield serial_server, line
    else:
        async with RtuOverTcpServer(devices) as tcp_server, raw_tcp(tcp_server.port) as line:
            yield tcp_server, line


def unit_of(simulator: ParkSimulator, key: str) -> int:
    device = simulator.park.device(key)
    served = simulator.park.gateways[device.gateway].devices
    return next(unit_id for unit_id, sim in served.items() if sim is device)


@pytest.mark.unit
def test_crc_of_the_specification_example() -> None:
    """The specification's CRC example, 1241 hex, is sent low byte first: 41 then 12. It is
    the CRC of the message 02 07 (address 2, function 07)."""
    assert crc16(b"\x02\x07") == 0x1241
    assert with_crc(b"\x02\x07") == b"\x02\x07\x41\x12"
    assert crc16(b"123456789") == 0x4B37  # the check value of CRC-16/MODBUS
    read_three = bytes.fromhex("1103006B0003")  # unit 17: read holding registers 107-109
    assert with_crc(read_three) == read_three + b"\x76\x87"
    assert crc16(with_crc(read_three)) == 0  # a frame with its own CRC leaves no remainder


@pytest.mark.unit
def test_framer_cuts_requests_by_function_code() -> None:
    requests = [
        bytes([1]) + READ_ONE,
        bytes([2, 0x10, 0x00, 0x05, 0x00, 0x02, 0x04, 0x12, 0x34, 0x56, 0x78]),
        bytes([3, 0x0F, 0x00, 0x00, 0x00, 0x0A, 0x02, 0xFF, 0x03]),
        bytes([4, 0x07]),  # read exception status: its size comes from its CRC
        bytes([5, 0x06, 0x00, 0x01, 0x00, 0x03]),
    ]
    stream = b"".join(with_crc(request) for request in requests)
    framer = RtuFramer()
    cut = [frame for i in range(len(stream)) for frame in framer.feed(stream[i : i + 1])]
    assert cut == requests
    assert framer.pending == 0
    assert framer.dropped == 0
    assert RtuFramer().feed(stream) == requests


@pytest.mark.unit
def test_framer_drops_noise_and_bad_crcs_and_resynchronises() -> None:
    good = bytes([1]) + READ_ONE
    corrupted = bytearray(with_crc(bytes([2]) + READ_ONE))
    corrupted[3] ^= 0x40
    framer = RtuFramer()
    assert framer.feed(b"\x00\xff\x13" + bytes(corrupted) + with_crc(good)) == [good]
    assert framer.dropped == 3 + len(corrupted)
    assert framer.pending == 0
    assert framer.feed(bytes(corrupted)) == []
    assert framer.flush() == []
    assert framer.dropped == 3 + 2 * len(corrupted)

    assert framer.feed(with_crc(good)[:5]) == []  # the line falls silent mid-frame
    assert framer.pending == 5
    assert framer.flush() == []
    assert framer.pending == 0
    assert framer.feed(with_crc(good)) == [good]

    # noise that announces a long request (function 16, 200 data bytes) hides a whole request
    # until the line falls silent
    assert framer.feed(b"\x01\x10\x00\x00\x00\x64\xc8" + with_crc(good)) == []
    assert framer.flush() == [good]
    assert framer.pending == 0


@pytest.mark.unit
def test_pty_pair_joins_two_raw_terminals() -> None:
    pair = PtyPair()
    first, second = pair.open()
    try:
        ends = [os.open(path, os.O_RDWR | os.O_NOCTTY) for path in (first, second)]
        every_byte = bytes(range(256))  # CR, ^C, XON…: nothing is translated or echoed
        for source, sink in (ends, ends[::-1]):
            os.write(source, every_byte)
            assert _receive_fd(sink, len(every_byte), DEADLINE_S) == every_byte
            assert _receive_fd(source, 1, 0.05) == b""  # no echo
        for fd in ends:
            os.close(fd)
    finally:
        pair.close()
    assert not Path(first).exists()
    assert not Path(second).exists()
    with pytest.raises(RuntimeError, match="not open"):
        _ = pair.paths


@pytest.mark.integration
@pytest.mark.parametrize("transport", ["rtu", "rtu-tcp"])
def test_every_device_reads_the_same_over_rtu_as_over_tcp(transport: RtuTransport) -> None:
    simulator = park()
    gateway = GATEWAY_OF[transport]
    devices = simulator.park.gateways[gateway].devices

    async def scenario() -> None:
        async with (
            simulator,
            rtu_client(simulator, transport) as rtu,
            modbus_client(simulator.ports[gateway]) as tcp,
        ):
            simulator.tick()
            for unit_id, device in devices.items():
                over_rtu = await read_plan(rtu, unit_id, device.profile)
                assert over_rtu == await read_plan(tcp, unit_id, device.profile), device.name
        rtu_server = (
            simulator.serial_servers[gateway]
            if transport == "rtu"
            else simulator.rtu_tcp_servers[gateway]
        )
        plans = sum(len(plan_reads(device.profile)) for device in devices.values())
        assert rtu_server.requests == plans
        assert rtu_server.function_codes.total() == plans

    asyncio.run(scenario())


@pytest.mark.integration
def test_serial_line_is_silent_for_an_absent_unit_rtu_over_tcp_answers_0x0b() -> None:
    simulator = park()
    meter = "tiny-shoes/incomer"
    unit_id = unit_of(simulator, meter)
    absent = max(simulator.park.gateways[SERIAL_GATEWAY].devices) + 1

    async def scenario() -> None:
        async with simulator:
            async with rtu_client(simulator, "rtu") as serial:
                with pytest.raises(ModbusIOException):
                    await serial.read_holding_registers(0, count=1, device_id=absent)
                rr = await serial.read_holding_registers(0xFF00, count=1, device_id=unit_id)
                assert rr.isError()
                assert rr.exception_code == 0x02  # a device that is there answers exceptions
                simulator.park.inject(meter, parse_fault({"type": "exception", "code": 6}))
                rr = await serial.read_holding_registers(0, count=1, device_id=unit_id)
                assert rr.exception_code == 0x06
                other = unit_id % absent + 1
                rr = await serial.read_holding_registers(0, count=1, device_id=other)
                assert not rr.isError()
            async with rtu_client(simulator, "rtu-tcp") as tcp:
                rr = await tcp.read_holding_registers(0, count=1, device_id=absent)
                assert rr.isError()
                assert rr.exception_code == 0x0B  # gateway target device failed to respond
                assert not (await tcp.read_holding_registers(0, count=1, device_id=1)).isError()
        assert simulator.serial_servers[SERIAL_GATEWAY].requests == 4

    asyncio.run(scenario())


@pytest.mark.integration
def test_a_silent_device_makes_the_serial_master_time_out_then_the_line_serves_on() -> None:
    simulator = park()
    meter = "tiny-shoes/incomer"
    unit_id = unit_of(simulator, meter)

    async def scenario() -> None:
        async with simulator, rtu_client(simulator, "rtu") as serial:
            record = simulator.park.inject(meter, parse_fault({"type": "silent"}))
            with pytest.raises(ModbusIOException):
                await serial.read_holding_registers(0, count=1, device_id=unit_id)
            simulator.park.clear(record.id)
            assert not (
                await serial.read_holding_registers(0, count=1, device_id=unit_id)
            ).isError()

    asyncio.run(scenario())


@pytest.mark.integration
@pytest.mark.parametrize("transport", ["rtu", "rtu-tcp"])
def test_bad_crc_and_noise_get_no_reply(transport: RtuTransport) -> None:
    memory = RegisterMemory(holding=4)
    memory.set_registers(Table.HOLDING, 0, [0xBEEF])
    write = bytes([7, 0x06, 0x00, 0x00, 0x12, 0x34])  # unit 7: holding 0 := 0x1234
    corrupted = bytearray(with_crc(write))
    corrupted[-1] ^= 0x01

    async def scenario() -> None:
        async with raw_rtu({7: memory}, transport) as (server, line):
            assert await line.unanswered(bytes(corrupted))
            assert memory.get_registers(Table.HOLDING, 0, 1) == [0xBEEF]  # not executed
            read_one = with_crc(bytes([7]) + READ_ONE)
            answer = with_crc(bytes([7, 0x03, 2, 0xBE, 0xEF]))
            assert await line.exchange(b"\x55\xaa" + read_one, len(answer)) == answer
            await line.send(read_one[:3])  # a frame in two pieces
            assert await line.exchange(read_one[3:], len(answer)) == answer
            assert server.requests == 2

    asyncio.run(scenario())


@pytest.mark.integration
@pytest.mark.parametrize("transport", ["rtu", "rtu-tcp"])
def test_broadcast_write_reaches_every_unit_without_reply(transport: RtuTransport) -> None:
    units = {unit: RegisterMemory(holding=4) for unit in (1, 2, 3)}
    devices: dict[int, ModbusDevice] = dict(units)
    read_two = with_crc(bytes([2, 0x03, 0x00, 0x02, 0x00, 0x01]))

    async def scenario() -> None:
        async with raw_rtu(devices, transport) as (server, line):
            broadcast = with_crc(bytes([0, 0x06, 0x00, 0x02, 0x00, 0x63]))
            assert await line.unanswered(broadcast)
            assert await line.unanswered(with_crc(bytes([0]) + READ_ONE))  # a read: ignored
            answer = with_crc(bytes([2, 0x03, 2, 0x00, 0x63]))
            assert await line.exchange(read_two, len(answer)) == answer
            assert server.requests == 3

    asyncio.run(scenario())
    assert all(memory.get_registers(Table.HOLDING, 2, 1) == [0x63] for memory in units.values())


@pytest.mark.integration
def test_exception_replies_carry_address_and_crc() -> None:
    async def scenario() -> None:
        async with raw_rtu({1: RegisterMemory(holding=4)}, "rtu") as (_, line):
            cases = [
                (bytes([1, 0x03, 0x00, 0x04, 0x00, 0x01]), bytes([1, 0x83, 0x02])),  # past end
                (bytes([1, 0x03, 0x00, 0x00, 0x00, 0x00]), bytes([1, 0x83, 0x03])),  # 0 words
                (bytes([1, 0x07]), bytes([1, 0x87, 0x01])),  # function 07 is not served
            ]
            for request, reply in cases:
                assert await line.exchange(with_crc(request), 5) == with_crc(reply)
            assert await line.receive(1, QUIET_S) == b""  # and nothing more

    asyncio.run(scenario())


@pytest.mark.integration
def test_gateway_configs_name_the_rtu_transports(tmp_path: Path) -> None:
    simulator = park()

    async def scenario() -> tuple[list[Path], str, int, list[int]]:
        async with simulator:
            paths = simulator.gateway_configs(tmp_path, mqtt_url="mqtt://127.0.0.1:1883")
            line = simulator.serial_ports[SERIAL_GATEWAY]
            return paths, line, simulator.rtu_ports[TCP_GATEWAY], list(simulator.ports.values())

    paths, line, port, tcp_ports = asyncio.run(scenario())
    configs = {path.stem: tomllib.loads(path.read_text())["devices"] for path in paths}
    assert line.startswith("/dev/pts/")
    assert len(configs[SERIAL_GATEWAY]) == len(simulator.park.gateways[SERIAL_GATEWAY].devices)
    for entry in configs[SERIAL_GATEWAY]:
        assert entry["transport"] == "rtu"
        assert entry["serial_port"] == line
        assert entry["baudrate"] == 9600
        assert "host" not in entry
        assert "port" not in entry
    for entry in configs[TCP_GATEWAY]:
        assert entry["transport"] == "rtu-tcp"
        assert entry["host"] == HOST
        assert entry["port"] == port
    assert port not in tcp_ports  # a port of its own, beside Modbus TCP
    assert simulator.serial_ports == {}  # the serial line is gone with the simulator
    assert not Path(line).exists()


@pytest.mark.unit
def test_rtu_gateways_must_exist_and_name_a_transport() -> None:
    scenario = load_scenario("tiny")
    with pytest.raises(ValueError, match="does not have"):
        ParkSimulator(scenario, tick_s=0, rtu_gateways={"gw-nowhere": "rtu"})
    with pytest.raises(ValueError, match="RTU transports"):
        ParkSimulator(scenario, tick_s=0, rtu_gateways={SERIAL_GATEWAY: "ascii"})  # type: ignore[dict-item]
