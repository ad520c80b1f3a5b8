"""Per-gateway batch sequence numbers that keep increasing across restarts.

Writing the counter to disk for every batch would cost an fsync per batch, so the gateway leases
blocks: the file holds the first number not yet leased, and a crash skips at most the rest of
the current block. Receivers see a gap, never a repeat.
"""

from __future__ import annotations

import os
from pathlib import Path

LEASE = 1000


class SequenceLease:
    def __init__(self, path: Path, lease: int = LEASE) -> None:
        self._path = path
        self._lease = lease
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._next = int(path.read_text().strip() or "1")
        except FileNotFoundError:
            self._next = 1
        self._limit = self._next
        self._reserve()

    def _reserve(self) -> None:
        self._limit = self._next + self._lease
        tmp = self._path.with_suffix(".tmp")
        with tmp.open("w") as handle:
            handle.write(f"{self._limit}\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self._path)

    def next(self) -> int:
        if self._next >= self._limit:
            self._reserve()
        value = self._next
        self._next += 1
        return value
