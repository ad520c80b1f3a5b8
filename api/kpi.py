"""Indicators built on energy accounting (``api/energy.py``) and the firms' monthly business data.

- 万元产值能耗 and 万元增加值能耗: total tce ÷ output value or value added (万元) of the months
  in the period, with the price basis the value added was reported at;
- 单位产品能耗: kgce per unit counted by the entity's production counters;
- decline rate against a base year: (intensity_now ÷ intensity_base − 1) × 100 %;
- 能耗双控: year-to-date total and intensity against the year's budget, with a year-end forecast
  and a warning when the forecast crosses the budget;
- peak demand: the highest 15-minute average of the site meters' imports, against the
  transformer's rating;
- data completeness per meter: readings received ÷ expected at the device's poll interval;
- the plan indicators: firms onboarded with live data (上云上平台), 5G+工业互联网 projects on
  5G gateways, digital workshops.

Business data are monthly, so intensities need a period of whole local months.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

import psycopg
from pydantic import BaseModel

from api.coefficients import Basis, Table
from api.energy import (
    ELECTRICITY,
    ROLLUPS,
    EnergyError,
    EnergyUse,
    Entity,
    Hierarchy,
    Period,
    Resolution,
    account,
    firms_of,
    load_hierarchy,
)

WARN_SHARE = 0.9
"""能耗预警: amber once the year-end forecast reaches this share of the budget."""


class Business(BaseModel):
    """The business data of an entity's firms over the months of a period (万元, persons)."""

    months: int
    """Months in the period."""
    reported: int
    """Firm-months with any business data."""
    output_value: float | None
    value_added: float | None
    price_basis: str | None
    """How value added was priced; ``mixed`` when the months differ."""
    tax: float | None
    headcount: float | None
    """Average persons employed over the reported months, summed over firms."""


async def business(
    conn: psycopg.AsyncConnection[Any], firm_ids: Sequence[int], period: Period
) -> Business:
    if period.resolution is not Resolution.MONTH:
        raise EnergyError("business data are monthly: the period must be whole local months")
    first = period.first_day
    cursor = await conn.execute(
        """SELECT count(*), sum(output_value), sum(value_added),
                  array_agg(DISTINCT price_basis) FILTER (WHERE value_added IS NOT NULL),
                  sum(tax)
           FROM zayton.firm_months
           WHERE firm_id = ANY (%s) AND month >= %s AND month <= %s""",
        (list(firm_ids), first, period.last_day),
    )
    row = await cursor.fetchone()
    assert row is not None  # noqa: S101 - an aggregate always returns a row
    cursor = await conn.execute(
        """SELECT sum(h) FROM (SELECT avg(headcount) AS h FROM zayton.firm_months
           WHERE firm_id = ANY (%s) AND month >= %s AND month <= %s AND headcount IS NOT NULL
           GROUP BY firm_id) per_firm""",
        (list(firm_ids), first, period.last_day),
    )
    heads = await cursor.fetchone()
    bases = [b for b in (row[3] or []) if b is not None]
    months = (period.last_day.year - first.year) * 12 + period.last_day.month - first.month + 1
    return Business(
        months=months,
        reported=int(row[0]),
        output_value=_float(row[1]),
        value_added=_float(row[2]),
        price_basis=None if not bases else bases[0] if len(bases) == 1 else "mixed",
        tax=_float(row[4]),
        headcount=_float(heads[0]) if heads else None,
    )


def _float(value: object) -> float | None:
    return None if value is None else float(str(value))


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


