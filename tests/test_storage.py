"""Migrations and the store, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ingest.migrate import MigrationError, Storage, discover, migrate, timescale_available
from ingest.store import Accepted, Rejected, Store, StoreError
from tests.conftest import DatabaseFactory
from wire.payload import Quality, encode_telemetry, format_ts, parse_telemetry
from wire.topics import Stream, Topic

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 23, 59, 58, tzinfo=UTC)  # batches span a UTC day boundary
TOPIC = Topic("site-1", "gw-1", Stream.TELEMETRY)


def telemetry(seq: int, start: datetime, count: int, device: str = "m1") -> Accepted:
    readings = [
        (device, "active_power_kw", format_ts(start + timedelta(seconds=i)), float(i), Quality.GOOD)
        for i in range(count)
    ]
    payload = encode_telemetry("gw-1", seq, start, readings)
    return Accepted(TOPIC, parse_telemetry(payload, TOPIC), payload)


def fetch(dsn: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


def test_migrations_are_versioned_and_idempotent(pg_database: DatabaseFactory) -> None:
    dsn = pg_database("migrate")
    first = migrate(dsn)
    assert first.storage is Storage.PLAIN
    assert [m.version for m in first.applied] == [m.version for m in discover()]
    again = migrate(dsn)
    assert again.applied == []
    assert again.current == first.current
    rows = fetch(dsn, "SELECT version, storage FROM zayton.schema_migrations ORDER BY version")
    assert rows == [(m.version, "plain") for m in discover()]
    kind = fetch(dsn, "SELECT relkind FROM pg_class WHERE oid = 'zayton.readings'::regclass")
    assert kind == [("p",)], "plain storage partitions the readings table"


def test_every_migration_has_both_storage_variants() -> None:
    for migration in discover():
        assert set(migration.sql) == set(Storage)


def test_a_storage_path_is_never_switched(pg_database: DatabaseFactory) -> None:
    dsn = pg_database("switch")
    migrate(dsn, storage=Storage.PLAIN)
    with pytest.raises(MigrationError, match="already uses plain storage"):
        migrate(dsn, storage=Storage.TIMESCALE)


def test_timescale_is_refused_where_the_extension_is_missing(pg_database: DatabaseFactory) -> None:
    dsn = pg_database("nots")
    with psycopg.connect(dsn) as conn:
        if timescale_available(conn):
            pytest.skip("this server has TimescaleDB; the refusal cannot be shown here")
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        migrate(dsn, storage=Storage.TIMESCALE)


def test_the_store_refuses_an_unmigrated_database(pg_database: DatabaseFactory) -> None:
    with pytest.raises(StoreError, match="zayton db migrate"):
        asyncio.run(Store.connect(pg_database("bare")))


def test_copy_then_replay_keeps_one_row_per_point_and_time(migrated_database: str) -> None:
    async def scenario() -> list[tuple[int, int]]:
        store = await Store.connect(migrated_database)
        try:
            results = [await store.write([telemetry(1, T0, 5)])]
            results.append(await store.write([telemetry(1, T0, 5)]))  # a QoS 1 redelivery
            results.append(await store.write([telemetry(2, T0 + timedelta(seconds=3), 4)]))
        finally:
            await store.close()
        return [(r.inserted, r.duplicates) for r in results]

    assert asyncio.run(scenario()) == [(5, 0), (0, 5), (2, 2)]
    rows = fetch(migrated_database, "SELECT ts, value FROM zayton.readings ORDER BY ts")
    # The first of two rows for a point and time wins: a replay never rewrites history.
    assert [value for _, value in rows] == [0.0, 1.0, 2.0, 3.0, 4.0, 2.0, 3.0]
    days = fetch(migrated_database, "SELECT DISTINCT tableoid::regclass::text FROM zayton.readings")
    assert len(days) == 2, "rows land in the partition of their UTC day"
    latest = fetch(migrated_database, "SELECT ts, value FROM zayton.latest")
    assert latest == [(T0 + timedelta(seconds=6), 3.0)]
    assert fetch(migrated_database, "SELECT last_seq FROM zayton.gateways") == [(2,)]


def test_dead_letters_share_the_commit_of_good_batches(migrated_database: str) -> None:
    async def scenario() -> None:
        store = await Store.connect(migrated_database)
        try:
            bad = Rejected("zayton/v1/site-1/gw-1/telemetry", b"\x00not json", "Invalid JSON")
            result = await store.write([telemetry(1, T0, 2)], rejected=[bad])
        finally:
            await store.close()
        assert (result.inserted, result.dead_letters) == (2, 1)

    asyncio.run(scenario())
    letters = fetch(migrated_database, "SELECT topic, payload, reason FROM zayton.dead_letters")
    assert letters == [("zayton/v1/site-1/gw-1/telemetry", b"\x00not json", "Invalid JSON")]


def test_every_pattern_of_nulls_survives_the_bulk_copy_encoding(migrated_database: str) -> None:
    def reading(point: str, second: int, value: str, quality: str, delta: str) -> str:
        extra = "" if delta == "absent" else f',"delta":{delta}'
        return (
            f'{{"device":"m1","point":"{point}","ts":"{format_ts(T0 + timedelta(seconds=second))}",'
            f'"value":{value},"quality":"{quality}"{extra}}}'
        )

    cases = [
        ("energy_import_kwh", 0, "1000.25", "good", "0.5"),
        ("energy_import_kwh", 1, "1000.75", "uncertain", "absent"),
        ("energy_import_kwh", 2, "null", "bad", "0.125"),
        ("energy_import_kwh", 3, "null", "bad", "absent"),
        ("active_power_kw", 3, "-12", "good", "absent"),
    ]
    payload = (
        '{"schema_version":1,"gateway":"gw-1","seq":1,"sent_at":"2026-11-21T00:00:00Z",'
        f'"readings":[{",".join(reading(*case) for case in cases)}]}}'
    ).encode()

    async def scenario() -> None:
        store = await Store.connect(migrated_database)
        try:
            await store.write([Accepted(TOPIC, parse_telemetry(payload, TOPIC), payload)])
        finally:
            await store.close()

    asyncio.run(scenario())
    rows = fetch(
        migrated_database,
        """SELECT p.name, r.ts, r.value, r.quality, r.delta FROM zayton.readings r
           JOIN zayton.points p ON p.id = r.point_id ORDER BY p.name, r.ts""",
    )
    codes = {"good": 0, "uncertain": 1, "bad": 2}
    expected = sorted(
        (
            point,
            T0 + timedelta(seconds=second),
            None if value == "null" else float(value),
            codes[quality],
            None if delta == "absent" else float(delta),
        )
        for point, second, value, quality, delta in cases
    )
    assert rows == expected
    latest = fetch(
        migrated_database,
        """SELECT p.name, l.ts, l.value, l.quality FROM zayton.latest l
           JOIN zayton.points p ON p.id = l.point_id ORDER BY p.name""",
    )
    assert latest == [
        ("active_power_kw", T0 + timedelta(seconds=3), -12.0, 0),
        ("energy_import_kwh", T0 + timedelta(seconds=3), None, 2),
    ]


def test_latest_values_move_forward_at_their_interval_and_on_closing(
    migrated_database: str,
) -> None:
    def latest() -> list[tuple[object, ...]]:
        return fetch(migrated_database, "SELECT ts FROM zayton.latest")

    async def scenario() -> list[list[tuple[object, ...]]]:
        seen = []
        store = await Store.connect(migrated_database, latest_interval_s=3600)
        try:
            await store.write([telemetry(1, T0, 2)])
            seen.append(latest())  # the first write brings them up to date
            await store.write([telemetry(2, T0 + timedelta(seconds=5), 2)])
            seen.append(latest())  # within the interval: not yet
        finally:
            await store.close()
        seen.append(latest())
        return seen

    first, second, closed = asyncio.run(scenario())
    assert first == second == [(T0 + timedelta(seconds=1),)]
    assert closed == [(T0 + timedelta(seconds=6),)]
