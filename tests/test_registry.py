"""The registry import: the simulated park as is, a file of one's own, and bad files."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api.registry import RegistryError, import_file, load_file, parse, store
from simulators.park import Park
from simulators.scenario import load_scenario
from simulators.truth import registry
from zayton.cli import main

pytestmark = pytest.mark.integration

OWN = """
[park]
id = "qz-etdz"
name = "Quanzhou ETDZ, Qingmeng park"
district = "Quanzhou"
area_km2 = 3.2

[[firms]]
id = "acme-pharma"
name = "Acme Pharma (fictional)"
sector = "pharma"
land_area_m2 = 20000
key_energy_unit = true
onboarded = 2024-04-01
digital_workshops = ["fill"]
gateways = [{ id = "gw-acme", uplink = "5g" }, { id = "gw-acme-2", uplink = "nb-iot" }]
lines = [{ id = "fill-1", workshop = "fill" }, { id = "fill", workshop = "fill" }]
devices = [
  { name = "main", type = "meter", measures = "site" },
  { name = "fill-meter", type = "meter", measures = "workshop:fill", gateway = "gw-acme-2" },
  { name = "line-meter", type = "meter", measures = "line:fill-1", level = 2 },
  { name = "chiller", type = "compressor", level = 3 },
  { name = "chiller-meter", type = "meter", measures = "chiller" },
  { name = "plc-1", type = "plc", line = "fill-1" },
]

