"""Latency of the KPI queries over a year of the default park: from rollups, and from raw readings.

    .venv/bin/python bench/kpi_latency.py [--days 365] [--runs 20] [--raw-runs 5]
        [--rebuild] [--database-url DSN]

The data: the default park (scenario ``licheng``: 25 firms, 333 devices, 3,131 points) polled
every 15 minutes from 1 January of YEAR on, for ``--days`` days, in a database of its own
(``zayton_bench_kpi_<days>d`` on the local server unless ``--database-url`` names one). It is
built once and reused while it holds that build (migrated to the current schema first);
``--rebuild`` builds it again.

1. Migrated (plain path), coefficients seeded, the park's registry imported, every device's poll
   interval set to 15 minutes (what gateways report in their status).
2. The first day goes the ingester's way: the simulator's backfill (every device read through its
   registers as the gateway reads it, counters followed by the gateway's tracker) into
   :class:`~ingest.store.Store`. Both are timed and a year that way is extrapolated: 20 to 30
   minutes on this two-core machine, too long to build a benchmark on.
3. The other days come from the same park's physics, advanced step by step as the backfill
   advances it: every point of every device, gauges as the device model reports them, counters
   from the quantity that truly flowed (delta: what flowed in the 15 minutes; value: the reading
   the register shows, wrap included), clock, serial number and daily PV energy as the device
   shows them. Holidays, shifts, breakdowns, seasons and the sun are the simulator's own. Rows go
   in by binary COPY, a local day per transaction, each marking its buckets for the rollups as
   the store does. What differs from the store's rows: no register rounding (float32, 0.01 kWh).
4. The rollups are refreshed (:func:`ingest.rollups.refresh`) after every day, while the next
   is written (see :class:`Rollups`); then each month's business data from the simulator's
   ground truth, and VACUUM ANALYZE. Every stage is timed; the record of the build is kept as
   the database's comment.

Then each question is asked the API's way (``api.energy.account``, ``api.kpi.kpis``,
``meter_completeness``, ``peak_demand``, on an async connection) and, for comparison, answered
from ``zayton.readings`` alone by SQL written here with the same rules (boundary meters, exports
subtracted, product counters, 15-minute buckets, the same expected polls). Both answers are
compared, then timed: p50 and p95 over ``--runs`` runs after two warm-ups (raw: ``--raw-runs``
after one), fewer when a query has used up ``--budget`` seconds, and raw ÷ rollup at p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from api.business import import_file as import_business
from api.coefficients import Basis, CoefficientError, Kind, Table, load_database, seed_defaults
from api.energy import (
    ELECTRICITY,
    EXPORT,
    PRODUCT,
    WORKING_MEDIA,
    ZONE,
    EnergyUse,
    Entity,
    Period,
    account,
    load_hierarchy,
    segments,
)
from api.kpi import Kpis, business, kpis, meter_completeness, peak_demand
from api.registry import parse as parse_registry
from api.registry import store as store_registry
from ingest.copyrows import HEADER, PG_EPOCH, TRAILER
from ingest.migrate import Storage, migrate
from ingest.rollups import ROLLUPS, refresh
from ingest.service import IngestSettings
from ingest.store import Accepted, Store
from simulators.backfill import backfill
from simulators.park import Park
from simulators.scenario import load_scenario
from simulators.shifts import DAY_S, local_day
from simulators.simdevice import DAILY_POINTS, Counter, SimDevice
from simulators.truth import Truth, registry
from wire.payload import parse_telemetry
from wire.topics import Topic

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
SCENARIO = "licheng"
YEAR = 2025
"""A whole past year (completeness counts expected polls up to now) whose holidays the simulator
knows."""
STEP_S = 900
BUILD_VERSION = 1
"""Raised whenever the data this script builds change, so that an older cache is rebuilt."""
MIN_RUNS = 3

Conn = psycopg.AsyncConnection[Any]
Figures = dict[str, float]
"""An answer reduced to the numbers that must agree: quantities, tce, kW, counts."""

# Rows of zayton.readings (point_id, ts, value, quality, delta) in binary COPY format.
_WITH_DELTA = struct.Struct(">hiiiqidihid")
_NO_DELTA = struct.Struct(">hiiiqidihi")
_COPY = "COPY zayton.readings (point_id, ts, value, quality, delta) FROM STDIN (FORMAT BINARY)"


# --- the database --------------------------------------------------------------------------------


@dataclass
class Build:
    """What a database holds and how it was made; kept as the database's comment."""

    scenario: str = SCENARIO
    year: int = YEAR
    days: int = 0
    version: int = BUILD_VERSION
    complete: bool = False
    built_at: str = ""
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds per stage."""
    notes: list[str] = field(default_factory=list)

    def holds(self, days: int) -> bool:
        return self.complete and (self.scenario, self.year, self.days, self.version) == (
            SCENARIO,
            YEAR,
            days,
            BUILD_VERSION,
        )


def _read_build(comment: str | None) -> Build | None:
    try:
        raw = json.loads(comment or "")
    except json.JSONDecodeError:
        return None
    if not isinstance(raw, dict) or raw.pop("bench", None) != "kpi_latency":
        return None
    try:
        return Build(**raw)
    except TypeError:
        return None


def _comment(conn: psycopg.Connection[Any], name: str, build: Build) -> None:
    text = json.dumps({"bench": "kpi_latency", **asdict(build)})
    conn.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(text))
    )


def prepare(dsn: str, days: int, rebuild: bool) -> tuple[Build, bool]:
    """The build the database holds, and whether it must be built first (the database then
    exists, empty, marked as this benchmark's)."""
    name = conninfo_to_dict(dsn).get("dbname")
    if not isinstance(name, str) or name in ("postgres", "template0", "template1"):
        raise SystemExit(f"{dsn}: name a database of its own for this benchmark")
    with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as admin:
        row = admin.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (name,),
        ).fetchone()
        build = None if row is None else _read_build(row[0])
        if build is not None and build.holds(days) and not rebuild:
            return build, False
        if row is not None and build is None:
            with psycopg.connect(dsn) as conn:
                used = conn.execute("SELECT to_regnamespace('zayton') IS NOT NULL").fetchone()
            if used == (True,):
                raise SystemExit(
                    f"database {name!r} holds a Zayton schema this benchmark did not build: "
                    "give another --database-url, or drop it"
                )
        elif row is not None:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            row = None
        if row is None:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        fresh = Build(days=days)
        _comment(admin, name, fresh)
        return fresh, True


