"""Online monitoring of key energy-using units: 16-digit codes, indicator sets built from the
rollups of a real PostgreSQL, the outbox, delivery over HTTPS to two local data centres that
the test runs (one refusing at first), a restart in the middle, the plug-in registry, and the
completeness and consistency reports."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trustme

from api.coefficients import Basis, Coefficient, Kind, Table, load_file, seed_defaults
from api.monitoring.build import IndicatorSet, build
from api.monitoring.codes import TOTAL_CODE, Frequency, ItemCode, Source, default_code
from api.monitoring.config import load_settings
from api.monitoring.errors import CodeError, ConfigError, FormatError
from api.monitoring.formats import Reply, Verdict
from api.monitoring.items import Unit, enter_manual, load_unit
from api.monitoring.outbox import Outbox
from api.monitoring.periods import Period, periods
from api.monitoring.plugins import ENTRY_POINT_GROUP, formats, get_format
from api.monitoring.reference import REFERENCE
from api.monitoring.reports import completeness, consistency
from api.monitoring.service import Monitor, MonitorSettings
from api.monitoring.upload import Backoff, Endpoint, Uploader

DAY = date(2026, 11, 20)
MIDNIGHT = datetime(2026, 11, 19, 16, 0, tzinfo=UTC)
"""2026-11-20 00:00 in Asia/Shanghai (UTC+8, no daylight saving)."""
MINUTE = timedelta(minutes=1)
DAY_SPAN = timedelta(days=1)
UNIT_CODE = "91350502MA00000001"
TABLE = load_file()

ELECTRICITY = "0000000001210000"
EXPORT = "0000000004211000"
GAS = "0000000001310000"
WATER = "0000000001710000"
TOTAL = "0000000002100000"
LINE = "0101000001210001"
OUTPUT = "0000000003900000"


# ---------------------------------------------------------------------------------------------
# Codes and periods


@pytest.mark.unit
def test_a_code_is_its_seven_fields_in_order_and_parses_back() -> None:
    code = ItemCode("01", "02", "03", "04", "05", "0607", "08")
    assert str(code) == "0102030405060708"
    assert ItemCode.parse("0102030405060708") == code
    assert ItemCode.parse(LINE).process == "01"
    assert ItemCode.parse(LINE).category == "2100"
    assert ItemCode.parse(LINE).use == "01"
    # Zayton's defaults: the unit as a whole, data type, category, use.
    assert str(default_code("electricity")) == ELECTRICITY
    assert str(default_code("electricity_export")) == EXPORT
    assert str(default_code("natural_gas")) == GAS
    assert str(TOTAL_CODE) == TOTAL


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("010203040506070", "16 digits"),
        ("01020304050607080", "16 digits"),
        ("01020304050607O8", "16 digits"),
        ("", "16 digits"),
        ("０１０２０３０４０５０６０７０８", "16 digits"),
    ],
)
def test_a_code_that_is_not_sixteen_digits_is_refused(text: str, message: str) -> None:
    with pytest.raises(CodeError, match=message):
        ItemCode.parse(text)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (("1", "02", "03", "04", "05", "0607", "08"), "process must be 2 digits"),
        (("01", "02", "03", "04", "05", "607", "08"), "category must be 4 digits"),
        (("01", "02", "03", "04", "5a", "0607", "08"), "data_type must be 2 digits"),
        (("01", "02", "03", "004", "05", "0607", "08"), "equipment_number must be 2 digits"),
    ],
)
def test_each_field_is_checked_for_its_width(fields: tuple[str, ...], message: str) -> None:
    with pytest.raises(CodeError, match=message):
        ItemCode(*fields)
    with pytest.raises(CodeError, match="no default category for carrier 'hydrogen'"):
        default_code("hydrogen")


@pytest.mark.unit
def test_periods_start_at_local_midnight_and_fit_in_whole_buckets() -> None:
    day = Period(Frequency.DAY, MIDNIGHT)
    assert (day.end, day.buckets, str(day)) == (MIDNIGHT + timedelta(days=1), 96, "2026-11-20")
    month = Period.containing(Frequency.MONTH, MIDNIGHT)
    assert month.start == datetime(2026, 10, 31, 16, tzinfo=UTC)
    assert (month.buckets, month.next().buckets) == (30 * 96, 31 * 96)
    half_hour = Period(Frequency.REALTIME, MIDNIGHT + 30 * MINUTE, minutes=30)
    assert half_hour.buckets == 2
    with pytest.raises(ConfigError, match="not the start of a day period"):
        Period(Frequency.DAY, datetime(2026, 11, 20, 0, 0, tzinfo=UTC))  # UTC, not local
    with pytest.raises(ConfigError, match="not the start of a real-time period of 30 minutes"):
        Period(Frequency.REALTIME, MIDNIGHT + 15 * MINUTE, minutes=30)
    with pytest.raises(ConfigError, match="every 15, 30 or 60 minutes"):
        Period(Frequency.REALTIME, MIDNIGHT, minutes=20)
    assert len(periods(Frequency.REALTIME, MIDNIGHT, MIDNIGHT + timedelta(days=1))) == 96
    assert periods(Frequency.DAY, MIDNIGHT + MINUTE, MIDNIGHT + timedelta(days=2)) == [
        Period(Frequency.DAY, MIDNIGHT + timedelta(days=1))
    ]


# ---------------------------------------------------------------------------------------------
# A unit on a real database

Reading = tuple[int, datetime, float]
"""point id, time, delta (the consumption since the previous reading)."""


def execute(dsn: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def write(dsn: str, readings: list[Reading]) -> None:
    """Store counter readings with their deltas and bring the rollups up to date."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "SELECT zayton.ensure_readings_partitions(%s, %s)",
            (min(r[1] for r in readings).date(), max(r[1] for r in readings).date()),
        )
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO zayton.readings (point_id, ts, value, delta) VALUES (%s, %s, %s, %s)",
                [(point, ts, 1000.0 + n, delta) for n, (point, ts, delta) in enumerate(readings)],
            )
        conn.execute(
            """INSERT INTO zayton.rollup_dirty (bucket)
               SELECT DISTINCT date_bin('15 minutes', ts, timestamptz '2000-01-01 00:00+00')
               FROM unnest(%s::timestamptz[]) AS ts""",
            ([r[1] for r in readings],),
        )
        conn.commit()
        conn.execute("SELECT zayton.refresh_rollups()")


