"""Golden read-planning cases: a profile and a device's quirks in, the exact Modbus requests out.

The cases live in tests/golden/plan/ (see its README.md): one directory per case with
profile.toml, an optional device.toml of quirk overrides and expected.toml, whose requests were
worked out by hand from the planning rules (gap, limit, holes, tables, overrides). Each case is
loaded as the gateway loads it (profiles.files.load_model, the device's quirks over the
profile's) and planned with profiles.plan.plan_for; function codes, addresses, counts, point
names and offsets must match exactly, and a refused case must fail with the expected message.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from profiles.files import ConfigError, load_model
from profiles.model import BIT_TABLES, Profile, Quirks, load_profile
from profiles.plan import MAX_BITS, MAX_REGISTERS, PlanError, ReadRequest, plan_for

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden" / "plan"
MIN_CASES = 20
CASE_SOURCE = "Zayton plan golden case"
PROFILE_FILE, DEVICE_FILE, EXPECTED_FILE = "profile.toml", "device.toml", "expected.toml"
CASE_FILES = frozenset({PROFILE_FILE, DEVICE_FILE, EXPECTED_FILE})
REQUEST_KEYS = frozenset({"function", "address", "count", "points", "offsets"})
FUNCTION_CODES = frozenset({1, 2, 3, 4})
LIBRARY_COPY = re.compile(r"# Copy of profiles/library/([a-z0-9][a-z0-9_.-]*)\.toml\b")


class GoldenDataError(ValueError):
    """A golden case that does not follow the format of tests/golden/plan/README.md."""


@dataclass(frozen=True, slots=True)
class Request:
    """One read request as the case states it: what is read, and where each point lies in it."""

    function: int
    address: int
    count: int
    points: tuple[str, ...]
    offsets: tuple[int, ...]

    @classmethod
    def of(cls, request: ReadRequest) -> Request:
        return cls(
            function=request.function_code,
            address=request.address,
            count=request.count,
            points=tuple(slot.point.name for slot in request.slots),
            offsets=tuple(slot.offset for slot in request.slots),
        )


@dataclass(frozen=True, slots=True)
class PlanCase:
    name: str
    directory: Path
    requests: tuple[Request, ...]
    error: str | None

    def profile(self) -> Profile:
        return load_model(self.directory / PROFILE_FILE, Profile)

    def device(self) -> Quirks | None:
        path = self.directory / DEVICE_FILE
        return load_model(path, Quirks) if path.is_file() else None

    def plan(self) -> list[ReadRequest]:
        return plan_for(self.profile(), self.device())


def _case_dirs() -> list[Path]:
    return sorted(path for path in GOLDEN.iterdir() if path.is_dir())


def _int(raw: dict[str, Any], key: str, where: str) -> int:
    value = raw[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise GoldenDataError(f"{where}: {key} must be a non-negative integer, got {value!r}")
    return value


def _request(raw: Any, where: str) -> Request:
    if not isinstance(raw, dict) or set(raw) != REQUEST_KEYS:
        keys = sorted(raw) if isinstance(raw, dict) else raw
        raise GoldenDataError(f"{where}: expected exactly {sorted(REQUEST_KEYS)}, got {keys}")
    points, offsets = raw["points"], raw["offsets"]
    if not isinstance(points, list) or not points or not all(isinstance(p, str) for p in points):
        raise GoldenDataError(f"{where}: points must be a non-empty list of point names")
    if not isinstance(offsets, list) or len(offsets) != len(points):
        raise GoldenDataError(f"{where}: offsets must be a list as long as points")
    request = Request(
        function=_int(raw, "function", where),
        address=_int(raw, "address", where),
        count=_int(raw, "count", where),
        points=tuple(points),
        offsets=tuple(_int({"offsets": o}, "offsets", where) for o in offsets),
    )
    if request.function not in FUNCTION_CODES or request.count == 0:
        raise GoldenDataError(f"{where}: function must be 1-4 and count at least 1")
    return request


def load_case(directory: Path) -> PlanCase:
    where = f"{directory.name}/{EXPECTED_FILE}"
    with (directory / EXPECTED_FILE).open("rb") as fh:
        data = tomllib.load(fh)
    if set(data) == {"error"}:
        error = data["error"]
        if not isinstance(error, str) or not error:
            raise GoldenDataError(f"{where}: error must be a non-empty message substring")
        return PlanCase(name=directory.name, directory=directory, requests=(), error=error)
    if set(data) != {"requests"} or not isinstance(data["requests"], list) or not data["requests"]:
        raise GoldenDataError(f"{where}: expected a non-empty [[requests]] array or error = '...'")
    requests = tuple(
        _request(raw, f"{where} request {n}") for n, raw in enumerate(data["requests"], start=1)
    )
    return PlanCase(name=directory.name, directory=directory, requests=requests, error=None)


CASES = [load_case(d) for d in _case_dirs() if (d / EXPECTED_FILE).is_file()]
PLANNED = [case for case in CASES if case.error is None]


def _library_copy(directory: Path) -> str | None:
    """The library id a case's profile.toml says it copies, if it is a copy."""
    first = (directory / PROFILE_FILE).read_text(encoding="utf-8").partition("\n")[0]
    match = LIBRARY_COPY.match(first)
    return match.group(1) if match else None


