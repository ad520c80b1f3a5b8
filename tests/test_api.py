"""The HTTP API on a real socket over the two-day park: the same figures as the accounting,
readings downsampled under a cap, the statement timeout, health, metrics and business uploads.
Access control has its own tests (test_api_access.py)."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import openpyxl
import psycopg
import pytest

from api.app import ApiSettings
from api.auth import create_account
from api.coefficients import Basis
from api.energy import Entity, Period, account
from tests.apiserver import running_api
from tests.parkdb import Park2Days, coefficient_table
from zayton.cli import main

pytestmark = pytest.mark.integration

NOVEMBER = {"start": "2026-11-01T00:00:00+08:00", "end": "2026-12-01T00:00:00+08:00"}
TWO_DAYS = {"start": "2026-11-02T00:00:00+08:00", "end": "2026-11-04T00:00:00+08:00"}
PASSWORD = "correct horse battery"  # noqa: S105 - a test account's


@pytest.fixture(scope="module")
def api(park_db: Park2Days) -> Iterator[httpx.Client]:
    """A district editor's client."""
    with psycopg.connect(park_db.dsn, autocommit=True) as conn:
        create_account(conn, "bureau-api", "district", password=PASSWORD, editor=True)
    with running_api(ApiSettings(park_db.dsn)) as base, httpx.Client(base_url=base) as client:
        token = client.post(
            "/v1/auth/token", data={"username": "bureau-api", "password": PASSWORD}
        ).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def test_energy_over_http_is_the_accounting(api: httpx.Client, park_db: Park2Days) -> None:
    async def direct() -> float:
        async with await psycopg.AsyncConnection.connect(park_db.dsn) as conn:
            period = Period.month(2026, 11)
            table = coefficient_table(park_db.dsn)
            use = await account(conn, Entity.parse("park:tiny-park"), period, table)
            return use.total_tce

    body = api.get("/v1/energy", params={"entity": "park:tiny-park", **NOVEMBER}).json()
    assert body["total_tce"] == pytest.approx(asyncio.run(direct()), rel=1e-12)
    assert body["basis"] == Basis.EQUIVALENT.value
    assert {c["carrier"] for c in body["coefficients"]} >= {"electricity", "natural_gas"}
    generation = api.get(
        "/v1/energy", params={"entity": "park:tiny-park", "basis": "generation", **NOVEMBER}
    ).json()
    assert generation["basis"] == "generation"
    assert any("placeholder" in note for note in generation["notes"])


@pytest.mark.parametrize(
    ("max_points", "resolution", "count"),
    [
        (50, "hour", 48),  # two days of hours fit in 50 points
        (191, "hour", 48),  # one short of the readings: the next coarser rollup that fits
        (192, "raw", 192),  # the readings themselves, one every 15 minutes, just fit
    ],
)
def test_readings_are_downsampled_under_the_cap(
    api: httpx.Client, max_points: int, resolution: str, count: int
) -> None:
    params: dict[str, str | int] = {
        "firm": "tiny-shoes",
        "device": "incomer",
        "point": "active_power_kw",
        "max_points": max_points,
        **TWO_DAYS,
    }
    body = api.get("/v1/readings", params=params).json()
    assert body["resolution"] == resolution
    assert len(body["points"]) == count
    assert all(p["min"] <= p["avg"] <= p["max"] for p in body["points"])


def test_requests_beyond_the_limits_are_refused(api: httpx.Client) -> None:
    base = {"firm": "tiny-shoes", "device": "incomer", "point": "active_power_kw", **TWO_DAYS}
    assert api.get("/v1/readings", params={**base, "max_points": 10_001}).status_code == 422
    too_long = {"start": "2015-01-01T00:00:00+08:00", "end": "2026-01-01T00:00:00+08:00"}
    response = api.get("/v1/energy", params={"entity": "district", **too_long})
    assert response.status_code == 422
    assert "at most" in response.json()["detail"]
    naive = {"start": "2026-11-01T00:00:00", "end": "2026-12-01T00:00:00"}
    assert api.get("/v1/energy", params={"entity": "district", **naive}).status_code == 422
    odd = {"start": "2026-11-01T00:07:00+08:00", "end": "2026-12-01T00:00:00+08:00"}
    response = api.get("/v1/energy", params={"entity": "district", **odd})
    assert "15-minute boundary" in response.json()["detail"]
    assert api.get("/v1/firms", params={"limit": 501}).status_code == 422
    response = api.get("/v1/energy", params={"entity": "plant:x", **NOVEMBER})
    assert response.status_code == 422


def test_a_slow_query_is_cut_by_the_statement_timeout(park_db: Park2Days) -> None:
    settings = ApiSettings(park_db.dsn, anonymous="district", statement_timeout_ms=1)
    with running_api(settings) as base, httpx.Client(base_url=base) as client:
        response = client.get("/v1/kpis", params={"entity": "district", **NOVEMBER})
    assert response.status_code == 503
    assert "statement timeout" in response.json()["detail"]