# --- building -------------------------------------------------------------------------------------


def year_start() -> float:
    return datetime(YEAR, 1, 1, tzinfo=ZONE).timestamp()


async def through_store(dsn: str, park: Park, end: float) -> tuple[int, float, float]:
    """The park's backfill from now to ``end`` through the ingester's store; returns the
    readings, the seconds the backfill took and the seconds the store took (validation
    included), writing as many batches at a time as the ingester does when it is behind."""
    payloads: list[tuple[str, bytes]] = []

    async def send(topic: str, payload: bytes) -> None:
        payloads.append((topic, payload))

    began = time.perf_counter()
    report = await backfill(park, send, end=end)
    generated = time.perf_counter() - began
    settings = IngestSettings(database_url=dsn)
    began = time.perf_counter()
    store = await Store.connect(dsn)
    try:
        group: list[Accepted] = []
        size = 0
        for topic, payload in payloads:
            parsed = Topic.parse(topic)
            group.append(Accepted(parsed, parse_telemetry(payload, parsed), payload))
            size += len(payload)
            if len(group) >= settings.batch_max_messages or size >= settings.batch_max_bytes:
                await store.write(group)
                group, size = [], 0
        if group:
            await store.write(group)
    finally:
        await store.close()
    return report.readings, generated, time.perf_counter() - began


@dataclass(slots=True)
class _Counted:
    point_id: int
    counter: Counter
    before: float
    """The true quantity at the previous step."""


