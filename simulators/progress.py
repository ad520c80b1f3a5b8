"""A progress bar for long simulator jobs, on stderr; a line per tenth when not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    WIDTH = 30

    def __init__(
        self, total: float, *, label: str, unit: str = "readings", stream: TextIO | None = None
    ) -> None:
        self.total = max(total, 1e-9)
        self.label = label
        self.unit = unit
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._started = time.monotonic()
        self._shown = 0.0
        self._tenth = -1

    def update(self, done: float, count: int) -> None:
        """``done`` of ``total`` finished, ``count`` items (readings) so far."""
        now = time.monotonic()
        share = min(done / self.total, 1.0)
        if self._tty:
            if now - self._shown < 0.25 and share < 1.0:
                return
            self._shown = now
            end = "\n" if share >= 1.0 else ""
            self._stream.write(f"\r{self._line(share, count, now)}{end}")
        else:
            tenth = int(share * 10)
            if tenth == self._tenth:
                return
            self._tenth = tenth
            self._stream.write(f"{self._line(share, count, now)}\n")
        self._stream.flush()

    def _line(self, share: float, count: int, now: float) -> str:
        elapsed = now - self._started
        filled = int(share * self.WIDTH)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        rate = count / elapsed if elapsed > 0 else 0.0
        left = elapsed * (1 - share) / share if share > 0 else 0.0
        return (
            f"{self.label} [{bar}] {share:6.1%} {count:,} {self.unit} "
            f"{rate:,.0f}/s elapsed {_duration(elapsed)} left {_duration(left)}"
        )
