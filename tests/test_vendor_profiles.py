"""Vendor meter profiles: register contents decode to the engineering values their maps document.

Each case below is a register image written by hand from the vendor's documented layout (the
float32 words from the big-endian bytes of the raw value, integers from their hex form), read
through the profile's own read plan and Slot.value, the way the gateway polls a device.
"""

from __future__ import annotations

import pytest

from profiles.codec import DataType, encode
from profiles.model import Profile, load_profile
from profiles.plan import plan_reads
from wire.catalogue import Kind
from wire.payload import Quality

pytestmark = pytest.mark.unit

VENDOR_PROFILES = ("chint-dtsu666", "eastron-sdm630", "eastron-sdm120", "acrel-adw300")

Registers = dict[tuple[str, int], int]
"""A device's register image: (table, address) -> 16-bit word; unlisted registers read 0."""

Reading = tuple[float | None, Quality]


def poll(profile: Profile, registers: Registers) -> dict[str, Reading]:
    """Every point of the profile as the gateway would read it from ``registers``."""
    readings: dict[str, Reading] = {}
    for request in plan_reads(profile):
        words = [
            registers.get((request.table, request.address + i), 0) for i in range(request.count)
        ]
        for slot in request.slots:
            readings[slot.point.name] = slot.value(words)
    return readings


def place(table: str, address: int, *words: int) -> Registers:
    return {(table, address + i): word for i, word in enumerate(words)}


def assert_reads(readings: dict[str, Reading], expected: dict[str, float]) -> None:
    for name, value in expected.items():
        got, quality = readings[name]
        assert got == pytest.approx(value, rel=1e-6, abs=1e-9), name
        assert quality is Quality.GOOD, name


@pytest.mark.parametrize("ref", VENDOR_PROFILES)
def test_vendor_profiles_name_the_device_and_their_source(ref: str) -> None:
    header = load_profile(ref).profile
    assert header.manufacturer
    assert header.model
    assert "Zayton" not in header.source
    assert header.word_order == "ABCD"


@pytest.mark.parametrize("ref", VENDOR_PROFILES)
def test_vendor_energy_points_are_plain_counters(ref: str) -> None:
    loaded = load_profile(ref)
    energy = [p for p in loaded.points if p.name.startswith("energy_")]
    assert {p.name for p in energy} == {"energy_import_kwh", "energy_export_kwh"}
    for point in energy:
        assert point.kind_or_catalogue is Kind.COUNTER
        assert point.not_available is None


def test_dtsu666_floats_are_in_tenths_of_volts_milliamps_and_tenths_of_watts() -> None:
    registers = (
        place("holding", 0x2006, 0x450F, 0xD000)  # Ua 2301.0 (0.1 V)
        | place("holding", 0x2008, 0x450F, 0xD000)  # Ub 2301.0
        | place("holding", 0x200A, 0x450F, 0xD000)  # Uc 2301.0
        | place("holding", 0x200C, 0x45A4, 0x1000)  # Ia 5250.0 (mA)
        | place("holding", 0x2012, 0x47F1, 0x2000)  # Pt 123456.0 (0.1 W)
        | place("holding", 0x202A, 0x4476, 0x4000)  # PFt 985.0 (0.001)
        | place("holding", 0x2044, 0x459C, 0x4000)  # Freq 5000.0 (0.01 Hz)
        | place("holding", 0x101E, 0x449A, 0x5000)  # ImpEp 1234.5 kWh
    )
    readings = poll(load_profile("chint-dtsu666"), registers)
    assert_reads(
        readings,
        {
            "voltage_l1_v": 230.1,
            "voltage_l3_v": 230.1,
            "current_l1_a": 5.25,
            "active_power_kw": 12.3456,
            "power_factor": 0.985,
            "frequency_hz": 50.0,
            "energy_import_kwh": 1234.5,
            "energy_export_kwh": 0.0,
        },
    )


def test_dtsu666_word_order_is_high_word_first() -> None:
    # Ua 2301.0 with its two words swapped reads 0xD000450F: about -8.6e9, not 230.1 V.
    readings = poll(load_profile("chint-dtsu666"), place("holding", 0x2006, 0xD000, 0x450F))
    value, quality = readings["voltage_l1_v"]
    assert value is not None
    assert value < -1e8
    assert quality is Quality.UNCERTAIN