class PhysicsRows:
    """Every point of every device at a step, as rows of ``zayton.readings``, read from the
    park's state rather than through its registers."""

    def __init__(self, park: Park, ids: dict[tuple[str, str, str], int]) -> None:
        self.devices: list[
            tuple[SimDevice, list[tuple[int, str]], list[_Counted], list[tuple[int, str]]]
        ] = []
        self.left_out: list[str] = []
        self._daily_base: dict[tuple[str, str], float] = {}
        self._day = -1
        for key, device in park.devices.items():
            site, name = key.split("/", 1)
            gauges, counted, shown = [], [], []
            for point in device.profile.points:
                point_id = ids.get((site, name, point.name))
                if point_id is None:
                    self.left_out.append(f"{key}/{point.name}")
                elif point.name in device.counters:
                    counter = device.counters[point.name]
                    counted.append(_Counted(point_id, counter, counter.true))
                elif point.name in device.model.gauges:
                    gauges.append((point_id, point.name))
                elif point.name in ("serial_number", "device_clock_s", *DAILY_POINTS):
                    shown.append((point_id, point.name))
                else:
                    self.left_out.append(f"{key}/{point.name}")
            self.devices.append((device, gauges, counted, shown))

    def step(self, t: float) -> tuple[bytes, int]:
        """The rows at ``t`` (the park advanced to it), and how many."""
        us = round((t - PG_EPOCH.timestamp()) * 1_000_000)
        with_delta, no_delta = _WITH_DELTA.pack, _NO_DELTA.pack
        day = local_day(t)
        new_day, self._day = day != self._day, day
        parts: list[bytes] = []
        for device, gauges, counted, shown in self.devices:
            values = device.model.gauges
            for point_id, name in gauges:
                value = values.get(name)
                if value is not None:
                    parts.append(no_delta(5, 4, point_id, 8, us, 8, value, 2, 0, -1))
            for c in counted:
                true = c.counter.true
                point = c.counter.binding.point
                shown_value = c.counter.raw() * point.scale + point.offset
                parts.append(
                    with_delta(5, 4, c.point_id, 8, us, 8, shown_value, 2, 0, 8, true - c.before)
                )
                c.before = true
            for point_id, name in shown:
                value = self._shown(device, name, t, new_day)
                parts.append(no_delta(5, 4, point_id, 8, us, 8, value, 2, 0, -1))
        return b"".join(parts), len(parts)

    def _shown(self, device: SimDevice, name: str, t: float, new_day: bool) -> float:
        if name == "serial_number":
            return float(device.serial)
        if name == "device_clock_s":
            return float(int(device.device_time(t)) & 0xFFFFFFFF)
        total = device.counters[DAILY_POINTS[name]].true
        key = (device.firm, device.name)
        if new_day or key not in self._daily_base:
            self._daily_base[key] = total
        return total - self._daily_base[key]


class Rollups:
    """Refreshes the rollups after every day written, on a connection of its own while the
    next day is written, as the ingester's periodic refresh runs beside its writes.

    Autovacuum is off on some servers, so this does what it would do: vacuum and analyze each
    day's partitions of readings once written (until then their BRIN ranges are unsummarized
    and a refresh reads the whole partition for every bucket), and analyze the rollups as they
    grow (a refresh planned without statistics scans all of a rollup). A day's refresh is a
    batch the ingester never makes (it refreshes a bucket every few seconds), so it runs
    without JIT and with the memory to aggregate a day without spilling to disk."""

    OPTIONS = "-c jit=off -c work_mem=64MB"

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.refresh_s = 0.0
        self.analyze_s = 0.0
        self._analyzed_at = 0
        self._days = 0

    async def day_written(self, utc_days: set[date]) -> None:
        began = time.perf_counter()
        for day in sorted(utc_days):
            await self.conn.execute(
                sql.SQL("VACUUM (ANALYZE) {}").format(
                    sql.Identifier("zayton", f"readings_{day:%Y%m%d}")
                )
            )
        self.analyze_s += time.perf_counter() - began
        began = time.perf_counter()
        await refresh(self.conn, Storage.PLAIN)
        self.refresh_s += time.perf_counter() - began
        self._days += 1
        if self._days >= self._analyzed_at * 1.1:  # autovacuum's default: 10% more rows
            began = time.perf_counter()
            await self.conn.execute(
                sql.SQL("ANALYZE {}").format(
                    sql.SQL(", ").join(sql.Identifier("zayton", t) for t in ROLLUPS)
                )
            )
            self.analyze_s += time.perf_counter() - began
            self._analyzed_at = self._days


