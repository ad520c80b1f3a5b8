"""The registry: park → firm → workshop → line → device, what each meter measures and at which
metering level (GB 17167: 1 site boundary, 2 main secondary, 3 main equipment).

Traffic registers gateways, devices and points by itself; it cannot tell which meter is the site
boundary or which line a PLC runs. A registry file says so. It is JSON or TOML, in the shape of
the ``park.json`` the simulator writes (``simulators/truth.py``), so a simulated park imports as
is; ``docs/indicators.md`` describes every field. Fields the simulator adds about its physics
(shifts, prices, loads) are accepted and ignored; any other unknown field is an error.

An import is one transaction: every entity named in the file is created or brought up to date,
nothing else is touched, and a file with any error changes nothing.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from wire.payload import Uplink

SQ_M_PER_MU = 10_000 / 15
"""1 亩 (mu) = 10,000/15 m² ≈ 666.67 m²."""

Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]

_SIMULATION_ONLY = {
    "park": {"latitude", "longitude", "seed"},
    "firm": {
        "shifts",
        "days_per_week",
        "product",
        "value_added_ratio",
        "tax_ratio",
        "unmetered_kw",
        "water_base_m3h",
        "losses",
        "headcount",
    },
    "gateway": {"port"},
    "line": {
        "kw",
        "idle_kw",
        "rate_per_min",
        "steam_th",
        "gas_m3h",
        "water_m3h",
        "continuous",
        "faults_per_day",
    },
    "device": {"unit_id", "kw", "steam_th", "kwp", "start", "rollover", "faults"},
}
"""What the simulator's park.json says about physics: not registry facts."""

ProjectKind = Literal[
    "5g_industrial_internet",
    "industrial_internet_platform",
    "digital_line",
    "digital_workshop",
    "energy_saving",
]


class RegistryError(ValueError):
    """A registry file that cannot be imported; the message names the entry and field."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParkEntry(_Entry):
    id: Code
    name: str
    district: str | None = None
    area_km2: Annotated[float, Field(gt=0)] | None = None


class GatewayEntry(_Entry):
    id: Code
    uplink: Uplink = Uplink.WIRED


class LineEntry(_Entry):
    id: Code
    workshop: Code


class DeviceEntry(_Entry):
    name: Code
    type: str
    profile: str | None = None
    measures: str = "site"
    """site | workshop:<name> | line:<id> | <name of a device of the same firm>."""
    level: Annotated[int, Field(ge=1, le=3)] | None = None
    gateway: Code | None = None
    serial: int | None = None
    line: Code | None = None
    """PLCs: the line they run (the same as ``measures = "line:<id>"``)."""

    def scope(self) -> str:
        return f"line:{self.line}" if self.line is not None else self.measures

    def metering_level(self) -> int:
        if self.level is not None:
            return self.level
        scope = self.scope()
        if scope == "site":
            return 1
        return 2 if scope.startswith("workshop:") else 3


class FirmEntry(_Entry):
    id: Code
    """The firm's code, also its site on the wire."""
    name: str
    sector: str | None = None
    zone: str | None = None
    land_mu: Annotated[float, Field(gt=0)] | None = None
    land_area_m2: Annotated[float, Field(gt=0)] | None = None
    above_scale: bool = True
    key_energy_unit: bool = False
    """重点用能单位: a unit that uploads to the provincial online-monitoring platform."""
    onboarded: date | None = None
    """The day the firm went onto the platform (上云上平台); default: its first live data."""
    transformer_kva: Annotated[float, Field(gt=0)] | None = None
    digital_workshops: list[Code] = []
    gateways: list[GatewayEntry] = []
    lines: list[LineEntry] = []
    devices: list[DeviceEntry] = []

    @model_validator(mode="after")
    def _references(self) -> FirmEntry:
        if self.land_mu is not None and self.land_area_m2 is not None:
            raise ValueError("give land_mu or land_area_m2, not both")
        lines = {line.id: line.workshop for line in self.lines}
        if len(lines) != len(self.lines):
            raise ValueError("a line id is given twice")
        workshops = set(lines.values())
        gateways = {gateway.id for gateway in self.gateways}
        if len(gateways) != len(self.gateways):
            raise ValueError("a gateway id is given twice")
        names = [device.name for device in self.devices]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"device(s) given twice: {', '.join(twice)}")
        for device in self.devices:
            where = f"device {device.name!r}"
            if device.gateway is not None and device.gateway not in gateways:
                raise ValueError(f"{where}: no gateway {device.gateway!r} in this firm")
            scope = device.scope()
            kind, _, target = scope.partition(":")
            if scope == "site":
                continue
            if kind == "line" and target not in lines:
                raise ValueError(f"{where}: measures {scope!r}, but the firm has no such line")
            if kind == "workshop" and target not in workshops:
                raise ValueError(f"{where}: measures {scope!r}, but no line is in that workshop")
            if kind not in ("line", "workshop") and (scope not in names or scope == device.name):
                raise ValueError(
                    f"{where}: measures {scope!r}: not site, workshop:<name>, line:<id> or the "
                    "name of another device of this firm"
                )
        for workshop in self.digital_workshops:
            if workshop not in workshops:
                raise ValueError(f"digital workshop {workshop!r} has no lines")
        return self

    def land_m2(self) -> float | None:
        if self.land_mu is not None:
            return self.land_mu * SQ_M_PER_MU
        return self.land_area_m2


