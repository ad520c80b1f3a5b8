"""Monthly energy reports against the simulator's ground truth (tests/parkdb.py): every expected
figure is worked out here from energy.csv and business.csv with the coefficients written out,
then read back from the report, its CSV and its XLSX.

The park ran on 2 and 3 November 2026 only, so November 2026 is also its year to date, and a
report for November 2027 has November 2026 as its same month last year.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Sequence

import psycopg
import pytest
from openpyxl import load_workbook
from openpyxl.worksheet.worksheet import Worksheet

from api.coefficients import Basis
from api.energy import EnergyError, Entity, Period
from api.reports import (
    CARRIER_COLUMNS,
    FIRM_COLUMNS,
    FIRM_TOTAL,
    INDICATOR_COLUMNS,
    MonthlyReport,
    monthly_report,
    to_csv,
    to_xlsx,
)
from tests.parkdb import (
    ELECTRICITY_KGCE,
    GAS_KGCE,
    GAS_KGCO2,
    GRID_KGCO2,
    WATER_KGCE,
    Park2Days,
    coefficient_table,
    lost_to_replacement,
    true_sum,
)

pytestmark = pytest.mark.integration

NOVEMBER = Period.month(2026, 11)
KGCE = {
    "electricity": ELECTRICITY_KGCE,
    "pv": ELECTRICITY_KGCE,  # own PV counted as electricity, calorific equivalent
    "natural_gas": GAS_KGCE,
    "water": WATER_KGCE,
}
UNITS = {"electricity": "kWh", "pv": "kWh", "natural_gas": "m3", "water": "m3"}
TCE_STEPS = 5e-5  # registers count whole 0.01 kWh and 0.01 m³ steps


def report_of(
    data: Park2Days,
    entity: str,
    year: int = 2026,
    month: int = 11,
    *,
    basis: Basis = Basis.EQUIVALENT,
    firm_ids: Sequence[int] | None = None,
) -> MonthlyReport:
    async def go() -> MonthlyReport:
        table = await asyncio.to_thread(coefficient_table, data.dsn)
        async with await psycopg.AsyncConnection.connect(data.dsn) as conn:
            return await monthly_report(
                conn, Entity.parse(entity), year, month, table, basis=basis, firm_ids=firm_ids
            )

    return asyncio.run(go())


def shoes_truth(data: Park2Days, period: Period) -> dict[str, float]:
    """tiny-shoes' carriers at its boundary: the grid's net imports, own PV, gas, water."""

    def t(device: str, point: str) -> float:
        return true_sum(data, period, "tiny-shoes", device, point)

    return {
        "electricity": t("incomer", "energy_import_kwh") - t("incomer", "energy_export_kwh"),
        "pv": t("pv-roof", "pv_energy_total_kwh"),
        "natural_gas": t("gas-main", "gas_volume_m3"),
        "water": t("water-main", "water_volume_m3"),
    }


def total_tce(quantities: dict[str, float]) -> float:
    """综合能源消费量: water is a working medium, left out."""
    return sum(q * KGCE[c] / 1000 for c, q in quantities.items() if c != "water")


def electronics_tce(data: Park2Days, period: Period) -> float:
    imported = true_sum(data, period, "tiny-electronics", "incomer", "energy_import_kwh")
    return (imported - lost_to_replacement(data, period)) * ELECTRICITY_KGCE / 1000


def value_added(data: Park2Days, firm: str, column: str = "value_added_10k_yuan") -> float:
    row = next(r for r in data.business if r["firm"] == firm and r["month"] == "2026-11")
    return round(float(row[column]), 2)  # stored to the 0.01 万元


def firm_id(data: Park2Days, code: str) -> int:
    with psycopg.connect(data.dsn) as conn:
        row = conn.execute("SELECT id FROM zayton.firms WHERE code = %s", (code,)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(scope="module")
def shoes(park_db: Park2Days) -> MonthlyReport:
    return report_of(park_db, "firm:tiny-shoes")


@pytest.fixture(scope="module")
def park(park_db: Park2Days) -> MonthlyReport:
    return report_of(park_db, "park:tiny-park")


# --- the firm's report ---------------------------------------------------------------------------


def test_a_firms_carrier_rows_and_total_match_the_truth(
    park_db: Park2Days, shoes: MonthlyReport
) -> None:
    truth = shoes_truth(park_db, NOVEMBER)
    assert truth["electricity"] > 1000  # the scenario really ran
    assert truth["natural_gas"] > 100
    expected_total = total_tce(truth)
    rows = {r.carrier: r for r in shoes.carriers}
    assert list(rows) == ["electricity", "pv", "natural_gas", "water"]
    for carrier, quantity in truth.items():
        row = rows[carrier]
        assert row.unit == UNITS[carrier]
        assert row.quantity == pytest.approx(quantity, abs=0.02)
        assert row.coefficient == KGCE[carrier]
        assert row.tce == pytest.approx(quantity * KGCE[carrier] / 1000, abs=TCE_STEPS)
        # 2 and 3 November are all that was metered in 2026.
        assert row.ytd == pytest.approx(row.quantity, rel=1e-9)
        assert row.ytd_tce == pytest.approx(row.tce, rel=1e-9)
    assert rows["electricity"].coefficient_unit == "kgce/kWh"
    assert rows["water"].coefficient_unit == "kgce/t"  # GB/T 2589 per tonne, metered in m³
    assert shoes.total.carrier == "total"
    assert shoes.total.unit == "tce"
    assert shoes.total.tce == pytest.approx(expected_total, abs=TCE_STEPS)
    assert shoes.total.ytd == pytest.approx(expected_total, abs=TCE_STEPS)
    # Shares of the total: water is shown, converted, but not part of it.
    assert not rows["water"].in_total
    assert rows["water"].share_pct is None
    gas_share = truth["natural_gas"] * GAS_KGCE / 1000 / expected_total * 100
    assert rows["natural_gas"].share_pct == pytest.approx(gas_share, abs=0.01)
    shares = [r.share_pct for r in shoes.carriers if r.share_pct is not None]
    assert sum(shares) == pytest.approx(100.0, rel=1e-9)


def test_a_firms_header_indicators_and_notes(park_db: Park2Days, shoes: MonthlyReport) -> None:
    truth = shoes_truth(park_db, NOVEMBER)
    tce = total_tce(truth)
    header = shoes.header
    assert (header.code, header.name) == ("tiny-shoes", "Tiny Shoes Co. (fictional)")
    assert (header.park_code, header.park_name) == ("tiny-park", "Tiny test park")
    assert (header.year, header.month, header.basis) == (2026, 11, Basis.EQUIVALENT)
    assert (header.start, header.end) == (NOVEMBER.start, NOVEMBER.end)
    assert header.completeness is not None
    assert 0 < header.completeness < 1  # the meters went quiet after two days
    conversions = {c.carrier: c.value for c in header.coefficients if c.kind == "conversion"}
    assert conversions == KGCE
    assert all(c.source for c in header.coefficients)
    assert "incomer" in header.meters
    assert shoes.electricity_kwh == pytest.approx(truth["electricity"] + truth["pv"], abs=0.05)
    assert shoes.natural_gas_m3 == pytest.approx(truth["natural_gas"], abs=0.02)
    expected_co2 = (truth["electricity"] * GRID_KGCO2 + truth["natural_gas"] * GAS_KGCO2) / 1000
    assert shoes.co2_t == pytest.approx(expected_co2, abs=1e-4)
    added = value_added(park_db, "tiny-shoes")
    output = value_added(park_db, "tiny-shoes", "output_value_10k_yuan")
    assert (shoes.value_added, shoes.output_value) == (added, output)
    assert shoes.price_basis == "current"
    assert shoes.tce_per_10k_value_added == pytest.approx(tce / added, rel=1e-4)
    assert shoes.tce_per_10k_output == pytest.approx(tce / output, rel=1e-4)
    pairs = true_sum(park_db, NOVEMBER, "tiny-shoes", "plc-eva-1", "production_count")
    pairs += true_sum(park_db, NOVEMBER, "tiny-shoes", "plc-sewing-1", "production_count")
    assert shoes.production == pytest.approx(pairs, abs=2.0)
    assert shoes.kgce_per_unit == pytest.approx(tce * 1000 / pairs, rel=1e-3)
    assert shoes.firms == []
    assert not any("placeholder" in n or "business data" in n for n in shoes.notes)


def test_the_generation_basis_is_stated_and_its_placeholder_noted(park_db: Park2Days) -> None:
    report = report_of(park_db, "firm:tiny-electronics", basis=Basis.GENERATION)
    assert report.header.basis is Basis.GENERATION
    electricity = next(r for r in report.carriers if r.carrier == "electricity")
    assert electricity.coefficient == 0.300  # Zayton's placeholder for 等价值
    imported = true_sum(park_db, NOVEMBER, "tiny-electronics", "incomer", "energy_import_kwh")
    lost = lost_to_replacement(park_db, NOVEMBER)
    assert report.total.tce == pytest.approx((imported - lost) * 0.300 / 1000, abs=1e-4)
    assert any("placeholder" in n and "0.3 kgce/kWh" in n for n in report.notes)


def test_same_month_last_year_and_year_to_date(park_db: Park2Days) -> None:
    """November 2027: nothing metered yet; November 2026 is its same month last year and all of
    the year to date a year earlier."""
    report = report_of(park_db, "firm:tiny-shoes", 2027, 11)
    truth = shoes_truth(park_db, NOVEMBER)
    rows = {r.carrier: r for r in report.carriers}
    assert set(rows) == set(truth)
    for carrier, quantity in truth.items():
        row = rows[carrier]
        assert (row.quantity, row.ytd, row.tce) == (0.0, 0.0, 0.0)
        assert row.last_year == pytest.approx(quantity, abs=0.02)
        assert row.ytd_last_year == pytest.approx(quantity, abs=0.02)
        assert row.change_pct == pytest.approx(-100.0)
        assert row.ytd_change_pct == pytest.approx(-100.0)
        assert row.coefficient is None  # nothing converted in the month
    assert report.total.last_year == pytest.approx(total_tce(truth), abs=TCE_STEPS)
    assert report.total.change_pct == pytest.approx(-100.0)
    assert report.value_added is None
    assert report.tce_per_10k_value_added is None
    assert any("no business data for 2027-11" in n for n in report.notes)
    assert any(
        "nothing metered in the month for electricity, pv, natural_gas, water" in n
        for n in report.notes
    )
    # December 2027: December 2026 was not metered, so nothing to compare with; the year to
    # date a year earlier is November 2026 again.
    december = {r.carrier: r for r in report_of(park_db, "firm:tiny-shoes", 2027, 12).carriers}
    assert set(december) == set(truth)
    for carrier, quantity in truth.items():
        assert (december[carrier].last_year, december[carrier].change_pct) == (None, None)
        assert december[carrier].ytd_last_year == pytest.approx(quantity, abs=0.02)
    # November 2026 against November 2025, when nothing was metered (the indicators' tests may
    # write a 2025 for tiny-shoes' grid imports, never for its PV): no change to state.
    pv = next(r for r in report_of(park_db, "firm:tiny-shoes").carriers if r.carrier == "pv")
    assert pv.last_year in (None, 0.0)
    assert pv.change_pct is None


# --- exports -------------------------------------------------------------------------------------


def csv_rows(report: MonthlyReport) -> list[list[str]]:
    data = to_csv(report)
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def table(
    rows: list[list[str]], columns: Sequence[str], key: str | None = None
) -> dict[str, dict[str, str]]:
    """The rows of the table that ``columns`` heads, up to a blank row, by their ``key`` column
    (the first by default)."""
    start = rows.index(list(columns)) + 1
    found: dict[str, dict[str, str]] = {}
    for row in rows[start:]:
        if not row:
            break
        cells = dict(zip(columns, row, strict=False))
        found[cells[key or columns[0]]] = cells
    return found


def test_the_csv_reads_back_to_the_same_numbers(park_db: Park2Days, shoes: MonthlyReport) -> None:
    truth = shoes_truth(park_db, NOVEMBER)
    rows = csv_rows(shoes)
    assert rows[0][0].startswith("能源消费月报 Monthly energy report")
    header = {r[0]: r[1] for r in rows[2:8]}
    assert header["企业代码 Firm code"] == "tiny-shoes"
    assert header["所属园区 Park"] == "tiny-park Tiny test park"
    assert header["折标方法 Conversion basis"] == "当量值 calorific equivalent"
    assert header["报告期 Period"] == "2026年11月 (2026-11-01 – 2026-11-30)"
    carriers = table(rows, CARRIER_COLUMNS, "代码 Code")
    assert list(carriers) == ["electricity", "pv", "natural_gas", "water", "total"]
    for carrier, quantity in truth.items():
        row = carriers[carrier]
        shown = 0.5 if UNITS[carrier] == "kWh" else 0.005  # kWh whole, m³ to 0.01
        assert float(row["本月 This month"]) == pytest.approx(quantity, abs=shown + 0.02)
        assert float(row["折标系数 Coefficient"]) == KGCE[carrier]
        tce = float(row["本月折标量(吨标准煤) This month (tce)"])
        assert tce == pytest.approx(quantity * KGCE[carrier] / 1000, abs=5e-4 + TCE_STEPS)
        assert len(row["本月折标量(吨标准煤) This month (tce)"].partition(".")[2]) == 3
        assert row["计入综合能耗 In total"] == ("否 no" if carrier == "water" else "是 yes")
    total = carriers["total"]
    assert float(total["本月 This month"]) == pytest.approx(total_tce(truth), abs=5e-4 + TCE_STEPS)
    assert float(total["占比(%) Share of total (%)"]) == 100.0
    indicators = table(rows, INDICATOR_COLUMNS)
    intensity = indicators["万元增加值能耗 Energy per value added"]
    expected = total_tce(truth) / value_added(park_db, "tiny-shoes")
    assert float(intensity["数值 Value"]) == pytest.approx(expected, abs=5e-5 + 1e-4 * expected)
    assert indicators["增加值价格基础 Price basis of value added"]["数值 Value"] == (
        "现价 current prices"
    )


def xlsx_sheet(report: MonthlyReport) -> Worksheet:
    sheet = load_workbook(io.BytesIO(to_xlsx(report))).active
    assert isinstance(sheet, Worksheet)
    return sheet


def head_row(sheet: Worksheet, first: str) -> int:
    return next(r for r in range(1, sheet.max_row + 1) if sheet.cell(r, 1).value == first)


def test_the_xlsx_holds_the_same_numbers_in_the_expected_cells(
    park_db: Park2Days, shoes: MonthlyReport
) -> None:
    truth = shoes_truth(park_db, NOVEMBER)
    sheet = xlsx_sheet(shoes)
    title = sheet["A1"].value
    assert isinstance(title, str)
    assert "能源消费月报" in title
    assert "Tiny Shoes Co. (fictional)" in title
    assert "A1:O1" in {str(m) for m in sheet.merged_cells.ranges}
    head = head_row(sheet, CARRIER_COLUMNS[0])
    assert [sheet.cell(head, c).value for c in range(1, 16)] == list(CARRIER_COLUMNS)
    assert sheet.freeze_panes == f"B{head + 1}"  # the table's header and the energy names
    for offset, carrier in enumerate(["electricity", "pv", "natural_gas", "water"], 1):
        row = head + offset
        assert sheet.cell(row, 15).value == carrier  # O: 代码 Code
        quantity, tce = sheet.cell(row, 3), sheet.cell(row, 11)  # C: 本月, K: 本月折标量
        assert quantity.value == pytest.approx(truth[carrier], abs=0.02)
        assert tce.value == pytest.approx(truth[carrier] * KGCE[carrier] / 1000, abs=TCE_STEPS)
        assert sheet.cell(row, 9).value == KGCE[carrier]  # I: 折标系数
        assert tce.number_format == "#,##0.000"
        assert quantity.number_format == ("#,##0" if UNITS[carrier] == "kWh" else "#,##0.00")
    total = head + 5
    assert sheet.cell(total, 15).value == "total"
    assert sheet.cell(total, 11).value == pytest.approx(total_tce(truth), abs=TCE_STEPS)
    assert sheet.cell(total, 11).font.bold
    assert sheet.cell(head + 6, 1).value is None  # a blank row before the indicators
    indicators = head_row(sheet, INDICATOR_COLUMNS[0])
    assert sheet.cell(indicators + 1, 2).value == sheet.cell(total, 11).value
    widths = {c: sheet.column_dimensions[c].width for c in "ABCK"}
    assert all(w is not None and 10 <= w <= 52 for w in widths.values()), widths
    assert widths["A"] > 40  # the labels and the names of the carriers


# --- parks and what a caller may see -------------------------------------------------------------


def test_a_park_report_sums_its_firms(park_db: Park2Days, park: MonthlyReport) -> None:
    assert (park.header.kind, park.header.code, park.header.name) == (
        "park",
        "tiny-park",
        "Tiny test park",
    )
    firms = {f.code: f for f in park.firms}
    assert list(firms) == ["tiny-electronics", "tiny-shoes"]
    shoes_tce = total_tce(shoes_truth(park_db, NOVEMBER))
    assert firms["tiny-shoes"].total_tce == pytest.approx(shoes_tce, abs=TCE_STEPS)
    caps_tce = electronics_tce(park_db, NOVEMBER)
    assert firms["tiny-electronics"].total_tce == pytest.approx(caps_tce, abs=TCE_STEPS)
    assert firms["tiny-electronics"].natural_gas_m3 == 0.0
    assert park.total.tce == pytest.approx(shoes_tce + caps_tce, abs=2 * TCE_STEPS)
    assert park.total.tce == pytest.approx(sum(f.total_tce for f in park.firms), rel=1e-9)
    for field in ("electricity_kwh", "natural_gas_m3", "value_added", "output_value"):
        parts = [getattr(f, field) for f in park.firms]
        assert getattr(park, field) == pytest.approx(sum(parts), rel=1e-9), field
    added = value_added(park_db, "tiny-shoes") + value_added(park_db, "tiny-electronics")
    assert park.value_added == pytest.approx(added, abs=0.005)
    assert park.tce_per_10k_value_added == pytest.approx(park.total.tce / added, rel=1e-9)
    # The park's completeness is over all its meters: between its firms'.
    ratios = [f.completeness or 0.0 for f in park.firms]
    assert park.header.completeness is not None
    assert 0 < min(ratios) <= park.header.completeness <= max(ratios)
    # The park's rows per carrier add its firms' metering too.
    electricity = next(r for r in park.carriers if r.carrier == "electricity")
    assert electricity.quantity == pytest.approx(
        next(r.quantity for r in report_of(park_db, "firm:tiny-shoes").carriers)
        + true_sum(park_db, NOVEMBER, "tiny-electronics", "incomer", "energy_import_kwh")
        - lost_to_replacement(park_db, NOVEMBER),
        abs=0.05,
    )
    # In the CSV: the firms' rows, then the park's total.
    rows = table(csv_rows(park), FIRM_COLUMNS, "企业代码 Firm code")
    assert list(rows) == ["tiny-electronics", "tiny-shoes", "tiny-park"]
    assert rows["tiny-park"]["企业名称 Firm name"] == FIRM_TOTAL
    column = "综合能源消费量(吨标准煤) Total energy (tce)"
    assert float(rows["tiny-park"][column]) == pytest.approx(shoes_tce + caps_tce, abs=1e-3)
    district = report_of(park_db, "district")
    assert district.header.name == "Licheng, Quanzhou"
    assert district.total.tce == pytest.approx(park.total.tce, rel=1e-9)


def test_firm_ids_hide_the_other_firm(park_db: Park2Days) -> None:
    only_shoes = [firm_id(park_db, "tiny-shoes")]
    park = report_of(park_db, "park:tiny-park", firm_ids=only_shoes)
    assert [f.code for f in park.firms] == ["tiny-shoes"]
    shoes_tce = total_tce(shoes_truth(park_db, NOVEMBER))
    assert park.total.tce == pytest.approx(shoes_tce, abs=TCE_STEPS)
    assert park.total.ytd == pytest.approx(shoes_tce, abs=TCE_STEPS)  # only November was metered
    assert park.value_added == value_added(park_db, "tiny-shoes")
    for export in (to_csv(park), to_xlsx(park)):
        assert b"tiny-electronics" not in export
        assert b"Capacitors" not in export
    district = report_of(park_db, "district", firm_ids=only_shoes)
    assert [f.code for f in district.firms] == ["tiny-shoes"]
    with pytest.raises(EnergyError, match="no firm"):
        report_of(park_db, "firm:tiny-electronics", firm_ids=only_shoes)
    with pytest.raises(EnergyError, match="no park"):
        report_of(park_db, "park:tiny-park", firm_ids=[])


def test_only_firms_parks_and_the_district_have_monthly_reports(park_db: Park2Days) -> None:
    with pytest.raises(EnergyError, match="not workshop:tiny-shoes/sewing"):
        report_of(park_db, "workshop:tiny-shoes/sewing")
    with pytest.raises(EnergyError, match="no month 13"):
        report_of(park_db, "firm:tiny-shoes", 2026, 13)


def test_text_a_spreadsheet_would_run_is_kept_as_text(shoes: MonthlyReport) -> None:
    formula = '=HYPERLINK("http://example.invalid","x")'
    header = shoes.header.model_copy(update={"name": formula, "code": "-1+1"})
    report = shoes.model_copy(update={"header": header})
    rows = csv_rows(report)
    assert ["企业名称 Firm name", "'" + formula] in rows
    assert ["企业代码 Firm code", "'-1+1"] in rows
    sheet = xlsx_sheet(report)
    cell = sheet["B4"]
    assert sheet["A4"].value == "企业名称 Firm name"
    assert (cell.value, cell.data_type) == (formula, "s")
