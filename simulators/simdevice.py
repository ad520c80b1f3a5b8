"""One simulated Modbus device: a profile's registers, a physics model, counters, a clock, faults.

The model says what the device measures; this class keeps the device's own view of it: counters
that start from an installed reading, wrap where their register runs out, restart when the meter
is reset or replaced; a clock that may drift; and whatever fault it has been told to show.
The *true* quantity behind every counter is kept apart from what the registers show, so that
ground truth is never affected by a fault.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass

from profiles.codec import DataType
from profiles.model import Profile
from simulators.device import Binding, ProfiledDevice
from simulators.faults import (
    ClockDrift,
    ExceptionReply,
    Fault,
    NaN,
    Replace,
    Reset,
    Silent,
    Slow,
    WordOrderFault,
    Wrap,
    Zero,
)
from simulators.modbus_server import TABLE_OF, ModbusError, Silence
from simulators.noise import stream, uniform
from simulators.physics import Model
from simulators.shifts import local_day
from wire.catalogue import Kind

_FLOATS = frozenset({DataType.FLOAT32, DataType.FLOAT64})
DAILY_POINTS = {"pv_energy_daily_kwh": "pv_energy_total_kwh"}


class FaultError(ValueError):
    """A fault that this device cannot show (a NaN on a device without float registers...)."""


class Counter:
    """A cumulative register: the true quantity and the reading the device shows for it."""

    __slots__ = ("base_shown", "base_true", "binding", "modulus", "rollover", "true")

    def __init__(self, binding: Binding, start: float, rollover: str) -> None:
        self.binding = binding
        self.true = 0.0
        """True quantity since the simulation began (never touched by faults)."""
        self.base_true = 0.0
        self.base_shown = start
        self.rollover = rollover
        self.modulus = self.modulus_for(rollover) if binding.integer else None

    def modulus_for(self, rollover: str) -> int:
        bits = 16 * self.binding.words
        if rollover == "decimal":
            return int(10 ** int(math.log10((1 << bits) - 1)))
        return 1 << bits

    @property
    def shown(self) -> float:
        """The reading in engineering units before the register's wrap."""
        return self.base_shown + (self.true - self.base_true)

    def rebase(self, reading: float) -> None:
        """From now on the device shows ``reading`` plus what flows from here."""
        self.base_true = self.true
        self.base_shown = reading

    def raw(self) -> int | float:
        scale = self.binding.point.scale
        if self.modulus is None:
            return (self.shown - self.binding.point.offset) / scale
        return math.floor((self.shown - self.binding.point.offset) / scale + 1e-6) % self.modulus


@dataclass(slots=True)
class _Glitch:
    words: list[int]
    remaining: int
    fault: int
    """The id of the fault that shows it."""


