"""The TimescaleDB storage path on a TimescaleDB server: migrations, hypertable, continuous
aggregates, late data, compression, retention, and the same rollups as the plain path.

The server is a fresh in-memory PGlite build of PostgreSQL 17 + TimescaleDB 2.23 per test (see
tests/timescale_wasm.py), or a new database on ``$ZAYTON_TEST_TIMESCALE_URL``. It serves one
session at a time: every test closes each connection before it opens the next.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from ingest.migrate import MigrationError, Storage, discover, latest_version, migrate
from ingest.rollups import ROLLUPS, keep_partitions, refresh
from ingest.store import Accepted, Store, WriteResult
from tests.test_ingest_store import (
    DAY_STEPS,
    LOCAL_MIDNIGHT,
    SPAN_PERIODS,
    STEP,
    batch,
    between_and_quarters,
    energy,
    one_local_day,
    power,
)

pytest_plugins = ["tests.timescale_wasm"]
pytestmark = [pytest.mark.integration, pytest.mark.timescale]

POINT = 1
NEXT_MIDNIGHT = LOCAL_MIDNIGHT + timedelta(days=1)
"""2026-11-21 00:00 in Asia/Shanghai."""
NOVEMBER = datetime(2026, 10, 31, 16, 0, tzinfo=UTC)
"""2026-11-01 00:00 in Asia/Shanghai: the bucket of the local month."""
HOUR3 = LOCAL_MIDNIGHT + timedelta(hours=3)
FAR = datetime(2100, 1, 1, tzinfo=UTC)
"""refresh(up_to=FAR): everything (see test_refresh_without_up_to for why not None)."""
INSERT_BATCH = 500
"""Rows per INSERT: about 21 KB of parameters, well below 64 KB per message."""

Row = tuple[int, datetime, float | None, int, float | None]
Rollup = dict[datetime, tuple[Any, ...]]


def fetch(dsn: str, query: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, args).fetchall()


def insert(dsn: str, rows: Sequence[Row]) -> None:
    """Plain INSERTs of readings (no COPY), a batch of rows per statement."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, len(rows), INSERT_BATCH):
            part = rows[start : start + INSERT_BATCH]
            ids, stamps, values, qualities, deltas = (
                list(column) for column in zip(*part, strict=True)
            )
            conn.execute(
                """INSERT INTO zayton.readings (point_id, ts, value, quality, delta)
                   SELECT * FROM unnest(%s::int4[], %s::timestamptz[], %s::float8[],
                                        %s::int2[], %s::float8[])""",
                (ids, stamps, values, qualities, deltas),
            )


def refresh_all(dsn: str, up_to: datetime = FAR) -> None:
    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            assert await refresh(conn, Storage.TIMESCALE, up_to) == 0

    asyncio.run(run())


def rollup(dsn: str, view: str, point_id: int = POINT) -> Rollup:
    rows = fetch(
        dsn,
        f"""SELECT bucket, readings, samples, value_sum, value_min, value_max, consumption
            FROM zayton.{view} WHERE point_id = %s ORDER BY bucket""",
        point_id,
    )
    return {row[0]: row[1:] for row in rows}


def one_day() -> list[Row]:
    """One local day at 5-minute steps and the first step of the next: value k mod 7, a counter
    delta of 1.0 per step (none with the first reading)."""
    return [
        (POINT, LOCAL_MIDNIGHT + k * STEP, float(k % 7), 0, None if k == 0 else 1.0)
        for k in range(DAY_STEPS + 1)
    ]


def test_migrations_apply_once_on_the_timescale_path(timescale_dsn: str) -> None:
    dsn = timescale_dsn
    migrations = [(m.version, m.name) for m in discover()]
    assert migrations[:4] == [(1, "registry"), (2, "readings"), (3, "energy"), (4, "rollups")]
    first = migrate(dsn, storage=Storage.TIMESCALE)
    assert first.storage is Storage.TIMESCALE
    assert [(m.version, m.name) for m in first.applied] == migrations
    assert first.current == latest_version()

    again = migrate(dsn)
    assert (again.storage, again.applied, again.current) == (
        Storage.TIMESCALE,
        [],
        latest_version(),
    )
    with pytest.raises(MigrationError, match="already uses timescale storage"):
        migrate(dsn, storage=Storage.PLAIN)
    recorded = fetch(dsn, "SELECT version, storage FROM zayton.schema_migrations ORDER BY 1")
    assert recorded == [(version, "timescale") for version, _ in migrations]


