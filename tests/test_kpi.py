"""Indicators against the simulator's ground truth (tests/parkdb.py): every expected value is
worked out here from energy.csv and business.csv with the coefficients written out.

The base year (2025) for the decline rate and the dual-control forecast is not simulated: its
daily and monthly rollups and its business data are written in by the test, as round numbers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest

from api.coefficients import Table
from api.energy import Entity, Period
from api.kpi import (
    DualControl,
    Kpis,
    MeterCompleteness,
    PlanActuals,
    dual_control,
    forecast,
    kpis,
    meter_completeness,
    plan_actuals,
    rag,
)
from tests.parkdb import (
    CST,
    ELECTRICITY_KGCE,
    GAS_KGCE,
    SILENT_S,
    START,
    Park2Days,
    coefficient_table,
    true_sum,
)

pytestmark = pytest.mark.integration

T = TypeVar("T")
NOVEMBER = Period.month(2026, 11)
BASE_DAILY_KWH = 1000.0
BASE_MONTHLY_VALUE_ADDED = 100.0  # 万元


def run(data: Park2Days, query: Callable[[psycopg.AsyncConnection[Any], Table], Awaitable[T]]) -> T:
    async def go() -> T:
        table = await asyncio.to_thread(coefficient_table, data.dsn)
        async with await psycopg.AsyncConnection.connect(data.dsn) as conn:
            return await query(conn, table)

    return asyncio.run(go())


def kpis_of(data: Park2Days, entity: str, period: Period, base_year: int | None = None) -> Kpis:
    return run(
        data,
        lambda conn, table: kpis(conn, Entity.parse(entity), period, table, base_year=base_year),
    )


def business_row(data: Park2Days, firm: str, month: str) -> dict[str, str]:
    return next(r for r in data.business if r["firm"] == firm and r["month"] == month)


def shoes_tce(data: Park2Days, period: Period) -> float:
    def t(device: str, point: str) -> float:
        return true_sum(data, period, "tiny-shoes", device, point)

    electricity = (
        t("incomer", "energy_import_kwh")
        - t("incomer", "energy_export_kwh")
        + t("pv-roof", "pv_energy_total_kwh")
    )
    return electricity * ELECTRICITY_KGCE / 1000 + t("gas-main", "gas_volume_m3") * GAS_KGCE / 1000


@pytest.fixture(scope="module")
def with_base_year(park_db: Park2Days) -> Park2Days:
    """2025 for tiny-shoes: 1,000 kWh through its site meter every day, 100 万元 of value added
    every month; and a 5G project on its 5G gateway, one on tiny-electronics' wired one."""
    with psycopg.connect(park_db.dsn, autocommit=True) as conn:
        (point,) = conn.execute(
            """SELECT p.id FROM zayton.points p JOIN zayton.devices d ON d.id = p.device_id
               WHERE d.site = 'tiny-shoes' AND d.name = 'incomer'
                 AND p.name = 'energy_import_kwh'"""
        ).fetchone() or (None,)
        days = [date(2025, 1, 1) + timedelta(days=n) for n in range(365)]
        with conn.cursor() as cursor:
            cursor.executemany(
                """INSERT INTO zayton.rollup_day
                   (point_id, bucket, readings, samples, consumption)
                   VALUES (%s, %s, 96, 96, %s)""",
                [
                    (point, datetime(d.year, d.month, d.day, tzinfo=CST), BASE_DAILY_KWH)
                    for d in days
                ],
            )
            cursor.executemany(
                """INSERT INTO zayton.rollup_month
                   (point_id, bucket, readings, samples, consumption) VALUES (%s, %s, 1, 1, %s)""",
                [
                    (
                        point,
                        datetime(2025, m, 1, tzinfo=CST),
                        BASE_DAILY_KWH * sum(1 for d in days if d.month == m),
                    )
                    for m in range(1, 13)
                ],
            )
            cursor.executemany(
                """INSERT INTO zayton.firm_months (firm_id, month, value_added, price_basis)
                   SELECT id, %s, %s, 'current' FROM zayton.firms WHERE code = 'tiny-shoes'""",
                [(date(2025, m, 1), BASE_MONTHLY_VALUE_ADDED) for m in range(1, 13)],
            )
        conn.execute(
            """INSERT INTO zayton.projects (code, name, kind, firm_id, year)
               SELECT 'shoes-5g', '5G moulding', '5g_industrial_internet', id, 2025
               FROM zayton.firms WHERE code = 'tiny-shoes';
               INSERT INTO zayton.projects (code, name, kind, firm_id, year)
               SELECT 'caps-5g', '5G SMT (wired so far)', '5g_industrial_internet', id, 2026
               FROM zayton.firms WHERE code = 'tiny-electronics';
               INSERT INTO zayton.project_gateways
               SELECT p.id, g.id FROM zayton.projects p JOIN zayton.gateways g
                 ON g.firm_id = p.firm_id AND g.name NOT LIKE '%%-history'"""
        )
    return park_db


