"""Business data of firms per month: output value, value added and its price basis, tax, land
area and headcount, from a CSV file or a list of JSON items, into ``zayton.firm_months``.

Money is in 10,000 yuan (万元) and land in m² (a file may give mu, 1 mu = 10,000/15 m²); both
are rounded half away from zero to 0.01, as the table stores them. Numbers are plain decimals
(``1234.5``); a thousands separator is accepted only in groups of three (``1,234.5``), so a
decimal comma (``1,5``) is an error rather than a number a thousand times too large. A field left
empty (``None``) is not reported: an import never erases a stored value, it only sets the fields
it gives. Value added and its price basis are written together.

Every import is all or nothing. A ``BusinessDataError`` lists every problem found, each at its
place: ``row N, column C`` (N is the line of the file, the header is row 1) or ``items[N].C``.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from api.energy import ZONE

M2_PER_MU = Decimal(10_000) / Decimal(15)
MAX_AMOUNT = Decimal("999999999999.99")
"""The largest amount ``numeric(14, 2)`` holds."""
MAX_HEADCOUNT = 2**31 - 1
LISTED_PROBLEMS = 50
"""How many problems an error message lists; all are in ``BusinessDataError.problems``."""

REQUIRED = ("month", "firm")
DATA = (
    "output_value_10k_yuan",
    "value_added_10k_yuan",
    "price_basis",
    "tax_10k_yuan",
    "land_area_m2",
    "land_mu",
    "headcount",
)
INFORMATIONAL = ("sector", "days_covered", "production_units", "unit")
"""Columns of the simulator's ``business.csv`` that are accepted and ignored."""
COLUMNS = REQUIRED + DATA + INFORMATIONAL

_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_MONTH = re.compile(r"(\d{4})-(\d{2})(?:-(\d{2}))?")
_BASIS = re.compile(r"comparable:(\d{4})")
_CENT = Decimal("0.01")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PriceBasis:
    """The prices value added is expressed in: current prices (现价), or the comparable prices
    (可比价) of a base year."""

    base_year: int | None = None
    """``None``: current prices."""

    def __str__(self) -> str:
        return "current" if self.base_year is None else f"comparable:{self.base_year}"

    @classmethod
    def parse(cls, text: str) -> PriceBasis:
        """``current`` or ``comparable:<year>``; empty means current."""
        normal = text.strip().lower()
        if normal in ("", "current"):
            return CURRENT
        if match := _BASIS.fullmatch(normal):
            return cls(int(match[1]))
        raise ValueError(f"{text!r} is not a price basis: current or comparable:<year>")


CURRENT = PriceBasis()


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record came from."""

    index: int
    """The line of the CSV file (the header is row 1), or the index in a list."""
    list_name: str | None = None
    """``None`` for a CSV file, else the name of the list (``items``)."""

    def describe(self, column: str | None = None) -> str:
        if self.list_name is None:
            return f"row {self.index}" + (f", column {column}" if column else "")
        return f"{self.list_name}[{self.index}]" + (f".{column}" if column else "")


@dataclass(frozen=True, slots=True)
class Problem:
    source: Source
    column: str | None
    """``None`` when the problem is with the row as a whole."""
    message: str

    @property
    def row(self) -> int:
        return self.source.index

    def __str__(self) -> str:
        return f"{self.source.describe(self.column)}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        """For an API response: ``row`` is the CSV line or the index in the list."""
        where = self.source.describe(self.column)
        return {"where": where, "row": self.row, "column": self.column, "message": self.message}


class BusinessDataError(ValueError):
    """Business data that cannot be imported; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem], subject: str = "business data") -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = [f"{subject}: {count} problem{'s' if count != 1 else ''}, nothing imported"]
        lines += [str(p) for p in self.problems[:LISTED_PROBLEMS]]
        if count > LISTED_PROBLEMS:
            lines.append(f"and {count - LISTED_PROBLEMS} more")
        super().__init__("\n".join(lines))


@dataclass(frozen=True, slots=True)
class Record:
    """One firm's business data for one month; ``None`` is not reported."""

    firm: str
    """``zayton.firms.code``."""
    month: date
    """The first day of the month."""
    output_value: Decimal | None = None
    """Gross output value (产值), 10,000 yuan."""
    value_added: Decimal | None = None
    """Value added (增加值), 10,000 yuan, in ``price_basis`` prices; may be negative."""
    price_basis: PriceBasis | None = None
    """Set exactly when ``value_added`` is."""
    tax: Decimal | None = None
    """Tax paid (税收), 10,000 yuan."""
    land_area_m2: Decimal | None = None
    headcount: int | None = None
    source: Source | None = field(default=None, compare=False, repr=False)


