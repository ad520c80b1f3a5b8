"""The monthly energy report a firm files (能源消费月报) and the summary of a park or the district,
as data and as CSV or XLSX.

A firm's report has a header (firm, park, period, basis, data completeness), one row per carrier
and a total row, then the month's indicators, the coefficients used with their sources and the
notes. A park's or the district's report adds one row per firm, with the totals, before its rows
per carrier. Every figure comes from ``api/energy.py`` (``account``) and ``api/kpi.py``
(``kpis``); ``firm_ids`` limits what can be seen and is passed to each of them, so a firm outside
it is absent from a park and not found on its own.

Carrier rows and the total row follow the convention of the statistical forms: each row is in its
own unit (计量单位; the total in tce), so the month, same month last year and year-to-date
columns hold physical quantities of that unit. A comparison is blank when nothing was metered in
the earlier period, and so is its change. Electricity is the grid's imports less exports; the
firm's own PV generation is a row of its own.

Exports, CSV and XLSX, have the same rows and columns (the CSV is UTF-8 with a BOM, so that Excel
opens it as such):

1. the title;
2. the header block: ``label, value`` rows (code, name, park, period, basis, completeness);
3. for a park or the district, the firms table (``FIRM_COLUMNS``), its last row ``合计 Total``;
4. the carriers table (``CARRIER_COLUMNS``), the last row ``total`` (综合能源消费量, tce);
5. the indicators (``INDICATOR_COLUMNS``: label, value, unit);
6. the coefficients used (``COEFFICIENT_COLUMNS``) with their sources;
7. the notes (``备注 Notes``), one a row: ``1. text``.

Blank rows separate the parts. Each table starts with a header row whose cells are bilingual,
Chinese then English, with the unit: ``本月折标量(吨标准煤) This month (tce)``. A carrier's name is
the first column, its key (``electricity``, ``natural_gas``, ``total``…) the last; a firm's name
the first, its code the second. Exports show every share, change and completeness in percent
(12.5 is 12.5 %; in the model, fields ending in ``_pct`` are percent, ``completeness`` and
``clean_share`` fractions as in ``api/kpi.py``). The CSV writes numbers to the decimals the XLSX
shows: tce 3, kWh 0, other quantities, money and percentages 2, intensities 4, coefficients as
stored; the XLSX keeps full precision behind those formats. Text a spreadsheet would take for a
formula (``=``, ``+``, ``-``, ``@``) is quoted with ``'`` in the CSV and stored as text in the XLSX.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import MAXYEAR, MINYEAR, date, datetime
from typing import Any, Literal

import psycopg
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from pydantic import BaseModel

from api.coefficients import Basis, Table
from api.energy import (
    CarrierUse,
    CoefficientUsed,
    EnergyError,
    EnergyUse,
    Entity,
    Period,
    account,
    firms_of,
    load_hierarchy,
)
from api.kpi import Kpis, Scope, kpis

CARRIERS = {
    "electricity": "电力(电网净购入) Electricity (grid, net)",
    "pv": "光伏发电(自有) PV generation (own)",
    "natural_gas": "天然气 Natural gas",
    "steam": "蒸汽(外购) Steam (purchased)",
    "heat": "热力 Heat",
    "raw_coal": "原煤 Raw coal",
    "diesel": "柴油 Diesel",
    "gasoline": "汽油 Gasoline",
    "water": "新水(耗能工质) New water (working medium)",
}
"""Carriers in the order of the report, with their names."""
TOTAL = "total"
BASES = {
    Basis.EQUIVALENT: "当量值 calorific equivalent",
    Basis.GENERATION: "等价值 generation-based",
}

CARRIER_COLUMNS = (
    "能源名称 Energy",
    "计量单位 Unit",
    "本月 This month",
    "上年同月 Same month last year",
    "同比(%) Change (%)",
    "本年累计 Year to date",
    "上年同期累计 Last year to date",
    "累计同比(%) Change to date (%)",
    "折标系数 Coefficient",
    "系数单位 Coefficient unit",
    "本月折标量(吨标准煤) This month (tce)",
    "本年累计折标量(吨标准煤) Year to date (tce)",
    "占比(%) Share of total (%)",
    "计入综合能耗 In total",
    "代码 Code",
)
FIRM_COLUMNS = (
    "企业名称 Firm name",
    "企业代码 Firm code",
    "园区 Park",
    "综合能源消费量(吨标准煤) Total energy (tce)",
    "电力(千瓦时) Electricity (kWh)",
    "天然气(立方米) Natural gas (m³)",
    "工业总产值(万元) Output value (10k yuan)",
    "工业增加值(万元) Value added (10k yuan)",
    "万元产值能耗(吨标准煤/万元) Energy per output (tce/10k yuan)",
    "万元增加值能耗(吨标准煤/万元) Energy per value added (tce/10k yuan)",
    "数据完整率(%) Data completeness (%)",
)
INDICATOR_COLUMNS = ("指标 Indicator", "数值 Value", "单位 Unit")
COEFFICIENT_COLUMNS = (
    "能源 Carrier",
    "类别 Kind",
    "系数 Value",
    "单位 Unit",
    "起用日期 Valid from",
    "占位值 Placeholder",
    "来源 Source",
)
NOTES = "备注 Notes"
FIRM_TOTAL = "合计 Total"


class ReportHeader(BaseModel):
    entity: str
    kind: Literal["firm", "park", "district"]
    code: str | None
    """The firm's or park's code; None for the district."""
    name: str
    park_code: str | None
    park_name: str | None
    year: int
    month: int
    start: datetime
    end: datetime
    basis: Basis
    completeness: float | None
    """Readings received ÷ expected over the meters the figures came from."""
    meters: list[str]
    coefficients: list[CoefficientUsed]
    """Those the month was converted with, each with its source."""


class CarrierRow(BaseModel):
    """One carrier, or the total (``carrier`` ``total``, in tce), in the row's ``unit``."""

    carrier: str
    name: str
    unit: str
    quantity: float
    last_year: float | None
    """The same month a year earlier; None when nothing was metered then."""
    change_pct: float | None
    ytd: float
    """1 January to the end of the month."""
    ytd_last_year: float | None
    ytd_change_pct: float | None
    coefficient: float | None
    """kgce per ``coefficient_unit``'s unit, in force in the month (the latest if it changed)."""
    coefficient_unit: str | None
    tce: float
    ytd_tce: float
    share_pct: float | None
    """Of 综合能源消费量; None for what is not in it (new water)."""
    in_total: bool


