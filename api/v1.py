"""Version 1 of the HTTP API: registry, readings, energy, indicators, targets, alarms, reports.

Every route that returns data runs its queries with the caller's firm ids (``api/auth.py``), so
an object the caller may not see answers 404, exactly as one that does not exist. Lists are
paginated; periods are capped (:data:`MAX_RANGE`); readings are downsampled to at most
``max_points`` (hard cap :data:`MAX_POINTS`); the pool's statement timeout bounds every query.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Generic, Literal, TypeVar

import psycopg
from fastapi import (
    APIRouter,
    Depends,
    File,
    HTTPException,
    Query,
    Request,
    Response,
    Security,
    UploadFile,
)
from fastapi.responses import JSONResponse
from fastapi.security import (
    APIKeyHeader,
    HTTPAuthorizationCredentials,
    HTTPBearer,
    OAuth2PasswordRequestForm,
)
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field

from api import auth, business, grading, plan, reports
from api.auth import Principal
from api.coefficients import Basis, load_database_async
from api.energy import (
    ROLLUPS,
    ZONE,
    BalanceLine,
    EnergyError,
    EnergyUse,
    Entity,
    NotFound,
    Period,
    Resolution,
    account,
    balance,
    firms_of,
    load_flows,
    load_hierarchy,
)
from api.kpi import (
    DualControl,
    Kpis,
    MeterCompleteness,
    PlanActuals,
    Scope,
    dual_control,
    kpis,
    meter_completeness,
    plan_actuals,
)

MAX_RANGE = timedelta(days=366 * 5)
"""The longest period any request may ask about."""
MAX_POINTS = 10_000
"""The most points a readings request returns."""
MAX_PAGE = 500
MAX_LATEST = 10_000
"""Latest values are small rows: a whole park's fit in one page."""

AsyncConn = psycopg.AsyncConnection[Any]


def _pool(request: Request) -> AsyncConnectionPool[AsyncConn]:
    pool: AsyncConnectionPool[AsyncConn] = request.app.state.pool
    return pool


@asynccontextmanager
async def _connection(request: Request) -> AsyncIterator[AsyncConn]:
    try:
        async with _pool(request).connection(timeout=5) as conn:
            yield conn
    except psycopg.errors.QueryCanceled as err:
        raise HTTPException(503, "the query took longer than the statement timeout") from err
    except psycopg.DataError as err:
        raise HTTPException(422, f"a parameter the database cannot take: {err}") from err
    except (psycopg.OperationalError, TimeoutError) as err:
        raise HTTPException(503, "the database is unavailable") from err
    except NotFound as err:
        raise HTTPException(404, str(err)) from err
    except EnergyError as err:
        raise HTTPException(422, str(err)) from err


BEARER = HTTPBearer(
    bearerFormat="JWT",
    auto_error=False,
    description="People: a token from POST /v1/auth/token (the OAuth2 password flow), valid "
    "for one hour. Declared as HTTP bearer: the OpenAPI 3.1 schema takes a password flow's "
    "token URL only in absolute form, which depends on where the API is served.",
)
API_KEY = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="Machines: a key made with 'zayton account key'.",
)


async def caller(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    key: Annotated[str | None, Security(API_KEY)],
) -> Principal:
    """The principal behind a bearer token or an ``X-API-Key``; the anonymous principal when
    the API runs open; otherwise 401. Credentials of another kind (``Basic``) are wrong ones,
    not none."""
    header = request.headers.get("authorization", "")
    if not header and not key:
        anonymous: Principal | None = request.app.state.anonymous
        if anonymous is not None:
            return anonymous
        raise HTTPException(401, "sign in first", headers={"WWW-Authenticate": "Bearer"})
    async with _connection(request) as conn:
        found = None
        if key:
            found = await auth.by_key(conn, key)
        elif bearer is not None:
            subject = auth.token_subject(await _secret(request, conn), bearer.credentials)
            found = None if subject is None else await auth.by_username(conn, subject)
    if found is None:
        raise HTTPException(401, "invalid credentials", headers={"WWW-Authenticate": "Bearer"})
    return found


async def _secret(request: Request, conn: AsyncConn) -> bytes:
    secret: bytes | None = getattr(request.app.state, "secret", None)
    if secret is None:
        secret = request.app.state.secret = await auth.signing_secret(conn)
    return secret


Caller = Annotated[Principal, Depends(caller)]


def _editor(principal: Principal) -> None:
    if not principal.editor:
        raise HTTPException(403, "this account may read, not write")


def _period(start: datetime, end: datetime) -> Period:
    if start.tzinfo is None or end.tzinfo is None:
        raise HTTPException(422, "start and end need a UTC offset, e.g. 2026-11-01T00:00+08:00")
    if end - start > MAX_RANGE:
        raise HTTPException(422, f"a period is at most {MAX_RANGE.days} days")
    try:
        return Period(start, end)
    except EnergyError as err:
        raise HTTPException(422, str(err)) from err