def test_a_new_database_with_timescaledb_available_takes_the_timescale_path(
    timescale_dsn: str,
) -> None:
    result = migrate(timescale_dsn)
    assert result.storage is Storage.TIMESCALE
    assert len(result.applied) == len(discover())
    assert fetch(timescale_dsn, "SELECT extname FROM pg_extension WHERE extname = 'timescaledb'")


def test_schema_hypertable_continuous_aggregates_and_policies(timescale_dsn: str) -> None:
    dsn = timescale_dsn
    migrate(dsn, storage=Storage.TIMESCALE)
    dimensions = fetch(
        dsn,
        """SELECT hypertable_schema, hypertable_name, column_name, time_interval
           FROM timescaledb_information.dimensions WHERE hypertable_schema = 'zayton'""",
    )
    assert dimensions == [("zayton", "readings", "ts", timedelta(days=1))]

    views = fetch(
        dsn,
        """SELECT view_name FROM timescaledb_information.continuous_aggregates
           WHERE view_schema = 'zayton' ORDER BY view_name""",
    )
    assert [v for (v,) in views] == sorted(ROLLUPS)
    # Hierarchical: each rollup is built from the one before it.
    for finer, coarser in itertools.pairwise(ROLLUPS):
        ((definition,),) = fetch(
            dsn,
            """SELECT view_definition FROM timescaledb_information.continuous_aggregates
               WHERE view_schema = 'zayton' AND view_name = %s""",
            coarser,
        )
        assert f"zayton.{finer}" in definition, coarser

    # The same columns, of the same types, as the tables of the plain path.
    expected = [
        ("point_id", "integer"),
        ("bucket", "timestamp with time zone"),
        ("readings", "integer"),
        ("samples", "integer"),
        ("value_sum", "double precision"),
        ("value_min", "double precision"),
        ("value_max", "double precision"),
        ("consumption", "double precision"),
    ]
    for view in ROLLUPS:
        columns = fetch(
            dsn,
            """SELECT column_name, data_type FROM information_schema.columns
               WHERE table_schema = 'zayton' AND table_name = %s ORDER BY ordinal_position""",
            view,
        )
        assert columns == expected, view

    jobs = fetch(
        dsn,
        """SELECT proc_name, hypertable_name, config ->> 'compress_after',
                  config ->> 'start_offset', config ->> 'end_offset'
           FROM timescaledb_information.jobs WHERE proc_name LIKE 'policy_%%'
             AND proc_name <> 'policy_job_stat_history_retention' ORDER BY job_id""",
    )
    # Policies on continuous aggregates name the materialization hypertable: check the count.
    refreshes = [job for job in jobs if job[0] == "policy_refresh_continuous_aggregate"]
    assert [job[2:] for job in refreshes] == [(None, "400 days", None)] * len(ROLLUPS)
    assert [job for job in jobs if job[0] == "policy_compression"] == [
        ("policy_compression", "readings", "7 days", None, None)
    ]
    compression = fetch(
        dsn,
        """SELECT attname, segmentby_column_index, orderby_column_index
           FROM timescaledb_information.compression_settings
           WHERE hypertable_name = 'readings' ORDER BY attname""",
    )
    assert compression == [("point_id", 1, None), ("ts", None, 1)]


