"""Access control over every route of /v1, generated from the app itself.

The routes are read from the app (``fastapi.routing.iter_route_contexts``) and their parameters
from its OpenAPI description; each is filled from one table of values by parameter name, so a
route whose parameters the table cannot fill fails here rather than escaping these tests. Every
parameter that names an object (park, firm, device, point, entity, a business row's firm, a
budget's entity) gets the identifiers of a tenant the caller may not see: a second park imported
beside the tiny park, or the tiny park's other firm. Such an object is not there for the caller
(403 or 404, or exactly the answer for an object that does not exist, with nothing of it in the
body), while a district account asking the very same request gets an answer; writes outside the
caller's scope change nothing.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from api.app import ApiSettings, create_app
from api.auth import create_account, create_key, issue_token
from api.registry import parse, store
from tests.apiserver import running_api, settle
from tests.parkdb import Park2Days

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"  # noqa: S105 - the test accounts'
PREFIX = "access-"
"""Every account made here; removed again at the end of the module."""
WRITE_MONTH, WRITE_YEAR = "2020-01", 2031
"""What the write routes are asked to write: a month and a budget year no other test uses."""

OTHER_PARK = """
[park]
id = "other-park"
name = "Far Away Park (fictional)"
district = "Elsewhere"
area_km2 = 1.5

[[firms]]
id = "other-firm"
name = "Far Away Foods (fictional)"
sector = "food"
land_area_m2 = 12000
onboarded = 2024-01-10
gateways = [{ id = "gw-other-firm", uplink = "wired" }]
lines = [{ id = "other-line", workshop = "other-hall" }]
devices = [{ name = "main", type = "meter", measures = "site" }]
"""


# --- tenants: what the parameters naming objects are filled with ---------------------------------


@dataclass(frozen=True)
class Tenant:
    name: str
    firm: str
    park: str | None
    """None: the caller shares this tenant's park, so a park parameter is left out."""
    device: str
    point: str
    entities: tuple[str, ...]
    """Templates over ``{firm}`` and ``{park}``."""
    marks: tuple[str, ...]
    """Text found only in this tenant's data: a body that holds one has leaked it."""

    def entity_values(self) -> list[str]:
        return [e.format(firm=self.firm, park=self.park) for e in self.entities]

    def absent(self) -> Tenant:
        """The same objects under codes that do not exist."""
        return Tenant(
            f"absent {self.name}",
            "absent-firm",
            None if self.park is None else "absent-park",
            self.device,
            self.point,
            self.entities,
            (),
        )


SHOES = Tenant(
    "tiny-shoes",
    "tiny-shoes",
    None,
    "incomer",
    "energy_import_kwh",
    ("firm:{firm}", "device:{firm}/incomer", "line:{firm}/eva-1", "workshop:{firm}/moulding"),
    ("tiny-shoes", "Tiny Shoes", "eva-1", "gw-tiny-shoes"),
)
ELECTRONICS = Tenant(
    "tiny-electronics",
    "tiny-electronics",
    None,
    "incomer",
    "energy_import_kwh",
    ("firm:{firm}", "device:{firm}/incomer", "line:{firm}/smt-1", "workshop:{firm}/smt"),
    ("tiny-electronics", "Tiny Capacitors", "hvac-meter", "smt-1"),
)
TINY = Tenant(
    "tiny-park",
    "tiny-shoes",
    "tiny-park",
    "incomer",
    "energy_import_kwh",
    ("park:{park}", "firm:{firm}", "device:{firm}/incomer", "line:{firm}/eva-1"),
    ("tiny-", "Tiny "),
)
OTHER = Tenant(
    "other-park",
    "other-firm",
    "other-park",
    "main",
    "energy_import_kwh",
    ("park:{park}", "firm:{firm}", "device:{firm}/main", "line:{firm}/other-line"),
    ("other-park", "other-firm", "Far Away"),
)


# --- routes, from the app ------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    where: str
    """path, query, json (the whole body, named by its schema), form or multipart."""
    required: bool


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    params: tuple[Param, ...]
    documented: bool = True

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def writes(self) -> bool:
        return self.method != "GET" and self.path != "/v1/auth/token"


