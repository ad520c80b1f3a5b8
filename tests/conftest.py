"""Fixtures on real services: PostgreSQL and an MQTT broker.

Each fixture uses, in order: an environment variable, a server on the standard local port, or a
private server (zayton.localservers) started for the test session.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from ingest.migrate import migrate
from tests.parkdb import park_db
from zayton.localservers import HOST, LocalBroker, LocalPostgres, tcp_answers

DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"

__all__ = ["park_db"]  # a fixture of its own module, shared by the accounting and KPI tests

DatabaseFactory = Callable[[str], str]
"""Called with a name hint, creates a new empty database and returns its DSN."""


def _pg_answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=1):
            return True
    except psycopg.Error:
        return False


def dsn_for_database(dsn: str, dbname: str) -> str:
    """The same server as `dsn`, another database; keeps the URL form when given a URL."""
    if dsn.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(dsn)
        return urlunsplit(parts._replace(path=f"/{dbname}"))
    return make_conninfo(dsn, dbname=dbname)


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """DSN of a PostgreSQL superuser connection, on a server that lives for the session."""
    env = os.environ.get("ZAYTON_TEST_PG_DSN")
    if env:
        yield env
        return
    if _pg_answers(DEFAULT_PG_DSN):
        yield DEFAULT_PG_DSN
        return
    datadir = Path(tempfile.mkdtemp(prefix="zayton-test-pg-"))
    server = LocalPostgres(datadir, durable=False)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_database(pg_admin_dsn: str) -> Iterator[DatabaseFactory]:
    """Factory: `pg_database("hint")` creates a brand-new empty database and returns its DSN."""
    created: list[str] = []

    def create(hint: str) -> str:
        safe_hint = re.sub(r"[^a-z0-9_]+", "_", hint.lower()).strip("_")[:30] or "db"
        name = f"zayton_t_{safe_hint}_{secrets.token_hex(4)}"
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return dsn_for_database(pg_admin_dsn, name)

    yield create
    if created:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            for name in created:
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def mqtt_url() -> Iterator[str]:
    """URL (mqtt://host:port) of an MQTT broker that lives for the session."""
    env = os.environ.get("ZAYTON_TEST_MQTT_URL")
    if env:
        yield env
        return
    if tcp_answers(HOST, 1883, timeout=1.0):
        yield DEFAULT_MQTT_URL
        return
    datadir = Path(tempfile.mkdtemp(prefix="zayton-test-mqtt-"))
    broker = LocalBroker(datadir)
    try:
        yield broker.start()
    finally:
        broker.stop()
        shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture
def topic_prefix() -> str:
    """A unique MQTT topic root for one test, e.g. ``zt-0123456789ab``."""
    return f"zt-{secrets.token_hex(6)}"


@pytest.fixture
def migrated_database(pg_database: DatabaseFactory, request: pytest.FixtureRequest) -> str:
    """A new database of its own for one test, with the Zayton schema migrated into it."""
    dsn = pg_database(request.node.name)
    migrate(dsn)
    return dsn