def test_rollups_are_exact_and_take_in_late_data(timescale_dsn: str) -> None:
    dsn = timescale_dsn
    migrate(dsn, storage=Storage.TIMESCALE)
    insert(dsn, one_day())
    chunks = fetch(dsn, "SELECT count(*) FROM show_chunks('zayton.readings')")
    assert chunks == [(2,)], "the local day spans two UTC days: two one-day chunks"
    assert rollup(dsn, "rollup_day") == {}, "nothing before a refresh"
    refresh_all(dsn)

    # The day: k = 0..287. 288 = 41 * 7 + 1 steps, so 41 whole cycles of 0+1+…+6 = 21 and a
    # last k = 287 with 287 mod 7 = 0: the values add up to 41 * 21 = 861. 287 deltas of 1.0.
    day_sum = sum(k % 7 for k in range(DAY_STEPS))
    assert day_sum == 41 * 21 == 861
    # The next day: k = 288 alone, 288 mod 7 = 1.
    day = rollup(dsn, "rollup_day")
    assert day == {
        LOCAL_MIDNIGHT: (288, 288, 861.0, 0.0, 6.0, 287.0),
        NEXT_MIDNIGHT: (1, 1, 1.0, 1.0, 1.0, 1.0),
    }, "days are counted from local midnight"
    assert rollup(dsn, "rollup_month") == {NOVEMBER: (289, 289, 862.0, 0.0, 6.0, 288.0)}

    # 15 minutes: k = 3j, 3j+1, 3j+2 in bucket j; 96 buckets in the day and one the next day.
    quarter = rollup(dsn, "rollup_15m")
    assert list(quarter) == [LOCAL_MIDNIGHT + j * timedelta(minutes=15) for j in range(97)]
    assert quarter[LOCAL_MIDNIGHT] == (3, 3, 0.0 + 1.0 + 2.0, 0.0, 2.0, 2.0)  # k = 0 counts none
    # j = 1: k = 3, 4, 5: values 3 + 4 + 5 = 12, three deltas.
    assert quarter[LOCAL_MIDNIGHT + timedelta(minutes=15)] == (3, 3, 12.0, 3.0, 5.0, 3.0)
    for j in range(96):
        values = [float((3 * j + i) % 7) for i in range(3)]
        expected = (3, 3, sum(values), min(values), max(values), 2.0 if j == 0 else 3.0)
        assert quarter[LOCAL_MIDNIGHT + j * timedelta(minutes=15)] == expected, j
    assert quarter[NEXT_MIDNIGHT] == (1, 1, 1.0, 1.0, 1.0, 1.0)

    # Hours: k = 12h … 12h+11. Hour 3: k = 36 … 47, values 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5.
    hours = rollup(dsn, "rollup_hour")
    assert len(hours) == 25
    assert sum(k % 7 for k in range(36, 48)) == 36
    assert hours[HOUR3] == (12, 12, 36.0, 0.0, 6.0, 12.0)
    assert hours[LOCAL_MIDNIGHT][5] == 11.0  # the first hour: k = 0 counts none
    assert sum(h[0] for h in hours.values()) == 289

    # Late data, into hour 3 that was rolled up already: 12 readings between the old ones
    # (value 10, delta 0.5) and one without a value (quality bad): it counts as a reading, not
    # as a sample.
    late: list[Row] = [
        (POINT, HOUR3 + k * STEP + timedelta(seconds=150), 10.0, 0, 0.5) for k in range(12)
    ]
    late.append((POINT, HOUR3 + timedelta(minutes=59, seconds=59), None, 2, None))
    insert(dsn, late)
    assert rollup(dsn, "rollup_hour")[HOUR3] == hours[HOUR3], "unchanged until a refresh"
    refresh_all(dsn)

    after = rollup(dsn, "rollup_hour")
    # readings +13, samples +12, value_sum 36 + 12 * 10 = 156, max 10, consumption 12 + 6 = 18.
    assert after[HOUR3] == (25, 24, 156.0, 0.0, 10.0, 18.0)
    assert {h: v for h, v in after.items() if h != HOUR3} == {
        h: v for h, v in hours.items() if h != HOUR3
    }, "the other hours did not move"
    late_quarters = rollup(dsn, "rollup_15m")
    for j in range(4):
        bucket = HOUR3 + j * timedelta(minutes=15)
        old, new = quarter[bucket], late_quarters[bucket]
        extra_readings = 4 if j == 3 else 3  # the value-less reading is in the last quarter
        assert (new[0] - old[0], new[1] - old[1]) == (extra_readings, 3), j
        assert (new[2] - old[2], new[5] - old[5]) == (30.0, 1.5), j
    assert rollup(dsn, "rollup_day") == {
        LOCAL_MIDNIGHT: (288 + 13, 288 + 12, 861.0 + 120.0, 0.0, 10.0, 287.0 + 6.0),
        NEXT_MIDNIGHT: (1, 1, 1.0, 1.0, 1.0, 1.0),
    }
    assert rollup(dsn, "rollup_month") == {
        NOVEMBER: (289 + 13, 289 + 12, 862.0 + 120.0, 0.0, 10.0, 288.0 + 6.0)
    }


