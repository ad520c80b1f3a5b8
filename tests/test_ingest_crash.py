"""kill -9 of the ingester in the middle of a stream, then a restart: every reading is stored
once. Messages are acknowledged to the broker only after the commit that holds them, and the
session is persistent, so what the killed process had taken is delivered again."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.processes import start_zayton
from tests.test_pipeline import publish_all
from wire.payload import Quality, encode_telemetry, format_ts
from wire.topics import Stream, Topic

pytestmark = pytest.mark.integration

BATCHES = 300
READINGS = 500


def count(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (point_id, ts)) FROM zayton.readings"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_kill_9_mid_stream_loses_and_duplicates_nothing(
    migrated_database: str, mqtt_url: str, topic_prefix: str
) -> None:
    topic = str(Topic("site-1", "gw-1", Stream.TELEMETRY, root=topic_prefix))
    start = datetime.now(UTC) - timedelta(hours=1)
    messages = []
    for seq in range(1, BATCHES + 1):
        readings = [
            (
                f"m{i % 50}",
                "active_power_kw",
                format_ts(start + timedelta(seconds=seq, microseconds=i)),
                float(seq * READINGS + i),
                Quality.GOOD,
            )
            for i in range(READINGS)
        ]
        messages.append((topic, encode_telemetry("gw-1", seq, start, readings)))

    async def ingester() -> asyncio.subprocess.Process:
        return await start_zayton(
            "ingest",
            "run",
            "--database-url",
            migrated_database,
            "--mqtt-url",
            mqtt_url,
            "--topic-root",
            topic_prefix,
            "--client-id",
            f"{topic_prefix}-ingest",
        )

    async def until(check: int, deadline_s: float, resend: bytes | None = None) -> int:
        """Wait until ``check`` readings are stored, publishing ``resend`` again every half
        second meanwhile (the ingester's session does not exist before it first subscribes)."""
        deadline = time.monotonic() + deadline_s
        while True:
            stored = count(migrated_database)[0]
            if stored >= check:
                return stored
            assert time.monotonic() < deadline, f"{stored} of {check} readings stored"
            if resend is not None:
                await asyncio.to_thread(publish_all, mqtt_url, [(topic, resend)])
            await asyncio.sleep(0.5 if resend is not None else 0.05)

    async def scenario() -> int:
        first = await ingester()
        # The persistent session exists once the first ingester has subscribed: wait for the
        # first batch to land, then send the rest and kill the ingester while they pour in.
        await until(READINGS, 30, resend=messages[0][1])

        async def send_paced() -> None:  # about 3 s of traffic, so the kill lands inside it
            rest = messages[1:]
            for i in range(0, len(rest), 10):
                await asyncio.to_thread(publish_all, mqtt_url, rest[i : i + 10])
                await asyncio.sleep(0.1)

        sender = asyncio.create_task(send_paced())
        at_kill = await until(BATCHES * READINGS // 4, 60)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        await sender
        second = await ingester()
        try:
            await until(BATCHES * READINGS, 60)
            await asyncio.sleep(1.0)  # anything more would be a duplicate
        finally:
            second.send_signal(signal.SIGTERM)
            assert await second.wait() == 0
        return at_kill

    at_kill = asyncio.run(scenario())
    total, distinct = count(migrated_database)
    assert at_kill < BATCHES * READINGS, "the kill came after the last batch: it proves nothing"
    assert total == distinct == BATCHES * READINGS