def make_unit(dsn: str, **unit: Any) -> dict[str, int]:
    """A shoe factory registered as a key energy-using unit: a main electricity meter (import
    and export), a gas and a water meter on its boundary, a sole-moulding line's meter (main
    secondary, configured as an item of its own), a CNC machine's meter (main equipment, not
    configured) and a manual item for the pairs of shoes made."""
    columns = ", ".join(["firm_id", "unit_code", *unit])
    values = ", ".join(["%s"] * (2 + len(unit)))
    with psycopg.connect(dsn) as conn:
        firm = conn.execute(
            "INSERT INTO zayton.firms (code, name) VALUES ('shoes', '鞋业') RETURNING id"
        ).fetchall()[0][0]

        def point(device: str, level: int, name: str, unit: str, carrier: str) -> int:
            device_id = conn.execute(
                """INSERT INTO zayton.devices (site, name, firm_id, metering_level)
                   VALUES ('site-1', %s, %s, %s)
                   ON CONFLICT (site, name) DO UPDATE SET name = excluded.name RETURNING id""",
                (device, firm, level),
            ).fetchall()[0][0]
            return int(
                conn.execute(
                    """INSERT INTO zayton.points (device_id, name, unit, kind, carrier)
                       VALUES (%s, %s, %s, 'counter', %s) RETURNING id""",
                    (device_id, name, unit, carrier),
                ).fetchall()[0][0]
            )

        conn.execute(
            f"INSERT INTO zayton.monitoring_units ({columns}) VALUES ({values})",
            (firm, UNIT_CODE, *unit.values()),
        )
        ids = {
            "firm": firm,
            "import": point("main", 1, "energy_import_kwh", "kWh", "electricity"),
            "export": point("main", 1, "energy_export_kwh", "kWh", "electricity_export"),
            "gas": point("gas", 1, "gas_volume_m3", "m3", "natural_gas"),
            "water": point("water", 1, "water_volume_m3", "m3", "water"),
            "line": point("line-1", 2, "energy_import_kwh", "kWh", "electricity"),
            "cnc": point("cnc-7", 3, "energy_import_kwh", "kWh", "electricity"),
        }
        line = conn.execute(
            """INSERT INTO zayton.monitoring_items (firm_id, code, name, source, unit)
               VALUES (%s, %s, '成型线 sole moulding line', 4, 'kWh') RETURNING id""",
            (firm, LINE),
        ).fetchall()[0][0]
        conn.execute(
            "INSERT INTO zayton.monitoring_item_points (item_id, point_id) VALUES (%s, %s)",
            (line, ids["line"]),
        )
        conn.execute(
            """INSERT INTO zayton.monitoring_items (firm_id, code, name, source, unit, frequencies)
               VALUES (%s, %s, '产量 pairs made', 5, 'pair', '{1,2}')""",
            (firm, OUTPUT),
        )
    return ids


def a_day_of_readings(ids: dict[str, int], hole: range = range(40, 41)) -> list[Reading]:
    """The day 2026-11-20. Main meter every 5 minutes, 2.5 kWh each, silent in the 15-minute
    buckets of ``hole`` (bucket 40 is 10:00); it exports 0.5 kWh per bucket from 11:00 to 13:00.
    Gas 1 m³, water 0.2 m³, the line 1 kWh and the CNC machine 5 kWh per bucket, all day."""
    readings: list[Reading] = []
    for bucket in range(96):
        at = MIDNIGHT + bucket * 15 * MINUTE
        if bucket not in hole:
            readings += [(ids["import"], at + k * 5 * MINUTE, 2.5) for k in range(3)]
            readings.append((ids["export"], at, 0.5 if 44 <= bucket < 52 else 0.0))
        readings += [(ids["gas"], at, 1.0), (ids["water"], at, 0.2), (ids["line"], at, 1.0)]
        readings.append((ids["cnc"], at, 5.0))
    return readings


def values(built: IndicatorSet) -> dict[str, tuple[float | None, int, int]]:
    return {str(v.code): (v.value, v.present, v.expected) for v in built.values}


