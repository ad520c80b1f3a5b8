"""Services import the contract packages and themselves, never each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = {"wire", "profiles", "gateway", "ingest", "api", "simulators", "dashboards", "zayton"}
ALLOWED: dict[str, set[str]] = {
    "wire": {"wire"},
    "profiles": {"profiles", "wire"},
    "gateway": {"gateway", "profiles", "wire"},
    "simulators": {"simulators", "profiles", "wire"},
    "ingest": {"ingest", "wire"},
    "api": {"api", "wire"},
    "dashboards": {"dashboards"},
    "zayton": FIRST_PARTY,  # the command line composes the services
}


def imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & FIRST_PARTY


def test_every_package_has_a_rule() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_follow_the_layering(package: str) -> None:
    violations = [
        f"{path.relative_to(ROOT)} imports {sorted(imported_packages(path) - ALLOWED[package])}"
        for path in sorted((ROOT / package).rglob("*.py"))
        if imported_packages(path) - ALLOWED[package]
    ]
    assert not violations, violations


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import json\nfrom ingest.store import Store\nfrom . import sibling\n")
    assert imported_packages(module) == {"ingest"}
