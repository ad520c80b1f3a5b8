"""A simulated device whose register memory is laid out by a device profile.

The simulator sets engineering values (volts, kWh) and this class encodes them into registers with
the same codec and profile the gateway decodes with, so the two sides cannot disagree about a
register map.
"""

from __future__ import annotations

import dataclasses
import math
from array import array
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
    """A point with its place in register memory, its codec and its compiled writers."""

    __slots__ = ("decode", "encode", "integer", "point", "store", "store_raw", "table", "words")

    def __init__(
        self, profile: Profile, point: Point, memory: RegisterMemory, order: WordOrder | None = None
    ) -> None:
        enc = profile.encoding(point)
        if order is not None and point.words() > 1:
            enc = dataclasses.replace(enc, order=order)
        self.point = point
        self.table = _TABLES[point.table]
        self.words = point.words()
        self.integer = point.type in _INTEGER_TYPES
        self.encode: Callable[[int | float | str], list[int]] = encoder(enc)
        self.decode: Callable[[Sequence[int]], int | float | str] = decoder(enc)
        self.store_raw = self._raw_writer(memory.block(self.table))
        self.store = self._writer(point.kind_or_catalogue is Kind.COUNTER)

    def _raw_writer(self, block: array[int]) -> Callable[[float], None]:
        """A function that puts a raw value into the point's registers, compiled once."""
        address, size, encode, integer = self.point.address, self.words, self.encode, self.integer
        if address + size > len(block):
            raise ValueError(f"point {self.point.name} lies outside its table")
        if self.point.table in BIT_TABLES:

            def store_bit(raw: float) -> None:
                block[address] = 1 if raw else 0

            return store_bit

        def store(raw: float) -> None:
            block[address : address + size] = array("H", encode(int(raw) if integer else raw))

        return store

    def _writer(self, counter: bool) -> Callable[[float], None]:
        """A function that shows an engineering value: integer registers hold
        ``(value - offset) / scale``, truncated for counters (a meter shows the whole units it has
        completed), rounded for everything else."""
        store_raw, scale, offset = self.store_raw, self.point.scale, self.point.offset
        if not self.integer:
            return lambda value: store_raw((value - offset) / scale)
        if counter:
            return lambda value: store_raw(math.floor((value - offset) / scale))
        return lambda value: store_raw(round((value - offset) / scale))


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
        self.bindings = {p.name: Binding(profile, p, self.memory) for p in profile.points}
        self._served = dict(self.bindings)  # what a correct client decodes with
        self.handle = self.memory.handle

    def reorder(self, order: WordOrder | None) -> None:
        """Encode multi-register values in ``order`` from now on (None: the profile's own), as
        a device whose maker documented the wrong word order would. Values already in memory
        keep their encoding until they are set again."""
        memory, profile = self.memory, self.profile
        self.bindings = {p.name: Binding(profile, p, memory, order) for p in profile.points}

    def set(self, name: str, value: float) -> None:
        """Show ``value`` (engineering units) in the point's registers (see :class:`Binding`)."""
        self.bindings[name].store(value)

    def set_raw(self, name: str, raw: float) -> None:
        """Put a raw register value as it is: for faults and for values beyond a scale."""
        self.bindings[name].store_raw(raw)

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
