"""A schemathesis run against the API's own OpenAPI description, on the real server: no request,
however odd, gets a server error, and every answer given, refusals included, is one the
description promises, its status, content type and body.

The description is the app's, the same the server serves at /openapi.json (a test checks), loaded
when the module is collected so that each operation is a test of its own. Reads run over the
two-day park as a read-only district account, which sees everything and writes nothing (the write
routes answer it 403 once the request is valid). Writes run as a district editor on a database of
their own, whose park, firm and meter are all called "0", a value the generator often tries.

At the end, a request for each kind of refusal checks that it is documented as it is answered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.filters import HasAPIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import ApiSettings, create_app
from api.auth import create_account
from api.registry import parse, store
from ingest.migrate import migrate
from tests.apiserver import running_api, settle
from tests.parkdb import DatabaseFactory, Park2Days

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"  # noqa: S105 - the test accounts'
TWO_DAYS = {"start": "2026-11-02T00:00:00+08:00", "end": "2026-11-04T00:00:00+08:00"}
READER, EDITOR = "schema-district", "schema-editor"
SPEC = create_app(ApiSettings("postgresql://127.0.0.1/not-connected")).openapi()
schema = schemathesis.openapi.from_dict(
    SPEC,
    # A NUL character is tried once per route and text parameter below (psycopg refuses it; the
    # API answers 422), rather than by whichever operation the generator happens to send one to.
    config=schemathesis.Config.from_dict({"generation": {"allow-x00": False}}),
)


def _writes(context: HasAPIOperation) -> bool:
    operation = context.operation
    return operation.method.upper() != "GET" and operation.path != "/v1/auth/token"


READS = schema.exclude(_writes)
WRITES = schema.include(_writes)
EXAMPLES = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
"""25 generated requests an operation besides the examples and coverage phases, the same ones
on every run."""
ZERO_PARK = {
    "park": {"id": "0", "name": "0"},
    "firms": [
        {
            "id": "0",
            "name": "0",
            "land_area_m2": 1000,
            "gateways": [{"id": "0"}],
            "lines": [{"id": "0", "workshop": "0"}],
            "devices": [{"name": "0", "type": "meter", "measures": "site"}],
        }
    ],
}


@dataclass(frozen=True)
class Served:
    base: str
    headers: dict[str, str]

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request as this account, on a connection of its own."""
        kwargs["headers"] = {**self.headers, **kwargs.get("headers", {})}
        answer = httpx.request(method, f"{self.base}{path}", **kwargs)
        if answer.is_server_error:
            settle(self.base)
        return answer


