"""Tools for the person installing a gateway: read one device once, and probe a register whose
word order the datasheet does not make clear."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config import Device, DeviceSection
from gateway.errors import DeviceError
from gateway.modbus import Link, RawRead, links_for
from profiles.codec import DataType, Encoding, WordOrder, decode
from profiles.plan import FUNCTION_CODES, ReadRequest
from wire.payload import Quality


@dataclass(frozen=True, slots=True)
class Row:
    point: str
    where: str
    value: float | None
    unit: str | None
    quality: Quality | None
    error: str | None = None


async def read_once(device: Device) -> list[Row]:
    """Every point of a device's plan, read once, decoded as the gateway would publish it."""
    (link,) = links_for([device]).values()
    rows: list[Row] = []
    try:
        for request in device.requests:
            try:
                words = await link.read(request, device.config.unit_id, device.config.timeout_s)
            except DeviceError as err:
                rows.extend(
                    Row(s.point.name, _where(request, s.offset), None, None, None, str(err))
                    for s in request.slots
                )
                continue
            for slot, (value, quality) in zip(request.slots, request.values(words), strict=True):
                unit = slot.point.unit_or_catalogue
                rows.append(
                    Row(slot.point.name, _where(request, slot.offset), value, unit, quality)
                )
    finally:
        await link.close()
    return rows


def _where(request: ReadRequest, offset: int) -> str:
    return f"{request.table}:{request.address + offset}"


PROBE_TYPES = (DataType.FLOAT32, DataType.INT32, DataType.UINT32)


@dataclass(frozen=True, slots=True)
class Candidate:
    type: DataType
    order: WordOrder
    value: float
    plausible: bool


def candidates(
    words: Sequence[int],
    *,
    low: float,
    high: float,
    scale: float = 1.0,
    types: Sequence[DataType] = PROBE_TYPES,
) -> list[Candidate]:
    """Two registers decoded as every 32-bit type in every word order, scaled, each marked
    plausible when it is finite and within [low, high]."""
    found = []
    for dtype in types:
        for order in WordOrder:
            raw = decode(words, Encoding(type=dtype, order=order))
            assert not isinstance(raw, str)  # noqa: S101 - numeric types only
            value = raw * scale
            plausible = math.isfinite(value) and low <= value <= high
            if dtype is DataType.FLOAT32 and value != 0 and abs(value) < 1e-6:
                plausible = False  # a denormal-looking float is almost always a wrong order
            found.append(Candidate(dtype, order, value, plausible))
    return found


def suggestion(found: Sequence[Candidate]) -> Candidate | None:
    """The only plausible word order, if exactly one order has a plausible reading."""
    orders = {c.order for c in found if c.plausible}
    if len(orders) != 1:
        return None
    return next(c for c in found if c.plausible)


async def probe(section: DeviceSection, table: str, address: int) -> list[int]:
    """Read the two registers at ``address`` of ``table`` (holding or input)."""
    if table not in ("holding", "input"):
        raise ValueError("probe reads registers: table is holding or input")
    request = RawRead(FUNCTION_CODES[table], address, 2)
    link = Link([section])
    try:
        return list(await link.read(request, section.unit_id, section.timeout_s))
    finally:
        await link.close()
