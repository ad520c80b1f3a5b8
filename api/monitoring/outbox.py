"""The local outbox: every indicator set built, kept with its body, and its delivery to each
endpoint (data centre), acknowledged independently.

State lives in PostgreSQL (``zayton.monitoring_sets``, ``monitoring_set_items``,
``monitoring_deliveries``), so an uploader that restarts carries on where the last one stopped.
Sets are kept at least six months: :meth:`Outbox.purge` removes only sets that every endpoint
acknowledged and that ended before the retention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from api.monitoring.build import IndicatorSet
from api.monitoring.codes import Frequency
from api.monitoring.errors import ConfigError
from api.monitoring.formats import UploadFormat
from api.monitoring.items import Connection

MIN_KEEP_DAYS = 184
"""Six months at their longest (July to December): the least the specification allows."""
KEEP_DAYS = 186


@dataclass(frozen=True, slots=True)
class Stored:
    set_id: int
    revision: int
    changed: bool
    """False when the set was there already with the same values: nothing to send again."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A delivery that is due: one revision of one set, for one endpoint."""

    set_id: int
    endpoint: str
    revision: int
    message_id: str
    format: str
    content_type: str
    payload: bytes
    attempts: int


def _rows(built: IndicatorSet) -> list[tuple[object, ...]]:
    return [
        (str(v.code), v.name, int(v.source), v.unit, v.value, v.present, v.expected)
        for v in built.values
    ]


