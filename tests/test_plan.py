"""Plan targets as data: the shipped plan against its documents, red/amber/green by hand-worked
arithmetic, bad files, and the plan in PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date
from pathlib import Path

import psycopg
import pytest

from api.plan import (
    INDICATORS,
    Counting,
    Indicator,
    Level,
    PlanError,
    Rag,
    Target,
    elapsed_fraction,
    expected,
    load_database,
    load_file,
    load_into,
    seed_defaults,
    status,
)

# Every target of the targets table in ../shared/domain.md, as the seed documents state it:
# (id, level, scope, indicator, counting, value, unit, start year, end year).
SHIPPED = [
    ("fujian-energy-intensity-decline-2021-2025", "province", "fujian",
     "energy_intensity_decline", "decline", None, "%", 2021, 2025),
    ("fujian-key-processes-digitalised-share-2021-2025", "province", "fujian",
     "key_processes_digitalised_share", "level", 66, "%", 2021, 2025),
    ("fujian-industrial-internet-demo-platforms-2021-2025", "province", "fujian",
     "industrial_internet_demo_platforms", "cumulative", 20, "platforms", 2021, 2025),
    ("fujian-green-factories-2021-2025", "province", "fujian",
     "green_factories", "cumulative", 300, "factories", 2021, 2025),
    ("fujian-green-parks-2021-2025", "province", "fujian",
     "green_parks", "cumulative", 20, "parks", 2021, 2025),
    ("fujian-labour-productivity-2021-2025", "province", "fujian",
     "labour_productivity", "level", 40, "万元/人", 2021, 2025),
    ("licheng-firms-onboarded-per-year-2021-2025", "district", "licheng",
     "firms_onboarded", "per_year", 35, "firms", 2021, 2025),
    ("licheng-g5-industrial-internet-projects-2021-2025", "district", "licheng",
     "g5_industrial_internet_projects", "cumulative", 1, "projects", 2021, 2025),
    ("licheng-industrial-internet-platforms-2021-2025", "district", "licheng",
     "industrial_internet_platforms", "cumulative", 1, "platforms", 2021, 2025),
    ("licheng-digital-lines-per-year-2021-2025", "district", "licheng",
     "digital_lines", "per_year", 4, "lines", 2021, 2025),
    ("licheng-digital-workshops-per-year-2021-2025", "district", "licheng",
     "digital_workshops", "per_year", 1, "workshops", 2021, 2025),
    ("licheng-energy-saving-projects-per-year-2021-2025", "district", "licheng",
     "energy_saving_projects", "per_year", 2, "projects", 2021, 2025),
    ("licheng-high-tech-zone-firms-onboarded-2022-2024", "zone", "licheng-high-tech-zone",
     "firms_onboarded", "cumulative", 130, "firms", 2022, 2024),
    ("licheng-high-tech-zone-industrial-internet-platforms-2022-2024", "zone",
     "licheng-high-tech-zone", "industrial_internet_platforms", "cumulative", 8, "platforms",
     2022, 2024),
    ("licheng-high-tech-zone-digital-workshops-2022-2024", "zone", "licheng-high-tech-zone",
     "digital_workshops", "cumulative", 5, "workshops", 2022, 2024),
    ("licheng-high-tech-zone-output-value-above-scale-2022-2024", "zone",
     "licheng-high-tech-zone", "output_value_above_scale", "level", 530, "亿元", 2022, 2024),
    ("licheng-high-tech-zone-output-value-per-mu-2022-2024", "zone", "licheng-high-tech-zone",
     "output_value_per_mu", "level", 1100, "万元/亩", 2022, 2024),
    ("licheng-high-tech-zone-tax-per-mu-2022-2024", "zone", "licheng-high-tech-zone",
     "tax_per_mu", "level", 30, "万元/亩", 2022, 2024),
    ("licheng-high-tech-zone-energy-saving-projects-per-year-2022-2024", "zone",
     "licheng-high-tech-zone", "energy_saving_projects", "per_year", 1, "projects", 2022, 2024),
    ("licheng-high-tech-zone-energy-saving-projects-2022-2024", "zone", "licheng-high-tech-zone",
     "energy_saving_projects", "cumulative", 5, "projects", 2022, 2024),
    ("quanzhou-etdz-firms-onboarded-2021-2025", "zone", "quanzhou-etdz",
     "firms_onboarded", "cumulative", 50, "firms", 2021, 2025),
    ("quanzhou-etdz-gdp-energy-intensity-decline-2021-2025", "zone", "quanzhou-etdz",
     "gdp_energy_intensity_decline", "decline", None, "%", 2021, 2025),
    ("quanzhou-etdz-gdp-per-km2-2021-2025", "zone", "quanzhou-etdz",
     "gdp_per_km2", "level", 26.7, "亿元/km2", 2021, 2025),
]  # fmt: skip

SEEDS = {
    "fujian": "001 福建省“十四五”制造业高质量发展专项规划",
    "licheng": "000 泉州市鲤城区“十四五”制造业发展专项规划",
    "licheng-high-tech-zone": "002 泉鲤政办〔2022〕22号 鲤城高新区转型提质三年行动方案(2022-2024)",
    "quanzhou-etdz": "003 泉州经济技术开发区国民经济和社会发展第十四个五年规划纲要",
}


@pytest.mark.unit
def test_the_shipped_plan_is_the_targets_table_with_its_sources() -> None:
    plan = load_file()
    found = [
        (
            t.id, t.level.value, t.scope, t.indicator.value, t.counting.value, t.value, t.unit,
            t.start_year, t.end_year,
        )
        for t in plan
    ]  # fmt: skip
    assert sorted(found, key=str) == sorted(SHIPPED, key=str)
    for target in plan:
        assert target.source.startswith(SEEDS[target.scope]), target.id
        assert target.name.strip()


@pytest.mark.unit
def test_figures_assigned_from_above_ship_without_a_value_and_say_who_assigns_them() -> None:
    plan = load_file()
    unset = [t for t in plan if t.value is None]
    assert {t.id for t in unset} == {
        "fujian-energy-intensity-decline-2021-2025",
        "quanzhou-etdz-gdp-energy-intensity-decline-2021-2025",
    }
    assert all(t.binding and t.counting is Counting.DECLINE for t in unset)
    assert "state" in plan.target("fujian-energy-intensity-decline-2021-2025").note
    assert "city" in plan.target("quanzhou-etdz-gdp-energy-intensity-decline-2021-2025").note
    with pytest.raises(PlanError, match="fujian-energy-intensity-decline-2021-2025 has no value"):
        status(unset[0], 3.0, 0.5)
    # Fujian's labour productivity starts from the plan's 2020 figure.
    assert plan.target("fujian-labour-productivity-2021-2025").baseline == 38.56


@pytest.mark.unit
def test_every_indicator_names_its_unit_and_countings() -> None:
    assert set(INDICATORS) == set(Indicator)
    assert all(info.countings and info.unit for info in INDICATORS.values())


def target(counting: str, value: float | None, baseline: float | None = None) -> Target:
    indicator = {
        "cumulative": Indicator.FIRMS_ONBOARDED,
        "per_year": Indicator.FIRMS_ONBOARDED,
        "level": Indicator.LABOUR_PRODUCTIVITY,
        "ceiling": Indicator.ENERGY_CONSUMPTION,
        "decline": Indicator.ENERGY_INTENSITY_DECLINE,
    }[counting]
    return Target(
        id=f"t-{counting}",
        level=Level.ZONE,
        scope="z",
        indicator=indicator,
        name="test",
        counting=Counting(counting),
        unit=INDICATORS[indicator].unit,
        start_year=2022,
        end_year=2024,
        source="test",
        value=value,
        baseline=baseline,
    )


# (target, actual, elapsed, expected by now, colour); margin 10%.
CASES = [
    # Cumulative 130 firms, half the period gone: 130 × 0.5 = 65 expected.
    (target("cumulative", 130), 65.0, 0.5, 130 * 0.5, Rag.GREEN),
    (target("cumulative", 130), 58.5, 0.5, 65.0, Rag.AMBER),  # 65 − 10% × 65 = 58.5: amber
    (target("cumulative", 130), 58.4, 0.5, 65.0, Rag.RED),
    (target("cumulative", 130), 0.0, 0.0, 0.0, Rag.GREEN),  # nothing expected on day one
    # A stock of 40 at the start: 40 + (130 − 40) × 0.5 = 85 expected.
    (target("cumulative", 130, baseline=40.0), 80.0, 0.5, 40 + 90 * 0.5, Rag.AMBER),
    # 35 a year, a quarter of the year gone: 8.75 expected; 7.875 is the amber floor.
    (target("per_year", 35), 8.0, 0.25, 35 * 0.25, Rag.AMBER),
    (target("per_year", 35), 7.8, 0.25, 8.75, Rag.RED),
    # Level from 38.56 to 40 with 40% gone: 38.56 + 1.44 × 0.4 = 39.136.
    (target("level", 40, baseline=38.56), 39.2, 0.4, 38.56 + (40 - 38.56) * 0.4, Rag.GREEN),
    (target("level", 40, baseline=38.56), 35.3, 0.4, 39.136, Rag.AMBER),  # floor 35.2224
    (target("level", 40, baseline=38.56), 35.2, 0.4, 39.136, Rag.RED),
    # Level without a baseline: the level itself, whatever the date.
    (target("level", 40), 39.0, 0.4, 40.0, Rag.AMBER),
    (target("level", 40), 40.0, 0.01, 40.0, Rag.GREEN),
    # Ceiling of 1000 tce, half gone: at most 500 by now, amber up to 550.
    (target("ceiling", 1000), 480.0, 0.5, 1000 * 0.5, Rag.GREEN),
    (target("ceiling", 1000), 550.0, 0.5, 500.0, Rag.AMBER),
    (target("ceiling", 1000), 550.1, 0.5, 500.0, Rag.RED),
    # A 14% decline, half gone: a constant yearly rate reaches 1 − 0.86^0.5 = 7.26381% by now;
    # the amber floor is 7.26381 × 0.9 = 6.53743.
    (target("decline", 14), 7.3, 0.5, (1 - math.sqrt(0.86)) * 100, Rag.GREEN),
    (target("decline", 14), 6.6, 0.5, 7.26381, Rag.AMBER),
    (target("decline", 14), 6.5, 0.5, 7.26381, Rag.RED),
    (target("decline", 14), 14.0, 1.0, 14.0, Rag.GREEN),
]


@pytest.mark.unit
@pytest.mark.parametrize(("goal", "actual", "elapsed", "by_now", "rag"), CASES)
def test_status_by_hand(
    goal: Target, actual: float, elapsed: float, by_now: float, rag: Rag
) -> None:
    found = status(goal, actual, elapsed)
    assert found.expected == pytest.approx(by_now, abs=1e-5)
    assert found.rag is rag, found.reason


@pytest.mark.unit
def test_the_margin_is_configurable_and_the_reason_gives_the_figures() -> None:
    zone = load_file().target("licheng-high-tech-zone-firms-onboarded-2022-2024")
    # 130 × 0.5 = 65 expected; 55 is 15% below it: red at 10%, amber at 20%.
    assert status(zone, 55.0, 0.5).rag is Rag.RED
    found = status(zone, 55.0, 0.5, margin=0.2)
    assert found.rag is Rag.AMBER
    assert found.reason == (
        "55 firms against 65 firms expected by now (target 130 firms by 2024; "
        "50% of the period gone): within 20% below the expected value"
    )
    with pytest.raises(PlanError, match="margin"):
        status(zone, 55.0, 0.5, margin=1.5)
    with pytest.raises(PlanError, match="elapsed"):
        status(zone, 55.0, 1.2)
    shares = load_file().target("fujian-key-processes-digitalised-share-2021-2025")
    assert "no baseline" in status(shares, 50.0, 0.5).reason


@pytest.mark.unit
def test_how_much_of_the_period_has_gone() -> None:
    zone = load_file().target("licheng-high-tech-zone-firms-onboarded-2022-2024")
    # 2022 and 2023 have 365 days, 2024 has 366: 1096 in all, 730 gone by 2023-12-31.
    assert elapsed_fraction(zone, date(2023, 12, 31)) == pytest.approx(730 / 1096)
    assert elapsed_fraction(zone, date(2021, 6, 1)) == 0.0
    assert elapsed_fraction(zone, date(2025, 1, 1)) == 1.0
    yearly = load_file().target("licheng-high-tech-zone-energy-saving-projects-per-year-2022-2024")
    # A per-year target: of its own year. 31 + 29 + 31 = 91 days of 366 by 31 March 2024.
    assert elapsed_fraction(yearly, date(2024, 3, 31)) == pytest.approx(91 / 366)
    with pytest.raises(PlanError, match="sets no value for 2025"):
        elapsed_fraction(yearly, date(2025, 3, 31))
    assert expected(yearly, 91 / 366) == pytest.approx(1 * 91 / 366)
    # 1 × 91/366 = 0.25 expected; none yet is more than 10% below.
    found = status(yearly, 0.0, elapsed_fraction(yearly, date(2024, 3, 31)))
    assert found.rag is Rag.RED
    assert "(target 1 projects a year; 24.86% of the year gone)" in found.reason


GOOD = """
[[target]]
id = "z-firms"
level = "zone"
scope = "z"
indicator = "firms_onboarded"
name = "企业上云上平台"
counting = "cumulative"
value = 130
unit = "firms"
start_year = 2022
end_year = 2024
source = "test plan"

