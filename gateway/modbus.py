"""The only module that talks pymodbus: one link per bus, shared by the devices on it.

A bus is what answers one request at a time: a serial line (RTU), or one TCP endpoint (a device,
or a serial-to-Ethernet converter with many unit ids behind it, speaking Modbus TCP or passing
RTU frames through). Every device on a bus shares one :class:`Link`, its connection and its lock,
so requests never interleave on the wire.

Only read function codes (01-04) can be sent: :meth:`Link.read` has no other path, and
:data:`READ_FUNCTIONS` is checked when a plan is bound to a link.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from gateway.config import Device, DeviceSection
from gateway.errors import DeviceException, DeviceTimeout, DeviceUnreachable, Where

log = logging.getLogger(__name__)

READ_FUNCTIONS = frozenset({1, 2, 3, 4})
"""The function codes the gateway sends: read coils, discrete inputs, holding, input registers."""

Client = AsyncModbusTcpClient | AsyncModbusSerialClient


class Span(Protocol):
    """What one read request is: a :class:`~profiles.plan.ReadRequest`, or a :class:`RawRead`."""

    @property
    def function_code(self) -> int: ...
    @property
    def address(self) -> int: ...
    @property
    def count(self) -> int: ...


@dataclass(frozen=True, slots=True)
class RawRead:
    """Words to read outside any profile (``zayton gateway probe``)."""

    function_code: int
    address: int
    count: int


def _client(device: DeviceSection, timeout_s: float) -> Client:
    # retries=0: the gateway's scheduler decides what to do after a failure; the library's
    # default of three retries with a 3 s timeout would block a dead device for ~12 s.
    # reconnect_delay=0: connections are opened on demand by read(); the library's own
    # reconnect task would race with it and swallows cancellation at shutdown.
    if device.transport == "rtu":
        assert device.serial_port is not None  # noqa: S101 - checked by the config model
        return AsyncModbusSerialClient(
            device.serial_port,
            framer=FramerType.RTU,
            baudrate=device.baudrate,
            bytesize=device.bytesize,
            parity=device.parity,
            stopbits=device.stopbits,
            timeout=timeout_s,
            retries=0,
            reconnect_delay=0,
        )
    assert device.host is not None  # noqa: S101 - checked by the config model
    return AsyncModbusTcpClient(
        device.host,
        port=device.port,
        framer=FramerType.RTU if device.transport == "rtu-tcp" else FramerType.SOCKET,
        timeout=timeout_s,
        retries=0,
        reconnect_delay=0,
    )


class Link:
    """One bus: a connection opened on demand, one request at a time."""

    def __init__(self, devices: Sequence[DeviceSection], connect_pause_s: float = 0.0) -> None:
        """``connect_pause_s``: wait after opening the connection (the longest any device on the
        bus asks for)."""
        first = devices[0]
        self.endpoint = first.bus.split(":", 1)[1]
        # The library's own timeout only backs up ours (asyncio.timeout around every request).
        self._client = _client(first, max(d.timeout_s for d in devices) + 1.0)
        self._connect_pause_s = connect_pause_s
        self._lock = asyncio.Lock()
        self.connects = 0

    async def read(self, request: Span, unit_id: int, timeout_s: float) -> Sequence[int]:
        """The words (or bits as 0/1) of one read request."""
        async with self._lock:
            try:
                async with asyncio.timeout(timeout_s):
                    if not self._client.connected:
                        await self._connect(request, unit_id)
                    response = await self._call(request, unit_id)
            except TimeoutError:
                # A late answer would be taken for the next request's: start a fresh connection.
                self._client.close()
                where = self._where(request, unit_id)
                raise DeviceTimeout(f"no answer within {timeout_s} s", where) from None
            except ModbusException as err:
                self._client.close()
                raise DeviceUnreachable(str(err), self._where(request, unit_id)) from err
        if response.isError():
            raise DeviceException(response.exception_code, self._where(request, unit_id))
        if request.function_code in (1, 2):
            return [int(bit) for bit in response.bits[: request.count]]
        return response.registers

    def _where(self, request: Span, unit_id: int) -> Where:
        return Where(self.endpoint, unit_id, request.function_code, request.address)

    async def _connect(self, request: Span, unit_id: int) -> None:
        if not await self._client.connect():
            where = self._where(request, unit_id)
            raise DeviceUnreachable("connection refused or timed out", where)
        self.connects += 1
        if self._connect_pause_s:
            await asyncio.sleep(self._connect_pause_s)

    async def _call(self, request: Span, unit_id: int) -> ModbusPDU:
        client, address, count = self._client, request.address, request.count
        match request.function_code:
            case 1:
                return await client.read_coils(address, count=count, device_id=unit_id)
            case 2:
                return await client.read_discrete_inputs(address, count=count, device_id=unit_id)
            case 3:
                return await client.read_holding_registers(address, count=count, device_id=unit_id)
            case 4:
                return await client.read_input_registers(address, count=count, device_id=unit_id)
            case other:
                raise ValueError(f"function code {other} is not a read; the gateway only reads")

    async def disconnect(self) -> None:
        """Close the connection now (it reopens on the next read)."""
        async with self._lock:
            self._client.close()

    async def close(self) -> None:
        self._client.close()


def links_for(devices: Sequence[Device]) -> dict[str, Link]:
    """One link per bus of ``devices``, keyed by :attr:`DeviceSection.bus`."""
    by_bus: dict[str, list[Device]] = {}
    for device in devices:
        by_bus.setdefault(device.config.bus, []).append(device)
    return {
        bus: Link(
            [d.config for d in members],
            connect_pause_s=max(d.quirks.connect_pause_s or 0.0 for d in members),
        )
        for bus, members in by_bus.items()
    }