COPIES = [(case, ref) for case in CASES if (ref := _library_copy(case.directory)) is not None]


def _params(cases: Sequence[PlanCase]) -> list[Any]:
    return [pytest.param(case, id=case.name) for case in cases]


@pytest.mark.parametrize("case", _params(CASES))
def test_plan(case: PlanCase) -> None:
    if case.error is not None:
        with pytest.raises((ConfigError, PlanError)) as refused:
            case.plan()
        assert case.error in str(refused.value)
        return
    assert [Request.of(request) for request in case.plan()] == list(case.requests)


@pytest.mark.parametrize("case", _params(PLANNED))
def test_plan_keeps_the_rules(case: PlanCase) -> None:
    """Independent of the expected requests: every plan obeys the limits it was made under."""
    profile, device = case.profile(), case.device()
    quirks = profile.quirks if device is None else device.over(profile.quirks)
    max_registers = quirks.max_registers or MAX_REGISTERS
    holes = quirks.holes or ()
    requests = plan_for(profile, device)
    order = [(r.function_code, r.address) for r in requests]
    assert order == sorted(order)
    seen: list[str] = []
    for request in requests:
        start, end = request.address, request.address + request.count
        limit = MAX_BITS if request.table in BIT_TABLES else max_registers
        assert 1 <= request.count <= limit
        assert end <= 0x10000
        assert not any(hole.overlaps(request.table, start, end) for hole in holes)
        for slot in request.slots:
            assert slot.point.table == request.table
            assert slot.offset == slot.point.address - start
            assert slot.size == slot.point.words()
        # A request starts on a point and ends on one: it never reads unused words at its edges.
        assert min(slot.offset for slot in request.slots) == 0
        assert max(slot.offset + slot.size for slot in request.slots) == request.count
        seen.extend(slot.point.name for slot in request.slots)
    assert sorted(seen) == sorted(point.name for point in profile.points)


@pytest.mark.parametrize(("case", "ref"), [pytest.param(c, r, id=c.name) for c, r in COPIES])
def test_library_copy_matches_the_library(case: PlanCase, ref: str) -> None:
    copy, original = case.profile(), load_profile(ref)
    assert copy.points == original.points
    assert copy.quirks == original.quirks
    assert copy.profile.word_order == original.profile.word_order


def test_folder_holds_complete_cases() -> None:
    dirs = _case_dirs()
    assert len(dirs) >= MIN_CASES, f"{len(dirs)} cases, want at least {MIN_CASES}"
    assert {path.name for path in GOLDEN.iterdir() if not path.is_dir()} == {"README.md"}
    for directory in dirs:
        files = {path.name for path in directory.iterdir()}
        assert {PROFILE_FILE, EXPECTED_FILE} <= files, f"{directory.name}: {sorted(files)}"
        assert files <= CASE_FILES, f"{directory.name}: unexpected {sorted(files - CASE_FILES)}"
        why = (directory / EXPECTED_FILE).read_text(encoding="utf-8")
        assert why.startswith("# why: "), f"{directory.name}: {EXPECTED_FILE} starts with # why:"
        with (directory / PROFILE_FILE).open("rb") as fh:
            header = tomllib.load(fh)["profile"]
        assert header["id"] == directory.name
        assert header["source"] == CASE_SOURCE
    assert len(CASES) == len(dirs)


def test_folder_covers_plans_errors_devices_and_the_library() -> None:
    assert PLANNED
    assert len(PLANNED) < len(CASES), "some cases must be refused"
    assert any((case.directory / DEVICE_FILE).is_file() for case in CASES)
    assert COPIES, "at least one library profile is copied in"
    functions = {request.function for case in PLANNED for request in case.requests}
    assert functions == FUNCTION_CODES
