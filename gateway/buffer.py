"""Readings waiting to be published: bounded, oldest dropped first, and every drop counted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable

from wire.payload import ReadingTuple

log = logging.getLogger(__name__)


class ReadingBuffer:
    def __init__(self, max_readings: int) -> None:
        self._items: deque[ReadingTuple] = deque()
        self._max = max_readings
        self._oldest_at = 0.0
        self._changed = asyncio.Event()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, readings: Iterable[ReadingTuple]) -> None:
        if not self._items:
            self._oldest_at = time.monotonic()
        self._items.extend(readings)
        overflow = len(self._items) - self._max
        if overflow > 0:
            for _ in range(overflow):
                self._items.popleft()
            if self.dropped == 0:
                log.error("buffer full (%d readings): dropping the oldest", self._max)
            self.dropped += overflow
        self._changed.set()

    def take(self, count: int) -> list[ReadingTuple]:
        taken = [self._items.popleft() for _ in range(min(count, len(self._items)))]
        self._oldest_at = time.monotonic()
        return taken

    async def ready(self, count: int, max_age_s: float) -> None:
        """Return once ``count`` readings wait, or the oldest has waited ``max_age_s``."""
        while True:
            if len(self._items) >= count:
                return
            if self._items:
                left = self._oldest_at + max_age_s - time.monotonic()
                if left <= 0:
                    return
            else:
                left = None
            self._changed.clear()
            try:
                async with asyncio.timeout(left):
                    await self._changed.wait()
            except TimeoutError:
                return