def _entity(text: str, who: Principal | None = None) -> Entity:
    """``text`` as an entity; a firm account may not ask for a park or the district, nor a park
    account for the district: their totals would be a part labelled as the whole."""
    try:
        entity = Entity.parse(text)
    except EnergyError as err:
        raise HTTPException(422, str(err)) from err
    wider = {"firm": ("park", "district"), "park": ("district",)}
    if who is not None and entity.kind in wider.get(who.role, ()):
        raise HTTPException(403, f"a {who.role} account may not ask for {entity.kind} totals")
    return entity


Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    total: int
    limit: int
    offset: int


Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Offset = Annotated[int, Query(ge=0, le=2**63 - 1)]
Start = Annotated[datetime, Query(description="inclusive, ISO 8601 with offset")]
End = Annotated[datetime, Query(description="exclusive, ISO 8601 with offset")]
EntityParam = Annotated[
    str,
    Query(
        description="district, park:<code>, firm:<code>, workshop:<firm>/<name>, "
        "line:<firm>/<id> or device:<firm>/<name>",
        max_length=200,
    ),
]
Code = Annotated[str, Field(max_length=64)]


# --- models --------------------------------------------------------------------------------------


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, no secret
    expires_in: int


class Me(BaseModel):
    username: str
    role: str
    editor: bool
    firms: list[str] | None


class ParkOut(BaseModel):
    code: str
    name: str
    district: str | None
    area_km2: float | None
    firms: int


class FirmOut(BaseModel):
    code: str
    name: str | None
    park: str | None
    sector: str | None
    zone: str | None
    land_area_m2: float | None
    above_scale: bool
    key_energy_unit: bool
    onboarded_on: date | None
    transformer_kva: float | None


class NodeOut(BaseModel):
    kind: str
    name: str
    workshop: str | None
    digital: bool


class GatewayOut(BaseModel):
    name: str
    uplink: str | None
    state: str | None
    last_seen: datetime


class DeviceOut(BaseModel):
    name: str
    type: str | None
    profile: str | None
    metering_level: int | None
    measures: str
    gateway: str | None
    state: str | None
    interval_s: float | None


class FirmDetail(FirmOut):
    workshops: list[NodeOut]
    gateways: list[GatewayOut]
    devices: list[DeviceOut]


class PointOut(BaseModel):
    name: str
    unit: str | None
    kind: str
    carrier: str | None


class SeriesPoint(BaseModel):
    ts: datetime
    avg: float | None
    min: float | None
    max: float | None
    samples: int
    consumption: float | None


class Series(BaseModel):
    firm: str
    device: str
    point: str
    unit: str | None
    resolution: Literal["raw", "15m", "hour", "day", "month"]
    points: list[SeriesPoint]


class Latest(BaseModel):
    site: str
    """The firm's code (its site on the wire)."""
    gateway: str | None
    device: str
    point: str
    unit: str | None
    kind: str
    ts: datetime
    value: float | None
    quality: Literal["good", "uncertain", "bad"]


class Budget(BaseModel):
    entity: str = Field(max_length=200)
    year: int = Field(ge=2000, le=2100)
    total_tce: float | None = Field(default=None, gt=0, lt=1e12)
    tce_per_10k_value_added: float | None = Field(default=None, gt=0, lt=1e6)
    basis: Basis = Basis.EQUIVALENT
    source: str = Field(default="", max_length=500)


class TargetOut(BaseModel):
    id: str
    scope: str
    indicator: str
    name: str
    counting: str
    unit: str
    start_year: int
    end_year: int
    value: float | None
    source: str
    actual: float | None
    expected: float | None
    status: Literal["green", "amber", "red"] | None
    reason: str


class GradeOut(BaseModel):
    firm: str
    values: dict[str, float | None]
    scores: dict[str, float]
    total: float | None
    grade: str | None
    rank: int | None
    reasons: list[str]


class Alarm(BaseModel):
    firm: str
    source: str
    kind: str
    ts: datetime | None
    detail: str


class ImportResult(BaseModel):
    imported: int


class Problem(BaseModel):
    """Why a request was refused."""

    detail: str


class InvalidField(BaseModel):
    loc: list[str | int]
    """Where: ``["query", "start"]``, ``["body", 0, "month"]``."""
    msg: str
    type: str


class Invalid(BaseModel):
    """Parameters or a body that do not have their declared types."""

    detail: list[InvalidField]


class RowProblem(BaseModel):
    where: str
    """``row 3, column month`` (CSV) or ``items[0].month`` (JSON)."""
    row: int
    column: str | None
    message: str


class Problems(BaseModel):
    """Business data refused, with every problem found; nothing was imported."""

    detail: str
    problems: list[RowProblem]


class Refused(Exception):
    """A refusal whose body is more than a ``detail`` (see :func:`refused`)."""

    def __init__(self, status: int, body: BaseModel) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