def test_intensities_per_10000_yuan_of_output_and_of_value_added(park_db: Park2Days) -> None:
    result = kpis_of(park_db, "firm:tiny-shoes", NOVEMBER)
    row = business_row(park_db, "tiny-shoes", "2026-11")
    output = round(float(row["output_value_10k_yuan"]), 2)  # stored to the 0.01 万元
    value_added = round(float(row["value_added_10k_yuan"]), 2)
    tce = shoes_tce(park_db, NOVEMBER)
    assert output > 1  # two days of 85-yuan pairs
    assert result.business is not None
    assert (result.business.months, result.business.reported) == (1, 1)
    assert result.business.price_basis == "current"
    assert result.energy.total_tce == pytest.approx(tce, abs=5e-5)
    assert result.tce_per_10k_output == pytest.approx(tce / output, rel=1e-4)
    assert result.tce_per_10k_value_added == pytest.approx(tce / value_added, rel=1e-4)
    # Per unit: everything the firm used over every pair its PLCs counted.
    pairs = true_sum(park_db, NOVEMBER, "tiny-shoes", "plc-eva-1", "production_count")
    pairs += true_sum(park_db, NOVEMBER, "tiny-shoes", "plc-sewing-1", "production_count")
    assert result.kgce_per_unit == pytest.approx(tce * 1000 / pairs, rel=1e-3)


def test_energy_per_unit_of_product_of_a_line(park_db: Park2Days) -> None:
    result = kpis_of(park_db, "line:tiny-shoes/eva-1", NOVEMBER)
    kwh = true_sum(park_db, NOVEMBER, "tiny-shoes", "eva-1-meter", "energy_import_kwh")
    pairs = true_sum(park_db, NOVEMBER, "tiny-shoes", "plc-eva-1", "production_count")
    assert result.kgce_per_unit == pytest.approx(kwh * ELECTRICITY_KGCE / pairs, rel=1e-3)
    assert result.business is None  # a line has no business data
    assert result.tce_per_10k_value_added is None


def test_intensities_need_whole_months(park_db: Park2Days) -> None:
    result = kpis_of(park_db, "firm:tiny-shoes", Period.days(date(2026, 11, 2), date(2026, 11, 4)))
    assert result.tce_per_10k_value_added is None
    assert any("whole months" in note for note in result.notes)


def test_peak_demand_against_the_transformer(park_db: Park2Days) -> None:
    result = kpis_of(park_db, "firm:tiny-shoes", NOVEMBER)
    quarters = [
        float(r["quantity"])
        for r in park_db.truth
        if (r["firm"], r["device"], r["point"]) == ("tiny-shoes", "incomer", "energy_import_kwh")
    ]
    peak = max(quarters) * 4  # kWh in 15 minutes → average kW
    assert result.peak_kw == pytest.approx(peak, abs=0.1)
    assert result.transformer_kva == 800
    assert result.peak_load_ratio == pytest.approx(peak / 800, abs=1e-3)


def test_completeness_counts_the_polls_a_silent_meter_missed(park_db: Park2Days) -> None:
    period = Period.days(date(2026, 11, 2), date(2026, 11, 4))
    meters: list[MeterCompleteness] = run(
        park_db, lambda conn, _: meter_completeness(conn, period, None)
    )
    by_name = {(m.firm, m.device): m for m in meters}
    polls = 2 * 24 * 4  # every 15 minutes for two days
    missed = int(SILENT_S / 900)  # 8 polls in the two silent hours
    water = by_name["tiny-shoes", "water-main"]
    points = water.expected / polls
    assert points == int(points)
    assert water.received == (polls - missed) * points
    assert water.ratio == pytest.approx((polls - missed) / polls)
    assert by_name["tiny-shoes", "incomer"].ratio == 1.0
    # A firm's completeness is over the meters its totals came from.
    firm = kpis_of(park_db, "firm:tiny-shoes", period)
    assert firm.completeness is not None
    assert 0.98 < firm.completeness < 1.0