def _schema_name(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    return str(ref).rsplit("/", 1)[-1] if ref else str(schema.get("title", "?"))


def _api_routes(app: FastAPI) -> Iterator[tuple[str, set[str]]]:
    """The path and methods of every API route of ``app``, included routers' too."""
    try:
        from fastapi.routing import iter_route_contexts  # noqa: PLC0415 - FastAPI 0.137.2+
    except ImportError:  # before 0.137, included routes were copied into app.routes
        for route in app.routes:
            if isinstance(route, APIRoute):
                yield route.path, route.methods or set()
        return
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and context.path is not None:
            yield context.path, context.methods or set()


def v1_routes(app: FastAPI) -> list[Route]:
    """Every route under /v1 with the parameters its OpenAPI operation declares."""
    spec = app.openapi()
    components = spec.get("components", {}).get("schemas", {})
    found = []
    for path, methods in _api_routes(app):
        if not path.startswith("/v1/"):
            continue
        for method in sorted(methods):
            operation = spec["paths"].get(path, {}).get(method.lower())
            if operation is None:
                found.append(Route(method, path, (), documented=False))
                continue
            params = (
                [
                    Param(p["name"], p["in"], bool(p.get("required")))
                    for p in operation["parameters"]
                ]
                if "parameters" in operation
                else []
            )
            body = operation.get("requestBody")
            for media, described in (body or {}).get("content", {}).items():
                schema = described["schema"]
                if media == "application/json":
                    params.append(Param(_schema_name(schema), "json", bool(body.get("required"))))
                    continue
                where = "multipart" if media == "multipart/form-data" else "form"
                model = components[_schema_name(schema)]
                params += [
                    Param(name, where, name in model.get("required", ()))
                    for name in model["properties"]
                ]
            found.append(Route(method, path, tuple(params)))
    return found


APP = create_app(ApiSettings("postgresql://127.0.0.1/not-connected"))
ROUTES = v1_routes(APP)
TOKEN_ROUTE = "POST /v1/auth/token"  # noqa: S105 - a route, no secret
GUARDED = [r for r in ROUTES if r.id != TOKEN_ROUTE]
WRITES = [r for r in ROUTES if r.writes]


# --- the table of values -------------------------------------------------------------------------

TWO_DAYS = ("2026-11-02T00:00:00+08:00", "2026-11-04T00:00:00+08:00")
Value = str | bytes | tuple[str, bytes, str]
"""A query or form value, a JSON body (serialised) or a file upload."""

TABLE: dict[str, Callable[[Tenant], list[Value]]] = {
    # path and query parameters
    "firm": lambda t: [t.firm],
    "park": lambda t: [] if t.park is None else [t.park],
    "device": lambda t: [t.device],
    "point": lambda t: [t.point],
    "entity": lambda t: list(t.entity_values()),
    "start": lambda _: [TWO_DAYS[0]],
    "end": lambda _: [TWO_DAYS[1]],
    "since": lambda _: ["2026-11-01T00:00:00+08:00"],
    "year": lambda _: ["2026"],
    "as_of": lambda _: ["2026-11-04"],
    "month": lambda _: ["2026-11"],
    "format": lambda _: ["json", "csv"],  # xlsx is compressed: a leak would not show as text
    "base_year": lambda _: ["2025"],
    "basis": lambda _: ["equivalent"],
    "limit": lambda _: ["100"],
    "offset": lambda _: ["0"],
    "max_points": lambda _: ["100"],
    # the OAuth2 password form
    "username": lambda _: [f"{PREFIX}district"],
    "password": lambda _: [PASSWORD],
    "grant_type": lambda _: ["password"],
    "scope": lambda _: [""],
    "client_id": lambda _: [],
    "client_secret": lambda _: [],
    # bodies
    "Items": lambda t: [
        json.dumps([{"month": WRITE_MONTH, "firm": t.firm, "tax_10k_yuan": "1.50"}]).encode()
    ],
    "file": lambda t: [
        (
            "business.csv",
            f"month,firm,tax_10k_yuan\n{WRITE_MONTH},{t.firm},2.25\n".encode(),
            "text/csv",
        )
    ],
    "Budget": lambda t: [
        json.dumps({"entity": e, "year": WRITE_YEAR, "total_tce": 100.0}).encode()
        for e in t.entity_values()
    ],
}

OBJECTS = {name for name, fill in TABLE.items() if fill(SHOES) != fill(OTHER)}
"""Parameters that name an object of a tenant: their values depend on it (a business row names
a firm, a budget an entity)."""
LISTS = [
    r
    for r in GUARDED
    if r.method == "GET" and not any(p.required and p.name in OBJECTS for p in r.params)
]
"""Routes that answer a list of what the caller may see, without naming an object."""


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    form: tuple[tuple[str, str], ...] = ()
    files: tuple[tuple[str, tuple[str, bytes, str]], ...] = ()

    def __str__(self) -> str:
        body = "" if self.body is None else f" {self.body.decode()}"
        files = "".join(f" {name}={upload[1]!r}" for name, upload in self.files)
        return f"{self.method} {self.path} {dict(self.query)}{body}{files}"


class Unfillable(LookupError):
    """A route's parameter the table has no value for."""


def calls(route: Route, tenant: Tenant) -> list[Call]:
    """The requests that ask ``route`` about ``tenant``'s objects: one per combination of the
    table's values (entities have several forms)."""
    choices: list[list[tuple[Param, Value | None]]] = []
    for param in route.params:
        if param.name not in TABLE:
            raise Unfillable(f"{route.id}: no value for {param.where} parameter {param.name!r}")
        values = TABLE[param.name](tenant)
        if not values and param.required:
            raise Unfillable(f"{route.id}: {param.name!r} is required, {tenant.name} has none")
        choices.append([(param, v) for v in values] or [(param, None)])
    out = []
    for combination in itertools.product(*choices):
        path, body = route.path, None
        query: list[tuple[str, str]] = []
        form: list[tuple[str, str]] = []
        files: list[tuple[str, tuple[str, bytes, str]]] = []
        for param, value in combination:
            if value is None:
                continue
            if param.where == "path":
                assert isinstance(value, str)
                path = path.replace("{" + param.name + "}", value)
            elif param.where in ("query", "form"):
                assert isinstance(value, str)
                (query if param.where == "query" else form).append((param.name, value))
            elif param.where == "json":
                assert isinstance(value, bytes)
                body = value
            elif param.where == "multipart":
                assert isinstance(value, tuple)
                files.append((param.name, value))
            else:
                raise Unfillable(f"{route.id}: {param.name!r} is in {param.where}")
        out.append(Call(route.method, path, tuple(query), body, tuple(form), tuple(files)))
    return out


# --- the world: two parks, accounts, a server ----------------------------------------------------


@dataclass
class World:
    client: httpx.Client
    dsn: str
    secret: bytes
    credentials: dict[str, dict[str, str]]
    revoked_key: str
    controls: dict[Call, httpx.Response] = field(default_factory=dict)

    def send(self, call: Call, who: str | dict[str, str]) -> httpx.Response:
        headers = dict(self.credentials[who] if isinstance(who, str) else who)
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        answer = self.client.request(
            call.method,
            call.path,
            params=list(call.query),
            content=call.body,
            data=dict(call.form) or None,
            files=list(call.files) or None,
            headers=headers,
        )
        if answer.is_server_error:
            settle(self.client.base_url)
        return answer

    def control(self, call: Call) -> httpx.Response:
        """The same request by a district editor, who may see and write everything."""
        if call not in self.controls:
            self.controls[call] = self.send(call, "district-editor")
        return self.controls[call]

    def written(self) -> list[tuple[Any, ...]]:
        """Everything the write routes can change."""
        with psycopg.connect(self.dsn) as conn:
            months = conn.execute(
                """SELECT firm_id, month, output_value, value_added, price_basis, tax,
                          land_area_m2, headcount, updated_at
                   FROM zayton.firm_months ORDER BY firm_id, month"""
            ).fetchall()
            budgets = conn.execute(
                "SELECT * FROM zayton.energy_budgets ORDER BY entity, year"
            ).fetchall()
        return [*months, ("budgets",), *budgets]


ACCOUNTS: dict[str, dict[str, Any]] = {
    "district": {"role": "district"},
    "district-editor": {"role": "district", "editor": True},
    "park": {"role": "park", "park": "tiny-park"},
    "park-editor": {"role": "park", "park": "tiny-park", "editor": True},
    "shoes": {"role": "firm", "firm": "tiny-shoes"},
    "shoes-editor": {"role": "firm", "firm": "tiny-shoes", "editor": True},
    "other": {"role": "firm", "firm": "other-firm"},
}
KEYED = {"park"}
"""Accounts that call with an API key rather than a bearer token."""


def _seed_other_park(conn: psycopg.Connection[Any]) -> None:
    """The second park, with something of other-firm in every list: a latest value, a counter
    event, an offline meter, a gateway alarm, business data, completeness, energy."""
    store(conn, parse(tomllib.loads(OTHER_PARK)))
    conn.execute(
        """UPDATE zayton.devices SET interval_s = 900, state = 'offline',
               last_success = '2026-11-03 12:00+08', error = 'other-firm meter silent'
           WHERE site = 'other-firm'"""
    )
    conn.execute(
        """UPDATE zayton.gateways SET alarms = '{"other-firm cabinet open"}',
               status_at = '2026-11-03 12:00+08' WHERE site = 'other-firm'"""
    )
    (point,) = conn.execute(
        """INSERT INTO zayton.points (device_id, name, unit, kind, first_seen, carrier)
           SELECT id, 'energy_import_kwh', 'kWh', 'counter', '2026-11-02 00:00+08', 'electricity'
           FROM zayton.devices WHERE site = 'other-firm' AND name = 'main' RETURNING id"""
    ).fetchone() or (None,)
    conn.execute(
        "INSERT INTO zayton.latest VALUES (%s, '2026-11-03 12:00+08', 4321.5, 0)", (point,)
    )
    conn.execute(
        """INSERT INTO zayton.counter_events (point_id, ts, kind, before, after, detail)
           VALUES (%s, '2026-11-03 06:00+08', 'reset', 4000, 0, 'other-firm meter reset')""",
        (point,),
    )
    for rollup, buckets in [
        ("rollup_day", ["2026-11-02 00:00+08", "2026-11-03 00:00+08"]),
        ("rollup_month", ["2026-11-01 00:00+08"]),
    ]:
        for bucket in buckets:
            conn.execute(
                f"""INSERT INTO zayton.{rollup} (point_id, bucket, readings, samples, consumption)
                    VALUES (%s, %s, 96, 96, 800)""".encode(),
                (point, bucket),
            )
    # Business data for 2025 as well, a year in which the meter counted nothing.
    conn.execute(
        """INSERT INTO zayton.firm_months
               (firm_id, month, output_value, value_added, price_basis, tax, headcount)
           SELECT id, m, 500, 120, 'current', 20, 40 FROM zayton.firms,
                  generate_series(date '2025-01-01', date '2026-10-01', interval '1 month') m
           WHERE code = 'other-firm'"""
    )


def _remove_other_park(conn: psycopg.Connection[Any]) -> None:
    devices = "SELECT id FROM zayton.devices WHERE site = 'other-firm'"
    points = f"SELECT id FROM zayton.points WHERE device_id IN ({devices})"
    firm = "SELECT id FROM zayton.firms WHERE code = 'other-firm'"
    for statement in (
        f"DELETE FROM zayton.counter_events WHERE point_id IN ({points})",
        f"DELETE FROM zayton.latest WHERE point_id IN ({points})",
        f"DELETE FROM zayton.rollup_day WHERE point_id IN ({points})",
        f"DELETE FROM zayton.rollup_month WHERE point_id IN ({points})",
        f"DELETE FROM zayton.points WHERE device_id IN ({devices})",
        "DELETE FROM zayton.devices WHERE site = 'other-firm'",
        "DELETE FROM zayton.gateways WHERE site = 'other-firm'",
        f"DELETE FROM zayton.workshops WHERE firm_id IN ({firm})",
        f"DELETE FROM zayton.firm_months WHERE firm_id IN ({firm}) OR month = '{WRITE_MONTH}-01'",
        f"DELETE FROM zayton.energy_budgets WHERE year = {WRITE_YEAR}",
        f"DELETE FROM zayton.accounts WHERE username LIKE '{PREFIX}%'",
        "DELETE FROM zayton.firms WHERE code = 'other-firm'",
        "DELETE FROM zayton.parks WHERE code = 'other-park'",
    ):
        conn.execute(statement.encode())


@pytest.fixture(scope="module")
def world(park_db: Park2Days) -> Iterator[World]:
    try:
        with psycopg.connect(park_db.dsn, autocommit=True) as conn:
            _seed_other_park(conn)
            for name, account in ACCOUNTS.items():
                create_account(conn, PREFIX + name, password=PASSWORD, **account)
            keys = {name: create_key(conn, PREFIX + name, "access tests") for name in KEYED}
            revoked = create_key(conn, PREFIX + "shoes", "revoked")
            conn.execute(
                "UPDATE zayton.api_keys SET revoked_at = now() WHERE name = 'revoked'"
                " AND account_id = (SELECT id FROM zayton.accounts WHERE username = %s)",
                (PREFIX + "shoes",),
            )
        with (
            running_api(ApiSettings(park_db.dsn)) as base,
            # A new connection for every request: on a kept-alive one each answer waits about
            # 40 ms for a delayed acknowledgement (the served socket has no TCP_NODELAY).
            httpx.Client(
                base_url=base, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
            ) as client,
        ):
            credentials: dict[str, dict[str, str]] = {}
            for name in ACCOUNTS:
                form = {"username": PREFIX + name, "password": PASSWORD}
                answer = client.post("/v1/auth/token", data=form)
                assert answer.status_code == 200, answer.text
                credentials[name] = {"Authorization": f"Bearer {answer.json()['access_token']}"}
            credentials.update({name: {"X-API-Key": key} for name, key in keys.items()})
            with psycopg.connect(park_db.dsn) as conn:
                (secret,) = conn.execute("SELECT secret FROM zayton.api_secret").fetchone() or ()
            yield World(client, park_db.dsn, bytes(secret), credentials, revoked)
    finally:
        with psycopg.connect(park_db.dsn, autocommit=True) as conn:
            _remove_other_park(conn)


# --- the route table covers every route ----------------------------------------------------------


def test_the_routes_are_found_and_documented() -> None:
    ids = {r.id for r in ROUTES}
    assert {"GET /v1/firms/{firm}", "GET /v1/readings", TOKEN_ROUTE, "PUT /v1/budgets"} <= ids
    assert [r.id for r in ROUTES if not r.documented] == []


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.id)
@pytest.mark.parametrize("tenant", [SHOES, ELECTRONICS, OTHER, TINY], ids=lambda t: t.name)
def test_the_table_fills_every_parameter_of_every_route(route: Route, tenant: Tenant) -> None:
    """A route with a parameter the table does not know fails here: add it to TABLE, with the
    tenant's identifiers when it names a park, firm, device or the like."""
    assert calls(route, tenant)


