"""Business data in: CSV files and JSON items checked row by row and column by column, then
stored in zayton.firm_months all or nothing, without erasing what a file leaves out."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from api.business import (
    CURRENT,
    LISTED_PROBLEMS,
    BusinessDataError,
    PriceBasis,
    Record,
    import_file,
    import_text,
    parse_csv,
    parse_items,
    read_months,
    store,
)
from simulators.truth import BUSINESS_FIELDS

TODAY = date(2026, 6, 15)
COLUMNS = [
    "month",
    "firm",
    "output_value_10k_yuan",
    "value_added_10k_yuan",
    "price_basis",
    "tax_10k_yuan",
    "land_area_m2",
    "headcount",
]
GOOD = "\n".join(
    [
        ",".join(COLUMNS),
        "2024-04,hx,1250.5,312.25,comparable:2020,48.1,53333.33,420",
        '2024-05-01,hx,"1,300.00",330,,50,53333.33,425',
        "2024-05,jm,880,200.4,current,30.245,20000,160",
        "",
    ]
)
GOOD_RECORDS = [
    Record(
        "hx",
        date(2024, 4, 1),
        Decimal("1250.50"),
        Decimal("312.25"),
        PriceBasis(2020),
        Decimal("48.10"),
        Decimal("53333.33"),
        420,
    ),
    Record(
        "hx",
        date(2024, 5, 1),
        Decimal("1300.00"),
        Decimal("330.00"),
        CURRENT,
        Decimal("50.00"),
        Decimal("53333.33"),
        425,
    ),
    Record(
        "jm",
        date(2024, 5, 1),
        Decimal("880.00"),
        Decimal("200.40"),
        CURRENT,
        Decimal("30.25"),
        Decimal("20000.00"),
        160,
    ),
]
BASE_ROW = {
    "month": "2024-05",
    "firm": "hx",
    "output_value_10k_yuan": "100",
    "value_added_10k_yuan": "25",
    "price_basis": "",
    "tax_10k_yuan": "4",
    "land_area_m2": "20000",
    "headcount": "50",
}
StoredRow = tuple[object, ...]


def csv_text(*rows: dict[str, str], columns: list[str] | None = None) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns or COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def add_firms(dsn: str, *codes: str) -> None:
    with psycopg.connect(dsn) as conn:
        for code in codes:
            conn.execute("INSERT INTO zayton.firms (code) VALUES (%s)", [code])


def stored(dsn: str) -> list[StoredRow]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            """SELECT f.code, m.month, m.output_value, m.value_added, m.price_basis, m.tax,
                      m.land_area_m2, m.headcount, m.updated_at
               FROM zayton.firm_months m JOIN zayton.firms f ON f.id = m.firm_id
               ORDER BY f.code, m.month"""
        ).fetchall()


def problems_of(text: str) -> list[str]:
    with pytest.raises(BusinessDataError) as caught:
        parse_csv(text, today=TODAY)
    return [str(p) for p in caught.value.problems]


@pytest.mark.unit
def test_a_good_file_parses_to_rounded_values_with_their_price_basis() -> None:
    assert parse_csv(GOOD, today=TODAY) == GOOD_RECORDS
    assert [r.source.describe() for r in parse_csv(GOOD, today=TODAY) if r.source] == [
        "row 2",
        "row 3",
        "row 4",
    ]


@pytest.mark.integration
def test_a_good_file_round_trips_through_the_database(migrated_database: str) -> None:
    dsn = migrated_database
    add_firms(dsn, "hx", "jm", "other")
    assert import_text(dsn, GOOD) == 3
    assert [row[:8] for row in stored(dsn)] == [
        ("hx", date(2024, 4, 1), Decimal("1250.50"), Decimal("312.25"), "comparable:2020",
         Decimal("48.10"), Decimal("53333.33"), 420),
        ("hx", date(2024, 5, 1), Decimal("1300.00"), Decimal("330.00"), "current",
         Decimal("50.00"), Decimal("53333.33"), 425),
        ("jm", date(2024, 5, 1), Decimal("880.00"), Decimal("200.40"), "current",
         Decimal("30.25"), Decimal("20000.00"), 160),
    ]  # fmt: skip
    with psycopg.connect(dsn) as conn:
        assert read_months(conn, None, date(2024, 1, 1), date(2024, 12, 1)) == GOOD_RECORDS
        # The month of `first` counts whatever its day; other firms and months are left out.
        assert read_months(conn, ["jm", "other"], date(2024, 5, 20), date(2024, 5, 1)) == [
            GOOD_RECORDS[2]
        ]
        assert read_months(conn, ["hx"], date(2024, 3, 1), date(2024, 4, 30)) == GOOD_RECORDS[:1]
        assert read_months(conn, [], date(2024, 1, 1), date(2024, 12, 1)) == []


@pytest.mark.integration
def test_the_simulators_business_csv_imports_as_is(migrated_database: str, tmp_path: Path) -> None:
    dsn = migrated_database
    add_firms(dsn, "xtep", "torch")
    path = tmp_path / "business.csv"
    with path.open("w", newline="") as handle:  # as simulators.truth.Truth writes it
        writer = csv.writer(handle)
        writer.writerow(BUSINESS_FIELDS)
        writer.writerow(
            ("2024-03", "xtep", "textile", "31.0000", "86400.0", "pair",
             "1036.8000", "248.8320", "31.1040", 120, 650)
        )  # fmt: skip
        writer.writerow(
            ("2024-03", "torch", "electronics", "12.5000", "1200.0", "k_pcs",
             "42.4567", "12.7370", "2.1228", 37.5, 210)
        )  # fmt: skip
    assert import_file(dsn, path) == 2
    assert [row[:8] for row in stored(dsn)] == [
        ("torch", date(2024, 3, 1), Decimal("42.46"), Decimal("12.74"), "current",
         Decimal("2.12"), Decimal("25000.00"), 210),
        ("xtep", date(2024, 3, 1), Decimal("1036.80"), Decimal("248.83"), "current",
         Decimal("31.10"), Decimal("80000.00"), 650),
    ]  # fmt: skip


@pytest.mark.unit
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"month": "2024-13"},
            "row 3, column month: '2024-13' is not a month: YYYY-MM or YYYY-MM-01",
        ),
        ({"month": "24-05"}, "row 3, column month: '24-05' is not a month: YYYY-MM or YYYY-MM-01"),
        (
            {"month": "2024-05-15"},
            "row 3, column month: '2024-05-15': a month is written YYYY-MM or as its first day, "
            "YYYY-MM-01",
        ),
        ({"month": "2026-07"}, "row 3, column month: 2026-07 is after the current month, 2026-06"),
        ({"month": " "}, "row 3, column month: is required (YYYY-MM)"),
        ({"firm": ""}, "row 3, column firm: is required (the firm's code)"),
        (
            {"output_value_10k_yuan": "abc"},
            "row 3, column output_value_10k_yuan: 'abc' is not a plain decimal number "
            "(1234.5 or 1,234.5)",
        ),
        (
            {"output_value_10k_yuan": "1e5"},
            "row 3, column output_value_10k_yuan: '1e5' is not a plain decimal number "
            "(1234.5 or 1,234.5)",
        ),
        (
            {"output_value_10k_yuan": "1,5"},
            "row 3, column output_value_10k_yuan: '1,5' is not a plain decimal number "
            "(1234.5 or 1,234.5)",
        ),
        (
            {"output_value_10k_yuan": "NaN"},
            "row 3, column output_value_10k_yuan: 'NaN' is not a finite number",
        ),
        ({"tax_10k_yuan": "-inf"}, "row 3, column tax_10k_yuan: '-inf' is not a finite number"),
        (
            {"output_value_10k_yuan": "-1", "value_added_10k_yuan": ""},
            "row 3, column output_value_10k_yuan: must be 0 or more, not -1",
        ),
        ({"tax_10k_yuan": "-0.5"}, "row 3, column tax_10k_yuan: must be 0 or more, not -0.5"),
        ({"land_area_m2": "0"}, "row 3, column land_area_m2: must be more than 0, not 0"),
        ({"land_area_m2": "0.004"}, "row 3, column land_area_m2: must be more than 0, not 0.004"),
        (
            {"land_area_m2": "1000000000000"},
            "row 3, column land_area_m2: 1000000000000 is too large",
        ),
        (
            {"headcount": "12.5"},
            "row 3, column headcount: must be a whole number of people, not 12.5",
        ),
        ({"headcount": "-3"}, "row 3, column headcount: must be 0 or more, not -3"),
        (
            {"value_added_10k_yuan": "100.5"},
            "row 3, column value_added_10k_yuan: 100.50 is more than the output value 100.00",
        ),
        (
            {"price_basis": "constant"},
            "row 3, column price_basis: 'constant' is not a price basis: "
            "current or comparable:<year>",
        ),
        (
            {"price_basis": "comparable:2025"},
            "row 3, column price_basis: base year 2025 is after the month",
        ),
        (
            {"value_added_10k_yuan": "", "price_basis": "current"},
            "row 3, column price_basis: is the basis of value_added_10k_yuan, which is not given",
        ),
        (
            dict.fromkeys(COLUMNS[2:], ""),
            "row 3: no data: give at least one of output_value_10k_yuan, value_added_10k_yuan, "
            "tax_10k_yuan, land_area_m2, land_mu, headcount",
        ),
    ],
)
def test_a_bad_value_is_reported_with_its_row_and_column(
    change: dict[str, str], expected: str
) -> None:
    text = csv_text({**BASE_ROW, "month": "2024-04"}, {**BASE_ROW, **change})
    assert problems_of(text) == [expected]


@pytest.mark.unit
def test_a_row_with_too_many_values_says_how_to_quote() -> None:
    text = GOOD + "2024-06,hx,1,300.00,330,,50,53333.33,425\n"
    assert problems_of(text) == [
        "row 5: 9 values for 8 columns (a number with a thousands separator must be in quotes)"
    ]
    assert problems_of(GOOD + "2024-06,hx,1\n") == ["row 5: 3 values for 8 columns"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("firm,headcount", "row 1, column month: column is required"),
        (
            "month,firm,headcount,colour",
            "row 1, column colour: unknown column; accepted: month, firm, output_value_10k_yuan,"
            " value_added_10k_yuan, price_basis, tax_10k_yuan, land_area_m2, land_mu, headcount,"
            " sector, days_covered, production_units, unit",
        ),
        (
            "month,firm,land_area_m2,land_mu",
            "row 1, column land_mu: give land_area_m2 or land_mu, not both",
        ),
        ("month,firm,headcount,headcount", "row 1, column headcount: column given twice"),
        (
            "2024-05,hx,100",
            "row 1: a header is required, naming the columns: month, firm, "
            "output_value_10k_yuan, value_added_10k_yuan, price_basis, tax_10k_yuan, "
            "land_area_m2, land_mu, headcount, sector, days_covered, production_units, unit",
        ),
    ],
)
def test_a_bad_header_is_reported_and_no_row_is_read(header: str, expected: str) -> None:
    assert problems_of(header + "\n2024-05,hx,1,2\n") == [expected]


@pytest.mark.unit
def test_rows_are_the_lines_of_the_file_and_blank_lines_are_skipped() -> None:
    header = ",".join(BUSINESS_FIELDS)
    text = (
        f"{header}\r\n"
        '2024-04,hx,"textile,\r\nshoes",30,1,pair,-1,,,120,300\r\n'  # a cell over two lines
        "\r\n"
        ",,,,,,,,,,\r\n"  # an empty row as spreadsheets write it
        "2024-05,hx,textile,31,1,pair,10,,,120,x\r\n"
    )
    assert problems_of(text) == [
        "row 2, column output_value_10k_yuan: must be 0 or more, not -1",
        "row 6, column headcount: 'x' is not a plain decimal number (1234.5 or 1,234.5)",
    ]


@pytest.mark.unit
def test_an_empty_file_has_no_header() -> None:
    assert problems_of("")[0].startswith("row 1: a header is required")


@pytest.mark.unit
def test_every_problem_is_found_and_the_message_lists_fifty() -> None:
    rows = [{**BASE_ROW, "month": f"2024-{m:02d}", "tax_10k_yuan": "-1"} for m in range(1, 13)]
    rows += [{**BASE_ROW, "firm": f"f{n}", "headcount": "x"} for n in range(60)]
    rows[3]["land_area_m2"] = "0"
    with pytest.raises(BusinessDataError) as caught:
        parse_csv(csv_text(*rows), today=TODAY)
    problems = caught.value.problems
    assert len(problems) == 12 + 1 + 60
    assert problems[4].as_dict() == {
        "where": "row 5, column land_area_m2",
        "row": 5,
        "column": "land_area_m2",
        "message": "must be more than 0, not 0",
    }
    lines = str(caught.value).splitlines()
    assert lines[0] == "business data: 73 problems, nothing imported"
    assert lines[1] == "row 2, column tax_10k_yuan: must be 0 or more, not -1"
    assert len(lines) == 1 + LISTED_PROBLEMS + 1
    assert lines[-1] == "and 23 more"


@pytest.mark.unit
def test_the_same_firm_and_month_twice_names_both_rows() -> None:
    text = GOOD + "2024-04-01,hx,1,,,,,\n"
    assert problems_of(text) == ["row 5: firm hx, month 2024-04 is also in row 2"]


@pytest.mark.integration
def test_store_refuses_the_same_firm_and_month_twice(migrated_database: str) -> None:
    add_firms(migrated_database, "hx")
    record = Record("hx", date(2024, 4, 1), headcount=1)
    with psycopg.connect(migrated_database) as conn, pytest.raises(BusinessDataError) as caught:
        store(conn, [record, Record("hx", date(2024, 5, 1), tax=Decimal(1)), record])
    assert [str(p) for p in caught.value.problems] == [
        "records[2]: firm hx, month 2024-04 is also in records[0]"
    ]
    assert stored(migrated_database) == []


@pytest.mark.unit
def test_numbers_may_have_thousands_separators_in_groups_of_three() -> None:
    row = {**BASE_ROW, "output_value_10k_yuan": "1,234,567.891", "headcount": "1,200"}
    [record] = parse_csv(csv_text(row), today=TODAY)
    assert (record.output_value, record.headcount) == (Decimal("1234567.89"), 1200)
    row["output_value_10k_yuan"] = "1,2345"
    assert problems_of(csv_text(row)) == [
        "row 2, column output_value_10k_yuan: '1,2345' is not a plain decimal number "
        "(1234.5 or 1,234.5)"
    ]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("mu", "m2"),
    [("1", "666.67"), ("15", "10000.00"), ("120", "80000.00"), ("0.5", "333.33")],
)
def test_land_in_mu_is_stored_in_square_metres(mu: str, m2: str) -> None:
    columns = ["month", "firm", "land_mu"]
    text = csv_text({"month": "2024-05", "firm": "hx", "land_mu": mu}, columns=columns)
    [record] = parse_csv(text, today=TODAY)
    assert record.land_area_m2 == Decimal(m2)


@pytest.mark.unit
def test_land_in_mu_is_checked_in_its_own_column() -> None:
    columns = ["month", "firm", "land_mu"]
    text = csv_text({"month": "2024-05", "firm": "hx", "land_mu": "-2"}, columns=columns)
    assert problems_of(text) == ["row 2, column land_mu: must be more than 0, not -2"]


@pytest.mark.integration
def test_a_byte_order_mark_is_accepted_and_gbk_is_refused(
    migrated_database: str, tmp_path: Path
) -> None:
    dsn = migrated_database
    add_firms(dsn, "hx", "jm")
    assert parse_csv("\ufeff" + GOOD, today=TODAY) == GOOD_RECORDS
    path = tmp_path / "business.csv"
    path.write_bytes(GOOD.encode("utf-8-sig"))  # as Excel saves "CSV UTF-8"
    assert import_file(dsn, path) == 3
    assert len(stored(dsn)) == 3
    path.write_bytes((GOOD + "2024-06,hx,,,,,,30\n# 鸿星尔克\n").encode("gbk"))
    with pytest.raises(BusinessDataError) as caught:
        import_file(dsn, path)
    assert str(caught.value).splitlines() == [
        f"{path}: 1 problem, nothing imported",
        "row 6: not UTF-8 (byte 0xba); save the file as 'CSV UTF-8 (逗号分隔)' rather than "
        "'CSV (逗号分隔)', which is GBK",
    ]


@pytest.mark.integration
def test_a_file_with_one_bad_row_imports_nothing(migrated_database: str) -> None:
    dsn = migrated_database
    add_firms(dsn, "hx", "jm")
    import_text(dsn, GOOD)
    before = stored(dsn)
    changes = GOOD.replace("420", "999").replace("880", "1880") + "2024-06,hx,1,,,,,-5\n"
    with pytest.raises(BusinessDataError, match="row 5, column headcount: must be 0 or more"):
        import_text(dsn, changes)
    assert stored(dsn) == before


@pytest.mark.integration
def test_an_unknown_firm_is_reported_with_its_rows_and_nothing_is_stored(
    migrated_database: str,
) -> None:
    dsn = migrated_database
    add_firms(dsn, "hx")
    with pytest.raises(BusinessDataError) as caught:
        import_text(dsn, GOOD + "2024-06,jm,1,,,,,\n")
    assert [str(p) for p in caught.value.problems] == [
        "row 4, column firm: unknown firm 'jm': not in zayton.firms",
        "row 5, column firm: unknown firm 'jm': not in zayton.firms",
    ]
    assert stored(dsn) == []


@pytest.mark.integration
def test_a_file_of_some_columns_keeps_the_others(migrated_database: str) -> None:
    dsn = migrated_database
    add_firms(dsn, "hx", "jm")
    import_text(dsn, GOOD)
    before = stored(dsn)
    import_text(dsn, "month,firm,headcount\n2024-04,hx,430\n2024-06,hx,431\n")
    after = stored(dsn)
    assert after[0][:8] == (*before[0][:7], 430)
    assert isinstance(after[0][8], datetime)
    assert isinstance(before[0][8], datetime)
    assert after[0][8] > before[0][8]
    assert after[1] == before[1]
    assert after[2][:8] == ("hx", date(2024, 6, 1), None, None, None, None, None, 431)
    assert after[3] == before[2]
    # Value added and its basis go together: a value without a basis is at current prices.
    import_text(dsn, "month,firm,value_added_10k_yuan\n2024-04,hx,300\n")
    assert stored(dsn)[0][2:5] == (Decimal("1250.50"), Decimal("300.00"), "current")


@pytest.mark.integration
def test_value_added_is_checked_against_the_stored_output_value(migrated_database: str) -> None:
    dsn = migrated_database
    add_firms(dsn, "hx", "jm")
    import_text(dsn, GOOD)
    before = stored(dsn)
    with pytest.raises(BusinessDataError) as caught:
        import_text(
            dsn,
            "month,firm,value_added_10k_yuan,output_value_10k_yuan\n"
            "2024-04,hx,1300,\n2024-05,jm,,100\n2024-05,hx,,2000\n",
        )
    assert [str(p) for p in caught.value.problems] == [
        "row 2, column value_added_10k_yuan: value added 1300.00 would be more than the output "
        "value 1250.50 (with what is stored for the month)",
        "row 3, column output_value_10k_yuan: value added 200.40 would be more than the output "
        "value 100.00 (with what is stored for the month)",
    ]
    assert stored(dsn) == before


@pytest.mark.integration
def test_store_is_one_transaction_of_its_own(migrated_database: str) -> None:
    dsn = migrated_database
    add_firms(dsn, "hx", "jm")
    import_text(dsn, GOOD)
    before = stored(dsn)
    records = parse_csv(
        "month,firm,headcount,value_added_10k_yuan\n2024-05,jm,7,\n2024-04,hx,,9999\n"
    )
    with psycopg.connect(dsn, autocommit=True) as conn, pytest.raises(BusinessDataError):
        store(conn, records)  # no transaction of the caller's to roll back
    assert stored(dsn) == before


ITEMS: list[dict[str, object]] = [
    {"month": "2024-04", "firm": "hx", "output_value_10k_yuan": 1250.5,
     "value_added_10k_yuan": "312.25", "price_basis": "comparable:2020",
     "tax_10k_yuan": 48.1, "land_area_m2": 53333.33, "headcount": 420},
    {"month": "2024-05-01", "firm": "hx", "output_value_10k_yuan": "1,300.00",
     "value_added_10k_yuan": 330, "tax_10k_yuan": 50, "land_area_m2": "53333.33",
     "headcount": 425.0, "sector": "textile"},
    {"month": "2024-05", "firm": "jm", "output_value_10k_yuan": 880, "value_added_10k_yuan": 200.4,
     "price_basis": None, "tax_10k_yuan": 30.245, "land_mu": 30, "headcount": 160},
]  # fmt: skip


@pytest.mark.integration
def test_json_items_are_checked_as_csv_rows_are(migrated_database: str) -> None:
    records = parse_items(ITEMS, today=TODAY)
    assert records == GOOD_RECORDS
    add_firms(migrated_database, "hx", "jm")
    with psycopg.connect(migrated_database) as conn:
        assert store(conn, records) == 3
    assert [row[7] for row in stored(migrated_database)] == [420, 425, 160]


@pytest.mark.unit
def test_json_items_errors_name_the_item_and_field() -> None:
    items: list[object] = [
        {"month": "2024-04", "firm": "hx", "tax_10k_yuan": -1, "colour": "red"},
        {"month": 202405, "firm": "hx", "headcount": True, "land_area_m2": float("nan")},
        {"month": "2024-06", "firm": "hx", "output_value_10k_yuan": [1]},
        {"firm": "jm", "land_area_m2": 10, "land_mu": 1},
        {"month": "2024-04", "firm": "hx", "headcount": 3},
        "2024-07,hx,1",
    ]
    with pytest.raises(BusinessDataError) as caught:
        parse_items(items, today=TODAY)
    assert [str(p) for p in caught.value.problems] == [
        "items[0].colour: unknown field; accepted: month, firm, output_value_10k_yuan, "
        "value_added_10k_yuan, price_basis, tax_10k_yuan, land_area_m2, land_mu, headcount, "
        "sector, days_covered, production_units, unit",
        "items[0].tax_10k_yuan: must be 0 or more, not -1",
        "items[1].month: must be text, not a number",
        "items[1].land_area_m2: nan is not a finite number",
        "items[1].headcount: must be a number, not true/false",
        "items[2].output_value_10k_yuan: must be a number, not a list",
        "items[3].land_mu: give land_area_m2 or land_mu, not both",
        "items[3].month: is required (YYYY-MM)",
        "items[4]: firm hx, month 2024-04 is also in items[0]",
        "items[5]: must be an object, not text",
    ]
    assert caught.value.problems[1].as_dict() == {
        "where": "items[0].tax_10k_yuan",
        "row": 0,
        "column": "tax_10k_yuan",
        "message": "must be 0 or more, not -1",
    }
