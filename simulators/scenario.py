"""Scenario files: a whole park in TOML, from firms down to the registers of each device.

    [park]                      # the park, its place and its seed
    [[firms]]                   # a firm: sector, land, people, shifts, product and prices
    [[firms.gateways]]          # its gateways and how they reach the platform (5g, wired, ...)
    [[firms.lines]]             # production lines and processes: what uses energy, and why
    firms.devices = [...]       # the Modbus devices: meters, PLCs, boilers, inverters

A device ``measures`` what its meter sees: ``site`` (the firm's boundary), ``workshop:<name>``,
``line:<id>`` or another device (a compressor or a boiler). Every check that can be made before
the park runs is made here, with the file and key in the message.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from profiles.files import ConfigError, load_model
from simulators.faults import Fault
from simulators.shifts import Shifts
from simulators.solar import QUANZHOU_LATITUDE, QUANZHOU_LONGITUDE
from wire.payload import DeviceName, GatewayId, Uplink

SCENARIOS = Path(__file__).parent / "scenarios"
MAX_UNITS_PER_GATEWAY = 247

Identifier = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,47}$")]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sector(StrEnum):
    TEXTILE = "textile"
    """Textile, shoes and apparel."""
    ELECTRONICS = "electronics"
    SOLAR = "solar"
    """PV module assembly."""
    MACHINERY = "machinery"
    """Machinery, foundry and auto parts."""
    PHARMA_FOOD = "pharma_food"


class DeviceType(StrEnum):
    METER = "meter"
    GAS = "gas"
    STEAM = "steam"
    WATER = "water"
    PV = "pv"
    BOILER = "boiler"
    COMPRESSOR = "compressor"
    PLC = "plc"


DEFAULT_PROFILES: dict[DeviceType, str] = {
    DeviceType.METER: "zayton-meter-f32",
    DeviceType.GAS: "zayton-gas-totalizer",
    DeviceType.STEAM: "zayton-steam-meter",
    DeviceType.WATER: "zayton-water-meter",
    DeviceType.PV: "zayton-pv-inverter",
    DeviceType.BOILER: "zayton-boiler",
    DeviceType.COMPRESSOR: "zayton-air-compressor",
    DeviceType.PLC: "zayton-line-plc",
}
MEASURING = frozenset({DeviceType.METER, DeviceType.GAS, DeviceType.STEAM, DeviceType.WATER})


class ParkSection(_Model):
    id: Identifier
    name: str
    district: str | None = None
    latitude: Annotated[float, Field(ge=-90, le=90)] = QUANZHOU_LATITUDE
    longitude: Annotated[float, Field(ge=-180, le=180)] = QUANZHOU_LONGITUDE
    seed: int = 1
    area_km2: Positive | None = None


class Product(_Model):
    unit: Annotated[str, Field(min_length=1)]
    """What the production counters count: pair, piece, metre, module, kg."""
    price_yuan: Positive
    """Ex-works price of one unit."""


class GatewaySpec(_Model):
    id: GatewayId
    uplink: Uplink = Uplink.WIRED


class LineSpec(_Model):
    """A production line, or a process without a production counter (HVAC, a kiln)."""

    id: Identifier
    workshop: Identifier
    kw: Positive
    """Electric power at full speed."""
    idle_kw: NonNegative = 0.0
    """Electric power while stopped on a working day (half of it on days off)."""
    rate_per_min: NonNegative = 0.0
    """Units produced per minute at full speed; 0 for a process that produces nothing countable."""
    steam_th: NonNegative = 0.0
    gas_m3h: NonNegative = 0.0
    """Gas burnt directly (ovens, furnaces), m³/h at full speed."""
    water_m3h: NonNegative = 0.0
    continuous: bool = False
    """Runs round the clock whatever the shifts (clean-room HVAC, kilns, cold stores)."""
    faults_per_day: NonNegative = 0.2
    """Breakdowns per running day; each stops the line for an hour."""


class DeviceSpec(_Model):
    name: DeviceName
    type: DeviceType
    profile: str | None = None
    """A library profile id or a path; default: Zayton's profile for the type."""
    measures: str = "site"
    """Meters: site | workshop:<name> | line:<id> | <device name> (a compressor or boiler)."""
    line: Identifier | None = None
    """PLCs: the line they control."""
    level: Annotated[int, Field(ge=1, le=3)] | None = None
    """Metering level (GB 17167): 1 site boundary, 2 main secondary, 3 main equipment."""
    gateway: GatewayId | None = None
    """Default: the firm's first gateway."""
    kw: Positive | None = None
    """Compressors: rated electric power."""
    steam_th: Positive | None = None
    """Boilers: rated steam output."""
    kwp: Positive | None = None
    """PV inverters: peak power of the array."""
    start: NonNegative | None = None
    """Initial reading of the device's counters in engineering units; default: seeded."""
    rollover: Literal["register", "decimal"] = "register"
    """Where integer counters return to zero: 2^bits, or the largest power of ten that fits."""
    faults: list[Fault] = []

    def default_level(self) -> int:
        """Meters and PV at the site are its boundary; equipment (a boiler's or compressor's own
        counters) and PLCs count at the level of main equipment, so they never add to a total."""
        if self.level is not None:
            return self.level
        if self.type not in MEASURING and self.type is not DeviceType.PV:
            return 3
        if self.measures == "site":
            return 1
        return 2 if self.measures.startswith("workshop:") else 3