class Kpis(BaseModel):
    """The indicators of one entity and period."""

    entity: str
    energy: EnergyUse
    business: Business | None
    tce_per_10k_output: float | None
    """万元产值能耗, tce per 10,000 yuan of output value."""
    tce_per_10k_value_added: float | None
    """万元增加值能耗, tce per 10,000 yuan of value added (at ``business.price_basis``)."""
    kgce_per_unit: float | None
    """单位产品能耗: kgce per unit the production counters counted."""
    base_year: int | None
    tce_per_10k_value_added_base: float | None
    decline_rate_pct: float | None
    """(intensity ÷ base-year intensity − 1) × 100: negative when intensity fell."""
    peak_kw: float | None
    transformer_kva: float | None
    peak_load_ratio: float | None
    """Peak kW ÷ transformer kVA (a power factor of 1 assumed)."""
    completeness: float | None
    """Readings received ÷ expected over the entity's meters."""
    notes: list[str]


@dataclass(frozen=True, slots=True)
class Scope:
    """What a caller may see: ``firm_ids`` None is everything."""

    firm_ids: Sequence[int] | None = None


async def kpis(
    conn: psycopg.AsyncConnection[Any],
    entity: Entity,
    period: Period,
    table: Table,
    *,
    basis: Basis = Basis.EQUIVALENT,
    base_year: int | None = None,
    scope: Scope = Scope(),
) -> Kpis:
    hierarchy = await load_hierarchy(conn, scope.firm_ids)
    energy = await account(
        conn, entity, period, table, basis=basis, firm_ids=scope.firm_ids, hierarchy=hierarchy
    )
    firms = firms_of(hierarchy, entity)
    firm_ids = [f.id for f in firms]
    notes: list[str] = []
    whole = entity.kind in ("district", "park", "firm")
    money: Business | None = None
    if whole and period.resolution is Resolution.MONTH:
        money = await business(conn, firm_ids, period)
        if money.reported < money.months * len(firm_ids):
            notes.append(
                f"business data for {money.reported} of {money.months * len(firm_ids)} "
                "firm-months: intensities cover the energy of every month"
            )
    elif whole:
        notes.append("intensities need whole months (business data are monthly)")
    per_va = _ratio(energy.total_tce, money.value_added if money else None)
    base_intensity = decline = None
    if base_year is not None and per_va is not None:
        base = await account(
            conn,
            entity,
            Period.year(base_year),
            table,
            basis=basis,
            firm_ids=scope.firm_ids,
            hierarchy=hierarchy,
        )
        base_money = await business(conn, firm_ids, Period.year(base_year))
        base_intensity = _ratio(base.total_tce, base_money.value_added)
        if base_intensity:
            decline = (per_va / base_intensity - 1) * 100
        else:
            notes.append(f"no energy or value added for the base year {base_year}")
    peak = transformer = None
    if whole:
        peak = await peak_demand(conn, hierarchy, firm_ids, period)
        transformer = await _transformers(conn, firm_ids)
    return Kpis(
        entity=str(entity),
        energy=energy,
        business=money,
        tce_per_10k_output=_ratio(energy.total_tce, money.output_value if money else None),
        tce_per_10k_value_added=per_va,
        kgce_per_unit=_ratio(energy.total_tce * 1000, energy.production),
        base_year=base_year,
        tce_per_10k_value_added_base=base_intensity,
        decline_rate_pct=decline,
        peak_kw=peak,
        transformer_kva=transformer,
        peak_load_ratio=_ratio(peak, transformer),
        completeness=await completeness_of(conn, energy.meters, firm_ids, period),
        notes=notes,
    )


async def peak_demand(
    conn: psycopg.AsyncConnection[Any],
    hierarchy: Hierarchy,
    firm_ids: Sequence[int],
    period: Period,
) -> float | None:
    """The highest 15-minute average demand (kW) of the firms' site meters together."""
    boundary = [
        m.device_id for m in hierarchy.meters.values() if m.firm_id in firm_ids and m.level == 1
    ]
    # The points first, so that the rollup is read on its key (point, bucket), which carries
    # the consumption: an index-only scan rather than a row fetched for every quarter-hour.
    cursor = await conn.execute(
        f"""SELECT max(total) * 4 FROM (
                SELECT r.bucket, sum(r.consumption) AS total
                FROM {ROLLUPS[Resolution.QUARTER]} r
                WHERE r.point_id = ANY (ARRAY(
                        SELECT id FROM zayton.points WHERE device_id = ANY (%s) AND carrier = %s))
                  AND r.bucket >= %s AND r.bucket < %s
                GROUP BY r.bucket) buckets""".encode(),
        (boundary, ELECTRICITY, period.start, period.end),
    )
    row = await cursor.fetchone()
    return None if row is None else _float(row[0])


