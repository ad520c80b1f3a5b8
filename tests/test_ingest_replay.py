"""One million readings published twice through the real broker and ingester leave exactly one
million rows: the second pass is recognised batch by batch and written nowhere."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ingest.metrics import Counters
from ingest.service import IngestSettings, ingesting
from tests.test_pipeline import eventually
from wire.broker import BrokerSettings
from wire.mqtt import Publisher
from wire.payload import Quality, encode_telemetry, format_ts
from wire.topics import Stream, Topic

pytestmark = pytest.mark.integration

MESSAGES = 1000
READINGS = 1000
POINTS = ("active_power_kw", "voltage_l1_v", "current_l1_a", "power_factor")


def test_a_million_readings_published_twice_leave_a_million_rows(
    migrated_database: str, mqtt_url: str, topic_prefix: str
) -> None:
    topic = str(Topic("site-1", "gw-1", Stream.TELEMETRY, root=topic_prefix))
    start = datetime.now(UTC) - timedelta(days=1)
    payloads = []
    for seq in range(1, MESSAGES + 1):
        at = format_ts(start + timedelta(seconds=seq))
        readings = [
            (f"m{i // len(POINTS)}", POINTS[i % len(POINTS)], at, float(i), Quality.GOOD)
            for i in range(READINGS)
        ]
        payloads.append(encode_telemetry("gw-1", seq, start, readings))

    async def scenario() -> Counters:
        settings = IngestSettings(
            database_url=migrated_database,
            mqtt_url=mqtt_url,
            topic_root=topic_prefix,
            client_id=f"{topic_prefix}-ingest",
        )
        publisher = Publisher(
            BrokerSettings.from_url(mqtt_url), client_id=f"{topic_prefix}-pub", max_in_flight=200
        )
        async with ingesting(settings) as counters, publisher:
            for sent, payload in enumerate([*payloads, *payloads], start=1):
                await publisher.send(topic, payload)
                # A broker queues at most so many messages for a subscriber (mosquitto's
                # max_queued_messages, 1,000 by default) and drops the rest: stay below it.
                while sent - counters.messages > 500:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            await publisher.drain()

            async def settled() -> Counters | None:
                return counters if counters.messages >= 2 * MESSAGES else None

            await eventually(settled, seconds=120)
        return counters

    counters = asyncio.run(scenario())
    with psycopg.connect(migrated_database) as conn:
        row = conn.execute("SELECT count(*) FROM zayton.readings").fetchone()
    assert row == (MESSAGES * READINGS,)
    assert counters.inserted == MESSAGES * READINGS
    assert counters.duplicates == MESSAGES * READINGS
    assert counters.replayed_batches == MESSAGES
    assert counters.dead_letters == 0