class FirmSpec(_Model):
    id: Identifier
    """Also the site id on the wire."""
    name: str
    sector: Sector
    zone: str | None = None
    land_mu: Positive
    headcount: Annotated[int, Field(ge=1)]
    above_scale: bool = True
    onboarded: dt.date | None = None
    """When the firm went onto the platform (上云上平台)."""
    digital_workshops: list[Identifier] = []
    shifts: Shifts = Shifts.TWO
    days_per_week: Annotated[int, Field(ge=5, le=7)] = 6
    product: Product
    value_added_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.25
    tax_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.04
    unmetered_kw: NonNegative = 0.0
    """Lighting, offices and small loads that only the site meter sees."""
    water_base_m3h: NonNegative = 0.0
    losses: Annotated[float, Field(ge=0, le=0.1)] = 0.02
    """Transformer and cable losses between the site meter and the sub-meters."""
    transformer_kva: Positive | None = None
    gateways: Annotated[list[GatewaySpec], Field(min_length=1)]
    lines: list[LineSpec] = []
    devices: Annotated[list[DeviceSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _references(self) -> Self:
        lines = {line.id for line in self.lines}
        workshops = {line.workshop for line in self.lines}
        gateways = {gateway.id for gateway in self.gateways}
        devices: dict[str, DeviceSpec] = {}
        for device in self.devices:
            where = f"device {device.name!r}"
            if device.name in devices:
                raise ValueError(f"{where} is defined twice")
            devices[device.name] = device
            if device.gateway is not None and device.gateway not in gateways:
                raise ValueError(f"{where}: no gateway {device.gateway!r} in this firm")
            _check_type_fields(device, lines)
        for device in devices.values():
            if device.type in MEASURING:
                _check_measures(device, lines, workshops, devices)
        for workshop in self.digital_workshops:
            if workshop not in workshops:
                raise ValueError(f"digital workshop {workshop!r} has no lines")
        return self

    def gateway_of(self, device: DeviceSpec) -> str:
        return device.gateway or self.gateways[0].id


def _check_type_fields(device: DeviceSpec, lines: set[str]) -> None:
    where = f"device {device.name!r}"
    needs = {DeviceType.COMPRESSOR: "kw", DeviceType.BOILER: "steam_th", DeviceType.PV: "kwp"}
    field = needs.get(device.type)
    if field is not None and getattr(device, field) is None:
        raise ValueError(f"{where}: a {device.type} needs {field}")
    if device.type is DeviceType.PLC and device.line not in lines:
        raise ValueError(f"{where}: a plc needs line = one of {sorted(lines)}")


def _check_measures(
    device: DeviceSpec, lines: set[str], workshops: set[str], devices: dict[str, DeviceSpec]
) -> None:
    target = device.measures
    where = f"device {device.name!r}: measures {target!r}"
    if target == "site":
        return
    if target.startswith("line:"):
        if target[5:] not in lines:
            raise ValueError(f"{where}: no such line")
    elif target.startswith("workshop:"):
        if target[9:] not in workshops:
            raise ValueError(f"{where}: no line is in that workshop")
    else:
        other = devices.get(target)
        allowed = {DeviceType.COMPRESSOR, DeviceType.BOILER}
        if other is None or other.type not in allowed:
            raise ValueError(f"{where}: not site, line:<id>, workshop:<name> or equipment")
        if device.type is DeviceType.METER and other.type is not DeviceType.COMPRESSOR:
            raise ValueError(f"{where}: an electricity meter measures a compressor, not a boiler")
        fuel = device.type in (DeviceType.GAS, DeviceType.STEAM)
        if fuel and other.type is not DeviceType.BOILER:
            raise ValueError(f"{where}: a {device.type} meter can measure a boiler only")
        if device.type is DeviceType.WATER:
            raise ValueError(f"{where}: a water meter measures the site, a workshop or a line")


class Scenario(_Model):
    park: ParkSection
    firms: Annotated[list[FirmSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> Self:
        firms: set[str] = set()
        units: dict[str, int] = {}
        for firm in self.firms:
            if firm.id in firms:
                raise ValueError(f"firm {firm.id!r} is defined twice")
            firms.add(firm.id)
            for gateway in firm.gateways:
                if gateway.id in units:
                    raise ValueError(f"gateway {gateway.id!r} is defined twice")
                units[gateway.id] = 0
            for device in firm.devices:
                units[firm.gateway_of(device)] += 1
        crowded = {gateway: n for gateway, n in units.items() if n > MAX_UNITS_PER_GATEWAY}
        if crowded:
            raise ValueError(f"more than {MAX_UNITS_PER_GATEWAY} devices on gateways {crowded}")
        return self

    @property
    def device_count(self) -> int:
        return sum(len(firm.devices) for firm in self.firms)

    def replicated(self, copies: int) -> Scenario:
        """The park ``copies`` times over, firms and gateways renamed ``<id>-c<n>``: for scale
        tests and benchmarks."""
        if copies == 1:
            return self
        firms = []
        for copy in range(1, copies + 1):
            for firm in self.firms:
                gateways = [g.model_copy(update={"id": f"{g.id}-c{copy}"}) for g in firm.gateways]
                devices = [
                    d.model_copy(update={"gateway": f"{firm.gateway_of(d)}-c{copy}"})
                    for d in firm.devices
                ]
                renamed = {"id": f"{firm.id}-c{copy}", "gateways": gateways, "devices": devices}
                firms.append(firm.model_copy(update=renamed))
        return Scenario.model_validate({"park": self.park, "firms": firms})


def scenario_library() -> dict[str, Path]:
    """The scenarios shipped with Zayton, by name."""
    return {path.stem: path for path in sorted(SCENARIOS.glob("*.toml"))}


def load_scenario(ref: str | Path) -> Scenario:
    """A shipped scenario by name (``licheng``, ``tiny``) or a scenario file by path."""
    text = str(ref)
    if text.endswith(".toml") or "/" in text:
        return load_model(Path(ref), Scenario)
    shipped = scenario_library()
    if text not in shipped:
        raise ConfigError(f"no scenario {text!r} (have: {', '.join(shipped)}; or give a path)")
    return load_model(shipped[text], Scenario)
