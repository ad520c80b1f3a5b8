"""Physics of the simulated park: what each line, machine and meter does in one time cell.

Time advances in cells (the park's step). In each cell every flow is constant: a line's speed and
power, a boiler's steam, an inverter's output. Counters integrate those constant flows exactly, so
a counter is the exact integral of what its device reports. All randomness is
:mod:`simulators.noise` keyed by the cell's start time, so a value depends on the seed and the
instant only, not on how the park got there.

Energy balance inside a firm, as its meters see it:

- a line draws ``idle_kw`` stopped and up to ``kw`` at full speed, uses steam, gas and water in
  proportion to its speed, and produces ``rate_per_min`` units a minute at full speed;
- compressors follow the firm's production; boilers raise the steam the lines use, with a morning
  warm-up, burning 82 m³ of natural gas per tonne of steam;
- the site meter sees every load plus unmetered lighting and offices, plus transformer and cable
  losses, minus what the firm's PV produces (a negative net is export).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from simulators.noise import gauss, stream, uniform
from simulators.scenario import DeviceSpec, DeviceType, FirmSpec, LineSpec, ParkSection
from simulators.shifts import Schedule, local_day
from simulators.solar import pv_fraction

# Steam at 0.8 MPa (h = 2,768 kJ/kg) from feed water at 20 °C (84 kJ/kg) takes 2,684 MJ per
# tonne; natural gas of 35.59 MJ/m³ (GB/T 2589-2020: 1.2143 kgce/m³ x 29.3076 MJ/kgce) in a
# boiler of 92% efficiency: 2,684 / (35.59 x 0.92) = 82.0 m³ of gas per tonne of steam.
GAS_M3_PER_T_STEAM = 82.0
NOMINAL_VOLTAGE_V = 230.0
COMPRESSOR_KW_PER_M3MIN = 6.5  # specific power of an oil-injected screw compressor at 0.7 MPa

Values = dict[str, float]


def _season(ts: float) -> float:
    """0 in mid-winter to 1 in late July: drives cooling loads."""
    day_of_year = (local_day(ts) + 0.0) % 365.25
    return 0.5 + 0.5 * math.cos(2 * math.pi * (day_of_year - 200) / 365.25)


class LineModel:
    """A production line or process. Not a device itself: PLCs and meters observe it."""

    RUNNING, IDLE, FAULT = 1, 0, 2

    def __init__(self, spec: LineSpec, schedule: Schedule, seed: int, firm: str) -> None:
        self.spec = spec
        self._schedule = schedule
        self._key = stream(seed, firm, "line", spec.id)
        self._fault_key = stream(seed, firm, "line-fault", spec.id)
        self._fault_chance = spec.faults_per_day / 24
        self.state = self.IDLE
        self.speed = 0.0
        self.kw = 0.0
        self.steam_th = self.gas_m3h = self.water_m3h = 0.0
        self.produced = 0.0
        """Units produced since the simulation began (true, fractional)."""

    def evaluate(self, t: float) -> None:
        spec, second = self.spec, int(t)
        working = self._schedule.working_day(local_day(t))
        if spec.continuous:
            self.state, self.speed = self.RUNNING, 0.9 + 0.1 * uniform(self._key, second)
            load = 0.75 + 0.15 * _season(t) + 0.02 * gauss(self._key, second)
            self.kw = spec.idle_kw + (spec.kw - spec.idle_kw) * load
        elif self._schedule.active(t):
            if uniform(self._fault_key, second // 3600) < self._fault_chance:
                self.state, self.speed, self.kw = self.FAULT, 0.0, spec.idle_kw
            else:
                self.state = self.RUNNING
                self.speed = 0.8 + 0.2 * uniform(self._key, second)
                spread = 1 + 0.02 * gauss(self._key, second)
                self.kw = (spec.idle_kw + (spec.kw - spec.idle_kw) * self.speed) * spread
        else:
            self.state, self.speed = self.IDLE, 0.0
            self.kw = spec.idle_kw if working else spec.idle_kw / 2
        self.steam_th = spec.steam_th * (self.speed if self.state == self.RUNNING else 0.0)
        if working and self.state != self.RUNNING:
            self.steam_th = 0.1 * spec.steam_th  # kept warm between shifts
        self.gas_m3h = spec.gas_m3h * self.speed
        self.water_m3h = spec.water_m3h * self.speed

    @property
    def units_per_h(self) -> float:
        return self.spec.rate_per_min * 60 * self.speed

    def integrate(self, seconds: float) -> None:
        self.produced += self.units_per_h * seconds / 3600


class Model:
    """What a device reports in the current cell: ``gauges`` by point name, and ``rates`` of its
    counters per hour (kWh/h, m³/h, t/h, units/h)."""

    def __init__(self) -> None:
        self.gauges: Values = {}
        self.rates: Values = {}

    def evaluate(self, t: float) -> None:
        raise NotImplementedError


class Firm:
    """A firm's lines and equipment, evaluated in dependency order every cell."""

    def __init__(self, spec: FirmSpec, park: ParkSection) -> None:
        self.spec = spec
        self.park = park
        self.seed = park.seed
        self.schedule = Schedule(spec.shifts, spec.days_per_week)
        self.lines = {
            line.id: LineModel(line, self.schedule, park.seed, spec.id) for line in spec.lines
        }
        self.countable = [line for line in self.lines.values() if line.spec.rate_per_min > 0]
        self.sources: list[Model] = []  # compressors, boilers, inverters, PLCs
        self.measuring: list[Model] = []  # meters: evaluated after everything they measure
        self.compressors: dict[str, Compressor] = {}
        self.boilers: dict[str, Boiler] = {}
        self.inverters: list[Inverter] = []
        self._unmetered_key = stream(park.seed, spec.id, "unmetered")
        self.site_kw = self.gas_m3h = self.steam_th = self.water_m3h = 0.0
        self.line_steam_th = 0.0

    def model_for(self, device: DeviceSpec) -> Model:
        """Build the model of one of this firm's devices and register it for evaluation."""
        model = _build(self, device)
        (self.measuring if isinstance(model, _Measuring) else self.sources).append(model)
        return model

    @property
    def production_share(self) -> float:
        """Share of the firm's countable capacity running now, 0 to 1."""
        if not self.countable:
            return 0.0
        return sum(line.speed for line in self.countable) / len(self.countable)

    def occupancy(self, t: float) -> float:
        if self.schedule.active(t):
            return 1.0
        return 0.4 if self.schedule.working_day(local_day(t)) else 0.2

    def evaluate(self, t: float) -> None:
        for line in self.lines.values():
            line.evaluate(t)
        self.line_steam_th = sum(line.steam_th for line in self.lines.values())
        for model in self.sources:
            model.evaluate(t)
        spec = self.spec
        unmetered = spec.unmetered_kw * self.occupancy(t)
        unmetered *= 1 + 0.03 * gauss(self._unmetered_key, int(t))
        loads = sum(line.kw for line in self.lines.values()) + unmetered
        loads += sum(c.kw for c in self.compressors.values())
        pv = sum(inverter.kw for inverter in self.inverters)
        self.site_kw = loads * (1 + spec.losses) - pv
        boilers = self.boilers.values()
        self.gas_m3h = sum(b.gas_m3h for b in boilers) + sum(
            line.gas_m3h for line in self.lines.values()
        )
        self.steam_th = sum(b.steam_th for b in boilers) if self.boilers else self.line_steam_th
        self.water_m3h = sum(line.water_m3h for line in self.lines.values())
        self.water_m3h += spec.water_base_m3h * self.occupancy(t)
        for model in self.measuring:
            model.evaluate(t)

    def lines_of(self, target: str) -> Iterable[LineModel]:
        if target.startswith("line:"):
            return [self.lines[target[5:]]]
        workshop = target[9:]
        return [line for line in self.lines.values() if line.spec.workshop == workshop]

    def integrate(self, seconds: float) -> None:
        for line in self.countable:
            line.integrate(seconds)


