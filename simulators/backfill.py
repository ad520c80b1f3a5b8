"""Backfill: a park's history, published through the wire contract as fast as it can be made.

The park advances ``step_s`` at a time (15 minutes by default) from ``start`` to ``end``; after each
step every device is read the way the gateway reads it (same read plans and decoding, faults
included) and the readings are published in telemetry batches, one stream per gateway.

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
from wire.payload import MAX_READINGS, ReadingTuple, encode_telemetry, format_ts
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
    pending: dict[str, list[ReadingTuple]] = {history: [] for history, _, _ in streams}
    steps = readings = messages = 0

    async def flush(history: str, topic: str, limit: int) -> None:
        nonlocal messages, readings
        batch = pending[history]
        while len(batch) >= limit and batch:
            chunk, batch = batch[:batch_readings], batch[batch_readings:]
            seq[history] += 1
            sent_at = datetime.now(UTC)
            await send(topic, encode_telemetry(history, seq[history], sent_at, chunk))
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
                batch.extend((name, point, ts, value, q) for point, value, q in park.poll(key))
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
