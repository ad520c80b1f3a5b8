"""The gateway against the park simulator and a real broker: what it publishes, device health,
backoff, read-only function codes, a broker outage and a kill -9 in the middle of a stream."""

from __future__ import annotations

import asyncio
import itertools
import signal
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from gateway.config import GatewayConfig, load_config
from gateway.modbus import READ_FUNCTIONS
from gateway.service import run_gateway
from simulators.scenario import load_scenario
from simulators.serve import ParkSimulator
from tests.collector import Collector
from tests.processes import start_zayton
from wire.payload import Status, Telemetry, parse_status, parse_telemetry
from wire.topics import Stream, Topic
from zayton.localservers import LocalBroker, _mosquitto_binary, free_port

pytestmark = pytest.mark.integration

SHOES, ELECTRONICS = "gw-tiny-shoes", "gw-tiny-electronics"
INTERVAL_S = 0.2


def write_config(
    simulator: ParkSimulator,
    directory: Path,
    gateway: str,
    *,
    mqtt_url: str,
    topic_root: str,
    edit: Callable[[str], str] | None = None,
) -> Path:
    simulator.gateway_configs(
        directory, mqtt_url=mqtt_url, interval_s=INTERVAL_S, topic_root=topic_root
    )
    path = directory / f"{gateway}.toml"
    if edit is not None:
        path.write_text(edit(path.read_text()))
    return path


def batches(collector: Collector) -> list[Telemetry]:
    return [
        parse_telemetry(payload)
        for topic, payload in list(collector.messages)
        if topic.endswith("/telemetry")
    ]


def statuses(collector: Collector) -> list[Status]:
    return [
        parse_status(payload)
        for topic, payload in list(collector.messages)
        if topic.endswith("/status")
    ]


def first_arrivals(received: list[Telemetry]) -> list[Telemetry]:
    """Each sequence number once, in the order it first arrived (deduplication by sequence)."""
    seen: set[int] = set()
    unique = []
    for batch in received:
        if batch.seq not in seen:
            seen.add(batch.seq)
            unique.append(batch)
    return unique


def stamps(received: list[Telemetry]) -> dict[tuple[str, str], list[datetime]]:
    by_point: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for batch in received:
        for reading in batch.readings:
            by_point[reading.device, reading.point].append(reading.ts)
    return by_point