class SimDevice:
    """A device of a simulated firm, served over Modbus as ``unit_id`` on its gateway's port."""

    def __init__(
        self,
        *,
        name: str,
        firm: str,
        gateway: str,
        profile: Profile,
        model: Model,
        seed: int,
        start: float | None = None,
        rollover: str = "register",
    ) -> None:
        self.name = name
        self.firm = firm
        self.gateway = gateway
        self.profile = profile
        self.model = model
        self._registers = ProfiledDevice(profile)
        self._stale_since: float | None = None
        """Set when the state moved on and the registers do not show it yet."""
        key = stream(seed, firm, name, "installed")
        self.counters = {}
        for index, point in enumerate(profile.points):
            if point.kind_or_catalogue is not Kind.COUNTER:
                continue
            reading = start
            if reading is None:  # export and reverse registers count far less than import
                top = 5_000 if "export" in point.name else 200_000
                reading = round(1_000 + top * uniform(key, 100 + index), 2)
            binding = self._registers.bindings[point.name]
            self.counters[point.name] = Counter(binding, reading, rollover)
        self.serial = 20_000_000 + int(9_999_999 * uniform(key, 1))
        self._replacements = 0
        self._points = {point.name for point in profile.points}
        self._has_daily = any(point in self._points for point in DAILY_POINTS)
        self._daily: dict[str, float] = {}  # daily point -> true total at the last midnight
        self._day = -1
        self.clock_offset_s = 0.0
        self.clock_ppm = 0.0
        self._drift_since = 0.0
        self.silent = False
        self.delay_s = 0.0
        self.exception: int | None = None
        self._glitches: dict[str, _Glitch] = {}
        self.handle = self._registers.handle

    @property
    def registers(self) -> ProfiledDevice:
        """The register memory, showing the device's present state."""
        self._refresh()
        return self._registers

    def mark(self, t: float) -> None:
        """The state moved on to ``t``: write the registers when somebody next reads them.

        Encoding every value at every physics tick would cost more than all the reading."""
        self._stale_since = t
        self._route()

    def _refresh(self) -> None:
        if self._stale_since is not None:
            self.show(self._stale_since)
            self._route()

    def device_time(self, t: float) -> float:
        return t + self.clock_offset_s + self.clock_ppm * 1e-6 * (t - self._drift_since)

    # Physics.

    def integrate(self, seconds: float, end: float) -> None:
        rates = self.model.rates
        for name, counter in self.counters.items():
            rate = rates.get(name)
            if rate:
                counter.true += rate * seconds / 3600
        if self._has_daily:
            self._roll_days(end)

    def _roll_days(self, t: float) -> None:
        day = local_day(self.device_time(t))
        if day != self._day:
            self._day = day
            for daily, total in DAILY_POINTS.items():
                if daily in self._points and total in self.counters:
                    self._daily[daily] = self.counters[total].true

    def show(self, t: float) -> None:
        """Write the device's present state into its registers."""
        self._stale_since = None
        registers, bindings = self._registers, self._registers.bindings
        for name, value in self.model.gauges.items():
            binding = bindings.get(name)
            if binding is not None:
                binding.store(value)
        for name, counter in self.counters.items():
            bindings[name].store_raw(counter.raw())
        for daily, base in self._daily.items():
            total = self.counters[DAILY_POINTS[daily]]
            registers.set(daily, total.true - base)
        if "serial_number" in bindings:
            registers.set_raw("serial_number", self.serial)
        if "device_clock_s" in bindings:
            registers.set_raw("device_clock_s", int(self.device_time(t)) & 0xFFFFFFFF)

    # Faults.

    def apply(self, fault: Fault, now: float, fault_id: int = 0) -> None:
        """Start showing ``fault`` (or, for wrap/reset/replace, make it happen)."""
        match fault:
            case Wrap():
                self._wrap(fault)
            case Reset():
                for counter in self.counters.values():
                    counter.rebase(0.0)
            case Replace():
                self._replacements += 1
                key = stream(self.serial, self.name, "replacement")
                self.serial = fault.serial or 30_000_000 + int(
                    9_999_999 * uniform(key, self._replacements)
                )
                for counter in self.counters.values():
                    counter.rebase(fault.start)
            case Zero() | NaN():
                self._glitches.update(self._glitches_for(fault, fault_id))
            case Slow():
                self.delay_s = fault.delay_s
            case Silent():
                self.silent = True
            case ExceptionReply():
                self.exception = fault.code
            case WordOrderFault():
                self._registers.reorder(fault.order)
            case ClockDrift():
                self.clock_offset_s = self.device_time(now) - now + fault.offset_s
                self.clock_ppm = fault.ppm
                self._drift_since = now
        self.show(now)
        self._route()

    def clear(self, fault_id: int, still_active: Sequence[tuple[int, Fault]], now: float) -> None:
        """Stop showing fault ``fault_id``; the faults ``still_active`` go on showing."""
        faults = [fault for _, fault in still_active]
        self._glitches = {
            name: glitch for name, glitch in self._glitches.items() if glitch.fault != fault_id
        }
        self.silent = any(isinstance(fault, Silent) for fault in faults)
        self.delay_s = max((f.delay_s for f in faults if isinstance(f, Slow)), default=0.0)
        codes = [fault.code for fault in faults if isinstance(fault, ExceptionReply)]
        self.exception = codes[-1] if codes else None
        orders = [fault.order for fault in faults if isinstance(fault, WordOrderFault)]
        self._registers.reorder(orders[-1] if orders else None)
        if not any(isinstance(fault, ClockDrift) for fault in faults):
            self.clock_offset_s = self.clock_ppm = 0.0  # the clock is set right
        self.show(now)
        self._route()

    def check(self, fault: Fault) -> None:
        """Raise :class:`FaultError` if this device cannot show ``fault``."""
        if isinstance(fault, Wrap):
            self._wrapping(fault)
        elif isinstance(fault, Zero | NaN):
            self._glitches_for(fault)

    def _wrapping(self, fault: Wrap) -> list[Counter]:
        counters = [c for c in self.counters.values() if c.modulus is not None]
        if fault.point is not None:
            counters = [c for c in counters if c.binding.point.name == fault.point]
        if not counters:
            target = fault.point or "integer counter"
            raise FaultError(f"{self.name} has no {target} that could wrap (float counters do not)")
        return counters

    def _glitches_for(self, fault: Zero | NaN, fault_id: int = 0) -> dict[str, _Glitch]:
        bindings = self._registers.bindings
        names = fault.points or list(bindings)
        unknown = [name for name in names if name not in bindings]
        if unknown:
            raise FaultError(f"{self.name} has no point {', '.join(unknown)}")
        glitches = {}
        for name in names:
            binding = bindings[name]
            if isinstance(fault, Zero):
                glitches[name] = _Glitch([0] * binding.words, fault.reads, fault_id)
            elif binding.point.type in _FLOATS:
                glitches[name] = _Glitch(binding.encode(math.nan), fault.reads, fault_id)
        if not glitches:
            raise FaultError(f"{self.name} has no float point to show a NaN in")
        return glitches

    def _wrap(self, fault: Wrap) -> None:
        for counter in self._wrapping(fault):
            if fault.modulus is not None:
                counter.modulus = counter.modulus_for(fault.modulus)
            assert counter.modulus is not None  # noqa: S101 - filtered above
            point = counter.binding.point
            top = counter.modulus * point.scale + point.offset
            counter.rebase(top - fault.before)

    def _route(self) -> None:
        """Serve straight from memory unless a fault needs a look at each request."""
        faulty = self.silent or self.delay_s or self.exception is not None or self._glitches
        if faulty:
            self.handle = self._faulty_handle
        elif self._stale_since is not None:
            self.handle = self._refreshing_handle
        else:
            self.handle = self._registers.handle

    # Serving.

    async def _faulty_handle(
        self, function: int, address: int, count: int, values: Sequence[int] | None
    ) -> Sequence[int] | None:
        if self.silent:
            raise Silence
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return self.serve(function, address, count, values)

    async def _refreshing_handle(
        self, function: int, address: int, count: int, values: Sequence[int] | None
    ) -> Sequence[int] | None:
        self._refresh()
        return self._registers.memory.serve(function, address, count, values)

    def serve(
        self, function: int, address: int, count: int, values: Sequence[int] | None
    ) -> Sequence[int] | None:
        """Answer one request as the device would now, faults included (raises on silence)."""
        if self.silent:
            raise Silence
        self._refresh()
        if self.exception is not None:
            raise ModbusError(self.exception)
        result = self._registers.memory.serve(function, address, count, values)
        if values is not None or not self._glitches or result is None:
            return result
        table = TABLE_OF.get(function)
        answer = list(result)
        for name, glitch in list(self._glitches.items()):
            binding = self._registers.bindings[name]
            start = binding.point.address - address
            if binding.table is table and start >= 0 and start + binding.words <= count:
                answer[start : start + binding.words] = glitch.words
                glitch.remaining -= 1
                if glitch.remaining == 0:
                    del self._glitches[name]
        if not self._glitches:
            self._route()
        return answer
