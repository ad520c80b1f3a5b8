"""The MQTT load generator, checked by an independent paho subscriber on the real broker."""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict

import pytest

from simulators.loadgen import LoadPlan, LoadReport, generate, point_names
from tests.collector import Collector
from wire.broker import BrokerSettings
from wire.catalogue import METRICS
from wire.mqtt import Publisher
from wire.payload import MAX_READINGS, Quality, Telemetry, parse_telemetry
from wire.topics import Stream, Topic


def run_plan(
    mqtt_url: str, plan: LoadPlan, stop_after_s: float | None = None
) -> tuple[LoadReport, float]:
    """Run the generator and return its report with the wall-clock time the call took."""

    async def scenario() -> tuple[LoadReport, float]:
        stop = asyncio.Event()
        if stop_after_s is not None:
            asyncio.get_running_loop().call_later(stop_after_s, stop.set)
        started = time.monotonic()
        report = await generate(BrokerSettings.from_url(mqtt_url), plan, stop)
        return report, time.monotonic() - started

    return asyncio.run(scenario())


@pytest.mark.integration
def test_a_run_publishes_valid_gapless_unique_telemetry_at_its_rate(
    mqtt_url: str, topic_prefix: str
) -> None:
    rate = 20_000.0
    plan = LoadPlan(
        rate=rate,
        duration_s=30.0,
        max_readings=20_050,  # 201 messages, the last one of 50 readings
        readings_per_message=100,
        gateways=3,
        devices_per_gateway=4,
        points_per_device=len(METRICS) + 3,  # beyond the catalogue: p01, p02, p03 too
        topic_root=topic_prefix,
        client_id=f"{topic_prefix}-loadgen",
        max_in_flight=20,
    )
    with Collector(mqtt_url, f"{topic_prefix}/#", f"{topic_prefix}-sub") as collector:
        report, wall_s = run_plan(mqtt_url, plan)
        collector.wait_for(report.messages)
        received = list(collector.messages)

    assert (report.messages, report.readings) == (201, 20_050)
    assert report.acknowledged == report.messages
    assert len(received) == report.messages
    # It may lag behind its target, never run ahead of it.
    assert report.elapsed_s >= 0.8 * report.readings / rate
    assert wall_s >= 0.8 * report.readings / rate
    assert math.isclose(report.readings_per_s, report.readings / report.elapsed_s)

    batches: list[Telemetry] = []
    for topic_text, payload in received:
        topic = Topic.parse(topic_text, root=topic_prefix)  # no status: the loadgen has none
        assert (topic.site, topic.stream) == ("loadgen", Stream.TELEMETRY)
        batches.append(parse_telemetry(payload, topic))
    assert sum(len(b.readings) for b in batches) == report.readings

    seqs: dict[str, list[int]] = defaultdict(list)
    devices: dict[str, set[str]] = defaultdict(set)
    for batch in batches:
        seqs[batch.gateway].append(batch.seq)
        devices[batch.gateway].update(r.device for r in batch.readings)
    assert len(seqs) == plan.gateways
    for gateway, numbers in seqs.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), gateway
    assert sum(len(d) for d in devices.values()) == plan.gateways * plan.devices_per_gateway

    readings = [r for b in batches for r in b.readings]
    keys = {(r.device, r.point, r.ts) for r in readings}
    assert len(keys) == len(readings), "a (device, point, ts) repeats"
    assert all(r.quality is Quality.GOOD and r.value is not None for r in readings)
    polls: dict[tuple[str, object], set[str]] = defaultdict(set)
    for r in readings:
        polls[r.device, r.ts].add(r.point)
    full = set(point_names(plan.points_per_device))
    partial = [key for key, points in polls.items() if points != full]
    assert len(partial) <= plan.gateways, "only each gateway's last poll may be cut short"
    assert {"p01", "p02", "p03", "active_power_kw", "energy_import_kwh"} <= full


