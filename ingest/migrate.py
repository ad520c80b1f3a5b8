"""Versioned, idempotent schema migrations for both storage paths.

``migrations/NNNN_name.sql`` runs on every database; ``NNNN_name.plain.sql`` and
``NNNN_name.timescale.sql`` are twins, one per storage path, kept side by side so they cannot
drift. The path is chosen once, when the first migration runs (TimescaleDB when the extension is
available, plain PostgreSQL otherwise), and recorded with every applied version; a database never
changes path afterwards. An advisory lock lets several processes migrate at once safely.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA = "zayton"
_LOCK_KEY = 0x7A61_7974  # "zayt"
_FILE = re.compile(r"(?P<version>\d{4})_(?P<name>[a-z0-9_]+)(?:\.(?P<path>plain|timescale))?\.sql")


class Storage(StrEnum):
    PLAIN = "plain"
    TIMESCALE = "timescale"


class MigrationError(RuntimeError):
    """The migrations folder or the database is not in a state migrations can handle."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: dict[Storage, str] = field(repr=False)


@dataclass(slots=True)
class MigrationResult:
    storage: Storage
    applied: list[Migration] = field(default_factory=list)
    current: int = 0


def discover(folder: Path = MIGRATIONS) -> list[Migration]:
    found: dict[int, dict[str, object]] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _FILE.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: not NNNN_name[.plain|.timescale].sql")
        version = int(match["version"])
        entry = found.setdefault(version, {"name": match["name"], "sql": {}})
        if entry["name"] != match["name"]:
            raise MigrationError(f"two migrations numbered {version}: {entry['name']}, {path.name}")
        sql: dict[Storage, str] = entry["sql"]  # type: ignore[assignment]
        text = path.read_text()
        for storage in [Storage(match["path"])] if match["path"] else list(Storage):
            if storage in sql:
                raise MigrationError(f"{path.name}: {storage} variant defined twice")
            sql[storage] = text
    migrations = []
    for version in sorted(found):
        entry = found[version]
        sql = entry["sql"]  # type: ignore[assignment]
        missing = [s.value for s in Storage if s not in sql]
        if missing:
            raise MigrationError(f"migration {version:04d} has no {' or '.join(missing)} variant")
        migrations.append(Migration(version, str(entry["name"]), dict(sql)))
    return migrations


def timescale_available(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return bool(row and row[0])


def migrate(dsn: str, *, storage: Storage | None = None) -> MigrationResult:
    """Bring the database up to the newest migration.

    ``storage`` forces a path on a new database and must match an existing one.
    """
    migrations = discover()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            return _migrate_locked(conn, migrations, storage)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _migrate_locked(
    conn: psycopg.Connection[tuple[object, ...]],
    migrations: list[Migration],
    forced: Storage | None,
) -> MigrationResult:
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            storage    text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    rows = conn.execute(f"SELECT version, storage FROM {SCHEMA}.schema_migrations").fetchall()
    applied = {int(str(version)) for version, _ in rows}
    paths = {Storage(str(path)) for _, path in rows}
    if len(paths) > 1:
        raise MigrationError(f"database has migrations of both storage paths: {sorted(paths)}")
    if paths:
        storage = paths.pop()
        if forced is not None and forced is not storage:
            raise MigrationError(f"database already uses {storage} storage, not {forced}")
    else:
        storage = forced or (Storage.TIMESCALE if timescale_available(conn) else Storage.PLAIN)
        log.info("new database: %s storage", storage)
    if storage is Storage.TIMESCALE:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    result = MigrationResult(storage=storage, current=max(applied, default=0))
    for migration in migrations:
        if migration.version in applied:
            continue
        with conn.transaction():
            conn.execute(migration.sql[storage].encode())
            conn.execute(
                f"INSERT INTO {SCHEMA}.schema_migrations (version, name, storage) "
                "VALUES (%s, %s, %s)",
                (migration.version, migration.name, storage.value),
            )
        log.info("applied migration %04d_%s (%s)", migration.version, migration.name, storage)
        result.applied.append(migration)
        result.current = migration.version
    return result


def latest_version() -> int:
    return max((m.version for m in discover()), default=0)