class FirmRow(BaseModel):
    code: str
    name: str
    park: str | None
    total_tce: float
    electricity_kwh: float
    natural_gas_m3: float
    output_value: float | None
    value_added: float | None
    tce_per_10k_output: float | None
    tce_per_10k_value_added: float | None
    completeness: float | None


class MonthlyReport(BaseModel):
    header: ReportHeader
    firms: list[FirmRow]
    """A park's or the district's firms; empty for a firm."""
    carriers: list[CarrierRow]
    total: CarrierRow
    """综合能源消费量 (tce), with its comparisons."""
    electricity_kwh: float
    """Electricity used: the grid's net imports plus own PV."""
    natural_gas_m3: float
    clean_share: float | None
    co2_t: float
    output_value: float | None
    """万元, the month's."""
    value_added: float | None
    price_basis: str | None
    """``current``, ``comparable:<year>`` or ``mixed``."""
    tce_per_10k_output: float | None
    tce_per_10k_value_added: float | None
    production: float
    """Units the production counters counted."""
    kgce_per_unit: float | None
    notes: list[str]


# --- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Names:
    code: str
    name: str
    park_code: str | None
    park_name: str | None
    district: str | None


async def _names(
    conn: psycopg.AsyncConnection[Any], ids: Sequence[int], firm_ids: Sequence[int] | None
) -> dict[int, _Names]:
    cursor = await conn.execute(
        """SELECT f.id, f.code, coalesce(f.name, f.code), p.code, p.name, p.district
           FROM zayton.firms f LEFT JOIN zayton.parks p ON p.id = f.park_id
           WHERE f.id = ANY (%(ids)s)
             AND (%(scope)s::int[] IS NULL OR f.id = ANY (%(scope)s::int[]))""",
        {"ids": list(ids), "scope": None if firm_ids is None else list(firm_ids)},
    )
    return {int(r[0]): _Names(*r[1:]) for r in await cursor.fetchall()}