class Compressor(Model):
    STOPPED, UNLOADED, LOADED = 0, 1, 2

    def __init__(self, firm: Firm, spec: DeviceSpec) -> None:
        super().__init__()
        self._firm = firm
        self._rated_kw = spec.kw or 0.0
        self._key = stream(firm.seed, firm.spec.id, spec.name)
        self.kw = 0.0
        firm.compressors[spec.name] = self

    def evaluate(self, t: float) -> None:
        demand = self._firm.production_share
        noise = 0.005 * gauss(self._key, int(t))
        if self._firm.schedule.active(t) or demand > 0:
            state = self.LOADED if demand > 0.15 else self.UNLOADED
            self.kw = self._rated_kw * (0.3 + 0.7 * demand)
            pressure = 0.75 - 0.08 * demand + noise
            flow = self._rated_kw / COMPRESSOR_KW_PER_M3MIN * demand
        else:
            state, self.kw, pressure, flow = self.STOPPED, 0.0, 0.05, 0.0
        self.gauges = {
            "active_power_kw": self.kw,
            "air_pressure_mpa": max(pressure, 0.0),
            "air_flow_m3min": flow,
            "compressor_state": state,
        }


class Boiler(Model):
    OFF, FIRING = 0, 1

    def __init__(self, firm: Firm, spec: DeviceSpec) -> None:
        super().__init__()
        self._firm = firm
        self._capacity = spec.steam_th or 0.0
        self._key = stream(firm.seed, firm.spec.id, spec.name)
        self.steam_th = self.gas_m3h = 0.0
        firm.boilers[spec.name] = self

    def evaluate(self, t: float) -> None:
        firm = self._firm
        demand = firm.line_steam_th / len(firm.boilers)
        if firm.schedule.first_hour(t):
            demand += 0.6 * self._capacity  # raising steam before the shift
        self.steam_th = min(self._capacity, demand)
        self.gas_m3h = self.steam_th * GAS_M3_PER_T_STEAM
        load = self.steam_th / self._capacity
        second = int(t)
        firing = self.steam_th > 0.01 * self._capacity
        self.gauges = {
            "gas_flow_m3h": self.gas_m3h,
            "steam_flow_th": self.steam_th,
            "flue_temperature_c": 115 + 45 * load + gauss(self._key, second) if firing else 45.0,
            "steam_pressure_mpa": 0.8 + 0.01 * gauss(self._key, second + 1) if firing else 0.1,
            "boiler_state": self.FIRING if firing else self.OFF,
        }
        self.rates = {"gas_volume_m3": self.gas_m3h, "steam_mass_t": self.steam_th}