def test_decline_rate_against_the_base_year(with_base_year: Park2Days) -> None:
    result = kpis_of(with_base_year, "firm:tiny-shoes", Period.year(2026), base_year=2025)
    base = 365 * BASE_DAILY_KWH * ELECTRICITY_KGCE / 1000 / (12 * BASE_MONTHLY_VALUE_ADDED)
    now = shoes_tce(with_base_year, NOVEMBER) / round(
        float(business_row(with_base_year, "tiny-shoes", "2026-11")["value_added_10k_yuan"]), 2
    )
    assert result.tce_per_10k_value_added_base == pytest.approx(base, rel=1e-9)
    assert result.decline_rate_pct == pytest.approx((now / base - 1) * 100, rel=1e-3)


def test_dual_control_forecasts_from_last_years_shape_and_warns(with_base_year: Park2Days) -> None:
    ytd = shoes_tce(with_base_year, Period.year(2026))
    last_ytd_days = (date(2025, 12, 1) - date(2025, 1, 1)).days  # 334
    expected = ytd * 365 / last_ytd_days  # this year's YTD x last year's total / YTD
    with psycopg.connect(with_base_year.dsn, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO zayton.energy_budgets (entity, year, total_tce, source)
               VALUES ('firm:tiny-shoes', 2026, %s, 'test')""",
            (round(expected * 0.95, 3),),
        )
    result: DualControl = run(
        with_base_year,
        lambda conn, table: dual_control(
            conn, Entity.parse("firm:tiny-shoes"), 2026, date(2026, 12, 1), table
        ),
    )
    assert result.method == "last-year profile"
    assert result.ytd_tce == pytest.approx(ytd, abs=5e-5)
    assert result.forecast_tce == pytest.approx(expected, rel=1e-4)
    assert result.total_status == "red"
    assert "of the 2026 budget" in result.warnings[0]
    value_added = round(
        float(business_row(with_base_year, "tiny-shoes", "2026-11")["value_added_10k_yuan"]), 2
    )
    elapsed = (date(2026, 12, 1) - date(2026, 1, 1)).days
    assert result.forecast_tce_per_10k == pytest.approx(
        expected / (value_added / elapsed * 365), rel=1e-4
    )
    assert result.intensity_status is None  # no intensity budget set


def test_forecast_and_warning_rules() -> None:
    assert forecast(30.0, 73, 365, None, None) == (150.0, "linear")
    assert forecast(30.0, 73, 365, 20.0, 120.0) == (180.0, "last-year profile")
    assert [rag(v, 100.0) for v in (89.9, 90.0, 100.0, 100.1)] == [
        "green",
        "amber",
        "amber",
        "red",
    ]
    assert rag(50.0, None) is None


def test_plan_actuals_count_live_firms_5g_projects_and_digital_workshops(
    with_base_year: Park2Days,
) -> None:
    actuals: PlanActuals = run(with_base_year, lambda conn, _: plan_actuals(conn, 2026, None))
    # Both firms onboarded before 2026 (2022, 2023) and both sent data in 2026.
    assert (actuals.firms_onboarded, actuals.firms_onboarded_new) == (2, 0)
    # The 2025 project runs on tiny-shoes' 5G gateway; tiny-electronics' gateway is wired.
    assert (actuals.g5_industrial_internet_projects, actuals.gateways_5g) == (1, 1)
    assert (actuals.digital_workshops, actuals.above_scale_with_digital_workshop) == (1, 1)
    assert actuals.above_scale_firms == 2
    # In 2024 neither firm sent data: onboarded on paper, not with live data.
    before: PlanActuals = run(with_base_year, lambda conn, _: plan_actuals(conn, 2024, None))
    assert before.firms_onboarded == 0
    assert before.g5_industrial_internet_projects == 0


def test_a_park_adds_its_firms_business_and_transformers(park_db: Park2Days) -> None:
    park = kpis_of(park_db, "park:tiny-park", NOVEMBER)
    assert park.business is not None
    added = sum(
        round(float(business_row(park_db, f, "2026-11")["value_added_10k_yuan"]), 2)
        for f in ("tiny-shoes", "tiny-electronics")
    )
    assert park.business.value_added == pytest.approx(added, abs=0.005)
    assert park.transformer_kva == 800 + 630
    assert park.tce_per_10k_value_added == pytest.approx(park.energy.total_tce / added, rel=1e-6)
    assert START.month == 11
