"""Deterministic noise with random access: the same seed, key and index give the same number.

A simulated park must be the same park whether it runs in real time, accelerated or as a backfill,
and whatever step its physics takes. Drawing noise from a stateful generator would tie every value
to the order in which values were asked for; instead each value is a hash of (seed, key, index),
where the index is a time (whole seconds, or an hour or a day number). SplitMix64 finalises the
hash: cheap in pure Python and well mixed.
"""

from __future__ import annotations

import hashlib
import math

_MASK = (1 << 64) - 1
_SCALE = 1.0 / (1 << 64)
_HALF = 1.0 / (1 << 32)
_GOLDEN = 0x9E3779B97F4A7C15


def _mix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def stream(seed: int, *names: str) -> int:
    """A 64-bit key for one source of noise (a device, a line, a weather variable)."""
    text = "\x1f".join((str(seed), *names)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def uniform(key: int, index: int) -> float:
    """A number in [0, 1) for ``index`` of the stream ``key``."""
    return _mix((key + index * _GOLDEN) & _MASK) * _SCALE


def gauss(key: int, index: int) -> float:
    """A standard normal number for ``index`` of the stream ``key`` (Box-Muller on the two
    32-bit halves of one hash)."""
    bits = _mix((key + index * _GOLDEN) & _MASK)
    u1 = ((bits >> 32) + 1) * _HALF
    u2 = (bits & 0xFFFFFFFF) * _HALF
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
