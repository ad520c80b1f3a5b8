"""Device profiles, the read planner and value decoding with scale, sentinels and ranges."""

from __future__ import annotations

import struct
import tomllib
from pathlib import Path

import pytest

from profiles.codec import DataType
from profiles.files import ConfigError
from profiles.model import Point, Profile, library, load_profile
from profiles.plan import PlanError, plan_reads
from wire.catalogue import Kind, metric
from wire.payload import Quality

pytestmark = pytest.mark.unit


def profile(points: str, header: str = "") -> Profile:
    text = f'[profile]\nid = "t"\ndescription = "test"\nsource = "test"\n{header}\n{points}'
    return Profile.model_validate(tomllib.loads(text))


def point(name: str, address: int, kind: str = "uint16", table: str = "holding") -> str:
    return f'[[points]]\nname = "{name}"\naddress = {address}\ntype = "{kind}"\ntable = "{table}"\n'


def test_every_library_profile_loads_and_plans() -> None:
    assert library(), "the library ships profiles"
    for ref in library():
        loaded = load_profile(ref)
        assert loaded.id == ref
        assert plan_reads(loaded)


def test_adjacent_points_become_one_request() -> None:
    plan = plan_reads(profile(point("a", 0, "float32") + point("b", 2, "float32")))
    assert [(r.function_code, r.address, r.count) for r in plan] == [(3, 0, 4)]
    assert [(s.point.name, s.offset, s.size) for s in plan[0].slots] == [("a", 0, 2), ("b", 2, 2)]


def test_small_holes_are_read_through_and_large_ones_split() -> None:
    p = profile(point("a", 0) + point("b", 5) + point("c", 40))
    assert [(r.address, r.count) for r in plan_reads(p, max_gap=8)] == [(0, 6), (40, 1)]
    assert [(r.address, r.count) for r in plan_reads(p, max_gap=0)] == [(0, 1), (5, 1), (40, 1)]


def test_requests_respect_the_register_limit_and_tables() -> None:
    points = "".join(point(f"p{i}", i * 2, "uint32") for i in range(70))
    points += point("i", 0, "int16", table="input") + point("c", 3, "bits", table="coil")
    plan = plan_reads(profile(points), max_registers=125)
    holding = [(r.address, r.count) for r in plan if r.function_code == 3]
    assert holding == [(0, 124), (124, 16)]
    assert [(r.function_code, r.address, r.count) for r in plan if r.function_code != 3] == [
        (1, 3, 1),
        (4, 0, 1),
    ]


def test_one_request_per_point_quirk() -> None:
    plan = plan_reads(profile(point("a", 0) + point("b", 1)), one_per_point=True)
    assert [(r.address, r.count) for r in plan] == [(0, 1), (1, 1)]


def test_a_point_larger_than_the_limit_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="needs 4 words"):
        plan_reads(profile(point("a", 0, "float64")), max_registers=2)


def test_values_get_scale_offset_sentinel_and_range() -> None:
    p = profile(
        '[[points]]\nname = "energy_import_kwh"\naddress = 0\ntype = "uint32"\nscale = 0.01\n'
        "not_available = 0xFFFFFFFF\n"
        '[[points]]\nname = "temp_c"\naddress = 2\ntype = "int16"\nscale = 0.1\noffset = -40\n'
        "min = -20\nmax = 80\n"
    )
    (request,) = plan_reads(p)
    energy, temperature = request.slots
    assert energy.value([0x0001, 0x86A0, 600]) == (100_000 * 0.01, Quality.GOOD)
    assert energy.value([0xFFFF, 0xFFFF, 600]) == (None, Quality.BAD)
    assert temperature.value([0, 0, 600]) == (600 * 0.1 - 40, Quality.GOOD)
    assert temperature.value([0, 0, 1300]) == (1300 * 0.1 - 40, Quality.UNCERTAIN)


def test_nan_floats_are_bad_quality() -> None:
    (request,) = plan_reads(profile(point("x", 0, "float32")))
    hi, lo = struct.unpack(">HH", struct.pack(">f", float("nan")))
    assert request.slots[0].value([hi, lo]) == (None, Quality.BAD)


def test_word_order_default_and_override() -> None:
    points = point("a", 0, "float32") + point("b", 2, "float32") + 'order = "ABCD"\n'
    (request,) = plan_reads(profile(points, header='word_order = "CDAB"'))
    words = [0x0000, 0x3F80, 0x3F80, 0x0000]  # 1.0 word-swapped, then 1.0 big-endian
    assert [slot.value(words)[0] for slot in request.slots] == [1.0, 1.0]


