"""The park over real Modbus TCP sockets: counters against reported flows, and scale."""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import datetime, timedelta, timezone

import pytest

from simulators.faults import parse_fault
from simulators.scenario import Scenario, load_scenario
from simulators.serve import ParkSimulator, SimClock
from tests.simclient import ExceptionReply, modbus_client, read_points

pytestmark = pytest.mark.integration

CST = timezone(timedelta(hours=8))
MONDAY_0830 = datetime(2026, 11, 23, 8, 30, tzinfo=CST).timestamp()
RATE_OF = {
    "energy_import_kwh": "active_power_kw",
    "gas_volume_m3": "gas_flow_m3h",
    "steam_mass_t": "steam_flow_th",
    "pv_energy_total_kwh": "pv_power_kw",
}
STEP_S = 60


def frozen(start: float) -> SimClock:
    """A simulated clock that stands still: the test moves the park itself."""
    return SimClock(start, wall=lambda: 0.0)


@pytest.mark.parametrize(
    ("device", "fault"),
    [
        ("tiny-shoes/compressor-1-meter", {"type": "wrap", "before": 30.0}),  # uint32, 2^32
        ("tiny-electronics/incomer", {"type": "wrap", "modulus": "decimal", "before": 100.0}),
        ("tiny-shoes/incomer", {"type": "wrap", "before": 40.0}),  # CDAB, PV export at noon
        ("tiny-shoes/eva-1-meter", None),  # float32
        ("tiny-shoes/sewing-meter", None),  # float32 CDAB
        ("tiny-shoes/gas-main", {"type": "wrap", "before": 20.0}),
        ("tiny-shoes/steam-boiler-1", {"type": "wrap", "before": 0.5}),
        ("tiny-shoes/pv-roof", {"type": "wrap", "before": 25.0}),
    ],
)
def test_counter_deltas_equal_the_integral_of_reported_flow(
    device: str, fault: dict[str, object] | None
) -> None:
    """Over any window, the counter read over Modbus grows by the integral of the power (or
    flow) read over Modbus, within 0.1%, across the wrap of the register when there is one."""
    simulator = ParkSimulator(
        load_scenario("tiny"), clock=frozen(MONDAY_0830), step_s=STEP_S, tick_s=0
    )
    sim = simulator.park.devices[device]
    counter_name = next(name for name in sim.counters if name in RATE_OF)
    counter = sim.counters[counter_name]
    if fault is not None:
        simulator.park.inject(device, parse_fault(fault))
    modulus = None if counter.modulus is None else counter.modulus * counter.binding.point.scale
    unit = next(u for u, d in simulator.park.gateways[sim.gateway].devices.items() if d is sim)

    async def sample() -> list[dict[str, float]]:
        rows = []
        async with simulator, modbus_client(simulator.ports[sim.gateway]) as client:
            for minute in range(6 * 60 + 1):
                simulator.park.advance(MONDAY_0830 + minute * STEP_S)
                values = await read_points(client, unit, sim.profile)
                rows.append(
                    {name: value for name, (value, _) in values.items() if value is not None}
                )
        return rows

    rows = asyncio.run(sample())
    readings = [row[counter_name] for row in rows]
    if modulus is not None:
        wrapped = sum(b < a for a, b in itertools.pairwise(readings))
        assert wrapped == 1, "the counter wraps exactly once in the run"
    rate = RATE_OF[counter_name]
    windows = random.Random(device).sample(  # noqa: S311 - a repeatable choice
        [(i, j) for i in range(len(rows)) for j in range(i + 60, len(rows), 7)], 60
    )
    windows.append((0, len(rows) - 1))
    for first, last in windows:
        integral = sum(rows[k][rate] * STEP_S / 3600 for k in range(first, last))
        delta = readings[last] - readings[first]
        if modulus is not None:
            delta %= modulus
        if counter_name == "energy_import_kwh":  # the power is net of what the meter exports
            exported = rows[last]["energy_export_kwh"] - rows[first]["energy_export_kwh"]
            delta -= exported % modulus if modulus is not None else exported
        if abs(integral) < 1e-9:
            assert abs(delta) < 2 * counter.binding.point.scale
            continue
        assert delta == pytest.approx(integral, rel=1e-3), (first, last)


def test_a_thousand_devices_in_one_process_behind_many_ports() -> None:
    scenario = load_scenario("tiny").replicated(60)
    assert scenario.device_count >= 1000
    simulator = ParkSimulator(scenario, clock=frozen(MONDAY_0830), tick_s=0)

    async def read_all() -> int:
        answered = 0
        async with simulator:
            assert len(set(simulator.ports.values())) == 120
            simulator.tick()
            for gateway, unit in simulator.park.gateways.items():
                async with modbus_client(simulator.ports[gateway]) as client:
                    for unit_id, device in unit.devices.items():
                        values = await read_points(client, unit_id, device.profile)
                        answered += bool(values)
        return answered

    assert asyncio.run(read_all()) == scenario.device_count


def test_all_247_unit_ids_behind_one_port() -> None:
    devices = [
        {"name": f"m{unit:03d}", "type": "meter", "measures": "line:l1"} for unit in range(1, 248)
    ]
    scenario = Scenario.model_validate(
        {
            "park": {"id": "p", "name": "P"},
            "firms": [
                {
                    "id": "f",
                    "name": "F",
                    "sector": "textile",
                    "land_mu": 10,
                    "headcount": 10,
                    "product": {"unit": "pair", "price_yuan": 1},
                    "gateways": [{"id": "gw"}],
                    "lines": [{"id": "l1", "workshop": "w", "kw": 10, "rate_per_min": 1}],
                    "devices": devices,
                }
            ],
        }
    )
    simulator = ParkSimulator(scenario, clock=frozen(MONDAY_0830), tick_s=0)
    profile = simulator.park.devices["f/m001"].profile

    async def read() -> tuple[float | None, float | None, int]:
        async with simulator, modbus_client(simulator.ports["gw"]) as client:
            first = await read_points(client, 1, profile)
            last = await read_points(client, 247, profile)
            with pytest.raises(ExceptionReply) as caught:
                await read_points(client, 248, profile)
        return first["active_power_kw"][0], last["active_power_kw"][0], caught.value.code

    first, last, code = asyncio.run(read())
    assert first == last  # every meter measures the same line
    assert first is not None
    assert first > 0
    assert code == 0x0B  # gateway target device failed to respond