class Inverter(Model):
    STANDBY, RUNNING = 0, 1

    def __init__(self, firm: Firm, spec: DeviceSpec) -> None:
        super().__init__()
        self._park = firm.park
        self._kwp = spec.kwp or 0.0
        self._weather = stream(firm.seed, "weather")  # one sky over the whole park
        self._key = stream(firm.seed, firm.spec.id, spec.name)
        self.kw = 0.0
        firm.inverters.append(self)

    def evaluate(self, t: float) -> None:
        park = self._park
        share = pv_fraction(self._weather, t, park.latitude, park.longitude)
        self.kw = self._kwp * share * (1 + 0.01 * gauss(self._key, int(t))) if share else 0.0
        self.gauges = {
            "pv_power_kw": self.kw,
            "inverter_state": self.RUNNING if self.kw > 0 else self.STANDBY,
        }
        self.rates = {"pv_energy_total_kwh": self.kw}


class Plc(Model):
    def __init__(self, line: LineModel) -> None:
        super().__init__()
        self._line = line

    def evaluate(self, t: float) -> None:
        line = self._line
        self.gauges = {
            "line_state": line.state,
            "line_speed_per_min": line.spec.rate_per_min * line.speed,
            "line_running": 1.0 if line.state == line.RUNNING else 0.0,
        }
        self.rates = {"production_count": line.units_per_h}