async def monthly_report(
    conn: psycopg.AsyncConnection[Any],
    entity: Entity,
    year: int,
    month: int,
    table: Table,
    *,
    basis: Basis = Basis.EQUIVALENT,
    firm_ids: Sequence[int] | None = None,
) -> MonthlyReport:
    """The report of a firm, a park or the district for one local month; ``firm_ids`` limits
    what can be seen (None: all)."""
    if entity.kind not in ("firm", "park", "district"):
        raise EnergyError(f"a monthly report is of a firm, a park or the district, not {entity}")
    if not 1 <= month <= 12:
        raise EnergyError(f"there is no month {month}")
    if not MINYEAR < year < MAXYEAR:
        raise EnergyError(f"year {year} has no year before or after it")
    scope = Scope(firm_ids)
    period = Period.month(year, month)
    main = await kpis(conn, entity, period, table, basis=basis, scope=scope)
    hierarchy = await load_hierarchy(conn, firm_ids)
    firms = firms_of(hierarchy, entity)
    names = await _names(conn, [f.id for f in firms], firm_ids)
    last_month = Period.month(year - 1, month)
    earlier = [
        await account(conn, entity, p, table, basis=basis, firm_ids=firm_ids, hierarchy=hierarchy)
        for p in (
            last_month,
            Period(Period.year(year).start, period.end),
            Period(Period.year(year - 1).start, last_month.end),
        )
    ]
    label = f"{year}-{month:02d}"
    notes = [*main.energy.notes, *_business_notes(main, label)]
    rows = []
    if entity.kind != "firm":
        for firm in firms:
            one = await kpis(
                conn, Entity("firm", firm.code), period, table, basis=basis, scope=scope
            )
            rows.append(_firm_row(names[firm.id], one))
            notes += [f"{firm.code}: {n}" for n in _business_notes(one, label)]
    energy = main.energy
    carriers, total, carrier_notes = _carrier_rows(energy, *earlier)
    notes += carrier_notes
    notes += [
        f"{c.carrier} {c.value} {c.unit} ({c.basis or c.kind}) is a placeholder, "
        f"not an official figure: {c.source}"
        for c in energy.coefficients
        if c.placeholder
    ]
    money = main.business
    return MonthlyReport(
        header=_header(entity, names, period, basis, main),
        firms=rows,
        carriers=carriers,
        total=total,
        electricity_kwh=energy.electricity_kwh,
        natural_gas_m3=_quantity(energy, "natural_gas"),
        clean_share=energy.clean_share,
        co2_t=energy.co2_t,
        output_value=money.output_value if money else None,
        value_added=money.value_added if money else None,
        price_basis=money.price_basis if money else None,
        tce_per_10k_output=main.tce_per_10k_output,
        tce_per_10k_value_added=main.tce_per_10k_value_added,
        production=energy.production,
        kgce_per_unit=main.kgce_per_unit,
        notes=list(dict.fromkeys(notes)),
    )


def _header(
    entity: Entity,
    names: dict[int, _Names],
    period: Period,
    basis: Basis,
    main: Kpis,
) -> ReportHeader:
    found = list(names.values())
    code: str | None = entity.code
    park_code = park_name = None
    if entity.kind == "firm":
        name, park_code, park_name = found[0].name, found[0].park_code, found[0].park_name
    elif entity.kind == "park":
        park_code, park_name = entity.code, found[0].park_name
        name = park_name or entity.code
    else:
        code = None
        name = ", ".join(sorted({n.district for n in found if n.district})) or "district"
    return ReportHeader(
        entity=str(entity),
        kind=entity.kind,  # firm, park or district: checked by monthly_report
        code=code,
        name=name,
        park_code=park_code,
        park_name=park_name,
        year=period.first_day.year,
        month=period.first_day.month,
        start=period.start,
        end=period.end,
        basis=basis,
        completeness=main.completeness,
        meters=main.energy.meters,
        coefficients=main.energy.coefficients,
    )


