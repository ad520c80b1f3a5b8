"""What a key energy-using unit uploads: its configuration and its data items.

A unit is a firm registered for online monitoring (``zayton.monitoring_units``): the code the
province knows it by, its region (for coefficients), its upload format, its real-time interval
and the basis on which electricity is converted to standard coal. Its data items are

- the items configured for it (``zayton.monitoring_items``): an instrument item sums the
  consumption of its points (``monitoring_item_points``, each with a factor), a manual item
  takes what an operator entered (``monitoring_manual``);
- a default item per carrier for the counters of its boundary meters (metering level 1) that no
  configured item takes in, coded from ``monitoring_defaults`` (the firm's row, else the row for
  every firm) or else Zayton's defaults (:mod:`api.monitoring.codes`);
- its total comprehensive energy consumption in tce, from its boundary meters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg

from api.coefficients import Basis, CoefficientError, Kind, Table
from api.monitoring.codes import (
    CATEGORIES,
    TOTAL_CATEGORY,
    TOTAL_CODE,
    Frequency,
    ItemCode,
    Source,
    default_code,
)
from api.monitoring.errors import CodeError, ConfigError
from api.monitoring.periods import Period

Connection = psycopg.Connection[Any]

ALL_FREQUENCIES = frozenset(Frequency)

CONVERTED_AS: dict[str, tuple[str, float]] = {"electricity_export": ("electricity", -1.0)}
"""Carriers converted with another carrier's coefficient, and the sign they count with:
electricity delivered to the grid leaves the unit and is deducted (GB/T 2589)."""


@dataclass(frozen=True, slots=True)
class Unit:
    """A key energy-using unit (重点用能单位) as configured for online monitoring."""

    firm_id: int
    firm_code: str
    unit_code: str
    region: str | None = None
    format: str = "zayton-json"
    realtime_minutes: int = 15
    basis: Basis = Basis.EQUIVALENT
    total_code: ItemCode = TOTAL_CODE
    total_carriers: frozenset[str] = frozenset(
        {"electricity", "electricity_export", "natural_gas", "steam", "heat", "raw_coal",
         "diesel", "gasoline", "pv"}
    )  # fmt: skip
    """The boundary carriers the total counts; new water, a working medium, is left out."""
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class ItemPoint:
    point_id: int
    factor: float = 1.0
    """What one unit of the point's consumption counts as in the item."""


@dataclass(frozen=True, slots=True)
class Item:
    code: ItemCode
    name: str
    source: Source
    unit: str
    points: tuple[ItemPoint, ...] = ()
    frequencies: frozenset[Frequency] = ALL_FREQUENCIES
    item_id: int | None = None
    """Its ``monitoring_items`` row; None for default items and the total."""


_UNITS = """
    SELECT u.firm_id, f.code, u.unit_code, u.region, u.format, u.realtime_minutes, u.basis,
           u.total_code, u.total_carriers, u.enabled
    FROM zayton.monitoring_units u JOIN zayton.firms f ON f.id = u.firm_id"""


def _unit(row: tuple[Any, ...]) -> Unit:
    firm_id, firm_code, unit_code, region, fmt, minutes, basis, total, carriers, enabled = row
    try:
        total_code = TOTAL_CODE if total is None else ItemCode.parse(total)
    except CodeError as err:
        raise ConfigError(f"unit {unit_code}: total_code: {err}") from None
    return Unit(
        firm_id=firm_id,
        firm_code=firm_code,
        unit_code=unit_code,
        region=region,
        format=fmt,
        realtime_minutes=minutes,
        basis=Basis(basis),
        total_code=total_code,
        total_carriers=frozenset(carriers),
        enabled=enabled,
    )


def load_units(conn: Connection, *, enabled_only: bool = True) -> list[Unit]:
    where = " WHERE u.enabled" if enabled_only else ""
    return [_unit(row) for row in conn.execute(_UNITS + where + " ORDER BY u.firm_id")]


def load_unit(conn: Connection, unit_code: str) -> Unit:
    row = conn.execute(_UNITS + " WHERE u.unit_code = %s", (unit_code,)).fetchone()
    if row is None:
        raise ConfigError(f"no key energy-using unit {unit_code!r} in zayton.monitoring_units")
    return _unit(row)


def _code(text: str, where: str) -> ItemCode:
    try:
        return ItemCode.parse(text)
    except CodeError as err:
        raise ConfigError(f"{where}: {err}") from None


def configured_items(conn: Connection, unit: Unit) -> list[Item]:
    rows = conn.execute(
        """SELECT i.id, i.code, i.name, i.source, i.unit, i.frequencies,
                  coalesce(array_agg(p.point_id ORDER BY p.point_id)
                           FILTER (WHERE p.point_id IS NOT NULL), '{}'),
                  coalesce(array_agg(p.factor ORDER BY p.point_id)
                           FILTER (WHERE p.point_id IS NOT NULL), '{}')
           FROM zayton.monitoring_items i
           LEFT JOIN zayton.monitoring_item_points p ON p.item_id = i.id
           WHERE i.firm_id = %s GROUP BY i.id ORDER BY i.code""",
        (unit.firm_id,),
    ).fetchall()
    items = []
    for item_id, code, name, source, unit_name, frequencies, point_ids, factors in rows:
        where = f"unit {unit.unit_code}, item {code}"
        if Source(source) is Source.INSTRUMENT and not point_ids:
            raise ConfigError(f"{where}: an instrument item needs points")
        if Source(source) is Source.MANUAL and point_ids:
            raise ConfigError(f"{where}: a manual item takes no points")
        items.append(
            Item(
                code=_code(code, where),
                name=name,
                source=Source(source),
                unit=unit_name,
                points=tuple(ItemPoint(p, f) for p, f in zip(point_ids, factors, strict=True)),
                frequencies=frozenset(Frequency(f) for f in frequencies),
                item_id=item_id,
            )
        )
    return items


