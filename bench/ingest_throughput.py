"""Benchmark of the ingester on this machine; prints figures, ratios and goals.

    .venv/bin/python bench/ingest_throughput.py [--readings 1000000] [--rounds 3]
        [--database-url DSN] [--mqtt-url URL]

Each stage runs on a fresh migrated database (plain path) with the same rows: 1,000 points,
readings one second apart, 1,000 readings per telemetry batch.

1. Raw binary COPY into ``zayton.readings`` (day partitions, primary key), as many rows per
   commit as the ingester writes when it is behind (its ``batch_max_bytes``), the rows encoded
   before the clock starts: PostgreSQL's own speed, the ceiling.
2. Database stage: the ingester's :class:`~ingest.store.Store` writing parsed batches (batch
   deduplication, COPY, latest values, stale rollup marks), grouped per commit the same way.
3. End to end: batches published at QoS 1 to the broker, taken by ``run_ingester``, committed;
   points per second from the first publish to the last commit.
4. Latency: publish → committed (visible to queries) p50/p99 at half the end-to-end rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import struct
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from ingest.copyrows import HEADER, TRAILER, micros
from ingest.migrate import migrate
from ingest.service import IngestSettings, ingesting
from ingest.store import Accepted, Store
from wire.broker import BrokerSettings
from wire.mqtt import Publisher
from wire.payload import Quality, encode_telemetry, format_ts, parse_telemetry
from wire.topics import Stream, Topic
from zayton.localservers import LocalBroker, tcp_answers

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
POINTS = 1000
PER_BATCH = 1000
GOAL_DB, GOAL_E2E, GOAL_P99_S = 0.8, 0.6, 1.0


def payloads(readings: int, start: datetime) -> list[bytes]:
    out = []
    for seq in range(1, readings // PER_BATCH + 1):
        at = format_ts(start + timedelta(seconds=seq))
        rows = [
            (f"m{i // 10}", f"p{i % 10}_kw", at, float(seq + i), Quality.GOOD)
            for i in range(PER_BATCH)
        ]
        out.append(encode_telemetry("gw-1", seq, start, rows))
    return out


@contextlib.contextmanager
def database(admin_dsn: str) -> Iterator[str]:
    name = f"zayton_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(admin_dsn, dbname=name)
    try:
        migrate(dsn)
        yield dsn
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def raw_copy(dsn: str, readings: int, start: datetime, rows_per_commit: int) -> float:
    """Rows encoded before the clock starts, so this is PostgreSQL's own speed."""
    row = struct.Struct(">hiiiqidihi")
    origin = micros(start)
    buffers = [
        b"".join(
            [
                HEADER,
                *(
                    row.pack(
                        5, 4, i % POINTS + 1, 8, origin + i // POINTS * 1_000_000, 8, i, 2, 0, -1
                    )
                    for i in range(first, min(first + rows_per_commit, readings))
                ),
                TRAILER,
            ]
        )
        for first in range(0, readings, rows_per_commit)
    ]
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "SELECT zayton.ensure_readings_partitions(%s, %s)",
            (start.date() - timedelta(days=1), start.date() + timedelta(days=2)),
        )
        conn.commit()
        began = time.perf_counter()
        for data in buffers:
            with (
                conn.cursor() as cursor,
                cursor.copy(
                    "COPY zayton.readings (point_id, ts, value, quality, delta) "
                    "FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.write(data)
            conn.commit()
        return readings / (time.perf_counter() - began)


def per_write(batches: list[bytes]) -> int:
    """Batches per write as the ingester groups them when it is behind (its byte and message
    limits); the raw COPY commits as many rows at a time, so the two compare like for like."""
    settings = IngestSettings(database_url="")
    fits = settings.batch_max_bytes // max(len(b) for b in batches) + 1
    return max(1, min(fits, settings.batch_max_messages))


async def db_stage(dsn: str, batches: list[bytes]) -> float:
    topic = Topic("site-1", "gw-1", Stream.TELEMETRY)
    parsed = [Accepted(topic, parse_telemetry(p, topic), p) for p in batches]
    step = per_write(batches)
    store = await Store.connect(dsn)
    try:
        await store.write(parsed[:1])  # registers the points
        began = time.perf_counter()
        for i in range(1, len(parsed), step):
            await store.write(parsed[i : i + step])
        elapsed = time.perf_counter() - began
    finally:
        await store.close()
    return (len(parsed) - 1) * PER_BATCH / elapsed


async def end_to_end(
    dsn: str, mqtt_url: str, batches: list[bytes], rate: float | None
) -> tuple[float, list[float]]:
    """Points per second, and publish→commit latencies (s) when paced at ``rate`` points/s."""
    root = f"bench-{secrets.token_hex(4)}"
    topic = str(Topic("site-1", "gw-1", Stream.TELEMETRY, root=root))
    settings = IngestSettings(
        database_url=dsn, mqtt_url=mqtt_url, topic_root=root, client_id=f"{root}-ingest"
    )
    sent_at: list[float] = []
    latencies: list[float] = []
    publisher = Publisher(BrokerSettings.from_url(mqtt_url), client_id=f"{root}-pub")
    async with ingesting(settings) as counters, publisher:
        await publisher.connected.wait()
        began = time.perf_counter()
        for index, payload in enumerate(batches):
            if rate is not None:
                due = began + index * PER_BATCH / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await publisher.send(topic, payload)
            sent_at.append(time.perf_counter())
            # Stay below the broker's queue for a subscriber that is behind.
            while index + 1 - counters.messages > 500:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            while counters.messages > len(latencies):
                latencies.append(time.perf_counter() - sent_at[len(latencies)])
        while counters.messages < len(batches):
            await asyncio.sleep(0.002)
            while counters.messages > len(latencies):
                latencies.append(time.perf_counter() - sent_at[len(latencies)])
        elapsed = time.perf_counter() - began
    return len(batches) * PER_BATCH / elapsed, latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main_async(args: argparse.Namespace, mqtt_url: str) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    batches = payloads(args.readings, start)
    print(
        f"# {args.readings:,} readings, {len(batches):,} batches of {PER_BATCH:,}, "
        f"{per_write(batches)} batches per commit, {args.rounds} rounds "
        "(each stage on a fresh database; ratios within a round)"
    )
    raws, stages, e2es = [], [], []
    for round_ in range(1, args.rounds + 1):
        with database(args.database_url) as dsn:
            raws.append(raw_copy(dsn, args.readings, start, per_write(batches) * PER_BATCH))
        with database(args.database_url) as dsn:
            stages.append(await db_stage(dsn, batches))
        with database(args.database_url) as dsn:
            e2es.append((await end_to_end(dsn, mqtt_url, batches, None))[0])
        print(
            f"round {round_}: raw {raws[-1]:,.0f} rows/s, database stage {stages[-1]:,.0f} "
            f"({stages[-1] / raws[-1]:.2f}), end to end {e2es[-1]:,.0f} ({e2es[-1] / raws[-1]:.2f})"
        )
    raw, stage, e2e = (statistics.median(v) for v in (raws, stages, e2es))
    stage_ratio = statistics.median(s / r for s, r in zip(stages, raws, strict=True))
    e2e_ratio = statistics.median(e / r for e, r in zip(e2es, raws, strict=True))
    print("medians:")
    print(f"raw binary COPY                 {raw:12,.0f} rows/s")
    print(f"ingester database stage         {stage:12,.0f} rows/s   {stage_ratio:.2f} x raw")
    print(f"end to end (MQTT -> committed)  {e2e:12,.0f} points/s {e2e_ratio:.2f} x raw")
    with database(args.database_url) as dsn:
        half = batches[: max(10, len(batches) // 2)]
        _, latencies = await end_to_end(dsn, mqtt_url, half, e2e / 2)
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    print(
        f"publish -> committed at {e2e / 2:,.0f} points/s: p50 {p50 * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms (mean {statistics.fmean(latencies) * 1000:.0f} ms)"
    )
    print("goals:")
    for ok, text in (
        (stage_ratio >= GOAL_DB, f"database stage >= {GOAL_DB} x raw COPY: {stage_ratio:.2f}"),
        (e2e_ratio >= GOAL_E2E, f"end to end >= {GOAL_E2E} x raw COPY: {e2e_ratio:.2f}"),
        (p99 <= GOAL_P99_S, f"p99 <= {GOAL_P99_S:g} s at half rate: {p99:.3f} s"),
    ):
        print(f"  {'PASS' if ok else 'MISS'}  {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="this machine's speed varies")
    parser.add_argument("--database-url", default=PG_DEFAULT, help="an admin DSN")
    parser.add_argument("--mqtt-url", default=None, help="default: 127.0.0.1:1883 or one started")
    args = parser.parse_args()
    if args.mqtt_url is not None or tcp_answers("127.0.0.1", 1883, timeout=1.0):
        asyncio.run(main_async(args, args.mqtt_url or "mqtt://127.0.0.1:1883"))
        return
    with tempfile.TemporaryDirectory() as directory:
        broker = LocalBroker(Path(directory))
        try:
            asyncio.run(main_async(args, broker.start()))
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