[[projects]]
code = "acme-5g-2024"
name = "5G sterile filling line"
kind = "5g_industrial_internet"
year = 2024
firm = "acme-pharma"
gateways = ["gw-acme"]
"""


def rows(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query.encode()).fetchall()


def test_a_registry_of_ones_own_places_every_meter(migrated_database: str, tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(OWN)
    report = import_file(migrated_database, path)
    assert (report.firms, report.workshops, report.gateways, report.devices) == (1, 3, 2, 6)
    devices = rows(
        migrated_database,
        """SELECT d.name, d.metering_level, w.kind, w.name, e.name, g.name
           FROM zayton.devices d
           LEFT JOIN zayton.workshops w ON w.id = d.workshop_id
           LEFT JOIN zayton.devices e ON e.id = d.equipment_id
           LEFT JOIN zayton.gateways g ON g.id = d.gateway_id ORDER BY d.name""",
    )
    assert devices == [
        ("chiller", 3, None, None, None, "gw-acme"),
        ("chiller-meter", 3, None, None, "chiller", "gw-acme"),
        ("fill-meter", 2, "workshop", "fill", None, "gw-acme-2"),
        ("line-meter", 2, "line", "fill-1", None, "gw-acme"),
        ("main", 1, None, None, None, "gw-acme"),
        ("plc-1", 3, "line", "fill-1", None, "gw-acme"),
    ]
    # A line named like its workshop is its own node, inside the workshop.
    nodes = rows(
        migrated_database,
        """SELECT w.kind, w.name, p.name, w.digital FROM zayton.workshops w
           LEFT JOIN zayton.workshops p ON p.id = w.parent_id ORDER BY w.kind, w.name""",
    )
    assert nodes == [
        ("line", "fill", "fill", False),
        ("line", "fill-1", "fill", False),
        ("workshop", "fill", None, True),
    ]
    firm = rows(
        migrated_database,
        "SELECT land_area_m2, key_energy_unit, onboarded_on::text, sector FROM zayton.firms",
    )
    assert firm == [(20000, True, "2024-04-01", "pharma")]
    projects = rows(
        migrated_database,
        """SELECT p.kind, p.year, g.name, g.uplink FROM zayton.projects p
           JOIN zayton.project_gateways pg ON pg.project_id = p.id
           JOIN zayton.gateways g ON g.id = pg.gateway_id""",
    )
    assert projects == [("5g_industrial_internet", 2024, "gw-acme", "5g")]


def test_importing_again_updates_in_place(migrated_database: str, tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(OWN)
    import_file(migrated_database, path)
    ids = rows(migrated_database, "SELECT id, name FROM zayton.devices ORDER BY name")
    path.write_text(OWN.replace('measures = "line:fill-1", level = 2', 'measures = "line:fill"'))
    import_file(migrated_database, path)
    assert rows(migrated_database, "SELECT id, name FROM zayton.devices ORDER BY name") == ids
    moved = rows(
        migrated_database,
        """SELECT w.name, d.metering_level FROM zayton.devices d
           JOIN zayton.workshops w ON w.id = d.workshop_id WHERE d.name = 'line-meter'""",
    )
    assert moved == [("fill", 3)]
    assert rows(migrated_database, "SELECT count(*) FROM zayton.project_gateways") == [(1,)]


def test_the_simulated_park_imports_as_is(migrated_database: str, tmp_path: Path) -> None:
    path = tmp_path / "park.json"
    path.write_text(json.dumps(registry(Park(load_scenario("licheng"), start=1.79e9))))
    report = import_file(migrated_database, path)
    assert (report.firms, report.devices) == (25, 333)
    uplinks = rows(
        migrated_database, "SELECT uplink, count(*) FROM zayton.gateways GROUP BY 1 ORDER BY 1"
    )
    # As the scenario's header says: 12 5G, 18 wired, 3 NB-IoT, 2 Cat-1.
    assert uplinks == [("5g", 12), ("cat-1", 2), ("nb-iot", 3), ("wired", 18)]


def test_traffic_and_registry_meet_on_the_same_devices(migrated_database: str) -> None:
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO zayton.gateways (site, name) VALUES ('acme-pharma', 'gw-acme');
               INSERT INTO zayton.devices (site, name, gateway_id, profile)
               SELECT 'acme-pharma', 'main', id, 'zayton-meter-u32' FROM zayton.gateways"""
        )
        store(conn, parse(tomllib.loads(OWN)))
        found = conn.execute(
            "SELECT name, profile, metering_level FROM zayton.devices WHERE name = 'main'"
        ).fetchall()
    assert found == [("main", "zayton-meter-u32", 1)]  # the profile traffic reported is kept


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('measures = "chiller"', 'measures = "boiler"'),
            "device 'chiller-meter': measures 'boiler': not site",
        ),
        (('measures = "workshop:fill"', 'measures = "workshop:pack"'), "no line is in that"),
        (('line = "fill-1"', 'line = "fill-9"'), "no such line"),
        (('gateway = "gw-acme-2"', 'gateway = "gw-x"'), "no gateway 'gw-x'"),
        (('uplink = "5g"', 'uplink = "6g"'), r"firms\.0\.gateways\.0\.uplink"),
        (('{ name = "plc-1"', '{ name = "main"'), "given twice: main"),
        (("level = 3 }", "level = 4 }"), r"devices\.3\.level"),
        (('digital_workshops = ["fill"]', 'digital_workshops = ["x"]'), "digital workshop 'x'"),
        (("land_area_m2 = 20000", "land_area_m2 = 20000\nland_mu = 30"), "not both"),
        (('gateways = ["gw-acme"]', 'gateways = ["gw-zz"]'), "has no gateway"),
        (('firm = "acme-pharma"', 'firm = "nobody"'), "no firm 'nobody'"),
        (('kind = "5g_industrial_internet"', 'kind = "5g"'), r"projects\.0\.kind"),
        (("sector = ", "colour = "), r"firms\.0\.colour: Extra inputs"),
    ],
)
def test_bad_registries_say_where(change: tuple[str, str], message: str, tmp_path: Path) -> None:
    assert change[0] in OWN
    path = tmp_path / "bad.toml"
    path.write_text(OWN.replace(*change, 1))
    with pytest.raises(RegistryError, match=message):
        load_file(path)


def test_a_bad_file_changes_nothing(migrated_database: str, tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(OWN.replace('line = "fill-1"', 'line = "nope"'))
    with pytest.raises(RegistryError):
        import_file(migrated_database, path)
    assert rows(migrated_database, "SELECT count(*) FROM zayton.firms") == [(0,)]
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(RegistryError, match="not valid JSON"):
        load_file(tmp_path / "broken.json")
    with pytest.raises(RegistryError, match="No such file"):
        load_file(tmp_path / "missing.json")


def test_the_command_line_imports_and_reports_bad_files(
    migrated_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(OWN)
    assert main(["db", "registry", "--database-url", migrated_database, str(path)]) == 0
    assert "park qz-etdz: 1 firms, 3 workshops and lines, 2 gateways, 6 devices" in (
        capsys.readouterr().out
    )
    path.write_text(OWN.replace('uplink = "5g"', 'uplink = "6g"'))
    assert main(["db", "registry", "--database-url", migrated_database, str(path)]) == 1
    assert "firms.0.gateways.0.uplink" in capsys.readouterr().err
