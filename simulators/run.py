"""Serve simulated meters over Modbus TCP and keep their physics running."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from profiles.model import load_profile
from simulators.device import ProfiledDevice
from simulators.meter import ThreePhaseMeter
from simulators.modbus_server import ModbusTcpServer

log = logging.getLogger(__name__)

METER_PROFILE = "zayton-3ph-meter"


def utc_now() -> datetime:
    return datetime.now(UTC)


class MeterSimulator:
    """``count`` three-phase meters behind one TCP port as unit ids 1..count.

    Their state advances every ``tick_s`` seconds of ``clock`` (0 = only when :meth:`tick` is
    called, which tests use to hold values still).
    """

    def __init__(
        self,
        *,
        count: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 1,
        tick_s: float = 1.0,
        rated_kw: float = 120.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if count < 1 or count > 247:
            raise ValueError("one Modbus port serves unit ids 1-247")
        profile = load_profile(METER_PROFILE)
        start = clock()
        self.meters = [
            ThreePhaseMeter(
                ProfiledDevice(profile),
                rated_kw=rated_kw * (0.5 + index % 4 / 4),
                seed=seed * 1000 + index,
                start=start,
                energy_kwh=10_000.0 * (index + 1),
            )
            for index in range(count)
        ]
        self.server = ModbusTcpServer(
            {unit: meter.device for unit, meter in enumerate(self.meters, start=1)},
            host=host,
            port=port,
        )
        self._tick_s = tick_s
        self._clock = clock
        self._ticker: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return self.server.port

    def tick(self) -> None:
        now = self._clock()
        for meter in self.meters:
            meter.advance(now)

    async def _run_ticker(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            self.tick()

    async def __aenter__(self) -> Self:
        await self.server.start()
        if self._tick_s > 0:
            self._ticker = asyncio.create_task(self._run_ticker(), name="meter-physics")
        log.info("serving %d meter(s) on Modbus TCP port %d", len(self.meters), self.port)
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
        await self.server.stop()