# --- another tenant's objects are not there ------------------------------------------------------

MAY_NOT_SEE: dict[str, tuple[Tenant, ...]] = {
    "shoes": (ELECTRONICS, OTHER),
    "shoes-editor": (ELECTRONICS, OTHER),
    "park": (OTHER,),
    "park-editor": (OTHER,),
    "other": (TINY,),
}
"""Who asks, and the tenants they may not see."""
FOREIGN = [
    pytest.param(caller, tenant, route, id=f"{caller}-on-{tenant.name}:{route.id}")
    for caller, tenants in MAY_NOT_SEE.items()
    for tenant in tenants
    for route in GUARDED
]


def _leaks(body: str, tenants: Sequence[Tenant]) -> list[str]:
    return [mark for tenant in tenants for mark in tenant.marks if mark in body]


def _unechoed(answer: httpx.Response, call: Call) -> str:
    """The body of an answer, less what a refusal repeats of the request itself."""
    body = answer.text
    if answer.is_success:
        return body
    for _, value in (*call.query, *call.form):
        body = body.replace(value, "").replace(json.dumps(value)[1:-1], "")
    return body


@pytest.mark.parametrize(("caller", "tenant", "route"), FOREIGN)
def test_another_tenants_objects_are_not_there(
    world: World, caller: str, tenant: Tenant, route: Route
) -> None:
    answered = []
    for call, twin in zip(calls(route, tenant), calls(route, tenant.absent()), strict=True):
        before = world.written() if route.writes else None
        answer = world.send(call, caller)
        assert answer.status_code < 500, f"{call}: {answer.status_code} {answer.text}"
        if before is not None:
            assert world.written() == before, f"{call} by {caller} wrote: {answer.text}"
        if answer.status_code not in (403, 404):
            # Only as an object that does not exist: the same status, and nothing of it.
            absent = world.send(twin, caller)
            assert answer.status_code == absent.status_code, (
                f"{call}: {answer.status_code} {answer.text}; absent: {absent.text}"
            )
            assert _leaks(_unechoed(answer, call), [tenant]) == [], f"{call}: {answer.text}"
        control = world.control(call)
        assert control.status_code in (200, 422), f"{call}: {control.status_code} {control.text}"
        if control.status_code == 422 and answer.status_code not in (403, 404):
            # The route refuses the request's form (a budget for a line), whoever asks.
            assert (answer.status_code, answer.json()) == (422, control.json()), str(call)
        answered.append(control.status_code)
    assert 200 in answered, f"{route.id}: no request about {tenant.name} is answered at all"


