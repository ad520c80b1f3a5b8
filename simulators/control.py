"""A small HTTP API to look at a running park and inject or clear faults.

    GET    /devices              every device: firm, gateway, port, unit id, profile, faults
    GET    /faults               every fault injected, with its state
    POST   /faults               {"device": "<firm>/<name>", "fault": {"type": "silent", ...}}
    DELETE /faults/{id}          end a fault now
    GET    /clock                simulated time and speed

``zayton simulate fault`` is the command-line client of this API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from simulators.faults import Fault
from simulators.park import FaultRecord
from simulators.serve import ParkSimulator
from simulators.simdevice import FaultError


class FaultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: Annotated[str, Field(examples=["tiny-shoes/incomer"])]
    fault: Fault


class FaultView(BaseModel):
    id: int
    device: str
    fault: Fault
    start: datetime
    end: datetime | None
    state: str

    @classmethod
    def of(cls, record: FaultRecord) -> FaultView:
        return cls(
            id=record.id,
            device=record.device,
            fault=record.fault,
            start=datetime.fromtimestamp(record.start, UTC),
            end=None if record.end is None else datetime.fromtimestamp(record.end, UTC),
            state=record.state,
        )


class DeviceView(BaseModel):
    device: str
    firm: str
    gateway: str
    port: int
    unit_id: int
    profile: str
    serial: int
    faults: list[int]


class ClockView(BaseModel):
    now: datetime
    speed: float
    step_s: float


def create_control_app(simulator: ParkSimulator) -> FastAPI:
    park = simulator.park
    app = FastAPI(
        title="Zayton park simulator control",
        version="1",
        description="Inspect the simulated park and inject faults into its devices.",
    )

    @app.get("/devices")
    def devices() -> list[DeviceView]:
        ports = simulator.ports
        active: dict[str, list[int]] = {}
        for record in park.faults.values():
            if record.state in ("pending", "active"):
                active.setdefault(record.device, []).append(record.id)
        return [
            DeviceView(
                device=f"{sim.firm}/{sim.name}",
                firm=sim.firm,
                gateway=gateway_id,
                port=ports[gateway_id],
                unit_id=unit_id,
                profile=sim.profile.id,
                serial=sim.serial,
                faults=active.get(f"{sim.firm}/{sim.name}", []),
            )
            for gateway_id, unit in park.gateways.items()
            for unit_id, sim in unit.devices.items()
        ]

    @app.get("/faults")
    def faults() -> list[FaultView]:
        return [FaultView.of(record) for record in park.faults.values()]

    @app.post("/faults", status_code=201)
    def inject(request: FaultRequest) -> FaultView:
        if request.device not in park.devices:
            raise HTTPException(404, f"no device {request.device!r} (names are <firm>/<device>)")
        try:
            return FaultView.of(park.inject(request.device, request.fault))
        except FaultError as err:
            raise HTTPException(409, str(err)) from None

    @app.delete("/faults/{fault_id}")
    def clear(fault_id: int) -> FaultView:
        if fault_id not in park.faults:
            raise HTTPException(404, f"no fault {fault_id}")
        return FaultView.of(park.clear(fault_id))

    @app.get("/clock")
    def clock() -> ClockView:
        return ClockView(
            now=datetime.fromtimestamp(park.now, UTC),
            speed=simulator.clock.speed,
            step_s=park.step_s,
        )

    return app
