"""Polling one device: on wall-clock boundaries, one poll in flight, a timeout on every read,
backing off while the device is dead.

A poll turns the answers of a device's read plan straight into the JSON of wire-contract readings
(docs/wire-contract.md): the constant part of every reading (device and point) is written once at
start-up, so a reading costs one float formatting and one string join. Counter points go through
their :class:`CounterTracker` (docs/counters.md) and carry the consumption they count.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.config import Device
from gateway.errors import DeviceError
from gateway.modbus import READ_FUNCTIONS, Link
from wire.counters import CounterTracker, event_json
from wire.payload import DeviceStatus, Quality, format_ts
from wire.stats import Histogram

log = logging.getLogger(__name__)

OFFLINE_AFTER = 3
"""Polls in a row that read nothing before a device counts as offline and backs off."""

_TAIL = {quality: f',"quality":"{quality.value}"}}' for quality in Quality}


@dataclass(slots=True)
class Poll:
    """What one poll of one device produced, ready for the outbox."""

    device: str
    body: str
    """Comma-separated JSON objects of wire-contract readings."""
    readings: int
    events: list[str] = field(default_factory=list)
    """JSON objects of wire-contract counter events."""
    counters: dict[str, dict[str, object]] = field(default_factory=dict)
    """The state of every counter tracker this poll advanced, to be stored with the poll."""


class Health:
    """A device's health and poll statistics. Failures are logged once at ERROR, repeats at
    DEBUG, the recovery at INFO; state changes are what the status topic reports."""

    def __init__(self, device: Device) -> None:
        self.name = device.name
        self.profile = device.profile.id
        self.interval_s = device.config.interval_s
        self.polls: collections.Counter[str] = collections.Counter()
        """Polls by result: ok, partial (some requests failed), failed (nothing read)."""
        self.errors: collections.Counter[str] = collections.Counter()
        """Failed requests by kind: timeout, unreachable, exception."""
        self.readings = 0
        self.duration = Histogram()
        self.failures = 0
        """Polls in a row that lost at least one request."""
        self.dead = 0
        """Polls in a row that read nothing at all."""
        self.last_success: float | None = None
        """Unix seconds of the start of the last poll that read anything."""
        self.last_error: str | None = None
        self.changed = True

    @property
    def state(self) -> str:
        if self.dead >= OFFLINE_AFTER:
            return "offline"
        return "failing" if self.failures else "online"

    def record(
        self, read: int, errors: list[DeviceError], at: float, duration_s: float, readings: int
    ) -> None:
        before = self.state
        self.polls["failed" if read == 0 and errors else "partial" if errors else "ok"] += 1
        for err in errors:
            self.errors[err.kind] += 1
        self.readings += readings
        self.duration.observe(duration_s)
        if errors:
            self.failures += 1
            self.last_error = str(errors[0])
            if self.failures == 1:
                log.error("device %s failing: %s", self.name, errors[0])
            else:
                log.debug("device %s still failing (%d): %s", self.name, self.failures, errors[0])
        elif self.failures:
            log.info("device %s recovered after %d failed polls", self.name, self.failures)
            self.failures = 0
            self.last_error = None
        self.dead = self.dead + 1 if read == 0 and errors else 0
        if read:
            self.last_success = at
        self.changed |= self.state != before

    def status(self) -> DeviceStatus:
        return DeviceStatus(
            name=self.name,
            state=self.state,  # type: ignore[arg-type]  # one of the three literals
            profile=self.profile,
            interval_s=self.interval_s,
            last_success=(
                None
                if self.last_success is None
                else datetime.fromtimestamp(self.last_success, UTC)
            ),
            failures=self.failures,
            error=self.last_error,
        )


_second: list[object] = [None, ""]


def _utc(at: float) -> str:
    """``at`` as the contract writes it (``2026-11-22T03:00:05.123456Z``), the date and time
    formatted once per second."""
    whole = int(at)
    if _second[0] != whole:
        _second[0] = whole
        _second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    micros = round((at - whole) * 1_000_000)
    if micros >= 1_000_000:
        return format_ts(datetime.fromtimestamp(at, UTC))
    return f"{_second[1]}.{micros:06d}Z"


class DeviceReader:
    """A device's read plan bound to its link, its counters and the JSON of its readings."""

    def __init__(
        self,
        device: Device,
        link: Link,
        counters: Mapping[str, dict[str, object]] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` stamps the readings (Unix seconds); a simulation may give its own time."""
        for request in device.requests:
            if request.function_code not in READ_FUNCTIONS:
                raise ValueError(f"{device.name}: function {request.function_code} is not a read")
        self.device = device
        self.link = link
        self.clock = clock
        self.health = Health(device)
        config = device.config
        self._unit, self._timeout = config.unit_id, config.timeout_s
        self._pause = device.quirks.request_pause_s or 0.0
        self._close = bool(device.quirks.close_after_poll)
        name = json.dumps(device.name)
        self._heads = [
            [f'{{"device":{name},"point":{json.dumps(s.point.name)},"ts":' for s in r.slots]
            for r in device.requests
        ]
        saved = counters or {}
        self.trackers = {
            point: CounterTracker(spec, saved.get(point)) for point, spec in device.counters.items()
        }
        self._serial_slot = next(
            (
                (i, j)
                for i, request in enumerate(device.requests)
                for j, slot in enumerate(request.slots)
                if slot.point.name == "serial_number"
            ),
            None,
        )
        self._counter_slots = {
            (i, j): slot.point.name
            for i, request in enumerate(device.requests)
            for j, slot in enumerate(request.slots)
            if slot.point.name in self.trackers
        }

    async def poll(self) -> Poll:
        """Read every request of the plan; a failed request costs only its own points."""
        device = self.device
        started = self.clock()
        began = time.perf_counter()
        answers: list[tuple[float, list[tuple[float | None, Quality]]] | None] = []
        errors: list[DeviceError] = []
        for index, request in enumerate(device.requests):
            if index and self._pause:
                await asyncio.sleep(self._pause)
            at = self.clock()
            try:
                words = await self.link.read(request, self._unit, self._timeout)
                answers.append((at, request.values(words)))
            except DeviceError as err:
                errors.append(err)
                answers.append(None)
        if self._close:
            await self.link.disconnect()
        poll = self._encode(answers)
        self.health.record(
            len(answers) - len(errors), errors, started, time.perf_counter() - began, poll.readings
        )
        return poll

    def _encode(
        self, answers: list[tuple[float, list[tuple[float | None, Quality]]] | None]
    ) -> Poll:
        name = self.device.name
        serial: int | None = None
        if self._serial_slot is not None:
            answer = answers[self._serial_slot[0]]
            if answer is not None:
                found = answer[1][self._serial_slot[1]][0]
                # 0 is no serial number: it is what a device answers in an all-zero glitch.
                serial = int(found) if found else None
        parts: list[str] = []
        poll = Poll(device=name, body="", readings=0)
        for i, answer in enumerate(answers):
            if answer is None:
                continue
            at, values = answer
            stamp = f'"{_utc(at)}","value":'
            heads = self._heads[i]
            for j, (value, quality) in enumerate(values):
                number = "null" if value is None else repr(value)
                point = self._counter_slots.get((i, j))
                if point is None:
                    parts.append(f"{heads[j]}{stamp}{number}{_TAIL[quality]}")
                    continue
                tracker = self.trackers[point]
                step = tracker.update(at, value, serial)
                poll.counters[point] = tracker.to_state()
                for event in step.events:
                    poll.events.append(event_json(name, point, event))
                delta = "" if step.delta is None else f',"delta":{step.delta!r}'
                parts.append(f"{heads[j]}{stamp}{number}{delta}{_TAIL[quality]}")
        poll.body = ",".join(parts)
        poll.readings = len(parts)
        return poll


def next_tick(interval_s: float, now: float, skip: int = 0) -> float:
    """The first multiple of ``interval_s`` since the epoch after ``now``, ``skip`` more later."""
    return (math.floor(now / interval_s) + 1 + skip) * interval_s


def backoff_ticks(interval_s: float, dead: int, backoff_max_s: float) -> int:
    """Ticks to skip after ``dead`` polls in a row that read nothing: none until the device is
    offline, then doubling, at most ``backoff_max_s`` apart."""
    if dead < OFFLINE_AFTER:
        return 0
    doubled = interval_s * float(1 << min(dead - OFFLINE_AFTER + 1, 30))
    wait = min(doubled, max(backoff_max_s, interval_s))
    return max(0, math.ceil(wait / interval_s) - 1)


async def poll_forever(
    reader: DeviceReader,
    deliver: Callable[[Poll], None],
    *,
    may_poll: Callable[[], bool] | None = None,
    lag: Histogram | None = None,
) -> None:
    """Poll at every multiple of the interval since the epoch; a poll that overruns skips ticks.

    ``may_poll`` is asked before each poll (a full outbox in ``block`` mode says no: the poll is
    skipped and counted there). ``lag`` observes how late each poll starts after its tick.
    """
    config = reader.device.config
    interval = config.interval_s
    skip = 0
    while True:
        tick = next_tick(interval, time.time(), skip)
        await asyncio.sleep(max(0.0, tick - time.time()))
        if lag is not None:
            lag.observe(max(0.0, time.time() - tick))
        if may_poll is not None and not may_poll():
            skip = 0
            continue
        poll = await reader.poll()
        if poll.readings:
            deliver(poll)
        skip = backoff_ticks(interval, reader.health.dead, config.backoff_max_s)
