"""Statistics periods: 15 (30, 60) minutes, a day or a month, aligned to 00:00 local time.

Days and months are counted in China Standard Time, as ``zayton.local_zone()`` counts the
rollups; a period is kept by its start in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Self

from api.energy import ZONE
from api.monitoring.codes import Frequency
from api.monitoring.errors import ConfigError

BUCKET = timedelta(minutes=15)
"""The finest rollup: every period is made of whole 15-minute buckets."""

REALTIME_MINUTES = (15, 30, 60)

_NAMES = {Frequency.REALTIME: "real-time", Frequency.DAY: "day", Frequency.MONTH: "month"}


def local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), ZONE).astimezone(UTC)


def _month_after(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


@dataclass(frozen=True, slots=True)
class Period:
    """One statistics window: ``[start, end)``; ``minutes`` is the real-time interval."""

    frequency: Frequency
    start: datetime
    minutes: int = 15

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ConfigError(f"a period starts at an aware time, not {self.start.isoformat()}")
        if self.minutes not in REALTIME_MINUTES:
            raise ConfigError(f"real-time data is every 15, 30 or 60 minutes, not {self.minutes}")
        object.__setattr__(self, "start", self.start.astimezone(UTC))
        local = self.local_start
        if local.second or local.microsecond:
            raise ConfigError(f"{local.isoformat()} is not the start of a period")
        aligned = {
            Frequency.REALTIME: (local.hour * 60 + local.minute) % self.minutes == 0,
            Frequency.DAY: local.time() == time(),
            Frequency.MONTH: local.time() == time() and local.day == 1,
        }[self.frequency]
        if not aligned:
            raise ConfigError(
                f"{local.isoformat()} is not the start of a {_NAMES[self.frequency]} period"
                + (f" of {self.minutes} minutes" if self.frequency is Frequency.REALTIME else "")
            )

    @property
    def local_start(self) -> datetime:
        return self.start.astimezone(ZONE)

    @property
    def end(self) -> datetime:
        local = self.local_start
        if self.frequency is Frequency.REALTIME:
            return self.start + timedelta(minutes=self.minutes)
        if self.frequency is Frequency.DAY:
            return local_midnight(local.date() + timedelta(days=1))
        return local_midnight(_month_after(local.date()))

    @property
    def buckets(self) -> int:
        """The 15-minute buckets the period holds: the samples expected of a metered item."""
        return (self.end - self.start) // BUCKET

    def next(self) -> Self:
        return type(self)(self.frequency, self.end, self.minutes)

    @classmethod
    def containing(cls, frequency: Frequency, at: datetime, minutes: int = 15) -> Self:
        local = at.astimezone(ZONE)
        if frequency is Frequency.REALTIME:
            since_midnight = local.hour * 60 + local.minute
            start = datetime.combine(local.date(), time(), ZONE) + timedelta(
                minutes=since_midnight - since_midnight % minutes
            )
            return cls(frequency, start, minutes)
        if frequency is Frequency.DAY:
            return cls(frequency, local_midnight(local.date()), minutes)
        return cls(frequency, local_midnight(local.date().replace(day=1)), minutes)

    def __str__(self) -> str:
        local = self.local_start
        if self.frequency is Frequency.MONTH:
            return local.strftime("%Y-%m")
        if self.frequency is Frequency.DAY:
            return local.strftime("%Y-%m-%d")
        return f"{local.strftime('%Y-%m-%d %H:%M')}+{self.minutes}min"


def periods(
    frequency: Frequency, start: datetime, end: datetime, minutes: int = 15
) -> list[Period]:
    """The periods of ``frequency`` that lie wholly within ``[start, end)``."""
    found: list[Period] = []
    period = Period.containing(frequency, start, minutes)
    if period.start < start:
        period = period.next()
    while period.end <= end:
        found.append(period)
        period = period.next()
    return found
