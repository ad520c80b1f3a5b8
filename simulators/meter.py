"""Physics of a three-phase energy meter.

Power follows a day shape (a two-shift factory: low at night, ramps at 07:30, a lunch dip, a
second shift until 22:00, lighter on Sundays) with seeded noise. Between two updates the power is
held constant, and the energy counter advances by exactly that power times the elapsed time, so
the counter is the exact integral of the power the meter reported.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

from simulators.device import ProfiledDevice

CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")
NOMINAL_VOLTAGE_V = 230.0


def day_shape(local: datetime) -> float:
    """Fraction of rated load for a two-shift factory at a local time, 0.15 to 1.0."""
    hour = local.hour + local.minute / 60
    if 7.5 <= hour < 22:
        load = 0.85 + 0.15 * math.sin(math.pi * (hour - 7.5) / 14.5)
        if 12 <= hour < 13:
            load *= 0.6
    else:
        load = 0.2
    if local.weekday() == 6:
        load *= 0.4
    return max(0.15, load)


class ThreePhaseMeter:
    def __init__(
        self,
        device: ProfiledDevice,
        *,
        rated_kw: float,
        seed: int,
        start: datetime,
        energy_kwh: float = 0.0,
        power_factor: float = 0.92,
    ) -> None:
        self.device = device
        self.rated_kw = rated_kw
        self.power_factor = power_factor
        self.energy_kwh = energy_kwh
        self.power_kw = 0.0
        self._rng = random.Random(seed)
        self._last = start
        self._recompute(start)
        self.publish()

    def advance(self, now: datetime) -> None:
        """Integrate the power held since the last update, then draw the next power."""
        hours = (now - self._last).total_seconds() / 3600
        if hours < 0:
            raise ValueError("a meter's clock does not run backwards")
        self.energy_kwh += self.power_kw * hours
        self._last = now
        self._recompute(now)
        self.publish()

    def _recompute(self, now: datetime) -> None:
        shape = day_shape(now.astimezone(CHINA_STANDARD_TIME))
        self.power_kw = self.rated_kw * shape * (1 + self._rng.gauss(0, 0.03))
        self.voltages = [NOMINAL_VOLTAGE_V + self._rng.gauss(0, 1.5) for _ in range(3)]

    def publish(self) -> None:
        """Write the meter's present state into its registers."""
        device = self.device
        per_phase_kw = self.power_kw / 3
        for phase, volts in enumerate(self.voltages, start=1):
            device.set(f"voltage_l{phase}_v", volts)
            device.set(f"current_l{phase}_a", per_phase_kw * 1000 / (volts * self.power_factor))
        device.set("active_power_kw", self.power_kw)
        device.set("energy_import_kwh", self.energy_kwh)