@dataclass(frozen=True, slots=True)
class BoundaryPoint:
    point_id: int
    carrier: str
    unit: str | None


def boundary_points(conn: Connection, unit: Unit) -> list[BoundaryPoint]:
    """The counters with a carrier on the unit's boundary meters."""
    rows = conn.execute(
        """SELECT p.id, p.carrier, p.unit FROM zayton.points p
           JOIN zayton.devices d ON d.id = p.device_id
           WHERE d.firm_id = %s AND d.metering_level = 1 AND p.kind = 'counter'
             AND p.carrier IS NOT NULL
           ORDER BY p.id""",
        (unit.firm_id,),
    ).fetchall()
    return [BoundaryPoint(*row) for row in rows]


def default_items(
    conn: Connection, unit: Unit, boundary: Iterable[BoundaryPoint], taken: set[int]
) -> list[Item]:
    """One item per carrier for the boundary counters no configured item takes in."""
    by_carrier: dict[str, list[BoundaryPoint]] = {}
    for point in boundary:
        if point.point_id not in taken:
            by_carrier.setdefault(point.carrier, []).append(point)
    if not by_carrier:
        return []
    overrides: dict[str, tuple[str, str | None]] = {}
    # The firm's own row wins over the row for every firm (NULLS FIRST: read first, overwritten).
    for carrier, code, name in conn.execute(
        """SELECT carrier, code, name FROM zayton.monitoring_defaults
           WHERE firm_id = %s OR firm_id IS NULL ORDER BY firm_id NULLS FIRST""",
        (unit.firm_id,),
    ):
        overrides[carrier] = (code, name)
    items = []
    for carrier, points in sorted(by_carrier.items()):
        units = {p.unit for p in points}
        if len(units) != 1 or None in units:
            raise ConfigError(
                f"unit {unit.unit_code}: the {carrier} boundary counters are metered in "
                f"{sorted(str(u) for u in units)}: one unit is needed to add them up"
            )
        where = f"unit {unit.unit_code}, default item for {carrier}"
        code_text, name = overrides.get(carrier, (None, None))
        try:
            code = default_code(carrier) if code_text is None else _code(code_text, where)
        except CodeError as err:
            raise ConfigError(f"{where}: {err}") from None
        category = CATEGORIES.get(carrier)
        items.append(
            Item(
                code=code,
                name=name or (category.name if category else carrier),
                source=Source.INSTRUMENT,
                unit=str(points[0].unit),
                points=tuple(ItemPoint(p.point_id) for p in points),
            )
        )
    return items


@dataclass(frozen=True, slots=True)
class Total:
    item: Item
    placeholders: tuple[str, ...]
    """Carriers converted with a coefficient that is a placeholder, not an official figure."""


def total_item(unit: Unit, boundary: Iterable[BoundaryPoint], on: date, table: Table) -> Total:
    """The unit's total comprehensive energy consumption in tce, with each boundary counter's
    factor from the coefficient in force ``on`` (kgce per metered unit ÷ 1000)."""
    points = []
    placeholders: set[str] = set()
    for point in boundary:
        if point.carrier not in unit.total_carriers:
            continue
        carrier, sign = CONVERTED_AS.get(point.carrier, (point.carrier, 1.0))
        if point.unit is None:
            raise ConfigError(f"unit {unit.unit_code}, total: point {point.point_id} has no unit")
        try:
            coefficient = table.lookup(
                Kind.CONVERSION,
                carrier,
                on,
                basis=unit.basis,
                region=unit.region,
                firm=unit.firm_code,
            )
            kgce = coefficient.apply(1.0, point.unit)
        except CoefficientError as err:
            raise ConfigError(f"unit {unit.unit_code}, total: {err}") from None
        if coefficient.placeholder:
            placeholders.add(carrier)
        points.append(ItemPoint(point.point_id, sign * kgce / 1000.0))
    item = Item(
        code=unit.total_code,
        name=TOTAL_CATEGORY.name,
        source=Source.INSTRUMENT,
        unit="tce",
        points=tuple(points),
    )
    return Total(item, tuple(sorted(placeholders)))


def enter_manual(
    conn: Connection,
    unit: Unit,
    code: str,
    period: Period,
    value: float,
    *,
    entered_by: str,
    note: str = "",
) -> None:
    """Record (or correct) an operator's value of a manual item for one period."""
    row = conn.execute(
        "SELECT id, source FROM zayton.monitoring_items WHERE firm_id = %s AND code = %s",
        (unit.firm_id, code),
    ).fetchone()
    if row is None or Source(row[1]) is not Source.MANUAL:
        raise ConfigError(f"unit {unit.unit_code} has no manual item {code}")
    conn.execute(
        """INSERT INTO zayton.monitoring_manual
               (item_id, frequency, period_start, value, entered_by, note)
           VALUES (%s, %s, %s, %s, %s, %s)
           ON CONFLICT (item_id, frequency, period_start) DO UPDATE
           SET value = excluded.value, entered_by = excluded.entered_by,
               note = excluded.note, entered_at = now()""",
        (row[0], int(period.frequency), period.start, value, entered_by, note),
    )