async def from_physics(
    conn: Conn, park: Park, end: float, rollups: Rollups
) -> tuple[int, float, list[str]]:
    """Rows of every step after the park's present one up to ``end``, by binary COPY, a local
    day per transaction with the rollup marks a store write makes, each day refreshed while
    the next is written; returns the rows, the seconds spent making and writing them, and the
    points left out."""
    cursor = await conn.execute(
        """SELECT d.site, d.name, p.name, p.id FROM zayton.points p
           JOIN zayton.devices d ON d.id = p.device_id"""
    )
    ids = {(str(r[0]), str(r[1]), str(r[2])): int(r[3]) for r in await cursor.fetchall()}
    rows = PhysicsRows(park, ids)
    written, spent = 0, 0.0
    refreshing: asyncio.Task[None] | None = None
    t = park.now + STEP_S
    try:
        while t <= end + 1e-6:
            began = time.perf_counter()
            last = min(t + DAY_S - STEP_S, end)
            buckets: list[datetime] = []
            async with conn.transaction():
                async with conn.cursor() as copying, copying.copy(_COPY) as copy:
                    await copy.write(HEADER)
                    while t <= last + 1e-6:
                        park.advance(t)
                        data, count = rows.step(t)
                        await copy.write(data)
                        written += count
                        buckets.append(datetime.fromtimestamp(t, UTC))
                        t += STEP_S
                    await copy.write(TRAILER)
                await conn.execute(
                    "INSERT INTO zayton.rollup_dirty (bucket) SELECT unnest(%s::timestamptz[])",
                    (buckets,),
                )
            spent += time.perf_counter() - began
            if refreshing is not None:
                await refreshing
            refreshing = asyncio.create_task(rollups.day_written({b.date() for b in buckets}))
    finally:
        if refreshing is not None:
            await refreshing
    return written, spent, rows.left_out


async def build(dsn: str, days: int) -> Build:
    result = Build(days=days)
    began = time.perf_counter()
    migrate(dsn, storage=Storage.PLAIN)
    seed_defaults(dsn)
    first = year_start() - STEP_S  # the base reading: the year's first interval has a delta
    end = year_start() + days * DAY_S - STEP_S
    park = Park(load_scenario(SCENARIO), start=first, step_s=STEP_S)
    with psycopg.connect(dsn, autocommit=True) as setup:
        store_registry(setup, parse_registry(registry(park)))
        setup.execute("UPDATE zayton.devices SET interval_s = %s", (STEP_S,))
        setup.execute(
            "SELECT zayton.ensure_readings_partitions(%s, %s)",
            (
                datetime.fromtimestamp(first, UTC).date(),
                datetime.fromtimestamp(end, UTC).date(),
            ),
        )
    result.stages["schema, coefficients, registry"] = time.perf_counter() - began
    async with (
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn,
        await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, options=Rollups.OPTIONS
        ) as refreshing,
    ):
        rollups = Rollups(refreshing)
        with tempfile.TemporaryDirectory() as directory:
            with Truth(park, Path(directory), interval_s=DAY_S):
                day_one = min(year_start() + DAY_S - STEP_S, end)
                steps = round((day_one - first) / STEP_S) + 1
                readings, generated, stored = await through_store(dsn, park, day_one)
                await rollups.day_written(
                    {
                        datetime.fromtimestamp(first, UTC).date(),
                        datetime.fromtimestamp(day_one, UTC).date(),
                    }
                )
                result.stages["day 1: backfill"] = generated
                result.stages["day 1: store"] = stored
                year_s = (generated + stored) / steps * (365 * DAY_S / STEP_S)
                result.notes.append(
                    f"day 1 ({steps} steps, {readings:,} readings) went through the store: "
                    f"backfill {generated:.1f} s + store {stored:.1f} s; a year that way would "
                    f"take about {year_s / 60:.0f} min on this machine"
                )
                if end > day_one:
                    written, spent, left_out = await from_physics(conn, park, end, rollups)
                    result.stages[f"days 2-{days}: physics, COPY"] = spent
                    result.notes.append(
                        f"days 2-{days} ({written:,} rows, {written / spent:,.0f} rows/s) were "
                        "generated from the simulator's physics and COPYed: every point of "
                        "every device" + (f" but {', '.join(left_out)}" if left_out else "")
                    )
            began = time.perf_counter()
            import_business(dsn, Path(directory) / "business.csv")
            result.stages["business data"] = time.perf_counter() - began
        result.stages["rollup refresh, after every day"] = rollups.refresh_s  # overlaps COPY
        result.stages["vacuum, analyze while growing"] = rollups.analyze_s
        began = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        result.stages["vacuum analyze"] = time.perf_counter() - began
    result.complete = True
    result.built_at = datetime.now(UTC).isoformat(timespec="seconds")
    return result


