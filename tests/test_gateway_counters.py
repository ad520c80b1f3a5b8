"""Counter semantics end to end: a simulated meter read over Modbus through the gateway's own
reader, with faults injected; the consumption the gateway counts, and the consumption the
store's rollups hold after ingesting its batches, equal the simulator's truth."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from gateway.config import load_config
from gateway.modbus import Link
from gateway.poller import DeviceReader
from ingest.rollups import refresh
from ingest.store import Accepted, Store
from simulators.faults import parse_fault
from simulators.scenario import load_scenario
from simulators.serve import ParkSimulator, SimClock
from wire.payload import parse_telemetry
from wire.topics import Stream, Topic

pytestmark = pytest.mark.integration

GATEWAY, DEVICE, POINT = "gw-tiny-electronics", "incomer", "energy_import_kwh"
KEY = f"tiny-electronics/{DEVICE}"
STEP_S = 60.0


def test_wrap_glitch_reset_and_replacement_count_exactly_what_the_meter_measured(
    tmp_path: Path, migrated_database: str
) -> None:
    wall = [0.0]
    clock = SimClock(datetime(2026, 11, 23, 9, tzinfo=UTC).timestamp(), wall=lambda: wall[0])
    simulator = ParkSimulator(load_scenario("tiny"), clock=clock, tick_s=0)
    counter = simulator.park.device(KEY).counters[POINT]
    deltas: list[float] = []
    kinds: list[str] = []
    truth: list[float] = []
    payloads: list[bytes] = []

    async def scenario() -> None:
        async with simulator:
            simulator.gateway_configs(tmp_path, mqtt_url="mqtt://127.0.0.1:1883")
            path = tmp_path / f"{GATEWAY}.toml"
            # The meter's rating: a step above 2,000 kWh per hour is quarantined as a jump.
            path.write_text(_with_rating(path.read_text()))
            device = load_config(path).device(DEVICE)
            reader = DeviceReader(device, Link([device.config]), clock=clock.now)
            faults = {
                5: {"type": "wrap", "before": 20.0},  # shown jumps to just below 2^32 x 0.01
                15: {"type": "zero", "reads": 1},
                25: {"type": "reset"},
                30: {"type": "replace", "start": 500.0, "serial": 777},
            }
            for step in range(35):
                if step in faults:
                    simulator.park.inject(KEY, parse_fault(faults[step]))
                wall[0] += STEP_S
                simulator.tick()
                poll = await reader.poll()
                payload = (
                    b'{"schema_version":1,"gateway":"g","seq":%d,'
                    b'"sent_at":"2026-01-01T00:00:00Z","readings":['
                    % (step + 1)
                    + poll.body.encode()
                    + b'],"events":['
                    + ",".join(poll.events).encode()
                    + b"]}"
                )
                payloads.append(payload)
                batch = parse_telemetry(payload)
                (reading,) = [r for r in batch.readings if r.point == POINT]
                deltas.append(reading.delta or 0.0)
                kinds.extend(e.kind for e in batch.events if e.point == POINT)
                truth.append(counter.true)
            await reader.link.close()

    asyncio.run(scenario())
    # The wrap fault moves the register by millions of kWh: a jump, quarantined, never counted.
    assert kinds == ["jump", "wrap", "glitch", "reset", "replacement"]
    measured = truth[-1] - truth[0]
    assert measured > 100.0
    # Every step is counted once, except the step of the jump: what the meter measured in it
    # is inside the quarantined amount. The zero glitch loses nothing, and the reset happened
    # right after a reading, so counting from zero loses nothing either.
    # The new meter's first reading is its base: what it counted since it was fitted is not
    # known to be consumption (its start value is unknown to the gateway).
    jumped = truth[5] - truth[4]
    replaced = truth[30] - truth[29]
    assert deltas[5] == 0.0
    assert deltas[15] == 0.0  # the zero reading: held, then counted with the next one
    assert deltas[25] == 0.0  # the first reading after the reset: held until confirmed
    assert deltas[30] == 0.0
    expected = measured - jumped - replaced
    assert sum(deltas) == pytest.approx(expected, abs=0.05)
    assert min(deltas) >= 0.0

    # Through the store: the rollups' consumption is what the gateway counted, and the events
    # are kept (a batch sent twice changes nothing).
    stored = asyncio.run(_ingest(migrated_database, [*payloads, payloads[10]]))
    assert stored[0] == pytest.approx(expected, abs=0.05)
    assert stored[1] == ["jump", "wrap", "glitch", "reset", "replacement"]


async def _ingest(dsn: str, payloads: list[bytes]) -> tuple[float, list[str]]:
    topic = Topic("tiny-electronics", "g", Stream.TELEMETRY)
    store = await Store.connect(dsn)
    try:
        for payload in payloads:
            await store.write([Accepted(topic, parse_telemetry(payload, topic), payload)])
    finally:
        await store.close()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await refresh(conn, store.storage)
        cursor = await conn.execute(
            """SELECT sum(r.consumption) FROM zayton.rollup_hour r
               JOIN zayton.points p ON p.id = r.point_id
               JOIN zayton.devices d ON d.id = p.device_id
               WHERE d.name = %s AND p.name = %s""",
            (DEVICE, POINT),
        )
        row = await cursor.fetchone()
        cursor = await conn.execute(
            """SELECT e.kind FROM zayton.counter_events e
               JOIN zayton.points p ON p.id = e.point_id
               JOIN zayton.devices d ON d.id = p.device_id
               WHERE d.name = %s AND p.name = %s ORDER BY e.ts""",
            (DEVICE, POINT),
        )
        kinds = [str(k) for (k,) in await cursor.fetchall()]
    assert row is not None
    return float(str(row[0])), kinds


def _with_rating(text: str) -> str:
    """Give the incomer its rating in the gateway config (the first device entry named so)."""
    marker = f'name = "{DEVICE}"'
    head, tail = text.split(marker, 1)
    return (
        head
        + marker
        + tail.replace(
            "\n[[devices]]",
            f"\n[devices.counters.{POINT}]\nmax_per_hour = 2000.0\n\n[[devices]]",
            1,
        )
    )
