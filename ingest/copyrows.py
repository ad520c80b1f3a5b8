"""Readings as PostgreSQL binary COPY data, encoded in bulk.

``COPY zayton.readings (point_id, ts, value, quality, delta) FROM STDIN (FORMAT BINARY)`` takes
a header, then per row a field count and each field as a length and its big-endian bytes (-1 for
NULL), then a trailer (PostgreSQL documentation, "COPY", section "Binary Format"). One
:class:`struct.Struct` per pattern of NULLs packs a whole row in one call, and a batch's distinct
timestamps are converted once, not once per reading; that is several times cheaper than
handing psycopg a tuple per row. On the way the rows' 15-minute buckets, UTC days and each
point's newest reading are gathered for the rest of the write.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from wire.payload import Quality, Reading

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
"""timestamptz travels as microseconds since this instant."""
QUALITY_CODES = {Quality.GOOD: 0, Quality.UNCERTAIN: 1, Quality.BAD: 2}
_US = timedelta(microseconds=1)

# Row: 5 fields; point_id int4, ts int8, value float8, quality int2, delta float8.
_VALUE_DELTA = struct.Struct(">hiiiqidihid")
_VALUE = struct.Struct(">hiiiqidihi")
_DELTA = struct.Struct(">hiiiqiihid")
_NEITHER = struct.Struct(">hiiiqiihi")


def utc_days(stamps: Iterable[datetime]) -> set[date]:
    """The UTC days of ``stamps`` (readings are partitioned by UTC day)."""
    return {when.astimezone(UTC).date() for when in stamps}


def micros(at: datetime) -> int:
    """``at`` as PostgreSQL stores a timestamptz: whole microseconds since 2000-01-01 UTC."""
    return (at - PG_EPOCH) // _US


class CopyRows:
    """Rows for ``zayton.readings``, added batch by batch, read out as one COPY buffer."""

    def __init__(self, bucket_us: int) -> None:
        self.chunks: list[bytes] = []
        """The rows, one chunk per :meth:`add`."""
        self._bucket_us = bucket_us
        self.count = 0
        self.buckets: set[int] = set()
        """Start of every bucket touched, in microseconds since 2000-01-01 UTC."""
        self.latest: Latest = {}

    def add(
        self,
        readings: Sequence[Reading],
        point_ids: Sequence[int],
        stamps: Mapping[str, datetime],
    ) -> bytes:
        """Add ``readings`` and return their rows; ``point_ids`` are their points', in order;
        ``stamps`` holds every ``ts`` among them with the instant it names."""
        at = {text: micros(when) for text, when in stamps.items()}
        width = self._bucket_us
        self.buckets.update(us - us % width for us in at.values())
        parts: list[bytes] = []
        latest, codes = self.latest, QUALITY_CODES
        both, value_only, delta_only, neither = (
            _VALUE_DELTA.pack,
            _VALUE.pack,
            _DELTA.pack,
            _NEITHER.pack,
        )
        for reading, point_id in zip(readings, point_ids, strict=True):
            us = at[reading.stamp]
            value, delta, code = reading.value, reading.delta, codes[reading.quality]
            if value is None:
                if delta is None:
                    parts.append(neither(5, 4, point_id, 8, us, -1, 2, code, -1))
                else:
                    parts.append(delta_only(5, 4, point_id, 8, us, -1, 2, code, 8, delta))
            elif delta is None:
                parts.append(value_only(5, 4, point_id, 8, us, 8, value, 2, code, -1))
            else:
                parts.append(both(5, 4, point_id, 8, us, 8, value, 2, code, 8, delta))
            newest = latest.get(point_id)
            if newest is None or newest[0] < us:
                latest[point_id] = (us, value, code)
        self.count += len(readings)
        chunk = b"".join(parts)
        self.chunks.append(chunk)
        return chunk

    def buffer(self) -> bytes:
        """The whole COPY data: header, rows, trailer."""
        return b"".join([HEADER, *self.chunks, TRAILER])


Latest = dict[int, tuple[int, float | None, int]]
"""point id: (microseconds since 2000-01-01 UTC, value, quality code) of its newest reading."""


def merge_latest(into: Latest, newer: Latest) -> None:
    for point_id, entry in newer.items():
        known = into.get(point_id)
        if known is None or known[0] < entry[0]:
            into[point_id] = entry


def latest_rows(latest: Latest) -> bytes:
    """COPY data of each point's newest reading, in the readings' row layout (no delta)."""
    value_only, neither = _VALUE.pack, _NEITHER.pack
    parts = [HEADER]
    for point_id, (us, value, code) in latest.items():
        if value is None:
            parts.append(neither(5, 4, point_id, 8, us, -1, 2, code, -1))
        else:
            parts.append(value_only(5, 4, point_id, 8, us, 8, value, 2, code, -1))
    parts.append(TRAILER)
    return b"".join(parts)