# --- questions ------------------------------------------------------------------------------------

RAW_ENERGY = """
SELECT f.code, p.carrier, coalesce(p.unit, ''), width_bucket(r.ts, %(splits)s::timestamptz[]),
       sum(r.delta)
FROM zayton.readings r
JOIN zayton.points p ON p.id = r.point_id
JOIN zayton.devices d ON d.id = p.device_id
JOIN zayton.firms f ON f.id = d.firm_id
WHERE r.ts >= %(start)s AND r.ts < %(end)s
  AND f.id = ANY (%(firms)s)
  AND p.kind = 'counter' AND p.carrier IS NOT NULL
  AND (d.metering_level = 1 OR p.carrier = 'product')
  AND r.delta IS NOT NULL
GROUP BY 1, 2, 3, 4
"""
"""A firm's site-boundary meters (level 1) and its production counters, per 15-minute bucket
boundary as the rollups count them (a reading's bucket is the one its timestamp falls in)."""

RAW_PEAK = """
SELECT max(total) * 4 FROM (
    SELECT sum(r.delta) AS total
    FROM zayton.readings r
    JOIN zayton.points p ON p.id = r.point_id
    JOIN zayton.devices d ON d.id = p.device_id
    WHERE d.firm_id = ANY (%(firms)s) AND d.metering_level = 1 AND p.carrier = 'electricity'
      AND r.ts >= %(start)s AND r.ts < %(end)s
    GROUP BY date_bin('15 minutes', r.ts, timestamptz '2000-01-01 00:00+00')) buckets
"""

RAW_COMPLETENESS = """
WITH chosen AS (
    SELECT p.id, p.first_seen, d.site, d.name, d.interval_s
    FROM zayton.points p JOIN zayton.devices d ON d.id = p.device_id
    WHERE d.interval_s IS NOT NULL AND d.firm_id = ANY (%(firms)s)
), got AS (
    SELECT r.point_id, count(*) AS received, count(r.value) AS valid
    FROM zayton.readings r
    WHERE r.ts >= %(start)s AND r.ts < %(end)s AND r.point_id IN (SELECT id FROM chosen)
    GROUP BY r.point_id
)
SELECT c.site, c.name, sum(e.expected), sum(coalesce(g.received, 0)),
       sum(coalesce(g.valid, 0))
FROM chosen c
LEFT JOIN got g ON g.point_id = c.id
CROSS JOIN LATERAL (
    SELECT floor(extract(epoch FROM least(%(end)s, now())
                 - greatest(%(start)s, date_bin('15 minutes', c.first_seen,
                                                timestamptz '2000-01-01 00:00+00')))
                 / c.interval_s) AS expected) e
WHERE e.expected > 0
GROUP BY c.site, c.name ORDER BY c.site, c.name
"""
"""Received ÷ expected per device, as ``zayton.completeness`` counts them, from raw rows."""


@dataclass(frozen=True, slots=True)
class Subject:
    park: str
    firm_code: str
    firm_ids: list[int]
    """Every firm of the park."""
    firm_id: int
    table: Table


async def raw_energy(conn: Conn, period: Period, firm_ids: Sequence[int], table: Table) -> Figures:
    """Energy by carrier and in tce from raw readings, converted as the accounting does."""
    splits = segments(period, table)
    cursor = await conn.execute(
        RAW_ENERGY,
        {
            "splits": [datetime(d.year, d.month, d.day, tzinfo=ZONE) for d in splits],
            "start": period.start,
            "end": period.end,
            "firms": list(firm_ids),
        },
    )
    figures: Figures = defaultdict(float, {"tce": 0.0, "production": 0.0})
    for code, carrier, unit, segment, summed in await cursor.fetchall():
        quantity = float(summed)
        if carrier == PRODUCT:
            figures["production"] += quantity
            continue
        name = ELECTRICITY if carrier == EXPORT else carrier
        signed = -quantity if carrier == EXPORT else quantity
        figures[name] += signed
        if name in WORKING_MEDIA:
            continue
        day = period.first_day if segment == 0 else splits[segment - 1]
        try:
            coefficient = table.lookup(
                Kind.CONVERSION, name, day, basis=Basis.EQUIVALENT, firm=str(code)
            )
        except CoefficientError:
            continue
        figures["tce"] += coefficient.apply(signed, str(unit)) / 1000
    return dict(figures)


