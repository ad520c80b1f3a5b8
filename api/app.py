"""The HTTP API: an app factory whose connection pool lives in the lifespan state; the routes
of version 1 are in ``api/v1.py``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Literal

import psycopg
from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from api import v1
from api.auth import ANONYMOUS_DISTRICT
from wire.broker import BrokerSettings

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
    anonymous: Literal["district"] | None = None
    """Callers without credentials read as this role (read-only): for a local demo only."""
    mqtt_url: str | None = None
    """The broker /health reports on (a TCP connection to it), when given."""


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unavailable"]
    broker: Literal["ok", "unavailable", "not configured"]
    version: str


async def _broker_status(url: str | None) -> Literal["ok", "unavailable", "not configured"]:
    if url is None:
        return "not configured"
    settings = BrokerSettings.from_url(url)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(settings.host, settings.port), timeout=2
        )
    except (OSError, TimeoutError):
        return "unavailable"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return "ok"


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
        app.state.database_url = settings.database_url
        app.state.anonymous = ANONYMOUS_DISTRICT if settings.anonymous == "district" else None
        try:
            yield
        finally:
            await pool.close()

    registry = CollectorRegistry()
    requests = Counter(
        "zayton_api_requests", "HTTP requests answered", ["route", "status"], registry=registry
    )
    seconds = Histogram(
        "zayton_api_request_seconds", "Time to answer a request", ["route"], registry=registry
    )

    app = FastAPI(
        title="Zayton",
        version=version("zayton"),
        summary="Energy and production data of factories and industrial parks",
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        began = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        requests.labels(name, str(response.status_code)).inc()
        seconds.labels(name).observe(time.perf_counter() - began)
        return response

    @app.get("/health", tags=["service"])
    async def health(request: Request, response: Response) -> Health:
        """Whether the API can reach its database and, when configured, the broker."""
        try:
            async with _pool(request).connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
            database: Literal["ok", "unavailable"] = "ok"
        except (psycopg.Error, TimeoutError):
            database = "unavailable"
        broker = await _broker_status(settings.mqtt_url)
        healthy = database == "ok" and broker != "unavailable"
        if not healthy:
            response.status_code = 503
        return Health(
            status="ok" if healthy else "degraded",
            database=database,
            broker=broker,
            version=app.version,
        )

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Prometheus metrics: requests by route and status, and their durations."""
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(v1.router())
    app.add_exception_handler(v1.Refused, v1.refused)
    if settings.dashboard_dir is not None:
        app.mount("/", StaticFiles(directory=settings.dashboard_dir, html=True), name="dashboard")
    return app
