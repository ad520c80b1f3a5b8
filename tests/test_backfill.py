"""Backfill through the wire contract, on the real broker, checked against ground truth."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from simulators.backfill import backfill
from simulators.park import Park
from simulators.scenario import load_scenario
from simulators.truth import Truth
from tests.collector import Collector
from wire.broker import BrokerSettings
from wire.mqtt import Publisher
from wire.payload import Quality, Telemetry, parse_telemetry
from wire.topics import Topic

pytestmark = pytest.mark.integration

CST = timezone(timedelta(hours=8))
START = datetime(2026, 11, 23, tzinfo=CST).timestamp()


def test_a_day_of_history_arrives_whole_and_matches_the_truth(
    mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    park = Park(load_scenario("tiny"), start=START, step_s=900)
    first = {(k, n): c.shown for k, d in park.devices.items() for n, c in d.counters.items()}

    async def run() -> int:
        settings = BrokerSettings.from_url(mqtt_url)
        async with Publisher(settings, client_id=f"{topic_prefix}-bf", max_in_flight=20) as pub:
            with Truth(park, tmp_path, interval_s=900):
                report = await backfill(
                    park, pub.send, end=START + 86400, topic_root=topic_prefix, batch_readings=400
                )
            await pub.drain()
        return report.readings

    with Collector(mqtt_url, f"{topic_prefix}/v1/+/+/telemetry", f"{topic_prefix}-c") as inbox:
        readings = asyncio.run(run())
        batches: list[tuple[str, Telemetry]] = []
        inbox.wait_for(1, settle_s=0.3)
        for topic, payload in inbox.messages:
            parsed = Topic.parse(topic, root=topic_prefix)
            batches.append((parsed.site, parse_telemetry(payload, parsed)))

    assert sum(len(b.readings) for _, b in batches) == readings
    seqs: dict[str, list[int]] = defaultdict(list)
    for _, batch in batches:
        seqs[batch.gateway].append(batch.seq)
    assert set(seqs) == {"gw-tiny-shoes-history", "gw-tiny-electronics-history"}
    for numbers in seqs.values():
        assert sorted(numbers) == list(range(1, len(numbers) + 1))
    series: dict[tuple[str, str], dict[datetime, float | None]] = defaultdict(dict)
    counted: dict[tuple[str, str], float] = defaultdict(float)
    for site, batch in batches:
        for r in batch.readings:
            counted[f"{site}/{r.device}", r.point] += r.delta or 0.0
            values = series[f"{site}/{r.device}", r.point]
            assert r.ts not in values  # never twice
            values[r.ts] = r.value
            assert r.quality is Quality.GOOD
    stamps = {ts for values in series.values() for ts in values}
    assert len(stamps) == 97  # 00:00 to 24:00 every 15 minutes, both ends
    for (key, point), shown in first.items():
        values = series[key, point]
        delta = (values[max(values)] or 0.0) - (values[min(values)] or 0.0)
        assert delta > 0 or point == "energy_export_kwh", (key, point)
        counter = park.devices[key].counters[point]
        step = counter.binding.point.scale  # a register shows whole steps of its scale
        assert delta == pytest.approx(counter.shown - shown, abs=step), (key, point)
        # Counted as a gateway counts: from the first reading (the base) to the last.
        assert counted[key, point] == pytest.approx(delta, abs=1e-6), (key, point)
    assert not any(b.events for _, b in batches)  # no fault, no counter event
