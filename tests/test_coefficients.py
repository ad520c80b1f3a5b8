"""Coefficients as versioned data: the shipped table, lookups by day, basis and scope, bad files,
and the table in PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import psycopg
import pytest

from api.coefficients import (
    Basis,
    CoefficientError,
    Kind,
    load_database,
    load_file,
    load_into,
    seed_defaults,
)
from zayton.cli import main

DAY = date(2026, 6, 1)


def test_the_shipped_table_has_gb_t_2589_reference_values_with_their_sources() -> None:
    table = load_file()
    assert all(c.source.strip() for c in table.coefficients)
    expected = {  # GB/T 2589-2020 reference values, as ../shared/domain.md lists them
        ("electricity", Basis.EQUIVALENT): 0.1229,
        ("natural_gas", None): 1.2143,
        ("steam", None): 0.1286,
        ("heat", None): 0.03412,
        ("raw_coal", None): 0.7143,
        ("diesel", None): 1.4571,
        ("gasoline", None): 1.4714,
        ("water", None): 0.0857,
    }
    for (carrier, basis), value in expected.items():
        found = table.lookup(Kind.CONVERSION, carrier, DAY, basis=basis)
        assert found.value == value, carrier
        assert "GB/T 2589-2020" in found.source
        assert not found.placeholder


def test_conversion_follows_the_metered_unit() -> None:
    table = load_file()
    steam = table.lookup(Kind.CONVERSION, "steam", DAY)
    assert steam.apply(12.5, "t") == pytest.approx(12.5 * 1000 * 0.1286)  # kgce
    gas = table.lookup(Kind.CONVERSION, "natural_gas", DAY, basis=Basis.GENERATION)
    assert gas.apply(100.0, "m3") == pytest.approx(121.43)  # no basis of its own: ignored
    with pytest.raises(CoefficientError, match="metered in kWh, but its coefficient is per m3"):
        gas.apply(1.0, "kWh")
    water = table.lookup(Kind.CONVERSION, "water", DAY)
    assert water.apply(20.0, "m3") == pytest.approx(20.0 * 0.0857)  # 1 m³ of water is 1 t
    with pytest.raises(CoefficientError, match="per kg"):
        steam.apply(1.0, "m3")  # a cubic metre of steam is no tonne


def test_electricity_states_its_basis_and_the_generation_basis_is_a_placeholder() -> None:
    table = load_file()
    with pytest.raises(CoefficientError, match="electricity needs a basis"):
        table.lookup(Kind.CONVERSION, "electricity", DAY)
    generation = table.lookup(Kind.CONVERSION, "electricity", DAY, basis=Basis.GENERATION)
    assert generation.placeholder
    assert "province" in generation.note


def test_a_later_coefficient_takes_over_from_its_day() -> None:
    table = load_file()
    grid = [
        table.lookup(Kind.EMISSION, "electricity", day).value
        for day in (date(2022, 12, 31), date(2023, 1, 1))
    ]
    assert grid == [0.5810, 0.5703]
    with pytest.raises(CoefficientError, match="in force on 2019-12-31"):
        table.lookup(Kind.EMISSION, "electricity", date(2019, 12, 31))


OVERRIDES = """
[[conversion]]
carrier = "natural_gas"
value = 1.2143
unit = "kgce/m3"
valid_from = 2020-01-01
source = "GB/T 2589-2020"

[[conversion]]
carrier = "natural_gas"
region = "fujian"
value = 1.2300
unit = "kgce/m3"
valid_from = 2024-01-01
source = "provincial figure (test)"

[[conversion]]
carrier = "natural_gas"
firm = "xtep"
value = 1.2500
unit = "kgce/m3"
valid_from = 2025-07-01
source = "measured heating value of the supply, 36,636 kJ/m3 (test)"
"""


def test_a_firm_beats_its_region_and_a_region_beats_the_nation(tmp_path: Path) -> None:
    path = tmp_path / "gas.toml"
    path.write_text(OVERRIDES)
    table = load_file(path)

    def gas(on: date, region: str | None = None, firm: str | None = None) -> float:
        return table.lookup(Kind.CONVERSION, "natural_gas", on, region=region, firm=firm).value

    assert gas(DAY) == 1.2143
    assert gas(DAY, region="fujian") == 1.2300
    assert gas(DAY, region="zhejiang") == 1.2143
    assert gas(DAY, region="fujian", firm="xtep") == 1.2500
    assert gas(date(2025, 6, 30), region="fujian", firm="xtep") == 1.2300  # before its own
    assert gas(date(2023, 6, 30), region="fujian", firm="xtep") == 1.2143


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda t: t.replace('source = "GB/T 2589-2020"\n', "", 1), r"conversion\[0\]: source"),
        (lambda t: t.replace("value = 1.2143", 'value = "1.2"', 1), "value must be a number"),
        (lambda t: t.replace("value = 1.2143", "value = -1", 1), "value must be a number"),
        (lambda t: t.replace('unit = "kgce/m3"', 'unit = "m3"', 1), "unit must be kgce/"),
        (lambda t: t.replace("valid_from = 2020-01-01", 'valid_from = "2020"', 1), "a date"),
        (
            lambda t: t.replace(
                'carrier = "natural_gas"', 'carrier = "natural_gas"\nbasis = "x"', 1
            ),
            "basis must be one of",
        ),
        (
            lambda t: t.replace(
                'carrier = "natural_gas"', 'carrier = "natural_gas"\ncolour = 1', 1
            ),
            "unknown field",
        ),
        (
            lambda t: t + t.split("\n\n")[1].replace("[[conversion]]", "\n[[conversion]]"),
            "two coefficients",
        ),
        (lambda t: t + "\n[[factors]]\n", "unknown section"),
        (lambda t: t + "\n[[conversion]\n", "gas.toml"),
    ],
)
def test_bad_tables_are_refused_with_where_and_why(
    tmp_path: Path, edit: Callable[[str], str], problem: str
) -> None:
    path = tmp_path / "gas.toml"
    path.write_text(edit(OVERRIDES))
    with pytest.raises(CoefficientError, match=problem):
        load_file(path)


@pytest.mark.integration
def test_the_table_in_postgresql(migrated_database: str, tmp_path: Path) -> None:
    dsn = migrated_database
    shipped = load_file()
    assert seed_defaults(dsn) == len(shipped.coefficients)
    assert seed_defaults(dsn) == 0  # only into an empty table
    path = tmp_path / "gas.toml"
    path.write_text(OVERRIDES)
    assert main(["db", "coefficients", "--database-url", dsn, str(path)]) == 0
    with psycopg.connect(dsn) as conn:
        table = load_database(conn)
    # The national gas entry was updated in place, the region and firm entries added.
    assert len(table.coefficients) == len(shipped.coefficients) + 2
    found = table.lookup(Kind.CONVERSION, "natural_gas", DAY, region="fujian", firm="xtep")
    assert (found.value, found.firm) == (1.25, "xtep")
    assert table.lookup(Kind.EMISSION, "electricity", DAY) == shipped.lookup(
        Kind.EMISSION, "electricity", DAY
    )
    # A bad file changes nothing.
    path.write_text(OVERRIDES.replace("value = 1.2500", "value = 9.9") + "\n[[oops]]\n")
    with pytest.raises(CoefficientError):
        load_into(dsn, path)
    with psycopg.connect(dsn) as conn:
        assert load_database(conn).coefficients == table.coefficients
