"""Building an indicator set: a unit's data items for one period, from the rollups.

Instrument items take the consumption (sum of counter deltas) of their points from the rollups
that fit the period (``zayton.rollup_between``: the 15-minute rollup for a real-time period, the
daily one for a day, the monthly one for a month). The total is converted as the energy
accounting converts it (``api/energy.py``): a month across a coefficient change is cut at the
start of that day and each part takes the coefficients in force. A period with data missing is
still built, from the data there is: each item says how many of the period's 15-minute buckets
it had data in (``present``, a bucket counting when every point of the item has a consumption in
it) of how many (``expected``); an item with no data at all has no value. Manual items take the
value an operator entered for the period (expected 1, present 0 or 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from itertools import pairwise

from api.coefficients import Basis, Table
from api.energy import Period as Span
from api.energy import segments
from api.monitoring.codes import Frequency, ItemCode, Source
from api.monitoring.errors import ConfigError
from api.monitoring.items import (
    Connection,
    Item,
    Unit,
    boundary_points,
    configured_items,
    default_items,
    total_item,
)
from api.monitoring.periods import Period, local_midnight


@dataclass(frozen=True, slots=True)
class Value:
    code: ItemCode
    name: str
    source: Source
    unit: str
    value: float | None
    present: int
    expected: int

    @property
    def completeness(self) -> float:
        return self.present / self.expected if self.expected else 1.0


@dataclass(frozen=True, slots=True)
class IndicatorSet:
    """The data items of one unit for one period, as built; ``revision`` is given by the outbox
    (a set rebuilt with other values is a new revision of the same period)."""

    unit_code: str
    firm_id: int
    period: Period
    values: tuple[Value, ...]
    built_at: datetime
    basis: Basis
    placeholders: tuple[str, ...] = ()
    """Carriers of the total converted with a placeholder coefficient."""
    revision: int = 1

    @property
    def present(self) -> int:
        return sum(v.present for v in self.values)

    @property
    def expected(self) -> int:
        return sum(v.expected for v in self.values)

    @property
    def completeness(self) -> float:
        return self.present / self.expected if self.expected else 1.0

    @property
    def message_id(self) -> str:
        """Names this revision of this set wherever it goes: unit, frequency, local start."""
        start = self.period.local_start.strftime("%Y%m%d%H%M")
        return f"{self.unit_code}-{int(self.period.frequency)}-{start}-r{self.revision}"

    def value(self, code: str | ItemCode) -> Value:
        for value in self.values:
            if str(value.code) == str(code):
                return value
        raise KeyError(str(code))

    def with_revision(self, revision: int) -> IndicatorSet:
        return replace(self, revision=revision)


def unit_items(
    conn: Connection, unit: Unit, frequency: Frequency, days: Sequence[date], table: Table
) -> tuple[list[list[Item]], tuple[str, ...]]:
    """Every data item of ``unit`` reported at ``frequency``, the total last, as converted on
    each of ``days`` (the days a period is cut at: only the total's factors differ, taken from
    the coefficients in force that day); and the carriers of the total converted with a
    placeholder coefficient."""
    configured = configured_items(conn, unit)
    boundary = boundary_points(conn, unit)
    taken = {p.point_id for item in configured for p in item.points}
    others = configured + default_items(conn, unit, boundary, taken)
    totals = [total_item(unit, boundary, day, table) for day in days]
    seen: set[str] = set()
    for item in [*others, totals[0].item]:
        if str(item.code) in seen:
            raise ConfigError(f"unit {unit.unit_code}: two data items coded {item.code}")
        seen.add(str(item.code))
    versions = [
        [i for i in [*others, total.item] if frequency in i.frequencies] for total in totals
    ]
    placeholders = sorted({c for total in totals for c in total.placeholders})
    return versions, tuple(placeholders)


def consumption(
    conn: Connection, start: datetime, end: datetime, point_ids: Sequence[int]
) -> dict[int, float]:
    """Each point's consumption in ``[start, end)``, from the coarsest rollups that fit; points
    without any are left out."""
    rows = conn.execute(
        """SELECT point_id, sum(consumption) FROM zayton.rollup_between(%s, %s, %s)
           WHERE consumption IS NOT NULL
           GROUP BY point_id""",
        (start, end, list(point_ids)),
    ).fetchall()
    return {int(point_id): float(total) for point_id, total in rows}


def buckets_present(
    conn: Connection, start: datetime, end: datetime, items: Sequence[Item]
) -> list[int]:
    """For each item, the 15-minute buckets in ``[start, end)`` in which every one of its
    points has a consumption."""
    members = [(index, p.point_id) for index, item in enumerate(items) for p in item.points]
    rows = conn.execute(
        """WITH m (item, point_id) AS (SELECT * FROM unnest(%s::int4[], %s::int4[])),
                size AS (SELECT item, count(*) AS n FROM m GROUP BY item),
                got AS (
                    SELECT m.item, q.bucket, count(*) AS n
                    FROM m JOIN zayton.rollup_15m q ON q.point_id = m.point_id
                    WHERE q.bucket >= %s AND q.bucket < %s AND q.consumption IS NOT NULL
                    GROUP BY m.item, q.bucket)
           SELECT g.item, count(*) FROM got g JOIN size s ON s.item = g.item AND s.n = g.n
           GROUP BY g.item""",
        ([i for i, _ in members], [p for _, p in members], start, end),
    ).fetchall()
    found = dict(rows)
    return [int(found.get(index, 0)) for index in range(len(items))]


def _manual(conn: Connection, period: Period, items: Sequence[Item]) -> dict[int, float]:
    ids = [i.item_id for i in items if i.item_id is not None]
    rows = conn.execute(
        """SELECT item_id, value FROM zayton.monitoring_manual
           WHERE item_id = ANY(%s) AND frequency = %s AND period_start = %s""",
        (ids, int(period.frequency), period.start),
    ).fetchall()
    return {int(item_id): float(value) for item_id, value in rows}


def build(
    conn: Connection, unit: Unit, period: Period, table: Table, *, now: datetime
) -> IndicatorSet:
    """The indicator set of ``unit`` for ``period``; ``table`` holds the coefficients."""
    if period.frequency is Frequency.REALTIME and period.minutes != unit.realtime_minutes:
        raise ConfigError(
            f"unit {unit.unit_code} reports real-time data every {unit.realtime_minutes} "
            f"minutes, not {period.minutes}"
        )
    cuts = segments(Span(period.start, period.end), table)
    days = [period.local_start.date(), *cuts]
    versions, placeholders = unit_items(conn, unit, period.frequency, days, table)
    items = versions[0]
    metered = [i for i in items if i.source is Source.INSTRUMENT]
    manual = [i for i in items if i.source is Source.MANUAL]
    ids = sorted({p.point_id for i in metered for p in i.points})
    # Consumption in each part of the period, each part converted as it was that day.
    bounds = [period.start, *(local_midnight(day) for day in cuts), period.end]
    used = [consumption(conn, lo, hi, ids) for lo, hi in pairwise(bounds)]
    counts = buckets_present(conn, period.start, period.end, metered)
    present = {str(item.code): n for item, n in zip(metered, counts, strict=True)}
    entered = _manual(conn, period, manual)
    values = []
    for index, item in enumerate(items):
        value: float | None
        if item.source is Source.MANUAL:
            value = entered.get(item.item_id) if item.item_id is not None else None
            got, expected = int(value is not None), 1
        else:
            parts = [
                part[p.point_id] * p.factor
                for version, part in zip(versions, used, strict=True)
                for p in version[index].points
                if p.point_id in part
            ]
            value = sum(parts) if parts else None
            got, expected = present[str(item.code)], period.buckets
        values.append(Value(item.code, item.name, item.source, item.unit, value, got, expected))
    return IndicatorSet(
        unit_code=unit.unit_code,
        firm_id=unit.firm_id,
        period=period,
        values=tuple(values),
        built_at=now,
        basis=unit.basis,
        placeholders=placeholders,
    )