def approx(expected: Mapping[str, tuple[float | None, int, int]]) -> Any:
    return {
        code: (None if value is None else pytest.approx(value, rel=1e-12), present, of)
        for code, (value, present, of) in expected.items()
    }


@pytest.mark.integration
def test_sets_are_built_from_the_rollups_with_the_data_there_is(migrated_database: str) -> None:
    dsn = migrated_database
    ids = make_unit(dsn, region="fujian")
    write(dsn, a_day_of_readings(ids))
    with psycopg.connect(dsn, autocommit=True) as conn:
        unit = load_unit(conn, UNIT_CODE)
        day = Period(Frequency.DAY, MIDNIGHT)
        month = Period.containing(Frequency.MONTH, MIDNIGHT)
        enter_manual(conn, unit, OUTPUT, day, 1200.0, entered_by="energy manager")
        enter_manual(conn, unit, OUTPUT, month, 36000.0, entered_by="energy manager")
        at = {
            hour: build(
                conn,
                unit,
                Period(Frequency.REALTIME, MIDNIGHT + hour * 60 * MINUTE),
                TABLE,
                now=MIDNIGHT,
            )
            for hour in (10, 12)
        }
        daily = build(conn, unit, day, TABLE, now=MIDNIGHT)
        monthly = build(conn, unit, month, TABLE, now=MIDNIGHT)
        on_generation = build(conn, replace(unit, basis=Basis.GENERATION), day, TABLE, now=MIDNIGHT)
        with pytest.raises(ConfigError, match="no manual item 0000000001210000"):
            enter_manual(conn, unit, ELECTRICITY, day, 1.0, entered_by="someone")

    # Worked by hand. kgce per unit (GB/T 2589-2020): electricity 0.1229 (calorific basis),
    # natural gas 1.2143; exports are deducted; water (a working medium) is not in the total,
    # nor is any meter below the boundary.
    elec, gas = 0.1229 / 1000, 1.2143 / 1000  # tce per kWh, per m³
    # 10:00: the main meter is silent. The total is what there is (gas), 0 of 1 buckets full.
    assert values(at[10]) == approx({
        LINE: (1.0, 1, 1), ELECTRICITY: (None, 0, 1), EXPORT: (None, 0, 1), GAS: (1.0, 1, 1),
        WATER: (0.2, 1, 1), TOTAL: (1.0 * gas, 0, 1),
    })  # fmt: skip
    assert values(at[12]) == approx({
        LINE: (1.0, 1, 1), ELECTRICITY: (7.5, 1, 1), EXPORT: (0.5, 1, 1), GAS: (1.0, 1, 1),
        WATER: (0.2, 1, 1), TOTAL: ((7.5 - 0.5) * elec + 1.0 * gas, 1, 1),
    })  # fmt: skip
    # The day: 95 buckets of 3 readings of the main meter; 8 buckets of export; 96 of the rest.
    day_values = {
        LINE: (96.0, 96, 96), OUTPUT: (1200.0, 1, 1), ELECTRICITY: (712.5, 95, 96),
        EXPORT: (4.0, 95, 96), GAS: (96.0, 96, 96), WATER: (19.2, 96, 96),
        TOTAL: ((712.5 - 4.0) * elec + 96.0 * gas, 95, 96),
    }  # fmt: skip
    assert values(daily) == approx(day_values)
    assert daily.completeness == (96 + 1 + 95 + 95 + 96 + 96 + 95) / (6 * 96 + 1)
    assert daily.value(OUTPUT).source is Source.MANUAL
    assert daily.placeholders == ()
    # November holds that one day of data among its 30 × 96 buckets.
    month_values = {
        code: (36000.0 if code == OUTPUT else value, present, 1 if code == OUTPUT else 2880)
        for code, (value, present, _) in day_values.items()
    }
    assert values(monthly) == approx(month_values)
    # On the generation basis the placeholder 0.300 kgce/kWh is used, and the set says so.
    assert on_generation.value(TOTAL).value == pytest.approx(708.5 * 0.3 / 1000 + 96.0 * gas)
    assert on_generation.placeholders == ("electricity",)


@pytest.mark.integration
def test_a_month_across_a_coefficient_change_converts_each_part_with_its_own(
    migrated_database: str,
) -> None:
    """The factory's gas is measured at 1.3000 kgce/m³ from 21 November: November's total takes
    GB/T 2589's 1.2143 for the 20th and the measured value for the 21st, as the energy
    accounting does."""
    dsn = migrated_database
    ids = make_unit(dsn, region="fujian")
    second = [(point, at + DAY_SPAN, q) for point, at, q in a_day_of_readings(ids, range(0))]
    write(dsn, a_day_of_readings(ids) + second)
    measured = Coefficient(
        Kind.CONVERSION, "natural_gas", 1.3000, "kgce/m3", date(2026, 11, 21), "measured",
        firm="shoes",
    )  # fmt: skip
    table = Table([*TABLE.coefficients, measured])
    with psycopg.connect(dsn, autocommit=True) as conn:
        unit = load_unit(conn, UNIT_CODE)
        month = build(conn, unit, Period.containing(Frequency.MONTH, MIDNIGHT), table, now=MIDNIGHT)
        days = [
            build(conn, unit, Period(Frequency.DAY, MIDNIGHT + k * DAY_SPAN), table, now=MIDNIGHT)
            for k in (0, 1)
        ]
    elec = 0.1229 / 1000
    # The 20th: 712.5 kWh in, 4.0 out, 96 m³ at 1.2143; the 21st: 720 in, 4.0 out, 96 m³ at 1.3.
    first_day = (712.5 - 4.0) * elec + 96.0 * 1.2143 / 1000
    second_day = (720.0 - 4.0) * elec + 96.0 * 1.3000 / 1000
    assert days[0].value(TOTAL).value == pytest.approx(first_day, rel=1e-12)
    assert days[1].value(TOTAL).value == pytest.approx(second_day, rel=1e-12)
    assert month.value(TOTAL).value == pytest.approx(first_day + second_day, rel=1e-12)
    assert month.value(GAS).value == pytest.approx(192.0, rel=1e-12)