async def refused(_: Request, err: Exception) -> Response:
    """The exception handler for :class:`Refused`: its body as it is."""
    if not isinstance(err, Refused):
        raise err
    return JSONResponse(err.body.model_dump(mode="json"), status_code=err.status)


_WHY = {
    400: "A body that cannot be parsed (not JSON, a broken form or multipart message).",
    401: "No credentials, or credentials that are wrong, expired, revoked or not signed here.",
    403: "The account may not do this: write when it may only read, ask for totals wider than "
    "its park or firm, or write for a firm or park outside them.",
    404: "No such object among those the account may see.",
    413: "The upload is too large.",
    422: "A parameter or body Zayton cannot take: a list of fields that do not have their "
    "types, or the route's own reason (a period, an entity, a range).",
    503: "The database is unavailable, or the question took longer than the statement timeout.",
}


def answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI descriptions of the refusals a route may answer."""
    return {
        code: {"model": Problem | Invalid if code == 422 else Problem, "description": _WHY[code]}
        for code in codes
    }


QUALITY: dict[int, Literal["good", "uncertain", "bad"]] = {0: "good", 1: "uncertain", 2: "bad"}

_ACTUALS: dict[str, Callable[[PlanActuals], float]] = {
    "firms_onboarded": lambda a: a.firms_onboarded,
    "g5_industrial_internet_projects": lambda a: a.g5_industrial_internet_projects,
    "industrial_internet_platforms": lambda a: a.industrial_internet_platforms,
    "digital_workshops": lambda a: a.digital_workshops,
    "digital_lines": lambda a: a.digital_lines,
    "energy_saving_projects": lambda a: a.energy_saving_projects,
    "key_processes_digitalised_share": lambda a: (
        100.0 * a.above_scale_with_digital_workshop / a.above_scale_firms
        if a.above_scale_firms
        else 0.0
    ),
}
"""Plan indicators Zayton measures itself; the others are reported by the statistics office."""


def router() -> APIRouter:  # noqa: PLR0915 - one function per route, registered here
    r = APIRouter(prefix="/v1", responses=answers(401, 422, 503))

    @r.post("/auth/token", tags=["auth"], responses=answers(400))
    async def token(
        request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]
    ) -> Token:
        """OAuth2 password flow: a bearer token for one hour."""
        async with _connection(request) as conn:
            found = await auth.by_password(conn, form.username, form.password)
            if found is None:
                raise HTTPException(401, "wrong username or password")
            secret = await _secret(request, conn)
        lifetime = int(auth.TOKEN_LIFETIME.total_seconds())
        return Token(access_token=auth.issue_token(secret, found.username), expires_in=lifetime)

    @r.get("/me", tags=["auth"])
    async def me(request: Request, who: Caller) -> Me:
        async with _connection(request) as conn:
            firms = None
            if who.firm_ids is not None:
                cursor = await conn.execute(
                    "SELECT code FROM zayton.firms WHERE id = ANY (%s) ORDER BY code",
                    (list(who.firm_ids),),
                )
                firms = [str(c) for (c,) in await cursor.fetchall()]
        return Me(username=who.username, role=who.role, editor=who.editor, firms=firms)

    @r.get("/parks", tags=["registry"])
    async def parks(request: Request, who: Caller) -> list[ParkOut]:
        """The parks that hold firms the caller may see (a district sees every park)."""
        async with _connection(request) as conn:
            cursor = await conn.execute(
                """SELECT p.code, p.name, p.district, p.area_km2,
                          count(f.id) FILTER (WHERE %(f)s::int[] IS NULL OR f.id = ANY (%(f)s))
                   FROM zayton.parks p LEFT JOIN zayton.firms f ON f.park_id = p.id
                   GROUP BY p.id
                   HAVING %(f)s::int[] IS NULL
                       OR count(f.id) FILTER (WHERE f.id = ANY (%(f)s)) > 0
                   ORDER BY p.code""",
                {"f": _ids(who)},
            )
            return [
                ParkOut(code=c, name=n, district=d, area_km2=_num(a), firms=k)
                for c, n, d, a, k in await cursor.fetchall()
            ]

    @r.get("/firms", tags=["registry"])
    async def firms(
        request: Request,
        who: Caller,
        park: Annotated[str | None, Query(max_length=64)] = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> Page[FirmOut]:
        async with _connection(request) as conn:
            cursor = await conn.execute(
                (
                    _FIRMS
                    + """ WHERE (%(f)s::int[] IS NULL OR f.id = ANY (%(f)s))
                          AND (%(park)s::text IS NULL OR p.code = %(park)s)
                          ORDER BY f.code"""
                ).encode(),
                {"f": _ids(who), "park": park},
            )
            rows = [_firm(row) for row in await cursor.fetchall()]
        return Page(
            items=rows[offset : offset + limit], total=len(rows), limit=limit, offset=offset
        )

    @r.get("/firms/{firm}", tags=["registry"], responses=answers(404))
    async def firm_detail(request: Request, who: Caller, firm: str) -> FirmDetail:
        """A firm with its workshops and lines, gateways and devices (what each measures)."""
        async with _connection(request) as conn:
            firm_id = await _visible_firm(conn, who, firm)
            cursor = await conn.execute((_FIRMS + " WHERE f.id = %s").encode(), (firm_id,))
            base = _firm(await _one(cursor))
            cursor = await conn.execute(
                """SELECT w.kind, w.name, p.name, w.digital FROM zayton.workshops w
                   LEFT JOIN zayton.workshops p ON p.id = w.parent_id
                   WHERE w.firm_id = %s ORDER BY w.kind DESC, w.name""",
                (firm_id,),
            )
            nodes = [
                NodeOut(kind=k, name=n, workshop=p, digital=d)
                for k, n, p, d in await cursor.fetchall()
            ]
            cursor = await conn.execute(
                """SELECT name, uplink, state, last_seen FROM zayton.gateways
                   WHERE firm_id = %s ORDER BY name""",
                (firm_id,),
            )
            gateways = [
                GatewayOut(name=n, uplink=u, state=s, last_seen=t)
                for n, u, s, t in await cursor.fetchall()
            ]
            cursor = await conn.execute(
                """SELECT d.name, d.type, d.profile, d.metering_level,
                          coalesce(w.kind || ':' || w.name, e.name, 'site'), g.name, d.state,
                          d.interval_s
                   FROM zayton.devices d
                   LEFT JOIN zayton.workshops w ON w.id = d.workshop_id
                   LEFT JOIN zayton.devices e ON e.id = d.equipment_id
                   LEFT JOIN zayton.gateways g ON g.id = d.gateway_id
                   WHERE d.firm_id = %s ORDER BY d.name""",
                (firm_id,),
            )
            devices = [
                DeviceOut(
                    name=n,
                    type=t,
                    profile=p,
                    metering_level=lv,
                    measures=m,
                    gateway=g,
                    state=s,
                    interval_s=i,
                )
                for n, t, p, lv, m, g, s, i in await cursor.fetchall()
            ]
        return FirmDetail(**base.model_dump(), workshops=nodes, gateways=gateways, devices=devices)

    @r.get("/firms/{firm}/devices/{device}/points", tags=["registry"], responses=answers(404))
    async def points(request: Request, who: Caller, firm: str, device: str) -> list[PointOut]:
        async with _connection(request) as conn:
            device_id = await _visible_device(conn, who, firm, device)
            cursor = await conn.execute(
                "SELECT name, unit, kind, carrier FROM zayton.points WHERE device_id = %s "
                "ORDER BY name",
                (device_id,),
            )
            return [
                PointOut(name=n, unit=u, kind=k, carrier=c)
                for n, u, k, c in await cursor.fetchall()
            ]

    @r.get("/readings/latest", tags=["readings"])
    async def latest(
        request: Request,
        who: Caller,
        firm: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LATEST)] = MAX_LATEST,
        offset: Offset = 0,
    ) -> Page[Latest]:
        """The newest reading of every point the caller may see."""
        async with _connection(request) as conn:
            cursor = await conn.execute(
                """SELECT d.site, g.name, d.name, p.name, p.unit, p.kind, l.ts, l.value, l.quality,
                          count(*) OVER ()
                   FROM zayton.latest l
                   JOIN zayton.points p ON p.id = l.point_id
                   JOIN zayton.devices d ON d.id = p.device_id
                   LEFT JOIN zayton.gateways g ON g.id = d.gateway_id
                   LEFT JOIN zayton.firms f ON f.id = d.firm_id
                   WHERE (%(f)s::int[] IS NULL OR d.firm_id = ANY (%(f)s))
                     AND (%(firm)s::text IS NULL OR f.code = %(firm)s OR d.site = %(firm)s)
                   ORDER BY d.site, d.name, p.name LIMIT %(limit)s OFFSET %(offset)s""",
                {"f": _ids(who), "firm": firm, "limit": limit, "offset": offset},
            )
            rows = await cursor.fetchall()
        items = [
            Latest(
                site=s,
                gateway=g,
                device=d,
                point=p,
                unit=u,
                kind=k,
                ts=t,
                value=v,
                quality=QUALITY[q],
            )
            for s, g, d, p, u, k, t, v, q, _ in rows
        ]
        return Page(items=items, total=rows[0][9] if rows else 0, limit=limit, offset=offset)

    @r.get("/readings", tags=["readings"], responses=answers(404))
    async def readings(
        request: Request,
        who: Caller,
        firm: Annotated[str, Query(max_length=64)],
        device: Annotated[str, Query(max_length=64)],
        point: Annotated[str, Query(max_length=64)],
        start: Start,
        end: End,
        max_points: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 1000,
    ) -> Series:
        """One point's values, downsampled to at most ``max_points``: raw readings when they
        fit, else the finest rollup that does (average, minimum, maximum per bucket)."""
        if start.tzinfo is None or end.tzinfo is None or end <= start:
            raise HTTPException(422, "start and end need a UTC offset, and end after start")
        if end - start > MAX_RANGE:
            raise HTTPException(422, f"a period is at most {MAX_RANGE.days} days")
        async with _connection(request) as conn:
            device_id = await _visible_device(conn, who, firm, device)
            cursor = await conn.execute(
                """SELECT p.id, p.unit, coalesce(d.interval_s, 1) FROM zayton.points p
                   JOIN zayton.devices d ON d.id = p.device_id
                   WHERE p.device_id = %s AND p.name = %s""",
                (device_id, point),
            )
            row = await cursor.fetchone()
            if row is None:
                raise HTTPException(404, f"device {device!r} has no point {point!r}")
            point_id, unit, interval = int(row[0]), row[1], float(row[2])
            span = (end - start).total_seconds()
            resolution = _resolution(span, interval, max_points)
            if resolution == "raw":
                cursor = await conn.execute(
                    """SELECT ts, value, value, value, (value IS NOT NULL)::int, delta
                       FROM zayton.readings WHERE point_id = %s AND ts >= %s AND ts < %s
                       ORDER BY ts LIMIT %s""",
                    (point_id, start, end, max_points),
                )
            else:
                cursor = await conn.execute(
                    f"""SELECT bucket, value_sum / nullif(samples, 0), value_min, value_max,
                               samples, consumption
                        FROM {ROLLUPS[Resolution(resolution)]}
                        WHERE point_id = %s AND bucket >= %s AND bucket < %s
                        ORDER BY bucket LIMIT %s""".encode(),
                    (point_id, start, end, max_points),
                )
            found = [
                SeriesPoint(ts=t, avg=a, min=lo, max=hi, samples=n, consumption=c)
                for t, a, lo, hi, n, c in await cursor.fetchall()
            ]
        return Series(
            firm=firm, device=device, point=point, unit=unit, resolution=resolution, points=found
        )

    @r.get("/energy", tags=["energy"], responses=answers(403, 404))
    async def energy(
        request: Request,
        who: Caller,
        entity: EntityParam,
        start: Start,
        end: End,
        basis: Basis = Basis.EQUIVALENT,
    ) -> EnergyUse:
        """Energy by carrier and in tce (综合能源消费量), CO₂ and clean share; the coefficients
        used with their sources, and the basis of electricity."""
        period, target = _period(start, end), _entity(entity, who)
        async with _connection(request) as conn:
            table = await load_database_async(conn)
            return await account(conn, target, period, table, basis=basis, firm_ids=who.firm_ids)

    @r.get("/kpis", tags=["indicators"], responses=answers(403, 404))
    async def indicators(
        request: Request,
        who: Caller,
        entity: EntityParam,
        start: Start,
        end: End,
        basis: Basis = Basis.EQUIVALENT,
        base_year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
    ) -> Kpis:
        """Intensities per 万元 of output and value added, energy per unit of product, decline
        against ``base_year``, peak demand and completeness."""
        period, target = _period(start, end), _entity(entity, who)
        async with _connection(request) as conn:
            table = await load_database_async(conn)
            return await kpis(
                conn, target, period, table, basis=basis, base_year=base_year, scope=_scope(who)
            )

    @r.get("/firms/{firm}/balance", tags=["energy"], responses=answers(404))
    async def firm_balance(
        request: Request, who: Caller, firm: str, start: Start, end: End
    ) -> list[BalanceLine]:
        """Site-boundary meters against the outermost sub-meters, per carrier."""
        period = _period(start, end)
        async with _connection(request) as conn:
            hierarchy = await load_hierarchy(conn, who.firm_ids)
            (found,) = firms_of(hierarchy, Entity("firm", firm))
            devices = [m.device_id for m in hierarchy.meters.values() if m.firm_id == found.id]
            return balance(hierarchy, found, await load_flows(conn, period, devices))

    @r.get("/completeness", tags=["indicators"])
    async def completeness(
        request: Request,
        who: Caller,
        start: Start,
        end: End,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> Page[MeterCompleteness]:
        """Per meter: readings received ÷ expected at its poll interval."""
        period = _period(start, end)
        async with _connection(request) as conn:
            rows = await meter_completeness(conn, period, _ids(who))
        return Page(
            items=rows[offset : offset + limit], total=len(rows), limit=limit, offset=offset
        )

    @r.get("/dual-control", tags=["indicators"], responses=answers(403, 404))
    async def dual(
        request: Request,
        who: Caller,
        entity: EntityParam,
        year: Annotated[int, Query(ge=2000, le=2100)],
        as_of: date | None = None,
        basis: Basis = Basis.EQUIVALENT,
    ) -> DualControl:
        """能耗双控: year to date against the budget, with the year-end forecast and warnings."""
        target = _entity(entity, who)
        if target.kind not in ("district", "park", "firm"):
            raise HTTPException(422, "budgets are kept for the district, parks and firms")
        day = as_of or min(datetime.now(ZONE).date(), date(year + 1, 1, 1))
        async with _connection(request) as conn:
            table = await load_database_async(conn)
            return await dual_control(
                conn, target, year, day, table, basis=basis, scope=_scope(who)
            )

    @r.put("/budgets", tags=["indicators"], responses=answers(400, 403, 404))
    async def put_budget(request: Request, who: Caller, budget: Budget) -> Budget:
        """Set an entity's 能耗双控 budget for a year (editors, within their scope)."""
        _editor(who)
        target = _entity(budget.entity)
        if target.kind not in ("district", "park", "firm"):
            raise HTTPException(422, "budgets are kept for the district, parks and firms")
        if budget.total_tce is None and budget.tce_per_10k_value_added is None:
            raise HTTPException(422, "give total_tce, tce_per_10k_value_added or both")
        async with _connection(request) as conn:
            await _may_write(conn, who, target)
            await conn.execute(
                """INSERT INTO zayton.energy_budgets
                       (entity, year, total_tce, tce_per_10k_value_added, basis, source)
                   VALUES (%s, %s, %s, %s, %s, %s)
                   ON CONFLICT (entity, year) DO UPDATE SET total_tce = excluded.total_tce,
                       tce_per_10k_value_added = excluded.tce_per_10k_value_added,
                       basis = excluded.basis, source = excluded.source""",
                (
                    str(target),
                    budget.year,
                    budget.total_tce,
                    budget.tce_per_10k_value_added,
                    budget.basis.value,
                    budget.source,
                ),
            )
        return budget.model_copy(update={"entity": str(target)})

    @r.get("/targets", tags=["indicators"])
    async def targets(
        request: Request,
        who: Caller,
        year: Annotated[int, Query(ge=2000, le=2100)],
        as_of: date | None = None,
    ) -> list[TargetOut]:
        """The plan's targets for ``year`` with the actual Zayton measures for the caller's
        firms and a red/amber/green status against the expected-by-now path."""
        day = as_of or min(datetime.now(ZONE).date(), date(year, 12, 31))
        if day.year != year:
            raise HTTPException(422, f"as_of {day} is not in {year}")
        async with _connection(request) as conn:
            actuals = await plan_actuals(conn, year, _ids(who))
        working = await asyncio.to_thread(_plan, request.app.state.database_url)
        out = []
        for target in working:
            if year not in target.years:
                continue
            measure = _ACTUALS.get(target.indicator.value)
            actual = None if measure is None else float(measure(actuals))
            state = None
            if actual is not None and target.value is not None:
                state = plan.status(target, actual, plan.elapsed_fraction(target, day))
            out.append(
                TargetOut(
                    id=target.id,
                    scope=target.scope,
                    indicator=target.indicator.value,
                    name=target.name,
                    counting=target.counting.value,
                    unit=target.unit,
                    start_year=target.start_year,
                    end_year=target.end_year,
                    value=target.value,
                    source=target.source,
                    actual=actual,
                    expected=None if state is None else state.expected,
                    status=None if state is None else state.rag.value,
                    reason=(
                        state.reason
                        if state is not None
                        else "not measured by Zayton"
                        if measure is None
                        else "no figure set"
                    ),
                )
            )
        return out

    @r.get("/grading", tags=["indicators"], responses=answers(404))
    async def grades(
        request: Request,
        who: Caller,
        year: Annotated[int, Query(ge=2000, le=2100)],
        park: Annotated[str | None, Query(max_length=64)] = None,
        basis: Basis = Basis.EQUIVALENT,
    ) -> list[GradeOut]:
        """亩均效益 grades of the caller's firms (or a park's) for a year, against each other."""
        period = Period.year(year)
        entity = Entity("park", park) if park else Entity("district")
        async with _connection(request) as conn:
            table = await load_database_async(conn)
            hierarchy = await load_hierarchy(conn, who.firm_ids)
            figures = []
            for firm in firms_of(hierarchy, entity):
                use = await account(
                    conn,
                    Entity("firm", firm.code),
                    period,
                    table,
                    basis=basis,
                    firm_ids=who.firm_ids,
                    hierarchy=hierarchy,
                )
                figures.append(await _figures(conn, firm.id, firm.code, period, use.total_tce))
        config = await asyncio.to_thread(grading.load_config)
        try:
            graded = grading.grade(figures, config)
        except grading.GradingError as err:
            raise HTTPException(
                422, f"the firms cannot be graded against each other: {err}"
            ) from err
        return [
            GradeOut(
                firm=g.code,
                values={k.value: v for k, v in g.values.items()},
                scores={k.value: v for k, v in g.scores.items()},
                total=g.total,
                grade=None if g.grade is None else g.grade.value,
                rank=g.rank,
                reasons=list(g.reasons),
            )
            for g in graded
        ]

    @r.get("/alarms", tags=["alarms"])
    async def alarms(
        request: Request,
        who: Caller,
        since: datetime | None = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> Page[Alarm]:
        """Devices failing or offline, gateway alarms, and counter events (wrap, reset,
        replacement, glitch, jump) since ``since`` (default: the last 7 days)."""
        after = since or datetime.now(UTC) - timedelta(days=7)
        async with _connection(request) as conn:
            cursor = await conn.execute(
                """SELECT * FROM (
                     SELECT d.site, d.name, 'device ' || d.state, d.last_success,
                            coalesce(d.error, '')
                     FROM zayton.devices d
                     WHERE d.state IN ('failing', 'offline')
                       AND (%(f)s::int[] IS NULL OR d.firm_id = ANY (%(f)s))
                     UNION ALL
                     SELECT g.site, g.name, 'gateway alarm', g.status_at, a
                     FROM zayton.gateways g, unnest(g.alarms) a
                     WHERE %(f)s::int[] IS NULL OR g.firm_id = ANY (%(f)s)
                     UNION ALL
                     SELECT d.site, d.name || '/' || p.name, 'counter ' || e.kind, e.ts,
                            e.detail
                     FROM zayton.counter_events e
                     JOIN zayton.points p ON p.id = e.point_id
                     JOIN zayton.devices d ON d.id = p.device_id
                     WHERE e.ts >= %(after)s
                       AND (%(f)s::int[] IS NULL OR d.firm_id = ANY (%(f)s))) found
                   ORDER BY 4 DESC NULLS LAST, 1, 2""",
                {"f": _ids(who), "after": after},
            )
            rows = [
                Alarm(firm=f, source=s, kind=k, ts=t, detail=d)
                for f, s, k, t, d in await cursor.fetchall()
            ]
        return Page(
            items=rows[offset : offset + limit], total=len(rows), limit=limit, offset=offset
        )

    @r.post("/business", tags=["business"], responses=_business_answers())
    async def post_business(
        request: Request, who: Caller, items: list[dict[str, Any]]
    ) -> ImportResult:
        """Monthly business data as JSON objects with the CSV's column names; all or nothing."""
        _editor(who)
        return await _import(request, who, lambda: business.parse_items(items))

    @r.post("/business/csv", tags=["business"], responses=_business_answers(413))
    async def post_business_csv(
        request: Request, who: Caller, file: Annotated[UploadFile, File()]
    ) -> ImportResult:
        """Monthly business data as a UTF-8 CSV (the format of 'zayton db business')."""
        _editor(who)
        data = await file.read(8 * 1024 * 1024 + 1)
        if len(data) > 8 * 1024 * 1024:
            raise HTTPException(413, "a CSV upload is at most 8 MiB")
        return await _import(request, who, lambda: business.parse_csv(business.decode_csv(data)))

    @r.get(
        "/reports/monthly",
        tags=["reports"],
        responses=answers(403, 404)
        | {
            200: {
                "content": {
                    "text/csv": {},
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {},
                }
            }
        },
    )
    async def monthly(
        request: Request,
        who: Caller,
        entity: Annotated[
            str, Query(max_length=200, description="district, park:<code> or firm:<code>")
        ],
        month: Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")],
        basis: Basis = Basis.EQUIVALENT,
        format: Literal["json", "csv", "xlsx"] = "json",
    ) -> Response:
        """The monthly energy report a bureau files (能源消费月报): carriers with last year's
        month and the year to date, intensities, coefficients and notes; JSON, CSV or XLSX."""
        target = _entity(entity, who)
        year, number = (int(part) for part in month.split("-"))
        async with _connection(request) as conn:
            table = await load_database_async(conn)
            report = await reports.monthly_report(
                conn, target, year, number, table, basis=basis, firm_ids=who.firm_ids
            )
        name = f"zayton-{str(target).replace(':', '-').replace('/', '-')}-{month}"
        if format == "csv":
            return Response(
                reports.to_csv(report),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
            )
        if format == "xlsx":
            return Response(
                reports.to_xlsx(report),
                media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
            )
        return Response(report.model_dump_json(), media_type="application/json")

    return r


# --- helpers -------------------------------------------------------------------------------------

_FIRMS = """
    SELECT f.code, f.name, p.code, f.sector, f.zone, f.land_area_m2, f.above_scale,
           f.key_energy_unit, f.onboarded_on, f.transformer_kva
    FROM zayton.firms f LEFT JOIN zayton.parks p ON p.id = f.park_id
"""


def _firm(row: tuple[Any, ...]) -> FirmOut:
    return FirmOut(
        code=row[0],
        name=row[1],
        park=row[2],
        sector=row[3],
        zone=row[4],
        land_area_m2=_num(row[5]),
        above_scale=row[6],
        key_energy_unit=row[7],
        onboarded_on=row[8],
        transformer_kva=_num(row[9]),
    )


def _num(value: object) -> float | None:
    return None if value is None else float(str(value))


def _ids(who: Principal) -> list[int] | None:
    return None if who.firm_ids is None else list(who.firm_ids)


def _scope(who: Principal) -> Scope:
    return Scope(who.firm_ids)


async def _one(cursor: psycopg.AsyncCursor[Any]) -> tuple[Any, ...]:
    row = await cursor.fetchone()
    if row is None:
        raise HTTPException(404, "not found")
    return tuple(row)


async def _visible_firm(conn: AsyncConn, who: Principal, code: str) -> int:
    cursor = await conn.execute("SELECT id FROM zayton.firms WHERE code = %s", (code,))
    row = await cursor.fetchone()
    if row is None or not who.sees(int(row[0])):
        raise HTTPException(404, f"no firm {code!r}")
    return int(row[0])


async def _visible_device(conn: AsyncConn, who: Principal, firm: str, device: str) -> int:
    cursor = await conn.execute(
        "SELECT id, firm_id FROM zayton.devices WHERE site = %s AND name = %s", (firm, device)
    )
    row = await cursor.fetchone()
    if (
        row is None
        or (row[1] is None and who.firm_ids is not None)
        or (row[1] is not None and not who.sees(int(row[1])))
    ):
        raise HTTPException(404, f"no device {device!r} at {firm!r}")
    return int(row[0])


def _resolution(
    span_s: float, interval_s: float, max_points: int
) -> Literal["raw", "15m", "hour", "day", "month"]:
    if span_s / interval_s <= max_points:
        return "raw"
    for name, width in (("15m", 900), ("hour", 3600), ("day", 86400), ("month", 31 * 86400)):
        if span_s / width <= max_points:
            return name  # type: ignore[return-value]
    raise HTTPException(422, "the period has more months than max_points")


async def _may_write(conn: AsyncConn, who: Principal, target: Entity) -> None:
    """Editors write within their scope: the district anything, a park its park and firms, a
    firm itself."""
    if who.role == "district":
        return
    if target.kind == "firm":
        await _visible_firm(conn, who, target.code)
        return
    if target.kind == "park" and who.role == "park":
        cursor = await conn.execute("SELECT code FROM zayton.parks WHERE id = %s", (who.park_id,))
        row = await cursor.fetchone()
        if row is not None and row[0] == target.code:
            return
    raise HTTPException(403, f"this account may not write for {target}")


async def _import(
    request: Request, who: Principal, parse: Callable[[], list[business.Record]]
) -> ImportResult:
    try:
        records = parse()
    except business.BusinessDataError as err:
        raise _problems(err) from err
    async with _connection(request) as conn:
        for code in sorted({r.firm for r in records}):
            cursor = await conn.execute("SELECT id FROM zayton.firms WHERE code = %s", (code,))
            row = await cursor.fetchone()
            # Outside the caller's firms, a firm that exists and one that does not look alike.
            hidden = row is None if who.firm_ids is not None else False
            if hidden or (row is not None and not who.sees(int(row[0]))):
                raise HTTPException(403, f"this account may not write for firm {code!r}")

    def write() -> int:
        with psycopg.connect(request.app.state.database_url, autocommit=True) as conn:
            return business.store(conn, records)

    try:
        return ImportResult(imported=await asyncio.to_thread(write))
    except business.BusinessDataError as err:
        raise _problems(err) from err


def _problems(err: business.BusinessDataError) -> Refused:
    rows = [RowProblem.model_validate(p.as_dict()) for p in err.problems]
    return Refused(422, Problems(detail=str(err).splitlines()[0], problems=rows))


def _business_answers(*more: int) -> dict[int | str, dict[str, Any]]:
    found = answers(400, 403, *more)
    found[422] = {"model": Problems | Invalid, "description": Problems.__doc__}
    return found


def _plan(database_url: str) -> plan.Plan:
    with psycopg.connect(database_url) as conn:
        return plan.load_database(conn)


async def _figures(
    conn: AsyncConn, firm_id: int, code: str, period: Period, tce: float
) -> grading.FirmFigures:
    cursor = await conn.execute(
        """SELECT sum(output_value), sum(value_added), sum(tax), avg(headcount),
                  (SELECT land_area_m2 FROM zayton.firm_months
                   WHERE firm_id = %(id)s AND land_area_m2 IS NOT NULL
                     AND month >= %(first)s AND month <= %(last)s
                   ORDER BY month DESC LIMIT 1),
                  (SELECT land_area_m2 FROM zayton.firms WHERE id = %(id)s)
           FROM zayton.firm_months
           WHERE firm_id = %(id)s AND month >= %(first)s AND month <= %(last)s""",
        {"id": firm_id, "first": period.first_day, "last": period.last_day},
    )
    row = await _one(cursor)
    return grading.FirmFigures(
        code=code,
        land_area_m2=_num(row[4]) or _num(row[5]),
        output_value=_num(row[0]),
        value_added=_num(row[1]),
        tax=_num(row[2]),
        energy_tce=tce,
        headcount=_num(row[3]),
    )
