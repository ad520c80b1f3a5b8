"""Zayton's own command in a child process, as an operator runs it: for tests that kill it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path


async def start_zayton(*args: str) -> asyncio.subprocess.Process:
    """``zayton ARGS…`` from this checkout, its output discarded."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "zayton.cli",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