# --- lists hold only what the caller may see -----------------------------------------------------

NO_FIRM_DATA = {"GET /v1/me", "GET /v1/targets"}
"""List routes whose answers name no firm or park (the district's shows no other park)."""


def list_call(route: Route) -> Call:
    """``route`` with the parameters that are not objects filled, the objects left out."""
    call = calls(route, SHOES)[0]
    return Call(call.method, call.path, tuple(q for q in call.query if q[0] not in OBJECTS))


@pytest.mark.parametrize("route", LISTS, ids=lambda r: r.id)
def test_lists_hold_only_what_the_caller_may_see(world: World, route: Route) -> None:
    call = list_call(route)
    for caller, hidden in MAY_NOT_SEE.items():
        answer = world.send(call, caller)
        assert answer.status_code == 200, f"{call} by {caller}: {answer.text}"
        assert _leaks(answer.text, hidden) == [], f"{call} by {caller}: {answer.text}"
    seen = world.send(call, "district")
    assert seen.status_code == 200, seen.text
    if route.id not in NO_FIRM_DATA:
        assert _leaks(seen.text, [OTHER]), f"the district sees nothing of the other park: {call}"
        assert _leaks(seen.text, [TINY]), f"the district sees nothing of the tiny park: {call}"


def test_the_district_sees_both_parks_and_every_firm(world: World) -> None:
    parks = world.client.get("/v1/parks", headers=world.credentials["district"]).json()
    assert {p["code"]: p["firms"] for p in parks} == {"other-park": 1, "tiny-park": 2}
    firms = world.client.get("/v1/firms", headers=world.credentials["district"]).json()
    assert [f["code"] for f in firms["items"]] == ["other-firm", "tiny-electronics", "tiny-shoes"]
    for who, expected in [
        ("park", {"tiny-park": 2}),
        ("shoes", {"tiny-park": 1}),
        ("other", {"other-park": 1}),
    ]:
        parks = world.client.get("/v1/parks", headers=world.credentials[who]).json()
        assert {p["code"]: p["firms"] for p in parks} == expected, who