def energy_figures(use: EnergyUse) -> Figures:
    figures = {c.carrier: c.quantity for c in use.carriers}
    figures["tce"] = use.total_tce
    figures["production"] = use.production
    return figures


async def raw_peak(conn: Conn, period: Period, firm_ids: Sequence[int]) -> float | None:
    cursor = await conn.execute(
        RAW_PEAK, {"firms": list(firm_ids), "start": period.start, "end": period.end}
    )
    row = await cursor.fetchone()
    return None if row is None or row[0] is None else float(row[0])


async def raw_completeness(
    conn: Conn, period: Period, firm_ids: Sequence[int]
) -> dict[str, tuple[float, int]]:
    """``site/device``: (expected, received)."""
    cursor = await conn.execute(
        RAW_COMPLETENESS, {"firms": list(firm_ids), "start": period.start, "end": period.end}
    )
    return {f"{r[0]}/{r[1]}": (float(r[2]), int(r[3])) for r in await cursor.fetchall()}


def completeness_figures(per_device: dict[str, tuple[float, int]]) -> Figures:
    return {
        "devices": len(per_device),
        "expected": sum(e for e, _ in per_device.values()),
        "received": sum(r for _, r in per_device.values()),
    }


async def raw_kpis(conn: Conn, period: Period, firm_id: int, table: Table) -> Figures:
    """A firm's tce, peak and completeness of its accounted meters, from raw readings; and
    its business data, which are the same table either way."""
    energy = await raw_energy(conn, period, [firm_id], table)
    money = await business(conn, [firm_id], period)
    peak = await raw_peak(conn, period, [firm_id])
    devices = await raw_completeness(conn, period, [firm_id])
    # The meters the accounting counted: boundary meters and production counters.
    cursor = await conn.execute(
        """SELECT DISTINCT d.site || '/' || d.name FROM zayton.points p
           JOIN zayton.devices d ON d.id = p.device_id
           WHERE d.firm_id = %s AND p.kind = 'counter' AND p.carrier IS NOT NULL
             AND (d.metering_level = 1 OR p.carrier = 'product')""",
        (firm_id,),
    )
    counted = [devices[str(r[0])] for r in await cursor.fetchall() if str(r[0]) in devices]
    expected = sum(e for e, _ in counted)
    return {
        "tce": energy.get("tce", 0.0),
        "value added": money.value_added or 0.0,
        "peak kW": peak or 0.0,
        "completeness": sum(r for _, r in counted) / expected if expected else 0.0,
    }


def kpi_figures(k: Kpis) -> Figures:
    return {
        "tce": k.energy.total_tce,
        "value added": (k.business.value_added or 0.0) if k.business else 0.0,
        "peak kW": k.peak_kw or 0.0,
        "completeness": k.completeness or 0.0,
    }


Ask = Callable[[Conn], Awaitable[Figures]]


@dataclass(frozen=True, slots=True)
class Question:
    label: str
    rollup: Ask
    raw: Ask