class _Measuring(Model):
    def __init__(self, firm: Firm, spec: DeviceSpec) -> None:
        super().__init__()
        self._firm = firm
        self._target = spec.measures
        self._key = stream(firm.seed, firm.spec.id, spec.name)

    def _flow(self, site: float, quantity: str) -> float:
        """What the meter sees of ``quantity`` (``gas_m3h``, ``steam_th``, ``water_m3h``): the
        site's total, a boiler's, or the sum over the lines it measures."""
        firm, target = self._firm, self._target
        if target == "site":
            return site
        if target in firm.boilers:
            return float(getattr(firm.boilers[target], quantity))
        return sum(float(getattr(line, quantity)) for line in firm.lines_of(target))


class Meter(_Measuring):
    def kw(self) -> float:
        firm, target = self._firm, self._target
        if target == "site":
            return firm.site_kw
        if target in firm.compressors:
            return firm.compressors[target].kw
        return sum(line.kw for line in firm.lines_of(target))

    def evaluate(self, t: float) -> None:
        kw, key, second = self.kw(), self._key, int(t)
        power_factor = min(0.99, 0.93 + 0.015 * gauss(key, second))
        volts = [NOMINAL_VOLTAGE_V + 1.2 * gauss(key, second + phase) for phase in (1, 2, 3)]
        amps_total = abs(kw) * 1000 / power_factor
        gauges = {
            "active_power_kw": kw,
            "reactive_power_kvar": abs(kw) * math.tan(math.acos(power_factor)),
            "power_factor": power_factor,
            "frequency_hz": 50 + 0.02 * gauss(key, second + 4),
        }
        for phase, volt in enumerate(volts, start=1):
            share = 1 / 3 + 0.01 * (phase - 2)  # a slightly unbalanced load
            gauges[f"voltage_l{phase}_v"] = volt
            gauges[f"current_l{phase}_a"] = amps_total * share / volt
        self.gauges = gauges
        self.rates = {"energy_import_kwh": max(kw, 0.0), "energy_export_kwh": max(-kw, 0.0)}


class GasMeter(_Measuring):
    def evaluate(self, t: float) -> None:
        flow = self._flow(self._firm.gas_m3h, "gas_m3h")
        self.gauges = {"gas_flow_m3h": flow}
        self.rates = {"gas_volume_m3": flow}


class SteamMeter(_Measuring):
    def evaluate(self, t: float) -> None:
        flow = self._flow(self._firm.steam_th, "steam_th")
        second = int(t)
        flowing = flow > 0
        self.gauges = {
            "steam_flow_th": flow,
            "steam_pressure_mpa": 0.75 + 0.02 * gauss(self._key, second) if flowing else 0.05,
            "steam_temperature_c": 172 + 2 * gauss(self._key, second + 1) if flowing else 60.0,
        }
        self.rates = {"steam_mass_t": flow}


class WaterMeter(_Measuring):
    def evaluate(self, t: float) -> None:
        flow = self._flow(self._firm.water_m3h, "water_m3h")
        self.gauges = {"water_flow_m3h": flow}
        self.rates = {"water_volume_m3": flow}


def _build(firm: Firm, device: DeviceSpec) -> Model:
    if device.type is DeviceType.PLC:
        return Plc(firm.lines[device.line or ""])
    return _MODELS[device.type](firm, device)


_MODELS: dict[DeviceType, Callable[[Firm, DeviceSpec], Model]] = {
    DeviceType.METER: Meter,
    DeviceType.GAS: GasMeter,
    DeviceType.STEAM: SteamMeter,
    DeviceType.WATER: WaterMeter,
    DeviceType.PV: Inverter,
    DeviceType.BOILER: Boiler,
    DeviceType.COMPRESSOR: Compressor,
}
