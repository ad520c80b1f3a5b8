"""Serving a park over Modbus TCP in real or accelerated time.

Every gateway of the scenario gets one Modbus TCP port, like the serial-to-Ethernet converter in
a factory's switch room: its devices answer as unit ids 1..n behind it. A ticker advances the
park to the simulated clock (``speed`` times real time from ``start``) every ``tick_s`` seconds.

A gateway named in ``rtu_gateways`` also serves its devices over Modbus RTU, and the config
written for it by :meth:`ParkSimulator.gateway_configs` polls them that way:

- ``"rtu"``: on a serial line, a pair of pseudo-terminals (:class:`simulators.pty.PtyPair`); the
  simulator holds one end, the gateway config names the other (``transport = "rtu"``,
  ``serial_port``, ``baudrate``). A unit id without a device is silent, as on a real line.
- ``"rtu-tcp"``: RTU frames over a TCP port of its own (``transport = "rtu-tcp"``, ``host``,
  ``port``), as through a serial-to-Ethernet converter; a unit id without a device gets
  exception 0x0B.

Its Modbus TCP port keeps serving too, so both paths can be compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from simulators.modbus_rtu import RtuOverTcpServer, RtuSerialServer
from simulators.modbus_server import ModbusTcpServer
from simulators.park import GatewayUnit, Park
from simulators.pty import PtyPair
from simulators.scenario import DEFAULT_PROFILES, Scenario
from simulators.truth import Truth

log = logging.getLogger(__name__)

RtuTransport = Literal["rtu", "rtu-tcp"]
"""How a gateway's devices are served over Modbus RTU: a serial line, or RTU frames over TCP."""
RTU_TRANSPORTS: tuple[RtuTransport, ...] = ("rtu", "rtu-tcp")
SERIAL_BAUDRATE = 9600


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
    free port for each). The RTU-over-TCP ports of ``rtu_gateways`` follow those of every
    gateway, in the order of the park's gateways."""

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
        rtu_gateways: Mapping[str, RtuTransport] | None = None,
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
        self.rtu_gateways = dict(rtu_gateways or {})
        unknown = sorted(set(self.rtu_gateways) - set(self.park.gateways))
        if unknown:
            raise ValueError(f"rtu_gateways names gateways the park does not have: {unknown}")
        bad = {gw: link for gw, link in self.rtu_gateways.items() if link not in RTU_TRANSPORTS}
        if bad:
            raise ValueError(f"RTU transports are {RTU_TRANSPORTS}, got {bad}")
        rtu_tcp = [gw for gw in self.park.gateways if self.rtu_gateways.get(gw) == "rtu-tcp"]
        rtu_base = base_port + len(self.servers) if base_port else 0
        self.rtu_tcp_servers = {
            gateway_id: RtuOverTcpServer(
                self.park.gateways[gateway_id].devices,
                host=host,
                port=rtu_base + index if rtu_base else 0,
            )
            for index, gateway_id in enumerate(rtu_tcp)
        }
        self.serial_servers: dict[str, RtuSerialServer] = {}  # made each time it is served
        self._lines: dict[str, tuple[PtyPair, str]] = {}  # the gateway's end of each line
        self.host = host
        self._tick_s = tick_s
        self._ticker: asyncio.Task[None] | None = None
        self._truth = (
            Truth(self.park, truth_dir, interval_s=truth_interval_s) if truth_dir else None
        )

    @property
    def ports(self) -> dict[str, int]:
        return {gateway: server.port for gateway, server in self.servers.items()}

    @property
    def rtu_ports(self) -> dict[str, int]:
        """The RTU-over-TCP port of each ``"rtu-tcp"`` gateway."""
        return {gateway: server.port for gateway, server in self.rtu_tcp_servers.items()}

    @property
    def serial_ports(self) -> dict[str, str]:
        """The gateway's end of the serial line of each ``"rtu"`` gateway, while served."""
        return {gateway: path for gateway, (_, path) in self._lines.items()}

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
        try:
            for server in self.servers.values():
                await server.start()
            for rtu_server in self.rtu_tcp_servers.values():
                await rtu_server.start()
            for gateway_id, transport in self.rtu_gateways.items():
                if transport == "rtu":
                    await self._serve_serial(gateway_id)
        except OSError:
            await self._stop_servers()
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
        for gateway_id, rtu_server in self.rtu_tcp_servers.items():
            log.info("gateway %s also serves RTU over TCP on port %d", gateway_id, rtu_server.port)
        for gateway_id, path in self.serial_ports.items():
            log.info("gateway %s also serves RTU on the serial line %s", gateway_id, path)
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
        await self._stop_servers()
        if self._truth is not None:
            self._truth.__exit__(exc_type, exc, tb)

    async def _serve_serial(self, gateway_id: str) -> None:
        line = PtyPair()
        simulator_end, gateway_end = line.open()
        self._lines[gateway_id] = (line, gateway_end)
        server = RtuSerialServer(
            self.park.gateways[gateway_id].devices, simulator_end, baudrate=SERIAL_BAUDRATE
        )
        self.serial_servers[gateway_id] = server
        await server.start()

    async def _stop_servers(self) -> None:
        """Stop every server and close every serial line (those never started as well)."""
        for server in self.servers.values():
            await server.stop()
        for rtu_server in self.rtu_tcp_servers.values():
            await rtu_server.stop()
        for serial_server in self.serial_servers.values():
            await serial_server.stop()
        for line, _ in self._lines.values():
            line.close()
        self._lines.clear()

    def gateway_configs(
        self, directory: Path, *, mqtt_url: str, interval_s: float = 5.0, topic_root: str = "zayton"
    ) -> list[Path]:
        """Write one gateway config per gateway of the park, polling this simulator (over RTU
        for ``rtu_gateways``)."""
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
                    link=self._link(gateway_id),
                )
            )
            written.append(path)
        return written

    def _link(self, gateway_id: str) -> str | None:
        """The transport keys of an RTU gateway's device entries; None for Modbus TCP."""
        match self.rtu_gateways.get(gateway_id):
            case "rtu-tcp":
                port = self.rtu_tcp_servers[gateway_id].port
                return f'transport = "rtu-tcp"\nhost = "{self.host}"\nport = {port}\n'
            case "rtu":
                if gateway_id not in self._lines:
                    raise RuntimeError(f"{gateway_id} has a serial line only while served")
                serial_port = self._lines[gateway_id][1]
                return (
                    f'transport = "rtu"\nserial_port = "{serial_port}"\n'
                    f"baudrate = {SERIAL_BAUDRATE}\n"
                )
            case _:
                return None


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
    link: str | None = None,
) -> str:
    """The gateway config that polls one simulated gateway's devices (``zayton gateway run``):
    over Modbus TCP at ``host``:``port``, or, given ``link``, over the transport whose keys it
    holds (TOML lines, e.g. ``transport = "rtu"`` and its ``serial_port``)."""
    firm = unit.firm
    specs = {device.name: device for device in firm.devices}
    devices = []
    for unit_id, sim in unit.devices.items():
        spec = specs[sim.name]
        profile = spec.profile or DEFAULT_PROFILES[spec.type]
        connection = link or f'host = "{host}"\nport = {port}\n'
        devices.append(
            f'\n[[devices]]\nname = "{sim.name}"\nprofile = "{profile}"\n{connection}'
            f"unit_id = {unit_id}\ninterval_s = {interval_s}\n"
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
