"""Polling one device: on wall-clock boundaries, one poll in flight, a timeout on every read."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.config import Device
from gateway.errors import DeviceError
from gateway.modbus import ModbusLink
from wire.payload import ReadingTuple, format_ts

log = logging.getLogger(__name__)


class DeviceHealth:
    """Failures are logged once at ERROR, repeats at DEBUG, and the recovery at INFO."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.failures = 0
        self.last_success: datetime | None = None

    def failed(self, err: DeviceError) -> None:
        self.failures += 1
        if self.failures == 1:
            log.error("device %s failing: %s", self.name, err)
        else:
            log.debug("device %s still failing (%d): %s", self.name, self.failures, err)

    def succeeded(self, at: datetime) -> None:
        if self.failures:
            log.info("device %s recovered after %d failed reads", self.name, self.failures)
        self.failures = 0
        self.last_success = at


async def poll_once(device: Device, link: ModbusLink, health: DeviceHealth) -> list[ReadingTuple]:
    """Read every request of a device's plan; a failed request costs only its own points."""
    started = datetime.now(UTC)
    ts = format_ts(started)
    readings: list[ReadingTuple] = []
    unit, timeout = device.config.unit_id, device.config.timeout_s
    ok = True
    for request in device.requests:
        try:
            words = await link.read(request, unit, timeout)
        except DeviceError as err:
            health.failed(err)
            ok = False
            continue
        for slot in request.slots:
            value, quality = slot.value(words)
            readings.append((device.name, slot.point.name, ts, value, quality))
    if ok:
        health.succeeded(started)
    return readings


async def poll_forever(
    device: Device,
    link: ModbusLink,
    deliver: Callable[[list[ReadingTuple]], None],
) -> None:
    """Poll at every multiple of the interval since the epoch; a poll that overruns skips ticks."""
    interval = device.config.interval_s
    health = DeviceHealth(device.name)
    while True:
        now = time.time()
        await asyncio.sleep((math.floor(now / interval) + 1) * interval - now)
        readings = await poll_once(device, link, health)
        if readings:
            deliver(readings)
