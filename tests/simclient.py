"""A Modbus TCP client for tests: reads a device the way the gateway does, over real sockets.

Timeouts raise :class:`pymodbus.exceptions.ModbusIOException` (pymodbus 3.16.1, ``retries=0``);
exception responses raise :class:`ExceptionReply` carrying the exception code.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.pdu import ModbusPDU

from profiles.model import Profile
from profiles.plan import plan_reads
from wire.payload import Quality

HOST = "127.0.0.1"

Readings = dict[str, tuple[float | None, Quality]]


class ExceptionReply(Exception):
    """A device answered a read with a Modbus exception response."""

    def __init__(self, unit_id: int, function_code: int, address: int, code: int) -> None:
        super().__init__(
            f"unit {unit_id} answered function {function_code} at {address} "
            f"with exception code {code:#04x}"
        )
        self.code = code


@contextlib.asynccontextmanager
async def modbus_client(
    port: int, *, host: str = HOST, reply_timeout: float = 2.0
) -> AsyncIterator[AsyncModbusTcpClient]:
    """A connected client that neither retries nor reconnects on its own."""
    client = AsyncModbusTcpClient(
        host, port=port, timeout=reply_timeout, retries=0, reconnect_delay=0
    )
    if not await client.connect():
        raise ConnectionError(f"no Modbus TCP server on {host}:{port}")
    try:
        yield client
    finally:
        client.close()


async def request(
    client: AsyncModbusTcpClient, unit_id: int, function_code: int, address: int, count: int
) -> ModbusPDU:
    """One read with function code 1-4; the response as pymodbus returns it (maybe an error)."""
    match function_code:
        case 1:
            return await client.read_coils(address, count=count, device_id=unit_id)
        case 2:
            return await client.read_discrete_inputs(address, count=count, device_id=unit_id)
        case 3:
            return await client.read_holding_registers(address, count=count, device_id=unit_id)
        case 4:
            return await client.read_input_registers(address, count=count, device_id=unit_id)
        case _:
            raise ValueError(f"function code {function_code} is not a read (1-4)")


async def read_raw(
    client: AsyncModbusTcpClient, unit_id: int, function_code: int, address: int, count: int
) -> list[int]:
    """The register words (bits as 0/1 for function codes 1 and 2) of one read."""
    response = await request(client, unit_id, function_code, address, count)
    if response.isError():
        raise ExceptionReply(unit_id, function_code, address, response.exception_code)
    if function_code in (1, 2):
        return [int(bit) for bit in response.bits[:count]]
    return list(response.registers)


async def read_points(client: AsyncModbusTcpClient, unit_id: int, profile: Profile) -> Readings:
    """Every point of ``profile`` read and decoded as the gateway does: value and quality."""
    readings: Readings = {}
    for plan in plan_reads(profile):
        words = await read_raw(client, unit_id, plan.function_code, plan.address, plan.count)
        for slot, value in zip(plan.slots, plan.values(words), strict=True):
            readings[slot.point.name] = value
    return readings
