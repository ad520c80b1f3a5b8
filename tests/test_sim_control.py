"""The simulator's fault-control API and its command-line client."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from simulators.control import create_control_app
from simulators.scenario import load_scenario
from simulators.serve import ParkSimulator, SimClock

pytestmark = pytest.mark.integration

CST = timezone(timedelta(hours=8))
START = datetime(2026, 11, 23, 10, tzinfo=CST).timestamp()


def test_faults_are_injected_listed_and_cleared_over_http() -> None:
    async def run() -> None:
        simulator = ParkSimulator(load_scenario("tiny"), clock=SimClock(START), tick_s=0)
        async with simulator:
            transport = httpx.ASGITransport(app=create_control_app(simulator))
            async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
                devices = (await http.get("/devices")).json()
                assert len(devices) == 17
                incomer = next(d for d in devices if d["device"] == "tiny-shoes/incomer")
                assert incomer["port"] == simulator.ports["gw-tiny-shoes"]
                assert incomer["unit_id"] == 1

                body = {"device": "tiny-shoes/incomer", "fault": {"type": "silent"}}
                created = await http.post("/faults", json=body)
                assert created.status_code == 201
                fault = created.json()
                assert fault["state"] == "active"
                assert simulator.park.devices["tiny-shoes/incomer"].silent
                listed = (await http.get("/devices")).json()
                assert next(d for d in listed if d["device"] == "tiny-shoes/incomer")["faults"] == [
                    fault["id"]
                ]

                cleared = await http.delete(f"/faults/{fault['id']}")
                assert cleared.json()["state"] == "cleared"
                assert not simulator.park.devices["tiny-shoes/incomer"].silent

                unknown = {"device": "tiny-shoes/nope", "fault": {"type": "silent"}}
                assert (await http.post("/faults", json=unknown)).status_code == 404
                bad = {"device": "tiny-shoes/incomer", "fault": {"type": "melt"}}
                assert (await http.post("/faults", json=bad)).status_code == 422
                impossible = {"device": "tiny-shoes/eva-1-meter", "fault": {"type": "wrap"}}
                refused = await http.post("/faults", json=impossible)
                assert refused.status_code == 409
                assert "could wrap" in refused.json()["detail"]
                assert (await http.delete("/faults/999")).status_code == 404
                clock = (await http.get("/clock")).json()
                assert datetime.fromisoformat(clock["now"]).timestamp() == pytest.approx(
                    START, abs=1
                )

    asyncio.run(run())