[[target]]
id = "z-decline"
level = "zone"
scope = "z"
indicator = "gdp_energy_intensity_decline"
name = "单位地区生产总值能耗降幅"
counting = "decline"
unit = "%"
start_year = 2021
end_year = 2025
binding = true
source = "test plan"
note = "assigned by the city"
"""


def _replace(old: str, new: str) -> Callable[[str], str]:
    return lambda text: text.replace(old, new, 1)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (_replace('id = "z-firms"\n', ""), r"plan.toml: target\[0\]: id is required"),
        (_replace('id = "z-firms"', 'id = "Z firms"'), r"target\[0\]: id is required"),
        (_replace('source = "test plan"\n', ""), "target z-firms: source is required"),
        (_replace('source = "test plan"', 'source = " "'), "z-firms: source must name"),
        (_replace('scope = "z"\n', ""), "target z-firms: scope is required"),
        (_replace('scope = "z"', 'scope = "Z Zone"'), "z-firms: scope must be"),
        (_replace('level = "zone"', 'level = "park"'), "z-firms: level must be one of"),
        (_replace("firms_onboarded", "firms_on_board"), "z-firms: indicator must be one of"),
        (_replace('"cumulative"', '"sometimes"'), "z-firms: counting must be one of"),
        (_replace("firms_onboarded", "tax_per_mu"), "z-firms: counting cumulative does not fit"),
        (_replace('unit = "firms"', 'unit = "家"'), "z-firms: unit of firms_onboarded is 'firms'"),
        (_replace("start_year = 2022", 'start_year = "2022"'), "z-firms: start_year must be"),
        (_replace("end_year = 2024", "end_year = 2020"), "z-firms: end_year 2020 is before"),
        (_replace("value = 130\n", ""), "z-firms: value is missing: a note must say who"),
        (_replace("value = 130", 'value = "130"'), "z-firms: value must be a number"),
        (_replace("value = 130", "value = -1"), "z-firms: value must be >= 0"),
        (_replace('note = "assigned by the city"', "value = 120.0"), "z-decline: value must be"),
        (_replace("value = 130", "value = 130\nbaseline = 9"), None),  # allowed: cumulative
        (_replace("binding = true", "binding = true\nbaseline = 9"), "z-decline: baseline only"),
        (_replace("binding = true", 'binding = "yes"'), "z-decline: binding must be true"),
        (_replace("value = 130", "value = 130\ncolour = 1"), "z-firms: unknown field"),
        (lambda t: t.replace('id = "z-decline"', 'id = "z-firms"'), "two targets with id z-firms"),
        (
            lambda t: t + t.split("\n\n")[0].replace('"z-firms"', '"z-firms-2"'),
            "targets z-firms and z-firms-2 both set firms_onboarded",
        ),
        (lambda t: t + "\n[[goal]]\n", "unknown section"),
        (lambda t: t + "\n[[target]\n", "plan.toml"),
    ],
)
def test_bad_plans_are_refused_with_the_target_and_field(
    tmp_path: Path, edit: Callable[[str], str], problem: str | None
) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(edit(GOOD))
    if problem is None:
        assert len(load_file(path)) == 2
        return
    with pytest.raises(PlanError, match=problem):
        load_file(path)


@pytest.mark.integration
def test_the_plan_in_postgresql(migrated_database: str, tmp_path: Path) -> None:
    dsn = migrated_database
    shipped = load_file()
    assert seed_defaults(dsn) == len(shipped) == len(SHIPPED)
    assert seed_defaults(dsn) == 0  # only into an empty table
    with psycopg.connect(dsn) as conn:
        assert load_database(conn).targets == shipped.targets
    # A file replaces the working plan, all or nothing.
    path = tmp_path / "plan.toml"
    path.write_text(GOOD)
    assert load_into(dsn, path) == 2
    with psycopg.connect(dsn) as conn:
        working = load_database(conn)
    assert [t.id for t in working] == ["z-decline", "z-firms"]
    assert working.target("z-decline").value is None
    path.write_text(GOOD.replace("value = 130", "value = 140") + "\n[[oops]]\n")
    with pytest.raises(PlanError):
        load_into(dsn, path)
    with psycopg.connect(dsn) as conn:
        assert load_database(conn).targets == working.targets
    # The table keeps one target per scope, indicator, counting and period of its own accord,
    # and a row edited into something the plan cannot use is refused by name.
    with psycopg.connect(dsn) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            "INSERT INTO zayton.targets (id, level, scope, indicator, name, counting, value,"
            " unit, start_year, end_year, source) SELECT 'z-copy', level, scope, indicator,"
            " name, counting, value, unit, start_year, end_year, source"
            " FROM zayton.targets WHERE id = 'z-firms'"
        )
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE zayton.targets SET unit = '家' WHERE id = 'z-firms'")
        with pytest.raises(PlanError, match=r"zayton\.targets: target z-firms: unit of"):
            load_database(conn)
