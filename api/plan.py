"""Plan targets as editable data, and how far along the way each one is.

Government plans set targets for a province, a district or a park zone: firms onboarded to
industrial-internet platforms (上云上平台), digital workshops, energy-saving projects, output and
tax per mu, decline of energy intensity. Zayton ships the targets of the plans that govern its
parks as a default plan (``api/data/plan.toml``), each with the document it comes from, and keeps
the working plan in ``zayton.targets``, where the district bureau edits it. A target whose figure
is assigned from the level above (the binding energy-intensity decline) ships without a value
until that figure is set.

How a target counts (:class:`Counting`) decides the value expected by a day within its period;
:func:`status` compares the actual value with it and says red, amber or green, and why.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from api.choices import choice

DEFAULTS = Path(__file__).parent / "data" / "plan.toml"

_SLUG = re.compile(r"[a-z0-9][a-z0-9-]*")


class PlanError(ValueError):
    """A plan that cannot be used, or a question a target cannot answer."""


class Level(StrEnum):
    """Who the target is set for."""

    PROVINCE = "province"
    CITY = "city"
    DISTRICT = "district"
    ZONE = "zone"
    """A park or development zone (高新区, 经济技术开发区)."""


class Counting(StrEnum):
    """How a target counts; each decides the value expected by a day of the period."""

    CUMULATIVE = "cumulative"
    """At least ``value`` counted from 1 January of ``start_year`` to the end of ``end_year``
    (plus ``baseline``, the stock at the start, where the plan counts the stock)."""
    PER_YEAR = "per_year"
    """At least ``value`` within each calendar year from ``start_year`` to ``end_year``."""
    LEVEL = "level"
    """A level (a rate, a share, a yearly total) of at least ``value`` by ``end_year``,
    from ``baseline`` at the start of the period where the plan gives one."""
    CEILING = "ceiling"
    """At most ``value`` counted over the period: a budget, such as an energy total."""
    DECLINE = "decline"
    """A decline of at least ``value`` per cent from the year before ``start_year`` to
    ``end_year`` (下降率, positive when the quantity fell)."""


class Indicator(StrEnum):
    """What a target counts: a closed set, each with its unit and the countings that fit it."""

    FIRMS_ONBOARDED = "firms_onboarded"
    G5_INDUSTRIAL_INTERNET_PROJECTS = "g5_industrial_internet_projects"
    INDUSTRIAL_INTERNET_PLATFORMS = "industrial_internet_platforms"
    INDUSTRIAL_INTERNET_DEMO_PLATFORMS = "industrial_internet_demo_platforms"
    DIGITAL_WORKSHOPS = "digital_workshops"
    DIGITAL_LINES = "digital_lines"
    ENERGY_SAVING_PROJECTS = "energy_saving_projects"
    KEY_PROCESSES_DIGITALISED_SHARE = "key_processes_digitalised_share"
    GREEN_FACTORIES = "green_factories"
    GREEN_PARKS = "green_parks"
    LABOUR_PRODUCTIVITY = "labour_productivity"
    OUTPUT_VALUE_ABOVE_SCALE = "output_value_above_scale"
    OUTPUT_VALUE_PER_MU = "output_value_per_mu"
    TAX_PER_MU = "tax_per_mu"
    GDP_PER_KM2 = "gdp_per_km2"
    ENERGY_CONSUMPTION = "energy_consumption"
    ENERGY_INTENSITY_DECLINE = "energy_intensity_decline"
    GDP_ENERGY_INTENSITY_DECLINE = "gdp_energy_intensity_decline"


@dataclass(frozen=True, slots=True)
class IndicatorInfo:
    name: str
    unit: str
    countings: frozenset[Counting]


_COUNT = frozenset({Counting.CUMULATIVE, Counting.PER_YEAR, Counting.LEVEL})
_RATE = frozenset({Counting.LEVEL})
_DECLINE = frozenset({Counting.DECLINE})

INDICATORS: Mapping[Indicator, IndicatorInfo] = {
    Indicator.FIRMS_ONBOARDED: IndicatorInfo("上云上平台企业", "firms", _COUNT),
    Indicator.G5_INDUSTRIAL_INTERNET_PROJECTS: IndicatorInfo(
        "“5G+工业互联网”项目", "projects", _COUNT
    ),
    Indicator.INDUSTRIAL_INTERNET_PLATFORMS: IndicatorInfo("工业互联网平台", "platforms", _COUNT),
    Indicator.INDUSTRIAL_INTERNET_DEMO_PLATFORMS: IndicatorInfo(
        "省级工业互联网示范平台", "platforms", _COUNT
    ),
    Indicator.DIGITAL_WORKSHOPS: IndicatorInfo("数字化车间", "workshops", _COUNT),
    Indicator.DIGITAL_LINES: IndicatorInfo("数字化生产线", "lines", _COUNT),
    Indicator.ENERGY_SAVING_PROJECTS: IndicatorInfo("节能降碳项目", "projects", _COUNT),
    Indicator.KEY_PROCESSES_DIGITALISED_SHARE: IndicatorInfo(
        "关键业务环节全面数字化的规上制造业企业比例", "%", _RATE
    ),
    Indicator.GREEN_FACTORIES: IndicatorInfo("绿色工厂", "factories", _COUNT),
    Indicator.GREEN_PARKS: IndicatorInfo("绿色园区", "parks", _COUNT),
    Indicator.LABOUR_PRODUCTIVITY: IndicatorInfo("全员劳动生产率", "万元/人", _RATE),
    Indicator.OUTPUT_VALUE_ABOVE_SCALE: IndicatorInfo("规上工业产值", "亿元", _RATE),
    Indicator.OUTPUT_VALUE_PER_MU: IndicatorInfo("亩均产值", "万元/亩", _RATE),
    Indicator.TAX_PER_MU: IndicatorInfo("亩均税收", "万元/亩", _RATE),
    Indicator.GDP_PER_KM2: IndicatorInfo("每平方公里地区生产总值", "亿元/km2", _RATE),
    Indicator.ENERGY_CONSUMPTION: IndicatorInfo(
        "综合能源消费量", "tce", frozenset({Counting.CEILING})
    ),
    Indicator.ENERGY_INTENSITY_DECLINE: IndicatorInfo(
        "规上工业万元增加值能耗下降率", "%", _DECLINE
    ),
    Indicator.GDP_ENERGY_INTENSITY_DECLINE: IndicatorInfo(
        "万元地区生产总值能耗下降率", "%", _DECLINE
    ),
}


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    level: Level
    scope: str
    """Whose target: ``fujian``, ``licheng``, ``licheng-high-tech-zone``…"""
    indicator: Indicator
    name: str
    """As the plan names it, in Chinese."""
    counting: Counting
    unit: str
    start_year: int
    end_year: int
    source: str
    """Document number and title, and where in it."""
    value: float | None = None
    """``None``: the figure is assigned from the level above and not yet set (see ``note``)."""
    baseline: float | None = None
    """Cumulative and level targets: the value at the start of the period."""
    binding: bool = False
    """约束性 (binding) rather than 预期性 (expected)."""
    note: str = ""

    @property
    def years(self) -> range:
        return range(self.start_year, self.end_year + 1)

    @property
    def natural_key(self) -> tuple[str, Indicator, Counting, int, int]:
        return (self.scope, self.indicator, self.counting, self.start_year, self.end_year)


class Plan:
    """A set of targets, each under its own id."""

    def __init__(self, targets: Iterable[Target]) -> None:
        self.targets = tuple(sorted(targets, key=lambda t: t.id))
        ids: set[str] = set()
        keys: dict[tuple[str, Indicator, Counting, int, int], str] = {}
        for target in self.targets:
            if target.id in ids:
                raise PlanError(f"two targets with id {target.id}")
            ids.add(target.id)
            other = keys.setdefault(target.natural_key, target.id)
            if other != target.id:
                raise PlanError(
                    f"targets {other} and {target.id} both set {target.indicator} "
                    f"({target.counting}) for {target.scope}, {target.start_year}-{target.end_year}"
                )

    def __iter__(self) -> Iterator[Target]:
        return iter(self.targets)

    def __len__(self) -> int:
        return len(self.targets)

    def target(self, target_id: str) -> Target:
        for target in self.targets:
            if target.id == target_id:
                return target
        raise PlanError(f"no target {target_id}")


_FIELDS = {
    "id", "level", "scope", "indicator", "name", "counting", "value", "unit", "start_year",
    "end_year", "baseline", "binding", "source", "note",
}  # fmt: skip
_REQUIRED = ("level", "scope", "indicator", "name", "counting", "unit", "start_year", "end_year")


def _number(raw: Mapping[str, Any], name: str, where: str) -> float | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PlanError(f"{where}: {name} must be a number, not {value!r}")
    return float(value)


def _entry(raw: Mapping[str, Any], origin: str, index: int) -> Target:  # noqa: PLR0912
    """One target from a TOML table or a database row (``index``: its place in ``origin``);
    errors name the target and the field."""
    target_id = raw.get("id")
    if not isinstance(target_id, str) or not _SLUG.fullmatch(target_id):
        raise PlanError(
            f"{origin}: target[{index}]: id is required: lower-case letters, digits and '-'"
        )
    where = f"{origin}: target {target_id}"
    unknown = set(raw) - _FIELDS
    if unknown:
        raise PlanError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    for name in (*_REQUIRED, "source"):
        if raw.get(name) is None:
            raise PlanError(f"{where}: {name} is required")
    level = choice(Level, raw["level"], f"{where}: level", PlanError)
    indicator = choice(Indicator, raw["indicator"], f"{where}: indicator", PlanError)
    counting = choice(Counting, raw["counting"], f"{where}: counting", PlanError)
    info = INDICATORS[indicator]
    if counting not in info.countings:
        raise PlanError(
            f"{where}: counting {counting} does not fit {indicator}; "
            f"use {', '.join(sorted(info.countings))}"
        )
    scope = raw["scope"]
    if not isinstance(scope, str) or not _SLUG.fullmatch(scope):
        raise PlanError(f"{where}: scope must be lower-case letters, digits and '-'")
    if raw["unit"] != info.unit:
        raise PlanError(f"{where}: unit of {indicator} is {info.unit!r}, not {raw['unit']!r}")
    years = []
    for name in ("start_year", "end_year"):
        year = raw[name]
        if isinstance(year, bool) or not isinstance(year, int) or not 2000 <= year <= 2100:
            raise PlanError(f"{where}: {name} must be a year (2021), not {year!r}")
        years.append(year)
    if years[0] > years[1]:
        raise PlanError(f"{where}: end_year {years[1]} is before start_year {years[0]}")
    value = _number(raw, "value", where)
    note = str(raw.get("note") or "")
    if value is None and not note.strip():
        raise PlanError(f"{where}: value is missing: a note must say who assigns it")
    if value is not None and (value < 0 or (info.unit == "%" and value > 100)):
        raise PlanError(f"{where}: value must be >= 0 (and <= 100 for %), not {value:g}")
    baseline = _number(raw, "baseline", where)
    if baseline is not None and counting not in (Counting.CUMULATIVE, Counting.LEVEL):
        raise PlanError(f"{where}: baseline only applies to cumulative and level targets")
    binding = raw.get("binding", False)
    if not isinstance(binding, bool):
        raise PlanError(f"{where}: binding must be true or false, not {binding!r}")
    if not str(raw["source"]).strip():
        raise PlanError(f"{where}: source must name the document the target comes from")
    return Target(
        id=target_id,
        level=level,
        scope=scope,
        indicator=indicator,
        name=str(raw["name"]),
        counting=counting,
        unit=info.unit,
        start_year=years[0],
        end_year=years[1],
        source=str(raw["source"]),
        value=value,
        baseline=baseline,
        binding=binding,
        note=note,
    )


def load_file(path: Path | None = None) -> Plan:
    """A plan from a TOML file in the format of the shipped default (``[[target]]`` tables)."""
    path = DEFAULTS if path is None else path
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise PlanError(f"{path}: {err}") from None
    unknown = set(raw) - {"target"}
    if unknown:
        raise PlanError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    entries = raw.get("target", [])
    if not isinstance(entries, list):
        raise PlanError(f"{path}: targets are [[target]] tables")
    return Plan(_entry(entry, path.name, i) for i, entry in enumerate(entries))


# Expected by now, and red / amber / green.


class Rag(StrEnum):
    RED = "red"
    AMBER = "amber"
    GREEN = "green"


@dataclass(frozen=True, slots=True)
class Status:
    rag: Rag
    expected: float
    """The value the target expects by now."""
    reason: str


def expected(target: Target, elapsed: float) -> float:
    """The value ``target`` expects when ``elapsed`` (0 to 1) of its period has passed.

    The period is the whole of ``start_year`` to ``end_year``, or, for a per-year target, the
    year in question (see :func:`elapsed_fraction`)."""
    if target.value is None:
        raise PlanError(f"target {target.id} has no value yet: {target.note}")
    if not 0.0 <= elapsed <= 1.0:
        raise PlanError(f"elapsed must be a fraction from 0 to 1, not {elapsed!r}")
    value = target.value
    if elapsed == 1.0:  # exactly the target, whatever rounding the paths below would add
        return value
    match target.counting:
        case Counting.CUMULATIVE:
            start = target.baseline or 0.0
            return start + (value - start) * elapsed
        case Counting.LEVEL:
            if target.baseline is None:
                return value
            return target.baseline + (value - target.baseline) * elapsed
        case Counting.DECLINE:
            return (1.0 - math.pow(1.0 - value / 100.0, elapsed)) * 100.0
        case Counting.PER_YEAR | Counting.CEILING:
            return value * elapsed


def status(target: Target, actual: float, elapsed: float, *, margin: float = 0.10) -> Status:
    """Red, amber or green for ``actual`` when ``elapsed`` (0 to 1) of the period has passed.

    The value expected by now, E, follows from how the target counts (V its value, f the
    elapsed fraction, B its baseline):

    - cumulative: E = B + (V − B) × f, B = 0 unless the plan counts a stock;
    - per year: E = V × f, f the fraction of the year in question;
    - level: E = B + (V − B) × f with a baseline, else E = V: without one the level itself
      is the measure all along;
    - ceiling (a budget): E = V × f;
    - decline: E = (1 − (1 − V/100)^f) × 100, the decline a constant yearly rate reaches by
      now; ``actual`` is the decline so far in per cent, (1 − now / base year) × 100.

    Targets that set a floor (all but the ceiling) are green when actual ≥ E, amber when
    actual ≥ E − margin × |E|, red below. A ceiling is the mirror: green when actual ≤ E, amber
    when actual ≤ E + margin × |E|, red above. ``margin`` is 0.10 unless given."""
    if not 0.0 <= margin < 1.0:
        raise PlanError(f"margin must be a fraction from 0 to 1, not {margin!r}")
    goal = expected(target, elapsed)
    slack = margin * abs(goal)
    if target.counting is Counting.CEILING:
        rag = Rag.GREEN if actual <= goal else Rag.AMBER if actual <= goal + slack else Rag.RED
    else:
        rag = Rag.GREEN if actual >= goal else Rag.AMBER if actual >= goal - slack else Rag.RED
    return Status(rag, goal, _reason(target, actual, goal, elapsed=elapsed, rag=rag, margin=margin))


def _fmt(x: float) -> str:
    return f"{x:,.2f}".rstrip("0").rstrip(".")


def _reason(
    target: Target, actual: float, goal: float, *, elapsed: float, rag: Rag, margin: float
) -> str:
    unit = target.unit if target.unit == "%" else f" {target.unit}"
    value = _fmt(target.value or 0.0)
    period = f"{target.start_year}-{target.end_year}"
    how = {
        Counting.CUMULATIVE: f"{value}{unit} by {target.end_year}",
        Counting.PER_YEAR: f"{value}{unit} a year",
        Counting.LEVEL: f"{value}{unit} by {target.end_year}",
        Counting.CEILING: f"at most {value}{unit} over {period}",
        Counting.DECLINE: f"a decline of {value}% over {period}",
    }[target.counting]
    if target.counting is Counting.LEVEL and target.baseline is None:
        path = "no baseline: the level itself is the measure"
    else:
        span = "year" if target.counting is Counting.PER_YEAR else "period"
        path = f"{_fmt(elapsed * 100)}% of the {span} gone"
    side = "above" if target.counting is Counting.CEILING else "below"
    verdict = {
        Rag.GREEN: "on track",
        Rag.AMBER: f"within {_fmt(margin * 100)}% {side} the expected value",
        Rag.RED: f"more than {_fmt(margin * 100)}% {side} the expected value",
    }[rag]
    return (
        f"{_fmt(actual)}{unit} against {_fmt(goal)}{unit} expected by now "
        f"(target {how}; {path}): {verdict}"
    )


def elapsed_fraction(target: Target, on: date) -> float:
    """How much of the target's period has passed at the end of the local day ``on``: of its
    whole period, or, for a per-year target, of the year of ``on``."""
    if target.counting is Counting.PER_YEAR:
        if on.year not in target.years:
            raise PlanError(f"target {target.id} sets no value for {on.year}")
        first, last = date(on.year, 1, 1), date(on.year, 12, 31)
    else:
        first, last = date(target.start_year, 1, 1), date(target.end_year, 12, 31)
    days = (last - first).days + 1
    return min(max((on - first).days + 1, 0), days) / days


# The plan in PostgreSQL.

_COLUMNS = (
    "id, level, scope, indicator, name, counting, value, unit, start_year, end_year, baseline, "
    "binding, source, note"
)


def store(conn: psycopg.Connection[Any], plan: Plan) -> int:
    """Insert every target of ``plan`` into ``zayton.targets``, in the caller's transaction;
    return how many."""
    with conn.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO zayton.targets ({_COLUMNS}) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    t.id,
                    t.level.value,
                    t.scope,
                    t.indicator.value,
                    t.name,
                    t.counting.value,
                    t.value,
                    t.unit,
                    t.start_year,
                    t.end_year,
                    t.baseline,
                    t.binding,
                    t.source,
                    t.note,
                )
                for t in plan
            ],
        )
    return len(plan)


def load_database(conn: psycopg.Connection[Any]) -> Plan:
    """The working plan; a row edited into something the plan cannot use is an error that
    names it."""
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(f"SELECT {_COLUMNS} FROM zayton.targets ORDER BY id").fetchall()
    return Plan(_entry(row, "zayton.targets", i) for i, row in enumerate(rows))


def seed_defaults(dsn: str) -> int:
    """Load the shipped plan into a database whose table is empty; return how many."""
    with psycopg.connect(dsn) as conn:
        # One seeder at a time; a second finds the table filled.
        conn.execute("LOCK TABLE zayton.targets IN SHARE ROW EXCLUSIVE MODE")
        if conn.execute("SELECT EXISTS (SELECT FROM zayton.targets)").fetchone() == (True,):
            return 0
        return store(conn, load_file())


def load_into(dsn: str, path: Path) -> int:
    """Replace the working plan with the targets of ``path``, all or nothing; return how many."""
    plan = load_file(path)
    with psycopg.connect(dsn) as conn:
        conn.execute("LOCK TABLE zayton.targets IN SHARE ROW EXCLUSIVE MODE")
        conn.execute("DELETE FROM zayton.targets")
        return store(conn, plan)
