"""亩均效益 grading: how well each firm uses its land, energy and people, graded A to D.

Park committees grade their firms each year on four figures: output value per mu (亩均产值),
tax per mu (亩均税收), energy per 万元 of value added, and labour productivity (value added per
person employed). Each figure is compared with a benchmark, by default the mean of the firms
graded, and scored against its weight:

    higher is better: score = weight × value / benchmark
    lower is better:  score = weight × benchmark / value

A score is never below 0 nor above ``cap`` × weight, so that no single figure carries a firm.
The scores add up to a total out of about 100; the totals rank the firms and the rank (or the
total itself) gives the grade. Weights, benchmarks, the cap, the grade bands and what to do
about missing figures are configuration (``api/data/grading.toml``), each with its source.

:func:`grade` is pure: figures in, grades out.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Any

from api.choices import choice
from api.registry import SQ_M_PER_MU

DEFAULTS = Path(__file__).parent / "data" / "grading.toml"

MU_M2 = SQ_M_PER_MU
"""One mu (亩) is 10,000/15 m² (about 666.67 m²): the registry's figure."""

_TIE_DIGITS = 9
"""Totals equal to this many decimal places are ties: they share a rank and a grade."""


class GradingError(ValueError):
    """A configuration that cannot be used, or figures that cannot be graded at all."""


class Indicator(StrEnum):
    OUTPUT_VALUE_PER_MU = "output_value_per_mu"
    """亩均产值, 万元 of output value per mu of land."""
    TAX_PER_MU = "tax_per_mu"
    """亩均税收, 万元 of tax per mu of land."""
    ENERGY_PER_VALUE_ADDED = "energy_per_value_added"
    """万元增加值能耗, tce per 万元 of value added: lower is better."""
    LABOUR_PRODUCTIVITY = "labour_productivity"
    """全员劳动生产率, 万元 of value added per person employed."""


UNITS: Mapping[Indicator, str] = {
    Indicator.OUTPUT_VALUE_PER_MU: "万元/亩",
    Indicator.TAX_PER_MU: "万元/亩",
    Indicator.ENERGY_PER_VALUE_ADDED: "tce/万元",
    Indicator.LABOUR_PRODUCTIVITY: "万元/人",
}
LOWER_IS_BETTER = frozenset({Indicator.ENERGY_PER_VALUE_ADDED})


class Benchmark(StrEnum):
    MEAN = "mean"
    """The mean of the graded firms' values."""
    AGGREGATE = "aggregate"
    """The graded firms taken together: total tax over total land, and so on."""
    FIXED = "fixed"
    """A value set in the configuration for each indicator."""


class Missing(StrEnum):
    """What a firm gets on an indicator whose figures it has not reported."""

    NOT_GRADED = "not_graded"
    ZERO = "zero"
    MEAN_SCORE = "mean_score"
    """The mean score of the firms that reported it."""


class GradeMethod(StrEnum):
    RANK = "rank"
    """By the share of graded firms ranked above: A for the top ``A`` per cent, and so on."""
    SCORE = "score"
    """By the total: A from a total of ``A``, and so on."""


class Grade(StrEnum):
    A = "A"
    B = "B"
    C = "C"
    D = "D"


@dataclass(frozen=True, slots=True)
class IndicatorConfig:
    weight: float
    missing: Missing
    source: str
    benchmark: float | None = None
    """Used when the benchmark is ``fixed``."""


@dataclass(frozen=True, slots=True)
class GradingConfig:
    edition: str
    indicators: Mapping[Indicator, IndicatorConfig]
    benchmark: Benchmark
    benchmark_factor: float
    """Raises the bar: a higher-is-better benchmark is multiplied by it, a lower-is-better one
    divided. 1 unless set."""
    cap: float
    """A score is at most ``cap`` × its weight."""
    min_land_mu: float
    method: GradeMethod
    bands: Mapping[Grade, float]
    """A, B and C: per cent of firms from the top (``rank``), or lowest totals (``score``)."""


@dataclass(frozen=True, slots=True)
class FirmFigures:
    """One firm's business data for the period graded (a year, as a rule)."""

    code: str
    land_area_m2: float | None
    """Land the firm uses, m²."""
    output_value: float | None
    """Gross output value (产值), 万元."""
    value_added: float | None
    """Value added (增加值), 万元; may be negative."""
    tax: float | None
    """Tax paid (税收), 万元."""
    energy_tce: float | None
    """Total energy consumption (综合能耗), on the basis the evaluation uses."""
    headcount: float | None
    """Average number of persons employed over the period."""