def _business_notes(result: Kpis, month: str) -> list[str]:
    """What the business data lack; with none at all, that replaces the indicators' count of the
    firm-months reported."""
    money = result.business
    if money is None or not money.reported:
        return [f"no business data for {month}: output value, value added and intensities blank"]
    missing = [
        what
        for what, value in (
            ("output value", money.output_value),
            ("value added", money.value_added),
        )
        if value is None
    ]
    if missing:
        return [*result.notes, f"{' and '.join(missing)} not reported for {month}: blank"]
    return result.notes


def _quantity(use: EnergyUse, carrier: str) -> float:
    return sum(c.quantity for c in use.carriers if c.carrier == carrier)


def _change(now: float, before: float | None) -> float | None:
    return None if not before else (now / before - 1) * 100


def _order(carrier: str) -> tuple[int, str]:
    order = list(CARRIERS)
    return (order.index(carrier) if carrier in order else len(order), carrier)


def _carrier_rows(
    month: EnergyUse, last: EnergyUse, ytd: EnergyUse, ytd_last: EnergyUse
) -> tuple[list[CarrierRow], CarrierRow, list[str]]:
    """Rows for every carrier metered in any of the four periods, the total row, and notes."""
    uses = [{c.carrier: c for c in u.carriers} for u in (month, last, ytd, ytd_last)]
    now, before, to_date, before_to_date = uses
    rows, notes, unmetered = [], [], []
    for carrier in sorted(set().union(*uses), key=_order):
        first = next(u[carrier] for u in uses if carrier in u)
        quantity = now[carrier].quantity if carrier in now else 0.0
        ytd_quantity = to_date[carrier].quantity if carrier in to_date else 0.0
        previous = _earlier(before, carrier)
        previous_to_date = _earlier(before_to_date, carrier)
        coefficients = _conversions(month, carrier) or _conversions(ytd, carrier)
        if len({k.value for k in coefficients}) > 1:
            notes.append(
                f"the {carrier} coefficient changed in the month: each part converted with its own"
            )
        if carrier not in now:
            unmetered.append(carrier)
        tce = now[carrier].tce if carrier in now else 0.0
        rows.append(
            CarrierRow(
                carrier=carrier,
                name=CARRIERS.get(carrier, carrier),
                unit=first.unit,
                quantity=quantity,
                last_year=previous,
                change_pct=_change(quantity, previous),
                ytd=ytd_quantity,
                ytd_last_year=previous_to_date,
                ytd_change_pct=_change(ytd_quantity, previous_to_date),
                coefficient=coefficients[-1].value if coefficients else None,
                coefficient_unit=coefficients[-1].unit if coefficients else None,
                tce=tce,
                ytd_tce=to_date[carrier].tce if carrier in to_date else 0.0,
                share_pct=tce / month.total_tce * 100
                if first.in_total and month.total_tce > 0
                else None,
                in_total=first.in_total,
            )
        )
    if unmetered:
        notes.append(f"nothing metered in the month for {', '.join(unmetered)}")
    last_tce = last.total_tce if last.carriers else None
    ytd_last_tce = ytd_last.total_tce if ytd_last.carriers else None
    total = CarrierRow(
        carrier=TOTAL,
        name="综合能源消费量 Total energy consumption",
        unit="tce",
        quantity=month.total_tce,
        last_year=last_tce,
        change_pct=_change(month.total_tce, last_tce),
        ytd=ytd.total_tce,
        ytd_last_year=ytd_last_tce,
        ytd_change_pct=_change(ytd.total_tce, ytd_last_tce),
        coefficient=None,
        coefficient_unit=None,
        tce=month.total_tce,
        ytd_tce=ytd.total_tce,
        share_pct=100.0 if month.total_tce > 0 else None,
        in_total=True,
    )
    return rows, total, notes


