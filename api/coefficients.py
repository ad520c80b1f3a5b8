"""Coefficients as versioned data: conversion to standard coal and CO₂ emission factors.

Each coefficient names its carrier, its basis where the carrier has two (electricity: 当量值, the
calorific equivalent, or 等价值, generation-based), its unit, the day it applies from and its
source. A coefficient applies from ``valid_from`` until a later one of the same kind, carrier,
basis and scope; a firm's own coefficient (a measured gas heating value) wins over its region's,
and a region's over the national one. Zayton ships a default table (``api/data/coefficients.toml``)
and keeps the working table in ``zayton.coefficients``, where it can be edited.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from api.choices import choice

DEFAULTS = Path(__file__).parent / "data" / "coefficients.toml"

MJ_PER_KGCE = 29.3076
"""Standard coal equivalent: 7,000 kcal per kg (GB/T 2589-2020)."""

# What each metered quantity is in the unit a coefficient is per: a steam meter counts tonnes,
# GB/T 2589 gives steam per kilogram.
_SCALE = {("t", "kg"): 1000.0, ("kg", "t"): 0.001, ("GJ", "MJ"): 1000.0, ("MWh", "kWh"): 1000.0}
# Water meters count m³ and GB/T 2589 gives new water per tonne: 1 m³ of water is 1 t.
_CARRIER_SCALE = {("water", "m3", "t"): 1.0}


class Kind(StrEnum):
    CONVERSION = "conversion"
    """To standard coal: kgce per unit of the carrier."""
    EMISSION = "emission"
    """CO₂: kg per unit of the carrier."""


class Basis(StrEnum):
    """How electricity is converted to standard coal; every KPI in tce states which it used."""

    EQUIVALENT = "equivalent"
    """当量值: the energy the electricity itself carries (0.1229 kgce/kWh)."""
    GENERATION = "generation"
    """等价值: the coal burnt to generate it, by year and province."""


class CoefficientError(ValueError):
    """A table that cannot be used, or a coefficient that is not in it."""


@dataclass(frozen=True, slots=True)
class Coefficient:
    kind: Kind
    carrier: str
    value: float
    unit: str
    """``kgce/<unit>`` or ``kgCO2/<unit>``: per what it is."""
    valid_from: date
    source: str
    basis: Basis | None = None
    region: str | None = None
    firm: str | None = None
    """A firm's code: this coefficient applies to that firm only."""
    note: str = ""
    placeholder: bool = False
    """Not an official figure: KPIs that use it say so."""

    @property
    def per(self) -> str:
        return self.unit.split("/", 1)[1]

    def apply(self, quantity: float, unit: str) -> float:
        """``quantity`` of this carrier, metered in ``unit``, in kgce (or kg CO₂)."""
        if unit == self.per:
            return quantity * self.value
        scale = _SCALE.get((unit, self.per)) or _CARRIER_SCALE.get((self.carrier, unit, self.per))
        if scale is None:
            raise CoefficientError(
                f"{self.carrier} is metered in {unit}, but its coefficient is per {self.per}"
            )
        return quantity * scale * self.value

    @property
    def key(self) -> tuple[Kind, str, Basis | None, str | None, str | None, date]:
        return (self.kind, self.carrier, self.basis, self.region, self.firm, self.valid_from)


class Table:
    """A set of coefficients, looked up by carrier, day, basis and scope."""

    def __init__(self, coefficients: Iterable[Coefficient]) -> None:
        self.coefficients = sorted(coefficients, key=lambda c: c.valid_from)
        seen: set[object] = set()
        for coefficient in self.coefficients:
            if coefficient.key in seen:
                raise CoefficientError(f"two coefficients for {_describe(coefficient)}")
            seen.add(coefficient.key)

    def lookup(
        self,
        kind: Kind,
        carrier: str,
        on: date,
        *,
        basis: Basis | None = None,
        region: str | None = None,
        firm: str | None = None,
    ) -> Coefficient:
        """The coefficient in force on ``on``: the firm's own, else its region's, else the
        national one; of those, the one with the latest ``valid_from`` not after ``on``.

        ``basis`` is required for carriers that have coefficients per basis (electricity) and
        ignored for the others."""
        candidates = [
            c
            for c in self.coefficients
            if c.kind is kind and c.carrier == carrier and c.valid_from <= on
        ]
        if basis is None:
            if any(c.basis is not None for c in candidates):
                raise CoefficientError(f"{carrier} needs a basis: one of {', '.join(Basis)}")
        else:
            candidates = [c for c in candidates if c.basis in (basis, None)]
        if firm is not None and (found := [c for c in candidates if c.firm == firm]):
            return found[-1]
        for scope in ([region] if region is not None else []) + [None]:
            if found := [c for c in candidates if c.firm is None and c.region == scope]:
                return found[-1]
        raise CoefficientError(
            f"no {kind} coefficient for {carrier}"
            + (f" on the {basis} basis" if basis else "")
            + f" in force on {on.isoformat()}"
        )


