"""The only ingest module that talks psycopg: registry, binary COPY, dead letters, one commit.

Readings go straight into the keyed table with binary COPY. Replays are normal with QoS 1 (a
batch redelivered after a crash), so when a COPY hits the primary key the batch falls back, inside
the same transaction, to a staging table and ``INSERT … ON CONFLICT DO NOTHING``: the fast path
costs nothing extra, the slow path only runs for batches that contain duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql

from ingest.migrate import SCHEMA, latest_version
from wire.catalogue import metric
from wire.payload import Quality, Status, Telemetry
from wire.topics import Topic

log = logging.getLogger(__name__)

QUALITY_CODES = {Quality.GOOD: 0, Quality.UNCERTAIN: 1, Quality.BAD: 2}
_COPY_TYPES = ["int4", "timestamptz", "float8", "int2"]

Row = tuple[int, datetime, float | None, int]


class StoreError(RuntimeError):
    """The database is not usable by this ingester (not migrated, or too new)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    topic: Topic
    batch: Telemetry


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    topic: Topic
    status: Status


@dataclass(frozen=True, slots=True)
class Rejected:
    topic: str
    payload: bytes
    reason: str


@dataclass(slots=True)
class WriteResult:
    inserted: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    statuses: int = 0


@dataclass(slots=True)
class _Registry:
    gateways: dict[tuple[str, str], int] = field(default_factory=dict)
    points: dict[tuple[str, str, str], int] = field(default_factory=dict)


