"""The only module that talks pymodbus: one TCP link per endpoint, shared by its unit ids.

Serial-to-Ethernet converters put many unit ids behind one TCP port and answer one request at a
time, so every device behind an endpoint shares one :class:`TcpLink` and its lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from gateway.errors import DeviceException, DeviceTimeout, DeviceUnreachable, Where
from profiles.plan import ReadRequest

log = logging.getLogger(__name__)


class ModbusLink(Protocol):
    async def read(self, request: ReadRequest, unit_id: int, timeout_s: float) -> Sequence[int]:
        """The words (or bits as 0/1) of one read request."""
        ...

    async def close(self) -> None: ...


class TcpLink:
    def __init__(self, host: str, port: int) -> None:
        self.endpoint = f"{host}:{port}"
        # retries=0: the gateway's scheduler decides what to do after a failure; the library's
        # default of three retries with a 3 s timeout would block a dead device for ~12 s.
        # reconnect_delay=0: connections are opened on demand by read(); the library's own
        # reconnect task would race with it and swallows cancellation at shutdown.
        self._client = AsyncModbusTcpClient(
            host, port=port, timeout=1, retries=0, reconnect_delay=0
        )
        self._lock = asyncio.Lock()

    async def _connected(self, request: ReadRequest, unit_id: int) -> None:
        if self._client.connected:
            return
        if not await self._client.connect():
            raise DeviceUnreachable(
                "connection refused or timed out",
                Where(self.endpoint, unit_id, request.function_code, request.address),
            )

    async def read(self, request: ReadRequest, unit_id: int, timeout_s: float) -> Sequence[int]:
        where = Where(self.endpoint, unit_id, request.function_code, request.address)
        async with self._lock:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._connected(request, unit_id)
                    response = await self._call(request, unit_id)
            except TimeoutError:
                # A late answer would be taken for the next request's: start a fresh connection.
                self._client.close()
                raise DeviceTimeout(f"no answer within {timeout_s} s", where) from None
            except ModbusException as err:
                self._client.close()
                raise DeviceUnreachable(str(err), where) from err
        if response.isError():
            raise DeviceException(response.exception_code, where)
        if request.function_code in (1, 2):
            return [int(bit) for bit in response.bits[: request.count]]
        return response.registers

    async def _call(self, request: ReadRequest, unit_id: int) -> ModbusPDU:
        client, address, count = self._client, request.address, request.count
        match request.function_code:
            case 1:
                return await client.read_coils(address, count=count, device_id=unit_id)
            case 2:
                return await client.read_discrete_inputs(address, count=count, device_id=unit_id)
            case 3:
                return await client.read_holding_registers(address, count=count, device_id=unit_id)
            case _:
                return await client.read_input_registers(address, count=count, device_id=unit_id)

    async def close(self) -> None:
        self._client.close()