def questions(scope: Subject, days: int) -> list[Question]:
    middle = date(YEAR, 1, 1) + timedelta(days=(days - 1) // 2)
    year, month, day = Period.year(YEAR), Period.month(YEAR, middle.month), Period.day(middle)
    park, firm = Entity("park", scope.park), Entity("firm", scope.firm_code)
    table, firms, one = scope.table, scope.firm_ids, [scope.firm_id]
    found: list[Question] = []
    # Thirty days to a quarter past ten: hours and quarter-hours at the ends, days between.
    until = datetime(middle.year, middle.month, middle.day, 10, 15, tzinfo=ZONE)
    rolling = Period(until - timedelta(days=30), until)
    for who, entity, ids in (("park", park, firms), ("firm", firm, one)):
        for name, period in (
            ("year", year),
            (f"month {middle:%m}", month),
            (f"day {middle}", day),
            ("30 days to 10:15", rolling),
        ):

            async def rollup(conn: Conn, e: Entity = entity, p: Period = period) -> Figures:
                return energy_figures(await account(conn, e, p, table))

            async def raw(conn: Conn, p: Period = period, i: list[int] = ids) -> Figures:
                return await raw_energy(conn, p, i, table)

            found.append(Question(f"{who} energy, {name}", rollup, raw))

    async def firm_kpis(conn: Conn) -> Figures:
        return kpi_figures(await kpis(conn, firm, year, table))

    async def firm_kpis_raw(conn: Conn) -> Figures:
        return await raw_kpis(conn, year, scope.firm_id, table)

    found.append(Question("firm KPIs, year", firm_kpis, firm_kpis_raw))
    for who, ids, name, period in (
        ("park", firms, f"month {middle:%m}", month),
        ("firm", one, f"month {middle:%m}", month),
        ("park", firms, "year", year),
        ("firm", one, "year", year),
    ):

        async def meters(
            conn: Conn, i: list[int] = ids, whole: bool = who == "park", p: Period = period
        ) -> Figures:
            listed = await meter_completeness(conn, p, None if whole else i)
            return completeness_figures(
                {f"{m.firm}/{m.device}": (m.expected, m.received) for m in listed}
            )

        async def meters_raw(conn: Conn, i: list[int] = ids, p: Period = period) -> Figures:
            return completeness_figures(await raw_completeness(conn, p, i))

        found.append(Question(f"{who} meter completeness, {name}", meters, meters_raw))
    for who, ids in (("park", firms), ("firm", one)):

        async def peak(conn: Conn, i: list[int] = ids) -> Figures:
            return {"kW": await peak_demand(conn, await load_hierarchy(conn), i, year) or 0.0}

        async def peak_raw(conn: Conn, i: list[int] = ids) -> Figures:
            return {"kW": await raw_peak(conn, year, i) or 0.0}

        found.append(Question(f"{who} peak demand, year", peak, peak_raw))
    return found


# --- timing ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class Timing:
    seconds: list[float]
    answer: Figures | None
    timed_out: bool = False

    def p(self, q: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(conn: Conn, ask: Ask, warmups: int, runs: int, budget_s: float) -> Timing:
    """``runs`` timed runs after ``warmups``; fewer (at least MIN_RUNS) once ``budget_s`` is
    spent; a timed-out statement ends it."""
    try:
        answer = None
        for _ in range(warmups):
            answer = await ask(conn)
        seconds: list[float] = []
        while len(seconds) < runs:
            began = time.perf_counter()
            answer = await ask(conn)
            seconds.append(time.perf_counter() - began)
            if sum(seconds) > budget_s and len(seconds) >= MIN_RUNS:
                break
    except psycopg.errors.QueryCanceled:
        return Timing([], None, timed_out=True)
    return Timing(seconds, answer)


def agreement(a: Figures | None, b: Figures | None) -> str:
    if a is None or b is None:
        return "-"
    worst = 0.0
    for key in a.keys() | b.keys():
        x, y = a.get(key), b.get(key)
        if x is None or y is None:
            return f"{key} missing"
        worst = max(worst, abs(x - y) / max(abs(x), abs(y), 1e-9))
    return "same" if worst < 1e-9 else f"{worst:.1e}"


async def rows_in(conn: Conn) -> list[tuple[str, int]]:
    counts = []
    for table in ("readings", *ROLLUPS):
        cursor = await conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("zayton", table))
        )
        row = await cursor.fetchone()
        counts.append((table, int(row[0]) if row else 0))
    return counts


async def scope_of(dsn: str) -> Subject:
    scenario = load_scenario(SCENARIO)
    largest = max(scenario.firms, key=lambda f: len(f.devices))
    with psycopg.connect(dsn) as conn:
        table = load_database(conn)
        ids = {
            str(code): int(id_)
            for code, id_ in conn.execute(
                """SELECT f.code, f.id FROM zayton.firms f JOIN zayton.parks p
                   ON p.id = f.park_id WHERE p.code = %s""",
                (scenario.park.id,),
            ).fetchall()
        }
    return Subject(scenario.park.id, largest.id, sorted(ids.values()), ids[largest.id], table)