class Store:
    def __init__(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        self._conn = conn
        self._registry = _Registry()
        self._days: set[date] = set()

    @classmethod
    async def connect(cls, dsn: str) -> Store:
        # Autocommit: every write opens its own explicit transaction block.
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        try:
            await _check_schema(conn)
            await conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS readings_stage "
                "(point_id int4, ts timestamptz, value float8, quality int2) "
                "ON COMMIT DELETE ROWS"
            )
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def close(self) -> None:
        await self._conn.close()

    async def write(
        self,
        accepted: Sequence[Accepted],
        statuses: Sequence[StatusUpdate] = (),
        rejected: Sequence[Rejected] = (),
    ) -> WriteResult:
        """Store everything in one transaction; return what it did."""
        result = WriteResult()
        for update in statuses:
            await self._gateway_id(update.topic.site, update.topic.gateway)
        rows, latest = await self._rows(accepted)
        await self._ensure_partitions(rows)
        async with self._conn.transaction():
            if rows:
                result.inserted = await self._copy_readings(rows)
                result.duplicates = len(rows) - result.inserted
                await self._upsert_latest(latest.values())
            await self._note_sequences(accepted)
            for update in statuses:
                await self._apply_status(update)
                result.statuses += 1
            if rejected:
                await self._dead_letters(rejected)
                result.dead_letters = len(rejected)
        return result

    async def _rows(self, accepted: Sequence[Accepted]) -> tuple[list[Row], dict[int, Row]]:
        rows: list[Row] = []
        latest: dict[int, Row] = {}
        points = self._registry.points
        for item in accepted:
            site, gateway = item.topic.site, item.topic.gateway
            for reading in item.batch.readings:
                key = (site, reading.device, reading.point)
                point_id = points.get(key)
                if point_id is None:
                    point_id = await self._register_point(site, gateway, reading.device, key[2])
                row = (point_id, reading.ts, reading.value, QUALITY_CODES[reading.quality])
                rows.append(row)
                newest = latest.get(point_id)
                if newest is None or newest[1] < reading.ts:
                    latest[point_id] = row
        return rows, latest

    async def _copy_readings(self, rows: list[Row]) -> int:
        copy_sql = "COPY {}.readings (point_id, ts, value, quality) FROM STDIN (FORMAT BINARY)"
        try:
            async with self._conn.transaction():
                await self._copy(sql.SQL(copy_sql).format(sql.Identifier(SCHEMA)), rows)
        except psycopg.errors.UniqueViolation:
            await self._copy(sql.SQL("COPY readings_stage FROM STDIN (FORMAT BINARY)"), rows)
            cursor = await self._conn.execute(
                f"INSERT INTO {SCHEMA}.readings SELECT * FROM readings_stage ON CONFLICT DO NOTHING"
            )
            return cursor.rowcount
        return len(rows)

    async def _copy(self, statement: sql.Composed | sql.SQL, rows: Iterable[Row]) -> None:
        async with self._conn.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(_COPY_TYPES)
            for row in rows:
                await copy.write_row(row)

    async def _upsert_latest(self, rows: Iterable[Row]) -> None:
        ids, stamps, values, qualities = zip(*rows, strict=True)
        await self._conn.execute(
            f"""INSERT INTO {SCHEMA}.latest AS l (point_id, ts, value, quality)
                SELECT * FROM unnest(%s::int4[], %s::timestamptz[], %s::float8[], %s::int2[])
                ON CONFLICT (point_id) DO UPDATE
                SET ts = excluded.ts, value = excluded.value, quality = excluded.quality
                WHERE l.ts < excluded.ts""",
            (list(ids), list(stamps), list(values), list(qualities)),
        )

    async def _note_sequences(self, accepted: Sequence[Accepted]) -> None:
        newest: dict[int, int] = {}
        for item in accepted:
            gateway_id = await self._gateway_id(item.topic.site, item.topic.gateway)
            newest[gateway_id] = max(newest.get(gateway_id, 0), item.batch.seq)
        for gateway_id, seq in newest.items():
            await self._conn.execute(
                f"UPDATE {SCHEMA}.gateways SET last_seen = now(), "
                "last_seq = greatest(last_seq, %s) WHERE id = %s",
                (seq, gateway_id),
            )

    async def _apply_status(self, update: StatusUpdate) -> None:
        status = update.status
        await self._conn.execute(
            f"""UPDATE {SCHEMA}.gateways
                SET firm = %s, uplink = %s, state = %s, software = %s, last_seen = now()
                WHERE site = %s AND name = %s""",
            (
                status.firm,
                status.uplink.value if status.uplink else None,
                status.state,
                status.software,
                update.topic.site,
                update.topic.gateway,
            ),
        )

    async def _dead_letters(self, rejected: Sequence[Rejected]) -> None:
        async with self._conn.cursor() as cursor:
            await cursor.executemany(
                f"INSERT INTO {SCHEMA}.dead_letters (topic, payload, reason) VALUES (%s, %s, %s)",
                [(r.topic, r.payload, r.reason) for r in rejected],
            )

    async def _ensure_partitions(self, rows: list[Row]) -> None:
        if not rows:
            return
        first = min(row[1] for row in rows).astimezone(UTC).date()
        last = max(row[1] for row in rows).astimezone(UTC).date()
        days = {first + timedelta(days=n) for n in range((last - first).days + 1)}
        if days <= self._days:
            return
        async with self._conn.transaction():
            await self._conn.execute(
                f"SELECT {SCHEMA}.ensure_readings_partitions(%s, %s)", (first, last)
            )
        self._days |= days

    async def _gateway_id(self, site: str, gateway: str) -> int:
        key = (site, gateway)
        known = self._registry.gateways.get(key)
        if known is not None:
            return known
        async with self._conn.transaction():
            cursor = await self._conn.execute(
                f"""INSERT INTO {SCHEMA}.gateways (site, name) VALUES (%s, %s)
                    ON CONFLICT (site, name) DO UPDATE SET last_seen = now()
                    RETURNING id""",
                key,
            )
            row = await cursor.fetchone()
        assert row is not None  # RETURNING always yields the row  # noqa: S101
        self._registry.gateways[key] = int(str(row[0]))
        return self._registry.gateways[key]

    async def _register_point(self, site: str, gateway: str, device: str, point: str) -> int:
        """Register a point the first time it is seen (committed at once, so the cache never
        holds an id that a rolled-back transaction created)."""
        gateway_id = await self._gateway_id(site, gateway)
        known = metric(point)
        async with self._conn.transaction():
            cursor = await self._conn.execute(
                f"""INSERT INTO {SCHEMA}.devices (site, name, gateway_id) VALUES (%s, %s, %s)
                    ON CONFLICT (site, name) DO UPDATE SET gateway_id = excluded.gateway_id
                    RETURNING id""",
                (site, device, gateway_id),
            )
            device_row = await cursor.fetchone()
            assert device_row is not None  # noqa: S101
            cursor = await self._conn.execute(
                f"""INSERT INTO {SCHEMA}.points (device_id, name, unit, kind)
                    VALUES (%s, %s, %s, %s)
                    ON CONFLICT (device_id, name) DO UPDATE SET name = excluded.name
                    RETURNING id""",
                (
                    device_row[0],
                    point,
                    known.unit if known else None,
                    known.kind.value if known else "gauge",
                ),
            )
            point_row = await cursor.fetchone()
        assert point_row is not None  # noqa: S101
        point_id = int(str(point_row[0]))
        self._registry.points[(site, device, point)] = point_id
        return point_id


async def _check_schema(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    try:
        cursor = await conn.execute(f"SELECT max(version) FROM {SCHEMA}.schema_migrations")
    except psycopg.errors.UndefinedTable:
        raise StoreError("the database has no Zayton schema: run 'zayton db migrate'") from None
    row = await cursor.fetchone()
    have = int(str(row[0])) if row and row[0] is not None else 0
    want = latest_version()
    if have < want:
        raise StoreError(
            f"the database is at migration {have}, this ingester needs {want}: "
            "run 'zayton db migrate'"
        )
