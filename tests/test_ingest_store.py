"""The store on a real PostgreSQL (plain path): rollups exact after late and replayed data,
consumption from counter deltas, batch-level deduplication, counter events, registry from status."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from ingest.migrate import Storage
from ingest.rollups import refresh
from ingest.store import Accepted, StatusUpdate, Store, WriteResult
from wire.payload import SCHEMA_VERSION, format_ts, parse_status, parse_telemetry
from wire.topics import Stream, Topic

pytestmark = pytest.mark.integration

TELEMETRY = Topic("site-1", "gw-1", Stream.TELEMETRY)
STATUS = Topic("site-1", "gw-1", Stream.STATUS)
LOCAL_MIDNIGHT = datetime(2026, 11, 19, 16, 0, tzinfo=UTC)
"""2026-11-20 00:00 in Asia/Shanghai (UTC+8, no daylight saving)."""
STEP = timedelta(minutes=5)
DAY_STEPS = 288


def batch(
    seq: int, readings: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]] = ()
) -> Accepted:
    payload = json.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "gateway": "gw-1",
            "seq": seq,
            "sent_at": format_ts(datetime.now(UTC)),
            "readings": list(readings),
            "events": list(events),
        }
    ).encode()
    return Accepted(TELEMETRY, parse_telemetry(payload, TELEMETRY), payload)


def energy(at: datetime, value: float, delta: float | None) -> dict[str, Any]:
    reading: dict[str, Any] = {
        "device": "m1",
        "point": "energy_import_kwh",
        "ts": format_ts(at),
        "value": value,
    }
    if delta is not None:
        reading["delta"] = delta
    return reading


def power(at: datetime, value: float) -> dict[str, Any]:
    return {"device": "m1", "point": "active_power_kw", "ts": format_ts(at), "value": value}


def fetch(dsn: str, query: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, args).fetchall()


async def write_all(dsn: str, batches: Sequence[Accepted]) -> list[WriteResult]:
    store = await Store.connect(dsn)
    try:
        assert store.storage is Storage.PLAIN
        results = [await store.write([b]) for b in batches]
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await refresh(conn, store.storage)
    finally:
        await store.close()
    return results


def rollup(dsn: str, table: str, point: str) -> dict[datetime, tuple[Any, ...]]:
    rows = fetch(
        dsn,
        f"""SELECT r.bucket, r.readings, r.samples, r.value_sum, r.value_min, r.value_max,
                   r.consumption
            FROM zayton.{table} r JOIN zayton.points p ON p.id = r.point_id
            WHERE p.name = %s ORDER BY r.bucket""",
        point,
    )
    return {row[0]: row[1:] for row in rows}


def test_rollups_are_exact_and_take_in_late_data_and_ignore_replays(migrated_database: str) -> None:
    dsn = migrated_database
    batches = one_local_day()
    asyncio.run(write_all(dsn, batches))

    day = rollup(dsn, "rollup_day", "energy_import_kwh")
    next_day = LOCAL_MIDNIGHT + timedelta(days=1)
    assert list(day) == [LOCAL_MIDNIGHT, next_day], "days are counted from local midnight"
    assert day[LOCAL_MIDNIGHT][:2] == (DAY_STEPS, DAY_STEPS)
    assert day[LOCAL_MIDNIGHT][5] == DAY_STEPS - 1  # 287 steps of 1 kWh; the first counts none
    assert day[next_day][5] == 1.0
    watts = rollup(dsn, "rollup_day", "active_power_kw")[LOCAL_MIDNIGHT]
    assert watts[2] == sum(k % 7 for k in range(DAY_STEPS))
    assert (watts[3], watts[4]) == (0.0, 6.0)
    quarter = rollup(dsn, "rollup_15m", "energy_import_kwh")
    assert len(quarter) == DAY_STEPS // 3 + 1
    assert quarter[LOCAL_MIDNIGHT][5] == 2.0  # k = 0, 1, 2: two counted steps
    assert quarter[LOCAL_MIDNIGHT + timedelta(minutes=15)][5] == 3.0
    hours = rollup(dsn, "rollup_hour", "active_power_kw")
    assert len(hours) == 25
    assert hours[LOCAL_MIDNIGHT + timedelta(hours=3)][2] == sum(k % 7 for k in range(36, 48))
    month = rollup(dsn, "rollup_month", "energy_import_kwh")
    assert list(month) == [datetime(2026, 10, 31, 16, 0, tzinfo=UTC)], "local 1 November"
    assert month[datetime(2026, 10, 31, 16, 0, tzinfo=UTC)][5] == DAY_STEPS

    # A day late: readings between the old ones in local hour 3, and a batch sent again.
    hour3 = LOCAL_MIDNIGHT + timedelta(hours=3)
    late = [hour3 + k * STEP + timedelta(seconds=150) for k in range(12)]
    late_batch = batch(
        100, [energy(at, 2000.0, 0.5) for at in late] + [power(at, 10.0) for at in late]
    )
    results = asyncio.run(write_all(dsn, [late_batch, batches[0], late_batch]))
    assert [(r.inserted, r.replayed_batches) for r in results] == [(24, 0), (0, 1), (0, 1)]

    after = rollup(dsn, "rollup_hour", "active_power_kw")[hour3]
    assert after[0] == 24
    assert after[2] == sum(k % 7 for k in range(36, 48)) + 12 * 10.0
    assert after[4] == 10.0
    assert rollup(dsn, "rollup_hour", "energy_import_kwh")[hour3][5] == 12 * 1.0 + 12 * 0.5
    assert rollup(dsn, "rollup_day", "energy_import_kwh")[LOCAL_MIDNIGHT][5] == 287 + 6.0
    assert rollup(dsn, "rollup_month", "energy_import_kwh")[
        datetime(2026, 10, 31, 16, 0, tzinfo=UTC)
    ][5] == (288 + 6.0)
    assert fetch(dsn, "SELECT count(*) FROM zayton.rollup_stale") == [(0,)]
    assert fetch(dsn, "SELECT count(*) FROM zayton.rollup_dirty") == [(0,)]


def test_a_redelivered_batch_is_skipped_and_another_under_its_seq_is_a_dead_letter(
    migrated_database: str,
) -> None:
    dsn = migrated_database
    at = LOCAL_MIDNIGHT
    wrap = {
        "device": "m1",
        "point": "energy_import_kwh",
        "ts": format_ts(at),
        "kind": "wrap",
        "before": 4294967.0,
        "after": 3.0,
        "amount": 5.0,
        "detail": "",
    }
    first = batch(7, [energy(at, 3.0, 5.0)], [wrap])
    impostor = batch(7, [energy(at + STEP, 4.0, 1.0)])
    results = asyncio.run(write_all(dsn, [first, first, impostor]))
    assert [(r.inserted, r.duplicates, r.replayed_batches, r.dead_letters) for r in results] == [
        (1, 0, 0, 0),
        (0, 1, 1, 0),
        (0, 0, 0, 1),
    ]
    assert results[0].events == 1
    (reason,) = fetch(dsn, "SELECT reason FROM zayton.dead_letters")[0]
    assert "seq 7 of gateway 'gw-1' was taken" in reason
    assert fetch(dsn, "SELECT kind, before, after, amount FROM zayton.counter_events") == [
        ("wrap", 4294967.0, 3.0, 5.0)
    ]
    assert fetch(dsn, "SELECT count(*) FROM zayton.readings") == [(1,)]

    # Two batches under one seq in one write: the first is taken, the second dead-lettered.
    async def together() -> WriteResult:
        store = await Store.connect(dsn)
        try:
            return await store.write(
                [batch(8, [energy(at + 2 * STEP, 5.0, 1.0)]), batch(8, [power(at, 1.0)])]
            )
        finally:
            await store.close()

    result = asyncio.run(together())
    assert (result.inserted, result.dead_letters) == (1, 1)


def status(firm: str | None, devices: list[dict[str, Any]]) -> StatusUpdate:
    payload = json.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "gateway": "gw-1",
            "state": "online",
            "ts": format_ts(datetime.now(UTC)),
            "site": "site-1",
            "firm": firm,
            "uplink": "5g",
            "software": "zayton-gateway test",
            "devices": devices,
            "alarms": ["outbox full (1 of 1 bytes)"],
            "outbox_batches": 3,
        }
    ).encode()
    return StatusUpdate(STATUS, parse_status(payload, STATUS))


def test_status_registers_firm_gateway_and_device_health_and_data_onboards_the_firm(
    migrated_database: str,
) -> None:
    dsn = migrated_database
    devices = [
        {"name": "m1", "state": "online", "profile": "chint-dtsu666", "failures": 0},
        {"name": "m2", "state": "offline", "failures": 7, "error": "no answer within 1.0 s"},
    ]

    async def scenario() -> None:
        store = await Store.connect(dsn)
        try:
            await store.write([], [status("firm-a", devices)])
            assert fetch(dsn, "SELECT code, onboarded_on FROM zayton.firms") == [("firm-a", None)]
            await store.write([batch(1, [power(LOCAL_MIDNIGHT, 1.0)])])
        finally:
            await store.close()

    asyncio.run(scenario())
    (onboarded,) = fetch(dsn, "SELECT onboarded_on FROM zayton.firms WHERE code = 'firm-a'")[0]
    local_today = (datetime.now(UTC) + timedelta(hours=8)).date()
    assert isinstance(onboarded, date)
    assert onboarded == local_today
    gateway = fetch(
        dsn,
        """SELECT g.uplink, g.alarms, g.outbox_batches, f.code
           FROM zayton.gateways g JOIN zayton.firms f ON f.id = g.firm_id""",
    )
    assert gateway == [("5g", ["outbox full (1 of 1 bytes)"], 3, "firm-a")]
    health = fetch(
        dsn,
        """SELECT d.name, d.state, d.profile, d.failures, d.error, f.code
           FROM zayton.devices d JOIN zayton.firms f ON f.id = d.firm_id ORDER BY d.name""",
    )
    assert health == [
        ("m1", "online", "chint-dtsu666", 0, None, "firm-a"),
        ("m2", "offline", None, 7, "no answer within 1.0 s", "firm-a"),
    ]
    carriers = fetch(dsn, "SELECT name, kind, carrier FROM zayton.points ORDER BY name")
    assert carriers == [("active_power_kw", "gauge", None)]


def test_a_write_does_not_wait_for_a_refresh_and_the_next_refresh_takes_it_in(
    migrated_database: str,
) -> None:
    dsn = migrated_database
    at = LOCAL_MIDNIGHT + timedelta(hours=1)
    asyncio.run(write_all(dsn, [batch(1, [power(at, 4.0)])]))
    assert rollup(dsn, "rollup_15m", "active_power_kw")[at][:3] == (1, 1, 4.0)

    async def scenario() -> None:
        # A refresh of the same bucket, held open: it has taken that bucket's mark.
        async with await psycopg.AsyncConnection.connect(dsn) as holder:
            await holder.execute("INSERT INTO zayton.rollup_dirty VALUES (%s)", (at,))
            await holder.commit()
            await holder.execute("SELECT zayton.refresh_rollups()")
            store = await Store.connect(dsn)
            try:
                # The write lands in the bucket whose refresh is still open.
                async with asyncio.timeout(30):
                    await store.write([batch(2, [power(at + timedelta(minutes=1), 6.0)])])
            finally:
                await store.close()
            await holder.commit()

    asyncio.run(scenario())
    # The open refresh saw one reading; the write's own mark makes the next one see both.
    assert rollup(dsn, "rollup_15m", "active_power_kw")[at][:3] == (1, 1, 4.0)
    asyncio.run(write_all(dsn, []))
    assert rollup(dsn, "rollup_15m", "active_power_kw")[at][:3] == (2, 2, 10.0)
    assert rollup(dsn, "rollup_day", "active_power_kw")[LOCAL_MIDNIGHT][:3] == (2, 2, 10.0)


LOCAL = ZoneInfo("Asia/Shanghai")
QUARTER = timedelta(minutes=15)
SPAN_PERIODS = [
    (LOCAL_MIDNIGHT - timedelta(days=1), LOCAL_MIDNIGHT + timedelta(days=2)),  # days
    (datetime(2026, 11, 1, tzinfo=LOCAL), datetime(2026, 12, 1, tzinfo=LOCAL)),  # a month
    # hours and quarter-hours at both ends, ends not on 15-minute boundaries
    (LOCAL_MIDNIGHT + timedelta(hours=1, minutes=5), LOCAL_MIDNIGHT + timedelta(days=1, minutes=7)),
    (LOCAL_MIDNIGHT - timedelta(hours=3), LOCAL_MIDNIGHT + timedelta(hours=25)),  # hours, a day
    (datetime(2026, 10, 31, 22, tzinfo=LOCAL), datetime(2026, 12, 1, 0, 15, tzinfo=LOCAL)),
    (LOCAL_MIDNIGHT + timedelta(minutes=50), LOCAL_MIDNIGHT + timedelta(minutes=55)),  # none
]
"""Periods over the data of :func:`one_local_day`, read from every mix of rollups."""


def one_local_day() -> list[Accepted]:
    """One local day at 5-minute steps and the next day's first reading: energy counts 1 kWh a
    step (none counted with the first reading), power is k mod 7 kW."""
    readings = []
    for k in range(DAY_STEPS + 1):
        at = LOCAL_MIDNIGHT + k * STEP
        readings.append(energy(at, 1000.0 + k, None if k == 0 else 1.0))
        readings.append(power(at, float(k % 7)))
    return [batch(1 + i // 60, readings[i : i + 60]) for i in range(0, len(readings), 60)]


def between_and_quarters(
    dsn: str, start: datetime, end: datetime, point_ids: Sequence[int] | None = None
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Per point, the sums of ``zayton.rollup_between`` over the period, and the same sums of
    the 15-minute buckets that start in it."""
    sums = """SELECT point_id, sum(readings), sum(samples), sum(value_sum), min(value_min),
                     max(value_max), sum(consumption)"""
    between = fetch(
        dsn,
        f"{sums} FROM zayton.rollup_between(%s, %s, %s) GROUP BY 1 ORDER BY 1",
        start,
        end,
        None if point_ids is None else list(point_ids),
    )
    first, stop = (ceil_quarter(t) for t in (start, end))
    quarters = fetch(
        dsn,
        f"""{sums} FROM zayton.rollup_15m WHERE bucket >= %s AND bucket < %s
              AND (%s::int[] IS NULL OR point_id = ANY (%s::int[])) GROUP BY 1 ORDER BY 1""",
        first,
        stop,
        None if point_ids is None else list(point_ids),
        None if point_ids is None else list(point_ids),
    )
    return between, quarters


