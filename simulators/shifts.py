"""When a factory works: shift patterns, working weeks and the holidays of a Fujian factory.

Times inside the simulators are POSIX seconds (UTC); shifts and holidays are local time, China
Standard Time (UTC+8, no daylight saving). Holidays are the ones that stop production in Quanzhou:
the Spring Festival (most of the workforce travels home: about a week before to ten days after New
Year's Day of the lunar calendar), Labour Day and National Day.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

LOCAL_OFFSET_S = 8 * 3600
DAY_S = 86_400
_EPOCH = date(1970, 1, 1)

# Lunar New Year's Day (public calendars).
SPRING_FESTIVAL = {
    2023: date(2023, 1, 22),
    2024: date(2024, 2, 10),
    2025: date(2025, 1, 29),
    2026: date(2026, 2, 17),
    2027: date(2027, 2, 6),
    2028: date(2028, 1, 26),
    2029: date(2029, 2, 13),
    2030: date(2030, 2, 3),
}
SPRING_FESTIVAL_BEFORE_DAYS = 6
SPRING_FESTIVAL_AFTER_DAYS = 10


def local_day(ts: float) -> int:
    """Local (UTC+8) day number since 1970-01-01."""
    return int((ts + LOCAL_OFFSET_S) // DAY_S)


def local_hour(ts: float) -> float:
    """Local (UTC+8) hour of the day, 0 <= h < 24."""
    return ((ts + LOCAL_OFFSET_S) % DAY_S) / 3600


@functools.cache
def holiday(day: int) -> bool:
    """Whether local day number ``day`` is a holiday on which factories stop."""
    when = _EPOCH + timedelta(days=day)
    new_year = SPRING_FESTIVAL.get(when.year)
    if new_year is not None and (
        -SPRING_FESTIVAL_BEFORE_DAYS <= (when - new_year).days <= SPRING_FESTIVAL_AFTER_DAYS
    ):
        return True
    following = SPRING_FESTIVAL.get(when.year + 1)
    if following is not None and (following - when).days <= SPRING_FESTIVAL_BEFORE_DAYS:
        return True
    return (when.month, when.day) in {(5, 1), (5, 2), (10, 1), (10, 2), (10, 3)}


class Shifts(StrEnum):
    ONE = "one"
    """One day shift, 08:00-17:30 with a lunch break."""
    TWO = "two"
    """Two shifts, 08:00-24:00 with meal breaks."""
    THREE = "three"
    """Round the clock."""


_WINDOWS: dict[Shifts, tuple[tuple[float, float], ...]] = {
    Shifts.ONE: ((8.0, 12.0), (13.0, 17.5)),
    Shifts.TWO: ((8.0, 12.0), (12.5, 18.0), (18.5, 24.0)),
    Shifts.THREE: ((0.0, 24.0),),
}


@dataclass(frozen=True, slots=True)
class Schedule:
    shifts: Shifts
    days_per_week: int = 6
    """5 = Monday to Friday, 6 = Monday to Saturday, 7 = every day."""
    stops_for_holidays: bool = True

    def working_day(self, day: int) -> bool:
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        if weekday >= self.days_per_week:
            return False
        return not (self.stops_for_holidays and holiday(day))

    def active(self, ts: float) -> bool:
        """Whether production runs at ``ts``: a working day and inside a shift window."""
        if not self.working_day(local_day(ts)):
            return False
        hour = local_hour(ts)
        return any(start <= hour < end for start, end in _WINDOWS[self.shifts])

    def first_hour(self, ts: float) -> bool:
        """Whether ``ts`` is in the first hour of the working day (boilers raise steam then)."""
        if not self.working_day(local_day(ts)):
            return False
        start = _WINDOWS[self.shifts][0][0]
        return self.shifts is not Shifts.THREE and start - 1 <= local_hour(ts) < start