def _conversions(use: EnergyUse, carrier: str) -> list[CoefficientUsed]:
    found = [k for k in use.coefficients if k.kind == "conversion" and k.carrier == carrier]
    return sorted(found, key=lambda k: k.valid_from)


def _earlier(uses: dict[str, CarrierUse], carrier: str) -> float | None:
    """An earlier period's quantity: None when nothing at all was metered then."""
    if not uses:
        return None
    return uses[carrier].quantity if carrier in uses else 0.0


def _firm_row(names: _Names, result: Kpis) -> FirmRow:
    money = result.business
    return FirmRow(
        code=names.code,
        name=names.name,
        park=names.park_code,
        total_tce=result.energy.total_tce,
        electricity_kwh=result.energy.electricity_kwh,
        natural_gas_m3=_quantity(result.energy, "natural_gas"),
        output_value=money.output_value if money else None,
        value_added=money.value_added if money else None,
        tce_per_10k_output=result.tce_per_10k_output,
        tce_per_10k_value_added=result.tce_per_10k_value_added,
        completeness=result.completeness,
    )


# --- layout shared by CSV and XLSX ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Num:
    """A number and the decimals it is shown with (None: as stored)."""

    value: float
    digits: int | None


Cell = str | Num | date | None
RowKind = Literal["title", "label", "head", "data", "total", "text", "blank"]

TCE, KWH, QUANTITY, MONEY, PERCENT, INTENSITY = 3, 0, 2, 2, 2, 4


def _num(value: float | None, digits: int | None) -> Num | None:
    return None if value is None else Num(value, digits)


def _pct(fraction: float | None) -> Num | None:
    return None if fraction is None else Num(fraction * 100, PERCENT)


def _unit_digits(unit: str) -> int:
    return {"kWh": KWH, "tce": TCE}.get(unit, QUANTITY)


def _yes(flag: bool) -> str:
    return "是 yes" if flag else "否 no"


def _price_basis(text: str | None) -> str | None:
    if text is None or text == "mixed":
        return None if text is None else "混合 mixed"
    if text == "current":
        return "现价 current prices"
    return f"{text.partition(':')[2]}年可比价 comparable prices of {text.partition(':')[2]}"


def _title(report: MonthlyReport) -> str:
    h = report.header
    kind = {
        "firm": "能源消费月报 Monthly energy report",
        "park": "园区能源消费月度汇总 Park monthly energy summary",
        "district": "全区能源消费月度汇总 District monthly energy summary",
    }[h.kind]
    return f"{kind} · {h.name} · {h.year}年{h.month}月"


def _header_rows(report: MonthlyReport) -> list[list[Cell]]:
    h = report.header
    days = Period(h.start, h.end)
    park = " ".join(p for p in (h.park_code, h.park_name) if p) or None
    rows: list[list[Cell]]
    if h.kind == "firm":
        rows = [
            ["企业代码 Firm code", h.code],
            ["企业名称 Firm name", h.name],
            ["所属园区 Park", park],
        ]
    elif h.kind == "park":
        rows = [["园区代码 Park code", h.code], ["园区名称 Park name", h.park_name]]
    else:
        rows = [["区县 District", h.name]]
    if h.kind != "firm":
        rows.append(["企业数 Firms", Num(len(report.firms), 0)])
    return [
        *rows,
        ["报告期 Period", f"{h.year}年{h.month}月 ({days.first_day} – {days.last_day})"],
        ["折标方法 Conversion basis", BASES[h.basis]],
        ["数据完整率(%) Data completeness (%)", _pct(h.completeness) or "无数据 no data"],
    ]


def _carrier_cells(row: CarrierRow) -> list[Cell]:
    digits = _unit_digits(row.unit)
    return [
        row.name,
        row.unit,
        Num(row.quantity, digits),
        _num(row.last_year, digits),
        _num(row.change_pct, PERCENT),
        Num(row.ytd, digits),
        _num(row.ytd_last_year, digits),
        _num(row.ytd_change_pct, PERCENT),
        _num(row.coefficient, None),
        row.coefficient_unit,
        Num(row.tce, TCE),
        Num(row.ytd_tce, TCE),
        _num(row.share_pct, PERCENT),
        None if row.carrier == TOTAL else _yes(row.in_total),
        row.carrier,
    ]