def ceil_quarter(t: datetime) -> datetime:
    late = (t - LOCAL_MIDNIGHT) % QUARTER
    return t if not late else t + QUARTER - late


def _local_floor(t: datetime, level: str) -> datetime:
    local = t.astimezone(LOCAL)
    if level == "15m":
        return local.replace(minute=local.minute - local.minute % 15, second=0, microsecond=0)
    local = local.replace(minute=0, second=0, microsecond=0)
    if level in ("day", "month"):
        local = local.replace(hour=0)
    return local.replace(day=1) if level == "month" else local


def _next(t: datetime, level: str) -> datetime:
    local = t.astimezone(LOCAL)
    if level == "month":
        return local.replace(year=local.year + local.month // 12, month=local.month % 12 + 1)
    step = {"15m": QUARTER, "hour": timedelta(hours=1), "day": timedelta(days=1)}[level]
    return local + step


LEVELS = ("15m", "hour", "day", "month")


def test_rollup_spans_cover_each_quarter_hour_once_from_the_coarsest_rollups(
    migrated_database: str,
) -> None:
    rng = random.Random(2026)  # noqa: S311 - reproducible periods, not secrets
    periods = list(SPAN_PERIODS)
    for _ in range(300):
        start = datetime(2025, 12, 1, tzinfo=LOCAL) + timedelta(minutes=rng.randrange(0, 86400))
        scale = rng.choice([30, 180, 1440, 5 * 1440, 40 * 1440, 400 * 1440])
        periods.append((start, start + timedelta(minutes=rng.randrange(1, scale))))
    rows = fetch(
        migrated_database,
        """SELECT p.n, s.resolution, s.lo, s.hi
           FROM unnest(%s::timestamptz[], %s::timestamptz[]) WITH ORDINALITY AS p (a, b, n)
           CROSS JOIN LATERAL zayton.rollup_spans(p.a, p.b) s ORDER BY p.n, s.lo""",
        [a for a, _ in periods],
        [b for _, b in periods],
    )
    spans: dict[int, list[tuple[str, datetime, datetime]]] = {}
    for n, level, lo, hi in rows:
        spans.setdefault(n - 1, []).append((level, lo, hi))
    for i, (a, b) in enumerate(periods):
        found = spans.get(i, [])
        first, stop = ceil_quarter(a), ceil_quarter(b)
        where = f"[{a}, {b}): {found}"
        # Every 15-minute bucket that starts in the period, once, in spans that meet end to end.
        assert sum((hi - lo for _, lo, hi in found), timedelta()) == max(stop - first, timedelta())
        assert [(lo, hi) for _, lo, hi in found] == sorted((lo, hi) for _, lo, hi in found)
        if found:
            assert (found[0][1], found[-1][2]) == (first, stop), where
            assert all(x[2] == y[1] for x, y in itertools.pairwise(found)), where
        # Each span is whole buckets of its rollup.
        for level, lo, hi in found:
            assert lo < hi, where
            assert (_local_floor(lo, level), _local_floor(hi, level)) == (lo, hi), where
        # The coarsest: no whole bucket of a coarser rollup in the period, and at most one span
        # of the coarsest level used, two of each finer one (the ragged ends).
        used = [LEVELS.index(level) for level, _, _ in found]
        if used:
            top = max(used)
            assert used.count(top) == 1, where
            assert all(used.count(k) <= 2 for k in range(top)), where
            for coarser in LEVELS[top + 1 :]:
                boundary = _local_floor(first, coarser)
                if boundary < first:
                    boundary = _next(boundary, coarser)
                assert _next(boundary, coarser) > stop, where


def test_rollup_between_gives_the_quarter_hours_sums_from_coarser_rollups(
    migrated_database: str,
) -> None:
    dsn = migrated_database
    asyncio.run(write_all(dsn, one_local_day()))
    points = [row[0] for row in fetch(dsn, "SELECT id FROM zayton.points ORDER BY id")]
    assert len(points) == 2
    for start, end in SPAN_PERIODS:
        between, quarters = between_and_quarters(dsn, start, end)
        assert between == quarters, (start, end)
        if start == SPAN_PERIODS[0][0]:
            # All of it: 287 counted steps in the day and one at the next midnight.
            assert sorted(row[6] or 0 for row in between) == [0, DAY_STEPS]
        only, alone = between_and_quarters(dsn, start, end, points[1:])
        assert only == alone == [row for row in quarters if row[0] == points[1]]
        assert between_and_quarters(dsn, start, end, [])[0] == []
    # Months and days are read from their rollups: one month row for the month.
    month = fetch(dsn, "SELECT count(*) FROM zayton.rollup_between(%s, %s)", *SPAN_PERIODS[1])
    assert month == [(2,)]


def test_completeness_counts_readings_against_the_poll_interval(migrated_database: str) -> None:
    dsn = migrated_database
    hour = LOCAL_MIDNIGHT + timedelta(hours=2)
    minute = timedelta(minutes=1)
    # m1 is polled every 60 s; in this hour 45 polls answered, 5 of them without a value.
    readings = [power(hour + k * minute, float(k)) for k in range(40)]
    readings += [
        {**power(hour + k * minute, 0.0), "value": None, "quality": "bad"} for k in range(40, 45)
    ]
    # m2 (polled every 10 s) reported in the hour before, and nothing in this one.
    before = [
        {**power(hour - 10 * minute + k * timedelta(seconds=10), 1.0), "device": "m2"}
        for k in range(6)
    ]

    async def scenario() -> list[tuple[Any, ...]]:
        store = await Store.connect(dsn)
        try:
            devices = [
                {"name": "m1", "state": "online", "interval_s": 60.0},
                {"name": "m2", "state": "online", "interval_s": 10.0},
            ]
            await store.write([batch(1, readings), batch(2, before)], [status("f", devices)])
        finally:
            await store.close()
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await refresh(conn, Storage.PLAIN)
            cursor = await conn.execute(
                """SELECT d.name, c.expected, c.received, c.valid, c.ratio
                   FROM zayton.completeness(%s, %s) c
                   JOIN zayton.points p ON p.id = c.point_id
                   JOIN zayton.devices d ON d.id = p.device_id ORDER BY d.name""",
                (hour, hour + 60 * minute),
            )
            return await cursor.fetchall()

    assert asyncio.run(scenario()) == [
        ("m1", 60.0, 45, 40, 45 / 60),
        ("m2", 360.0, 0, 0, 0.0),
    ]
    counted = """SELECT d.name, c.expected, c.received, c.valid
                 FROM zayton.completeness(%s, %s, %s) c
                 JOIN zayton.points p ON p.id = c.point_id
                 JOIN zayton.devices d ON d.id = p.device_id ORDER BY d.name"""
    # From a quarter before the hour to a quarter after (15-minute, hourly, 15-minute rollups):
    # m1 is expected from its first reading on, m2 from the quarter of its first.
    wider = (hour - 15 * minute, hour + 75 * minute)
    assert fetch(dsn, counted, *wider, None) == [("m1", 75.0, 45, 40), ("m2", 540.0, 6, 6)]
    (m2,) = fetch(
        dsn,
        "SELECT p.id FROM zayton.points p JOIN zayton.devices d ON d.id = "
        "p.device_id WHERE d.name = 'm2'",
    )
    assert fetch(dsn, counted, *wider, [m2[0]]) == [("m2", 540.0, 6, 6)]
    assert fetch(dsn, counted, *wider, []) == []