def test_sdm630_reads_engineering_units_from_input_registers() -> None:
    registers = (
        place("input", 0x00, 0x4366, 0x3334)  # 30001 V1 = 230.2 V (Eastron's own example)
        | place("input", 0x06, 0x4120, 0x0000)  # 30007 I1 = 10.0 A
        | place("input", 0x34, 0xC4BB, 0x8000)  # 30053 total power = -1500.0 W (exporting)
        | place("input", 0x3E, 0xBF00, 0x0000)  # 30063 PF = -0.5 (reverse current)
        | place("input", 0x46, 0x4248, 0x0000)  # 30071 frequency = 50.0 Hz
        | place("input", 0x48, 0x4640, 0xE600)  # 30073 import = 12345.5 kWh
    )
    readings = poll(load_profile("eastron-sdm630"), registers)
    assert readings["voltage_l1_v"][0] == pytest.approx(230.2, abs=1e-4)
    assert_reads(
        readings,
        {
            "current_l1_a": 10.0,
            "active_power_kw": -1.5,
            "power_factor": -0.5,
            "frequency_hz": 50.0,
            "energy_import_kwh": 12345.5,
        },
    )


def test_sdm120_publishes_its_single_phase_as_l1() -> None:
    registers = (
        place("input", 0x00, 0x4366, 0x3334)  # 30001 voltage = 230.2 V
        | place("input", 0x0C, 0x450F, 0xC000)  # 30013 active power = 2300.0 W
        | place("input", 0x1E, 0x3F80, 0x0000)  # 30031 PF = 1.0
        | place("input", 0x46, 0x4270, 0x0000)  # 30071 frequency = 60.0 Hz
        | place("input", 0x4A, 0x40E8, 0x0000)  # 30075 export = 7.25 kWh
    )
    readings = poll(load_profile("eastron-sdm120"), registers)
    assert readings["voltage_l1_v"][0] == pytest.approx(230.2, abs=1e-4)
    assert_reads(
        readings,
        {
            "active_power_kw": 2.3,
            "power_factor": 1.0,
            "frequency_hz": 60.0,
            "energy_export_kwh": 7.25,
        },
    )


def test_adw300_integers_are_scaled_to_volts_amps_kilowatts_and_kwh() -> None:
    registers = (
        place("holding", 20, 0x0899)  # Ua 2201 x 0.1 V
        | place("holding", 26, 0x04D2)  # Ia 1234 x 0.01 A
        | place("holding", 36, 0xFFFF, 0xFA24)  # P int32 -1500 W
        | place("holding", 62, 0x0001, 0xE240)  # forward energy 123456 x 0.01 kWh
    )
    readings = poll(load_profile("acrel-adw300"), registers)
    assert_reads(
        readings,
        {
            "voltage_l1_v": 220.1,
            "current_l1_a": 12.34,
            "active_power_kw": -1.5,
            "energy_import_kwh": 1234.56,
            "energy_export_kwh": 0.0,
        },
    )


def test_adw300_energy_is_unsigned_and_voltage_outside_the_range_is_uncertain() -> None:
    registers = place("holding", 20, 0xFFFF) | place("holding", 64, 0x8000, 0x0000)
    readings = poll(load_profile("acrel-adw300"), registers)
    energy, energy_quality = readings["energy_export_kwh"]
    assert energy == pytest.approx(2**31 * 0.01)
    assert energy_quality is Quality.GOOD
    voltage, voltage_quality = readings["voltage_l1_v"]
    assert voltage == pytest.approx(6553.5)
    assert voltage_quality is Quality.UNCERTAIN


# Typical engineering values; each is encoded as the raw register value the profile documents
# (value / scale) and must come back through the read plan unchanged.
TYPICAL: dict[str, float] = {
    "voltage_l1_v": 231.5,
    "voltage_l2_v": 229.8,
    "voltage_l3_v": 230.4,
    "current_l1_a": 12.5,
    "current_l2_a": 11.25,
    "current_l3_a": 13.75,
    "active_power_kw": 8.25,
    "reactive_power_kvar": -1.5,
    "power_factor": 0.875,
    "frequency_hz": 49.98,
    "energy_import_kwh": 10234.5,
    "energy_export_kwh": 321.25,
}


@pytest.mark.parametrize("ref", VENDOR_PROFILES)
def test_typical_values_round_trip_through_each_profile(ref: str) -> None:
    loaded = load_profile(ref)
    registers: Registers = {}
    for point in loaded.points:
        raw = TYPICAL[point.name] / point.scale
        if point.type is not DataType.FLOAT32:
            raw = round(raw)
        words = encode(raw, loaded.encoding(point))
        registers |= place(point.table, point.address, *words)
    readings = poll(loaded, registers)
    assert set(readings) == {p.name for p in loaded.points}
    for name, (value, quality) in readings.items():
        assert value == pytest.approx(TYPICAL[name], rel=1e-5), name
        assert quality is Quality.GOOD, name