async def run_for(config: GatewayConfig, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_gateway(config, stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task


def test_every_device_is_published_with_counters_health_and_read_codes_only(
    mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    simulator = ParkSimulator(load_scenario("tiny"))
    units = simulator.park.gateways[SHOES].devices.values()
    expected = {(d.name, p.name) for d in units for p in d.profile.points}
    metrics_port = free_port()
    scraped: list[str] = []

    async def scrape_later() -> None:
        await asyncio.sleep(2.0)
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
        scraped.extend(response.text.splitlines())

    async def scenario() -> None:
        async with simulator:
            path = write_config(
                simulator,
                tmp_path,
                SHOES,
                mqtt_url=mqtt_url,
                topic_root=topic_prefix,
                edit=lambda text: text.replace(
                    "[gateway]\n", f"[gateway]\nmetrics_port = {metrics_port}\n"
                ),
            )
            await asyncio.gather(run_for(load_config(path), 2.5), scrape_later())

    with Collector(mqtt_url, f"{topic_prefix}/v1/+/+/#", f"c-{topic_prefix}") as collector:
        asyncio.run(scenario())
        collector.wait_for(1, settle_s=0.5)

    received = batches(collector)
    assert [b.seq for b in received] == list(range(1, len(received) + 1))
    points = {(r.device, r.point) for b in received for r in b.readings}
    assert points == expected
    by_point = stamps(received)
    assert min(len(ts) for ts in by_point.values()) >= 5  # ~12 ticks of 0.2 s
    # Counters carry the consumption since the previous reading, which adds up to the counter.
    import_kwh = [r for b in received for r in b.readings if r.point == "energy_import_kwh"]
    incomer = [r for r in import_kwh if r.device == "incomer"]
    assert incomer[0].delta is None  # nothing to compare the first reading with
    assert all(r.delta is not None for r in incomer[1:])
    counted = sum(r.delta or 0.0 for r in incomer)
    assert incomer[-1].value is not None
    assert incomer[0].value is not None
    assert counted == pytest.approx(incomer[-1].value - incomer[0].value, abs=0.02)
    # The status names the site, the uplink and the health of every device; the last says offline.
    status = statuses(collector)
    online = [s for s in status if s.state == "online" and s.devices]
    assert online
    assert online[-1].site == "tiny-shoes"
    assert online[-1].uplink == "5g"
    assert {d.name for d in online[-1].devices} == {d.name for d in units}
    assert {d.state for d in online[-1].devices} == {"online"}
    assert status[-1].state == "offline"
    # Prometheus: polls, readings and health per device, outbox and MQTT of the gateway.
    for unit in units:
        line = f'zayton_gateway_polls_total{{device="{unit.name}",gateway="{SHOES}",result="ok"}}'
        assert any(x.startswith(line) and float(x.split()[-1]) >= 5 for x in scraped), unit.name
    assert f'zayton_gateway_mqtt_connected{{gateway="{SHOES}"}} 1.0' in scraped
    assert any(x.startswith("zayton_gateway_batches_acknowledged_total") for x in scraped)
    # Only read function codes ever reached the devices.
    served = simulator.servers[SHOES].function_codes
    assert sum(served.values()) > 0
    assert set(served) <= READ_FUNCTIONS


async def black_hole() -> tuple[asyncio.Server, int]:
    """A TCP server that accepts connections and never answers: a dead device."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_a_dead_device_backs_off_and_is_reported_offline_while_others_keep_their_pace(
    mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    simulator = ParkSimulator(load_scenario("tiny"))

    async def scenario() -> None:
        server, port = await black_hole()
        async with server, simulator:

            def dead_water_meter(text: str) -> str:
                head, water = text.split('name = "water-main"')
                body = water.split("\n[[devices]]")
                body[0] = body[0].replace(
                    f"port = {simulator.servers[ELECTRONICS].port}", f"port = {port}"
                )
                return (
                    head
                    + 'name = "water-main"'
                    + "\n[[devices]]".join(body).replace("unit_id", "timeout_s = 0.3\nunit_id", 1)
                )

            path = write_config(
                simulator,
                tmp_path,
                ELECTRONICS,
                mqtt_url=mqtt_url,
                topic_root=topic_prefix,
                edit=dead_water_meter,
            )
            config = load_config(path)
            assert config.device("water-main").config.port == port
            await run_for(config, 4.0)

    with Collector(mqtt_url, f"{topic_prefix}/v1/+/+/#", f"c-{topic_prefix}") as collector:
        asyncio.run(scenario())
        collector.wait_for(1, settle_s=0.5)

    by_point = stamps(batches(collector))
    assert not any(device == "water-main" for device, _ in by_point)
    healthy = [len(ts) for (device, _), ts in by_point.items()]
    assert min(healthy) >= 15  # 20 ticks in 4 s: the dead meter did not hold the others back
    last = [s for s in statuses(collector) if s.devices][-1]
    health = {d.name: d for d in last.devices}
    assert health["water-main"].state == "offline"
    assert health["water-main"].last_success is None
    assert "no answer" in (health["water-main"].error or "")
    assert {d.state for name, d in health.items() if name != "water-main"} == {"online"}
    assert {d.interval_s for d in health.values()} == {INTERVAL_S}  # what completeness expects


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    if _mosquitto_binary() is None:
        pytest.skip("the outage test needs mosquitto, which keeps sessions across a restart")
    broker = LocalBroker(tmp_path / "broker", port=free_port(), prefer="mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_a_broker_outage_loses_nothing_and_keeps_the_order(
    own_broker: LocalBroker, topic_prefix: str, tmp_path: Path
) -> None:
    simulator = ParkSimulator(load_scenario("tiny"))
    url = own_broker.url

    async def scenario() -> None:
        async with simulator:
            path = write_config(
                simulator, tmp_path, ELECTRONICS, mqtt_url=url, topic_root=topic_prefix
            )
            stop = asyncio.Event()
            task = asyncio.create_task(run_gateway(load_config(path), stop))
            await asyncio.sleep(1.5)
            await asyncio.to_thread(own_broker.stop)
            await asyncio.sleep(2.5)  # the gateway keeps polling into its outbox
            await asyncio.to_thread(own_broker.start)
            back = time.time()

            # The gateway's next attempt is up to 4 s away (jittered backoff): wait until
            # readings polled after the restart arrive, then a little longer.
            def polled_after_restart(messages: list[tuple[str, bytes]]) -> bool:
                return any(
                    r.ts.timestamp() > back + 1.0
                    for topic, payload in messages
                    for r in parse_telemetry(payload).readings
                )

            assert await asyncio.to_thread(collector.wait_until, polled_after_restart, 30.0)
            await asyncio.sleep(1.0)
            stop.set()
            await task

    topic = str(Topic("tiny-electronics", ELECTRONICS, Stream.TELEMETRY, topic_prefix))
    with Collector(url, topic, f"c-{topic_prefix}", persistent=True) as collector:
        asyncio.run(scenario())
        collector.wait_for(1, settle_s=1.0)

    received = batches(collector)
    unique = first_arrivals(received)
    seqs = [b.seq for b in unique]
    assert seqs == sorted(seqs), "batches arrived out of order"
    assert seqs == list(range(1, len(seqs) + 1)), "a sequence number is missing"
    # Polling went on during the outage: no point misses a tick for longer than a few intervals.
    for key, ts in stamps(unique).items():
        assert len(ts) == len(set(ts)), f"{key}: a reading arrived twice after deduplication"
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(ts)]
        assert max(gaps) < 5 * INTERVAL_S, f"{key}: readings missing around the outage"
        assert len(ts) >= 25


def outbox_readings(path: Path) -> set[tuple[str, str]]:
    """(device, ts) of every reading still in an outbox file."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT body FROM polls").fetchall()
    finally:
        db.close()
    found: set[tuple[str, str]] = set()
    for (body,) in rows:
        batch = parse_telemetry(
            f'{{"schema_version":1,"gateway":"g","seq":1,"sent_at":"2026-01-01T00:00:00Z",'
            f'"readings":[{body}]}}'.encode()
        )
        found.update((r.device, r.ts.isoformat()) for r in batch.readings)
    return found


def test_kill_9_in_the_middle_of_a_stream_loses_nothing(
    mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    simulator = ParkSimulator(load_scenario("tiny"))
    outbox = tmp_path / "state" / f"{ELECTRONICS}.outbox.sqlite"
    at_kill: set[tuple[str, str]] = set()

    async def gateway(path: Path) -> asyncio.subprocess.Process:
        return await start_zayton("gateway", "run", str(path))

    async def scenario() -> None:
        async with simulator:
            path = write_config(
                simulator,
                tmp_path,
                ELECTRONICS,
                mqtt_url=mqtt_url,
                topic_root=topic_prefix,
                # Batches are cut every 2 s, so the kill always finds polls in the outbox.
                edit=lambda text: text.replace("[mqtt]", "[mqtt]\nbatch_max_age_s = 2.0"),
            )
            first = await gateway(path)
            await asyncio.sleep(4.0)
            first.send_signal(signal.SIGKILL)
            await first.wait()
            at_kill.update(outbox_readings(outbox))
            second = await gateway(path)
            await asyncio.sleep(4.0)
            second.send_signal(signal.SIGTERM)
            assert await second.wait() == 0

    topic = str(Topic("tiny-electronics", ELECTRONICS, Stream.TELEMETRY, topic_prefix))
    with Collector(mqtt_url, topic, f"c-{topic_prefix}") as collector:
        asyncio.run(scenario())
        collector.wait_for(1, settle_s=1.0)

    unique = first_arrivals(batches(collector))
    seqs = [b.seq for b in unique]
    assert seqs == list(range(1, len(seqs) + 1)), "a sequence number is missing or reordered"
    assert at_kill, "the kill found nothing in the outbox: the test proves nothing"
    delivered = {(r.device, r.ts.isoformat()) for b in unique for r in b.readings}
    assert at_kill <= delivered, f"{len(at_kill - delivered)} stored readings never arrived"
    for key, ts in stamps(unique).items():
        assert len(ts) == len(set(ts)), f"{key}: a reading arrived twice after deduplication"