# --- without credentials, or with bad ones -------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _bad_credentials(world: World) -> dict[str, dict[str, str]]:
    user = PREFIX + "shoes"
    hour_ago = datetime.now(UTC) - timedelta(hours=2)
    header, payload, signature = (
        world.credentials["shoes"]["Authorization"].removeprefix("Bearer ").split(".")
    )
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = PREFIX + "district-editor"
    return {
        "none": {},
        "another secret": {"Authorization": f"Bearer {issue_token(secrets.token_bytes(32), user)}"},
        "expired": {"Authorization": f"Bearer {issue_token(world.secret, user, now=hour_ago)}"},
        "tampered": {"Authorization": f"Bearer {header}.{_b64(claims)}.{signature}"},
        "unsigned": {"Authorization": f"Bearer {_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."},
        "not a token": {"Authorization": "Bearer not-a-token"},
        "basic": {
            "Authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
        },
        "revoked key": {"X-API-Key": world.revoked_key},
        "unknown key": {"X-API-Key": "zk_" + secrets.token_urlsafe(32)},
    }


@pytest.mark.parametrize("route", GUARDED, ids=lambda r: r.id)
def test_no_route_answers_without_valid_credentials(world: World, route: Route) -> None:
    for call in calls(route, SHOES)[:1]:
        before = world.written() if route.writes else None
        for name, headers in _bad_credentials(world).items():
            answer = world.send(call, headers)
            assert answer.status_code == 401, f"{name}: {call}: {answer.status_code} {answer.text}"
            assert answer.headers.get("www-authenticate") == "Bearer", name
        if before is not None:
            assert world.written() == before


