"""Rollups and retention on both storage paths, behind one interface.

Rollups are ``zayton.rollup_15m``, ``rollup_hour``, ``rollup_day`` and ``rollup_month`` on both
paths (days and months local to ``zayton.local_zone()``), with the same columns: ``point_id,
bucket, readings, samples, value_sum, value_min, value_max, consumption``. On plain PostgreSQL
they are tables recomputed bucket by bucket where rows arrived since the last refresh; on
TimescaleDB, continuous aggregates that its policies refresh, and :func:`refresh` refreshes on
demand. Either way a late or replayed reading lands in the rollups of its own bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from ingest.migrate import SCHEMA, Storage

log = logging.getLogger(__name__)

ROLLUPS = ("rollup_15m", "rollup_hour", "rollup_day", "rollup_month")
"""Finest first: each is built from the one before it."""

AsyncConn = psycopg.AsyncConnection[tuple[object, ...]]


async def refresh(conn: AsyncConn, storage: Storage, up_to: datetime | None = None) -> int:
    """Bring every rollup up to date with the readings before ``up_to`` (all when None).

    Plain: returns the 15-minute buckets recomputed. TimescaleDB: refreshes each continuous
    aggregate in order and returns 0 (it does not say how much it did). ``conn`` must be in
    autocommit mode (a continuous aggregate cannot be refreshed inside a transaction).
    """
    if storage is Storage.PLAIN:
        cursor = await conn.execute(
            f"SELECT {SCHEMA}.refresh_rollups(%s)", (up_to or datetime.max.replace(tzinfo=UTC),)
        )
        row = await cursor.fetchone()
        return int(str(row[0])) if row else 0
    # The 15-minute rollup is refreshed only over the readings that still exist: TimescaleDB logs
    # the range of a dropped chunk as changed, and refreshing it would recompute its buckets
    # from nothing. The coarser rollups follow the 15-minute one, which keeps its buckets.
    cursor = await conn.execute(
        "SELECT min(range_start) FROM timescaledb_information.chunks "
        "WHERE hypertable_schema = %s AND hypertable_name = 'readings'",
        (SCHEMA,),
    )
    row = await cursor.fetchone()
    oldest = None if row is None else row[0]
    if oldest is not None:
        await conn.execute(
            f"CALL refresh_continuous_aggregate('{SCHEMA}.{ROLLUPS[0]}', "
            "%s::timestamptz, %s::timestamptz)",
            (oldest, up_to),
        )
    for view in ROLLUPS[1:]:
        await conn.execute(
            f"CALL refresh_continuous_aggregate('{SCHEMA}.{view}', NULL, %s::timestamptz)",
            (up_to,),
        )
    return 0


async def keep_partitions(
    conn: AsyncConn,
    *,
    days_ahead: int = 7,
    keep_days: int | None,
    storage: Storage = Storage.PLAIN,
) -> int:
    """Create the readings partitions of the coming days (plain path; TimescaleDB makes its
    chunks itself) and drop the raw readings older than ``keep_days`` (None: keep everything).
    Rollups are kept whatever happens to raw readings. Returns the partitions dropped."""
    today = datetime.now(UTC).date()
    if storage is Storage.TIMESCALE and keep_days is not None:
        # The refresh policy must never reach back into dropped chunks (see refresh()): its
        # window is set in place, so running this again changes nothing. (The jobs view names
        # a continuous aggregate's job by the view or, in older releases, by its hypertable.)
        await conn.execute(
            """SELECT alter_job(j.job_id, config => jsonb_set(j.config, '{start_offset}',
                                   to_jsonb(make_interval(days => %s)::text)))
               FROM timescaledb_information.jobs j
               JOIN timescaledb_information.continuous_aggregates c
                 ON (j.hypertable_schema, j.hypertable_name) IN (
                        (c.view_schema, c.view_name),
                        (c.materialization_hypertable_schema, c.materialization_hypertable_name))
               WHERE c.view_schema = %s AND c.view_name = %s
                 AND j.proc_name = 'policy_refresh_continuous_aggregate'""",
            (max(1, keep_days - 1), SCHEMA, ROLLUPS[0]),
        )
    await conn.execute(
        f"SELECT {SCHEMA}.ensure_readings_partitions(%s, %s)",
        (today - timedelta(days=1), today + timedelta(days=days_ahead)),
    )
    if keep_days is None:
        return 0
    cursor = await conn.execute(
        f"SELECT {SCHEMA}.drop_readings_before(%s)", (today - timedelta(days=keep_days),)
    )
    row = await cursor.fetchone()
    dropped = int(str(row[0])) if row else 0
    if dropped:
        log.info("retention dropped %d day(s) of readings older than %d days", dropped, keep_days)
    return dropped


@dataclass(frozen=True, slots=True)
class Maintenance:
    refresh_interval_s: float = 10.0
    """How often stale rollup buckets are recomputed (plain path)."""
    partition_interval_s: float = 3600.0
    keep_days: int | None = None
    """Raw readings older than this are dropped; None keeps them all."""


async def maintain(dsn: str, storage: Storage, settings: Maintenance, stop: asyncio.Event) -> None:
    """Refresh rollups and keep partitions until ``stop`` is set; errors are logged and retried
    at the next turn, so the ingest loop never waits on maintenance."""
    last_partitions = float("-inf")
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                while not stop.is_set():
                    if loop.time() - last_partitions >= settings.partition_interval_s:
                        await keep_partitions(conn, keep_days=settings.keep_days, storage=storage)
                        last_partitions = loop.time()
                    if storage is Storage.PLAIN:
                        await refresh(conn, storage)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(settings.refresh_interval_s):
                            await stop.wait()
        except psycopg.Error as err:
            log.error("rollup maintenance failed (%s); retrying", err)  # noqa: TRY400
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.refresh_interval_s):
                    await stop.wait()
