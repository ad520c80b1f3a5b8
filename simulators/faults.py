"""Faults a simulated device can be told to show, from a scenario file or at run time.

Each fault is a small model with a ``type``; in TOML::

    faults = [
      { type = "wrap", modulus = "register", before = 5.0 },     # uint32 counter wraps soon
      { type = "silent", at = 2026-11-22T10:00:00+08:00, duration_s = 600 },
      { type = "zero", reads = 1 },
    ]

``at`` is a simulated instant (default: when the run starts, or now when injected at run time);
``duration_s`` is simulated seconds (default: until cleared); faults start and end on the park's
step boundaries (1 s in real time). ``wrap``, ``reset`` and ``replace``
happen once. ``zero`` and ``nan`` last for a number of reads of each affected point.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from profiles.codec import WordOrder

PointName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class _Fault(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: AwareDatetime | None = None
    """When the fault starts, in simulated time; None: at the start of the run (or now)."""
    duration_s: Annotated[float, Field(gt=0)] | None = None
    """How long it lasts in simulated seconds; None: until cleared."""


class Wrap(_Fault):
    """Put a counter just below the value where it returns to zero, so it wraps soon."""

    type: Literal["wrap"] = "wrap"
    point: PointName | None = None
    """The counter (default: every integer counter of the device)."""
    modulus: Literal["register", "decimal"] | None = None
    """register: 2^bits (2^32 for a uint32); decimal: the largest power of ten that fits
    (10^9 raw for a uint32, 99,999,999.9 kWh at a scale of 0.1). Default: the device's own."""
    before: Annotated[float, Field(gt=0)] = 5.0
    """How far below the wrap the counter is put, in engineering units (kWh, m³)."""


class Reset(_Fault):
    """Every counter of the device restarts from zero (same meter, same serial)."""

    type: Literal["reset"] = "reset"


class Replace(_Fault):
    """A new meter is fitted: a new serial number and counters starting from ``start``."""

    type: Literal["replace"] = "replace"
    start: Annotated[float, Field(ge=0)] = 0.0
    serial: Annotated[int, Field(ge=1, le=0xFFFFFFFF)] | None = None


class Zero(_Fault):
    """The next ``reads`` reads of each affected point answer zero."""

    type: Literal["zero"] = "zero"
    points: list[PointName] = []
    """Affected points (default: every point of the device)."""
    reads: Annotated[int, Field(ge=1)] = 1


class NaN(_Fault):
    """The next ``reads`` reads of each affected float point answer NaN."""

    type: Literal["nan"] = "nan"
    points: list[PointName] = []
    """Affected points (default: every float point of the device)."""
    reads: Annotated[int, Field(ge=1)] = 1


class Slow(_Fault):
    """Every reply comes ``delay_s`` late (wall-clock seconds)."""

    type: Literal["slow"] = "slow"
    delay_s: Annotated[float, Field(gt=0, le=60)] = 2.0


class Silent(_Fault):
    """No reply at all, like a dead device or a broken RS-485 line."""

    type: Literal["silent"] = "silent"


class ExceptionReply(_Fault):
    """Every request is answered with a Modbus exception ``code``."""

    type: Literal["exception"] = "exception"
    code: Annotated[int, Field(ge=1, le=0xFF)] = 4
    """1 illegal function, 2 illegal data address, 3 illegal data value, 4 server device
    failure, 6 server busy, 11 (0x0B) gateway target failed to respond."""


class WordOrderFault(_Fault):
    """The device serves multi-register values in ``order`` instead of its profile's order."""

    type: Literal["word_order"] = "word_order"
    order: WordOrder = WordOrder.CDAB


class ClockDrift(_Fault):
    """The device's clock steps by ``offset_s`` and then gains ``ppm`` millionths per second."""

    type: Literal["clock_drift"] = "clock_drift"
    ppm: float = 0.0
    offset_s: float = 0.0


Fault = Annotated[
    Wrap
    | Reset
    | Replace
    | Zero
    | NaN
    | Slow
    | Silent
    | ExceptionReply
    | WordOrderFault
    | ClockDrift,
    Field(discriminator="type"),
]
FAULT_TYPES = (
    "wrap",
    "reset",
    "replace",
    "zero",
    "nan",
    "slow",
    "silent",
    "exception",
    "word_order",
    "clock_drift",
)
ONE_SHOT: frozenset[str] = frozenset({"wrap", "reset", "replace"})
fault_adapter: TypeAdapter[Fault] = TypeAdapter(Fault)


def parse_fault(data: object) -> Fault:
    """A fault from a mapping such as ``{"type": "zero", "reads": 2}``."""
    return fault_adapter.validate_python(data)
