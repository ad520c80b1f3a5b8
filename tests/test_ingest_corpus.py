"""Bad input through the real ingester, broker and database: every bad payload of the corpus is
a dead letter, byte for byte, with its reason, and the good traffic around it lands."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from ingest.metrics import Counters
from ingest.service import IngestSettings, ingesting
from tests.test_pipeline import eventually, publish_all
from wire.payload import MAX_PAYLOAD_BYTES, SCHEMA_VERSION, Quality, encode_telemetry, format_ts
from wire.topics import Stream, Topic
from zayton.localservers import free_port

pytestmark = pytest.mark.integration


def test_every_bad_payload_is_a_dead_letter_and_good_traffic_keeps_flowing(
    migrated_database: str, mqtt_url: str, topic_prefix: str
) -> None:
    telemetry = str(Topic("site-1", "gw-1", Stream.TELEMETRY, root=topic_prefix))
    status_topic = str(Topic("site-1", "gw-1", Stream.STATUS, root=topic_prefix))
    now = datetime.now(UTC)

    def batch(seq: int, value: float, *, device: str = "m1", ts: datetime | None = None) -> bytes:
        stamp = format_ts(ts or now - timedelta(seconds=seq))
        reading = (device, "active_power_kw", stamp, value, Quality.GOOD)
        return encode_telemetry("gw-1", seq, now, [reading])

    def edited(seq: int, old: bytes, new: bytes) -> bytes:
        payload = batch(seq, 1.25)
        assert old in payload
        return payload.replace(old, new)

    status = json.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "gateway": "gw-1",
            "state": "online",
            "ts": format_ts(now),
            "site": "site-1",
            "firm": "firm-a",
            "uplink": "5g",
            "devices": [{"name": "m1", "state": "online"}],
        }
    ).encode()
    corpus: list[tuple[str, bytes, str]] = [
        (telemetry, b"{this is not json", "Invalid JSON"),
        (telemetry, edited(20, b'"value":1.25', b'"value":"1.25"'), "readings.0.value"),
        (telemetry, edited(21, b'"value":1.25', b'"value":NaN'), "readings.0.value"),
        (telemetry, edited(22, b'"value":1.25', b'"value":Infinity'), "readings.0.value"),
        (telemetry, edited(23, b'"value":1.25', b'"value":1e999'), "readings.0.value"),
        (
            telemetry,
            edited(24, b'"schema_version":1', b'"schema_version":9'),
            "unsupported schema version 9",
        ),
        (
            telemetry,
            batch(25, 1.0, ts=datetime(2099, 1, 1, tzinfo=UTC)),
            "outside the accepted window",
        ),
        (
            telemetry,
            batch(26, 1.0, ts=datetime(2001, 1, 1, tzinfo=UTC)),
            "outside the accepted window",
        ),
        (telemetry, batch(27, 1.0, device="m9"), "unknown device(s) m9"),
        (telemetry, batch(28, 1.0) + b" " * MAX_PAYLOAD_BYTES, "exceeds"),
        (telemetry, batch(1, 99.0), "seq 1 of gateway 'gw-1' was taken"),
        (telemetry.replace("gw-1/", "gw-2/"), batch(29, 1.0), "differs from topic 'gw-2'"),
        (telemetry, edited(30, b'"seq":30', b'"seq":-1'), "seq"),
        (status_topic, b'{"schema_version":1,"gateway":"gw-1"}', "state: Field required"),
    ]
    good = [(telemetry, batch(1, 11.0)), (telemetry, batch(2, 22.0)), (telemetry, batch(3, 33.0))]
    # Good traffic before, between and after the bad; the status announces m1 first.
    messages = [(status_topic, status), good[0]]
    for index, (topic, payload, _) in enumerate(corpus):
        messages.append((topic, payload))
        if index == len(corpus) // 2:
            messages.append(good[1])
    messages.append(good[2])

    metrics_port = free_port()
    scraped: list[str] = []

    async def scenario() -> Counters:
        settings = IngestSettings(
            database_url=migrated_database,
            mqtt_url=mqtt_url,
            topic_root=topic_prefix,
            client_id=f"{topic_prefix}-ingest",
            auto_register=False,
            metrics_port=metrics_port,
        )
        async with ingesting(settings) as counters:
            # One at a time: the repeated seq must arrive after the batch that took it.
            for message in messages:
                await asyncio.to_thread(publish_all, mqtt_url, [message])

            async def settled() -> Counters | None:
                return counters if counters.messages >= len(messages) else None

            await eventually(settled)
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
            scraped.extend(response.text.splitlines())
        return counters

    counters = asyncio.run(scenario())
    with psycopg.connect(migrated_database) as conn:
        values = conn.execute("SELECT value FROM zayton.readings ORDER BY value").fetchall()
        letters = conn.execute("SELECT topic, payload, reason FROM zayton.dead_letters").fetchall()
    assert values == [(11.0,), (22.0,), (33.0,)]
    assert (counters.inserted, counters.dead_letters) == (3, len(corpus))
    assert f"zayton_ingest_dead_letters_total {float(len(corpus))}" in scraped
    assert "zayton_ingest_readings_inserted_total 3.0" in scraped
    assert any(line.startswith("zayton_ingest_lag_seconds_count") for line in scraped)
    stored = {(str(topic), bytes(payload)): str(reason) for topic, payload, reason in letters}
    for topic, payload, expected in corpus:
        reason = stored.get((topic, payload))
        assert reason is not None, f"not dead-lettered byte for byte: {expected}"
        assert expected in reason, (expected, reason)