async def main_async(args: argparse.Namespace, dsn: str) -> None:
    built, needed = prepare(dsn, args.days, args.rebuild)
    name = conninfo_to_dict(dsn).get("dbname")
    print(
        f"# Zayton KPI latency: {SCENARIO}, {args.days} days of 15-minute data from {YEAR}-01-01, "
        f"database {name}"
    )
    if needed:
        minutes = max(1, round(args.days * 5.5 / 60))
        print(f"building (about {minutes} min on two cores; kept for the next run)...")
        began = time.perf_counter()
        built = await build(dsn, args.days)
        built.stages["total"] = time.perf_counter() - began
        with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as admin:
            _comment(admin, str(name), built)
        print(f"built in {built.stages['total']:,.0f} s:")
    else:
        migrate(dsn, storage=Storage.PLAIN)  # schema changes since the build; the data stay
        print(f"reusing the build of {built.built_at}, made in {built.stages['total']:,.0f} s:")
    for stage, seconds in built.stages.items():
        if stage != "total":
            print(f"  {stage:<34} {seconds:8.1f} s")
    print("  (stages overlap: each day's rollups were refreshed while the next day was written)")
    for note in built.notes:
        print(f"  {note}")
    scope = await scope_of(dsn)
    options = f"-c statement_timeout={int(args.timeout * 1000)}"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, options=options) as conn:
        cursor = await conn.execute("SELECT current_setting('server_version')")
        version = await cursor.fetchone()
        cursor = await conn.execute("SELECT current_setting('shared_buffers')")
        buffers = await cursor.fetchone()
        print(
            f"PostgreSQL {version[0] if version else '?'} (shared_buffers "
            f"{buffers[0] if buffers else '?'}), plain path; rows:"
        )
        for table, count in await rows_in(conn):
            print(f"  {table:<13} {count:>13,}")
        print(
            f"firm: {scope.firm_code} (the most devices); rollup runs: up to {args.runs} after 2 "
            f"warm-ups, raw: up to {args.raw_runs} after 1, each stopping after "
            f"{args.budget:g} s (at least {MIN_RUNS}); statement timeout {args.timeout:g} s"
        )
        header = (
            f"{'query':<34} {'n':>3} {'p50 ms':>9} {'p95 ms':>9} {'raw n':>5} "
            f"{'raw p50 ms':>11} {'raw/rollup':>10}  answers"
        )
        print(header)
        print("-" * len(header))
        for question in questions(scope, args.days):
            rolled = await measure(conn, question.rollup, 2, args.runs, args.budget)
            raw = await measure(conn, question.raw, 1, args.raw_runs, args.budget)
            print(
                f"{question.label:<34} {len(rolled.seconds):>3} {_ms(rolled, 0.5):>9} "
                f"{_ms(rolled, 0.95):>9} {len(raw.seconds):>5} {_ms(raw, 0.5):>11} "
                f"{_ratio(raw, rolled):>10}  {agreement(rolled.answer, raw.answer)}"
            )
        print(
            "n: timed runs; answers: 'same' when both ways give the same figures (quantities by "
            "carrier, tce, kW, expected and received readings) to 1e-9, else the largest "
            "relative difference"
        )


def _ms(timing: Timing, q: float) -> str:
    return "timeout" if timing.timed_out else f"{timing.p(q) * 1000:,.1f}"


def _ratio(raw: Timing, rolled: Timing) -> str:
    if raw.timed_out or rolled.timed_out:
        return "-"
    value = raw.p(0.5) / rolled.p(0.5)
    return f"{value:,.0f}x" if value >= 10 else f"{value:.1f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=None,
        help=f"the benchmark's database, created if missing (default: zayton_bench_kpi_<days>d "
        f"at {SERVER})",
    )
    parser.add_argument("--rebuild", action="store_true", help="build the data again")
    parser.add_argument("--days", type=int, default=365, help="days of data from 1 January")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--raw-runs", type=int, default=5)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of runs per query")
    parser.add_argument("--timeout", type=float, default=120.0, help="statement timeout, s")
    args = parser.parse_args()
    if not 1 <= args.days <= 365:
        parser.error("--days is 1..365")
    if args.runs < MIN_RUNS or args.raw_runs < MIN_RUNS:
        parser.error(f"--runs and --raw-runs are at least {MIN_RUNS}")
    dsn = args.database_url or make_conninfo(SERVER, dbname=f"zayton_bench_kpi_{args.days}d")
    asyncio.run(main_async(args, dsn))


if __name__ == "__main__":
    main()