@dataclass(frozen=True, slots=True)
class FirmGrade:
    code: str
    values: Mapping[Indicator, float | None]
    """Each indicator's value, in :data:`UNITS`; ``None`` where it cannot be computed."""
    scores: Mapping[Indicator, float]
    """Empty for a firm not graded."""
    total: float | None
    grade: Grade | None
    rank: int | None
    reasons: tuple[str, ...] = ()
    """Why the firm is not graded, or how a score was given without its figures."""


# The configuration.


def _number(raw: Mapping[str, Any], name: str, where: str, *, minimum: float = 0.0) -> float:
    value = raw.get(name)
    if value is None:
        raise GradingError(f"{where}.{name} is required")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise GradingError(f"{where}.{name} must be a number >= {minimum:g}, not {value!r}")
    return float(value)


def _table(
    parent: Mapping[str, Any], name: str, file: str, allowed: set[str], *, under: str = ""
) -> Mapping[str, Any]:
    dotted = f"{under}.{name}" if under else name
    table = parent.get(name)
    if not isinstance(table, dict):
        raise GradingError(f"{file}: [{dotted}] is required")
    unknown = set(table) - allowed
    if unknown:
        raise GradingError(f"{file}: {dotted}: unknown field(s) {', '.join(sorted(unknown))}")
    if "source" in allowed and not str(table.get("source", "")).strip():
        raise GradingError(f"{file}: {dotted}.source must say where the values come from")
    return table


def _indicator(section: Mapping[str, Any], name: str, file: str) -> IndicatorConfig:
    allowed = {"weight", "missing", "benchmark", "source", "note"}
    table = _table(section, name, file, allowed, under="indicator")
    here = f"{file}: indicator.{name}"
    benchmark = None
    if table.get("benchmark") is not None:
        benchmark = _number(table, "benchmark", here)
        if benchmark <= 0:
            raise GradingError(f"{here}.benchmark must be above 0, not {benchmark:g}")
    return IndicatorConfig(
        weight=_number(table, "weight", here),
        missing=choice(
            Missing, table.get("missing", Missing.NOT_GRADED), f"{here}.missing", GradingError
        ),
        source=str(table["source"]),
        benchmark=benchmark,
    )


def _bands(grades: Mapping[str, Any], method: GradeMethod, file: str) -> dict[Grade, float]:
    bands = _table(grades, method.value, file, {"A", "B", "C", "note"}, under="grades")
    here = f"{file}: grades.{method}"
    limits = {g: _number(bands, g.value, here) for g in (Grade.A, Grade.B, Grade.C)}
    a, b, c = limits.values()
    if method is GradeMethod.RANK and not a <= b <= c <= 100:
        raise GradingError(f"{here}: shares must rise from A to C, up to 100: A <= B <= C")
    if method is GradeMethod.SCORE and not a >= b >= c:
        raise GradingError(f"{here}: totals must fall from A to C: A >= B >= C")
    return limits


def load_config(path: Path | None = None) -> GradingConfig:
    """A grading configuration from a TOML file in the format of the shipped default."""
    path = DEFAULTS if path is None else path
    where = path.name
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise GradingError(f"{path}: {err}") from None
    unknown = set(raw) - {"edition", "scoring", "indicator", "grades"}
    if unknown:
        raise GradingError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    if not str(raw.get("edition", "")).strip():
        raise GradingError(f"{where}: edition is required: it names the configuration on reports")

    scoring = _table(
        raw, "scoring", where, {"benchmark", "benchmark_factor", "cap", "min_land_mu", "source"}
    )
    benchmark = choice(
        Benchmark, scoring.get("benchmark"), f"{where}: scoring.benchmark", GradingError
    )
    factor = _number(scoring, "benchmark_factor", f"{where}: scoring")
    if factor <= 0:
        raise GradingError(f"{where}: scoring.benchmark_factor must be above 0, not {factor:g}")
    cap = _number(scoring, "cap", f"{where}: scoring", minimum=1.0)

    section = _table(raw, "indicator", where, {i.value for i in Indicator})
    missing = [i.value for i in Indicator if i.value not in section]
    if missing:
        raise GradingError(f"{where}: indicator.{missing[0]} is required")
    indicators = {i: _indicator(section, i.value, where) for i in Indicator}
    total = sum(c.weight for c in indicators.values())
    if not math.isclose(total, 100.0, abs_tol=1e-9):
        raise GradingError(f"{where}: indicator weights add up to {total:g}, not 100")
    if benchmark is Benchmark.FIXED:
        for indicator, config in indicators.items():
            if config.weight > 0 and config.benchmark is None:
                raise GradingError(
                    f"{where}: indicator.{indicator}.benchmark is required with a fixed benchmark"
                )

    grades = _table(raw, "grades", where, {"method", "rank", "score", "source"})
    method = choice(GradeMethod, grades.get("method"), f"{where}: grades.method", GradingError)
    # Both tables are checked when present, so that switching method finds no surprise.
    limits = {m: _bands(grades, m, where) for m in GradeMethod if m is method or m.value in grades}
    return GradingConfig(
        edition=str(raw["edition"]),
        indicators=indicators,
        benchmark=benchmark,
        benchmark_factor=factor,
        cap=cap,
        min_land_mu=_number(scoring, "min_land_mu", f"{where}: scoring"),
        method=method,
        bands=limits[method],
    )


