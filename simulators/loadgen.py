"""MQTT load generator: valid wire-contract telemetry at a target rate, for ingest benchmarks.

A fleet of ``gateways`` gateways of one site, each with ``devices_per_gateway`` devices of
``points_per_device`` points, publishes telemetry batches at QoS 1. Every gateway polls its devices
in turn; the points of one poll share its timestamp (the poll instant), and every later poll of a
device gets a later one, so (device, point, ts) never repeats within a run and an ingester never
sees a duplicate. Device names are unique across the site (``dev-0001`` …), as the platform keys
devices by site and name.

Pacing follows a monotonic-clock schedule, not a sleep per message: a message is due
``readings_sent / rate`` seconds after the start, and the generator sleeps only when it is ahead,
so a slow moment is caught up instead of lowering the rate for good. Up to ``max_in_flight``
messages are pipelined unacknowledged; the run ends with every message acknowledged (or the drain
timeout). A target beyond reach is reported, not hidden: the run still stops after ``duration_s``
and the report gives the rate achieved. The encoder (``wire.payload.encode_telemetry``) is the
hot spot; one process reaches roughly 150-250 thousand readings/s on a two-core machine.

Run it with ``zayton simulate loadgen --rate 200000 --duration 5``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat

from wire.broker import BrokerSettings
from wire.catalogue import METRICS, Kind
from wire.mqtt import MAX_IN_FLIGHT, Publisher
from wire.payload import (
    MAX_PAYLOAD_BYTES,
    MAX_READINGS,
    MAX_SEQ,
    Quality,
    ReadingTuple,
    encode_telemetry,
    format_ts,
)
from wire.topics import DEFAULT_ROOT, Stream, Topic, check_identifier, check_root

log = logging.getLogger(__name__)

PREFERRED_POINTS = (
    "active_power_kw",
    "energy_import_kwh",
    "voltage_l1_v",
    "voltage_l2_v",
    "voltage_l3_v",
    "current_l1_a",
    "current_l2_a",
    "current_l3_a",
    "power_factor",
    "frequency_hz",
    "reactive_power_kvar",
    "energy_export_kwh",
)
"""Catalogue points in the order a device gets them; then the rest of the catalogue, then p01…"""

_BASE_VALUES = {
    "voltage": 230.0,
    "current": 40.0,
    "power_factor": 0.5,
    "frequency": 49.75,
    "_kw": 120.0,
    "_kvar": 30.0,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What to publish: ``rate`` readings per second for ``duration_s`` seconds."""

    rate: float
    """Target readings per second, over all gateways."""
    duration_s: float = 10.0
    """The schedule covers this long, and the run stops sending then even if it lags behind."""
    readings_per_message: int = 500
    gateways: int = 10
    devices_per_gateway: int = 20
    points_per_device: int = 10
    topic_root: str = DEFAULT_ROOT
    site: str = "loadgen"
    client_id: str = "zayton-loadgen"
    max_in_flight: int = 200
    seq_start: int = 1
    max_readings: int | None = None
    """Stop after this many readings (the last message may be shorter), if the time lasts."""
    connect_timeout_s: float = 10.0
    drain_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(
                f"rate must be a finite number of readings per second > 0, not {self.rate}"
            )
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError(
                f"duration_s must be a finite number of seconds > 0, not {self.duration_s}"
            )
        if not 1 <= self.readings_per_message <= MAX_READINGS:
            raise ValueError(
                f"readings_per_message must be 1..{MAX_READINGS} (the contract's limit per "
                f"batch), not {self.readings_per_message}"
            )
        for name in ("gateways", "devices_per_gateway", "points_per_device"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not 1 <= self.max_in_flight <= MAX_IN_FLIGHT:
            raise ValueError(f"max_in_flight must be 1..{MAX_IN_FLIGHT}, not {self.max_in_flight}")
        if not 1 <= self.seq_start <= MAX_SEQ:
            raise ValueError(f"seq_start must be 1..{MAX_SEQ}, not {self.seq_start}")
        if self.max_readings is not None and self.max_readings < 1:
            raise ValueError(f"max_readings must be at least 1 when given, not {self.max_readings}")
        if not self.client_id:
            raise ValueError("client_id must not be empty")
        for name in ("connect_timeout_s", "drain_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, not {getattr(self, name)}")
        check_root(self.topic_root)
        check_identifier("site", self.site)


@dataclass(frozen=True, slots=True)
class LoadReport:
    messages: int
    """Messages published."""
    readings: int
    elapsed_s: float
    """From the first message to the last acknowledgement."""
    readings_per_s: float
    """Achieved rate: readings / elapsed_s."""
    acknowledged: int
    """Messages the broker acknowledged; equal to ``messages`` unless the drain timed out."""


def point_names(count: int) -> list[str]:
    """``count`` point names: catalogue names first, then ``p01``, ``p02``…"""
    catalogue = [*PREFERRED_POINTS, *(m for m in METRICS if m not in PREFERRED_POINTS)]
    extra = [f"p{i:02d}" for i in range(1, count - len(catalogue) + 1)]
    return (catalogue + extra)[:count]


GAUGE_PERIOD = 16
"""Gauges take this many values in turn, poll after poll."""


@dataclass(frozen=True, slots=True)
class _Points:
    """The points every device reports, with their values precomputed as far as possible.

    A gauge is ``base + step * (k % GAUGE_PERIOD)`` and a counter ``base + step * k``, where ``k``
    grows by one with every poll of a device, so counters never go down. Steps are binary
    fractions, so values print short.
    """

    names: list[str]
    gauge_rows: list[list[float]]
    """The values of poll ``k`` are ``gauge_rows[k % GAUGE_PERIOD]``, counters excepted."""
    counters: list[tuple[int, float, float]]
    """(index, base, step) of each counter point."""

    @classmethod
    def of(cls, count: int) -> _Points:
        names = point_names(count)
        models: list[tuple[float, float]] = []
        counters: list[tuple[int, float, float]] = []
        for index, name in enumerate(names):
            metric = METRICS.get(name)
            if metric is not None and metric.kind is Kind.COUNTER:
                counters.append((index, 1000.0, 0.25))
            base = next((v for key, v in _BASE_VALUES.items() if key in name), 10.0)
            models.append((base, 0.03125 if name == "power_factor" else 0.25))
        rows = [[base + step * r for base, step in models] for r in range(GAUGE_PERIOD)]
        return cls(names, rows, counters)

    def values(self, k: int) -> list[float]:
        row = self.gauge_rows[k % GAUGE_PERIOD]
        if not self.counters:
            return row
        row = row.copy()
        for index, base, step in self.counters:
            row[index] = base + step * k
        return row


class _Stamps:
    """Formats instants as :func:`format_ts` does, calling it once per second, not per poll."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def format(self, us: int) -> str:
        second, fraction = divmod(us, 1_000_000)
        if second != self._second:
            self._second = second
            self._prefix = format_ts(_EPOCH + timedelta(seconds=second)).removesuffix("Z")
        return f"{self._prefix}.{fraction:06d}Z" if fraction else f"{self._prefix}Z"


@dataclass(slots=True)
class _Gateway:
    """One simulated gateway: its devices, its sequence and where it is in its polling cycle."""

    id: str
    topic: str
    devices: list[str]
    points: _Points
    seq: int
    poll: int = 0
    """Polls started so far; the current poll is of ``devices[poll % len(devices)]``."""
    offset: int = 0
    """Readings of the current poll already taken."""
    last_ts_us: int = -1
    device: str = ""
    ts: str = ""
    values: list[float] = field(default_factory=list)
    stamps: _Stamps = field(default_factory=_Stamps)

    def _start_poll(self, ts_us: int) -> None:
        ts_us = max(ts_us, self.last_ts_us + 1)  # every poll of this gateway at a later instant
        self.last_ts_us = ts_us
        self.ts = self.stamps.format(ts_us)
        device_count = len(self.devices)
        index = self.poll % device_count
        self.device = self.devices[index]
        self.values = self.points.values(self.poll // device_count + index)

    def take(self, count: int, ts_us: int) -> Iterable[ReadingTuple]:
        """The next ``count`` readings; a poll started now is stamped ``ts_us`` (or just after).

        Built column by column and zipped: the encoder, not this, should be the hot spot.
        """
        devices: list[str] = []
        points: list[str] = []
        stamps: list[str] = []
        values: list[float] = []
        names = self.points.names
        per_poll = len(names)
        remaining = count
        while remaining:
            if self.offset == 0:
                self._start_poll(ts_us)
            start = self.offset
            n = min(remaining, per_poll - start)
            devices += [self.device] * n
            stamps += [self.ts] * n
            if n == per_poll:
                points += names
                values += self.values
            else:
                points += names[start : start + n]
                values += self.values[start : start + n]
            self.offset += n
            remaining -= n
            if self.offset == per_poll:
                self.offset = 0
                self.poll += 1
        return zip(devices, points, stamps, values, repeat(Quality.GOOD, count), strict=True)


def _fleet(plan: LoadPlan) -> list[_Gateway]:
    points = _Points.of(plan.points_per_device)
    gw_width = max(3, len(str(plan.gateways)))
    dev_width = max(4, len(str(plan.gateways * plan.devices_per_gateway)))
    fleet = []
    for g in range(plan.gateways):
        gateway_id = f"gw-{g + 1:0{gw_width}d}"
        first = g * plan.devices_per_gateway + 1
        fleet.append(
            _Gateway(
                id=gateway_id,
                topic=str(Topic(plan.site, gateway_id, Stream.TELEMETRY, plan.topic_root)),
                devices=[
                    f"dev-{n:0{dev_width}d}" for n in range(first, first + plan.devices_per_gateway)
                ],
                points=points,
                seq=plan.seq_start,
            )
        )
    return fleet


async def _pause(seconds: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


async def generate(
    settings: BrokerSettings, plan: LoadPlan, stop: asyncio.Event | None = None
) -> LoadReport:
    """Publish ``plan`` to the broker until its duration (or ``max_readings``) is reached or
    ``stop`` is set, then wait for every acknowledgement and report."""
    fleet = _fleet(plan)
    messages = readings = acknowledged = 0

    def on_ack(future: asyncio.Future[None]) -> None:
        nonlocal acknowledged
        if not future.cancelled():
            acknowledged += 1

    publisher = Publisher(settings, client_id=plan.client_id, max_in_flight=plan.max_in_flight)
    async with publisher:
        try:
            async with asyncio.timeout(plan.connect_timeout_s):
                await publisher.connected.wait()
        except TimeoutError:
            raise ConnectionError(
                f"no connection to {settings.url()} within {plan.connect_timeout_s:g} s"
            ) from None
        start = time.monotonic()
        start_us = time.time_ns() // 1000
        while not (stop is not None and stop.is_set()):
            due = readings / plan.rate
            count = plan.readings_per_message
            if plan.max_readings is not None:
                count = min(count, plan.max_readings - readings)
            now = time.monotonic()
            if due >= plan.duration_s or now - start >= plan.duration_s or count <= 0:
                break  # the whole plan is sent, or time is up (a target beyond reach)
            ahead = start + due - now
            if ahead > 0:
                await _pause(ahead, stop)
                if stop is not None and stop.is_set():
                    break
            else:
                await asyncio.sleep(0)  # behind schedule: still let acknowledgements in
            gateway = fleet[messages % len(fleet)]
            batch = gateway.take(count, start_us + int(due * 1e6))
            payload = encode_telemetry(gateway.id, gateway.seq, datetime.now(UTC), batch)
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise ValueError(
                    f"a batch of {count} readings takes {len(payload)} bytes, over the contract's "
                    f"{MAX_PAYLOAD_BYTES}: lower readings_per_message"
                )
            future = await publisher.send(gateway.topic, payload)
            future.add_done_callback(on_ack)
            gateway.seq += 1
            messages += 1
            readings += count
        try:
            async with asyncio.timeout(plan.drain_timeout_s):
                await publisher.drain()
        except TimeoutError:
            log.warning(
                "%d message(s) unacknowledged after %g s", publisher.in_flight, plan.drain_timeout_s
            )
        elapsed = time.monotonic() - start
    return LoadReport(
        messages=messages,
        readings=readings,
        elapsed_s=elapsed,
        readings_per_s=readings / elapsed if elapsed > 0 else 0.0,
        acknowledged=acknowledged,
    )