async def _transformers(
    conn: psycopg.AsyncConnection[Any], firm_ids: Sequence[int]
) -> float | None:
    cursor = await conn.execute(
        "SELECT sum(transformer_kva) FROM zayton.firms WHERE id = ANY (%s)", (list(firm_ids),)
    )
    row = await cursor.fetchone()
    return None if row is None else _float(row[0])


async def completeness_of(
    conn: psycopg.AsyncConnection[Any],
    meters: Sequence[str],
    firm_ids: Sequence[int],
    period: Period,
) -> float | None:
    """Received ÷ expected readings over the named devices of the firms."""
    cursor = await conn.execute(
        """SELECT sum(c.received), sum(c.expected)
           FROM zayton.completeness(%s, %s, ARRAY(
               SELECT p.id FROM zayton.points p JOIN zayton.devices d ON d.id = p.device_id
               WHERE d.firm_id = ANY (%s) AND d.name = ANY (%s))) c""",
        (period.start, period.end, list(firm_ids), list(meters)),
    )
    row = await cursor.fetchone()
    if row is None or not row[1]:
        return None
    return float(row[0]) / float(row[1])


class MeterCompleteness(BaseModel):
    firm: str
    device: str
    expected: float
    received: int
    valid: int
    ratio: float


async def meter_completeness(
    conn: psycopg.AsyncConnection[Any], period: Period, firm_ids: Sequence[int] | None
) -> list[MeterCompleteness]:
    """Per device: readings received ÷ expected, over all its points."""
    cursor = await conn.execute(
        """SELECT d.site, d.name, sum(c.expected), sum(c.received), sum(c.valid)
           FROM zayton.completeness(%s, %s, CASE WHEN %s::int[] IS NOT NULL THEN ARRAY(
               SELECT p.id FROM zayton.points p JOIN zayton.devices d ON d.id = p.device_id
               WHERE d.firm_id = ANY (%s::int[])) END) c
           JOIN zayton.points p ON p.id = c.point_id
           JOIN zayton.devices d ON d.id = p.device_id
           GROUP BY d.site, d.name ORDER BY d.site, d.name""",
        (period.start, period.end, firm_ids, firm_ids),
    )
    return [
        MeterCompleteness(
            firm=str(r[0]),
            device=str(r[1]),
            expected=float(r[2]),
            received=int(r[3]),
            valid=int(r[4]),
            ratio=int(r[3]) / float(r[2]),
        )
        for r in await cursor.fetchall()
    ]


# --- dual control ---------------------------------------------------------------------------------


class DualControl(BaseModel):
    """能耗双控 for one entity and year, as of a day."""

    entity: str
    year: int
    as_of: date
    basis: Basis
    budget_tce: float | None
    budget_tce_per_10k: float | None
    ytd_tce: float
    ytd_value_added: float | None
    forecast_tce: float
    forecast_tce_per_10k: float | None
    method: Literal["last-year profile", "linear"]
    total_status: Literal["green", "amber", "red"] | None
    intensity_status: Literal["green", "amber", "red"] | None
    warnings: list[str]


def forecast(
    ytd: float, elapsed_days: int, year_days: int, last_ytd: float | None, last_total: float | None
) -> tuple[float, Literal["last-year profile", "linear"]]:
    """Year-end position from year-to-date: last year's shape of the year when there is one
    (this year's YTD × last year's total ÷ last year's YTD to the same day), else linear."""
    if last_ytd and last_total:
        return ytd * last_total / last_ytd, "last-year profile"
    return ytd / elapsed_days * year_days, "linear"