def test_health_reports_database_and_broker(park_db: Park2Days, mqtt_url: str) -> None:
    with running_api(ApiSettings(park_db.dsn, mqtt_url=mqtt_url)) as base:
        health = httpx.get(f"{base}/health")
    assert (health.status_code, health.json()["broker"], health.json()["database"]) == (
        200,
        "ok",
        "ok",
    )
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with running_api(ApiSettings(park_db.dsn, mqtt_url=f"mqtt://127.0.0.1:{port}")) as base:
        health = httpx.get(f"{base}/health")
    assert (health.status_code, health.json()["status"], health.json()["broker"]) == (
        503,
        "degraded",
        "unavailable",
    )


def test_metrics_count_requests_by_route(api: httpx.Client) -> None:
    api.get("/v1/parks")
    api.get("/v1/firms/nobody")
    text = api.get("/metrics").text
    assert 'zayton_api_requests_total{route="/v1/parks",status="200"}' in text
    assert 'zayton_api_requests_total{route="/v1/firms/{firm}",status="404"}' in text
    assert "zayton_api_request_seconds_bucket" in text


def test_business_upload_reports_rows_and_columns_and_writes_nothing(
    api: httpx.Client, park_db: Park2Days
) -> None:
    def stored() -> list[tuple[object, ...]]:
        with psycopg.connect(park_db.dsn) as conn:
            return conn.execute(
                "SELECT firm_id, month, tax FROM zayton.firm_months ORDER BY 1, 2"
            ).fetchall()

    before = stored()
    bad = "month,firm,tax_10k_yuan\n2026-10,tiny-shoes,12.5\n2026-10,tiny-electronics,lots\n"
    response = api.post("/v1/business/csv", files={"file": ("b.csv", bad.encode(), "text/csv")})
    assert response.status_code == 422
    problems = response.json()["problems"]
    assert [(p["row"], p["column"]) for p in problems] == [(3, "tax_10k_yuan")]
    assert stored() == before
    good = bad.replace("lots", "7.25")
    response = api.post("/v1/business/csv", files={"file": ("b.csv", good.encode(), "text/csv")})
    assert response.json() == {"imported": 2}
    response = api.post(
        "/v1/business", json=[{"month": "2026-10", "firm": "tiny-shoes", "headcount": "many"}]
    )
    assert response.status_code == 422
    assert response.json()["problems"][0]["where"].startswith("items[0].headcount")


def test_budgets_feed_dual_control(api: httpx.Client) -> None:
    response = api.put(
        "/v1/budgets",
        json={
            "entity": "firm:tiny-electronics",
            "year": 2026,
            "total_tce": 0.5,
            "source": "bureau",
        },
    )
    assert response.status_code == 200
    body = api.get(
        "/v1/dual-control",
        params={"entity": "firm:tiny-electronics", "year": 2026, "as_of": "2026-11-05"},
    ).json()
    assert body["budget_tce"] == 0.5
    assert body["method"] == "linear"  # no 2025 data for this firm
    elapsed = (date(2026, 11, 5) - date(2026, 1, 1)).days
    assert body["forecast_tce"] == pytest.approx(body["ytd_tce"] / elapsed * 365, rel=1e-9)
    assert body["total_status"] in ("red", "amber", "green")
    assert (
        api.put("/v1/budgets", json={"entity": "firm:tiny-electronics", "year": 2026}).status_code
        == 422
    )


def test_monitoring_config_is_checked_by_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "monitoring.toml"
    path.write_text(
        '[[endpoints]]\nname = "a"\nurl = "https://a.example/upload"\n'
        '[[endpoints]]\nname = "b"\nurl = "https://b.example/upload"\n'
    )
    assert main(["monitoring", "check-config", str(path)]) == 0
    assert "2 endpoint(s)" in capsys.readouterr().out
    path.write_text('[[endpoints]]\nname = "a"\nurl = "ftp://a.example"\n')
    assert main(["monitoring", "check-config", str(path)]) == 1
    assert "zayton:" in capsys.readouterr().err


def test_the_monthly_report_in_three_formats(api: httpx.Client) -> None:
    params = {"entity": "firm:tiny-shoes", "month": "2026-11"}
    report = api.get("/v1/reports/monthly", params=params).json()
    energy = api.get("/v1/energy", params={"entity": "firm:tiny-shoes", **NOVEMBER}).json()
    assert report["total"]["tce"] == pytest.approx(energy["total_tce"], rel=1e-9)
    csv_file = api.get("/v1/reports/monthly", params={**params, "format": "csv"})
    assert csv_file.headers["content-type"].startswith("text/csv")
    assert csv_file.content.startswith(b"\xef\xbb\xbf")  # a BOM: Excel opens it as UTF-8
    assert "tiny-shoes" in csv_file.content.decode("utf-8-sig")
    xlsx = api.get("/v1/reports/monthly", params={**params, "format": "xlsx"})
    workbook = openpyxl.load_workbook(io.BytesIO(xlsx.content), read_only=True)
    sheet = workbook.worksheets[0]
    cells = [c for row in sheet.iter_rows(values_only=True) for c in row if c]
    workbook.close()
    assert "tiny-shoes" in cells
    assert 'filename="zayton-firm-tiny-shoes-2026-11.xlsx"' in xlsx.headers["content-disposition"]
    assert api.get("/v1/reports/monthly", params={**params, "month": "2026-13"}).status_code == 422
    line = {"entity": "line:tiny-shoes/eva-1", "month": "2026-11"}
    assert api.get("/v1/reports/monthly", params=line).status_code == 422
