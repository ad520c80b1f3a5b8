"""The HTTP API: an app factory whose connection pool lives in the lifespan state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Literal

import psycopg
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

QUALITY_NAMES: dict[int, Literal["good", "uncertain", "bad"]] = {
    0: "good",
    1: "uncertain",
    2: "bad",
}


@dataclass(frozen=True, slots=True)
class ApiSettings:
    database_url: str
    dashboard_dir: Path | None = None
    """A static web dashboard to serve at ``/``."""
    statement_timeout_ms: int = 5000
    """No query may run longer, so no request can hold the database."""
    pool_max: int = 8


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unavailable"]
    version: str


class LatestReading(BaseModel):
    site: str
    gateway: str | None
    device: str
    point: str
    unit: str | None
    kind: str
    ts: datetime
    value: float | None
    quality: Literal["good", "uncertain", "bad"]


@dataclass(slots=True)
class _LatestRow:
    site: str
    gateway: str | None
    device: str
    point: str
    unit: str | None
    kind: str
    ts: datetime
    value: float | None
    quality: int


_LATEST_SQL = """
    SELECT d.site, g.name AS gateway, d.name AS device, p.name AS point, p.unit, p.kind,
           l.ts, l.value, l.quality
    FROM zayton.latest l
    JOIN zayton.points p ON p.id = l.point_id
    JOIN zayton.devices d ON d.id = p.device_id
    LEFT JOIN zayton.gateways g ON g.id = d.gateway_id
    ORDER BY d.site, d.name, p.name
"""


def _pool(request: Request) -> AsyncConnectionPool[psycopg.AsyncConnection[tuple[object, ...]]]:
    pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[object, ...]]]
    pool = request.app.state.pool
    return pool


def create_app(settings: ApiSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[object, ...]]]
        pool = AsyncConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=settings.pool_max,
            open=False,
            kwargs={
                "autocommit": True,
                "options": f"-c statement_timeout={settings.statement_timeout_ms}",
            },
        )
        # wait=False: the API starts (and reports "unavailable") while the database is down.
        await pool.open(wait=False)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(
        title="Zayton",
        version=version("zayton"),
        summary="Energy and production data of factories and industrial parks",
        lifespan=lifespan,
    )

    @app.get("/health", tags=["service"])
    async def health(request: Request, response: Response) -> Health:
        """Whether the API can reach its database."""
        try:
            async with _pool(request).connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
            database: Literal["ok", "unavailable"] = "ok"
        except (psycopg.Error, TimeoutError):
            database = "unavailable"
        if database != "ok":
            response.status_code = 503
        return Health(
            status="ok" if database == "ok" else "degraded",
            database=database,
            version=app.version,
        )

    @app.get("/v1/readings/latest", tags=["readings"])
    async def latest_readings(request: Request) -> list[LatestReading]:
        """The most recent reading of every point of every device, by site, device and point."""
        async with (
            _pool(request).connection(timeout=5) as conn,
            conn.cursor(row_factory=class_row(_LatestRow)) as cursor,
        ):
            await cursor.execute(_LATEST_SQL)
            rows = await cursor.fetchall()
        return [
            LatestReading(
                site=r.site,
                gateway=r.gateway,
                device=r.device,
                point=r.point,
                unit=r.unit,
                kind=r.kind,
                ts=r.ts,
                value=r.value,
                quality=QUALITY_NAMES[r.quality],
            )
            for r in rows
        ]

    if settings.dashboard_dir is not None:
        app.mount("/", StaticFiles(directory=settings.dashboard_dir, html=True), name="dashboard")
    return app