def rag(value: float | None, budget: float | None) -> Literal["green", "amber", "red"] | None:
    if value is None or budget is None:
        return None
    if value > budget:
        return "red"
    return "amber" if value >= WARN_SHARE * budget else "green"


async def dual_control(
    conn: psycopg.AsyncConnection[Any],
    entity: Entity,
    year: int,
    as_of: date,
    table: Table,
    *,
    basis: Basis = Basis.EQUIVALENT,
    scope: Scope = Scope(),
) -> DualControl:
    """Year-to-date (1 January up to, not including, ``as_of``) against the year's budget."""
    first = date(year, 1, 1)
    if not first < as_of <= date(year + 1, 1, 1):
        raise EnergyError(f"as_of {as_of} is not inside {year}")
    hierarchy = await load_hierarchy(conn, scope.firm_ids)
    firm_ids = [f.id for f in firms_of(hierarchy, entity)]

    async def use(period: Period) -> float:
        found = await account(
            conn, entity, period, table, basis=basis, firm_ids=scope.firm_ids, hierarchy=hierarchy
        )
        return found.total_tce

    ytd = await use(Period.days(first, as_of))
    last_ytd = await use(Period.days(date(year - 1, 1, 1), _same_day(as_of, year - 1)))
    last_total = await use(Period.year(year - 1))
    elapsed = (as_of - first).days
    days = (date(year + 1, 1, 1) - first).days
    total, method = forecast(ytd, elapsed, days, last_ytd, last_total)
    value_added = None
    if as_of.day == 1:
        value_added = (await business(conn, firm_ids, Period.days(first, as_of))).value_added
    per_10k = None
    if value_added:
        per_10k = total / (value_added / elapsed * days)
    budget_tce, budget_intensity = await budget_of(conn, str(entity), year)
    total_status = rag(total, budget_tce)
    intensity_status = rag(per_10k, budget_intensity)
    warnings = []
    if budget_tce is not None and total_status in ("amber", "red"):
        warnings.append(
            f"forecast {total:,.1f} tce is {total / budget_tce:.0%} of the {year} budget "
            f"of {budget_tce:,.1f} tce"
        )
    if per_10k is not None and budget_intensity is not None and intensity_status != "green":
        warnings.append(
            f"forecast intensity {per_10k:.4f} tce/万元 is {per_10k / budget_intensity:.0%} "
            f"of the budget of {budget_intensity:.4f}"
        )
    return DualControl(
        entity=str(entity),
        year=year,
        as_of=as_of,
        basis=basis,
        budget_tce=budget_tce,
        budget_tce_per_10k=budget_intensity,
        ytd_tce=ytd,
        ytd_value_added=value_added,
        forecast_tce=total,
        forecast_tce_per_10k=per_10k,
        method=method,
        total_status=total_status,
        intensity_status=intensity_status,
        warnings=warnings,
    )


def _same_day(day: date, year: int) -> date:
    try:
        return day.replace(year=year)
    except ValueError:  # 29 February
        return day.replace(year=year, day=28) + timedelta(days=1)


async def budget_of(
    conn: psycopg.AsyncConnection[Any], entity: str, year: int
) -> tuple[float | None, float | None]:
    cursor = await conn.execute(
        """SELECT total_tce, tce_per_10k_value_added FROM zayton.energy_budgets
           WHERE entity = %s AND year = %s""",
        (entity, year),
    )
    row = await cursor.fetchone()
    if row is None:
        return None, None
    return _float(row[0]), _float(row[1])


# --- plan indicators ------------------------------------------------------------------------------


class PlanActuals(BaseModel):
    """What the plans count, for the firms in scope, in a year."""

    year: int
    firms_onboarded: int
    """上云上平台: onboarded by the year's end and with live data in the year."""
    firms_onboarded_new: int
    """Of those, onboarded during the year."""
    g5_industrial_internet_projects: int
    """Projects of the year or before with at least one gateway on a 5G uplink."""
    gateways_5g: int
    digital_workshops: int
    digital_lines: int
    energy_saving_projects: int
    industrial_internet_platforms: int
    above_scale_firms: int
    above_scale_with_digital_workshop: int


