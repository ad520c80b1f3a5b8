"""Energy accounting against the simulator's ground truth.

Two days of the tiny park are backfilled through the store, counters followed as a gateway
follows them: tiny-shoes' site meter starts 150 kWh below its register wrap, so it wraps in the
first hour, and tiny-electronics' site meter is replaced six hours in. The truth (energy.csv) says
what really flowed in every 15-minute interval; each expected figure below is worked out from it
with the coefficients written out, never read back from Zayton.

A counted delta is stamped with the reading that counted it, at the end of its interval, so a
period holds the truth intervals that end inside it.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta

import psycopg
import pytest

from api.coefficients import Basis, Coefficient, Kind, Table
from api.energy import (
    BalanceLine,
    EnergyError,
    EnergyUse,
    Entity,
    Period,
    Resolution,
    account,
    balance,
    firms_of,
    load_flows,
    load_hierarchy,
    segments,
)
from tests.parkdb import (
    CST,
    ELECTRICITY_KGCE,
    END,
    GAS_KGCE,
    GAS_KGCO2,
    GRID_KGCO2,
    START,
    WATER_KGCE,
    Park2Days,
    carrier,
    coefficient_table,
    lost_to_replacement,
    true_sum,
)

pytestmark = pytest.mark.integration


def use_of(
    data: Park2Days, entity: str, period: Period, basis: Basis = Basis.EQUIVALENT
) -> EnergyUse:
    async def run() -> EnergyUse:
        async with await psycopg.AsyncConnection.connect(data.dsn) as conn:
            table = await asyncio.to_thread(coefficient_table, data.dsn)
            return await account(conn, Entity.parse(entity), period, table, basis=basis)

    return asyncio.run(run())


PERIODS = {
    "two local days (daily rollups)": Period.days(date(2026, 11, 2), date(2026, 11, 4)),
    "an odd range (15-minute rollups)": Period(
        START + timedelta(hours=5, minutes=30), START + timedelta(hours=29, minutes=15)
    ),
}


@pytest.mark.parametrize("name", sorted(PERIODS))
def test_a_firm_counts_its_boundary_meters_across_a_register_wrap(
    park_db: Park2Days, name: str
) -> None:
    period = PERIODS[name]
    use = use_of(park_db, "firm:tiny-shoes", period)
    imported = true_sum(park_db, period, "tiny-shoes", "incomer", "energy_import_kwh")
    exported = true_sum(park_db, period, "tiny-shoes", "incomer", "energy_export_kwh")
    pv = true_sum(park_db, period, "tiny-shoes", "pv-roof", "pv_energy_total_kwh")
    gas = true_sum(park_db, period, "tiny-shoes", "gas-main", "gas_volume_m3")
    water = true_sum(park_db, period, "tiny-shoes", "water-main", "water_volume_m3")
    assert imported > 1000  # the scenario really ran
    assert gas > 100
    assert water > 1

    assert carrier(use, "electricity") == pytest.approx(imported - exported, abs=0.02)
    assert carrier(use, "pv") == pytest.approx(pv, abs=0.02)
    assert carrier(use, "natural_gas") == pytest.approx(gas, abs=0.02)
    assert carrier(use, "water") == pytest.approx(water, abs=0.02)
    assert "steam" not in {c.carrier for c in use.carriers}  # raised from its own gas: level 3
    assert use.electricity_kwh == pytest.approx(imported - exported + pv, abs=0.05)
    # 综合能源消费量 on the 当量值 basis: electricity (grid and PV) and gas; water apart.
    electricity_tce = (imported - exported + pv) * ELECTRICITY_KGCE / 1000
    gas_tce = gas * GAS_KGCE / 1000
    # Registers show whole steps (0.01 kWh, 0.01 m³): a few steps' worth of tolerance.
    assert use.total_tce == pytest.approx(electricity_tce + gas_tce, abs=5e-5)
    assert use.clean_share == pytest.approx(
        (pv * ELECTRICITY_KGCE / 1000 + gas_tce) / (electricity_tce + gas_tce), abs=1e-4
    )
    water_use = next(c for c in use.carriers if c.carrier == "water")
    assert not water_use.in_total
    assert water_use.tce == pytest.approx(water * WATER_KGCE / 1000, abs=5e-6)
    # CO2: the grid's factor on net imports, gas by its own; PV emits nothing.
    expected_co2 = (imported - exported) * GRID_KGCO2 / 1000 + gas * GAS_KGCO2 / 1000
    assert use.co2_t == pytest.approx(expected_co2, abs=1e-4)
    assert use.basis is Basis.EQUIVALENT
    assert {c.carrier for c in use.coefficients if c.kind == "conversion"} == {
        "electricity",
        "natural_gas",
        "pv",
        "water",
    }
    assert all(c.source for c in use.coefficients)


def test_the_wrap_was_seen_and_counted(park_db: Park2Days) -> None:
    with psycopg.connect(park_db.dsn) as conn:
        kinds = conn.execute(
            """SELECT d.site, d.name, e.kind FROM zayton.counter_events e
               JOIN zayton.points p ON p.id = e.point_id
               JOIN zayton.devices d ON d.id = p.device_id ORDER BY d.site"""
        ).fetchall()
    assert ("tiny-shoes", "incomer", "wrap") in kinds
    assert ("tiny-electronics", "incomer", "replacement") in kinds


def test_a_replaced_meter_loses_only_the_interval_it_was_fitted_in(park_db: Park2Days) -> None:
    period = PERIODS["two local days (daily rollups)"]
    use = use_of(park_db, "firm:tiny-electronics", period)
    imported = true_sum(park_db, period, "tiny-electronics", "incomer", "energy_import_kwh")
    lost = lost_to_replacement(park_db, period)
    assert 10 < lost < imported / 50  # one 15-minute interval of a ~300 kW site
    assert carrier(use, "electricity") == pytest.approx(imported - lost, abs=0.02)
    assert use.total_tce == pytest.approx((imported - lost) * ELECTRICITY_KGCE / 1000, abs=5e-5)
    assert use.clean_share == 0.0


def test_lines_and_workshops_count_their_own_meters_and_production(park_db: Park2Days) -> None:
    period = PERIODS["two local days (daily rollups)"]
    line = use_of(park_db, "line:tiny-shoes/eva-1", period)
    eva = true_sum(park_db, period, "tiny-shoes", "eva-1-meter", "energy_import_kwh")
    pairs = true_sum(park_db, period, "tiny-shoes", "plc-eva-1", "production_count")
    assert carrier(line, "electricity") == pytest.approx(eva, abs=0.02)
    assert line.production == pytest.approx(pairs, abs=1.0)
    assert line.meters == ["eva-1-meter", "plc-eva-1"]
    # The moulding workshop has no meter of its own: its line's meter stands for it.
    moulding = use_of(park_db, "workshop:tiny-shoes/moulding", period)
    assert carrier(moulding, "electricity") == pytest.approx(eva, abs=0.02)
    # The sewing workshop has its own meter; the line inside has none.
    sewing = use_of(park_db, "workshop:tiny-shoes/sewing", period)
    metered = true_sum(park_db, period, "tiny-shoes", "sewing-meter", "energy_import_kwh")
    assert carrier(sewing, "electricity") == pytest.approx(metered, abs=0.02)
    device = use_of(park_db, "device:tiny-shoes/compressor-1-meter", period)
    compressor = true_sum(park_db, period, "tiny-shoes", "compressor-1-meter", "energy_import_kwh")
    assert carrier(device, "electricity") == pytest.approx(compressor, abs=0.02)


def test_the_park_is_the_sum_of_its_firms(park_db: Park2Days) -> None:
    period = PERIODS["two local days (daily rollups)"]
    shoes = use_of(park_db, "firm:tiny-shoes", period)
    electronics = use_of(park_db, "firm:tiny-electronics", period)
    park = use_of(park_db, "park:tiny-park", period)
    assert park.total_tce == pytest.approx(shoes.total_tce + electronics.total_tce, rel=1e-9)
    assert carrier(park, "electricity") == pytest.approx(
        carrier(shoes, "electricity") + carrier(electronics, "electricity"), rel=1e-9
    )
    district = use_of(park_db, "district", period)
    assert district.total_tce == pytest.approx(park.total_tce, rel=1e-9)


def test_the_generation_basis_is_stated_and_flagged_as_a_placeholder(park_db: Park2Days) -> None:
    period = PERIODS["two local days (daily rollups)"]
    equivalent = use_of(park_db, "firm:tiny-electronics", period)
    generation = use_of(park_db, "firm:tiny-electronics", period, Basis.GENERATION)
    assert generation.basis is Basis.GENERATION
    # 0.300 kgce/kWh, Zayton's placeholder, against 0.1229.
    assert generation.total_tce == pytest.approx(equivalent.total_tce * 0.300 / 0.1229, rel=1e-6)
    assert any("placeholder" in note for note in generation.notes)
    assert not any("placeholder" in note for note in equivalent.notes)


def test_the_sub_meter_balance_shows_what_no_sub_meter_sees(park_db: Park2Days) -> None:
    period = PERIODS["two local days (daily rollups)"]

    async def run() -> list[BalanceLine]:
        async with await psycopg.AsyncConnection.connect(park_db.dsn) as conn:
            hierarchy = await load_hierarchy(conn)
            (firm,) = firms_of(hierarchy, Entity.parse("firm:tiny-shoes"))
            devices = [m.device_id for m in hierarchy.meters.values() if m.firm_id == firm.id]
            flows = await load_flows(conn, period, devices)
            return balance(hierarchy, firm, flows)

    electricity, gas = asyncio.run(run())

    def t(device: str, point: str = "energy_import_kwh") -> float:
        return true_sum(park_db, period, "tiny-shoes", device, point)

    site = t("incomer") - t("incomer", "energy_export_kwh") + t("pv-roof", "pv_energy_total_kwh")
    subs = t("sewing-meter") + t("eva-1-meter") + t("compressor-1-meter")
    assert electricity.carrier == "electricity"
    assert electricity.boundary == pytest.approx(site, abs=0.1)
    assert electricity.sub_metered == pytest.approx(subs, abs=0.1)
    # Lighting and offices (30 kW) and 2 % losses are what the sub-meters miss.
    assert electricity.unmetered == pytest.approx(site - subs, abs=0.2)
    assert electricity.unmetered_share is not None
    assert 0.05 < electricity.unmetered_share < 0.5
    assert electricity.sub_meters == ["compressor-1-meter", "eva-1-meter", "sewing-meter"]
    # All the gas goes to the boiler, whose own counter is the only gas sub-meter.
    assert gas.carrier == "natural_gas"
    assert gas.sub_meters == ["boiler-1"]
    assert gas.sub_metered == pytest.approx(t("boiler-1", "gas_volume_m3"), abs=0.1)
    assert gas.unmetered == pytest.approx(0.0, abs=0.1)


def test_periods_pick_the_coarsest_rollup_that_fits() -> None:
    assert Period.year(2026).resolution is Resolution.MONTH
    assert Period.month(2026, 12).end == datetime(2027, 1, 1, tzinfo=CST)
    assert Period.day(date(2026, 11, 2)).resolution is Resolution.DAY
    assert PERIODS["an odd range (15-minute rollups)"].resolution is Resolution.QUARTER
    hours = Period(START + timedelta(hours=1), START + timedelta(hours=3))
    assert hours.resolution is Resolution.HOUR
    with pytest.raises(EnergyError, match="15-minute boundary"):
        Period(START + timedelta(minutes=7), END)
    with pytest.raises(EnergyError, match="before it starts"):
        Period(END, START)
    with pytest.raises(EnergyError, match="time zone"):
        Period(datetime(2026, 1, 1), END)  # noqa: DTZ001 - the naive time is the point


def test_a_period_is_split_where_a_coefficient_changes(park_db: Park2Days) -> None:
    table = coefficient_table(park_db.dsn)
    # The grid factor changes on 2023-01-01: a year across it is cut there, and only there.
    period = Period.days(date(2022, 7, 1), date(2023, 7, 1))
    assert segments(period, table) == [date(2023, 1, 1)]
    assert segments(Period.year(2024), table) == []


@pytest.mark.parametrize(
    "period",
    [Period.month(2026, 11), PERIODS["an odd range (15-minute rollups)"]],
    ids=["a month (monthly rollups)", "an odd range (hours and quarter-hours)"],
)
def test_a_coefficient_that_changes_mid_month_applies_from_its_day(
    park_db: Park2Days, period: Period
) -> None:
    """tiny-shoes' measured heating value from 3 November: a period read from rollups coarser
    than a day is still cut at that day's start, each part converted with its own value."""
    measured_kgce = 1.3000
    measured = Coefficient(
        Kind.CONVERSION,
        "natural_gas",
        measured_kgce,
        "kgce/m3",
        date(2026, 11, 3),
        "measured heating value (test)",
        firm="tiny-shoes",
    )
    table = Table([*coefficient_table(park_db.dsn).coefficients, measured])

    async def run() -> EnergyUse:
        async with await psycopg.AsyncConnection.connect(park_db.dsn) as conn:
            return await account(conn, Entity.parse("firm:tiny-shoes"), period, table)

    use = asyncio.run(run())
    cut = datetime(2026, 11, 3, tzinfo=CST)
    before = true_sum(park_db, Period(period.start, cut), "tiny-shoes", "gas-main", "gas_volume_m3")
    after = true_sum(park_db, Period(cut, period.end), "tiny-shoes", "gas-main", "gas_volume_m3")
    assert before > 10
    assert after > 10
    gas = next(c for c in use.carriers if c.carrier == "natural_gas")
    assert gas.quantity == pytest.approx(before + after, abs=0.02)
    assert gas.tce == pytest.approx((before * GAS_KGCE + after * measured_kgce) / 1000, abs=5e-5)
    assert measured.source in {c.source for c in use.coefficients}


@pytest.mark.parametrize(
    ("text", "message"),
    [("firm:", "not district"), ("workshop:tiny-shoes", "not district"), ("plant:x", "not")],
)
def test_entities_are_named_plainly(text: str, message: str) -> None:
    with pytest.raises(EnergyError, match=message):
        Entity.parse(text)
    assert str(Entity.parse("line:tiny-shoes/eva-1")) == "line:tiny-shoes/eva-1"


def test_unknown_entities_are_not_found(park_db: Park2Days) -> None:
    period = PERIODS["two local days (daily rollups)"]
    for entity, message in [
        ("firm:nobody", "no firm"),
        ("park:elsewhere", "no park"),
        ("line:tiny-shoes/nope", "no line"),
        ("device:tiny-shoes/nope", "no device"),
    ]:
        with pytest.raises(EnergyError, match=message):
            use_of(park_db, entity, period)
