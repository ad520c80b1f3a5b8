"""The gateway's on-disk outbox: stored before published, deleted on acknowledgement, replayed in
order after a restart, bounded with counted losses, sequence numbers that never repeat."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Literal

import pytest

from gateway.outbox import Outbox
from gateway.poller import Poll
from wire.payload import parse_telemetry

pytestmark = pytest.mark.unit


def poll(device: str, n: int, *, start: int = 0, counters: bool = False) -> Poll:
    readings = [
        json.dumps(
            {
                "device": device,
                "point": "active_power_kw",
                "ts": f"2026-11-22T03:00:{(start + i) % 60:02d}Z",
                "value": float(start + i),
                "quality": "good",
            }
        )
        for i in range(n)
    ]
    made = Poll(device=device, body=",".join(readings), readings=n)
    if counters:
        made.counters["energy_import_kwh"] = {"base": float(start)}
    return made


def run(body: Callable[[], Coroutine[None, None, None]]) -> None:
    asyncio.run(body())


def open_box(
    path: Path,
    *,
    max_bytes: int = 10_000_000,
    when_full: Literal["drop-oldest", "block"] = "drop-oldest",
) -> Outbox:
    # Commit at every turn of the loop, so that a test sees its polls stored after one sleep(0).
    return Outbox(
        path / "gw.sqlite", "gw-1", max_bytes=max_bytes, when_full=when_full, commit_interval_s=0
    )


def values(payload: bytes) -> list[float | None]:
    return [r.value for r in parse_telemetry(payload).readings]


def test_batches_are_cut_from_whole_polls_in_order_and_parse(tmp_path: Path) -> None:
    async def body() -> None:
        box = open_box(tmp_path)
        for i in range(5):
            box.add(poll("m1", 3, start=3 * i))
        await asyncio.sleep(0)  # the group commit runs on the next turn of the loop
        first = box.cut(max_readings=7, max_bytes=1 << 20)
        second = box.cut(max_readings=7, max_bytes=1 << 20)
        assert first is not None
        assert second is not None
        assert (first.seq, first.readings, second.seq, second.readings) == (1, 6, 2, 6)
        assert values(first.payload) == [float(i) for i in range(6)]
        assert values(second.payload) == [float(i) for i in range(6, 12)]
        assert box.cut(7, 1 << 20) is not None  # the last poll alone
        assert box.cut(7, 1 << 20) is None
        box.close()

    run(body)


def test_a_restart_replays_unacknowledged_batches_and_keeps_counting(tmp_path: Path) -> None:
    async def body() -> None:
        box = open_box(tmp_path)
        for i in range(4):
            box.add(poll("m1", 2, start=2 * i, counters=True))
        await asyncio.sleep(0)
        one, two = box.cut(2, 1 << 20), box.cut(2, 1 << 20)
        assert one is not None
        assert two is not None
        box.acknowledge(one.seq)
        await asyncio.sleep(0)
        box._db.close()  # a crash: nothing flushed or closed cleanly after this point

        again = open_box(tmp_path)
        stored = list(again.stored_batches())
        assert [(b.seq, b.payload) for b in stored] == [(two.seq, two.payload)]
        assert again.uncut_readings == 4  # the two polls never cut
        three = again.cut(10, 1 << 20)
        assert three is not None
        assert three.seq == 3
        assert values(three.payload) == [4.0, 5.0, 6.0, 7.0]
        assert again.counter_states() == {"m1": {"energy_import_kwh": {"base": 6.0}}}
        again.close()

    run(body)


def test_acknowledged_batches_leave_the_file(tmp_path: Path) -> None:
    async def body() -> None:
        box = open_box(tmp_path)
        box.add(poll("m1", 5))
        await asyncio.sleep(0)
        batch = box.cut(10, 1 << 20)
        assert batch is not None
        assert box.batches == 1
        assert box.bytes > 0
        box.acknowledge(batch.seq)
        await asyncio.sleep(0)
        assert (box.batches, box.bytes, box.oldest_age()) == (0, 0, 0.0)
        (rows,) = box._db.execute("SELECT count(*) FROM polls").fetchone()
        assert rows == 0
        box.close()

    run(body)


def test_a_full_outbox_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    async def body() -> None:
        largest = len(poll("m1", 10, start=40).body)
        box = open_box(tmp_path, max_bytes=3 * largest)
        for i in range(5):
            box.add(poll("m1", 10, start=10 * i))
            await asyncio.sleep(0)
        assert box.dropped_readings == 20
        assert any("dropped" in alarm for alarm in box.alarms())
        batch = box.cut(100, 1 << 20)
        assert batch is not None
        assert values(batch.payload)[0] == 20.0  # the newest three polls are kept
        box.close()

    run(body)


def test_a_full_outbox_in_block_mode_refuses_polls_and_counts_them(tmp_path: Path) -> None:
    async def body() -> None:
        one_poll = len(poll("m1", 10).body)
        box = open_box(tmp_path, max_bytes=2 * one_poll, when_full="block")
        assert box.accepting()
        box.add(poll("m1", 10))
        box.add(poll("m1", 10))
        await asyncio.sleep(0)
        assert not box.accepting()
        assert not box.accepting()
        assert box.refused_polls == 2
        assert box.dropped_readings == 0
        assert any("skipped" in alarm for alarm in box.alarms())
        batch = box.cut(100, 1 << 20)
        assert batch is not None
        box.acknowledge(batch.seq)
        await asyncio.sleep(0)
        assert box.accepting()
        box.close()

    run(body)


def test_sequence_numbers_continue_from_a_legacy_lease_file(tmp_path: Path) -> None:
    async def body() -> None:
        legacy = tmp_path / "gw-1.seq"
        legacy.write_text("5001\n")
        box = Outbox(
            tmp_path / "gw.sqlite",
            "gw-1",
            max_bytes=1 << 20,
            legacy_seq=legacy,
            commit_interval_s=0,
        )
        box.add(poll("m1", 1))
        await asyncio.sleep(0)
        batch = box.cut(10, 1 << 20)
        assert batch is not None
        assert batch.seq == 5001
        box.close()

    run(body)


def test_a_batch_never_exceeds_the_byte_budget(tmp_path: Path) -> None:
    async def body() -> None:
        box = open_box(tmp_path)
        for i in range(50):
            box.add(poll("m1", 20, start=i))
        await asyncio.sleep(0)
        budget = 20_000
        sizes = []
        while (batch := box.cut(10_000, budget)) is not None:
            sizes.append(len(batch.payload))
            parse_telemetry(batch.payload)
        assert max(sizes) <= budget
        assert len(sizes) > 1
        box.close()

    run(body)


def test_polls_are_committed_together_within_the_commit_interval(tmp_path: Path) -> None:
    async def body() -> None:
        box = Outbox(tmp_path / "gw.sqlite", "gw-1", max_bytes=1 << 20, commit_interval_s=0.05)
        for i in range(10):
            box.add(poll("m1", 2, start=2 * i))
        stored = "SELECT count(*) FROM polls"
        await asyncio.sleep(0)
        assert box._db.execute(stored).fetchone() == (0,)  # not yet: one commit for all ten
        assert box.uncut_readings == 20
        await asyncio.sleep(0.1)
        assert box._db.execute(stored).fetchone() == (10,)
        box.close()

    run(body)


def test_the_forwarder_is_woken_by_the_first_poll_and_by_a_full_batch(tmp_path: Path) -> None:
    async def body() -> None:
        box = Outbox(
            tmp_path / "gw.sqlite", "gw-1", max_bytes=1 << 20, commit_interval_s=0, wake_readings=6
        )
        box.add(poll("m1", 2))
        assert box.changed.is_set()  # the first reading starts the batch age
        box.changed.clear()
        box.add(poll("m1", 2))
        assert not box.changed.is_set()
        box.add(poll("m1", 2))
        assert box.changed.is_set()  # six readings: a whole batch waits
        box.close()

    run(body)


def test_stored_batches_are_read_one_at_a_time_and_skip_dropped_ones(tmp_path: Path) -> None:
    async def body() -> None:
        box = open_box(tmp_path)
        for i in range(3):
            box.add(poll("m1", 10, start=10 * i))
            await asyncio.sleep(0)
            box.cut(10, 1 << 20)
        box._db.close()  # a crash with three batches unacknowledged

        largest = len(poll("m1", 10, start=20).body)
        again = open_box(tmp_path, max_bytes=3 * largest + 10)
        stored = again.stored_batches()
        first = next(stored)
        assert first.seq == 1
        # While the first is being sent, two new polls overflow the outbox: the two oldest
        # batches (the one in flight and the next) are dropped, and the next is not read.
        again.add(poll("m1", 10, start=30))
        again.add(poll("m1", 10, start=40))
        await asyncio.sleep(0)
        assert again.dropped_readings == 20
        assert [b.seq for b in stored] == [3]
        again.close()

    run(body)