def test_refresh_without_up_to(timescale_dsn: str) -> None:
    dsn = timescale_dsn
    migrate(dsn, storage=Storage.TIMESCALE)
    insert(dsn, one_day())

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await refresh(conn, Storage.TIMESCALE)

    asyncio.run(run())
    assert rollup(dsn, "rollup_month") == {NOVEMBER: (289, 289, 862.0, 0.0, 6.0, 288.0)}


def test_compressed_chunks_are_read_and_take_late_data(timescale_dsn: str) -> None:
    dsn = timescale_dsn
    migrate(dsn, storage=Storage.TIMESCALE)
    insert(dsn, one_day())
    refresh_all(dsn)
    before = rollup(dsn, "rollup_hour")
    compressed = fetch(
        dsn, "SELECT count(compress_chunk(c)) FROM show_chunks('zayton.readings') AS c"
    )
    assert compressed == [(2,)]
    totals = fetch(dsn, "SELECT count(*), sum(value), sum(delta) FROM zayton.readings")
    assert totals == [(289, 862.0, 288.0)], "compressed chunks read as before"

    # A late reading into a compressed chunk: hour 3 was (12, 12, 36.0, 0.0, 6.0, 12.0).
    late: list[Row] = [(POINT, HOUR3 + timedelta(seconds=1), 100.0, 0, 4.0)]
    insert(dsn, late)
    refresh_all(dsn)
    after = rollup(dsn, "rollup_hour")
    assert after[HOUR3] == (12 + 1, 12 + 1, 36.0 + 100.0, 0.0, 100.0, 12.0 + 4.0)
    day = (288 + 1, 288 + 1, 861.0 + 100.0, 0.0, 100.0, 287.0 + 4.0)
    assert rollup(dsn, "rollup_day")[LOCAL_MIDNIGHT] == day
    assert len(after) == len(before) == 25