@pytest.mark.integration
def test_a_code_given_twice_or_an_instrument_item_without_points_is_a_config_error(
    migrated_database: str,
) -> None:
    dsn = migrated_database
    ids = make_unit(dsn)
    day = Period(Frequency.DAY, MIDNIGHT)
    # A firm-level default for the gas boundary counters, coded as the line already is.
    execute(
        dsn,
        "INSERT INTO zayton.monitoring_defaults (firm_id, carrier, code) VALUES (%s, %s, %s)",
        (ids["firm"], "natural_gas", LINE),
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        unit = load_unit(conn, UNIT_CODE)
        with pytest.raises(ConfigError, match=f"two data items coded {LINE}"):
            build(conn, unit, day, TABLE, now=MIDNIGHT)
        conn.execute("UPDATE zayton.monitoring_defaults SET code = '0000000001310101'")
        assert build(conn, unit, day, TABLE, now=MIDNIGHT).value("0000000001310101").name
        conn.execute("DELETE FROM zayton.monitoring_item_points")
        with pytest.raises(ConfigError, match=f"item {LINE}: an instrument item needs points"):
            build(conn, unit, day, TABLE, now=MIDNIGHT)
        with pytest.raises(ConfigError, match="every 15 minutes, not 30"):
            build(conn, unit, Period(Frequency.REALTIME, MIDNIGHT, 30), TABLE, now=MIDNIGHT)


# ---------------------------------------------------------------------------------------------
# Delivery over HTTPS

Answer = Callable[[bytes], tuple[int, bytes]]


def acknowledge(body: bytes) -> tuple[int, bytes]:
    return 200, json.dumps({"ack": json.loads(body)["message_id"]}).encode()


def unavailable(_: bytes) -> tuple[int, bytes]:
    return 503, b"Service Unavailable"


def not_an_acknowledgement(_: bytes) -> tuple[int, bytes]:
    return 200, b"<html>maintenance</html>"


class Platform:
    """A data centre on 127.0.0.1 over HTTPS: each POST gets the next answer of ``answers``
    (the last one repeats); ``client_ca``: client certificates are required, signed by it."""

    def __init__(
        self, ca: trustme.CA, answers: list[Answer], client_ca: trustme.CA | None = None
    ) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.received = threading.Condition()
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with platform.received:
                    platform.requests.append((dict(self.headers), body))
                    platform.received.notify_all()
                answer = answers[min(len(platform.requests), len(answers)) - 1]
                status, reply = answer(body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        if client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            client_ca.configure_trust(context)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/upload"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def wait_for(self, requests: int, timeout: float) -> bool:
        with self.received:
            return self.received.wait_for(lambda: len(self.requests) >= requests, timeout)

    def __enter__(self) -> Platform:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def deliveries(dsn: str) -> dict[str, tuple[Any, ...]]:
    rows = execute(
        dsn,
        """SELECT endpoint, acknowledged_at, attempts, last_error, next_attempt_at
           FROM zayton.monitoring_deliveries ORDER BY endpoint""",
    )
    return {row[0]: row[1:] for row in rows}


@pytest.fixture
def pki(tmp_path: Path) -> tuple[trustme.CA, Path, Path]:
    """A CA, its certificate as a file, and a client certificate (with its key) it signed."""
    ca = trustme.CA()
    ca_file, client = tmp_path / "ca.pem", tmp_path / "unit.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert("unit@shoes.example").private_key_and_cert_chain_pem.write_to_path(str(client))
    return ca, ca_file, client


@pytest.mark.integration
def test_each_endpoint_is_retried_until_it_acknowledges_and_a_restart_resumes(
    migrated_database: str, pki: tuple[trustme.CA, Path, Path]
) -> None:
    dsn = migrated_database
    ca, ca_file, client = pki
    write(dsn, a_day_of_readings(make_unit(dsn)))
    clock = Clock(MIDNIGHT + timedelta(days=1))
    backoff = Backoff(base_s=60, cap_s=3600, jitter=0.5)
    names = ["dc-a", "dc-b"]
    with (
        Platform(ca, [acknowledge]) as a,
        Platform(ca, [unavailable, not_an_acknowledgement, acknowledge], client_ca=ca) as b,
    ):
        endpoints = [
            Endpoint("dc-a", a.url, ca_file=ca_file),
            Endpoint("dc-b", b.url, ca_file=ca_file, client_cert=client),
        ]

        def upload_pass() -> dict[str, tuple[int, int, str | None]]:
            # Every pass is a new uploader on a new connection: a restart, as far as it goes.
            with psycopg.connect(dsn, autocommit=True) as conn:
                uploader = Uploader(
                    Outbox(conn, names),
                    endpoints,
                    backoff=backoff,
                    clock=clock,
                    rng=random.Random(7),  # noqa: S311 (repeatable jitter)
                )
                with uploader:
                    done = uploader.upload_due()
            return {name: (p.sent, p.acknowledged, p.error) for name, p in done.items()}

        with psycopg.connect(dsn, autocommit=True) as conn:
            unit = load_unit(conn, UNIT_CODE)
            built = build(conn, unit, Period(Frequency.DAY, MIDNIGHT), TABLE, now=clock())
            stored = Outbox(conn, names).put(built, REFERENCE, now=clock())
        message_id = f"{UNIT_CODE}-1-202611200000-r1"
        assert (stored.revision, stored.changed) == (1, True)

        t0 = clock()
        assert upload_pass() == {
            "dc-a": (1, 1, None),
            "dc-b": (1, 0, "HTTP 503: Service Unavailable"),
        }
        state = deliveries(dsn)
        assert state["dc-a"][:3] == (t0, 1, None)
        ack_b, attempts_b, error_b, next_b = state["dc-b"]
        assert (ack_b, attempts_b, error_b) == (None, 1, "HTTP 503: Service Unavailable")
        assert t0 + timedelta(seconds=30) <= next_b <= t0 + timedelta(seconds=60)

        clock.advance(29)  # not due yet: nothing is sent anywhere
        assert upload_pass() == {"dc-a": (0, 0, None), "dc-b": (0, 0, None)}

        clock.advance(31)
        t1 = clock()
        assert upload_pass()["dc-b"] == (
            1,
            0,
            "not an acknowledgement: <html>maintenance</html>",
        )
        _, attempts_b, _, next_b = deliveries(dsn)["dc-b"]
        assert attempts_b == 2
        assert t1 + timedelta(seconds=60) <= next_b <= t1 + timedelta(seconds=120)

        clock.advance(120)
        assert upload_pass() == {"dc-a": (0, 0, None), "dc-b": (1, 1, None)}
        assert deliveries(dsn)["dc-b"][:3] == (clock(), 3, None)
        assert upload_pass() == {"dc-a": (0, 0, None), "dc-b": (0, 0, None)}

    # dc-a got the set once; dc-b three times, byte for byte the same body.
    assert len(a.requests) == 1
    assert len(b.requests) == 3
    assert {body for _, body in b.requests} == {a.requests[0][1]}
    assert {headers["Idempotency-Key"] for headers, _ in a.requests + b.requests} == {message_id}
    body = json.loads(a.requests[0][1])
    assert (body["schema"], body["message_id"], body["frequency"]) == (
        "zayton-monitoring/1",
        message_id,
        1,
    )
    assert body["period_start"] == "2026-11-20T00:00:00+08:00"
    assert {item["code"]: item["value"] for item in body["items"]}[GAS] == 96.0


@pytest.mark.integration
def test_a_certificate_that_does_not_verify_is_never_acknowledged(
    migrated_database: str, pki: tuple[trustme.CA, Path, Path]
) -> None:
    dsn = migrated_database
    make_unit(dsn)
    clock = Clock(MIDNIGHT + timedelta(days=1))
    ca, ca_file, client = pki
    with (
        Platform(trustme.CA(), [acknowledge]) as stranger,  # signed by a CA nobody trusts
        Platform(ca, [acknowledge], client_ca=ca) as picky,  # asks for a client certificate
    ):
        endpoints = [
            Endpoint("stranger", stranger.url, ca_file=ca_file, client_cert=client),
            Endpoint("system-cas", stranger.url, client_cert=client),
            Endpoint("no-client-cert", picky.url, ca_file=ca_file),
        ]
        with psycopg.connect(dsn, autocommit=True) as conn:
            outbox = Outbox(conn, [e.name for e in endpoints])
            unit = load_unit(conn, UNIT_CODE)
            outbox.put(
                build(conn, unit, Period(Frequency.DAY, MIDNIGHT), TABLE, now=clock()),
                REFERENCE,
                now=clock(),
            )
            with Uploader(outbox, endpoints, clock=clock) as uploader:
                done = uploader.upload_due()
    assert stranger.requests == picky.requests == []
    errors = {name: p.error for name, p in done.items()}
    assert all(p.sent == 1 and p.acknowledged == 0 for p in done.values())
    assert "CERTIFICATE_VERIFY_FAILED" in str(errors["stranger"])
    assert "CERTIFICATE_VERIFY_FAILED" in str(errors["system-cas"])
    assert errors["no-client-cert"] is not None
    assert [row[:2] for row in deliveries(dsn).values()] == [(None, 1)] * 3


@pytest.mark.unit
def test_backoff_doubles_up_to_its_cap_with_jitter_below_each_step() -> None:
    backoff = Backoff(base_s=30, cap_s=600, jitter=0.5)
    rng = random.Random(3)  # noqa: S311 (repeatable jitter)
    for failures, ceiling in [(1, 30), (2, 60), (3, 120), (5, 480), (6, 600), (40, 600)]:
        delays = [backoff.delay(failures, rng).total_seconds() for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), failures
        assert len(set(delays)) > 1, "jitter spreads the retries"


@pytest.mark.unit
def test_endpoints_are_https_and_their_tls_files_must_open(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="uploads go over HTTPS"):
        Endpoint("dc", "http://127.0.0.1/upload")
    with pytest.raises(ConfigError, match=r"endpoint dc: .*No such file"):
        Endpoint("dc", "https://127.0.0.1/upload", ca_file=tmp_path / "missing.pem").ssl_context()


# ---------------------------------------------------------------------------------------------
# Outbox: revisions and retention


@pytest.mark.integration
def test_a_rebuilt_set_with_other_values_is_a_new_revision_due_again(
    migrated_database: str,
) -> None:
    dsn = migrated_database
    ids = make_unit(dsn)
    write(dsn, a_day_of_readings(ids))
    day = Period(Frequency.DAY, MIDNIGHT)
    now = MIDNIGHT + timedelta(days=1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        outbox = Outbox(conn, ["dc-a"])
        unit = load_unit(conn, UNIT_CODE)
        first = outbox.put(build(conn, unit, day, TABLE, now=now), REFERENCE, now=now)
        (pending,) = outbox.due("dc-a", now)
        assert outbox.acknowledged(pending, now=now)
        again = outbox.put(build(conn, unit, day, TABLE, now=now), REFERENCE, now=now)
        assert (again.set_id, again.revision, again.changed) == (first.set_id, 1, False)
        assert outbox.due("dc-a", now) == []
        enter_manual(conn, unit, OUTPUT, day, 800.0, entered_by="energy manager")
        later = now + timedelta(hours=2)
        third = outbox.put(build(conn, unit, day, TABLE, now=later), REFERENCE, now=later)
        assert (third.set_id, third.revision, third.changed) == (first.set_id, 2, True)
        (due,) = outbox.due("dc-a", later)
        assert due.message_id.endswith("-r2")
        assert json.loads(due.payload)["revision"] == 2
        # An acknowledgement of revision 1 arriving now changes nothing.
        assert not outbox.acknowledged(pending, now=later)
        assert len(outbox.due("dc-a", later)) == 1


@pytest.mark.integration
def test_purge_removes_only_acknowledged_sets_older_than_six_months(
    migrated_database: str,
) -> None:
    dsn = migrated_database
    make_unit(dsn)
    now = MIDNIGHT + timedelta(days=1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        outbox = Outbox(conn, ["dc-a", "dc-b"])
        unit = load_unit(conn, UNIT_CODE)
        for days_ago, acknowledged_by in [(200, 2), (200, 1), (100, 2)]:
            start = Period.containing(Frequency.DAY, now - timedelta(days=days_ago)).start
            start -= timedelta(minutes=15 * acknowledged_by)  # three distinct periods
            period = Period(Frequency.REALTIME, start)
            stored = outbox.put(build(conn, unit, period, TABLE, now=now), REFERENCE, now=now)
            for endpoint in ["dc-a", "dc-b"][:acknowledged_by]:
                (pending,) = [p for p in outbox.due(endpoint, now) if p.set_id == stored.set_id]
                assert outbox.acknowledged(pending, now=now)
        with pytest.raises(ConfigError, match="at least six months"):
            outbox.purge(now=now, keep_days=90)
        assert outbox.purge(now=now) == 1
        left = conn.execute(
            "SELECT count(*), count(DISTINCT set_id) FROM zayton.monitoring_deliveries"
        ).fetchall()
    assert left == [(4, 2)]
    assert execute(dsn, "SELECT count(*) FROM zayton.monitoring_sets") == [(2,)]


# ---------------------------------------------------------------------------------------------
# Reports


@pytest.mark.integration
def test_completeness_and_consistency_reports_fail_below_their_thresholds(
    migrated_database: str,
) -> None:
    dsn = migrated_database
    ids = make_unit(dsn)
    # The main meter is silent for three hours (12 buckets: 84 of 96, below 90%).
    write(dsn, a_day_of_readings(ids, hole=range(40, 52)))
    now = MIDNIGHT + timedelta(days=1, hours=1)
    day = Period(Frequency.DAY, MIDNIGHT)
    month = Period.containing(Frequency.MONTH, MIDNIGHT)
    with psycopg.connect(dsn, autocommit=True) as conn:
        unit = load_unit(conn, UNIT_CODE)
        outbox = Outbox(conn, ["dc-a", "dc-b"])
        for period in [*periods(Frequency.REALTIME, day.start, day.end), day, month]:
            outbox.put(build(conn, unit, period, TABLE, now=now), REFERENCE, now=now)
        # dc-b acknowledges everything, dc-a 80 of the 96 real-time sets (83%) and the day.
        for pending in outbox.due("dc-b", now, limit=1000):
            outbox.acknowledged(pending, now=now)
        due_a = outbox.due("dc-a", now, limit=1000)
        realtime = [p for p in due_a if p.message_id.split("-")[1] == "0"]
        assert len(realtime) == 96
        for pending in [p for p in due_a if p not in realtime] + realtime[:80]:
            outbox.acknowledged(pending, now=now)
        report = completeness(
            conn,
            unit,
            DAY,
            DAY + timedelta(days=1),
            endpoints=["dc-a", "dc-b"],
            table=TABLE,
            now=now,
        )
        consistent = consistency(conn, unit, DAY)
        # Late data: the main meter's silent hours arrive; only the month is rebuilt.
        write(
            dsn, [(ids["import"], MIDNIGHT + b * 15 * MINUTE + MINUTE, 7.5) for b in range(40, 52)]
        )
        outbox.put(build(conn, unit, month, TABLE, now=now), REFERENCE, now=now)
        drifted = consistency(conn, unit, DAY)
        outbox.put(build(conn, unit, day, TABLE, now=now), REFERENCE, now=now)
        mended = consistency(conn, unit, DAY)

    uploads = {
        (u.frequency, u.endpoint): (u.acknowledged, u.expected, u.passed) for u in report.uploads
    }
    assert uploads == {
        (Frequency.REALTIME, "dc-a"): (80, 96, False),
        (Frequency.REALTIME, "dc-b"): (96, 96, True),
        (Frequency.DAY, "dc-a"): (1, 1, True),
        (Frequency.DAY, "dc-b"): (1, 1, True),
    }  # the month has not ended: no month set is due yet
    items = {i.code: (i.present, i.expected, i.passed) for i in report.items}
    assert items == {
        LINE: (96, 96, True), ELECTRICITY: (84, 96, False), EXPORT: (84, 96, False),
        GAS: (96, 96, True), WATER: (96, 96, True), TOTAL: (84, 96, False),
    }  # fmt: skip
    assert not report.passed

    assert consistent.passed
    assert consistent.day_sets == 1
    # 84 buckets × 7.5 kWh in the day set; 96 × 7.5 in the month: 12.5% apart.
    by_code = {i.code: i for i in drifted.items}
    assert by_code[ELECTRICITY].day_sum == pytest.approx(630.0)
    assert by_code[ELECTRICITY].month_value == pytest.approx(720.0)
    assert by_code[ELECTRICITY].deviation == pytest.approx(0.125)
    assert not by_code[ELECTRICITY].passed
    assert by_code[GAS].passed
    assert not drifted.passed
    assert mended.passed


# ---------------------------------------------------------------------------------------------
# Plug-ins


class ProvinceFormat:
    """A plug-in as a province's package would ship it: a line of text, acknowledged by OK."""

    name = "province-text"
    content_type = "text/plain"

    def encode(self, indicator_set: IndicatorSet) -> bytes:
        lines = [f"{v.code},{v.value}" for v in indicator_set.values]
        return "\n".join([indicator_set.message_id, *lines]).encode()

    def verdict(self, message_id: str, reply: Reply) -> Verdict:
        ok = reply.status == 200 and reply.body == f"OK {message_id}".encode()
        return Verdict(ok, "" if ok else reply.body.decode())


def install_plugins(path: Path, entries: str) -> None:
    """A distribution declaring ``entries`` in the group, found on ``path``."""
    info = path / "zayton_province-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zayton-province\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entries}")


@pytest.mark.unit
def test_formats_are_the_reference_and_the_installed_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert "province-text" not in formats()
    install_plugins(
        tmp_path,
        "province = tests.test_monitoring:ProvinceFormat\nbroken = tests.no_such_module:Format\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with caplog.at_level(logging.ERROR, logger="api.monitoring.plugins"):
        found = formats()
    assert set(found) == {"zayton-json", "province-text"}
    assert isinstance(found["province-text"], ProvinceFormat)
    assert "upload format broken (tests.no_such_module:Format) does not load" in caplog.text
    with pytest.raises(FormatError, match="no upload format 'fujian'; there are province-text"):
        get_format("fujian")


@pytest.mark.unit
def test_a_plugin_may_not_take_the_name_of_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugins(tmp_path, "impostor = tests.test_monitoring:REFERENCE_AGAIN\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(FormatError, match="two upload formats are named 'zayton-json'"):
        formats()


REFERENCE_AGAIN = replace(REFERENCE)


@pytest.mark.unit
def test_the_reference_format_acknowledges_only_its_own_message() -> None:
    message = f"{UNIT_CODE}-0-202611201000-r1"
    ack = json.dumps({"ack": message}).encode()
    assert REFERENCE.verdict(message, Reply(200, ack)) == Verdict(True)
    assert REFERENCE.verdict(message, Reply(503, b"")) == Verdict(False, "HTTP 503: (empty body)")
    assert not REFERENCE.verdict(message, Reply(200, b'{"ack": "other"}')).acknowledged
    assert not REFERENCE.verdict(message, Reply(200, b"[]")).acknowledged
    assert not REFERENCE.verdict(message, Reply(201, ack)).acknowledged


# ---------------------------------------------------------------------------------------------
# The periodic job and its configuration


@pytest.mark.integration
def test_the_job_builds_what_is_due_delivers_it_and_sends_a_correction(
    migrated_database: str, pki: tuple[trustme.CA, Path, Path]
) -> None:
    dsn = migrated_database
    ca, ca_file, _ = pki
    seed_defaults(dsn)
    write(dsn, a_day_of_readings(make_unit(dsn)))
    clock = Clock(MIDNIGHT + timedelta(days=1, minutes=10))  # 2026-11-21 00:10 local
    with Platform(ca, [acknowledge]) as a, Platform(ca, [acknowledge]) as b:
        settings = MonitorSettings(
            endpoints=(
                Endpoint("dc-a", a.url, ca_file=ca_file),
                Endpoint("dc-b", b.url, ca_file=ca_file),
            ),
            catch_up=timedelta(hours=2),
        )
        monitor = Monitor(dsn, settings, clock=clock)
        first = monitor.run_once()
        again = monitor.run_once()
        with psycopg.connect(dsn, autocommit=True) as conn:
            unit = load_unit(conn, UNIT_CODE)
            enter_manual(
                conn,
                unit,
                OUTPUT,
                Period(Frequency.DAY, MIDNIGHT),
                900.0,
                entered_by="energy manager",
            )
        clock.advance(60)
        corrected = monitor.run_once()
    # 22:00 to 24:00 in eight real-time sets, and the day (it ended 10 minutes ago).
    assert first.built == 9
    assert {name: p.acknowledged for name, p in first.uploads.items()} == {"dc-a": 9, "dc-b": 9}
    assert (again.built, again.uploads["dc-a"].sent) == (0, 0)
    assert corrected.built == 1
    assert {name: p.acknowledged for name, p in corrected.uploads.items()} == {"dc-a": 1, "dc-b": 1}
    last = json.loads(b.requests[-1][1])
    assert (last["frequency"], last["revision"]) == (1, 2)
    assert {item["code"]: item["value"] for item in last["items"]}[OUTPUT] == 900.0
    starts = execute(
        dsn,
        "SELECT min(period_start), max(period_start) FROM zayton.monitoring_sets"
        " WHERE frequency = 0",
    )
    assert starts == [(MIDNIGHT + timedelta(hours=22), MIDNIGHT + timedelta(hours=23, minutes=45))]


@pytest.mark.integration
def test_the_job_serves_until_stopped(
    migrated_database: str, pki: tuple[trustme.CA, Path, Path]
) -> None:
    dsn = migrated_database
    ca, ca_file, _ = pki
    seed_defaults(dsn)
    write(dsn, a_day_of_readings(make_unit(dsn)))
    clock = Clock(MIDNIGHT + timedelta(days=1, minutes=10))

    async def scenario(platform: Platform) -> int:
        settings = MonitorSettings(
            endpoints=(Endpoint("dc-a", platform.url, ca_file=ca_file),),
            catch_up=timedelta(hours=1),
            interval_s=0.05,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(Monitor(dsn, settings, clock=clock).serve(stop))
        # 23:00 to 24:00 in four real-time sets, and the day.
        assert await asyncio.to_thread(platform.wait_for, 5, 10.0)
        stop.set()
        async with asyncio.timeout(10):
            await task
        return len(platform.requests)

    with Platform(ca, [acknowledge]) as platform:
        assert asyncio.run(scenario(platform)) == 5
    assert execute(
        dsn, "SELECT count(*) FROM zayton.monitoring_deliveries WHERE acknowledged_at IS NULL"
    ) == [(0,)]


@pytest.mark.unit
def test_a_config_file_is_checked_key_by_key(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    good = tmp_path / "monitoring.toml"
    good.write_text(
        '[monitoring]\ninterval_s = 30\n\n[[endpoints]]\nname = "province"\n'
        'url = "https://nhjc.example/upload"\nca_file = "ca.pem"\n\n'
        '[[endpoints]]\nname = "city"\nurl = "https://city.example/upload"\n'
    )
    settings = load_settings(good)
    assert [e.name for e in settings.endpoints] == ["province", "city"]
    assert settings.endpoints[0].ca_file == tmp_path / "ca.pem"
    assert settings.interval_s == 30
    typo = tmp_path / "typo.toml"
    typo.write_text('[[endpoints]]\nname = "p"\nurl = "https://p.example"\nca_flie = "ca.pem"\n')
    with pytest.raises(ConfigError, match=r"typo\.toml: endpoints\.0\.ca_flie: Extra inputs"):
        load_settings(typo)
    short = tmp_path / "short.toml"
    short.write_text('[monitoring]\nkeep_days = 90\n[[endpoints]]\nname = "p"\nurl = "https://p"\n')
    with pytest.raises(ConfigError, match=r"monitoring\.keep_days: Input should be greater"):
        load_settings(short)
    plain = tmp_path / "plain.toml"
    plain.write_text('[[endpoints]]\nname = "p"\nurl = "http://p.example"\n')
    with pytest.raises(ConfigError, match=r"endpoints\.0\.url: String should match"):
        load_settings(plain)


@pytest.mark.integration
def test_unit_defaults_match_the_schema_defaults(migrated_database: str) -> None:
    make_unit(migrated_database)
    with psycopg.connect(migrated_database) as conn:
        unit = load_unit(conn, UNIT_CODE)
    assert unit == Unit(firm_id=unit.firm_id, firm_code="shoes", unit_code=UNIT_CODE)
