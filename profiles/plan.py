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

from profiles.codec import DataType, WordOrder, decoder, layout
from profiles.model import BIT_TABLES, Hole, Point, Profile, Quirks, Table
from wire.payload import Quality

FUNCTION_CODES: dict[str, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
MAX_REGISTERS = 125
MAX_BITS = 2000


class PlanError(ValueError):
    """A profile that cannot be read with the limits given."""


@dataclass(frozen=True, slots=True)
class Slot:
    """One point inside a request's answer."""

    point: Point
    offset: int
    size: int
    order: WordOrder
    decode: Callable[[Sequence[int]], int | float | str]

    def value(self, words: Sequence[int]) -> tuple[float | None, Quality]:
        """The engineering value of this point in a request's answer, with its quality."""
        raw = self.decode(words[self.offset : self.offset + self.size])
        point = self.point
        if isinstance(raw, str):  # excluded by the profile model; kept for the type checker
            return None, Quality.BAD
        if (point.not_available is not None and raw == point.not_available) or not math.isfinite(
            raw
        ):
            return None, Quality.BAD
        value = raw * point.scale + point.offset
        if (point.min is not None and value < point.min) or (
            point.max is not None and value > point.max
        ):
            return value, Quality.UNCERTAIN
        return value, Quality.GOOD


Value = tuple[float | None, Quality]
_BAD: Value = (None, Quality.BAD)


def _compile(
    table: str, count: int, slots: Sequence[Slot]
) -> Callable[[Sequence[int]], list[Value]]:
    """One function decoding a whole answer into (value, quality) per slot, in slot order."""
    if table in BIT_TABLES:
        offsets = [slot.offset for slot in slots]

        def bits(words: Sequence[int]) -> list[Value]:
            if len(words) < count:
                raise ValueError(f"expected {count} bits, got {len(words)}")
            return [(float(words[o]), Quality.GOOD) for o in offsets]

        return bits

    pack_big = struct.Struct(f">{count}H").pack
    pack_little = struct.Struct(f"<{count}H").pack
    ops = []
    for slot in slots:
        point = slot.point
        order = slot.order
        value_struct, little_words = layout(point.type, order)
        ops.append(
            (
                little_words,
                value_struct.unpack_from,
                2 * slot.offset,
                point.bit if point.type is DataType.BITS else None,
                point.scale,
                point.offset,
                point.not_available,
                -math.inf if point.min is None else point.min,
                math.inf if point.max is None else point.max,
            )
        )
    need_big = any(not op[0] for op in ops)
    need_little = any(op[0] for op in ops)
    isfinite, good, uncertain = math.isfinite, Quality.GOOD, Quality.UNCERTAIN

    def registers(words: Sequence[int]) -> list[Value]:
        if len(words) != count:
            raise ValueError(f"expected {count} registers, got {len(words)}")
        big = pack_big(*words) if need_big else b""
        little = pack_little(*words) if need_little else b""
        out: list[Value] = []
        for little_words, unpack_from, at, bit, scale, offset, missing, low, high in ops:
            raw = unpack_from(little if little_words else big, at)[0]
            if bit is not None:
                raw = (raw >> bit) & 1
            if raw == missing or not isfinite(raw):
                out.append(_BAD)
                continue
            value = raw * scale + offset
            out.append((value, good if low <= value <= high else uncertain))
        return out

    return registers


@dataclass(frozen=True, slots=True)
class ReadRequest:
    table: Table
    address: int
    count: int
    slots: tuple[Slot, ...]
    values: Callable[[Sequence[int]], list[Value]] = field(repr=False, compare=False)
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
    slots = tuple(
        Slot(
            point=p,
            offset=p.address - start,
            size=p.words(),
            order=profile.encoding(p).order,
            decode=decoder(profile.encoding(p)),
        )
        for p in points
    )
    count = end - start
    return ReadRequest(
        table=points[0].table,
        address=start,
        count=count,
        slots=slots,
        values=_compile(table, count, slots),
    )