# Grading.


@dataclass(slots=True)
class _Firm:
    figures: FirmFigures
    values: dict[Indicator, float | None] = field(default_factory=dict)
    ratios: dict[Indicator, tuple[float, float]] = field(default_factory=dict)
    """Numerator and denominator of each value, for the aggregate benchmark."""
    absent: dict[Indicator, str] = field(default_factory=dict)
    """Indicators without the figures to compute them, and what is missing."""
    zero: dict[Indicator, str] = field(default_factory=dict)
    """Indicators scored 0 by their figures (no value added to spread energy over)."""
    reasons: list[str] = field(default_factory=list)
    graded: bool = True


_NO_LAND = (
    "no land area: every 亩均 figure is per mu of land, and the grade compares firms of all "
    "sizes by what they make of their land, so without it the firm cannot be graded"
)


def _prepare(firm: FirmFigures, config: GradingConfig) -> _Firm:
    row = _Firm(firm)
    f = firm
    land = f.land_area_m2
    if land is None or land <= 0:
        row.graded = False
        row.reasons.append(_NO_LAND)
    for name in ("output_value", "energy_tce", "headcount"):
        figure = getattr(f, name)
        if figure is not None and figure < 0:
            row.graded = False
            row.reasons.append(f"{name} is negative ({figure:g}): a figure to correct")
    mu = land / MU_M2 if land is not None and land > 0 else None
    if mu is not None and mu < config.min_land_mu:
        row.graded = False
        row.reasons.append(
            f"land of {mu:.2f} mu is below the {config.min_land_mu:g} mu the grading starts at"
        )

    def ratio(indicator: Indicator, top: float | None, bottom: float | None, missing: str) -> None:
        if top is None or bottom is None:
            row.values[indicator] = None
            row.absent[indicator] = missing
        else:
            row.values[indicator] = top / bottom
            row.ratios[indicator] = (top, bottom)

    va, people = f.value_added, f.headcount
    ratio(Indicator.OUTPUT_VALUE_PER_MU, f.output_value, mu, "no output value")
    ratio(Indicator.TAX_PER_MU, f.tax, mu, "no tax figure")
    if va is not None and va <= 0 and f.energy_tce is not None:
        row.values[Indicator.ENERGY_PER_VALUE_ADDED] = None
        row.zero[Indicator.ENERGY_PER_VALUE_ADDED] = (
            f"value added of {va:g} 万元: no energy per value added, scored 0"
        )
    else:
        missing = "no energy figure" if f.energy_tce is None else "no value added"
        ratio(Indicator.ENERGY_PER_VALUE_ADDED, f.energy_tce, va, missing)
    missing = (
        "no value added" if va is None else "no headcount" if people is None else "headcount 0"
    )
    ratio(Indicator.LABOUR_PRODUCTIVITY, va, people or None, missing)
    if mu is None:  # the land reason says it all
        row.absent.pop(Indicator.OUTPUT_VALUE_PER_MU, None)
        row.absent.pop(Indicator.TAX_PER_MU, None)
    for indicator, what in row.absent.items():
        settings = config.indicators[indicator]
        if settings.weight == 0:
            continue
        if settings.missing is Missing.NOT_GRADED:
            row.graded = False
            row.reasons.append(f"{what}: {indicator} cannot be computed")
        else:
            how = "0" if settings.missing is Missing.ZERO else "the mean score of the others"
            row.reasons.append(f"{what}: {indicator} scored {how}")
    row.reasons.extend(why for i, why in row.zero.items() if config.indicators[i].weight > 0)
    return row


def _benchmark(indicator: Indicator, rows: Sequence[_Firm], config: GradingConfig) -> float:
    settings = config.indicators[indicator]
    if config.benchmark is Benchmark.FIXED:
        if settings.benchmark is None:
            raise GradingError(f"{indicator} has no fixed benchmark")
        return settings.benchmark
    if config.benchmark is Benchmark.MEAN:
        values = [v for r in rows if (v := r.values[indicator]) is not None]
        found = math.fsum(values) / len(values)
    else:
        pairs = [r.ratios[indicator] for r in rows if indicator in r.ratios]
        found = math.fsum(p[0] for p in pairs) / math.fsum(p[1] for p in pairs)
    if found <= 0:
        raise GradingError(
            f"the {config.benchmark} {indicator} of the firms graded is {found:g}: "
            "nothing to score against"
        )
    factor = config.benchmark_factor
    return found / factor if indicator in LOWER_IS_BETTER else found * factor