def test_good_credentials_made_the_same_way_are_accepted(world: World) -> None:
    """Controls for the bad ones: a token made with the database's secret now, and the tampered
    token's parts put back together unchanged."""
    user = PREFIX + "shoes"
    fresh = {"Authorization": f"Bearer {issue_token(world.secret, user)}"}
    assert world.client.get("/v1/me", headers=fresh).json()["username"] == user
    header, payload, signature = (
        world.credentials["shoes"]["Authorization"].removeprefix("Bearer ").split(".")
    )
    intact = {"Authorization": f"Bearer {header}.{payload}.{signature}"}
    assert world.client.get("/v1/me", headers=intact).status_code == 200


def test_a_key_is_refused_from_the_moment_it_is_revoked(world: World) -> None:
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        key = create_key(conn, PREFIX + "other", "to revoke")
        assert world.client.get("/v1/me", headers={"X-API-Key": key}).status_code == 200
        conn.execute("UPDATE zayton.api_keys SET revoked_at = now() WHERE name = 'to revoke'")
    assert world.client.get("/v1/me", headers={"X-API-Key": key}).status_code == 401


def test_the_token_route_needs_the_right_password(world: World) -> None:
    form = {"username": PREFIX + "shoes", "password": PASSWORD + "!"}
    assert world.client.post("/v1/auth/token", data=form).status_code == 401
    form = {"username": PREFIX + "nobody", "password": PASSWORD}
    assert world.client.post("/v1/auth/token", data=form).status_code == 401


