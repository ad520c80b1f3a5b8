"""The simulated park: every firm's physics and every device, advanced through simulated time.

Time is POSIX seconds (UTC) as a float. :meth:`Park.advance` moves the park to a later instant in
cells of ``step_s``: at the start of each cell every firm evaluates its lines and equipment, then
every counter integrates the cell's constant flows exactly. Faults from the scenario and from
:meth:`Park.inject` start and end on the way. :meth:`Park.poll` reads a device the way the gateway
does (same read plan, same decoding), which backfill uses to publish history without sockets.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from profiles.files import ConfigError
from profiles.model import Profile, load_profile
from profiles.plan import ReadRequest, plan_reads
from simulators.faults import ONE_SHOT, Fault
from simulators.modbus_server import ModbusError, Silence
from simulators.physics import Firm
from simulators.scenario import DEFAULT_PROFILES, SCENARIOS, FirmSpec, Scenario
from simulators.simdevice import SimDevice
from wire.payload import Quality, Uplink

log = logging.getLogger(__name__)

Reading = tuple[str, float | None, Quality]
"""(point, value, quality) as the gateway would publish it."""


@dataclass(slots=True)
class GatewayUnit:
    """A gateway of the park and the devices behind it, by Modbus unit id (1..247)."""

    id: str
    firm: FirmSpec
    uplink: Uplink
    devices: dict[int, SimDevice] = field(default_factory=dict)


@dataclass(slots=True)
class FaultRecord:
    id: int
    device: str
    """``<firm>/<device>``."""
    fault: Fault
    start: float
    end: float | None
    state: str = "pending"
    """pending, active, done, cleared, or missed (scheduled for a time before the run, and
    over by then)."""


class Park:
    def __init__(
        self,
        scenario: Scenario,
        *,
        start: float,
        step_s: float = 1.0,
        base_dir: Path = SCENARIOS,
    ) -> None:
        if step_s <= 0:
            raise ValueError("the physics step must be positive")
        self.scenario = scenario
        self.step_s = step_s
        self.now = start
        self.start = start
        self.firms: dict[str, Firm] = {}
        self.devices: dict[str, SimDevice] = {}
        self.gateways: dict[str, GatewayUnit] = {}
        plans: dict[str, tuple[ReadRequest, ...]] = {}
        self._plan_by_device: dict[str, tuple[ReadRequest, ...]] = {}
        profiles: dict[str, Profile] = {}
        seed = scenario.park.seed
        for spec in scenario.firms:
            firm = self.firms[spec.id] = Firm(spec, scenario.park)
            for gateway in spec.gateways:
                self.gateways[gateway.id] = GatewayUnit(gateway.id, spec, gateway.uplink)
            for device in spec.devices:
                ref = device.profile or DEFAULT_PROFILES[device.type]
                if ref not in profiles:
                    try:
                        profiles[ref] = load_profile(ref, base_dir)
                    except ConfigError as err:
                        raise ConfigError(f"firm {spec.id}, device {device.name}: {err}") from None
                sim = SimDevice(
                    name=device.name,
                    firm=spec.id,
                    gateway=spec.gateway_of(device),
                    profile=profiles[ref],
                    model=firm.model_for(device),
                    seed=seed,
                    start=device.start,
                    rollover=device.rollover,
                )
                key = f"{spec.id}/{device.name}"
                self.devices[key] = sim
                unit = self.gateways[sim.gateway]
                unit.devices[len(unit.devices) + 1] = sim
                if ref not in plans:
                    plans[ref] = tuple(plan_reads(profiles[ref]))
                self._plan_by_device[key] = plans[ref]
        self.faults: dict[int, FaultRecord] = {}
        self._ids = itertools.count(1)
        self._timeline: list[tuple[float, int, int]] = []  # (when, order, fault id)
        self._cell = math.nan
        self.observers: list[Callable[[float], None]] = []
        """Called with ``t`` whenever the park reaches an instant that is a whole cell."""
        for spec in scenario.firms:
            for device in spec.devices:
                for fault in device.faults:
                    self.inject(f"{spec.id}/{device.name}", fault)
        self._evaluate(start)
        self._run_timeline(start)
        for sim in self.devices.values():
            sim.integrate(0.0, start)
            sim.show(start)

    def device(self, key: str) -> SimDevice:
        try:
            return self.devices[key]
        except KeyError:
            raise KeyError(f"no device {key!r}; devices are named <firm>/<device>") from None

    # Time.

    def advance(self, until: float) -> None:
        """Move the park to ``until``, integrating every flow exactly on the way."""
        if until < self.now:
            raise ValueError("simulated time does not run backwards")
        step, t = self.step_s, self.now
        firms, devices = list(self.firms.values()), list(self.devices.values())
        while t < until:
            cell = math.floor(t / step + 1e-9) * step
            if cell != self._cell:
                self._run_timeline(t)
                self._evaluate(cell)
            end = min(cell + step, until)
            seconds = end - t
            for firm in firms:
                firm.integrate(seconds)
            for device in devices:
                device.integrate(seconds, end)
            t = end
            if self.observers and abs(end - (cell + step)) < 1e-6:
                for observer in self.observers:
                    observer(end)
        self.now = until
        self._run_timeline(until)
        cell = math.floor(until / step + 1e-9) * step
        if cell != self._cell:  # show the flows of the cell that starts here
            self._evaluate(cell)
        for device in devices:
            device.mark(until)

    def _evaluate(self, cell: float) -> None:
        self._cell = cell
        for firm in self.firms.values():
            firm.evaluate(cell)

    # Faults.

    def inject(self, device: str, fault: Fault) -> FaultRecord:
        """Schedule ``fault`` on ``device`` (``<firm>/<name>``) at ``fault.at`` or now."""
        self.device(device).check(fault)
        start = fault.at.timestamp() if fault.at is not None else self.now
        end = None
        if fault.duration_s is not None and fault.type not in ONE_SHOT:
            end = start + fault.duration_s
        record = FaultRecord(next(self._ids), device, fault, max(start, self.now), end)
        self.faults[record.id] = record
        over = fault.type in ONE_SHOT or (end is not None and end <= self.now)
        if start < self.now and over:
            record.state = "missed"  # scheduled before the run began, and over by now
            return record
        heapq.heappush(self._timeline, (start, 0, record.id))
        if end is not None:
            heapq.heappush(self._timeline, (end, 1, record.id))
        if start <= self.now:
            self._run_timeline(self.now)
        return record

    def clear(self, fault_id: int) -> FaultRecord:
        """End a fault now (a pending one never starts)."""
        record = self.faults.get(fault_id)
        if record is None:
            raise KeyError(f"no fault {fault_id}")
        was_active = record.state == "active"
        if record.state in ("active", "pending"):
            record.state = "cleared"
        if was_active:
            self._settle(record, self.now)
        return record

    def _settle(self, ended: FaultRecord, t: float) -> None:
        still = [
            (other.id, other.fault)
            for other in self.faults.values()
            if other.device == ended.device and other.state == "active"
        ]
        self.devices[ended.device].clear(ended.id, still, t)

    def _run_timeline(self, t: float) -> None:
        timeline = self._timeline
        while timeline and timeline[0][0] <= t:
            _, ending, fault_id = heapq.heappop(timeline)
            record = self.faults[fault_id]
            device = self.devices[record.device]
            if not ending and record.state == "pending":
                device.apply(record.fault, t, fault_id)
                record.state = "done" if record.fault.type in ONE_SHOT else "active"
                log.info("fault %d on %s: %s", fault_id, record.device, record.fault.type)
            elif ending and record.state == "active":
                record.state = "done"
                self._settle(record, t)
                log.info("fault %d on %s over", fault_id, record.device)

    # Reading.

    def poll(self, key: str) -> Iterator[Reading]:
        """Read every point of a device as the gateway would; nothing if it does not answer."""
        device = self.devices[key]
        answers = []
        try:
            for request in self._plan_by_device[key]:
                words = device.serve(request.function_code, request.address, request.count, None)
                answers.append((request, words))
        except (Silence, ModbusError):
            return
        for request, words in answers:
            if words is None:
                continue
            for slot, (value, quality) in zip(request.slots, request.values(words), strict=True):
                yield slot.point.name, value, quality