def _serve(dsn: str, username: str) -> Iterator[Served]:
    with running_api(ApiSettings(dsn)) as base:
        form = {"username": username, "password": PASSWORD}
        token = httpx.post(f"{base}/v1/auth/token", data=form).json()["access_token"]
        yield Served(base, {"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def reader(park_db: Park2Days) -> Iterator[Served]:
    with psycopg.connect(park_db.dsn, autocommit=True) as conn:
        create_account(conn, READER, "district", password=PASSWORD)
    try:
        yield from _serve(park_db.dsn, READER)
    finally:
        with psycopg.connect(park_db.dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM zayton.accounts WHERE username = %s", (READER,))


@pytest.fixture(scope="module")
def editor(pg_database: DatabaseFactory) -> Iterator[Served]:
    dsn = pg_database("api_schema_writes")
    migrate(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        store(conn, parse(ZERO_PARK))
        create_account(conn, EDITOR, "district", password=PASSWORD, editor=True)
    yield from _serve(dsn, EDITOR)


def _exercise(case: schemathesis.Case[Any], served: Served) -> None:
    response = case.call(base_url=served.base, headers=served.headers)
    if response.status_code >= 500:
        settle(served.base)
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


def test_the_description_tested_is_the_one_served_and_valid(reader: Served) -> None:
    assert httpx.get(f"{reader.base}/openapi.json").json() == SPEC
    schema.validate()  # against the OpenAPI meta-schema of its version
    assert [r.err() for r in schema.get_all_operations() if isinstance(r, Err)] == []


BIGINT = 2**63
"""The first offset PostgreSQL cannot take (a known server error, shown by a test below)."""
PERIODS = [
    ("2026-11-02T00:00:00+08:00", "2026-11-04T00:00:00+08:00"),
    ("2026-11-02T10:15:00+08:00", "2026-11-02T10:30:00+08:00"),
    ("2026-11-01T00:00:00+08:00", "2026-12-01T00:00:00+08:00"),
    ("2026-01-01T00:00:00+08:00", "2027-01-01T00:00:00+08:00"),
    ("2021-11-04T00:00:00+08:00", "2026-11-04T00:00:00+08:00"),
    ("2026-11-02T00:00:00Z", "2026-11-02T00:15:00Z"),
]
"""Periods the routes accept: two days of the park, one 15-minute slot, a month, a year, five
years, a slot on UTC boundaries."""
REAL: dict[str, list[Any]] = {
    "entity": [
        "district",
        "park:tiny-park",
        "firm:tiny-shoes",
        "firm:tiny-electronics",
        "workshop:tiny-shoes/moulding",
        "line:tiny-shoes/eva-1",
        "device:tiny-shoes/incomer",
    ],
    "firm": ["tiny-shoes", "tiny-electronics"],
    "device": ["incomer", "water-main", "pv-roof"],
    "point": ["energy_import_kwh", "active_power_kw", "water_volume_m3"],
    "park": ["tiny-park"],
    "year": [2025, 2026],
    "as_of": ["2026-11-04", "2026-01-02", "2027-01-01"],
    "month": ["2026-11", "2026-10", "2025-11"],
    "base_year": [2025],
}
"""Values that name what the park holds, mixed into the generated queries, so that the run gets
past the routes' own checks (an entity that exists, a period on 15-minute boundaries) into what
lies behind them."""


def _past_known_errors(context: schemathesis.HookContext, query: dict[str, Any]) -> dict[str, Any]:
    """``query`` without what makes a known server error (each has a test below), so that the
    run goes on looking for the others."""
    path = "" if context.operation is None else context.operation.path
    offset, year, as_of = query.get("offset"), query.get("year"), query.get("as_of")
    if path == "/v1/readings/latest" and isinstance(offset, int) and offset >= BIGINT:
        query["offset"] = offset % BIGINT
    if path == "/v1/targets" and isinstance(year, int) and isinstance(as_of, str):
        with contextlib.suppress(ValueError):
            day = date.fromisoformat(as_of)
            query["as_of"] = min(max(day, date(year, 1, 1)), date(year, 12, 31)).isoformat()
    return query


def _mostly(real: st.SearchStrategy[Any], generated: Any) -> st.SearchStrategy[Any]:
    """A real value three times in four, the generated one otherwise."""
    return st.sampled_from([True, True, True, False]).flatmap(
        lambda use_real: real if use_real else st.just(generated)
    )


def flatmap_query(context: schemathesis.HookContext, query: dict[str, Any] | None) -> Any:
    """Each generated query as it is, or with some of its values replaced by real ones."""
    generated = dict(query or {})
    period = (generated.get("start"), generated.get("end"))
    periods = _mostly(st.sampled_from(PERIODS), period)
    values = st.fixed_dictionaries(
        {
            name: _mostly(st.sampled_from(REAL[name]), value)
            for name, value in generated.items()
            if name in REAL
        }
    )

    def mixed(drawn: tuple[tuple[Any, Any], dict[str, Any]]) -> dict[str, Any]:
        (start, end), real = drawn
        if "start" in generated and "end" in generated:
            real = {**real, "start": start, "end": end}
        return _past_known_errors(context, {**generated, **real})

    return st.tuples(periods, values).map(mixed)


@EXAMPLES
@READS.hooks.apply(flatmap_query)
@READS.parametrize()
def test_no_read_gets_a_server_error(case: schemathesis.Case[Any], reader: Served) -> None:
    _exercise(case, reader)


@EXAMPLES
@WRITES.parametrize()
def test_no_write_gets_a_server_error(case: schemathesis.Case[Any], editor: Served) -> None:
    _exercise(case, editor)


def test_an_offset_beyond_bigint_is_refused(reader: Served) -> None:
    params = {"offset": BIGINT}
    answer = reader.request("GET", "/v1/readings/latest", params=params)
    assert answer.status_code == 422, answer.text


def test_targets_as_of_a_day_after_the_year_are_no_server_error(reader: Served) -> None:
    params: dict[str, str | int] = {"year": 2025, "as_of": "2026-01-15"}
    answer = reader.request("GET", "/v1/targets", params=params)
    assert answer.status_code < 500, answer.text


def test_an_offset_beyond_every_row_is_an_empty_page(reader: Served) -> None:
    for path in ("/v1/readings/latest", "/v1/firms", "/v1/alarms", "/v1/completeness"):
        params: dict[str, str | int] = {"offset": BIGINT - 1, **TWO_DAYS}
        answer = reader.request("GET", path, params=params)
        assert (answer.status_code, answer.json()["items"]) == (200, []), path


# --- a NUL character in a text parameter ---------------------------------------------------------

VALID: dict[str, str] = {
    "firm": "tiny-shoes",
    "device": "incomer",
    "point": "energy_import_kwh",
    "park": "tiny-park",
    "entity": "firm:tiny-shoes",
    "month": "2026-11",
    "year": "2026",
    "username": READER,
    "password": PASSWORD,
    "grant_type": "password",
    **TWO_DAYS,
}
"""A value for every parameter that has to have one, so that the NUL is the only thing wrong."""


def _text_parameters() -> Iterator[tuple[str, str, str, str]]:
    """(method, path, where, name) of every free-text path, query and form parameter."""
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            found = [(p["in"], p["name"], p["schema"]) for p in operation.get("parameters", [])]
            body = operation.get("requestBody", {}).get("content", {})
            for media, described in body.items():
                if media == "application/x-www-form-urlencoded":
                    ref = described["schema"]["$ref"].rsplit("/", 1)[-1]
                    properties = SPEC["components"]["schemas"][ref]["properties"]
                    found += [("form", name, spec) for name, spec in properties.items()]
            for where, name, spec in found:
                options = spec.get("anyOf", [spec])
                if any(
                    o.get("type") == "string" and not {"format", "enum"} & set(o) for o in options
                ):
                    yield method.upper(), path, where, name


def _nul_cases() -> Iterator[Any]:
    for method, path, where, name in _text_parameters():
        yield pytest.param(method, path, where, name, id=f"{method} {path} {name}")


@pytest.mark.parametrize(("method", "path", "where", "name"), list(_nul_cases()))
def test_a_nul_character_in_a_text_parameter_is_refused(
    reader: Served, method: str, path: str, where: str, name: str
) -> None:
    operation = SPEC["paths"][path][method.lower()]
    values = {p["name"]: VALID[p["name"]] for p in operation.get("parameters", []) if p["required"]}
    values[name] = "a\x00"
    url, query, form = path, {}, {}
    for parameter, value in values.items():
        if "{" + parameter + "}" in url:
            url = url.replace("{" + parameter + "}", value.replace("\x00", "%00"))
        else:
            query[parameter] = value
    if where == "form":
        form = {"username": READER, "password": PASSWORD, name: "a\x00"}
        query = {}
    answer = reader.request(method, url, params=query, data=form or None)
    assert answer.status_code < 500, answer.text


# --- refusals, as documented -------------------------------------------------------------------


def _undocumented(path: str, method: str, response: httpx.Response) -> list[str]:
    """What is wrong with ``response`` as an answer the description documents."""
    operation = SPEC["paths"][path][method.lower()]
    if str(response.status_code) not in operation["responses"]:
        return [f"{response.status_code} is not documented (only {sorted(operation['responses'])})"]
    if schema[path][method].is_valid_response(response):
        return []
    return [f"the {response.status_code} body is not the documented one: {response.text}"]


ANSWERS: list[Any] = [
    pytest.param("GET", "/v1/parks", {}, 200, id="200"),
    pytest.param(
        "GET",
        "/v1/firms",
        {"params": {"limit": 0}},
        422,
        id="422-of-fastapi",
    ),
    pytest.param(
        "GET",
        "/v1/energy",
        {"params": {"entity": "plant:x", **TWO_DAYS}},
        422,
        id="422-of-a-route",
    ),
    pytest.param(
        "POST",
        "/v1/business",
        {"json": [{"month": "2026-10", "firm": "tiny-shoes", "headcount": "many"}]},
        422,
        id="422-of-business-data",
    ),
    pytest.param(
        "GET",
        "/v1/firms/nobody",
        {},
        404,
        id="404",
    ),
    pytest.param(
        "PUT",
        "/v1/budgets",
        {"json": {"entity": "district", "year": 2030, "total_tce": 1.0}},
        403,
        id="403",
    ),
    pytest.param(
        "POST",
        "/v1/business",
        {"json": {"month": "2026-10"}},
        422,
        id="422-of-fastapi-on-business-data",
    ),
    pytest.param(
        "GET",
        "/v1/me",
        {"headers": {"Authorization": "Bearer not-a-token"}},
        401,
        id="401",
    ),
    pytest.param(
        "GET",
        "/v1/me",
        {"headers": {"Authorization": "Basic c2NoZW1hOng="}},
        401,
        id="401-of-another-scheme",
    ),
    pytest.param(
        "POST",
        "/v1/auth/token",
        {"data": {"username": READER, "password": "wrong"}},
        401,
        id="401-of-a-wrong-password",
    ),
]


@pytest.mark.parametrize(("method", "url", "request_kwargs", "status"), ANSWERS)
def test_refusals_are_documented(
    request: pytest.FixtureRequest,
    method: str,
    url: str,
    request_kwargs: dict[str, Any],
    status: int,
) -> None:
    # The reader is refused every write (403): data are refused to the editor.
    who = "editor" if method == "POST" and status == 422 else "reader"
    served: Served = request.getfixturevalue(who)
    answer = served.request(method, url, **request_kwargs)
    assert answer.status_code == status, answer.text
    path = "/v1/firms/{firm}" if url.startswith("/v1/firms/") else url
    assert _undocumented(path, method, answer) == []


def test_every_route_but_sign_in_declares_both_ways_to_sign_in() -> None:
    schemes = SPEC["components"]["securitySchemes"]
    assert (schemes["HTTPBearer"]["scheme"], schemes["HTTPBearer"]["bearerFormat"]) == (
        "bearer",
        "JWT",
    )
    assert (schemes["APIKeyHeader"]["in"], schemes["APIKeyHeader"]["name"]) == (
        "header",
        "X-API-Key",
    )
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if path.startswith("/v1/") and path != "/v1/auth/token":
                declared = operation.get("security")
                assert declared == [{"HTTPBearer": []}, {"APIKeyHeader": []}], (
                    method,
                    path,
                )
                assert {"401", "422", "503"} <= set(operation["responses"]), (method, path)
