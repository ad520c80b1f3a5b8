"""A simulated device whose register memory is laid out by a device profile.

The simulator sets engineering values (volts, kWh) and this class encodes them into registers with
the same codec and profile the gateway decodes with, so the two sides cannot disagree about a
register map.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

from profiles.codec import DataType, WordOrder, decoder, encoder
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


class Binding:
    """A point with its place in register memory and its codec."""

    __slots__ = ("decode", "encode", "point", "table", "words")

    def __init__(self, profile: Profile, point: Point, order: WordOrder | None = None) -> None:
        enc = profile.encoding(point)
        if order is not None and point.words() > 1:
            enc = dataclasses.replace(enc, order=order)
        self.point = point
        self.table = _TABLES[point.table]
        self.words = point.words()
        self.encode: Callable[[int | float | str], list[int]] = encoder(enc)
        self.decode: Callable[[Sequence[int]], int | float | str] = decoder(enc)

    @property
    def integer(self) -> bool:
        return self.point.type in _INTEGER_TYPES


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
        self.bindings = {point.name: Binding(profile, point) for point in profile.points}
        self._served = dict(self.bindings)  # what a correct client decodes with
        self.handle = self.memory.handle

    def reorder(self, order: WordOrder | None) -> None:
        """Encode multi-register values in ``order`` from now on (None: the profile's own), as
        a device whose maker documented the wrong word order would. Values already in memory
        keep their encoding until they are set again."""
        self.bindings = {p.name: Binding(self.profile, p, order) for p in self.profile.points}

    def set(self, name: str, value: float) -> None:
        """Show ``value`` (engineering units) in the point's registers.

        Integer registers hold ``(value - offset) / scale``: truncated for counters (a meter shows
        the whole units it has completed), rounded for everything else.
        """
        binding = self.bindings[name]
        point = binding.point
        raw: float = (value - point.offset) / point.scale
        if point.type in _INTEGER_TYPES:
            raw = math.floor(raw) if point.kind_or_catalogue is Kind.COUNTER else round(raw)
        self.set_raw(name, raw)

    def set_raw(self, name: str, raw: float) -> None:
        """Put a raw register value as it is: for faults and for values beyond a scale."""
        binding = self.bindings[name]
        value: int | float = int(raw) if binding.point.type in _INTEGER_TYPES else raw
        words = binding.encode(value)
        if binding.point.table in BIT_TABLES:
            words = [1 if value else 0]
        self.memory.put(binding.table, binding.point.address, words)

    def raw(self, name: str) -> list[int]:
        """The register words of a point as a client would read them."""
        binding = self.bindings[name]
        return list(
            self.memory.get_registers(binding.table, binding.point.address, binding.point.words())
        )

    def served(self, name: str) -> float:
        """The engineering value a correct client decodes from the point's registers now."""
        binding = self._served[name]
        raw = binding.decode(self.raw(name))
        if isinstance(raw, str):
            raise TypeError(f"point {name} is not numeric")
        return raw * binding.point.scale + binding.point.offset
