"""The whole chain on real sockets: simulator → gateway → MQTT → ingester → PostgreSQL → API."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from api.app import ApiSettings
from gateway.config import load_config
from gateway.service import run_gateway
from ingest.service import IngestSettings, run_ingester
from simulators.scenario import load_scenario
from simulators.serve import ParkSimulator, SimClock
from wire.broker import BrokerSettings
from zayton.services import bind, serve_api

T = TypeVar("T")

FLOAT_POINTS = [
    "voltage_l1_v",
    "voltage_l2_v",
    "voltage_l3_v",
    "current_l1_a",
    "current_l2_a",
    "current_l3_a",
    "active_power_kw",
]


async def eventually(check: Callable[[], Awaitable[T | None]], seconds: float = 20.0) -> T:
    """Poll ``check`` until it returns something, within a deadline."""
    async with asyncio.timeout(seconds):
        while True:
            result = await check()
            if result is not None:
                return result
            await asyncio.sleep(0.1)


@pytest.mark.e2e
def test_the_api_returns_exactly_what_the_simulator_served(
    migrated_database: str, mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    gateway = "gw-tiny-electronics"
    # A clock that stands still holds every register, so the values served are known exactly.
    frozen = SimClock(datetime(2026, 11, 23, 10, tzinfo=UTC).timestamp(), wall=lambda: 0.0)
    simulator = ParkSimulator(load_scenario("tiny"), clock=frozen, tick_s=0)
    devices = simulator.park.gateways[gateway].devices.values()
    expected_points = sum(len(device.profile.points) for device in devices)

    async def scenario() -> list[dict[str, Any]]:
        async with simulator:
            (path,) = [
                p
                for p in simulator.gateway_configs(
                    tmp_path, mqtt_url=mqtt_url, interval_s=0.2, topic_root=topic_prefix
                )
                if p.stem == gateway
            ]
            config = load_config(path)
            stop = asyncio.Event()
            sock = bind("127.0.0.1", 0)
            port = sock.getsockname()[1]
            ingest = IngestSettings(
                database_url=migrated_database,
                mqtt_url=mqtt_url,
                topic_root=topic_prefix,
                client_id=f"{topic_prefix}-ingest",
            )
            tasks = [
                asyncio.create_task(run_ingester(ingest, stop)),
                asyncio.create_task(run_gateway(config, stop)),
                asyncio.create_task(
                    serve_api(ApiSettings(migrated_database, anonymous="district"), sock, stop)
                ),
            ]
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

                    async def all_points() -> list[dict[str, Any]] | None:
                        try:
                            response = await client.get("/v1/readings/latest")
                        except httpx.TransportError:
                            return None
                        rows: list[dict[str, Any]] = response.json()["items"]
                        return rows if len(rows) == expected_points else None

                    rows = await eventually(all_points)
                    health = (await client.get("/health")).json()
                    assert health["database"] == "ok"
            finally:
                stop.set()
                await asyncio.gather(*tasks)
            return rows

    rows = asyncio.run(scenario())
    served = {(r["device"], r["point"]): r for r in rows}
    smt = simulator.park.devices["tiny-electronics/smt-1-meter"].registers  # float32 ABCD
    for name in FLOAT_POINTS:
        # float32 big-endian across two registers, decoded here independently of Zayton.
        (expected,) = struct.unpack(">f", struct.pack(">HH", *smt.raw(name)))
        row = served[("smt-1-meter", name)]
        assert row["value"] == expected, name
        assert row["quality"] == "good"
    incomer = simulator.park.devices["tiny-electronics/incomer"].registers  # uint32 x 0.01 ABCD
    hi, lo = incomer.raw("energy_import_kwh")
    counter = hi << 16 | lo
    assert counter > 0
    assert served[("incomer", "energy_import_kwh")]["value"] == counter * 0.01
    assert served[("incomer", "energy_import_kwh")]["unit"] == "kWh"
    assert served[("incomer", "energy_import_kwh")]["kind"] == "counter"
    for device in devices:
        for point in device.profile.points:
            row = served[(device.name, point.name)]
            assert row["value"] == pytest.approx(device.registers.served(point.name)), point.name
    assert {r["gateway"] for r in rows} == {gateway}
    with psycopg.connect(migrated_database) as conn:
        gateways = conn.execute("SELECT uplink, state, last_seq FROM zayton.gateways").fetchall()
    assert gateways[0][0] == "wired"
    assert gateways[0][2] is not None
    assert int(str(gateways[0][2])) >= 1


def publish_all(mqtt_url: str, messages: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 1 with a plain paho client and wait for every acknowledgement."""
    settings = BrokerSettings.from_url(mqtt_url)
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.connect(settings.host, settings.port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
