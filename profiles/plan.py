"""Read plans: a profile compiled, once at start-up, into the fewest Modbus requests.

Adjacent points of the same table are coalesced into one request of at most ``max_registers``
words (125 is the protocol's limit for function codes 03 and 04, 2000 bits for 01 and 02), reading
through holes of up to ``max_gap`` words. Each request knows which slice of its answer belongs to
which point and holds that point's decoder, so a poll does no lookups.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from profiles.codec import decoder
from profiles.model import BIT_TABLES, Point, Profile, Table
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


@dataclass(frozen=True, slots=True)
class ReadRequest:
    table: Table
    address: int
    count: int
    slots: tuple[Slot, ...]

    @property
    def function_code(self) -> int:
        return FUNCTION_CODES[self.table]


def plan_reads(
    profile: Profile,
    *,
    max_registers: int = MAX_REGISTERS,
    max_gap: int = 8,
    one_per_point: bool = False,
) -> list[ReadRequest]:
    """Coalesce a profile's points into read requests, in table and address order."""
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
            new_end = max(end, point.address + size)
            fits = point.address <= end + max_gap and new_end - start <= limit
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
            decode=decoder(profile.encoding(p)),
        )
        for p in points
    )
    return ReadRequest(table=points[0].table, address=start, count=end - start, slots=slots)
