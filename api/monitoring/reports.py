"""The two data-quality figures the platforms check, against their thresholds.

- **Completeness**: for each frequency and endpoint, the sets acknowledged ÷ the sets expected
  in the period; for each metered data item, the 15-minute buckets with data ÷ the buckets in
  the period. Both must reach 90%.
- **Consistency**: for each data item, the sum of its daily values in a month against its
  monthly value, as uploaded (the outbox's sets): within 5%.

Public descriptions of the specifications give both thresholds (docs/monitoring.md cites them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from api.coefficients import Table
from api.monitoring.build import buckets_present, unit_items
from api.monitoring.codes import Frequency, Source
from api.monitoring.items import Connection, Unit
from api.monitoring.periods import BUCKET, Period, local_midnight, periods

MIN_COMPLETENESS = 0.90
MAX_DEVIATION = 0.05


@dataclass(frozen=True, slots=True)
class UploadCompleteness:
    frequency: Frequency
    endpoint: str
    expected: int
    acknowledged: int

    @property
    def ratio(self) -> float:
        return self.acknowledged / self.expected if self.expected else 1.0

    @property
    def passed(self) -> bool:
        return self.ratio >= MIN_COMPLETENESS


@dataclass(frozen=True, slots=True)
class ItemCompleteness:
    code: str
    name: str
    present: int
    expected: int

    @property
    def ratio(self) -> float:
        return self.present / self.expected if self.expected else 1.0

    @property
    def passed(self) -> bool:
        return self.ratio >= MIN_COMPLETENESS


@dataclass(frozen=True, slots=True)
class CompletenessReport:
    unit_code: str
    start: datetime
    end: datetime
    """The end of what was due: the period's end, or the last whole bucket before now."""
    uploads: tuple[UploadCompleteness, ...]
    items: tuple[ItemCompleteness, ...]

    @property
    def passed(self) -> bool:
        return all(u.passed for u in self.uploads) and all(i.passed for i in self.items)


def completeness(
    conn: Connection,
    unit: Unit,
    first_day: date,
    end_day: date,
    *,
    endpoints: Sequence[str],
    table: Table,
    now: datetime,
) -> CompletenessReport:
    """Completeness of ``unit`` over the local days ``[first_day, end_day)``, counting what
    was due by ``now``."""
    start = local_midnight(first_day)
    end = min(local_midnight(end_day), Period.containing(Frequency.REALTIME, now).start)
    expected = {
        Frequency.REALTIME: len(periods(Frequency.REALTIME, start, end, unit.realtime_minutes)),
        Frequency.DAY: len(periods(Frequency.DAY, start, end)),
        Frequency.MONTH: len(periods(Frequency.MONTH, start, end)),
    }
    rows = conn.execute(
        """SELECT s.frequency, d.endpoint, count(*)
           FROM zayton.monitoring_sets s
           JOIN zayton.monitoring_deliveries d ON d.set_id = s.id
           WHERE s.firm_id = %s AND s.period_start >= %s AND s.period_end <= %s
             AND d.acknowledged_at IS NOT NULL
           GROUP BY s.frequency, d.endpoint""",
        (unit.firm_id, start, end),
    ).fetchall()
    acknowledged = {(Frequency(f), str(e)): int(n) for f, e, n in rows}
    uploads = tuple(
        UploadCompleteness(frequency, endpoint, count, acknowledged.get((frequency, endpoint), 0))
        for frequency, count in expected.items()
        if count
        for endpoint in endpoints
    )
    (items,), _ = unit_items(conn, unit, Frequency.REALTIME, [first_day], table)
    metered = [i for i in items if i.source is Source.INSTRUMENT]
    buckets = max((end - start) // BUCKET, 0)
    present = buckets_present(conn, start, end, metered) if buckets else [0] * len(metered)
    return CompletenessReport(
        unit_code=unit.unit_code,
        start=start,
        end=end,
        uploads=uploads,
        items=tuple(
            ItemCompleteness(str(item.code), item.name, got, buckets)
            for item, got in zip(metered, present, strict=True)
        ),
    )


@dataclass(frozen=True, slots=True)
class ItemConsistency:
    code: str
    name: str
    days: int
    """Day sets of the month that have a value of the item."""
    day_sum: float
    month_value: float | None

    @property
    def deviation(self) -> float:
        """|Σ days − month| ÷ |month|; infinite when the month has no value to compare with."""
        if self.month_value is None:
            return math.inf
        if self.month_value == 0:
            return 0.0 if self.day_sum == 0 else math.inf
        return abs(self.day_sum - self.month_value) / abs(self.month_value)

    @property
    def passed(self) -> bool:
        return self.deviation <= MAX_DEVIATION


@dataclass(frozen=True, slots=True)
class ConsistencyReport:
    unit_code: str
    month: Period
    day_sets: int
    """Day sets of the month in the outbox (of ``month`` days)."""
    items: tuple[ItemConsistency, ...]
    """The items that have a value in at least one day set."""

    @property
    def passed(self) -> bool:
        return bool(self.items) and all(i.passed for i in self.items)


def consistency(conn: Connection, unit: Unit, month: date) -> ConsistencyReport:
    """Sum of daily values against the monthly value of every item of ``unit`` in ``month``
    (any day of it), from the sets in the outbox."""
    period = Period.containing(Frequency.MONTH, local_midnight(month))
    rows = conn.execute(
        """SELECT s.frequency, i.code, i.name, i.value
           FROM zayton.monitoring_sets s
           JOIN zayton.monitoring_set_items i ON i.set_id = s.id
           WHERE s.firm_id = %s
             AND ((s.frequency = 1 AND s.period_start >= %s AND s.period_start < %s)
                  OR (s.frequency = 2 AND s.period_start = %s))
           ORDER BY i.code""",
        (unit.firm_id, period.start, period.end, period.start),
    ).fetchall()
    names: dict[str, str] = {}
    days: dict[str, list[float]] = {}
    monthly: dict[str, float | None] = {}
    for frequency, code, name, value in rows:
        names[code] = name
        if Frequency(frequency) is Frequency.MONTH:
            monthly[code] = value
        elif value is not None:
            days.setdefault(code, []).append(float(value))
    day_sets = conn.execute(
        """SELECT count(*) FROM zayton.monitoring_sets
           WHERE firm_id = %s AND frequency = 1 AND period_start >= %s AND period_start < %s""",
        (unit.firm_id, period.start, period.end),
    ).fetchall()[0][0]
    return ConsistencyReport(
        unit_code=unit.unit_code,
        month=period,
        day_sets=int(day_sets),
        items=tuple(
            ItemConsistency(code, names[code], len(values), math.fsum(values), monthly.get(code))
            for code, values in sorted(days.items())
        ),
    )