def _describe(c: Coefficient) -> str:
    scope = f"firm {c.firm}" if c.firm else f"region {c.region}" if c.region else "national"
    basis = f", {c.basis} basis" if c.basis else ""
    return f"{c.kind} of {c.carrier}{basis}, {scope}, from {c.valid_from.isoformat()}"


def _entry(kind: Kind, raw: Mapping[str, Any], where: str) -> Coefficient:
    allowed = {
        "carrier", "basis", "value", "unit", "valid_from", "source", "region", "firm", "note",
        "placeholder",
    }  # fmt: skip
    unknown = set(raw) - allowed
    if unknown:
        raise CoefficientError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    for name in ("carrier", "value", "unit", "valid_from", "source"):
        if name not in raw:
            raise CoefficientError(f"{where}: {name} is required")
    value, valid_from = raw["value"], raw["valid_from"]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise CoefficientError(f"{where}: value must be a number >= 0, not {value!r}")
    if not isinstance(valid_from, date):
        raise CoefficientError(f"{where}: valid_from must be a date (2020-01-01)")
    unit = str(raw["unit"])
    prefix = "kgce/" if kind is Kind.CONVERSION else "kgCO2/"
    if not unit.startswith(prefix) or len(unit) == len(prefix):
        raise CoefficientError(f"{where}: unit must be {prefix}<metered unit>, not {unit!r}")
    if not str(raw["source"]).strip():
        raise CoefficientError(f"{where}: source must say where the figure comes from")
    basis = (
        choice(Basis, raw["basis"], f"{where}: basis", CoefficientError) if "basis" in raw else None
    )
    return Coefficient(
        kind=kind,
        carrier=str(raw["carrier"]),
        value=float(value),
        unit=unit,
        valid_from=valid_from,
        source=str(raw["source"]),
        basis=basis,
        region=raw.get("region"),
        firm=raw.get("firm"),
        note=str(raw.get("note", "")),
        placeholder=bool(raw.get("placeholder", False)),
    )


def load_file(path: Path = DEFAULTS) -> Table:
    """A table from a TOML file in the format of the shipped defaults."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise CoefficientError(f"{path}: {err}") from None
    unknown = set(raw) - {k.value for k in Kind}
    if unknown:
        raise CoefficientError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    return Table(
        _entry(kind, entry, f"{path.name}: {kind}[{index}]")
        for kind in Kind
        for index, entry in enumerate(raw.get(kind.value, []))
    )


_COLUMNS = "kind, carrier, basis, region, firm, valid_from, value, unit, source, note, placeholder"


def store(conn: psycopg.Connection[Any], table: Table) -> int:
    """Insert or update every coefficient of ``table`` in ``zayton.coefficients``, in the
    caller's transaction; return how many."""
    with conn.cursor() as cursor:
        cursor.executemany(
            f"""INSERT INTO zayton.coefficients ({_COLUMNS})
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (kind, carrier, coalesce(basis, ''), coalesce(region, ''),
                             coalesce(firm, ''), valid_from)
                DO UPDATE SET value = excluded.value, unit = excluded.unit,
                    source = excluded.source, note = excluded.note,
                    placeholder = excluded.placeholder""",
            [
                (
                    c.kind.value,
                    c.carrier,
                    c.basis.value if c.basis else None,
                    c.region,
                    c.firm,
                    c.valid_from,
                    c.value,
                    c.unit,
                    c.source,
                    c.note,
                    c.placeholder,
                )
                for c in table.coefficients
            ],
        )
    return len(table.coefficients)


def load_database(conn: psycopg.Connection[Any]) -> Table:
    with conn.cursor(row_factory=dict_row) as cursor:
        return _from_rows(cursor.execute(f"SELECT {_COLUMNS} FROM zayton.coefficients").fetchall())


async def load_database_async(conn: psycopg.AsyncConnection[Any]) -> Table:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(f"SELECT {_COLUMNS} FROM zayton.coefficients")
        return _from_rows(await cursor.fetchall())


def _from_rows(rows: Iterable[dict[str, Any]]) -> Table:
    return Table(
        Coefficient(
            **{
                **row,
                "kind": Kind(row["kind"]),
                "basis": Basis(row["basis"]) if row["basis"] else None,
                "value": float(row["value"]),
            }
        )
        for row in rows
    )


def seed_defaults(dsn: str) -> int:
    """Load the shipped defaults into a database whose table is empty; return how many."""
    with psycopg.connect(dsn) as conn:
        # One seeder at a time; a second finds the table filled.
        conn.execute("LOCK TABLE zayton.coefficients IN SHARE ROW EXCLUSIVE MODE")
        if conn.execute("SELECT EXISTS (SELECT FROM zayton.coefficients)").fetchone() == (True,):
            return 0
        return store(conn, load_file())


def load_into(dsn: str, path: Path) -> int:
    """Insert or update the coefficients of ``path`` (all or nothing); return how many."""
    table = load_file(path)
    with psycopg.connect(dsn) as conn:
        return store(conn, table)
