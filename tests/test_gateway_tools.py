"""The installer's tools against the simulator: read-once prints what the gateway would publish,
probe finds the word order of a 32-bit register."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.tools import candidates, suggestion
from profiles.codec import DataType, Encoding, WordOrder, encode
from simulators.scenario import load_scenario
from simulators.serve import ParkSimulator, SimClock
from zayton.cli import main

pytestmark = pytest.mark.integration

FROZEN = SimClock(datetime(2026, 11, 23, 10, tzinfo=UTC).timestamp(), wall=lambda: 0.0)


@pytest.mark.unit
@pytest.mark.parametrize("order", list(WordOrder))
def test_the_only_order_in_range_is_suggested(order: WordOrder) -> None:
    words = encode(230.5, Encoding(DataType.FLOAT32, order))
    found = candidates(words, low=180.0, high=260.0)
    best = suggestion(found)
    assert best is not None
    assert (best.type, best.order, best.value) == (DataType.FLOAT32, order, 230.5)


@pytest.mark.unit
def test_no_suggestion_when_several_orders_fit() -> None:
    assert suggestion(candidates([0, 0], low=-1.0, high=1.0)) is None


def test_read_once_and_probe_on_a_simulated_meter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator = ParkSimulator(load_scenario("tiny"), clock=FROZEN, tick_s=0)
    gateway = "gw-tiny-shoes"

    async def scenario() -> tuple[int, int]:
        async with simulator:
            simulator.gateway_configs(tmp_path, mqtt_url="mqtt://127.0.0.1:1883")
            config = str(tmp_path / f"{gateway}.toml")
            # The commands run their own event loop: in a thread, beside the simulator's.
            read = await asyncio.to_thread(
                main, ["gateway", "read-once", config, "--device", "incomer"]
            )
            shown = capsys.readouterr().out
            energy = next(line for line in shown.splitlines() if "energy_import_kwh" in line)
            kwh = float(energy.split()[2])
            port = str(simulator.ports[gateway])
            probed = await asyncio.to_thread(
                main,
                ["gateway", "probe", "--host", "127.0.0.1", "--port", port, "--unit", "1",
                 "--address", "15", "--scale", "0.01", "--expect", str(kwh)],
            )  # fmt: skip
            return read, probed

    read, probed = asyncio.run(scenario())
    out = capsys.readouterr().out
    assert read == 0
    assert probed == 0
    # The incomer's profile (zayton-meter-u32-cdab) stores its counters low word first.
    assert 'suggested: word_order = "CDAB"' in out