def _firm_cells(row: FirmRow) -> list[Cell]:
    return [
        row.name,
        row.code,
        row.park,
        Num(row.total_tce, TCE),
        Num(row.electricity_kwh, KWH),
        Num(row.natural_gas_m3, QUANTITY),
        _num(row.output_value, MONEY),
        _num(row.value_added, MONEY),
        _num(row.tce_per_10k_output, INTENSITY),
        _num(row.tce_per_10k_value_added, INTENSITY),
        _pct(row.completeness),
    ]


def _firms_total(report: MonthlyReport) -> FirmRow:
    h = report.header
    return FirmRow(
        code=h.code or "",
        name=FIRM_TOTAL,
        park=h.park_code,
        total_tce=report.total.tce,
        electricity_kwh=report.electricity_kwh,
        natural_gas_m3=report.natural_gas_m3,
        output_value=report.output_value,
        value_added=report.value_added,
        tce_per_10k_output=report.tce_per_10k_output,
        tce_per_10k_value_added=report.tce_per_10k_value_added,
        completeness=h.completeness,
    )


def _indicator_rows(report: MonthlyReport) -> list[list[Cell]]:
    r, h = report, report.header
    meters: Cell = ", ".join(h.meters) if h.kind == "firm" else Num(len(h.meters), 0)
    per_10k = "吨标准煤/万元 tce/10k yuan"
    return [
        ["综合能源消费量 Total energy consumption", Num(r.total.tce, TCE), "吨标准煤 tce"],
        ["电力消费量(含光伏) Electricity used (with PV)", Num(r.electricity_kwh, KWH), "kWh"],
        ["天然气 Natural gas", Num(r.natural_gas_m3, QUANTITY), "m³"],
        ["清洁能源占比 Clean-energy share", _pct(r.clean_share), "%"],
        ["二氧化碳排放 CO₂ emissions", Num(r.co2_t, TCE), "吨 t"],
        ["工业总产值 Output value", _num(r.output_value, MONEY), "万元 10k yuan"],
        ["工业增加值 Value added", _num(r.value_added, MONEY), "万元 10k yuan"],
        ["增加值价格基础 Price basis of value added", _price_basis(r.price_basis), None],
        ["万元产值能耗 Energy per output", _num(r.tce_per_10k_output, INTENSITY), per_10k],
        [
            "万元增加值能耗 Energy per value added",
            _num(r.tce_per_10k_value_added, INTENSITY),
            per_10k,
        ],
        ["产量 Production", Num(r.production, 0), "件 units"],
        ["单位产品能耗 Energy per unit", _num(r.kgce_per_unit, INTENSITY), "kgce/件 kgce/unit"],
        ["计量器具 Meters", meters, None],
    ]


def _coefficient_cells(c: CoefficientUsed) -> list[Cell]:
    kind = "折标 conversion" if c.kind == "conversion" else "排放 emission"
    name = CARRIERS.get(c.carrier, c.carrier) + (f" ({BASES[Basis(c.basis)]})" if c.basis else "")
    return [name, kind, Num(c.value, None), c.unit, c.valid_from, _yes(c.placeholder), c.source]


Row = tuple[RowKind, list[Cell]]


def layout(report: MonthlyReport) -> list[Row]:
    """The rows of both exports, each with its kind: ``label`` rows are label and value, ``text``
    rows end in text that may run on into the empty cells to its right."""
    blank: Row = ("blank", [])
    rows: list[Row] = [("title", [_title(report)]), blank]
    rows += [("label", cells) for cells in _header_rows(report)]
    if report.header.kind != "firm":
        rows += [blank, ("head", list(FIRM_COLUMNS))]
        rows += [("data", _firm_cells(f)) for f in report.firms]
        rows.append(("total", _firm_cells(_firms_total(report))))
    rows += [blank, ("head", list(CARRIER_COLUMNS))]
    rows += [("data", _carrier_cells(c)) for c in report.carriers]
    rows += [("total", _carrier_cells(report.total)), blank, ("head", list(INDICATOR_COLUMNS))]
    rows += [("label", cells) for cells in _indicator_rows(report)]
    rows += [blank, ("head", list(COEFFICIENT_COLUMNS))]
    coefficients = sorted(report.header.coefficients, key=lambda c: (_order(c.carrier), c.kind))
    rows += [("text", _coefficient_cells(c)) for c in coefficients]
    if report.notes:
        rows += [blank, ("head", [NOTES])]
        rows += [("text", [f"{n}. {note}"]) for n, note in enumerate(report.notes, 1)]
    return rows


