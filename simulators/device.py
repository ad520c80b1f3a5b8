"""A simulated device whose register memory is laid out by a device profile.

The simulator sets engineering values (volts, kWh) and this class encodes them into registers with
the same codec and profile the gateway decodes with, so the two sides cannot disagree about a
register map.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from profiles.codec import DataType, decoder, encoder
from profiles.model import BIT_TABLES, Point, Profile
from simulators.modbus_server import RegisterMemory, Table
from wire.catalogue import Kind

_TABLES: dict[str, Table] = {
    "coil": Table.COILS,
    "discrete": Table.DISCRETE,
    "holding": Table.HOLDING,
    "input": Table.INPUT,
}
_INTEGER_TYPES = frozenset(
    {
        DataType.INT16,
        DataType.UINT16,
        DataType.INT32,
        DataType.UINT32,
        DataType.INT64,
        DataType.UINT64,
        DataType.BITS,
    }
)


class _Binding:
    __slots__ = ("decode", "encode", "point", "table")

    def __init__(self, profile: Profile, point: Point) -> None:
        enc = profile.encoding(point)
        self.point = point
        self.table = _TABLES[point.table]
        self.encode: Callable[[int | float | str], list[int]] = encoder(enc)
        self.decode: Callable[[Sequence[int]], int | float | str] = decoder(enc)


class ProfiledDevice:
    """Register memory plus the profile that gives it meaning; serves Modbus as a device."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        sizes = dict.fromkeys(_TABLES.values(), 0)
        for point in profile.points:
            table = _TABLES[point.table]
            sizes[table] = max(sizes[table], point.address + point.words())
        self.memory = RegisterMemory(
            coils=sizes[Table.COILS],
            discrete=sizes[Table.DISCRETE],
            holding=sizes[Table.HOLDING],
            input=sizes[Table.INPUT],
        )
        self._bindings = {point.name: _Binding(profile, point) for point in profile.points}
        self.handle = self.memory.handle

    def set(self, name: str, value: float) -> None:
        """Show ``value`` (engineering units) in the point's registers.

        Integer registers hold ``(value - offset) / scale``: truncated for counters (a meter shows
        the whole units it has completed), rounded for everything else.
        """
        binding = self._bindings[name]
        point = binding.point
        raw: float = (value - point.offset) / point.scale
        if point.type in _INTEGER_TYPES:
            raw = math.floor(raw) if point.kind_or_catalogue is Kind.COUNTER else round(raw)
        self.set_raw(name, raw)

    def set_raw(self, name: str, raw: float) -> None:
        """Put a raw register value as it is: for faults and for values beyond a scale."""
        binding = self._bindings[name]
        value: int | float = int(raw) if binding.point.type in _INTEGER_TYPES else raw
        words = binding.encode(value)
        if binding.point.table in BIT_TABLES:
            words = [1 if value else 0]
        self.memory.set_registers(binding.table, binding.point.address, words)

    def raw(self, name: str) -> list[int]:
        """The register words of a point as a client would read them."""
        binding = self._bindings[name]
        return list(
            self.memory.get_registers(binding.table, binding.point.address, binding.point.words())
        )

    def served(self, name: str) -> float:
        """The engineering value a correct client decodes from the point's registers now."""
        binding = self._bindings[name]
        raw = binding.decode(self.raw(name))
        if isinstance(raw, str):
            raise TypeError(f"point {name} is not numeric")
        return raw * binding.point.scale + binding.point.offset