@pytest.mark.integration
def test_stop_ends_a_run_early_with_everything_acknowledged(
    mqtt_url: str, topic_prefix: str
) -> None:
    plan = LoadPlan(
        rate=5_000.0,
        duration_s=60.0,
        readings_per_message=50,
        gateways=2,
        topic_root=topic_prefix,
        client_id=f"{topic_prefix}-loadgen",
        seq_start=41,
    )
    with Collector(mqtt_url, f"{topic_prefix}/#", f"{topic_prefix}-sub") as collector:
        report, wall_s = run_plan(mqtt_url, plan, stop_after_s=0.5)
        collector.wait_for(report.messages)
        received = [parse_telemetry(payload) for _, payload in collector.messages]
    assert wall_s < 10
    assert 0 < report.messages == report.acknowledged == len(received)
    assert min(b.seq for b in received) == 41
    assert report.elapsed_s >= 0.8 * report.readings / plan.rate


@pytest.mark.integration
def test_publisher_send_pipelines_a_bounded_number_and_drain_waits_for_all(
    mqtt_url: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}/pipelined"

    async def scenario() -> list[asyncio.Future[None]]:
        futures = []
        async with Publisher(
            BrokerSettings.from_url(mqtt_url), client_id=f"{topic_prefix}-pub", max_in_flight=5
        ) as publisher:
            for i in range(200):
                futures.append(await publisher.send(topic, str(i).encode()))
                assert publisher.in_flight <= 5
            await publisher.publish(topic, b"last")
            await publisher.drain()
            assert publisher.in_flight == 0
        return futures

    with Collector(mqtt_url, f"{topic_prefix}/#", f"{topic_prefix}-sub") as collector:
        futures = asyncio.run(scenario())
        collector.wait_for(201)
        payloads = [payload for _, payload in collector.messages]
    assert all(f.done() and not f.cancelled() for f in futures)
    assert sorted(payloads) == sorted([str(i).encode() for i in range(200)] + [b"last"])


@pytest.mark.unit
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rate": 0.0}, "rate must be"),
        ({"rate": -5.0}, "rate must be"),
        ({"rate": math.nan}, "rate must be"),
        ({"rate": math.inf}, "rate must be"),
        (
            {"readings_per_message": MAX_READINGS + 1},
            f"readings_per_message must be 1..{MAX_READINGS}",
        ),
        ({"readings_per_message": 0}, "readings_per_message must be"),
        ({"duration_s": 0.0}, "duration_s must be"),
        ({"gateways": 0}, "gateways must be at least 1"),
        ({"devices_per_gateway": 0}, "devices_per_gateway must be at least 1"),
        ({"points_per_device": 0}, "points_per_device must be at least 1"),
        ({"max_in_flight": 0}, "max_in_flight must be"),
        ({"seq_start": 0}, "seq_start must be"),
        ({"max_readings": 0}, "max_readings must be"),
        ({"site": "no spaces"}, "site 'no spaces' is not a valid identifier"),
        ({"topic_root": "a/+/b"}, "topic root"),
    ],
)
def test_plan_refuses_bad_values(changes: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"rate": 1000.0, **changes}
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        LoadPlan(**arguments)  # type: ignore[arg-type]


@pytest.mark.unit
def test_plan_defaults_and_point_names() -> None:
    plan = LoadPlan(rate=1.0)
    assert (plan.readings_per_message, plan.gateways, plan.devices_per_gateway) == (500, 10, 20)
    assert (plan.points_per_device, plan.max_in_flight, plan.seq_start) == (10, 200, 1)
    assert (plan.topic_root, plan.site) == ("zayton", "loadgen")
    names = point_names(len(METRICS) + 2)
    assert names[:2] == ["active_power_kw", "energy_import_kwh"]
    assert set(names[: len(METRICS)]) == set(METRICS)
    assert names[len(METRICS) :] == ["p01", "p02"]


@pytest.mark.unit
def test_publisher_wants_the_whole_status_or_none() -> None:
    settings = BrokerSettings()
    with pytest.raises(ValueError, match="together"):
        Publisher(settings, client_id="x", status_topic="a/b", online=b"on")
    with pytest.raises(ValueError, match="max_in_flight"):
        Publisher(settings, client_id="x", max_in_flight=0)
