"""Read plans: a profile compiled, once at start-up, into the fewest Modbus requests.

Adjacent points of the same table are coalesced into one request of at most ``max_registers``
words (125 is the protocol's limit for function codes 03 and 04, 2000 bits for 01 and 02), reading
through unused words of up to ``max_gap`` but never through a declared hole (addresses the device
answers with an exception). Each request knows which slice of its answer belongs to which point
and holds a compiled program that turns the whole answer into engineering values in one pass:
the words are packed into bytes once (big- and, when an order needs it, little-endian), and each
point is a single ``unpack_from`` at its offset, so a poll does no lookups.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from profiles.codec import DataType, WordOrder, layout
from profiles.model import BIT_TABLES, Hole, Point, Profile, Quirks, Table
from wire.payload import Quality

FUNCTION_CODES: dict[str, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
MAX_REGISTERS = 125
MAX_BITS = 2000


class PlanError(ValueError):
    """A profile that cannot be read with the limits given."""


Value = tuple[float | None, Quality]
_BAD: Value = (None, Quality.BAD)
Program = Callable[[Sequence[int]], list[Value]]


@dataclass(frozen=True, slots=True)
class Slot:
    """One point inside a request's answer."""

    point: Point
    offset: int
    size: int
    order: WordOrder
    alone: Program = field(repr=False, compare=False)
    """This point's program on its own words (offset 0): what :meth:`value` runs."""

    def value(self, words: Sequence[int]) -> Value:
        """The engineering value of this point in a request's answer, with its quality: the
        same rules as :attr:`ReadRequest.values`, which decodes a whole answer at once."""
        return self.alone(words[self.offset : self.offset + self.size])[0]


def _compile(table: str, count: int, slots: Sequence[tuple[Point, WordOrder, int]]) -> Program:
    """One function turning a whole answer into (value, quality) per point, in the order given.

    ``slots`` are (point, word order, offset). A raw value is read per point (a bit of a coil
    table; for registers one ``unpack_from`` of the answer's bytes, packed once per answer),
    then judged: ``bit`` selects one bit, ``not_available`` or a non-finite raw value is bad,
    ``raw * scale + offset`` outside ``min``..``max`` is uncertain.
    """
    judges = [
        (
            point.bit if point.type is DataType.BITS else None,
            point.scale,
            point.offset,
            point.not_available,
            -math.inf if point.min is None else point.min,
            math.inf if point.max is None else point.max,
        )
        for point, _, _ in slots
    ]
    raws: Callable[[Sequence[int]], list[int | float]]
    if table in BIT_TABLES:
        offsets = [offset for _, _, offset in slots]

        def bits(words: Sequence[int]) -> list[int | float]:
            if len(words) < count:
                raise ValueError(f"expected {count} bits, got {len(words)}")
            return [words[o] for o in offsets]

        raws = bits
    else:
        pack_big = struct.Struct(f">{count}H").pack
        pack_little = struct.Struct(f"<{count}H").pack
        readers = []
        for point, order, offset in slots:
            value_struct, little_words = layout(point.type, order)
            readers.append((little_words, value_struct.unpack_from, 2 * offset))
        need_big = any(not little for little, _, _ in readers)
        need_little = any(little for little, _, _ in readers)

        def registers(words: Sequence[int]) -> list[int | float]:
            if len(words) != count:
                raise ValueError(f"expected {count} registers, got {len(words)}")
            big = pack_big(*words) if need_big else b""
            little = pack_little(*words) if need_little else b""
            return [unpack(little if lw else big, at)[0] for lw, unpack, at in readers]

        raws = registers

    isfinite, good, uncertain = math.isfinite, Quality.GOOD, Quality.UNCERTAIN

    def values(words: Sequence[int]) -> list[Value]:
        out: list[Value] = []
        for read, (bit, scale, offset, missing, low, high) in zip(raws(words), judges, strict=True):
            raw = read if bit is None else (int(read) >> bit) & 1
            if raw == missing or not isfinite(raw):
                out.append(_BAD)
                continue
            value = raw * scale + offset
            out.append((value, good if low <= value <= high else uncertain))
        return out

    return values


@dataclass(frozen=True, slots=True)
class ReadRequest:
    table: Table
    address: int
    count: int
    slots: tuple[Slot, ...]
    values: Program = field(repr=False, compare=False)
    """The (value, quality) of every slot, in slot order, from the words of one answer."""

    @property
    def function_code(self) -> int:
        return FUNCTION_CODES[self.table]


DEFAULT_MAX_GAP = 8


def plan_for(profile: Profile, device: Quirks | None = None) -> list[ReadRequest]:
    """The read plan of a profile under its own quirks, overridden by a device's."""
    quirks = profile.quirks if device is None else device.over(profile.quirks)
    return plan_reads(
        profile,
        max_registers=quirks.max_registers or MAX_REGISTERS,
        max_gap=DEFAULT_MAX_GAP if quirks.max_gap is None else quirks.max_gap,
        one_per_point=bool(quirks.one_request_per_point),
        holes=quirks.holes or (),
    )


def plan_reads(
    profile: Profile,
    *,
    max_registers: int = MAX_REGISTERS,
    max_gap: int = DEFAULT_MAX_GAP,
    one_per_point: bool = False,
    holes: Iterable[Hole] = (),
) -> list[ReadRequest]:
    """Coalesce a profile's points into read requests, in table and address order.

    A request never covers an address of ``holes``; a point inside a hole is a :class:`PlanError`.
    """
    holes = tuple(holes)
    if not 1 <= max_registers <= MAX_REGISTERS:
        raise PlanError(f"max_registers must be 1-{MAX_REGISTERS}, not {max_registers}")
    requests: list[ReadRequest] = []
    by_table: dict[str, list[Point]] = {}
    for point in profile.points:
        by_table.setdefault(point.table, []).append(point)
    for table in FUNCTION_CODES:
        points = sorted(by_table.get(table, []), key=lambda p: (p.address, p.words()))
        limit = MAX_BITS if table in BIT_TABLES else max_registers
        group: list[Point] = []
        start = end = 0
        for point in points:
            size = point.words()
            if point.address + size > 0x10000:
                raise PlanError(f"point {point.name} runs past address 65535")
            if size > limit:
                raise PlanError(f"point {point.name} needs {size} words; the limit is {limit}")
            if any(h.overlaps(table, point.address, point.address + size) for h in holes):
                raise PlanError(f"point {point.name} at {point.address} lies in a hole")
            new_end = max(end, point.address + size)
            fits = (
                point.address <= end + max_gap
                and new_end - start <= limit
                and not any(h.overlaps(table, start, new_end) for h in holes)
            )
            if group and fits and not one_per_point:
                group.append(point)
                end = new_end
                continue
            if group:
                requests.append(_request(profile, table, start, end, group))
            group, start, end = [point], point.address, point.address + size
        if group:
            requests.append(_request(profile, table, start, end, group))
    return requests


def _request(
    profile: Profile, table: str, start: int, end: int, points: list[Point]
) -> ReadRequest:
    slots = []
    for p in points:
        order, size = profile.encoding(p).order, p.words()
        alone = _compile(table, size, [(p, order, 0)])
        slots.append(Slot(point=p, offset=p.address - start, size=size, order=order, alone=alone))
    count = end - start
    return ReadRequest(
        table=points[0].table,
        address=start,
        count=count,
        slots=tuple(slots),
        values=_compile(table, count, [(s.point, s.order, s.offset) for s in slots]),
    )