def test_policies_run_as_jobs(timescale_dsn: str) -> None:
    """No scheduler runs here: CALL run_job does what the background workers would. The
    readings are placed relative to today, as the policies are."""
    dsn = timescale_dsn
    migrate(dsn, storage=Storage.TIMESCALE)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    # One reading an hour on the UTC days 10 and 9 days ago (old enough to be compressed after
    # 7 days), and one an hour ago.
    old = [(POINT, today - timedelta(days=10, hours=-h), 1.0, 0, 1.0) for h in range(48)]
    recent = [(POINT, datetime.now(UTC) - timedelta(hours=1), 1.0, 0, 1.0)]
    insert(dsn, [*old, *recent])
    jobs = fetch(
        dsn,
        """SELECT job_id, proc_name FROM timescaledb_information.jobs
           WHERE proc_name IN ('policy_refresh_continuous_aggregate', 'policy_compression')
           ORDER BY job_id""",
    )
    refresh_policy = "policy_refresh_continuous_aggregate"
    assert [name for _, name in jobs] == [refresh_policy] * len(ROLLUPS) + ["policy_compression"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for job_id, _ in jobs:  # the refresh policies, finest first, then compression
            conn.execute("CALL run_job(%s)", (job_id,))

    states = fetch(
        dsn,
        """SELECT range_start, is_compressed FROM timescaledb_information.chunks
           WHERE hypertable_name = 'readings' ORDER BY range_start""",
    )
    assert [compressed for _, compressed in states] == [True, True, False]
    assert [start for start, _ in states[:2]] == [
        today - timedelta(days=10),
        today - timedelta(days=9),
    ]
    ((readings, consumption),) = fetch(
        dsn, "SELECT sum(readings), sum(consumption) FROM zayton.rollup_day"
    )
    assert (readings, consumption) == (49, 49.0)


def three_days_hourly(dsn: str) -> Rollup:
    """One reading an hour on the UTC days 17, 18 and 19 November 2026 (three one-day chunks),
    rolled up; returns rollup_day."""
    migrate(dsn, storage=Storage.TIMESCALE)
    first = datetime(2026, 11, 17, tzinfo=UTC)
    insert(dsn, [(POINT, first + timedelta(hours=h), float(h), 0, 1.0) for h in range(72)])
    refresh_all(dsn)
    days = rollup(dsn, "rollup_day")
    # Local days (UTC+8): 17 November holds the UTC hours 00-15 of the 17th, then two whole
    # days, and 20 November the UTC hours 16-23 of the 19th.
    assert [d[0] for d in days.values()] == [16, 24, 24, 8]
    return days


def test_retention_drops_whole_utc_days_whatever_the_session_time_zone(timescale_dsn: str) -> None:
    dsn = timescale_dsn
    days = three_days_hourly(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The plain path drops UTC-day partitions: 2026-11-19 means 00:00 UTC here too.
        conn.execute("SET TimeZone = 'Asia/Shanghai'")
        dropped = conn.execute("SELECT zayton.drop_readings_before(%s)", (date(2026, 11, 19),))
        assert dropped.fetchall() == [(2,)]
        again = conn.execute("SELECT zayton.drop_readings_before(%s)", (date(2026, 11, 19),))
        assert again.fetchall() == [(0,)]
    assert fetch(dsn, "SELECT count(*), min(ts) FROM zayton.readings") == [
        (24, datetime(2026, 11, 19, tzinfo=UTC))
    ]
    assert fetch(dsn, "SELECT count(*) FROM show_chunks('zayton.readings')") == [(1,)]
    assert rollup(dsn, "rollup_day") == days, "the rollups stay (until the next refresh)"


def test_rollups_outlive_dropped_readings_after_a_refresh(timescale_dsn: str) -> None:
    dsn = timescale_dsn
    days = three_days_hourly(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT zayton.drop_readings_before('2026-11-19')")
    refresh_all(dsn)
    assert rollup(dsn, "rollup_day") == days


def test_keep_partitions_drops_readings_older_than_keep_days(timescale_dsn: str) -> None:
    dsn = timescale_dsn
    migrate(dsn, storage=Storage.TIMESCALE)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    # Noon on each of the UTC days 6 … 0 days ago: seven chunks.
    insert(dsn, [(POINT, today - timedelta(days=d, hours=-12), 1.0, 0, None) for d in range(7)])

    async def run() -> int:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            return await keep_partitions(conn, keep_days=3, storage=Storage.TIMESCALE)

    # The days 6, 5 and 4 days ago end before the day 3 days ago begins.
    assert asyncio.run(run()) == 3
    # The 15-minute rollup's policy now reaches back 2 days, inside what is kept; one job.
    policy = fetch(
        dsn,
        """SELECT j.config->>'start_offset' FROM timescaledb_information.jobs j
           JOIN timescaledb_information.continuous_aggregates c
             ON j.hypertable_name IN (c.view_name, c.materialization_hypertable_name)
           WHERE c.view_name = 'rollup_15m'
             AND j.proc_name = 'policy_refresh_continuous_aggregate'""",
    )
    assert policy == [("2 days",)]
    assert fetch(dsn, "SELECT min(ts) FROM zayton.readings") == [
        (today - timedelta(days=3, hours=-12),)
    ]


async def store_and_refresh(dsn: str, writes: Sequence[Sequence[Accepted]]) -> list[WriteResult]:
    """Write through the ingester's Store (binary COPY), then refresh every rollup."""
    store = await Store.connect(dsn)
    try:
        results = [await store.write(list(accepted)) for accepted in writes]
    finally:
        await store.close()  # one session at a time on the WASM server
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await refresh(conn, store.storage, FAR)
    return results


def named_rollup(dsn: str, view: str) -> list[tuple[Any, ...]]:
    return fetch(
        dsn,
        f"""SELECT p.name, r.bucket, r.readings, r.samples, r.value_sum, r.value_min,
                   r.value_max, r.consumption
            FROM zayton.{view} r JOIN zayton.points p ON p.id = r.point_id
            ORDER BY p.name, r.bucket""",
    )


def test_the_store_gives_the_same_rollups_on_both_paths(
    timescale_dsn: str, migrated_database: str
) -> None:
    """The scenario of test_ingest_store, through the Store, on TimescaleDB and on plain
    PostgreSQL: one local day of an energy counter and a power reading, late readings in an
    hour that was rolled up already, and batches sent again."""
    migrate(timescale_dsn, storage=Storage.TIMESCALE)
    batches = one_local_day()
    late = [HOUR3 + k * STEP + timedelta(seconds=150) for k in range(12)]
    late_batch = batch(
        100, [energy(at, 2000.0, 0.5) for at in late] + [power(at, 10.0) for at in late]
    )
    # A new batch with a reading stored already: the COPY hits the primary key and the Store
    # falls back to its staging table, inside the same transaction.
    overlap = batch(101, [energy(LOCAL_MIDNIGHT, 5.0, 1.0), power(LOCAL_MIDNIGHT + STEP / 2, 3.0)])

    results = {}
    for dsn in (timescale_dsn, migrated_database):
        asyncio.run(store_and_refresh(dsn, [[b] for b in batches]))
        results[dsn] = asyncio.run(
            store_and_refresh(dsn, [[late_batch], [batches[0]], [late_batch], [overlap]])
        )
    outcome = [(r.inserted, r.duplicates, r.replayed_batches) for r in results[timescale_dsn]]
    assert outcome == [(24, 0, 0), (0, 60, 1), (0, 24, 1), (1, 1, 0)]
    plain = [(r.inserted, r.duplicates, r.replayed_batches) for r in results[migrated_database]]
    assert outcome == plain

    # The energy counter's first local day: readings 1000 + k for k = 0 … 287, which add up to
    # 288 * 1000 + (0 + … + 287) = 288,000 + 41,328, and 12 late ones of 2000; 287 steps of
    # 1 kWh and 12 late deltas of 0.5.
    day = {row[:2]: row[2:] for row in named_rollup(timescale_dsn, "rollup_day")}
    energy_day = (288 + 12, 288 + 12, 288_000.0 + 41_328.0 + 24_000.0, 1000.0, 2000.0, 293.0)
    assert day["energy_import_kwh", LOCAL_MIDNIGHT] == energy_day
    power_quarter = {row[:2]: row[2:] for row in named_rollup(timescale_dsn, "rollup_15m")}
    # k = 0, 1, 2 (values 0, 1, 2) and the overlapping batch's 3 at 00:02:30.
    assert power_quarter["active_power_kw", LOCAL_MIDNIGHT] == (4, 4, 6.0, 0.0, 3.0, None)
    # Two points: 97 quarters, 25 hours, 2 local days and 1 local month each.
    sizes = {"rollup_15m": 2 * 97, "rollup_hour": 2 * 25, "rollup_day": 2 * 2, "rollup_month": 2}
    for view in ROLLUPS:
        timescale = named_rollup(timescale_dsn, view)
        assert len(timescale) == sizes[view], view
        assert timescale == named_rollup(migrated_database, view), view
    # Any period read from the coarsest rollups that fit it, on either path, adds up to its
    # 15-minute buckets (the continuous aggregates, here; the tables, on plain PostgreSQL).
    for start, end in SPAN_PERIODS:
        between, quarters = between_and_quarters(timescale_dsn, start, end)
        assert between == quarters, (start, end)
        assert between_and_quarters(migrated_database, start, end) == (between, quarters)
