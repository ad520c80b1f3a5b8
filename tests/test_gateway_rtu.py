"""The gateway's RTU transports against the park simulator: RTU on a serial line (a pseudo-terminal
pair) and RTU frames through TCP, each with many unit ids on one bus."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.modbus import links_for
from gateway.service import run_gateway
from gateway.tools import read_once
from simulators.scenario import load_scenario
from simulators.serve import ParkSimulator, SimClock
from tests.collector import Collector
from wire.payload import parse_status, parse_telemetry

pytestmark = pytest.mark.integration

SHOES, ELECTRONICS = "gw-tiny-shoes", "gw-tiny-electronics"
FROZEN = SimClock(datetime(2026, 11, 23, 10, tzinfo=UTC).timestamp(), wall=lambda: 0.0)


def test_rtu_on_a_serial_line_and_through_tcp_reads_what_modbus_tcp_reads(tmp_path: Path) -> None:
    simulator = ParkSimulator(
        load_scenario("tiny"),
        clock=FROZEN,
        tick_s=0,
        rtu_gateways={SHOES: "rtu", ELECTRONICS: "rtu-tcp"},
    )

    async def scenario() -> None:
        async with simulator:
            rtu_dir = tmp_path / "rtu"
            simulator.gateway_configs(rtu_dir, mqtt_url="mqtt://127.0.0.1:1883")
            for gateway, transport in ((SHOES, "rtu"), (ELECTRONICS, "rtu-tcp")):
                rtu = load_config(rtu_dir / f"{gateway}.toml")
                assert {d.config.transport for d in rtu.devices} == {transport}
                # Every device of the gateway shares one bus: one link, one lock.
                assert len(links_for(rtu.devices)) == 1
                for device in rtu.devices:
                    # The same device over the simulator's Modbus TCP port, for comparison.
                    tcp_section = device.config.model_copy(
                        update={
                            "transport": "tcp",
                            "host": "127.0.0.1",
                            "port": simulator.ports[gateway],
                            "serial_port": None,
                        }
                    )
                    tcp_device = type(device)(
                        config=tcp_section,
                        profile=device.profile,
                        quirks=device.quirks,
                        requests=device.requests,
                        counters=device.counters,
                    )
                    over_rtu = await read_once(device)
                    over_tcp = await read_once(tcp_device)
                    assert [r.error for r in over_rtu] == [None] * len(over_rtu)
                    assert over_rtu == over_tcp, device.name

    asyncio.run(scenario())


def test_the_gateway_polls_a_serial_bus_of_twelve_devices_without_collisions(
    mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    simulator = ParkSimulator(load_scenario("tiny"), rtu_gateways={SHOES: "rtu"})
    names = {d.name for d in simulator.park.gateways[SHOES].devices.values()}
    line: dict[str, int] = {}

    async def scenario() -> None:
        async with simulator:
            simulator.gateway_configs(
                tmp_path, mqtt_url=mqtt_url, interval_s=0.5, topic_root=topic_prefix
            )
            config = load_config(tmp_path / f"{SHOES}.toml")
            stop = asyncio.Event()
            task = asyncio.create_task(run_gateway(config, stop))
            await asyncio.sleep(3.0)
            stop.set()
            await task
            served = simulator.serial_servers[SHOES]
            line.update(requests=served.requests, dropped=served.framer.dropped)

    with Collector(mqtt_url, f"{topic_prefix}/v1/+/+/#", f"c-{topic_prefix}") as collector:
        asyncio.run(scenario())
        collector.wait_for(1, settle_s=0.5)

    telemetry = [parse_telemetry(p) for t, p in collector.messages if t.endswith("/telemetry")]
    assert {r.device for b in telemetry for r in b.readings} == names
    status = [parse_status(p) for t, p in collector.messages if t.endswith("/status")]
    last = [s for s in status if s.devices][-1]
    # Twelve devices polled concurrently on one half-duplex line: the bus lock keeps every
    # request whole, so no device ever saw a failed read.
    assert {d.state for d in last.devices} == {"online"}
    assert all(d.failures == 0 for d in last.devices)
    assert line["requests"] > 12 * 4
    assert line["dropped"] == 0  # no byte on the line was ever garbled
