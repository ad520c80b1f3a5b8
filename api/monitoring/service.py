"""The periodic job: build the sets that are due, deliver them, purge what is past retention.

Each pass opens its own connection, so a database that was away costs a pass, not the job. A
pass builds, for every enabled unit and frequency, the periods that ended at least ``settle``
ago (time for the last readings and the rollup refresh) and are not in the outbox yet, looking
back ``catch_up`` (a job that was stopped catches up); it builds day and month sets again for
``revisit`` after their end, so late data and values entered by hand reach the platforms as a
new revision. Then it delivers what is due and, once a day, purges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import psycopg

from api.coefficients import CoefficientError, Table, load_database
from api.energy import ZONE
from api.monitoring.build import build
from api.monitoring.codes import Frequency
from api.monitoring.errors import MonitoringError
from api.monitoring.items import Connection, Unit, load_units
from api.monitoring.outbox import KEEP_DAYS, Outbox
from api.monitoring.periods import Period
from api.monitoring.plugins import get_format
from api.monitoring.upload import Backoff, Clock, Endpoint, EndpointPass, Uploader, utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    endpoints: tuple[Endpoint, ...]
    backoff: Backoff = field(default_factory=Backoff)
    interval_s: float = 60.0
    settle: timedelta = timedelta(minutes=5)
    catch_up: timedelta = timedelta(days=7)
    revisit: timedelta = timedelta(days=1)
    keep_days: int = KEEP_DAYS


@dataclass(slots=True)
class PassSummary:
    built: int = 0
    """Sets stored new or as a new revision."""
    uploads: dict[str, EndpointPass] = field(default_factory=dict)
    purged: int = 0
    failed_units: list[str] = field(default_factory=list)


class Monitor:
    def __init__(
        self,
        dsn: str,
        settings: MonitorSettings,
        *,
        clock: Clock = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self.dsn = dsn
        self.settings = settings
        self.clock = clock
        self.rng = rng
        self._purged_on: date | None = None
        self._failing: set[str] = set()

    def run_once(self) -> PassSummary:
        summary = PassSummary()
        names = [e.name for e in self.settings.endpoints]
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            outbox = Outbox(conn, names)
            summary.built = self.build_due(conn, outbox, summary.failed_units)
            uploader = Uploader(
                outbox,
                self.settings.endpoints,
                backoff=self.settings.backoff,
                clock=self.clock,
                rng=self.rng,
            )
            with uploader:
                summary.uploads = uploader.upload_due()
            today = self.clock().astimezone(ZONE).date()
            if self._purged_on != today:
                summary.purged = outbox.purge(now=self.clock(), keep_days=self.settings.keep_days)
                self._purged_on = today
        return summary

    def build_due(self, conn: Connection, outbox: Outbox, failed: list[str]) -> int:
        now = self.clock()
        try:
            table = load_database(conn)
        except CoefficientError as err:
            log.error("no sets built: the coefficient table is unusable: %s", err)  # noqa: TRY400
            return 0
        built = 0
        for unit in load_units(conn):
            try:
                built += self._build_unit(conn, outbox, unit, table, now)
            except MonitoringError as err:
                failed.append(unit.unit_code)
                level = logging.DEBUG if unit.unit_code in self._failing else logging.ERROR
                log.log(level, "unit %s: sets not built: %s", unit.unit_code, err)
                self._failing.add(unit.unit_code)
            else:
                if unit.unit_code in self._failing:
                    log.info("unit %s: sets built again", unit.unit_code)
                    self._failing.discard(unit.unit_code)
        return built

    def _build_unit(
        self,
        conn: Connection,
        outbox: Outbox,
        unit: Unit,
        table: Table,
        now: datetime,
    ) -> int:
        fmt = get_format(unit.format)
        settled = now - self.settings.settle
        built = 0
        for frequency in Frequency:
            period = Period.containing(
                frequency, now - self.settings.catch_up, unit.realtime_minutes
            )
            kept = outbox.built_periods(unit.firm_id, frequency, period.start)
            while period.end <= settled:
                revisit = (
                    frequency is not Frequency.REALTIME and period.end > now - self.settings.revisit
                )
                if period.start not in kept or revisit:
                    stored = outbox.put(build(conn, unit, period, table, now=now), fmt, now=now)
                    built += stored.changed
                period = period.next()
        return built

    async def serve(self, stop: asyncio.Event) -> None:
        """Pass after pass, each in a worker thread, every ``interval_s`` until ``stop`` is
        set; a pass that finds the database away is logged and the next one tries again."""
        while not stop.is_set():
            try:
                summary = await asyncio.to_thread(self.run_once)
            except psycopg.OperationalError as err:
                log.error("monitoring pass failed, database unavailable: %s", err)  # noqa: TRY400
            else:
                log.debug("monitoring pass: %s", summary)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.interval_s):
                    await stop.wait()
