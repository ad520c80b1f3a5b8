"""Backfill: a park's history, published through the wire contract as fast as it can be made.

The park advances ``step_s`` at a time (15 minutes by default) from ``start`` to ``end``; after each
step every device is read the way the gateway reads it (same read plans and decoding, faults
included) and the readings are published in telemetry batches, one stream per gateway.

Counters are followed as the gateway follows them (:class:`wire.counters.CounterTracker`, with
the register's modulus and the profile's plausible rate): each counter reading carries the
consumption counted with it, and batches carry the counter events, so history has consumption
in the rollups just as live data has.

History goes out under a gateway id of its own, ``<gateway>-history`` at the same site, so that
its sequence numbers can never collide with those of the live gateway; devices are identified by
site and name, so history and live readings land on the same devices and points.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from simulators.park import Park
from simulators.progress import Progress
from simulators.simdevice import Counter
from wire.counters import CounterSpec, CounterTracker, event_json
from wire.payload import MAX_READINGS, CountedTuple, Quality, encode_telemetry, format_ts
from wire.topics import DEFAULT_ROOT, Stream, Topic

HISTORY_SUFFIX = "-history"

Send = Callable[[str, bytes], Awaitable[object]]
"""Publish ``payload`` on ``topic`` at QoS 1 (may return before the acknowledgement)."""


@dataclass(frozen=True, slots=True)
class BackfillReport:
    steps: int
    readings: int
    messages: int
    elapsed_s: float

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.elapsed_s if self.elapsed_s > 0 else 0.0


def history_gateway(gateway: str) -> str:
    return f"{gateway}{HISTORY_SUFFIX}"


async def backfill(
    park: Park,
    send: Send,
    *,
    end: float,
    topic_root: str = DEFAULT_ROOT,
    batch_readings: int = 5_000,
    progress: Progress | None = None,
) -> BackfillReport:
    """Publish the park's readings at every step from ``park.now`` to ``end`` (both included)."""
    if not 1 <= batch_readings <= MAX_READINGS:
        raise ValueError(f"batch_readings must be 1..{MAX_READINGS}")
    started, first = time.monotonic(), park.now
    streams = []
    for gateway_id, unit in park.gateways.items():
        history = history_gateway(gateway_id)
        topic = str(Topic(unit.firm.id, history, Stream.TELEMETRY, topic_root))
        devices = [(f"{unit.firm.id}/{d.name}", d.name) for d in unit.devices.values()]
        streams.append((history, topic, devices))
    seq = dict.fromkeys((history for history, _, _ in streams), 0)
    pending: dict[str, list[CountedTuple]] = {history: [] for history, _, _ in streams}
    events: dict[str, list[str]] = {history: [] for history, _, _ in streams}
    counting = _Counting(park)
    steps = readings = messages = 0

    async def flush(history: str, topic: str, limit: int) -> None:
        nonlocal messages, readings
        batch = pending[history]
        while len(batch) >= limit and batch:
            chunk, batch = batch[:batch_readings], batch[batch_readings:]
            seq[history] += 1
            sent_at = datetime.now(UTC)
            # Events go with the batch that holds their readings: the last one flushed so far.
            happened, events[history] = events[history], []
            await send(topic, encode_telemetry(history, seq[history], sent_at, chunk, happened))
            messages += 1
            readings += len(chunk)
        pending[history] = batch

    t = park.now
    while t <= end + 1e-9:
        if t > park.now:
            park.advance(t)
        ts = format_ts(datetime.fromtimestamp(t, UTC))
        for history, topic, devices in streams:
            batch = pending[history]
            for key, name in devices:
                counting.poll(key, name, t, ts, out=batch, events=events[history])
            await flush(history, topic, batch_readings)
        steps += 1
        if progress is not None:
            progress.update(t - first, readings)
        t += park.step_s
        await asyncio.sleep(0)  # let acknowledgements in
    for history, topic, _ in streams:
        await flush(history, topic, 1)
    if progress is not None:
        progress.update(end - first, readings)
    return BackfillReport(steps, readings, messages, time.monotonic() - started)


class _Counting:
    """The counter trackers of every device of a park, fed as a gateway feeds them."""

    def __init__(self, park: Park) -> None:
        self.park = park
        self.trackers = {
            (key, name): CounterTracker(_spec(counter))
            for key, device in park.devices.items()
            for name, counter in device.counters.items()
        }

    def poll(
        self, key: str, name: str, t: float, ts: str, *, out: list[CountedTuple], events: list[str]
    ) -> None:
        """Read device ``key`` (``name`` on the wire) at ``t``; append its readings to ``out``
        and the counter events they raise to ``events``."""
        polled = list(self.park.poll(key))
        # 0 is no serial number: it is what a device answers in an all-zero glitch.
        serial = next((int(v) for p, v, _ in polled if p == "serial_number" and v), None)
        for point, value, quality in polled:
            tracker = self.trackers.get((key, point))
            if tracker is None:
                out.append((name, point, ts, value, quality, None))
                continue
            step = tracker.update(t, value if quality is not Quality.BAD else None, serial)
            out.append((name, point, ts, value, quality, step.delta))
            events.extend(event_json(name, point, e) for e in step.events)


def _spec(counter: Counter) -> CounterSpec:
    """What the gateway knows of a counter: its modulus, plausible rate and resolution."""
    point = counter.binding.point
    scale = abs(point.scale)
    return CounterSpec(
        modulus=None if counter.modulus is None else counter.modulus * scale,
        max_per_hour=point.max_per_hour,
        tolerance=scale,
    )
