"""The catalogue of standard metric names.

A point name carries its unit as a suffix (``active_power_kw``, ``energy_import_kwh``) so that a
reading is never ambiguous on the wire. ``kind`` says how a value behaves over time: a *gauge* is
an instantaneous value, a *counter* is a cumulative total whose differences are consumption
(handled for wrap, reset and meter replacement), a *state* is an enumerated code.

Devices may report points outside the catalogue (a PLC's own tags); they follow the same naming
rule and are treated as gauges unless their profile says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"
    STATE = "state"


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    unit: str
    kind: Kind
    description: str


def _catalogue(*metrics: Metric) -> dict[str, Metric]:
    return {m.name: m for m in metrics}


_G, _C, _S = Kind.GAUGE, Kind.COUNTER, Kind.STATE

METRICS: dict[str, Metric] = _catalogue(
    # Every device: identity and clock.
    Metric(
        "serial_number", "1", _S, "device serial number; a change means the device was replaced"
    ),
    Metric("device_clock_s", "s", _G, "the device's own clock, Unix seconds (UTC)"),
    # Three-phase electricity meters.
    Metric("voltage_l1_v", "V", _G, "phase L1 to neutral voltage"),
    Metric("voltage_l2_v", "V", _G, "phase L2 to neutral voltage"),
    Metric("voltage_l3_v", "V", _G, "phase L3 to neutral voltage"),
    Metric("current_l1_a", "A", _G, "phase L1 current"),
    Metric("current_l2_a", "A", _G, "phase L2 current"),
    Metric("current_l3_a", "A", _G, "phase L3 current"),
    Metric("active_power_kw", "kW", _G, "total active power, positive when importing"),
    Metric("reactive_power_kvar", "kvar", _G, "total reactive power"),
    Metric("power_factor", "1", _G, "total power factor"),
    Metric("frequency_hz", "Hz", _G, "grid frequency"),
    Metric("energy_import_kwh", "kWh", _C, "cumulative imported active energy"),
    Metric("energy_export_kwh", "kWh", _C, "cumulative exported active energy"),
    # Gas, steam and water.
    Metric("gas_volume_m3", "m3", _C, "cumulative gas volume at standard conditions"),
    Metric("gas_flow_m3h", "m3/h", _G, "gas flow rate"),
    Metric("steam_mass_t", "t", _C, "cumulative steam mass"),
    Metric("steam_flow_th", "t/h", _G, "steam mass flow"),
    Metric("steam_pressure_mpa", "MPa", _G, "steam gauge pressure"),
    Metric("steam_temperature_c", "degC", _G, "steam temperature"),
    Metric("water_volume_m3", "m3", _C, "cumulative water volume"),
    Metric("water_flow_m3h", "m3/h", _G, "water flow rate"),
    # Boilers (with the gas and steam metrics above).
    Metric("flue_temperature_c", "degC", _G, "flue gas temperature at the boiler outlet"),
    Metric("boiler_state", "1", _S, "0 off, 1 firing, 2 fault"),
    # Air compressors (with active_power_kw above).
    Metric("air_pressure_mpa", "MPa", _G, "compressed air gauge pressure at the outlet"),
    Metric("air_flow_m3min", "m3/min", _G, "compressed air delivery (free air)"),
    Metric("compressor_state", "1", _S, "0 stopped, 1 unloaded, 2 loaded, 3 fault"),
    # PV inverters.
    Metric("pv_power_kw", "kW", _G, "inverter AC output power"),
    Metric("pv_energy_daily_kwh", "kWh", _G, "energy yield since local midnight"),
    Metric("pv_energy_total_kwh", "kWh", _C, "lifetime energy yield"),
    Metric("inverter_state", "1", _S, "0 standby, 1 running, 2 fault"),
    # Production lines.
    Metric("production_count", "1", _C, "cumulative units produced"),
    Metric("line_state", "1", _S, "0 idle, 1 running, 2 fault"),
    Metric("line_speed_per_min", "1/min", _G, "units per minute"),
    Metric("line_running", "1", _S, "1 while the line runs"),
)


def metric(name: str) -> Metric | None:
    return METRICS.get(name)


CARRIERS: dict[str, str] = {
    "energy_import_kwh": "electricity",
    "energy_export_kwh": "electricity_export",
    "gas_volume_m3": "natural_gas",
    "steam_mass_t": "steam",
    "water_volume_m3": "water",
    "pv_energy_total_kwh": "pv",
    "production_count": "product",
}
"""What each catalogue counter counts: the energy carrier (or product) its consumption is of."""