class _Invalid(Exception):
    """A value that cannot be used; the message says why."""


def _kind(value: object) -> str:
    return {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "text",
        list: "a list",
    }.get(type(value), "an object" if isinstance(value, Mapping) else type(value).__name__)


def _text(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid(f"must be text, not {_kind(value)}")
    return value.strip() or None


def _number(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float | None):
        raise _Invalid(f"must be a number, not {_kind(value)}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Invalid(f"{value} is not a finite number")
        return Decimal(repr(value))
    text = _text(value)
    if text is None:
        return None
    if _NUMBER.fullmatch(text):
        return Decimal(text.replace(",", ""))
    try:
        finite = Decimal(text).is_finite()
    except InvalidOperation:
        finite = True
    if not finite:
        raise _Invalid(f"{text!r} is not a finite number")
    raise _Invalid(f"{text!r} is not a plain decimal number (1234.5 or 1,234.5)")


def _amount(
    *, minimum: Decimal | None, positive: bool = False, scale: Decimal | None = None
) -> Callable[[object], Decimal | None]:
    def convert(value: object) -> Decimal | None:
        number = _number(value)
        if number is None:
            return None
        if minimum is not None and number < minimum:
            raise _Invalid(f"must be {minimum} or more, not {number}")
        amount = number if scale is None else number * scale
        if abs(amount) > MAX_AMOUNT:
            raise _Invalid(f"{number} is too large")
        amount = amount.quantize(_CENT, rounding=ROUND_HALF_UP)
        if positive and amount <= 0:
            raise _Invalid(f"must be more than 0, not {number}")
        return amount

    return convert


def _headcount(value: object) -> int | None:
    number = _number(value)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise _Invalid(f"must be a whole number of people, not {number}")
    if number < 0:
        raise _Invalid(f"must be 0 or more, not {number}")
    if number > MAX_HEADCOUNT:
        raise _Invalid(f"{number} is too large")
    return int(number)


def _month(today: date) -> Callable[[object], date | None]:
    def convert(value: object) -> date | None:
        text = _text(value)
        if text is None:
            raise _Invalid("is required (YYYY-MM)")
        match = _MONTH.fullmatch(text)
        try:
            month = date(int(match[1]), int(match[2]), 1) if match else None
        except ValueError:
            month = None
        if match is None or month is None:
            raise _Invalid(f"{text!r} is not a month: YYYY-MM or YYYY-MM-01")
        if match[3] not in (None, "01"):
            raise _Invalid(f"{text!r}: a month is written YYYY-MM or as its first day, YYYY-MM-01")
        if month > today:
            raise _Invalid(f"{text} is after the current month, {today:%Y-%m}")
        return month

    return convert


def _firm(value: object) -> str | None:
    text = _text(value)
    if text is None:
        raise _Invalid("is required (the firm's code)")
    return text


def _basis(value: object) -> PriceBasis | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return PriceBasis.parse(text)
    except ValueError as err:
        raise _Invalid(str(err)) from None


def _given(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


class _Check:
    """Converts the values of one row or item, collecting problems."""

    def __init__(self, source: Source, raw: Mapping[str, object]) -> None:
        self.source = source
        self.raw = raw
        self.problems: list[Problem] = []

    def fail(self, column: str | None, message: str) -> None:
        self.problems.append(Problem(self.source, column, message))

    def get(self, column: str, convert: Callable[[object], T | None]) -> T | None:
        try:
            return convert(self.raw.get(column))
        except _Invalid as err:
            self.fail(column, str(err))
            return None


class _Batch:
    """The records and problems of a file or list, in which a firm's month may appear once."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.problems: list[Problem] = []
        self._first: dict[tuple[str, date], Source] = {}

    def once(self, firm: str, month: date, source: Source) -> None:
        first = self._first.setdefault((firm, month), source)
        if first is not source:
            message = f"firm {firm}, month {month:%Y-%m} is also in {first.describe()}"
            self.problems.append(Problem(source, None, message))

    def finish(self) -> list[Record]:
        if self.problems:
            raise BusinessDataError(self.problems)
        return self.records


def _record(batch: _Batch, source: Source, raw: Mapping[str, object], today: date) -> None:
    """Check one row or item (keys are column names) and add it to ``batch``."""
    check = _Check(source, raw)
    month = check.get("month", _month(today))
    firm = check.get("firm", _firm)
    output = check.get("output_value_10k_yuan", _amount(minimum=Decimal(0)))
    value_added = check.get("value_added_10k_yuan", _amount(minimum=None))
    basis = check.get("price_basis", _basis)
    tax = check.get("tax_10k_yuan", _amount(minimum=Decimal(0)))
    land = check.get("land_area_m2", _amount(minimum=None, positive=True))
    if "land_mu" in raw:
        land = check.get("land_mu", _amount(minimum=None, positive=True, scale=M2_PER_MU))
    headcount = check.get("headcount", _headcount)
    if value_added is not None:
        basis = basis or CURRENT
        if output is not None and value_added > output:
            check.fail(
                "value_added_10k_yuan", f"{value_added} is more than the output value {output}"
            )
        if basis.base_year is not None and month is not None and basis.base_year > month.year:
            check.fail("price_basis", f"base year {basis.base_year} is after the month")
    elif basis is not None and not _given(raw.get("value_added_10k_yuan")):
        check.fail("price_basis", "is the basis of value_added_10k_yuan, which is not given")
    if not check.problems and not any(_given(raw.get(c)) for c in DATA):
        measures = ", ".join(c for c in DATA if c != "price_basis")
        check.fail(None, f"no data: give at least one of {measures}")
    batch.problems += check.problems
    if month is not None and firm is not None:
        batch.once(firm, month, source)
        if not check.problems:
            batch.records.append(
                Record(firm, month, output, value_added, basis, tax, land, headcount, source)
            )


def _names(
    names: Sequence[str], source: Source, what: str, *, required: bool = True
) -> list[Problem]:
    """Problems with the column names of a header, or the field names of an item."""
    problems = []
    for index, name in enumerate(names):
        if name not in COLUMNS:
            accepted = ", ".join(COLUMNS)
            problems.append(Problem(source, name, f"unknown {what}; accepted: {accepted}"))
        elif name in names[:index]:
            problems.append(Problem(source, name, f"{what} given twice"))
    if required:
        problems += [Problem(source, n, f"{what} is required") for n in REQUIRED if n not in names]
    if "land_area_m2" in names and "land_mu" in names:
        problems.append(Problem(source, "land_mu", "give land_area_m2 or land_mu, not both"))
    return problems


def _local_today() -> date:
    return datetime.now(ZONE).date()


def parse_csv(text: str, *, today: date | None = None) -> list[Record]:
    """The records of a CSV file with a header row (UTF-8, with or without a BOM); column
    names are matched ignoring case and surrounding spaces, blank lines are skipped.

    ``today`` (default: today in China) bounds the months: none may be after its month."""
    today = today or _local_today()
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    batch = _Batch()
    try:
        header = [name.strip().lower() for name in next(reader, [])]
        if not any(name in COLUMNS for name in header):
            message = f"a header is required, naming the columns: {', '.join(COLUMNS)}"
            raise BusinessDataError([Problem(Source(1), None, message)])
        if problems := _names(header, Source(1), "column"):
            raise BusinessDataError(problems)  # the columns may be misread: no row is checked
        end = reader.line_num
        for cells in reader:
            source, end = Source(end + 1), reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                message = f"{len(cells)} values for {len(header)} columns"
                if len(cells) > len(header):
                    message += " (a number with a thousands separator must be in quotes)"
                batch.problems.append(Problem(source, None, message))
                continue
            _record(batch, source, dict(zip(header, cells, strict=True)), today)
    except csv.Error as err:
        batch.problems.append(Problem(Source(reader.line_num), None, f"not CSV: {err}"))
    return batch.finish()


def parse_items(items: Sequence[object], *, today: date | None = None) -> list[Record]:
    """The records of a JSON list of objects whose fields are named as the CSV columns."""
    today = today or _local_today()
    batch = _Batch()
    for index, item in enumerate(items):
        source = Source(index, "items")
        if not isinstance(item, Mapping):
            batch.problems.append(Problem(source, None, f"must be an object, not {_kind(item)}"))
            continue
        batch.problems += _names([str(k) for k in item], source, "field", required=False)
        _record(batch, source, item, today)
    return batch.finish()


def decode_csv(data: bytes) -> str:
    """The text of an uploaded CSV file, which must be UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        message = (
            f"not UTF-8 (byte 0x{data[err.start]:02x}); save the file as "
            "'CSV UTF-8 (逗号分隔)' rather than 'CSV (逗号分隔)', which is GBK"
        )
        raise BusinessDataError([Problem(Source(line), None, message)]) from None


_UPSERT = """
    INSERT INTO zayton.firm_months AS m
        (firm_id, month, output_value, value_added, price_basis, tax, land_area_m2, headcount)
    SELECT * FROM unnest(%s::integer[], %s::date[], %s::numeric[], %s::numeric[], %s::text[],
                         %s::numeric[], %s::numeric[], %s::integer[])
    ON CONFLICT (firm_id, month) DO UPDATE SET
        output_value = coalesce(excluded.output_value, m.output_value),
        value_added = coalesce(excluded.value_added, m.value_added),
        price_basis = coalesce(excluded.price_basis, m.price_basis),
        tax = coalesce(excluded.tax, m.tax),
        land_area_m2 = coalesce(excluded.land_area_m2, m.land_area_m2),
        headcount = coalesce(excluded.headcount, m.headcount),
        updated_at = now()
    RETURNING firm_id, month, output_value, value_added
"""


def store(conn: psycopg.Connection[Any], records: Sequence[Record]) -> int:
    """Insert or update ``records`` in ``zayton.firm_months`` in one transaction (a savepoint
    inside the caller's); return how many. Fields that are ``None`` keep their stored value.

    All or nothing: unknown firms, or value added above the output value once merged with what
    is stored, raise ``BusinessDataError`` and change nothing."""
    sources = [r.source or Source(i, "records") for i, r in enumerate(records)]
    batch = _Batch()
    for record, source in zip(records, sources, strict=True):
        batch.once(record.firm, record.month, source)
    batch.finish()
    if not records:
        return 0
    with conn.transaction():
        codes = sorted({r.firm for r in records})
        ids: dict[str, int] = dict(
            conn.execute(
                "SELECT code, id FROM zayton.firms WHERE code = ANY(%s)", [codes]
            ).fetchall()
        )
        if unknown := [
            Problem(source, "firm", f"unknown firm {r.firm!r}: not in zayton.firms")
            for r, source in zip(records, sources, strict=True)
            if r.firm not in ids
        ]:
            raise BusinessDataError(unknown)
        # In key order, so that concurrent imports lock rows in the same order.
        rows = sorted(records, key=lambda r: (ids[r.firm], r.month))
        columns = [
            [ids[r.firm] for r in rows],
            [r.month for r in rows],
            [r.output_value for r in rows],
            [r.value_added for r in rows],
            [None if r.price_basis is None else str(r.price_basis) for r in rows],
            [r.tax for r in rows],
            [r.land_area_m2 for r in rows],
            [r.headcount for r in rows],
        ]
        stored = {
            (firm_id, month): (output, value_added)
            for firm_id, month, output, value_added in conn.execute(_UPSERT, columns).fetchall()
        }
        problems = []
        for record, source in zip(records, sources, strict=True):
            output, value_added = stored[(ids[record.firm], record.month)]
            if output is not None and value_added is not None and value_added > output:
                given = record.value_added is not None
                column = "value_added_10k_yuan" if given else "output_value_10k_yuan"
                problems.append(
                    Problem(
                        source,
                        column,
                        f"value added {value_added} would be more than the output value {output}"
                        " (with what is stored for the month)",
                    )
                )
        if problems:
            raise BusinessDataError(problems)
    return len(records)


def import_text(dsn: str, text: str) -> int:
    """Parse CSV ``text`` and store it, all or nothing; return how many records."""
    records = parse_csv(text)
    with psycopg.connect(dsn) as conn:
        return store(conn, records)


def import_file(dsn: str, path: Path) -> int:
    """Parse the CSV file ``path`` and store it, all or nothing; return how many records."""
    try:
        records = parse_csv(decode_csv(path.read_bytes()))
        with psycopg.connect(dsn) as conn:
            return store(conn, records)
    except BusinessDataError as err:
        raise BusinessDataError(err.problems, subject=str(path)) from None


def read_months(
    conn: psycopg.Connection[Any], firm_codes: Sequence[str] | None, first: date, last: date
) -> list[Record]:
    """Stored records of the months from ``first``'s to ``last``'s, inclusive, by firm code and
    month; of every firm when ``firm_codes`` is ``None``."""
    rows = conn.execute(
        """SELECT f.code, m.month, m.output_value, m.value_added, m.price_basis, m.tax,
                  m.land_area_m2, m.headcount
           FROM zayton.firm_months m JOIN zayton.firms f ON f.id = m.firm_id
           WHERE m.month BETWEEN %s AND %s AND (%s::text[] IS NULL OR f.code = ANY(%s::text[]))
           ORDER BY f.code, m.month""",
        [first.replace(day=1), last, firm_codes, firm_codes],
    ).fetchall()
    return [
        Record(
            firm=code,
            month=month,
            output_value=output,
            value_added=value_added,
            price_basis=None if basis is None else PriceBasis.parse(basis),
            tax=tax,
            land_area_m2=land,
            headcount=headcount,
        )
        for code, month, output, value_added, basis, tax, land, headcount in rows
    ]
