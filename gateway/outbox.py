"""The durable outbox: every poll is on disk before it is published, and stays there until the
broker has acknowledged the batch that carries it.

One SQLite file in WAL mode, three tables:

- ``polls``: the readings of one poll of one device, as wire-contract JSON, in arrival order;
- ``batches``: a range of polls cut into one telemetry message, with its sequence number and the
  time it was cut; deleted with its polls on PUBACK;
- ``counters``: the baseline of every counter tracker, written in the same transaction as the
  poll that moved it, so after a crash counters resume exactly where the stored polls end.

Polls are committed together every ``commit_interval_s`` (50 ms by default; 0 commits each turn
of the event loop), so a crash loses at most the polls of that last interval. With
``sync = "normal"`` a commit survives a crash of the gateway process (kill -9), with ``"full"``
also a power cut.

The outbox is bounded by the size of the readings it holds. When full it either drops the oldest
batches (``drop-oldest``) or refuses new polls (``block``); both are counted and raise an alarm,
and nothing is ever dropped silently. Sequence numbers come from the same file: each cut takes
the next number in the transaction that records the batch, so they increase across restarts and
are never reused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from gateway.poller import Poll
from wire.payload import SCHEMA_VERSION, format_ts

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS polls (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    readings INTEGER NOT NULL,
    body TEXT NOT NULL,
    events TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    first_poll INTEGER NOT NULL,
    last_poll INTEGER NOT NULL,
    readings INTEGER NOT NULL,
    sent_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    device TEXT NOT NULL,
    point TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (device, point)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_HEADROOM = 4096
"""Bytes of a telemetry message that are not readings (header, events bracket)."""


@dataclass(frozen=True, slots=True)
class Batch:
    seq: int
    readings: int
    payload: bytes


@dataclass(slots=True)
class _Uncut:
    id: int
    readings: int
    size: int
    created: float


class Outbox:
    def __init__(
        self,
        path: Path,
        gateway: str,
        *,
        max_bytes: int,
        when_full: Literal["drop-oldest", "block"] = "drop-oldest",
        sync: Literal["normal", "full"] = "normal",
        commit_interval_s: float = 0.05,
        wake_readings: int = 1,
        legacy_seq: Path | None = None,
    ) -> None:
        """``wake_readings``: :attr:`changed` is set when this many readings wait uncut (and when
        the first arrives), so a forwarder cutting batches of that size wakes once per batch."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._gateway_json = json.dumps(gateway)
        self.max_bytes = max_bytes
        self.when_full = when_full
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={sync.upper()}")
        self._db.execute("PRAGMA cache_size=-1024")  # 1 MiB: the outbox is written, rarely read
        self._db.executescript(_SCHEMA)
        self._pending: list[Poll] = []
        self._acked: list[int] = []
        self._flush_scheduled = False
        self._commit_interval_s = commit_interval_s
        self._wake_readings = wake_readings
        self._pending_readings = 0
        self._pending_bytes = 0
        self._batch_total = 0
        self._uncut: deque[_Uncut] = deque()
        self._uncut_readings = 0
        self._uncut_bytes = 0
        self._batch_bytes: dict[int, int] = {}
        self._next_seq = self._load(legacy_seq)
        self.changed = asyncio.Event()
        """Set when the first poll waits uncut and when ``wake_readings`` wait; the forwarder
        clears it before it waits (and wakes on its own for the batch age)."""
        self.dropped_readings = 0
        self.refused_polls = 0
        self.cut_batches = 0
        self.acknowledged = 0

    def _load(self, legacy_seq: Path | None) -> int:
        db = self._db
        row = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        next_seq = int(row[0]) if row else 1
        if legacy_seq is not None and legacy_seq.exists():
            # Sequence numbers of a gateway version that leased them from a plain file.
            next_seq = max(next_seq, int(legacy_seq.read_text().strip() or "1"))
        (last_cut,) = db.execute("SELECT coalesce(max(last_poll), 0) FROM batches").fetchone()
        for seq, first, last in db.execute("SELECT seq, first_poll, last_poll FROM batches"):
            (size,) = db.execute(
                "SELECT coalesce(sum(length(body)), 0) FROM polls WHERE id BETWEEN ? AND ?",
                (first, last),
            ).fetchone()
            self._batch_bytes[seq] = int(size)
            self._batch_total += int(size)
            next_seq = max(next_seq, seq + 1)
        for row_id, readings, size, created in db.execute(
            "SELECT id, readings, length(body), created FROM polls WHERE id > ? ORDER BY id",
            (last_cut,),
        ):
            self._uncut.append(_Uncut(row_id, readings, size, created))
            self._uncut_readings += readings
            self._uncut_bytes += size
        return next_seq

    # What the pollers and the forwarder see.

    @property
    def bytes(self) -> int:
        """Bytes of readings stored and not yet acknowledged."""
        return self._uncut_bytes + self._batch_total + self._pending_bytes

    @property
    def batches(self) -> int:
        """Batches cut and not yet acknowledged."""
        return len(self._batch_bytes)

    @property
    def uncut_readings(self) -> int:
        return self._uncut_readings + self._pending_readings

    @property
    def full(self) -> bool:
        return self.bytes >= self.max_bytes

    def oldest_age(self, now: float | None = None) -> float:
        """Seconds the oldest reading not yet acknowledged has waited (0 when empty)."""
        oldest = self._db.execute("SELECT min(created) FROM polls").fetchone()[0]
        if oldest is None:
            return 0.0
        return max(0.0, (time.time() if now is None else now) - float(oldest))

    def oldest_uncut(self) -> float | None:
        if self._uncut:
            return self._uncut[0].created
        if self._pending:
            return time.time()
        return None

    def counter_states(self) -> dict[str, dict[str, dict[str, object]]]:
        """Stored counter baselines: device -> point -> tracker state."""
        states: dict[str, dict[str, dict[str, object]]] = {}
        for device, point, state in self._db.execute("SELECT device, point, state FROM counters"):
            states.setdefault(device, {})[point] = json.loads(state)
        return states

    def accepting(self) -> bool:
        """Whether a new poll may be taken (``block`` mode refuses while full; counted)."""
        if self.when_full == "block" and self.full:
            self.refused_polls += 1
            if self.refused_polls == 1:
                log.error("outbox full (%d bytes): polling stops until it drains", self.bytes)
            return False
        return True

    def alarms(self) -> list[str]:
        alarms = []
        if self.full:
            alarms.append(f"outbox full ({self.bytes} of {self.max_bytes} bytes)")
        if self.dropped_readings:
            alarms.append(f"{self.dropped_readings} readings dropped from a full outbox")
        if self.refused_polls:
            alarms.append(f"{self.refused_polls} polls skipped while the outbox was full")
        return alarms

    # Writing.

    def add(self, poll: Poll) -> None:
        """Store a poll; it is committed before the event loop runs anything else."""
        self._pending.append(poll)
        before = self._uncut_readings + self._pending_readings
        self._pending_readings += poll.readings
        self._pending_bytes += len(poll.body)
        if before == 0 or before < self._wake_readings <= before + poll.readings:
            self.changed.set()
        self._schedule()

    def acknowledge(self, seq: int) -> None:
        """The broker has the batch: forget it (in the next commit)."""
        self._acked.append(seq)
        self.acknowledged += 1
        self._schedule()

    def _schedule(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop = asyncio.get_running_loop()
            if self._commit_interval_s > 0:
                loop.call_later(self._commit_interval_s, self.flush)
            else:
                loop.call_soon(self.flush)

    def flush(self) -> None:
        """Commit the polls and acknowledgements received since the last commit."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        self._pending_readings = self._pending_bytes = 0
        acked, self._acked = self._acked, []
        if not pending and not acked:
            return
        db = self._db
        now = time.time()
        states: dict[tuple[str, str], dict[str, object]] = {}
        db.execute("BEGIN")
        try:
            for poll in pending:
                cursor = db.execute(
                    "INSERT INTO polls (device, readings, body, events, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        poll.device,
                        poll.readings,
                        poll.body,
                        ",".join(poll.events) if poll.events else None,
                        now,
                    ),
                )
                assert cursor.lastrowid is not None  # noqa: S101 - an INSERT has a rowid
                self._uncut.append(_Uncut(cursor.lastrowid, poll.readings, len(poll.body), now))
                self._uncut_readings += poll.readings
                self._uncut_bytes += len(poll.body)
                for point, state in poll.counters.items():
                    states[poll.device, point] = state
            if states:
                # Only the newest state of each counter: the one that matches the stored polls.
                db.executemany(
                    "INSERT INTO counters (device, point, state) VALUES (?, ?, ?) "
                    "ON CONFLICT (device, point) DO UPDATE SET state = excluded.state",
                    [(device, point, json.dumps(s)) for (device, point), s in states.items()],
                )
            for seq in acked:
                self._forget(seq)
            if self.when_full == "drop-oldest":
                self._drop_oldest()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _forget(self, seq: int) -> None:
        row = self._db.execute(
            "DELETE FROM batches WHERE seq = ? RETURNING first_poll, last_poll", (seq,)
        ).fetchone()
        if row is not None:
            self._db.execute("DELETE FROM polls WHERE id BETWEEN ? AND ?", row)
        self._batch_total -= self._batch_bytes.pop(seq, 0)

    def _drop_oldest(self) -> None:
        while self.bytes > self.max_bytes and (self._batch_bytes or self._uncut):
            if self._batch_bytes:
                seq = min(self._batch_bytes)
                (readings,) = self._db.execute(
                    "SELECT readings FROM batches WHERE seq = ?", (seq,)
                ).fetchone()
                self._forget(seq)
            else:
                poll = self._uncut.popleft()
                self._db.execute("DELETE FROM polls WHERE id = ?", (poll.id,))
                self._uncut_readings -= poll.readings
                self._uncut_bytes -= poll.size
                readings = poll.readings
            if self.dropped_readings == 0:
                log.error("outbox full (%d bytes): dropping the oldest readings", self.max_bytes)
            self.dropped_readings += readings

    def cut(self, max_readings: int, max_bytes: int) -> Batch | None:
        """Cut the oldest uncut polls into the next batch (whole polls, at least one)."""
        if self._pending:
            self.flush()
        if not self._uncut:
            return None
        first = self._uncut[0].id
        last, readings, size = first, 0, 0
        budget = max_bytes - _HEADROOM
        while self._uncut:
            poll = self._uncut[0]
            if readings and (readings + poll.readings > max_readings or size + poll.size > budget):
                break
            self._uncut.popleft()
            last, readings, size = poll.id, readings + poll.readings, size + poll.size + 1
            self._uncut_readings -= poll.readings
            self._uncut_bytes -= poll.size
        seq = self._next_seq
        self._next_seq += 1
        sent_at = format_ts(datetime.now(UTC))
        db = self._db
        db.execute("BEGIN")
        try:
            db.execute(
                "INSERT INTO batches (seq, first_poll, last_poll, readings, sent_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (seq, first, last, readings, sent_at),
            )
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('next_seq', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (self._next_seq,),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._batch_bytes[seq] = size
        self._batch_total += size
        self.cut_batches += 1
        return self._assemble(seq, first, last, readings, sent_at)

    def stored_batches(self) -> Iterator[Batch]:
        """Batches cut before and not acknowledged (after a restart), in sequence order, each
        read from the file when the previous one has been taken."""
        rows = self._db.execute(
            "SELECT seq, first_poll, last_poll, readings, sent_at FROM batches ORDER BY seq"
        ).fetchall()
        for seq, first, last, readings, sent_at in rows:
            if seq in self._batch_bytes:  # not dropped from a full outbox meanwhile
                yield self._assemble(seq, first, last, readings, sent_at)

    def _assemble(self, seq: int, first: int, last: int, readings: int, sent_at: str) -> Batch:
        bodies, events = [], []
        for body, event in self._db.execute(
            "SELECT body, events FROM polls WHERE id BETWEEN ? AND ? ORDER BY id", (first, last)
        ):
            bodies.append(body)
            if event:
                events.append(event)
        tail = f'],"events":[{",".join(events)}]}}' if events else "]}"
        payload = (
            f'{{"schema_version":{SCHEMA_VERSION},"gateway":{self._gateway_json},"seq":{seq},'
            f'"sent_at":"{sent_at}","readings":[{",".join(bodies)}{tail}'
        )
        return Batch(seq=seq, readings=readings, payload=payload.encode())

    def setting(self, key: str) -> int | None:
        """A number the gateway keeps between runs (``next_seq`` is the outbox's own)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def keep_setting(self, key: str, value: int) -> None:
        if key == "next_seq":
            raise ValueError("next_seq belongs to the outbox")
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def close(self) -> None:
        if self._pending or self._acked:
            self.flush()
        self._db.close()
