"""Counter semantics at the edge: consumption between readings of a cumulative register.

A :class:`CounterTracker` follows one counter point of one device. Fed every poll in order, it
tells how much was consumed since the previous counted reading (``delta``) and what happened to
the counter (wrap, reset, replacement, glitch, jump). A reading that cannot be explained yet is
held as a *suspect* and decided by the readings after it; nothing is counted twice and nothing
is counted negative. The whole state is a small JSON-serialisable dict (:meth:`to_state`), so the
gateway persists it with each poll and resumes exactly after a crash.

The rules, and why they live at the edge, are in ``docs/counters.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from wire.payload import format_ts

STATE_VERSION: Final = 1
MAX_SUSPECTS: Final = 3
"""Suspect readings in a row, none continuing another, after which the newest is believed."""


class CounterStateError(ValueError):
    """A persisted state that cannot be restored (corrupt, or from another version)."""


class EventKind(StrEnum):
    WRAP = "wrap"
    RESET = "reset"
    REPLACEMENT = "replacement"
    GLITCH = "glitch"
    JUMP = "jump"


@dataclass(frozen=True, slots=True)
class CounterSpec:
    modulus: float | None
    """Engineering units at which the counter rolls over to 0; None: it never wraps."""
    max_per_hour: float | None
    """The largest increase per hour the metered equipment can cause; None: no jump detection."""
    tolerance: float = 0.0
    """Allowance for rounding and noise, in engineering units (at least one register step)."""

    def __post_init__(self) -> None:
        if self.modulus is not None and not (math.isfinite(self.modulus) and self.modulus > 0):
            raise ValueError(f"modulus must be a positive number, not {self.modulus}")
        if self.max_per_hour is not None and not (
            math.isfinite(self.max_per_hour) and self.max_per_hour >= 0
        ):
            raise ValueError(f"max_per_hour must be a non-negative number, not {self.max_per_hour}")
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ValueError(f"tolerance must be a non-negative number, not {self.tolerance}")

    def plausible(self, elapsed_s: float) -> float:
        """The largest increase the counter can show over ``elapsed_s`` seconds."""
        if self.max_per_hour is None:
            return math.inf
        return self.max_per_hour * elapsed_s / 3600 + self.tolerance

    def plausible_from_zero(self, elapsed_s: float) -> float:
        """The largest reading that can be consumption since a reset ``elapsed_s`` ago at most.

        Without ``max_per_hour`` nothing bounds it, so only the tolerance is believed.
        """
        if self.max_per_hour is None:
            return self.tolerance
        return self.plausible(elapsed_s)


@dataclass(frozen=True, slots=True)
class CounterEvent:
    kind: EventKind
    ts: float
    """Unix seconds of the first reading that showed it."""
    before: float | None
    """The baseline before the event."""
    after: float | None
    """The reading the event is about (the new baseline, the glitch value...)."""
    amount: float | None
    """Wrap: counted. Reset: counted from zero. Jump, replacement: the difference, not counted."""
    detail: str


@dataclass(frozen=True, slots=True)
class Step:
    delta: float | None
    """Consumption counted with this reading, over (previous counted ts, ts]; None: nothing."""
    events: tuple[CounterEvent, ...] = ()


NOTHING: Final = Step(None)


@dataclass(frozen=True, slots=True)
class _Reading:
    ts: float
    value: float


@dataclass(frozen=True, slots=True)
class _Advance:
    amount: float | None
    """Never negative; None for a reading within the tolerance below the start (noise)."""
    baseline: _Reading
    wrapped: bool


def _advance(spec: CounterSpec, start: _Reading, reading: _Reading) -> _Advance | None:
    """The plausible increase from ``start`` to ``reading``, across a wrap if needed; or None."""
    limit = spec.plausible(reading.ts - start.ts)
    rise = reading.value - start.value
    if 0 <= rise <= limit:
        return _Advance(rise, reading, wrapped=False)
    if -spec.tolerance <= rise < 0:  # noise: nothing to count, the baseline stays as it is
        return _Advance(None, start, wrapped=False)
    if rise < 0 and spec.modulus is not None:
        wrapped = rise + spec.modulus
        sane = spec.max_per_hour is not None or wrapped < spec.modulus / 2
        if 0 <= wrapped <= limit and sane:
            return _Advance(wrapped, reading, wrapped=True)
    return None


@dataclass(slots=True)
class _Run:
    """Readings held since the last counted one: missing reads and suspect values."""

    since: float
    missing: int = 0
    suspects: list[_Reading] = field(default_factory=list)

    def describe(self) -> str:
        return f"{len(self.suspects)} suspect and {self.missing} missing reading(s) held"


class CounterTracker:
    """Consumption and events of one counter point of one device."""

    def __init__(self, spec: CounterSpec, state: Mapping[str, object] | None = None) -> None:
        self._spec = spec
        self._baseline: _Reading | None = None
        self._last_ts: float | None = None
        self._serial: int | str | None = None
        self._run: _Run | None = None
        if state is not None:
            self._restore(state)

    @property
    def spec(self) -> CounterSpec:
        return self._spec

    def update(self, ts: float, value: float | None, serial: int | str | None = None) -> Step:
        """Take the reading of one poll; ``value`` None (or NaN) means the read failed."""
        if not math.isfinite(ts):
            raise ValueError(f"timestamp must be finite, not {ts}")
        if self._last_ts is not None and ts <= self._last_ts:
            return NOTHING  # replayed or duplicate reading
        self._last_ts = ts
        if value is not None and not math.isfinite(value):
            value = None
        if serial is not None:
            previous, self._serial = self._serial, serial
            if previous is not None and previous != serial:
                return self._replaced(ts, value, f"serial number {previous!r} -> {serial!r}")
        if self._baseline is None:
            if value is not None:
                self._baseline = _Reading(ts, value)
            return NOTHING
        if value is None:
            self._held(ts).missing += 1
            return NOTHING
        return self._value(self._baseline, _Reading(ts, value))

    def _held(self, ts: float) -> _Run:
        if self._run is None:
            self._run = _Run(since=ts)
        return self._run

    def _value(self, baseline: _Reading, reading: _Reading) -> Step:
        newest = self._run.suspects[-1] if self._run and self._run.suspects else None
        # A first 0 after a non-zero baseline is the classic bad read: held, even if it could be
        # a wrap landing exactly on zero (the next reading tells).
        zero = reading.value == 0 and baseline.value > self._spec.tolerance and newest is None
        advance = None if zero else _advance(self._spec, baseline, reading)
        if advance is not None:
            return self._counted(baseline, reading, advance)
        if newest is not None:
            advance = _advance(self._spec, newest, reading)
            if advance is not None:
                return self._confirmed(baseline, newest, reading, advance)
        run = self._held(reading.ts)
        run.suspects.append(reading)
        if len(run.suspects) >= MAX_SUSPECTS:
            return self._forced(baseline, reading, run)
        return NOTHING

    def _counted(self, baseline: _Reading, reading: _Reading, advance: _Advance) -> Step:
        """The reading continues from the baseline: whatever was held was a glitch."""
        events: list[CounterEvent] = []
        run = self._run
        if run is not None and not self._zero_was_wrap(baseline, run, reading, advance):
            newest = run.suspects[-1].value if run.suspects else None
            events.append(
                CounterEvent(
                    EventKind.GLITCH, run.since, baseline.value, newest, None, run.describe()
                )
            )
        if advance.wrapped:
            events.append(self._wrap(baseline, reading, advance))
        self._settle(advance.baseline)
        return Step(advance.amount, tuple(events))

    def _zero_was_wrap(
        self, baseline: _Reading, run: _Run, reading: _Reading, advance: _Advance
    ) -> bool:
        """A single held 0 before a wrap that it fits: the counter really passed through 0."""
        if run.missing or len(run.suspects) != 1 or not advance.wrapped:
            return False
        zero = run.suspects[0]
        fits = _advance(self._spec, baseline, zero)
        return fits is not None and fits.wrapped and zero.value <= reading.value

    def _confirmed(
        self, baseline: _Reading, suspect: _Reading, reading: _Reading, advance: _Advance
    ) -> Step:
        """The reading continues from the newest suspect: the counter really moved there."""
        run = self._run
        held = f"; {run.describe()}" if run is not None else ""
        counted = advance.amount
        if suspect.value > baseline.value:
            kind, amount = EventKind.JUMP, suspect.value - baseline.value
            detail = "increase beyond max_per_hour, confirmed by the next reading; not counted"
        elif suspect.value <= self._spec.plausible_from_zero(suspect.ts - baseline.ts):
            kind, amount = EventKind.RESET, max(suspect.value, 0.0)
            counted = amount + (advance.amount or 0.0)
            detail = "counter restarted from zero; the reading after the reset counted from zero"
        else:
            kind, amount = EventKind.REPLACEMENT, baseline.value - suspect.value
            detail = "counter fell to a value too large to be consumption since zero; new meter"
        events = [
            CounterEvent(kind, suspect.ts, baseline.value, suspect.value, amount, detail + held)
        ]
        if advance.wrapped:
            events.append(self._wrap(suspect, reading, advance))
        self._settle(advance.baseline)
        return Step(counted, tuple(events))

    def _forced(self, baseline: _Reading, reading: _Reading, run: _Run) -> Step:
        """Too many suspects in a row: believe the newest, count nothing across the gap."""
        up = reading.value > baseline.value
        event = CounterEvent(
            EventKind.JUMP if up else EventKind.REPLACEMENT,
            reading.ts,
            baseline.value,
            reading.value,
            abs(reading.value - baseline.value),
            f"no reading continued the baseline or another ({run.describe()}); "
            "newest taken as the baseline, difference not counted",
        )
        self._settle(reading)
        return Step(None, (event,))

    def _replaced(self, ts: float, value: float | None, detail: str) -> Step:
        before = self._baseline.value if self._baseline is not None else None
        amount = abs(before - value) if before is not None and value is not None else None
        event = CounterEvent(EventKind.REPLACEMENT, ts, before, value, amount, detail)
        self._run = None
        self._baseline = _Reading(ts, value) if value is not None else None
        return Step(None, (event,))

    def _wrap(self, start: _Reading, reading: _Reading, advance: _Advance) -> CounterEvent:
        detail = f"rolled over at {self._spec.modulus:g}"
        return CounterEvent(
            EventKind.WRAP, reading.ts, start.value, reading.value, advance.amount, detail
        )

    def _settle(self, baseline: _Reading) -> None:
        self._baseline = baseline
        self._run = None

    def to_state(self) -> dict[str, object]:
        """Everything the tracker knows, as JSON-serialisable values."""
        run = self._run
        return {
            "version": STATE_VERSION,
            "baseline": _pair(self._baseline),
            "last_ts": self._last_ts,
            "serial": self._serial,
            "run": None
            if run is None
            else {
                "since": run.since,
                "missing": run.missing,
                "suspects": [_pair(suspect) for suspect in run.suspects],
            },
        }

    def _restore(self, state: Mapping[str, object]) -> None:
        if state.get("version") != STATE_VERSION:
            raise CounterStateError(f"unsupported counter state version {state.get('version')!r}")
        self._baseline = _reading(state.get("baseline"))
        last_ts = state.get("last_ts")
        self._last_ts = None if last_ts is None else _number(last_ts)
        serial = state.get("serial")
        if serial is not None and (isinstance(serial, bool) or not isinstance(serial, int | str)):
            raise CounterStateError(f"serial must be an integer or a string, not {serial!r}")
        self._serial = serial
        run = state.get("run")
        if run is None:
            return
        if not isinstance(run, Mapping):
            raise CounterStateError(f"run must be an object, not {run!r}")
        missing = run.get("missing")
        suspects = run.get("suspects")
        if isinstance(missing, bool) or not isinstance(missing, int) or missing < 0:
            raise CounterStateError(f"missing must be a non-negative integer, not {missing!r}")
        if not isinstance(suspects, list):
            raise CounterStateError(f"suspects must be a list, not {suspects!r}")
        since = _number(run.get("since"))
        self._run = _Run(since, missing, [_suspect(raw) for raw in suspects])


def _pair(reading: _Reading | None) -> list[float] | None:
    return None if reading is None else [reading.ts, reading.value]


def _number(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise CounterStateError(f"expected a finite number, not {raw!r}")
    return raw


def _reading(raw: object) -> _Reading | None:
    if raw is None:
        return None
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise CounterStateError(f"a reading is [ts, value], not {raw!r}")
    return _Reading(_number(raw[0]), _number(raw[1]))


def _suspect(raw: object) -> _Reading:
    reading = _reading(raw)
    if reading is None:
        raise CounterStateError("a suspect reading cannot be null")
    return reading


def event_json(device: str, point: str, event: CounterEvent) -> str:
    """A counter event as the JSON object a telemetry batch carries in ``events``."""
    return json.dumps(
        {
            "device": device,
            "point": point,
            "ts": format_ts(datetime.fromtimestamp(event.ts, UTC)),
            "kind": event.kind.value,
            "before": event.before,
            "after": event.after,
            "amount": event.amount,
            "detail": event.detail,
        }
    )