class ProjectEntry(_Entry):
    code: Code
    name: str
    kind: ProjectKind
    year: Annotated[int, Field(ge=2000, le=2100)]
    firm: Code | None = None
    gateways: list[Code] = []
    """Gateway ids of the project's firm (5G+工业互联网 deployments are counted by them)."""


class Registry(_Entry):
    park: ParkEntry
    firms: list[FirmEntry] = []
    projects: list[ProjectEntry] = []

    @model_validator(mode="after")
    def _unique(self) -> Registry:
        firms = {firm.id: firm for firm in self.firms}
        if len(firms) != len(self.firms):
            raise ValueError("a firm id is given twice")
        codes = [project.code for project in self.projects]
        if len(set(codes)) != len(codes):
            raise ValueError("a project code is given twice")
        for project in self.projects:
            where = f"project {project.code!r}"
            if project.firm is None:
                if project.gateways:
                    raise ValueError(f"{where}: gateways belong to a firm; name the firm")
                continue
            firm = firms.get(project.firm)
            if firm is None:
                raise ValueError(f"{where}: no firm {project.firm!r} in this registry")
            missing = set(project.gateways) - {g.id for g in firm.gateways}
            if missing:
                raise ValueError(f"{where}: firm {firm.id!r} has no gateway {sorted(missing)}")
        return self


def parse(raw: dict[str, Any], *, source: str = "registry") -> Registry:
    """Validate a registry given as plain data (JSON or TOML already decoded)."""
    try:
        return Registry.model_validate(_without_simulation(raw))
    except ValidationError as err:
        problems = "; ".join(_problem(e) for e in err.errors())
        raise RegistryError(f"{source}: {problems}") from None


