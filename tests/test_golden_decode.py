"""Golden register-decoding cases: every data type in every word order, plus the value path.

The cases live in tests/golden/decode/ (see its README.md): one TOML file per data type, whose
words were written from the big-endian bytes of each value by the byte-placement rule, and
scaled.toml for scale, offset, not_available, NaN and the plausible range. Each case is decoded
with profiles.codec; finite non-string values are also encoded back to the same words; the scaled
cases go through a one-point profile, plan_reads and Slot.value.
"""

from __future__ import annotations

import math
import tomllib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from profiles.codec import DataType, Encoding, WordOrder, decode, encode
from profiles.model import Profile
from profiles.plan import plan_reads
from wire.payload import Quality

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden" / "decode"
SCALED_FILE = "scaled.toml"

FLOATS = frozenset({DataType.FLOAT32, DataType.FLOAT64})
INTEGERS = frozenset(set(DataType) - FLOATS - {DataType.STRING})

CASE_REQUIRED = frozenset({"order", "words", "value", "note"})
CASE_OPTIONAL = frozenset({"length", "bit", "roundtrip", "label"})
SCALED_REQUIRED = frozenset({"label", "point", "words", "quality", "note"})
SCALED_OPTIONAL = frozenset({"value", "word_order", "xfail"})

Value = int | float | str


class GoldenDataError(ValueError):
    """A golden case file that does not follow the format of tests/golden/decode/README.md."""


@dataclass(frozen=True, slots=True)
class DecodeCase:
    """One case of a per-type file: these words, laid out as this encoding, hold this value."""

    type: DataType
    order: WordOrder
    words: list[int]
    value: Value
    length: int | None
    bit: int | None
    roundtrip: bool
    label: str

    @property
    def id(self) -> str:
        return f"{self.type}-{self.order}-{self.label}"

    @property
    def encoding(self) -> Encoding:
        return Encoding(type=self.type, order=self.order, length=self.length, bit=self.bit)

    @property
    def encodable(self) -> bool:
        """Whether encoding the value must give back exactly the words."""
        if self.type is DataType.STRING or not self.roundtrip:
            return False
        return not isinstance(self.value, float) or math.isfinite(self.value)


@dataclass(frozen=True, slots=True)
class ScaledCase:
    """One case of scaled.toml: a point definition, the words, the engineering value."""

    label: str
    point: dict[str, Any]
    word_order: WordOrder
    words: list[int]
    value: float | None
    quality: Quality
    xfail: str | None