async def plan_actuals(
    conn: psycopg.AsyncConnection[Any], year: int, firm_ids: Sequence[int] | None
) -> PlanActuals:
    period = Period.year(year)
    params: dict[str, object] = {
        "firms": firm_ids,
        "start": period.start,
        "end": period.end,
        "year": year,
        "last": period.last_day,
        "first": period.first_day,
    }
    in_scope = "(%(firms)s::int[] IS NULL OR f.id = ANY (%(firms)s::int[]))"
    cursor = await conn.execute(
        f"""WITH live AS (
                SELECT DISTINCT d.firm_id FROM zayton.rollup_month r
                JOIN zayton.points p ON p.id = r.point_id
                JOIN zayton.devices d ON d.id = p.device_id
                WHERE r.bucket >= %(start)s AND r.bucket < %(end)s AND r.readings > 0)
            SELECT
              count(*) FILTER (WHERE f.onboarded_on <= %(last)s AND l.firm_id IS NOT NULL),
              count(*) FILTER (WHERE f.onboarded_on BETWEEN %(first)s AND %(last)s
                               AND l.firm_id IS NOT NULL),
              count(*) FILTER (WHERE f.above_scale),
              count(*) FILTER (WHERE f.above_scale AND EXISTS (
                  SELECT 1 FROM zayton.workshops w WHERE w.firm_id = f.id AND w.digital))
            FROM zayton.firms f LEFT JOIN live l ON l.firm_id = f.id
            WHERE {in_scope}""".encode(),
        params,
    )
    firms = await cursor.fetchone()
    cursor = await conn.execute(
        f"""SELECT
              count(*) FILTER (WHERE p.kind = '5g_industrial_internet' AND EXISTS (
                  SELECT 1 FROM zayton.project_gateways pg
                  JOIN zayton.gateways g ON g.id = pg.gateway_id
                  WHERE pg.project_id = p.id AND g.uplink = '5g')),
              count(*) FILTER (WHERE p.kind = 'energy_saving' AND p.year = %(year)s),
              count(*) FILTER (WHERE p.kind = 'industrial_internet_platform'),
              count(*) FILTER (WHERE p.kind = 'digital_line')
            FROM zayton.projects p LEFT JOIN zayton.firms f ON f.id = p.firm_id
            WHERE p.year <= %(year)s AND (p.firm_id IS NULL AND %(firms)s::int[] IS NULL
                                          OR {in_scope})""".encode(),
        params,
    )
    projects = await cursor.fetchone()
    cursor = await conn.execute(
        f"""SELECT
              (SELECT count(*) FROM zayton.gateways g JOIN zayton.firms f ON f.id = g.firm_id
               WHERE g.uplink = '5g' AND {in_scope}),
              (SELECT count(*) FROM zayton.workshops w JOIN zayton.firms f ON f.id = w.firm_id
               WHERE w.digital AND w.kind = 'workshop' AND {in_scope}),
              (SELECT count(*) FROM zayton.workshops w JOIN zayton.firms f ON f.id = w.firm_id
               WHERE w.digital AND w.kind = 'line' AND {in_scope})""".encode(),
        params,
    )
    counts = await cursor.fetchone()
    if firms is None or projects is None or counts is None:  # pragma: no cover - aggregates
        raise EnergyError("the database returned no counts")
    return PlanActuals(
        year=year,
        firms_onboarded=int(firms[0]),
        firms_onboarded_new=int(firms[1]),
        g5_industrial_internet_projects=int(projects[0]),
        gateways_5g=int(counts[0]),
        digital_workshops=int(counts[1]),
        digital_lines=int(counts[2]) + int(projects[3]),
        energy_saving_projects=int(projects[1]),
        industrial_internet_platforms=int(projects[2]),
        above_scale_firms=int(firms[2]),
        above_scale_with_digital_workshop=int(firms[3]),
    )
