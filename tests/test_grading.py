"""亩均效益 grading: scores worked out by hand, capping, missing figures, ties and bands, and bad
configuration files."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from api.grading import (
    DEFAULTS,
    MU_M2,
    Benchmark,
    FirmFigures,
    FirmGrade,
    Grade,
    GradeMethod,
    GradingConfig,
    GradingError,
    Indicator,
    IndicatorConfig,
    Missing,
    benchmarks,
    grade,
    load_config,
)

pytestmark = pytest.mark.unit

OUT, TAX, ENERGY, LABOUR = (
    Indicator.OUTPUT_VALUE_PER_MU,
    Indicator.TAX_PER_MU,
    Indicator.ENERGY_PER_VALUE_ADDED,
    Indicator.LABOUR_PRODUCTIVITY,
)


def mu(n: float) -> float:
    """``n`` mu in m²: 1 mu = 10,000/15 m²."""
    return n * 10000 / 15


def firm(  # noqa: PLR0917 (one firm's figures read best in a row)
    code: str,
    land_mu: float | None,
    output: float | None,
    value_added: float | None,
    tax: float | None,
    energy: float | None,
    headcount: float | None,
) -> FirmFigures:
    return FirmFigures(
        code=code,
        land_area_m2=None if land_mu is None else mu(land_mu),
        output_value=output,
        value_added=value_added,
        tax=tax,
        energy_tce=energy,
        headcount=headcount,
    )


# Three firms in round numbers (万元, tce, persons):
#            land   output  value added  tax   energy  headcount
#   a        30 mu  36000   6000         1200  1200    200
#   b        15 mu   9000   1500          300   600    100
#   c        45 mu  13500   1800         1350  1080    120
# so that
#            output/mu  tax/mu  tce/万元VA  万元VA/person
#   a        1200       40      0.2         30
#   b         600       20      0.4         15
#   c         300       30      0.6         15
#   mean      700       30      0.4         20
A = firm("a", 30, 36000, 6000, 1200, 1200, 200)
B = firm("b", 15, 9000, 1500, 300, 600, 100)
C = firm("c", 45, 13500, 1800, 1350, 1080, 120)

# Shipped weights: tax 40, output 25, energy 20, labour 15; cap 2 × weight.
A_SCORES = {OUT: 25 * 1200 / 700, TAX: 40 * 40 / 30, ENERGY: 20 * 0.4 / 0.2, LABOUR: 15 * 30 / 20}
B_SCORES = {OUT: 25 * 600 / 700, TAX: 40 * 20 / 30, ENERGY: 20 * 0.4 / 0.4, LABOUR: 15 * 15 / 20}
C_SCORES = {OUT: 25 * 300 / 700, TAX: 40 * 30 / 30, ENERGY: 20 * 0.4 / 0.6, LABOUR: 15 * 15 / 20}
A_TOTAL = 42.857142857 + 53.333333333 + 40 + 22.5  # 158.690476
B_TOTAL = 21.428571429 + 26.666666667 + 20 + 11.25  # 79.345238
C_TOTAL = 10.714285714 + 40 + 13.333333333 + 11.25  # 75.297619


def by_code(results: list[FirmGrade]) -> dict[str, FirmGrade]:
    return {r.code: r for r in results}


def with_indicator(config: GradingConfig, indicator: Indicator, **changes: object) -> GradingConfig:
    indicators = dict(config.indicators)
    indicators[indicator] = dataclasses.replace(indicators[indicator], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(config, indicators=indicators)


def test_a_mu_is_ten_thousand_fifteenths_of_a_square_metre() -> None:
    land = 15 * MU_M2
    assert land == pytest.approx(10000)
    assert round(MU_M2, 2) == 666.67


def test_three_firms_worked_by_hand() -> None:
    config = load_config()
    results = grade([C, A, B], config)
    assert [r.code for r in results] == ["a", "b", "c"]
    found = by_code(results)
    assert found["a"].values == pytest.approx({OUT: 1200, TAX: 40, ENERGY: 0.2, LABOUR: 30})
    assert found["c"].values == pytest.approx({OUT: 300, TAX: 30, ENERGY: 0.6, LABOUR: 15})
    for code, scores, total in (("a", A_SCORES, A_TOTAL), ("b", B_SCORES, B_TOTAL),
                                ("c", C_SCORES, C_TOTAL)):  # fmt: skip
        assert found[code].scores == pytest.approx(scores), code
        assert found[code].total == pytest.approx(total, abs=1e-6), code
        assert found[code].reasons == ()
    # By rank among 3: a has nobody above (0/3 < 20%): A; b has 1/3 above (< 60%): B;
    # c has 2/3 above (< 95%): C.
    assert [(r.rank, r.grade) for r in results] == [(1, Grade.A), (2, Grade.B), (3, Grade.C)]
    assert benchmarks([A, B, C], config) == pytest.approx(
        {OUT: 700, TAX: 30, ENERGY: 0.4, LABOUR: 20}
    )


def test_the_aggregate_benchmark_takes_the_firms_together() -> None:
    config = dataclasses.replace(load_config(), benchmark=Benchmark.AGGREGATE)
    # Land 30 + 15 + 45 = 90 mu; value added 6000 + 1500 + 1800 = 9300; people 420.
    assert benchmarks([A, B, C], config) == pytest.approx(
        {
            OUT: (36000 + 9000 + 13500) / 90,  # 650
            TAX: (1200 + 300 + 1350) / 90,  # 31.67
            ENERGY: (1200 + 600 + 1080) / 9300,  # 0.3097
            LABOUR: 9300 / (200 + 100 + 120),  # 22.14
        }
    )
    a = by_code(grade([A, B, C], config))["a"]
    assert a.scores[TAX] == pytest.approx(40 * 40 / (2850 / 90))  # 50.53


def test_a_benchmark_factor_raises_the_bar_both_ways() -> None:
    config = dataclasses.replace(load_config(), benchmark_factor=2.0)
    # Higher is better: 2 × the mean; lower is better: the mean / 2.
    assert benchmarks([A, B, C], config) == pytest.approx(
        {OUT: 1400, TAX: 60, ENERGY: 0.2, LABOUR: 40}
    )
    a = by_code(grade([A, B, C], config))["a"]
    assert a.scores == pytest.approx(
        {OUT: 25 * 1200 / 1400, TAX: 40 * 40 / 60, ENERGY: 20 * 0.2 / 0.2, LABOUR: 15 * 30 / 40}
    )


def test_fixed_benchmarks_and_the_cap() -> None:
    config = load_config()
    fixed = dataclasses.replace(config, benchmark=Benchmark.FIXED)
    for indicator, value in ((OUT, 500.0), (TAX, 10.0), (ENERGY, 1.0), (LABOUR, 60.0)):
        fixed = with_indicator(fixed, indicator, benchmark=value)
    a = by_code(grade([A, B, C], fixed))["a"]
    assert a.scores == pytest.approx(
        {
            OUT: 25 * 2,  # 1200 / 500 = 2.4, capped at 2 × 25
            TAX: 40 * 2,  # 40 / 10 = 4, capped at 2 × 40
            ENERGY: 20 * 2,  # 1.0 / 0.2 = 5, capped at 2 × 20
            LABOUR: 15 * 30 / 60,  # 0.5: not capped
        }
    )
    assert a.total == pytest.approx(50 + 80 + 40 + 7.5)
    looser = dataclasses.replace(fixed, cap=3.0)
    assert by_code(grade([A], looser))["a"].scores[OUT] == pytest.approx(25 * 1200 / 500)


def test_one_outstanding_firm_is_capped_against_the_mean() -> None:
    # Output per mu 3000, 100 and 200: mean 1100; 3000 / 1100 = 2.73 is capped at 2.
    x = firm("x", 10, 30000, 1000, 100, 100, 50)
    y = firm("y", 10, 1000, 1000, 100, 100, 50)
    z = firm("z", 10, 2000, 1000, 100, 100, 50)
    found = by_code(grade([x, y, z], load_config()))
    assert found["x"].scores[OUT] == 25 * 2
    assert found["y"].scores[OUT] == pytest.approx(25 * 100 / 1100)
    # Everything else equal: each scores the weight (value = mean).
    assert found["y"].scores[TAX] == pytest.approx(40)


def test_grading_by_total() -> None:
    bands = {Grade.A: 120.0, Grade.B: 100.0, Grade.C: 80.0}
    config = dataclasses.replace(load_config(), method=GradeMethod.SCORE, bands=bands)
    found = by_code(grade([A, B, C], config))
    # 158.69 >= 120: A; 79.35 and 75.30 are below 80: D.
    assert [found[c].grade for c in "abc"] == [Grade.A, Grade.D, Grade.D]


def test_twenty_firms_fill_the_rank_bands() -> None:
    # Tax per mu 1 to 20 on 15 mu, all else equal: totals strictly ordered by tax.
    firms = [firm(f"f{n:02d}", 15, 9000, 1500, 15 * n, 600, 100) for n in range(1, 21)]
    results = grade(firms, load_config())
    assert [r.code for r in results[:2]] == ["f20", "f19"]
    # Ranks 1-4 have fewer than 20% of 20 above them (0-3 firms): A; ranks 5-12 fewer than
    # 60% (up to 11 firms): B; ranks 13-19 fewer than 95% (up to 18 firms): C; rank 20: D.
    grades = [r.grade for r in results]
    assert grades == [Grade.A] * 4 + [Grade.B] * 8 + [Grade.C] * 7 + [Grade.D]


def test_ties_share_a_rank_and_a_grade_and_are_listed_by_code() -> None:
    twin = dataclasses.replace(B, code="a-twin-of-b")
    results = grade([B, twin, A, C], load_config())
    assert [(r.code, r.rank) for r in results] == [
        ("a", 1), ("a-twin-of-b", 2), ("b", 2), ("c", 4),
    ]  # fmt: skip
    found = by_code(results)
    assert found["b"].total == found["a-twin-of-b"].total
    # Among 4: b and its twin have 1 firm of 4 above them (25%, under 60%): both B.
    assert found["b"].grade is found["a-twin-of-b"].grade is Grade.B
    # c has 3 of 4 above (75%, under 95%): C.
    assert found["c"].grade is Grade.C
    assert grade(list(reversed([B, twin, A, C])), load_config()) == results


def test_a_firm_without_land_is_not_graded_and_changes_nobody_else() -> None:
    config = load_config()
    landless = firm("landless", None, 50000, 9000, 2000, 100, 100)
    nothing = firm("nothing", 0, 50000, 9000, 2000, 100, 100)
    results = grade([A, landless, B, nothing, C], config)
    assert [r.code for r in results] == ["a", "b", "c", "landless", "nothing"]
    assert results[:3] == grade([A, B, C], config)
    for r in results[3:]:
        assert (r.total, r.grade, r.rank, r.scores) == (None, None, None, {})
        assert len(r.reasons) == 1
        assert r.reasons[0].startswith("no land area: every 亩均 figure is per mu of land")
    # Figures that need no land are still shown.
    assert results[3].values[LABOUR] == 90
    assert results[3].values[OUT] is None


def test_missing_figures_follow_each_indicators_rule() -> None:
    # d reports no energy; its other figures are the means (700, 30, 20 on 15 mu), so the
    # benchmarks stay those of a, b and c.
    d = firm("d", 15, 700 * 15, 1000, 30 * 15, None, 50)
    config = load_config()
    found = by_code(grade([A, B, C, d], config))
    assert found["d"].grade is None
    assert found["d"].reasons == ("no energy figure: energy_per_value_added cannot be computed",)

    zero = with_indicator(config, ENERGY, missing=Missing.ZERO)
    found = by_code(grade([A, B, C, d], zero))
    assert found["d"].scores == pytest.approx({OUT: 25, TAX: 40, ENERGY: 0, LABOUR: 15})
    assert found["d"].reasons == ("no energy figure: energy_per_value_added scored 0",)
    assert found["a"].scores == pytest.approx(A_SCORES)

    mean = with_indicator(config, ENERGY, missing=Missing.MEAN_SCORE)
    found = by_code(grade([A, B, C, d], mean))
    # The mean of a, b and c's energy scores: (40 + 20 + 13.333) / 3 = 24.444.
    assert found["d"].scores[ENERGY] == pytest.approx((40 + 20 + 20 * 0.4 / 0.6) / 3)
    assert found["d"].total == pytest.approx(25 + 40 + 24.444444 + 15)
    assert found["d"].reasons == (
        "no energy figure: energy_per_value_added scored the mean score of the others",
    )


def test_figures_that_cannot_be_divided() -> None:
    config = load_config()
    nobody = firm("nobody", 15, 9000, 1500, 300, 600, 0)
    loss = firm("loss", 15, 9000, -300, -15, 600, 100)
    found = by_code(grade([A, B, C, nobody, loss], config))
    assert found["nobody"].reasons == ("headcount 0: labour_productivity cannot be computed",)
    # Value added below 0: no energy per value added (scored 0), labour productivity −3 and tax
    # per mu −1 score 0 rather than below.
    assert found["loss"].values[ENERGY] is None
    assert found["loss"].scores[ENERGY] == 0
    assert found["loss"].scores[LABOUR] == 0
    assert found["loss"].scores[TAX] == 0
    assert found["loss"].reasons == (
        "value added of -300 万元: no energy per value added, scored 0",
    )
    assert found["loss"].rank == 4


def test_an_indicator_of_weight_zero_needs_no_figures() -> None:
    config = with_indicator(load_config(), LABOUR, weight=0.0)
    config = with_indicator(config, TAX, weight=55.0)
    nobody = firm("nobody", 15, 9000, 1500, 300, 600, None)
    found = by_code(grade([A, B, C, nobody], config))
    assert found["nobody"].grade is not None
    assert LABOUR not in found["nobody"].scores


def test_small_plots_and_bad_figures_are_not_graded() -> None:
    config = dataclasses.replace(load_config(), min_land_mu=20.0)
    found = by_code(grade([A, B, C], config))
    assert found["b"].reasons == ("land of 15.00 mu is below the 20 mu the grading starts at",)
    assert found["a"].rank == 1
    negative = firm("neg", 15, -1, 1500, 300, 600, 100)
    assert grade([negative], load_config())[0].reasons == (
        "output_value is negative (-1): a figure to correct",
    )


def test_figures_that_cannot_be_graded_at_all() -> None:
    with pytest.raises(GradingError, match="listed twice: a"):
        grade([A, B, A], load_config())
    untaxed = [dataclasses.replace(f, tax=0.0) for f in (A, B, C)]
    with pytest.raises(GradingError, match="the mean tax_per_mu of the firms graded is 0"):
        grade(untaxed, load_config())
    assert grade([], load_config()) == []


def test_the_shipped_configuration_cites_its_sources() -> None:
    config = load_config()
    assert config.edition
    assert sum(c.weight for c in config.indicators.values()) == 100
    assert {i: c.weight for i, c in config.indicators.items()} == {
        TAX: 40, OUT: 25, ENERGY: 20, LABOUR: 15,
    }  # fmt: skip
    assert all(c.source.strip() for c in config.indicators.values())
    assert config.benchmark is Benchmark.MEAN
    assert (config.cap, config.benchmark_factor, config.min_land_mu) == (2.0, 1.0, 0.0)
    assert config.method is GradeMethod.RANK
    assert config.bands == {Grade.A: 20, Grade.B: 60, Grade.C: 95}
    assert all(c.missing is Missing.NOT_GRADED for c in config.indicators.values())
    assert all(isinstance(c, IndicatorConfig) for c in config.indicators.values())


def _replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return edit


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (_replace("weight = 40", "weight = 45"), "weights add up to 105, not 100"),
        (_replace("weight = 40", 'weight = "40"'), r"indicator\.tax_per_mu\.weight must be a"),
        (_replace("weight = 40", "weight = -40"), r"indicator\.tax_per_mu\.weight must be a"),
        (_replace("weight = 40\n", ""), r"indicator\.tax_per_mu\.weight is required"),
        (_replace('missing = "not_graded"', 'missing = "guess"'), r"tax_per_mu\.missing must"),
        (_replace("weight = 40", "weight = 40\nbenchmark = 0"), r"tax_per_mu\.benchmark must"),
        (_replace("weight = 40", "weight = 40\ncolour = 1"), r"indicator\.tax_per_mu: unknown"),
        (_replace("[indicator.tax_per_mu]", "[indicator.tax]"), r"indicator: unknown field"),
        (_replace('benchmark = "mean"', 'benchmark = "median"'), r"scoring\.benchmark must be"),
        (
            _replace('benchmark = "mean"', 'benchmark = "fixed"'),
            r"indicator\.output_value_per_mu\.benchmark is required with a fixed benchmark",
        ),
        (_replace("benchmark_factor = 1.0", "benchmark_factor = 0"), r"benchmark_factor must"),
        (_replace("cap = 2.0", "cap = 0.5"), r"scoring\.cap must be a number >= 1"),
        (_replace("cap = 2.0\n", ""), r"scoring\.cap is required"),
        (_replace("min_land_mu = 0", "min_land_mu = -3"), r"scoring\.min_land_mu must be"),
        (_replace("cap = 2.0", "cap = 2.0\nceiling = 3"), r"scoring: unknown field\(s\) ceiling"),
        (_replace('method = "rank"', 'method = "curve"'), r"grades\.method must be one of"),
        (_replace("A = 20", "A = 70"), r"grades\.rank: shares must rise from A to C"),
        (_replace("C = 95", "C = 101"), r"grades\.rank: shares must rise"),
        (_replace("A = 120", "A = 90"), r"grades\.score: totals must fall from A to C"),
        (_replace("B = 60\n", ""), r"grades\.rank\.B is required"),
        (_replace('edition = "Zayton default 2025-1"\n', ""), "edition is required"),
        (
            _replace(
                'source = "weight: Zayton\'s default; definition: seed 001, [Huangyan]"',
                'source = " "',
            ),
            r"indicator\.labour_productivity\.source must say",
        ),
        (_replace("\nsource = ", "\n# source = "), r"scoring\.source must say"),
        (lambda t: t + "\n[weights]\n", r"unknown field\(s\) weights"),
        (lambda t: t + "\n[grades\n", "grading.toml"),
    ],
)
def test_bad_configurations_are_refused_with_the_field(
    tmp_path: Path, edit: Callable[[str], str], problem: str
) -> None:
    path = tmp_path / "grading.toml"
    path.write_text(edit(DEFAULTS.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(GradingError, match=problem):
        load_config(path)


def test_a_missing_indicator_table_is_named(tmp_path: Path) -> None:
    text = DEFAULTS.read_text(encoding="utf-8")
    start = text.index("[indicator.labour_productivity]")
    path = tmp_path / "grading.toml"
    path.write_text(text[:start] + text[text.index("[grades]") :], encoding="utf-8")
    with pytest.raises(GradingError, match=r"indicator\.labour_productivity is required"):
        load_config(path)
