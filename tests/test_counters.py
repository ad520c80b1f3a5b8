"""Counter semantics at the edge: one test per rule of docs/counters.md, restore, and a property.

The meter of most tests is a uint32 x 0.01 kWh register (rolls over at 42,949,672.96 kWh) on
equipment of at most 360 kW, polled every minute: at most 6 kWh (+ 0.01 tolerance) per poll.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.counters import (
    NOTHING,
    CounterEvent,
    CounterSpec,
    CounterStateError,
    CounterTracker,
    EventKind,
    Step,
)

pytestmark = pytest.mark.unit

SCALE = 0.01
U32 = 2**32 * SCALE  # 42_949_672.96 kWh
SPEC = CounterSpec(modulus=U32, max_per_hour=360.0, tolerance=SCALE)
UNBOUNDED = CounterSpec(modulus=U32, max_per_hour=None, tolerance=SCALE)
T0 = 1_790_000_000.0

Reading = tuple[float, float | None] | tuple[float, float | None, int | str | None]


def at(minute: float) -> float:
    return T0 + 60 * minute


def feed(tracker: CounterTracker, readings: list[Reading]) -> list[Step]:
    steps = []
    for reading in readings:
        ts, value, *rest = reading
        steps.append(tracker.update(ts, value, rest[0] if rest else None))
    return steps


def run(readings: list[Reading], spec: CounterSpec = SPEC) -> list[Step]:
    return feed(CounterTracker(spec), readings)


def kinds(step: Step) -> list[EventKind]:
    return [event.kind for event in step.events]


def only_event(step: Step, kind: EventKind) -> CounterEvent:
    assert kinds(step) == [kind]
    return step.events[0]


# 1. First reading


def test_first_reading_is_the_baseline() -> None:
    first, second = run([(at(0), 1000.0), (at(1), 1002.5)])
    assert first == NOTHING
    assert second == Step(2.5)


def test_unreadable_first_reading_leaves_no_baseline() -> None:
    steps = run([(at(0), None), (at(1), math.nan), (at(2), 1000.0), (at(3), 1001.0)])
    assert steps[:3] == [NOTHING, NOTHING, NOTHING]
    assert steps[3] == Step(1.0)


# 2. Normal increase


def test_plausible_increase_is_counted() -> None:
    steps = run([(at(0), 1000.0), (at(1), 1002.5), (at(2), 1008.5), (at(3), 1008.5)])
    assert [step.delta for step in steps] == [None, 2.5, 6.0, 0.0]
    assert all(step.events == () for step in steps)


def test_plausible_grows_with_elapsed_time() -> None:
    # 30 kWh in 5 minutes at 360 kW is exactly possible, even without tolerance.
    exact = CounterSpec(modulus=U32, max_per_hour=360.0, tolerance=0.0)
    assert run([(at(0), 1000.0), (at(5), 1030.0)], exact)[1] == Step(30.0)
    assert run([(at(0), 1000.0), (at(5), 1030.5)], exact)[1] == NOTHING


def test_without_max_per_hour_any_increase_is_counted() -> None:
    assert run([(at(0), 1000.0), (at(1), 901_000.0)], UNBOUNDED)[1] == Step(900_000.0)


def test_decrease_within_tolerance_is_noise() -> None:
    steps = run([(at(0), 1000.0), (at(1), 999.995), (at(2), 1000.5)])
    assert steps[1] == NOTHING  # neither counted nor a new baseline
    assert steps[2] == Step(0.5)


# 3. Wrap


def test_register_wrap() -> None:
    before = 42_949_670.0
    steps = run([(at(0), before), (at(1), 1.0), (at(2), 3.0)])
    delta = 1.0 + U32 - before
    assert steps[1].delta == pytest.approx(3.96)
    event = only_event(steps[1], EventKind.WRAP)
    assert (event.ts, event.before, event.after, event.amount) == (at(1), before, 1.0, delta)
    assert steps[2] == Step(2.0)


@pytest.mark.parametrize("max_per_hour", [None, 360.0])
def test_decimal_rollover(max_per_hour: float | None) -> None:
    spec = CounterSpec(1e8, max_per_hour, 0.1)  # a display of 99999999.9
    assert spec.modulus == pytest.approx(100_000_000.0)
    step = run([(at(0), 99_999_999.9), (at(1), 0.3)], spec)[1]
    assert step.delta == pytest.approx(0.4)
    assert kinds(step) == [EventKind.WRAP]


def test_implausible_wrap_is_not_a_wrap() -> None:
    # 42,949,000 -> 10 would be 682.96 kWh in a minute: held, then a new meter.
    steps = run([(at(0), 42_949_000.0), (at(1), 10.0), (at(2), 12.0)])
    assert steps[1] == NOTHING
    assert kinds(steps[2]) == [EventKind.REPLACEMENT]
    assert steps[2].delta == 2.0


def test_without_max_per_hour_a_wrap_is_under_half_the_modulus() -> None:
    near = run([(at(0), 30_000_000.0), (at(1), 5.0)], UNBOUNDED)[1]
    assert kinds(near) == [EventKind.WRAP]
    assert near.delta == pytest.approx(5.0 + U32 - 30_000_000.0)
    far = run([(at(0), 10_000_000.0), (at(1), 5.0), (at(2), 6.0)], UNBOUNDED)
    assert far[1] == NOTHING
    assert kinds(far[2]) == [EventKind.REPLACEMENT]
    assert far[2].delta == 1.0


def test_float_counter_never_wraps() -> None:
    spec = CounterSpec(modulus=None, max_per_hour=None, tolerance=0.001)
    steps = run([(at(0), 42_949_670.0), (at(1), 1.0), (at(2), 3.0)], spec)
    assert steps[1] == NOTHING
    assert kinds(steps[2]) == [EventKind.REPLACEMENT]


# 4. Glitch, then recovery


def test_zero_then_recovery_is_a_glitch() -> None:
    steps = run([(at(0), 1000.0), (at(1), 0.0), (at(2), 1003.0)])
    assert steps[1] == NOTHING
    assert steps[2].delta == 3.0
    event = only_event(steps[2], EventKind.GLITCH)
    assert (event.ts, event.before, event.after, event.amount) == (at(1), 1000.0, 0.0, None)


def test_decrease_then_recovery_is_a_glitch() -> None:
    steps = run([(at(0), 1000.0), (at(1), 400.0), (at(2), 1003.0)])
    assert steps[1] == NOTHING
    assert steps[2].delta == 3.0
    assert only_event(steps[2], EventKind.GLITCH).after == 400.0


def test_missing_reads_make_one_glitch_per_run() -> None:
    readings: list[Reading] = [
        (at(0), 1000.0),
        (at(1), None),
        (at(2), math.nan),
        (at(3), None),
        (at(4), 1010.0),
        (at(5), None),
        (at(6), 1011.0),
    ]
    steps = run(readings)
    assert steps[1:4] == [NOTHING] * 3
    event = only_event(steps[4], EventKind.GLITCH)
    assert (event.ts, event.before, event.after) == (at(1), 1000.0, None)
    assert "3 missing" in event.detail
    assert steps[4].delta == 10.0
    assert only_event(steps[6], EventKind.GLITCH).ts == at(5)
    assert steps[6].delta == 1.0


def test_missing_and_suspect_reads_make_one_glitch() -> None:
    steps = run([(at(0), 1000.0), (at(1), None), (at(2), 0.0), (at(3), None), (at(4), 1010.0)])
    event = only_event(steps[4], EventKind.GLITCH)
    assert (event.ts, event.after) == (at(1), 0.0)
    assert steps[4].delta == 10.0


def test_zero_before_a_wrap_is_a_glitch() -> None:
    steps = run([(at(0), 42_949_672.0), (at(1), 0.0), (at(2), 42_949_672.5)])
    assert steps[2].delta == 0.5
    assert kinds(steps[2]) == [EventKind.GLITCH]


def test_zero_where_the_register_wraps_is_a_wrap() -> None:
    steps = run([(at(0), 42_949_672.0), (at(1), 0.0), (at(2), 0.5)])
    assert steps[1] == NOTHING
    assert steps[2].delta == pytest.approx(1.46)
    assert kinds(steps[2]) == [EventKind.WRAP]


# 5. Reset


def test_reset_to_zero() -> None:
    steps = run([(at(0), 1000.0), (at(1), 0.0), (at(2), 2.0), (at(3), 3.0)])
    assert steps[1] == NOTHING
    assert steps[2].delta == 2.0
    event = only_event(steps[2], EventKind.RESET)
    assert (event.ts, event.before, event.after, event.amount) == (at(1), 1000.0, 0.0, 0.0)
    assert steps[3] == Step(1.0)


def test_reset_to_a_small_value_counts_it_from_zero() -> None:
    # 1.5 kWh since the reset is possible in the minute since the last reading (<= 6.01).
    steps = run([(at(0), 1000.0), (at(1), 1.5), (at(2), 4.0)])
    assert steps[2].delta == 4.0
    assert only_event(steps[2], EventKind.RESET).amount == 1.5


def test_without_max_per_hour_only_a_reset_to_zero_is_a_reset() -> None:
    to_zero = run([(at(0), 1000.0), (at(1), 0.0), (at(2), 4.0)], UNBOUNDED)[2]
    assert (kinds(to_zero), to_zero.delta) == ([EventKind.RESET], 4.0)
    to_some = run([(at(0), 1000.0), (at(1), 1.5), (at(2), 4.0)], UNBOUNDED)[2]
    assert (kinds(to_some), to_some.delta) == ([EventKind.REPLACEMENT], 2.5)


# 6. Replacement


def test_new_serial_number_is_a_replacement() -> None:
    readings: list[Reading] = [
        (at(0), 1000.0, 111),
        (at(1), 1002.0, 111),
        (at(2), 1003.0, 222),  # plausible as a reading, but another meter
        (at(3), 1004.0, 222),
    ]
    steps = run(readings)
    assert steps[1] == Step(2.0)
    assert steps[2].delta is None
    event = only_event(steps[2], EventKind.REPLACEMENT)
    assert (event.ts, event.before, event.after) == (at(2), 1002.0, 1003.0)
    assert "111" in event.detail
    assert "222" in event.detail
    assert steps[3] == Step(1.0)


def test_new_serial_number_with_unreadable_value() -> None:
    readings: list[Reading] = [
        (at(0), 1000.0, "A1"),
        (at(1), None, "B2"),
        (at(2), 7.0, "B2"),
        (at(3), 8.0, "B2"),
    ]
    steps = run(readings)
    event = only_event(steps[1], EventKind.REPLACEMENT)
    assert (event.before, event.after, event.amount) == (1000.0, None, None)
    assert steps[2] == NOTHING  # the new meter's first reading is its baseline
    assert steps[3] == Step(1.0)


def test_unknown_serial_number_is_not_a_change() -> None:
    steps = run([(at(0), 1000.0, 111), (at(1), 1001.0, None), (at(2), 1002.0, 111)])
    assert [step.delta for step in steps] == [None, 1.0, 1.0]
    assert all(step.events == () for step in steps)


def test_large_decrease_confirmed_is_a_replacement() -> None:
    steps = run([(at(0), 1000.0), (at(1), 500.0), (at(2), 503.0)])
    assert steps[1] == NOTHING
    assert steps[2].delta == 3.0
    event = only_event(steps[2], EventKind.REPLACEMENT)
    assert (event.ts, event.before, event.after, event.amount) == (at(1), 1000.0, 500.0, 500.0)


# 7. Jump


def test_confirmed_jump_is_quarantined() -> None:
    steps = run([(at(0), 1000.0), (at(1), 1500.0), (at(2), 1503.0), (at(3), 1504.0)])
    assert steps[1] == NOTHING
    assert steps[2].delta == 3.0
    event = only_event(steps[2], EventKind.JUMP)
    assert (event.ts, event.before, event.after, event.amount) == (at(1), 1000.0, 1500.0, 500.0)
    assert steps[3] == Step(1.0)


def test_refuted_jump_is_a_glitch() -> None:
    steps = run([(at(0), 1000.0), (at(1), 1500.0), (at(2), 1004.0)])
    assert steps[2].delta == 4.0
    assert only_event(steps[2], EventKind.GLITCH).after == 1500.0


def test_without_max_per_hour_there_is_no_jump() -> None:
    assert run([(at(0), 1000.0), (at(1), 1500.0)], UNBOUNDED)[1] == Step(500.0)


# 8. Unresolved


def test_three_unresolved_readings_up_make_a_jump() -> None:
    readings: list[Reading] = [
        (at(0), 1000.0),
        (at(1), 5000.0),
        (at(2), None),  # missing reads neither confirm nor refute
        (at(3), 9000.0),
        (at(4), 20_000.0),
        (at(5), 20_003.0),
    ]
    steps = run(readings)
    assert steps[1:4] == [NOTHING] * 3
    assert steps[4].delta is None
    event = only_event(steps[4], EventKind.JUMP)
    assert (event.ts, event.before, event.after, event.amount) == (
        at(4),
        1000.0,
        20_000.0,
        19_000.0,
    )
    assert steps[5] == Step(3.0)


def test_three_unresolved_readings_down_make_a_replacement() -> None:
    steps = run([(at(0), 1000.0), (at(1), 5000.0), (at(2), 100.0), (at(3), 300.0)])
    event = only_event(steps[3], EventKind.REPLACEMENT)
    assert (event.before, event.after, event.amount) == (1000.0, 300.0, 700.0)
    assert steps[3].delta is None


def test_newest_suspect_can_still_be_confirmed() -> None:
    # 5000 is continued by nothing; 1.0 is continued by 3.0: a reset, 1.0 plausible since zero.
    steps = run([(at(0), 1000.0), (at(1), 5000.0), (at(2), 1.0), (at(3), 3.0)])
    assert steps[1:3] == [NOTHING, NOTHING]
    event = only_event(steps[3], EventKind.RESET)
    assert (event.ts, event.after, event.amount) == (at(2), 1.0, 1.0)
    assert steps[3].delta == 3.0


def test_baseline_can_still_recover_after_two_suspects() -> None:
    steps = run([(at(0), 1000.0), (at(1), 5000.0), (at(2), 0.0), (at(3), 1010.0)])
    assert only_event(steps[3], EventKind.GLITCH).after == 0.0
    assert steps[3].delta == 10.0


# 9. Time going backwards


def test_replayed_or_duplicate_reading_is_ignored() -> None:
    tracker = CounterTracker(SPEC)
    feed(tracker, [(at(0), 1000.0), (at(2), 1005.0)])
    state = tracker.to_state()
    assert tracker.update(at(1), 1003.0) == NOTHING
    assert tracker.update(at(2), 1005.0) == NOTHING
    assert tracker.update(at(2), 1.0, 999) == NOTHING  # not even a serial number is taken
    assert tracker.to_state() == state
    assert tracker.update(at(3), 1010.0) == Step(5.0)


def test_replay_while_a_suspect_is_held_changes_nothing() -> None:
    tracker = CounterTracker(SPEC)
    feed(tracker, [(at(0), 1000.0), (at(1), 0.0)])
    state = tracker.to_state()
    assert tracker.update(at(1), 0.0) == NOTHING
    assert tracker.update(at(0), 1000.0) == NOTHING
    assert tracker.to_state() == state
    assert tracker.update(at(2), 1003.0).delta == 3.0


# 10. Never negative, never twice


def test_replaying_a_whole_sequence_counts_nothing_more() -> None:
    readings: list[Reading] = [(at(m), 1000.0 + 2 * m) for m in range(10)]
    tracker = CounterTracker(SPEC)
    first = sum(step.delta or 0.0 for step in feed(tracker, readings))
    assert first == 18.0
    assert all(step == NOTHING for step in feed(tracker, readings))


def test_non_finite_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        CounterTracker(SPEC).update(math.inf, 1.0)


# Persisted state

SCRIPT: list[Reading] = [
    (at(0), 42_949_670.0, 7),
    (at(1), 42_949_672.0, 7),
    (at(2), 1.0, 7),  # wrap
    (at(3), None, 7),
    (at(4), 0.0, 7),  # held
    (at(5), 10.0, 7),  # glitch
    (at(6), 900.0, 7),  # held
    (at(7), 903.0, 7),  # jump
    (at(8), 0.0, None),  # held
    (at(9), 2.0, None),  # reset
    (at(10), 4.0, 8),  # replacement (serial)
    (at(11), 5.0, 8),
    (at(12), 5000.0, 8),
    (at(13), 9000.0, 8),
    (at(14), 20_000.0, 8),  # forced jump
    (at(14), 1.0, 8),  # duplicate
    (at(15), 20_001.0, 8),
    (at(16), 300.0, 8),  # held
    (at(17), 301.0, 8),  # replacement (no serial)
    (at(18), 302.0, 8),
]


def test_script_shows_every_event() -> None:
    steps = run(SCRIPT)
    assert {kind for step in steps for kind in kinds(step)} == set(EventKind)


@pytest.mark.parametrize("split", range(len(SCRIPT) + 1))
def test_restored_tracker_continues_exactly(split: int) -> None:
    expected = run(SCRIPT)
    first = CounterTracker(SPEC)
    before = feed(first, SCRIPT[:split])
    state = json.loads(json.dumps(first.to_state()))
    second = CounterTracker(SPEC, state)
    assert second.to_state() == state
    assert before + feed(second, SCRIPT[split:]) == expected


def test_restore_covers_held_readings() -> None:
    held = []
    for split in range(len(SCRIPT)):
        tracker = CounterTracker(SPEC)
        feed(tracker, SCRIPT[:split])
        held.append(tracker.to_state()["run"] is not None)
    assert sum(held) >= 6


GOOD_STATE: dict[str, object] = {
    "version": 1,
    "baseline": [T0, 1000.0],
    "last_ts": T0,
    "serial": 7,
    "run": {"since": T0 + 60, "missing": 1, "suspects": [[T0 + 120, 0.0]]},
}


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("version", 2),
        ("baseline", [T0]),
        ("baseline", [T0, "1000"]),
        ("last_ts", True),
        ("serial", 1.5),
        ("run", []),
        ("run", {"since": T0, "missing": -1, "suspects": []}),
        ("run", {"since": T0, "missing": 0, "suspects": [None]}),
        ("run", {"since": T0, "missing": 0, "suspects": {}}),
        ("run", {"since": None, "missing": 0, "suspects": []}),
    ],
)
def test_corrupt_state_is_refused(key: str, bad: object) -> None:
    CounterTracker(SPEC, GOOD_STATE)
    with pytest.raises(CounterStateError):
        CounterTracker(SPEC, {**GOOD_STATE, key: bad})


# Configuration


@pytest.mark.parametrize(
    ("modulus", "max_per_hour", "tolerance"),
    [(0.0, None, 0.0), (math.inf, None, 0.0), (None, -1.0, 0.0), (None, None, -0.1)],
)
def test_invalid_spec_is_refused(
    modulus: float | None, max_per_hour: float | None, tolerance: float
) -> None:
    with pytest.raises(ValueError, match="must be"):
        CounterSpec(modulus, max_per_hour, tolerance)


# Property: the sum of deltas is the true consumption

RATE_RAW_PER_S = 10  # 0.1 kWh/s = 360 kW at 0.01 kWh per count
FAULT_VALUES: dict[str, float | None] = {"none": None, "nan": math.nan, "zero": 0.0}


@given(
    start=st.one_of(st.integers(0, 2**32 - 1), st.integers(2**32 - 20_000, 2**32 - 1)),
    polls=st.lists(
        st.tuples(
            st.integers(1, 600),
            st.floats(0.0, 1.0),
            st.sampled_from(["ok", "ok", "ok", "none", "nan", "zero"]),
        ),
        min_size=1,
        max_size=60,
    ),
    restore_at=st.integers(0, 61),
)
def test_sum_of_deltas_is_the_true_consumption(
    start: int, polls: list[tuple[int, float, str]], restore_at: int
) -> None:
    tracker = CounterTracker(SPEC)
    ts, raw = T0, start
    readings: list[tuple[float, float | None]] = [(ts, (raw % 2**32) * SCALE)]
    faulted = True  # never the first reading
    for index, (elapsed_s, fill, fault) in enumerate(polls):
        ts += elapsed_s
        raw += int(fill * RATE_RAW_PER_S * elapsed_s)
        value: float | None = (raw % 2**32) * SCALE
        last = index == len(polls) - 1
        faulted = fault != "ok" and not faulted and not last
        if faulted:
            value = FAULT_VALUES[fault]
        readings.append((ts, value))
    deltas: list[float] = []
    for index, (reading_ts, reading_value) in enumerate(readings):
        if index == restore_at:
            tracker = CounterTracker(SPEC, json.loads(json.dumps(tracker.to_state())))
        delta = tracker.update(reading_ts, reading_value).delta
        if delta is not None:
            deltas.append(delta)
    assert all(delta >= 0 for delta in deltas)
    assert math.fsum(deltas) == pytest.approx((raw - start) * SCALE, abs=1e-6)