def load_file(path: Path) -> Registry:
    """Read a registry from ``.json`` or ``.toml``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RegistryError(f"{path}: {err.strerror}") from None
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise RegistryError(f"{path}: not valid {kind}: {err}") from None
    if not isinstance(raw, dict):
        raise RegistryError(f"{path}: a registry is an object with park and firms")
    return parse(raw, source=str(path))


def _without_simulation(raw: dict[str, Any]) -> dict[str, Any]:
    def strip(entry: object, kind: str) -> object:
        if not isinstance(entry, dict):
            return entry
        return {k: v for k, v in entry.items() if k not in _SIMULATION_ONLY[kind]}

    out = dict(raw)
    out["park"] = strip(raw.get("park"), "park")
    firms = raw.get("firms")
    if isinstance(firms, list):
        cleaned = []
        for firm in firms:
            entry = strip(firm, "firm")
            if isinstance(entry, dict):
                for key in ("gateways", "lines", "devices"):
                    if isinstance(entry.get(key), list):
                        entry[key] = [strip(item, key[:-1]) for item in entry[key]]
            cleaned.append(entry)
        out["firms"] = cleaned
    return out


def _problem(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "registry"
    return f"{where}: {error['msg']}"


@dataclass(frozen=True, slots=True)
class ImportReport:
    park: str
    firms: int
    workshops: int
    gateways: int
    devices: int
    projects: int


def store(conn: psycopg.Connection[Any], registry: Registry) -> ImportReport:
    """Write ``registry`` in one transaction (``conn`` must not be inside one already)."""
    with conn.transaction():
        park_id = _one(
            conn,
            """INSERT INTO zayton.parks AS p (code, name, district, area_km2)
               VALUES (%s, %s, %s, %s)
               ON CONFLICT (code) DO UPDATE SET name = excluded.name,
                   district = excluded.district, area_km2 = excluded.area_km2
               RETURNING id""",
            (registry.park.id, registry.park.name, registry.park.district, registry.park.area_km2),
        )
        workshops = gateways = devices = 0
        gateway_ids: dict[tuple[str, str], int] = {}
        for firm in registry.firms:
            firm_id = _store_firm(conn, park_id, firm)
            nodes = _store_workshops(conn, firm_id, firm)
            workshops += len(nodes)
            for gateway in firm.gateways:
                gateway_ids[firm.id, gateway.id] = _one(
                    conn,
                    """INSERT INTO zayton.gateways AS g (site, name, firm, firm_id, uplink)
                       VALUES (%s, %s, %s, %s, %s)
                       ON CONFLICT (site, name) DO UPDATE SET firm = excluded.firm,
                           firm_id = excluded.firm_id, uplink = excluded.uplink
                       RETURNING id""",
                    (firm.id, gateway.id, firm.id, firm_id, gateway.uplink.value),
                )
            gateways += len(firm.gateways)
            devices += _store_devices(conn, firm_id, firm, nodes, gateway_ids)
        for project in registry.projects:
            _store_project(conn, park_id, project, gateway_ids)
    return ImportReport(
        park=registry.park.id,
        firms=len(registry.firms),
        workshops=workshops,
        gateways=gateways,
        devices=devices,
        projects=len(registry.projects),
    )


def import_file(dsn: str, path: Path) -> ImportReport:
    registry = load_file(path)
    with psycopg.connect(dsn, autocommit=True) as conn:
        return store(conn, registry)


def _one(conn: psycopg.Connection[Any], query: str, params: Sequence[object]) -> int:
    row = conn.execute(query.encode(), params).fetchone()
    if row is None:  # pragma: no cover - INSERT … RETURNING always returns the row
        raise RegistryError("the database returned no row")
    return int(row[0])


def _store_firm(conn: psycopg.Connection[Any], park_id: int, firm: FirmEntry) -> int:
    # A declared onboarding day wins; without one, the day of the first live data stays.
    return _one(
        conn,
        """INSERT INTO zayton.firms AS f (code, name, park_id, sector, zone, land_area_m2,
               above_scale, key_energy_unit, transformer_kva, onboarded_on)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (code) DO UPDATE SET name = excluded.name, park_id = excluded.park_id,
               sector = excluded.sector, zone = excluded.zone,
               land_area_m2 = excluded.land_area_m2, above_scale = excluded.above_scale,
               key_energy_unit = excluded.key_energy_unit,
               transformer_kva = excluded.transformer_kva,
               onboarded_on = coalesce(excluded.onboarded_on, f.onboarded_on)
           RETURNING id""",
        (
            firm.id,
            firm.name,
            park_id,
            firm.sector,
            firm.zone,
            firm.land_m2(),
            firm.above_scale,
            firm.key_energy_unit,
            firm.transformer_kva,
            firm.onboarded,
        ),
    )


def _store_workshops(
    conn: psycopg.Connection[Any], firm_id: int, firm: FirmEntry
) -> dict[str, int]:
    """Workshops, then their lines; returns ``workshop:<name>`` and ``line:<id>`` → node id."""
    nodes: dict[str, int] = {}
    digital = set(firm.digital_workshops)
    for name in sorted({line.workshop for line in firm.lines}):
        nodes[f"workshop:{name}"] = _one(
            conn,
            """INSERT INTO zayton.workshops AS w (firm_id, name, kind, digital)
               VALUES (%s, %s, 'workshop', %s)
               ON CONFLICT (firm_id, kind, name) DO UPDATE SET digital = excluded.digital,
                   parent_id = NULL
               RETURNING id""",
            (firm_id, name, name in digital),
        )
    for line in firm.lines:
        nodes[f"line:{line.id}"] = _one(
            conn,
            """INSERT INTO zayton.workshops AS w (firm_id, name, kind, parent_id)
               VALUES (%s, %s, 'line', %s)
               ON CONFLICT (firm_id, kind, name) DO UPDATE SET parent_id = excluded.parent_id
               RETURNING id""",
            (firm_id, line.id, nodes[f"workshop:{line.workshop}"]),
        )
    return nodes


def _store_devices(
    conn: psycopg.Connection[Any],
    firm_id: int,
    firm: FirmEntry,
    nodes: dict[str, int],
    gateway_ids: dict[tuple[str, str], int],
) -> int:
    ids: dict[str, int] = {}
    default_gateway = firm.gateways[0].id if firm.gateways else None
    for device in firm.devices:
        gateway = device.gateway or default_gateway
        scope = device.scope()
        ids[device.name] = _one(
            conn,
            """INSERT INTO zayton.devices AS d (site, name, gateway_id, firm_id, workshop_id,
                   metering_level, profile, type, serial)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (site, name) DO UPDATE SET
                   gateway_id = coalesce(excluded.gateway_id, d.gateway_id),
                   firm_id = excluded.firm_id, workshop_id = excluded.workshop_id,
                   metering_level = excluded.metering_level,
                   profile = coalesce(excluded.profile, d.profile), type = excluded.type,
                   serial = coalesce(excluded.serial, d.serial), equipment_id = NULL
               RETURNING id""",
            (
                firm.id,
                device.name,
                None if gateway is None else gateway_ids[firm.id, gateway],
                firm_id,
                nodes.get(scope),
                device.metering_level(),
                device.profile,
                device.type,
                device.serial,
            ),
        )
    for device in firm.devices:
        scope = device.scope()
        if scope != "site" and scope not in nodes:
            conn.execute(
                "UPDATE zayton.devices SET equipment_id = %s WHERE id = %s",
                (ids[scope], ids[device.name]),
            )
    return len(firm.devices)


def _store_project(
    conn: psycopg.Connection[Any],
    park_id: int,
    project: ProjectEntry,
    gateway_ids: dict[tuple[str, str], int],
) -> None:
    project_id = _one(
        conn,
        """INSERT INTO zayton.projects AS p (code, name, kind, firm_id, park_id, year)
           VALUES (%s, %s, %s, (SELECT id FROM zayton.firms WHERE code = %s), %s, %s)
           ON CONFLICT (code) DO UPDATE SET name = excluded.name, kind = excluded.kind,
               firm_id = excluded.firm_id, park_id = excluded.park_id, year = excluded.year
           RETURNING id""",
        (project.code, project.name, project.kind, project.firm, park_id, project.year),
    )
    conn.execute("DELETE FROM zayton.project_gateways WHERE project_id = %s", (project_id,))
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO zayton.project_gateways (project_id, gateway_id) VALUES (%s, %s)",
            [(project_id, gateway_ids[project.firm or "", g]) for g in project.gateways],
        )