def _safe(text: str) -> str:
    """Text a spreadsheet would take for a formula is quoted (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_cell(cell: Cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, Num):
        if cell.digits is None:
            return repr(cell.value)
        text = f"{cell.value:.{cell.digits}f}"
        return text[1:] if text.startswith("-") and not text.strip("-0.") else text
    if isinstance(cell, date):
        return cell.isoformat()
    return _safe(cell)


def to_csv(report: MonthlyReport) -> bytes:
    """The report as CSV: UTF-8 with a BOM, the rows of ``layout``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for _, cells in layout(report):
        writer.writerow([_csv_cell(c) for c in cells])
    return out.getvalue().encode("utf-8-sig")


def _format(digits: int | None) -> str:
    if digits is None:
        return "General"
    return "#,##0" + ("." + "0" * digits if digits else "")


def _width(cell: Cell) -> int:
    """Characters a cell shows (CJK count two)."""
    if isinstance(cell, Num):
        if cell.digits is None:
            return len(repr(cell.value))
        return len(f"{cell.value:,.{cell.digits}f}")
    text = "" if cell is None else str(cell)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


MAX_WIDTH, HEAD_WIDTH, MIN_WIDTH = 50, 16, 8
"""Column widths in characters: a table's header cells wrap at ``HEAD_WIDTH``."""
_BOLD = Font(bold=True)
_HEAD_FILL = PatternFill("solid", fgColor="DDEBF7")


def _measured(kind: RowKind, column: int, cell: Cell, cells: int) -> bool:
    """Whether a cell sets its column's width: not text that runs on to the right."""
    if kind in ("head", "data", "total"):
        return True
    if kind == "label":
        return column == 1 or isinstance(cell, Num)
    return kind == "text" and column < cells


def to_xlsx(report: MonthlyReport) -> bytes:
    """The report as one XLSX sheet: the rows of ``layout``, numbers with formats, the first
    table's header frozen."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None  # noqa: S101 - a new workbook has a sheet
    sheet.title = "能源消费月报" if report.header.kind == "firm" else "能源消费汇总"
    rows = layout(report)
    widths: dict[int, int] = {}
    frozen = None
    for number, (kind, cells) in enumerate(rows, 1):
        for column, cell in enumerate(cells, 1):
            target = sheet.cell(number, column)
            if isinstance(cell, Num):
                target.value = cell.value
                target.number_format = _format(cell.digits)
            elif isinstance(cell, date):
                target.value = cell
                target.number_format = "yyyy-mm-dd"
            elif cell is not None:
                target.value = cell
                target.data_type = "s"  # never a formula
            if kind in ("head", "total") or (kind == "label" and column == 1):
                target.font = _BOLD
            if kind == "head":
                target.fill = _HEAD_FILL
                target.alignment = Alignment(wrap_text=True, vertical="center")
            if _measured(kind, column, cell, len(cells)):
                wide = min(_width(cell), HEAD_WIDTH if kind == "head" else MAX_WIDTH)
                widths[column] = max(widths.get(column, MIN_WIDTH), wide)
        if kind == "head":
            lines = max(-(-_width(c) // HEAD_WIDTH) for c in cells)
            sheet.row_dimensions[number].height = 15 * lines
            frozen = frozen or f"B{number + 1}"
    title = sheet.cell(1, 1)
    title.font = Font(bold=True, size=14)
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(CARRIER_COLUMNS))
    for column, width in widths.items():
        sheet.column_dimensions[get_column_letter(column)].width = width + 2
    sheet.freeze_panes = frozen
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