@pytest.mark.parametrize(
    ("points", "problem"),
    [
        (point("a", 0) + point("a", 1), "defined twice"),
        (point("voltage_l1_v", 0) + 'unit = "kV"\n', "is in V, not kV"),
        (point("energy_import_kwh", 0, "uint32") + 'kind = "gauge"\n', "is a counter"),
        (point("c", 0, "uint16", table="coil"), "use type 'bits'"),
        (point("s", 0, "string") + "length = 4\n", "device metadata"),
        (point("z", 0) + "scale = 0\n", "non-zero"),
        (point("Bad-Name", 0), "points.0.name"),
        (point("a", 0) + "colour = 1\n", "Extra inputs"),
    ],
)
def test_profile_mistakes_are_named(points: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        profile(points)


def test_profile_files_report_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "meter.toml"
    path.write_text('[profile]\nid = "meter"\ndescription = "d"\nsource = "s"\n' + point("a", -1))
    with pytest.raises(ConfigError, match=rf"{path}: points\.0\.address"):
        load_profile("meter.toml", tmp_path)
    with pytest.raises(ConfigError, match="no profile 'nope' in the library"):
        load_profile("nope")


def library_profiles() -> list[Profile]:
    return [load_profile(ref) for ref in library()]


def test_library_profiles_use_catalogue_metrics_only() -> None:
    for loaded in library_profiles():
        unknown = [p.name for p in loaded.points if metric(p.name) is None]
        assert not unknown, f"{loaded.id} has points outside the catalogue: {unknown}"


@pytest.mark.parametrize(
    ("abcd", "cdab"),
    [("zayton-meter-f32", "zayton-meter-f32-cdab"), ("zayton-meter-u32", "zayton-meter-u32-cdab")],
)
def test_word_swapped_twins_differ_only_in_word_order(abcd: str, cdab: str) -> None:
    plain, swapped = load_profile(abcd), load_profile(cdab)
    assert plain.profile.word_order == "ABCD"
    assert swapped.profile.word_order == "CDAB"
    assert plain.points == swapped.points
    header_fields = {"id", "description", "model", "word_order"}
    assert plain.profile.model_dump(exclude=header_fields) == swapped.profile.model_dump(
        exclude=header_fields
    )
    plain_plan = [(r.function_code, r.address, r.count) for r in plan_reads(plain)]
    assert plain_plan == [(r.function_code, r.address, r.count) for r in plan_reads(swapped)]


# A counter passes through every raw value, so a sentinel would turn a real reading into a gap.
# The original 3-phase meter profile predates that rule and is kept as it is for now.
KNOWN_COUNTER_SENTINELS = {("zayton-3ph-meter", "energy_import_kwh")}


def test_library_counters_have_no_not_available_value() -> None:
    counters = [
        (loaded.id, p)
        for loaded in library_profiles()
        for p in loaded.points
        if p.kind_or_catalogue is Kind.COUNTER
    ]
    assert counters, "the library has counters"
    with_sentinel = {(ref, p.name) for ref, p in counters if p.not_available is not None}
    assert with_sentinel <= KNOWN_COUNTER_SENTINELS


# Requests per library profile with the default max_gap of 8: one per table, because every
# table's points lie within 8 registers of each other (the 3-phase meter's import energy sits
# alone at holding 100).
EXPECTED_REQUESTS: dict[str, list[tuple[int, int, int]]] = {
    "zayton-3ph-meter": [(3, 100, 2), (4, 0, 14)],
    "zayton-meter-f32": [(3, 0, 4), (4, 0, 24)],
    "zayton-meter-f32-cdab": [(3, 0, 4), (4, 0, 24)],
    "zayton-meter-u32": [(3, 0, 23)],
    "zayton-meter-u32-cdab": [(3, 0, 23)],
    "zayton-gas-totalizer": [(3, 0, 6), (4, 0, 2)],
    "zayton-steam-meter": [(3, 0, 6), (4, 0, 6)],
    "zayton-water-meter": [(3, 0, 7)],
    "zayton-pv-inverter": [(3, 0, 4), (4, 0, 7)],
    "zayton-boiler": [(3, 0, 9), (4, 0, 8)],
    "zayton-air-compressor": [(3, 0, 8)],
    "zayton-line-plc": [(2, 0, 1), (3, 0, 6)],
    # Vendor meters: their register blocks lie further apart than 8, hence several requests.
    "chint-dtsu666": [(3, 0x101E, 12), (3, 0x2006, 22), (3, 0x202A, 2), (3, 0x2044, 2)],
    "eastron-sdm630": [(4, 0x00, 12), (4, 0x34, 24)],
    "eastron-sdm120": [(4, 0x00, 14), (4, 0x18, 8), (4, 0x46, 6)],
    "acrel-adw300": [(3, 20, 18), (3, 62, 4)],
}


def test_the_request_table_covers_the_library() -> None:
    assert set(EXPECTED_REQUESTS) == set(library())


@pytest.mark.parametrize(("ref", "expected"), sorted(EXPECTED_REQUESTS.items()))
def test_library_profile_plans_to_the_expected_requests(
    ref: str, expected: list[tuple[int, int, int]]
) -> None:
    plan = plan_reads(load_profile(ref))
    assert len(plan) == len(expected)
    assert [(r.function_code, r.address, r.count) for r in plan] == expected


@pytest.mark.parametrize(
    ("type_", "scale", "rollover", "modulus"),
    [
        ("uint16", 1.0, None, 65_536.0),
        ("uint32", 0.01, None, 2**32 * 0.01),
        ("uint64", 0.001, None, 2**64 * 0.001),
        ("uint32", 0.1, 100_000_000.0, 100_000_000.0),  # a display of 99999999.9
        ("float32", 1.0, None, None),
        ("int32", 1.0, None, None),
    ],
)
def test_counter_modulus_follows_the_register_or_the_rollover(
    type_: str, scale: float, rollover: float | None, modulus: float | None
) -> None:
    point = Point(
        name="energy_import_kwh", address=0, type=DataType(type_), scale=scale, rollover=rollover
    )
    assert point.modulus() == pytest.approx(modulus)


def test_rollover_is_for_counters_only() -> None:
    with pytest.raises(ValueError, match="counters only"):
        Point(name="active_power_kw", address=0, type=DataType.UINT32, rollover=1000.0)