def _tables(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    if set(data) != {"cases"} or not isinstance(data["cases"], list) or not data["cases"]:
        raise GoldenDataError(f"{path.name}: expected a non-empty [[cases]] array and nothing else")
    cases: list[dict[str, Any]] = data["cases"]
    return cases


def _check_keys(
    raw: dict[str, Any], required: frozenset[str], optional: frozenset[str], where: str
) -> None:
    unknown, missing = set(raw) - required - optional, required - set(raw)
    if unknown or missing:
        raise GoldenDataError(f"{where}: unknown keys {unknown or '-'}, missing {missing or '-'}")


def _words(raw: Any, where: str) -> list[int]:
    if not isinstance(raw, list) or not raw:
        raise GoldenDataError(f"{where}: words must be a non-empty list")
    words: list[int] = []
    for item in raw:
        if not (isinstance(item, str) and item.startswith("0x") and len(item) == 6):
            raise GoldenDataError(
                f"{where}: word {item!r} is not a 4-digit hex string like '0x00FF'"
            )
        words.append(int(item, 16))
    return words


def _value(dtype: DataType, raw: Any, where: str) -> Value:
    if dtype in FLOATS:
        if raw == "nan":
            return math.nan
        if not isinstance(raw, float):
            raise GoldenDataError(
                f"{where}: a float value must be a TOML float or 'nan', got {raw!r}"
            )
        return raw
    if dtype is DataType.STRING:
        if not isinstance(raw, str):
            raise GoldenDataError(f"{where}: a string value must be a TOML string, got {raw!r}")
        return raw
    if isinstance(raw, str) and raw.startswith("0x"):
        return int(raw, 16)
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise GoldenDataError(f"{where}: an integer value must be a TOML integer, got {raw!r}")
    return raw


def _label(value: Value) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def load_decode_cases() -> list[DecodeCase]:
    cases: list[DecodeCase] = []
    for path in sorted(GOLDEN.glob("*.toml")):
        if path.name == SCALED_FILE:
            continue
        dtype = DataType(path.stem)
        for n, raw in enumerate(_tables(path), start=1):
            where = f"{path.name} case {n}"
            _check_keys(raw, CASE_REQUIRED, CASE_OPTIONAL, where)
            value = _value(dtype, raw["value"], where)
            cases.append(
                DecodeCase(
                    type=dtype,
                    order=WordOrder(raw["order"]),
                    words=_words(raw["words"], where),
                    value=value,
                    length=raw.get("length"),
                    bit=raw.get("bit"),
                    roundtrip=raw.get("roundtrip", True),
                    label=raw.get("label", _label(value)),
                )
            )
    return cases


def load_scaled_cases() -> list[ScaledCase]:
    cases: list[ScaledCase] = []
    path = GOLDEN / SCALED_FILE
    for n, raw in enumerate(_tables(path), start=1):
        where = f"{path.name} case {n}"
        _check_keys(raw, SCALED_REQUIRED, SCALED_OPTIONAL, where)
        quality = Quality(raw["quality"])
        if (quality is Quality.BAD) == ("value" in raw):
            raise GoldenDataError(f"{where}: a value is given exactly when the quality is not bad")
        value = raw.get("value")
        if value is not None and (not isinstance(value, float) or not math.isfinite(value)):
            raise GoldenDataError(f"{where}: an engineering value is a finite TOML float")
        cases.append(
            ScaledCase(
                label=raw["label"],
                point=raw["point"],
                word_order=WordOrder(raw.get("word_order", "ABCD")),
                words=_words(raw["words"], where),
                value=value,
                quality=quality,
                xfail=raw.get("xfail"),
            )
        )
    return cases


DECODE_CASES = load_decode_cases()
SCALED_CASES = load_scaled_cases()


def _decode_params(cases: list[DecodeCase]) -> list[Any]:
    return [pytest.param(case, id=case.id) for case in cases]


def _scaled_params() -> list[Any]:
    return [
        pytest.param(
            case,
            id=f"scaled-{case.label}",
            marks=[pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else [],
        )
        for case in SCALED_CASES
    ]


@pytest.mark.parametrize("case", _decode_params(DECODE_CASES))
def test_decode(case: DecodeCase) -> None:
    got = decode(case.words, case.encoding)
    expected = case.value
    if isinstance(expected, float):
        assert isinstance(got, float)
        if math.isnan(expected):
            assert math.isnan(got)
        else:
            assert got == expected
            assert math.copysign(1.0, got) == math.copysign(1.0, expected), "sign of zero"
    else:
        assert type(got) is type(expected)
        assert got == expected


@pytest.mark.parametrize("case", _decode_params([c for c in DECODE_CASES if c.encodable]))
def test_encode_gives_back_the_words(case: DecodeCase) -> None:
    assert encode(case.value, case.encoding) == case.words


@pytest.mark.parametrize("case", _scaled_params())
def test_scaled_value(case: ScaledCase) -> None:
    profile = Profile.model_validate(
        {
            "profile": {
                "id": "golden-decode",
                "description": "one point of tests/golden/decode/scaled.toml",
                "source": "Zayton golden cases",
                "word_order": case.word_order,
            },
            "points": [{"name": "golden_value", "address": 0, **case.point}],
        }
    )
    (request,) = plan_reads(profile)
    (slot,) = request.slots
    assert (request.count, slot.offset) == (len(case.words), 0)
    value, quality = slot.value(case.words)
    # The compiled whole-answer decoder the gateway polls with must agree with the slot's own.
    assert request.values(case.words) == [(value, quality)]
    assert quality is case.quality
    if case.value is None:
        assert value is None
    else:
        assert value is not None
        assert math.isclose(value, case.value, rel_tol=1e-12, abs_tol=1e-12), value


def test_every_type_and_order_is_covered() -> None:
    files = {path.name for path in GOLDEN.glob("*.toml")}
    assert files == {f"{dtype}.toml" for dtype in DataType} | {SCALED_FILE}
    orders_by_type: dict[DataType, set[WordOrder]] = defaultdict(set)
    orders_by_value: dict[tuple[DataType, str], list[WordOrder]] = defaultdict(list)
    for case in DECODE_CASES:
        orders_by_type[case.type].add(case.order)
        orders_by_value[case.type, case.label].append(case.order)
    assert set(orders_by_type) == set(DataType)
    for dtype, orders in orders_by_type.items():
        assert orders == set(WordOrder), dtype
    for (dtype, label), found in orders_by_value.items():
        assert sorted(found) == sorted(WordOrder), f"{dtype} {label}: {found}"


def test_case_ids_are_unique() -> None:
    ids = [case.id for case in DECODE_CASES] + [f"scaled-{c.label}" for c in SCALED_CASES]
    assert len(ids) == len(set(ids))


def test_matrix_corners_are_present() -> None:
    """The extremes the folder promises: a zero, and NaN, infinities, -0.0 for the floats."""
    for dtype in DataType:
        values = [case.value for case in DECODE_CASES if case.type is dtype]
        if dtype in FLOATS:
            floats = [v for v in values if isinstance(v, float)]
            assert any(math.isnan(v) for v in floats), dtype
            assert {math.inf, -math.inf} <= set(floats), dtype
            assert any(v == 0 and math.copysign(1.0, v) < 0 for v in floats), dtype
        elif dtype in INTEGERS:
            assert 0 in values, dtype


def test_scaled_covers_every_quality() -> None:
    assert {case.quality for case in SCALED_CASES} == set(Quality)