class Outbox:
    """The outbox on ``conn`` (autocommit; every method is one transaction), delivering to
    ``endpoints`` (names)."""

    def __init__(self, conn: Connection, endpoints: Sequence[str]) -> None:
        if len(set(endpoints)) != len(endpoints):
            raise ConfigError(f"endpoint names must differ: {list(endpoints)}")
        self.conn = conn
        self.endpoints = list(endpoints)

    def put(self, built: IndicatorSet, fmt: UploadFormat, *, now: datetime) -> Stored:
        """Keep ``built`` and make it due at every endpoint. A set already kept for the same
        unit and period keeps its revision if its values are the same, and otherwise becomes
        the next revision, due again everywhere."""
        period = built.period
        with self.conn.transaction():
            row = self.conn.execute(
                """SELECT id, revision FROM zayton.monitoring_sets
                   WHERE firm_id = %s AND frequency = %s AND period_start = %s FOR UPDATE""",
                (built.firm_id, int(period.frequency), period.start),
            ).fetchone()
            if row is not None:
                set_id, revision = int(row[0]), int(row[1])
                kept = self.conn.execute(
                    """SELECT code, name, source, unit, value, present, expected
                       FROM zayton.monitoring_set_items WHERE set_id = %s ORDER BY code""",
                    (set_id,),
                ).fetchall()
                if kept == sorted(_rows(built)):
                    return Stored(set_id, revision, changed=False)
                revision += 1
            built = built.with_revision(1 if row is None else revision)
            values = (
                built.unit_code, built.revision, built.message_id, built.built_at, built.present,
                built.expected, fmt.name, fmt.content_type, fmt.encode(built),
            )  # fmt: skip
            if row is None:
                set_id = self.conn.execute(
                    """INSERT INTO zayton.monitoring_sets
                           (firm_id, frequency, period_start, period_end, unit_code, revision,
                            message_id, built_at, present, expected, format, content_type,
                            payload)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                       RETURNING id""",
                    (built.firm_id, int(period.frequency), period.start, period.end, *values),
                ).fetchall()[0][0]
            else:
                self.conn.execute(
                    """UPDATE zayton.monitoring_sets SET unit_code = %s, revision = %s,
                           message_id = %s, built_at = %s, present = %s, expected = %s,
                           format = %s, content_type = %s, payload = %s
                       WHERE id = %s""",
                    (*values, set_id),
                )
                self.conn.execute(
                    "DELETE FROM zayton.monitoring_set_items WHERE set_id = %s", (set_id,)
                )
                self.conn.execute(
                    """UPDATE zayton.monitoring_deliveries SET revision = %s,
                           acknowledged_at = NULL, attempts = 0, last_attempt_at = NULL,
                           last_error = NULL, next_attempt_at = %s
                       WHERE set_id = %s""",
                    (built.revision, now, set_id),
                )
            with self.conn.cursor() as cursor:
                cursor.executemany(
                    """INSERT INTO zayton.monitoring_set_items
                           (set_id, code, name, source, unit, value, present, expected)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                    [(set_id, *item) for item in _rows(built)],
                )
            self._deliver(set_id, built.revision, now)
        return Stored(set_id, built.revision, changed=True)

    def _deliver(self, set_id: int, revision: int, now: datetime) -> None:
        self.conn.execute(
            """INSERT INTO zayton.monitoring_deliveries
                   (set_id, endpoint, revision, next_attempt_at)
               SELECT %s, endpoint, %s, %s FROM unnest(%s::text[]) AS endpoint
               ON CONFLICT DO NOTHING""",
            (set_id, revision, now, self.endpoints),
        )

    def enqueue(self, endpoint: str, since: datetime, *, now: datetime) -> int:
        """Make every set that ended after ``since`` due at ``endpoint`` too (a data centre
        added later); returns how many deliveries were added."""
        cursor = self.conn.execute(
            """INSERT INTO zayton.monitoring_deliveries
                   (set_id, endpoint, revision, next_attempt_at)
               SELECT id, %s, revision, %s FROM zayton.monitoring_sets WHERE period_end > %s
               ON CONFLICT DO NOTHING""",
            (endpoint, now, since),
        )
        return cursor.rowcount

    def built_periods(self, firm_id: int, frequency: Frequency, since: datetime) -> set[datetime]:
        """The starts of the periods kept for a unit and frequency that begin at or after
        ``since``."""
        rows = self.conn.execute(
            """SELECT period_start FROM zayton.monitoring_sets
               WHERE firm_id = %s AND frequency = %s AND period_start >= %s""",
            (firm_id, int(frequency), since),
        ).fetchall()
        return {row[0] for row in rows}

    def due(self, endpoint: str, now: datetime, limit: int = 100) -> list[Pending]:
        """The deliveries to ``endpoint`` that wait for an attempt, oldest period first."""
        rows = self.conn.execute(
            """SELECT s.id, d.endpoint, s.revision, s.message_id, s.format, s.content_type,
                      s.payload, d.attempts
               FROM zayton.monitoring_deliveries d
               JOIN zayton.monitoring_sets s ON s.id = d.set_id
               WHERE d.endpoint = %s AND d.acknowledged_at IS NULL AND d.next_attempt_at <= %s
               ORDER BY s.period_start, s.frequency DESC, s.id
               LIMIT %s""",
            (endpoint, now, limit),
        ).fetchall()
        return [Pending(*row) for row in rows]

    def acknowledged(self, pending: Pending, *, now: datetime) -> bool:
        """Record the acknowledgement of ``pending``; False if the set has been rebuilt since
        (the new revision is still due)."""
        cursor = self.conn.execute(
            """UPDATE zayton.monitoring_deliveries
               SET acknowledged_at = %s, attempts = attempts + 1, last_attempt_at = %s,
                   last_error = NULL
               WHERE set_id = %s AND endpoint = %s AND revision = %s""",
            (now, now, pending.set_id, pending.endpoint, pending.revision),
        )
        return cursor.rowcount == 1

    def failed(self, pending: Pending, error: str, *, now: datetime, retry_at: datetime) -> None:
        self.conn.execute(
            """UPDATE zayton.monitoring_deliveries
               SET attempts = attempts + 1, last_attempt_at = %s, last_error = %s,
                   next_attempt_at = %s
               WHERE set_id = %s AND endpoint = %s AND revision = %s""",
            (now, error[:2000], retry_at, pending.set_id, pending.endpoint, pending.revision),
        )

    def purge(self, *, now: datetime, keep_days: int = KEEP_DAYS) -> int:
        """Remove the sets that ended more than ``keep_days`` ago and that every endpoint they
        were due at acknowledged; returns how many. A set never delivered is kept."""
        if keep_days < MIN_KEEP_DAYS:
            raise ConfigError(
                f"sets are kept at least six months ({MIN_KEEP_DAYS} days), not {keep_days} days"
            )
        cursor = self.conn.execute(
            """DELETE FROM zayton.monitoring_sets s
               WHERE s.period_end < %s
                 AND EXISTS (SELECT FROM zayton.monitoring_deliveries d WHERE d.set_id = s.id)
                 AND NOT EXISTS (SELECT FROM zayton.monitoring_deliveries d
                                 WHERE d.set_id = s.id AND d.acknowledged_at IS NULL)""",
            (now - timedelta(days=keep_days),),
        )
        return cursor.rowcount
