"""The only ingest module that talks psycopg: registry, binary COPY, dead letters, one commit.

Deduplication happens twice. A batch is known by its gateway and sequence number, with a digest
of its bytes: a batch redelivered after a crash (same digest) is skipped whole before anything is
written, and a different batch under a sequence number already taken is a dead letter. Readings
then go straight into the keyed table with binary COPY; when a COPY still hits the primary key (the
same readings in another batch, a backfill) the rows fall back, inside the same transaction, to a
staging table and ``INSERT … ON CONFLICT DO NOTHING``. The fast path costs nothing extra.

On plain PostgreSQL every write marks the 15-minute buckets it touched, in the same transaction,
for :func:`ingest.rollups.refresh`; TimescaleDB tracks that itself.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import NamedTuple, cast

import psycopg
from psycopg import sql

from ingest.copyrows import (
    HEADER,
    PG_EPOCH,
    TRAILER,
    CopyRows,
    Latest,
    latest_rows,
    merge_latest,
    utc_days,
)
from ingest.migrate import SCHEMA, Storage, latest_version
from wire.catalogue import CARRIERS, metric
from wire.payload import CounterEvent, Status, Telemetry
from wire.topics import Topic

log = logging.getLogger(__name__)

BUCKET_S = 900
"""The smallest rollup, in seconds (15 minutes)."""


class StoreError(RuntimeError):
    """The database is not usable by this ingester (not migrated, or too new)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    topic: Topic
    batch: Telemetry
    payload: bytes
    """The bytes as received: their digest tells a redelivery from another batch."""


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
    """Readings not inserted because they were there already (redelivered batches included)."""
    replayed_batches: int = 0
    readings: int = 0
    """Readings in the telemetry batches taken (new or replayed)."""
    dead_letters: int = 0
    statuses: int = 0
    events: int = 0


class _Fresh(NamedTuple):
    gateway_id: int
    item: Accepted
    digest: bytes


@dataclass(slots=True)
class _Registry:
    gateways: dict[tuple[str, str], int] = field(default_factory=dict)
    points: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    """site: {(device, point): id}."""


def digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