def benchmarks(firms: Sequence[FirmFigures], config: GradingConfig) -> dict[Indicator, float]:
    """The benchmark of each weighted indicator that some firm graded has a value for."""
    rows = [r for r in (_prepare(f, config) for f in firms) if r.graded]
    return {
        indicator: _benchmark(indicator, rows, config)
        for indicator, settings in config.indicators.items()
        if settings.weight > 0 and any(r.values[indicator] is not None for r in rows)
    }


def _score(indicator: Indicator, value: float, benchmark: float, config: GradingConfig) -> float:
    weight = config.indicators[indicator].weight
    if indicator in LOWER_IS_BETTER:
        ratio = benchmark / value if value > 0 else config.cap
    else:
        ratio = value / benchmark
    return weight * min(max(ratio, 0.0), config.cap)


def _grade(rank: int, total: float, graded: int, config: GradingConfig) -> Grade:
    for grade in (Grade.A, Grade.B, Grade.C):
        limit = config.bands[grade]
        if config.method is GradeMethod.RANK:
            # In the top p per cent: fewer than p per cent of the firms rank above.
            if Fraction(rank - 1, graded) < Fraction(str(limit)) / 100:
                return grade
        elif total >= limit:
            return grade
    return Grade.D


def grade(firms: Sequence[FirmFigures], config: GradingConfig) -> list[FirmGrade]:
    """Grade ``firms`` against each other; graded firms first, best first, then the others.

    - A firm without land area is not graded (nor one below ``min_land_mu``): see ``reasons``.
    - A firm without the figures of an indicator is not graded, scored 0 on it, or given the
      mean score of the firms that have it, as that indicator's ``missing`` says; indicators
      of weight 0 need no figures. A firm with value added of 0 or less scores 0 on energy per
      value added; negative tax or value added score 0 where they are divided.
    - Benchmarks come from the firms graded (or the configuration, when fixed).
    - Firms whose totals are equal to 9 decimal places share a rank (1, 2, 2, 4) and a grade;
      they are listed by code. By rank, a firm is in the top p per cent when fewer than p per
      cent of the graded firms rank above it.
    """
    codes = [f.code for f in firms]
    if len(set(codes)) != len(codes):
        twice = sorted({c for c in codes if codes.count(c) > 1})
        raise GradingError(f"firm(s) listed twice: {', '.join(twice)}")
    rows = [_prepare(f, config) for f in firms]
    graded = [r for r in rows if r.graded]
    weighted = [i for i, s in config.indicators.items() if s.weight > 0]
    scores: dict[str, dict[Indicator, float]] = {r.figures.code: {} for r in graded}
    for indicator in weighted:
        values = {r.figures.code: v for r in graded if (v := r.values[indicator]) is not None}
        if values:
            benchmark = _benchmark(indicator, graded, config)
            for code, value in values.items():
                scores[code][indicator] = _score(indicator, value, benchmark, config)
        given = math.fsum(scores[code][indicator] for code in values) / max(len(values), 1)
        if config.indicators[indicator].missing is not Missing.MEAN_SCORE:
            given = 0.0
        for r in graded:
            if r.figures.code not in values:
                scores[r.figures.code][indicator] = 0.0 if indicator in r.zero else given
    totals = {code: math.fsum(s.values()) for code, s in scores.items()}
    keys = {code: round(total, _TIE_DIGITS) for code, total in totals.items()}
    order = sorted(graded, key=lambda r: (-keys[r.figures.code], r.figures.code))
    results = []
    for r in order:
        code = r.figures.code
        rank = 1 + sum(1 for k in keys.values() if k > keys[code])
        results.append(
            FirmGrade(
                code=code,
                values=dict(r.values),
                scores=scores[code],
                total=totals[code],
                grade=_grade(rank, totals[code], len(graded), config),
                rank=rank,
                reasons=tuple(r.reasons),
            )
        )
    results.extend(
        FirmGrade(
            code=r.figures.code,
            values=dict(r.values),
            scores={},
            total=None,
            grade=None,
            rank=None,
            reasons=tuple(r.reasons),
        )
        for r in sorted((r for r in rows if not r.graded), key=lambda r: r.figures.code)
    )
    return results
