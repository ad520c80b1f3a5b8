"""Serving a park over Modbus TCP in real or accelerated time.

Every gateway of the scenario gets one Modbus TCP port, like the serial-to-Ethernet converter in
a factory's switch room: its devices answer as unit ids 1..n behind it. A ticker advances the
park to the simulated clock (``speed`` times real time from ``start``) every ``tick_s`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from simulators.modbus_server import ModbusTcpServer
from simulators.park import GatewayUnit, Park
from simulators.scenario import DEFAULT_PROFILES, Scenario
from simulators.truth import Truth

log = logging.getLogger(__name__)


class SimClock:
    """Simulated time: ``start`` plus ``speed`` times the real time elapsed since creation."""

    def __init__(
        self,
        start: float | None = None,
        speed: float = 1.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not speed > 0 or not math.isfinite(speed):
            raise ValueError("speed must be a positive number")
        self._wall = wall
        self._wall0 = wall()
        self.start = self._wall0 if start is None else start
        self.speed = speed

    def now(self) -> float:
        return self.start + self.speed * (self._wall() - self._wall0)


class ParkSimulator:
    """A park served on ``host``, its gateways on ``base_port``, ``base_port + 1``… (0: any
    free port for each)."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        host: str = "127.0.0.1",
        base_port: int = 0,
        clock: SimClock | None = None,
        step_s: float | None = None,
        tick_s: float = 1.0,
        truth_dir: Path | None = None,
        truth_interval_s: float = 900.0,
    ) -> None:
        self.clock = clock or SimClock()
        if step_s is None:  # about one physics cell per tick, in whole seconds
            step_s = float(max(1, round(self.clock.speed * tick_s)))
        self.park = Park(scenario, start=self.clock.now(), step_s=step_s)
        self.servers = {
            gateway_id: ModbusTcpServer(
                unit.devices, host=host, port=base_port + index if base_port else 0
            )
            for index, (gateway_id, unit) in enumerate(self.park.gateways.items())
        }
        self.host = host
        self._tick_s = tick_s
        self._ticker: asyncio.Task[None] | None = None
        self._truth = (
            Truth(self.park, truth_dir, interval_s=truth_interval_s) if truth_dir else None
        )

    @property
    def ports(self) -> dict[str, int]:
        return {gateway: server.port for gateway, server in self.servers.items()}

    def tick(self) -> None:
        """Advance the park to the simulated clock's present."""
        self.park.advance(max(self.park.now, self.clock.now()))
        if self._truth is not None:
            self._truth.flush()

    async def _run_ticker(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            self.tick()

    async def __aenter__(self) -> Self:
        started: list[ModbusTcpServer] = []
        try:
            for server in self.servers.values():
                await server.start()
                started.append(server)
        except OSError:
            for server in started:
                await server.stop()
            raise
        if self._truth is not None:
            self._truth.__enter__()
        if self._tick_s > 0:
            self._ticker = asyncio.create_task(self._run_ticker(), name="park physics")
        log.info(
            "park %s: %d devices of %d firms on %d Modbus TCP ports (%s:%s), %gx real time",
            self.park.scenario.park.id,
            len(self.park.devices),
            len(self.park.firms),
            len(self.servers),
            self.host,
            _port_range(list(self.ports.values())),
            self.clock.speed,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for server in self.servers.values():
            await server.stop()
        if self._truth is not None:
            self._truth.__exit__(exc_type, exc, tb)

    def gateway_configs(
        self, directory: Path, *, mqtt_url: str, interval_s: float = 5.0, topic_root: str = "zayton"
    ) -> list[Path]:
        """Write one gateway config per gateway of the park, polling this simulator."""
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for gateway_id, unit in self.park.gateways.items():
            path = directory / f"{gateway_id}.toml"
            path.write_text(
                gateway_toml(
                    gateway_id,
                    unit,
                    self.host,
                    self.servers[gateway_id].port,
                    mqtt_url=mqtt_url,
                    interval_s=interval_s,
                    topic_root=topic_root,
                )
            )
            written.append(path)
        return written


def _port_range(ports: list[int]) -> str:
    if not ports:
        return "-"
    low, high = min(ports), max(ports)
    return str(low) if low == high else f"{low}-{high}"


def gateway_toml(
    gateway_id: str,
    unit: GatewayUnit,
    host: str,
    port: int,
    *,
    mqtt_url: str,
    interval_s: float,
    topic_root: str,
) -> str:
    """The gateway config that polls one simulated gateway's devices (``zayton gateway run``)."""
    firm = unit.firm
    specs = {device.name: device for device in firm.devices}
    devices = []
    for unit_id, sim in unit.devices.items():
        spec = specs[sim.name]
        profile = spec.profile or DEFAULT_PROFILES[spec.type]
        devices.append(
            f'\n[[devices]]\nname = "{sim.name}"\nprofile = "{profile}"\nhost = "{host}"\n'
            f"port = {port}\nunit_id = {unit_id}\ninterval_s = {interval_s}\n"
        )
    return (
        f"# Polls the devices of simulated gateway {gateway_id} ({firm.name}).\n"
        f"# Written by 'zayton simulate'; check with 'zayton check-config'.\n\n"
        f'[gateway]\nid = "{gateway_id}"\nsite = "{firm.id}"\nfirm = "{firm.name}"\n'
        f'uplink = "{unit.uplink.value}"\nstate_dir = "state"\n\n'
        f'[mqtt]\nurl = "{mqtt_url}"\ntopic_root = "{topic_root}"\n' + "".join(devices)
    )


def parse_start(text: str | None) -> float | None:
    """``--start`` as POSIX seconds: an ISO date or date-time (local UTC+8 when no zone)."""
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = datetime.fromisoformat(f"{value.isoformat()}+08:00")
    return value.timestamp()