class Store:
    def __init__(
        self,
        conn: psycopg.AsyncConnection[tuple[object, ...]],
        storage: Storage,
        *,
        auto_register: bool = True,
        latest_interval_s: float = 1.0,
    ) -> None:
        """``auto_register``: a device is registered by its first reading; without it, only
        devices a gateway announced in its status are taken, and batches naming any other
        are dead letters.

        ``latest_interval_s``: the latest value of each point moves forward with the first
        write after this long (and on :meth:`close`), not with every write: in a fleet where
        each write carries one reading of every point it would double the cost of a write."""
        self._conn = conn
        self.storage = storage
        self.auto_register = auto_register
        self._registry = _Registry()
        self._days: set[date] = set()
        self._announced: set[tuple[str, str]] = set()
        self.latest_interval_s = latest_interval_s
        self._latest: Latest = {}
        """Newest committed readings not yet in ``zayton.latest``."""
        self._latest_at = -math.inf
        self._live: set[int] = set()
        """Gateways whose data has been committed by this store (their firm is onboarded)."""

    @classmethod
    async def connect(
        cls, dsn: str, *, auto_register: bool = True, latest_interval_s: float = 1.0
    ) -> Store:
        # Autocommit: every write opens its own explicit transaction block.
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        try:
            storage = await _check_schema(conn)
            await conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS readings_stage "
                "(point_id int4, ts timestamptz, value float8, quality int2, delta float8) "
                "ON COMMIT DELETE ROWS"
            )
            await conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS latest_stage (LIKE readings_stage) "
                "ON COMMIT DELETE ROWS"
            )
        except BaseException:
            await conn.close()
            raise
        return cls(conn, storage, auto_register=auto_register, latest_interval_s=latest_interval_s)

    async def close(self) -> None:
        """Bring ``zayton.latest`` up to date, then close."""
        try:
            if self._latest and not self._conn.closed:
                async with self._conn.transaction():
                    await self._upsert_latest(self._latest)
                self._latest.clear()
        except psycopg.Error as err:
            log.warning("latest values not brought up to date on closing: %s", err)
        finally:
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
        fresh, replays, repeated = await self._sort_batches(accepted)
        if not self.auto_register:
            fresh, strangers = await self._announced_only(fresh, statuses)
            repeated.extend(strangers)
        result.replayed_batches = len(replays)
        result.readings = sum(len(item.batch.readings) for item in accepted)
        result.duplicates = sum(len(item.batch.readings) for item in replays)
        rejected = [*rejected, *repeated]
        resolved = await self._resolve(fresh)
        events = await self._events(fresh)
        await self._ensure_partitions(
            utc_days(at for entry in fresh for at in entry.item.batch.stamps.values())
        )
        rows = CopyRows(BUCKET_S * 1_000_000)
        now = time.monotonic()
        latest_due = now - self._latest_at >= self.latest_interval_s
        async with self._conn.transaction():
            if resolved:
                inserted = await self._copy_readings(resolved, rows)
                result.inserted = inserted
                result.duplicates += rows.count - inserted
                if self.storage is Storage.PLAIN:
                    await self._mark_stale(rows.buckets)
            if latest_due and (self._latest or rows.latest):
                newest = dict(self._latest)
                merge_latest(newest, rows.latest)
                await self._upsert_latest(newest)
            if events:
                result.events = await self._store_events(events)
            live = await self._note_batches(fresh)
            for update in statuses:
                await self._apply_status(update)
                result.statuses += 1
            if rejected:
                await self._dead_letters(rejected)
                result.dead_letters = len(rejected)
        self._live.update(live)
        if latest_due:
            self._latest.clear()
            self._latest_at = now
        else:
            merge_latest(self._latest, rows.latest)
        return result

    async def _sort_batches(
        self, accepted: Sequence[Accepted]
    ) -> tuple[list[_Fresh], list[Accepted], list[Rejected]]:
        """Split batches into new ones, redeliveries (the gateway, seq and digest of a batch
        taken before) and impostors (a seq already taken, with other content)."""
        keyed = [
            _Fresh(
                await self._gateway_id(item.topic.site, item.topic.gateway),
                item,
                digest(item.payload),
            )
            for item in accepted
        ]
        taken: dict[tuple[int, int], tuple[bytes, datetime | None]] = {}
        if keyed:
            cursor = await self._conn.execute(
                f"""SELECT b.gateway_id, b.seq, b.digest, b.received_at
                    FROM {SCHEMA}.batches b
                    JOIN unnest(%s::int4[], %s::int8[]) AS k (gateway_id, seq)
                      ON b.gateway_id = k.gateway_id AND b.seq = k.seq""",
                ([k.gateway_id for k in keyed], [k.item.batch.seq for k in keyed]),
            )
            for gateway_id, seq, known, received_at in await cursor.fetchall():
                assert isinstance(received_at, datetime)  # noqa: S101 - timestamptz
                taken[int(str(gateway_id)), int(str(seq))] = (bytes(known), received_at)  # type: ignore[call-overload]
        fresh: list[_Fresh] = []
        replays: list[Accepted] = []
        repeated: list[Rejected] = []
        for entry in keyed:
            batch = entry.item.batch
            before = taken.get((entry.gateway_id, batch.seq))
            if before is None:
                taken[entry.gateway_id, batch.seq] = (entry.digest, None)
                fresh.append(entry)
            elif before[0] == entry.digest:
                replays.append(entry.item)
            else:
                when = "earlier in this batch" if before[1] is None else before[1].isoformat()
                repeated.append(
                    Rejected(
                        str(entry.item.topic),
                        entry.item.payload,
                        f"seq {batch.seq} of gateway {batch.gateway!r} was taken ({when}) with "
                        "other content: a gateway whose outbox was reset, or two gateways "
                        "with one id",
                    )
                )
        return fresh, replays, repeated

    async def _announced_only(
        self, fresh: list[_Fresh], statuses: Sequence[StatusUpdate]
    ) -> tuple[list[_Fresh], list[Rejected]]:
        """Keep the batches whose devices were all announced by a gateway's status (in the
        database, or in ``statuses`` of this same write)."""
        for update in statuses:
            self._announced.update((update.topic.site, d.name) for d in update.status.devices)
        kept: list[_Fresh] = []
        strangers: list[Rejected] = []
        for entry in fresh:
            site, batch = entry.item.topic.site, entry.item.batch
            named = {r.device for r in batch.readings} | {e.device for e in batch.events}
            unknown = {name for name in named if (site, name) not in self._announced}
            if unknown:
                cursor = await self._conn.execute(
                    f"""SELECT name FROM {SCHEMA}.devices
                        WHERE site = %s AND name = ANY (%s) AND state IS NOT NULL""",
                    (site, sorted(unknown)),
                )
                found = {str(row[0]) for row in await cursor.fetchall()}
                self._announced.update((site, name) for name in found)
                unknown -= found
            if unknown:
                strangers.append(
                    Rejected(
                        str(entry.item.topic),
                        entry.item.payload,
                        f"unknown device(s) {', '.join(sorted(unknown))} at site {site!r}: no "
                        "gateway status announced them (automatic registration is off)",
                    )
                )
            else:
                kept.append(entry)
        return kept, strangers

    async def _point_id(
        self, site: str, gateway: str, device: str, point: str, at: datetime
    ) -> int:
        known = self._registry.points.setdefault(site, {})
        if (device, point) not in known:
            await self._register_points(site, gateway, [(device, point, at)])
        return known[device, point]

    async def _resolve(self, fresh: Sequence[_Fresh]) -> list[tuple[Telemetry, list[int]]]:
        """Each batch with the point ids of its readings, registering new points."""
        resolved = []
        for entry in fresh:
            site, gateway = entry.item.topic.site, entry.item.topic.gateway
            batch = entry.item.batch
            known = self._registry.points.setdefault(site, {})
            ids = [known.get((r.device, r.point)) for r in batch.readings]
            if None in ids:
                await self._register_points(
                    site,
                    gateway,
                    (
                        (r.device, r.point, batch.stamps[r.stamp])
                        for r, i in zip(batch.readings, ids, strict=True)
                        if i is None
                    ),
                )
                ids = [known[r.device, r.point] for r in batch.readings]
            resolved.append((batch, cast("list[int]", ids)))
        return resolved

    async def _events(self, fresh: Sequence[_Fresh]) -> list[tuple[int, CounterEvent]]:
        found = []
        for entry in fresh:
            site, gateway = entry.item.topic.site, entry.item.topic.gateway
            for event in entry.item.batch.events:
                point_id = await self._point_id(site, gateway, event.device, event.point, event.ts)
                found.append((point_id, event))
        return found

    async def _copy_readings(
        self, resolved: list[tuple[Telemetry, list[int]]], rows: CopyRows
    ) -> int:
        """COPY the readings straight into the keyed table, encoding each batch while the
        server takes in the one before; on a key conflict, the same rows go through staging."""
        copy_sql = sql.SQL(
            "COPY {}.readings (point_id, ts, value, quality, delta) FROM STDIN (FORMAT BINARY)"
        ).format(sql.Identifier(SCHEMA))
        try:
            async with (
                self._conn.transaction(),
                self._conn.cursor() as cursor,
                cursor.copy(copy_sql) as copy,
            ):
                await copy.write(HEADER)
                for batch, ids in resolved:
                    await copy.write(rows.add(batch.readings, ids, batch.stamps))
                await copy.write(TRAILER)
        except psycopg.errors.UniqueViolation:
            # The server may refuse before every batch was sent: encode the rest.
            for batch, ids in resolved[len(rows.chunks) :]:
                rows.add(batch.readings, ids, batch.stamps)
            await self._copy(
                sql.SQL("COPY readings_stage FROM STDIN (FORMAT BINARY)"), rows.buffer()
            )
            cursor = await self._conn.execute(
                f"INSERT INTO {SCHEMA}.readings (point_id, ts, value, quality, delta) "
                "SELECT * FROM readings_stage ON CONFLICT DO NOTHING"
            )
            return cursor.rowcount
        return rows.count

    async def _copy(self, statement: sql.Composed | sql.SQL, data: bytes) -> None:
        async with self._conn.cursor() as cursor, cursor.copy(statement) as copy:
            await copy.write(data)

    async def _upsert_latest(self, latest: Latest) -> None:
        """Move each point's latest value forward: an UPDATE joined to the newest readings
        (COPYed to a temporary table), then an upsert only for points that have none yet;
        several times cheaper than an ``INSERT … ON CONFLICT DO UPDATE`` of every row. Rows
        are locked in point order first, so ingesters sharing points cannot deadlock."""
        stage = sql.SQL("COPY latest_stage FROM STDIN (FORMAT BINARY)")
        await self._copy(stage, latest_rows(dict(sorted(latest.items()))))
        await self._conn.execute(
            f"""SELECT FROM {SCHEMA}.latest l
                WHERE l.point_id IN (SELECT point_id FROM latest_stage)
                ORDER BY l.point_id FOR UPDATE"""
        )
        cursor = await self._conn.execute(
            f"""UPDATE {SCHEMA}.latest l
                SET ts = s.ts, value = s.value, quality = s.quality
                FROM latest_stage s WHERE l.point_id = s.point_id AND l.ts < s.ts"""
        )
        if cursor.rowcount == len(latest):
            return
        await self._conn.execute(
            f"""INSERT INTO {SCHEMA}.latest AS l (point_id, ts, value, quality)
                SELECT s.point_id, s.ts, s.value, s.quality FROM latest_stage s
                WHERE NOT EXISTS (SELECT FROM {SCHEMA}.latest o WHERE o.point_id = s.point_id)
                ORDER BY s.point_id
                ON CONFLICT (point_id) DO UPDATE
                SET ts = excluded.ts, value = excluded.value, quality = excluded.quality
                WHERE l.ts < excluded.ts"""
        )

    async def _mark_stale(self, buckets: set[int]) -> None:
        """Mark the 15-minute ``buckets`` (microseconds since 2000-01-01 UTC) for the next
        rollup refresh; an append that never waits for a refresh in progress."""
        await self._conn.execute(
            f"""INSERT INTO {SCHEMA}.rollup_dirty (bucket)
                SELECT %s::timestamptz + b * interval '1 microsecond'
                FROM unnest(%s::int8[]) AS b""",
            (PG_EPOCH, sorted(buckets)),
        )

    async def _store_events(self, events: list[tuple[int, CounterEvent]]) -> int:
        cursor = await self._conn.execute(
            f"""INSERT INTO {SCHEMA}.counter_events
                    (point_id, ts, kind, before, after, amount, detail)
                SELECT * FROM unnest(%s::int4[], %s::timestamptz[], %s::text[], %s::float8[],
                                     %s::float8[], %s::float8[], %s::text[])
                ON CONFLICT DO NOTHING""",
            (
                [point_id for point_id, _ in events],
                [e.ts for _, e in events],
                [e.kind for _, e in events],
                [e.before for _, e in events],
                [e.after for _, e in events],
                [e.amount for _, e in events],
                [e.detail for _, e in events],
            ),
        )
        return cursor.rowcount

    async def _note_batches(self, fresh: Sequence[_Fresh]) -> list[int]:
        """Record the batches taken, and that their gateways (and firms) are live; return the
        gateways this store has now seen live for the first time."""
        if not fresh:
            return []
        await self._conn.execute(
            f"""INSERT INTO {SCHEMA}.batches (gateway_id, seq, digest, readings)
                SELECT * FROM unnest(%s::int4[], %s::int8[], %s::bytea[], %s::int4[])
                ON CONFLICT DO NOTHING""",
            (
                [f.gateway_id for f in fresh],
                [f.item.batch.seq for f in fresh],
                [f.digest for f in fresh],
                [len(f.item.batch.readings) for f in fresh],
            ),
        )
        newest: dict[int, int] = {}
        for f in sorted(fresh, key=lambda f: f.gateway_id):  # rows locked in one order
            newest[f.gateway_id] = max(newest.get(f.gateway_id, 0), f.item.batch.seq)
        await self._conn.execute(
            f"""UPDATE {SCHEMA}.gateways g SET last_seen = now(),
                    last_seq = greatest(g.last_seq, n.seq)
                FROM unnest(%s::int4[], %s::int8[]) AS n (id, seq) WHERE g.id = n.id""",
            (list(newest), list(newest.values())),
        )
        # Once per gateway and ingester: a firm named later by a status is onboarded there.
        first = [gateway_id for gateway_id in newest if gateway_id not in self._live]
        if first:
            await self._conn.execute(
                f"""UPDATE {SCHEMA}.firms f
                    SET onboarded_on = (now() AT TIME ZONE {SCHEMA}.local_zone())::date
                    FROM {SCHEMA}.gateways g
                    WHERE g.firm_id = f.id AND g.id = ANY (%s) AND f.onboarded_on IS NULL""",
                (first,),
            )
        return first

    async def _apply_status(self, update: StatusUpdate) -> None:
        """The gateway's metadata and health, its firm (registered, and onboarded once the
        gateway has sent data), and its devices' health."""
        status = update.status
        gateway_id = await self._gateway_id(update.topic.site, update.topic.gateway)
        firm_id = None
        if status.firm:
            cursor = await self._conn.execute(
                f"""INSERT INTO {SCHEMA}.firms AS f (code, onboarded_on)
                    SELECT %(firm)s, CASE WHEN g.last_seq IS NOT NULL
                        THEN (now() AT TIME ZONE {SCHEMA}.local_zone())::date END
                    FROM {SCHEMA}.gateways g WHERE g.id = %(gateway)s
                    ON CONFLICT (code) DO UPDATE
                    SET onboarded_on = coalesce(f.onboarded_on, excluded.onboarded_on)
                    RETURNING id""",
                {"firm": status.firm, "gateway": gateway_id},
            )
            row = await cursor.fetchone()
            firm_id = None if row is None else row[0]
        await self._conn.execute(
            f"""UPDATE {SCHEMA}.gateways
                SET firm = %s, firm_id = %s, uplink = %s, state = %s, software = %s,
                    alarms = %s, outbox_batches = %s, status_at = %s, last_seen = now()
                WHERE id = %s""",
            (
                status.firm,
                firm_id,
                status.uplink.value if status.uplink else None,
                status.state,
                status.software,
                status.alarms,
                status.outbox_batches,
                status.ts,
                gateway_id,
            ),
        )
        if not status.devices:
            return
        devices = status.devices
        await self._conn.execute(
            f"""INSERT INTO {SCHEMA}.devices AS d
                    (site, name, gateway_id, firm_id, profile, state, last_success, failures,
                     error, interval_s)
                SELECT %s, n.name, %s, %s, n.profile, n.state, n.last_success, n.failures,
                       n.error, n.interval_s
                FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::int4[],
                            %s::text[], %s::float8[])
                    AS n (name, profile, state, last_success, failures, error, interval_s)
                ON CONFLICT (site, name) DO UPDATE
                SET gateway_id = excluded.gateway_id,
                    firm_id = coalesce(excluded.firm_id, d.firm_id),
                    profile = excluded.profile, state = excluded.state,
                    last_success = excluded.last_success, failures = excluded.failures,
                    error = excluded.error,
                    interval_s = coalesce(excluded.interval_s, d.interval_s)""",
            (
                update.topic.site,
                gateway_id,
                firm_id,
                [d.name for d in devices],
                [d.profile for d in devices],
                [d.state for d in devices],
                [d.last_success for d in devices],
                [d.failures for d in devices],
                [d.error for d in devices],
                [d.interval_s for d in devices],
            ),
        )

    async def _dead_letters(self, rejected: Sequence[Rejected]) -> None:
        async with self._conn.cursor() as cursor:
            await cursor.executemany(
                f"INSERT INTO {SCHEMA}.dead_letters (topic, payload, reason) VALUES (%s, %s, %s)",
                [(r.topic, r.payload, r.reason) for r in rejected],
            )

    async def _ensure_partitions(self, touched: set[date]) -> None:
        if not touched:
            return
        first, last = min(touched), max(touched)
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

    async def _register_points(
        self, site: str, gateway: str, seen: Iterable[tuple[str, str, datetime]]
    ) -> None:
        """Register points the first time they are seen, with the time of their first data,
        all in one transaction (committed at once, so the cache never holds an id that a
        rolled-back transaction created)."""
        first: dict[tuple[str, str], datetime] = {}
        for device, point, at in seen:
            known_at = first.get((device, point))
            first[device, point] = at if known_at is None else min(at, known_at)
        wanted = sorted(first)
        devices = sorted({device for device, _ in wanted})
        gateway_id = await self._gateway_id(site, gateway)
        async with self._conn.transaction():
            cursor = await self._conn.execute(
                f"""INSERT INTO {SCHEMA}.devices (site, name, gateway_id)
                    SELECT %s, name, %s FROM unnest(%s::text[]) AS name
                    ON CONFLICT (site, name) DO UPDATE SET gateway_id = excluded.gateway_id
                    RETURNING name, id""",
                (site, gateway_id, devices),
            )
            device_ids = {str(name): int(str(id_)) for name, id_ in await cursor.fetchall()}
            known = [metric(point) for _, point in wanted]
            cursor = await self._conn.execute(
                f"""INSERT INTO {SCHEMA}.points (device_id, name, unit, kind, carrier,
                                                first_seen)
                    SELECT * FROM unnest(%s::int4[], %s::text[], %s::text[], %s::text[],
                                         %s::text[], %s::timestamptz[])
                    ON CONFLICT (device_id, name) DO UPDATE SET name = excluded.name
                    RETURNING device_id, name, id""",
                (
                    [device_ids[device] for device, _ in wanted],
                    [point for _, point in wanted],
                    [m.unit if m else None for m in known],
                    [m.kind.value if m else "gauge" for m in known],
                    [CARRIERS.get(point) for _, point in wanted],
                    [first[name] for name in wanted],
                ),
            )
            rows = await cursor.fetchall()
        names_of = {id_: name for name, id_ in device_ids.items()}
        points = self._registry.points.setdefault(site, {})
        for device_id, name, point_id in rows:
            points[names_of[int(str(device_id))], str(name)] = int(str(point_id))


async def _check_schema(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> Storage:
    """The storage path of a database migrated far enough for this ingester."""
    try:
        cursor = await conn.execute(
            f"SELECT max(version), min(storage) FROM {SCHEMA}.schema_migrations"
        )
    except psycopg.errors.UndefinedTable:
        raise StoreError("the database has no Zayton schema: run 'zayton db migrate'") from None
    row = await cursor.fetchone()
    have = int(str(row[0])) if row and row[0] is not None else 0
    want = latest_version()
    if row is None or have < want:
        raise StoreError(
            f"the database is at migration {have}, this ingester needs {want}: "
            "run 'zayton db migrate'"
        )
    return Storage(str(row[1]))