# --- writes --------------------------------------------------------------------------------------

READERS = {"district": SHOES, "park": SHOES, "shoes": SHOES, "other": OTHER}


@pytest.mark.parametrize("route", WRITES, ids=lambda r: r.id)
@pytest.mark.parametrize("reader", READERS)
def test_a_read_only_account_may_not_write(world: World, route: Route, reader: str) -> None:
    for call in calls(route, READERS[reader]):
        before = world.written()
        answer = world.send(call, reader)
        assert answer.status_code == 403, f"{call}: {answer.status_code} {answer.text}"
        assert world.written() == before


def _months(world: World, firm: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(world.dsn) as conn:
        return conn.execute(
            """SELECT m.tax FROM zayton.firm_months m JOIN zayton.firms f ON f.id = m.firm_id
               WHERE f.code = %s AND m.month = %s""",
            (firm, f"{WRITE_MONTH}-01"),
        ).fetchall()


def _budgets(world: World, entity: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(world.dsn) as conn:
        return conn.execute(
            "SELECT total_tce FROM zayton.energy_budgets WHERE entity = %s AND year = %s",
            (entity, WRITE_YEAR),
        ).fetchall()


OWN_WRITES: dict[str, Callable[[World], None]] = {}


def _own(route: str) -> Callable[[Callable[[World], None]], Callable[[World], None]]:
    def register(check: Callable[[World], None]) -> Callable[[World], None]:
        OWN_WRITES[route] = check
        return check

    return register


@_own("POST /v1/business")
def _business_json(world: World) -> None:
    (call,) = calls(next(r for r in WRITES if r.id == "POST /v1/business"), SHOES)
    answer = world.send(call, "shoes-editor")
    assert (answer.status_code, answer.json()) == (200, {"imported": 1})
    assert [float(t) for (t,) in _months(world, "tiny-shoes")] == [1.5]


@_own("POST /v1/business/csv")
def _business_csv(world: World) -> None:
    (call,) = calls(next(r for r in WRITES if r.id == "POST /v1/business/csv"), SHOES)
    answer = world.send(call, "shoes-editor")
    assert (answer.status_code, answer.json()) == (200, {"imported": 1})
    assert [float(t) for (t,) in _months(world, "tiny-shoes")] == [2.25]


@_own("PUT /v1/budgets")
def _budget(world: World) -> None:
    route = next(r for r in WRITES if r.id == "PUT /v1/budgets")
    for who, entity in [("shoes-editor", "firm:tiny-shoes"), ("park-editor", "park:tiny-park")]:
        body = json.dumps({"entity": entity, "year": WRITE_YEAR, "total_tce": 42.0}).encode()
        answer = world.send(Call(route.method, route.path, body=body), who)
        assert answer.status_code == 200, answer.text
        assert [float(t) for (t,) in _budgets(world, entity)] == [42.0]


def test_every_write_route_has_a_check_of_an_editor_writing_its_own_data() -> None:
    assert sorted(OWN_WRITES) == sorted(r.id for r in WRITES)


@pytest.mark.parametrize("route", sorted(OWN_WRITES))
def test_an_editor_writes_its_own_data(world: World, route: str) -> None:
    OWN_WRITES[route](world)


def test_a_batch_with_another_firms_row_writes_nothing(world: World) -> None:
    before = world.written()
    items = [
        {"month": WRITE_MONTH, "firm": "tiny-shoes", "tax_10k_yuan": "3"},
        {"month": WRITE_MONTH, "firm": "tiny-electronics", "tax_10k_yuan": "3"},
    ]
    answer = world.client.post(
        "/v1/business", json=items, headers=world.credentials["shoes-editor"]
    )
    assert answer.status_code == 403, answer.text
    assert world.written() == before


@pytest.mark.parametrize(
    ("who", "entity"),
    [
        ("shoes-editor", "park:tiny-park"),
        ("shoes-editor", "district"),
        ("park-editor", "district"),
        ("park-editor", "park:other-park"),
        ("park-editor", "firm:other-firm"),
    ],
)
def test_an_editor_may_not_set_a_budget_above_its_scope(
    world: World, who: str, entity: str
) -> None:
    before = world.written()
    body = {"entity": entity, "year": WRITE_YEAR, "total_tce": 1.0}
    answer = world.client.put("/v1/budgets", json=body, headers=world.credentials[who])
    assert answer.status_code in (403, 404), answer.text
    assert world.written() == before


@pytest.mark.parametrize("path", ["/v1/business", "/v1/business/csv"])
def test_writing_for_a_hidden_firm_is_answered_as_for_an_absent_one(
    world: World, path: str
) -> None:
    route = next(r for r in WRITES if r.path == path)
    (hidden,) = calls(route, ELECTRONICS)
    (absent,) = calls(route, ELECTRONICS.absent())
    answers = [world.send(call, "shoes-editor") for call in (hidden, absent)]
    assert answers[0].status_code == answers[1].status_code, [a.text for a in answers]


def test_grading_firms_that_used_no_metered_energy_is_no_server_error(world: World) -> None:
    call = Call("GET", "/v1/grading", (("year", "2025"), ("park", "other-park")))
    answer = world.send(call, "district")
    assert answer.status_code < 500, answer.text
