"""Device profiles: the register map of a kind of device.

One profile file serves both sides: the gateway decodes a device's registers with it and Zayton's
simulators encode their state with it. A profile is TOML::

    [profile]
    id = "zayton-meter-f32"
    description = "Three-phase meter, float32 registers"
    source = "where the register map comes from"
    word_order = "ABCD"          # default for every point

    [quirks]                     # optional: how this kind of device wants to be read
    max_registers = 64           # words per request (the protocol allows 125)
    holes = [{ table = "holding", first = 30, last = 39 }]   # never read: they raise exceptions
    request_pause_s = 0.05       # wait between two requests to the device

    [[points]]
    name = "voltage_l1_v"        # from the metric catalogue, or a device tag of the same form
    table = "input"              # holding | input | coil | discrete
    address = 0                  # 0-based protocol address
    type = "float32"
    scale = 1.0                  # value = raw * scale + offset
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from profiles.codec import DataType, Encoding, WordOrder, register_count
from profiles.files import ConfigError, load_model
from wire.catalogue import Kind, metric

LIBRARY = Path(__file__).parent / "library"

Table = Literal["holding", "input", "coil", "discrete"]
BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Point(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    table: Table = "holding"
    address: Annotated[int, Field(ge=0, le=0xFFFF)]
    type: DataType = DataType.UINT16
    order: WordOrder | None = None
    length: Annotated[int, Field(ge=1, le=125)] | None = None
    bit: Annotated[int, Field(ge=0, le=15)] | None = None
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    kind: Kind | None = None
    not_available: int | float | None = None
    """A raw value the device reports when it has no value (often 0xFFFF or 0x7FFFFFFF)."""
    min: float | None = None
    """Plausible range: a value outside it is published with quality "uncertain"."""
    max: float | None = None
    rollover: Annotated[float, Field(gt=0)] | None = None
    """Counters: the value at which the register starts again from zero, in engineering units
    (100000000 for a display of 99999999.9 kWh). Unsigned registers default to their full range
    (2**32 * scale for uint32); float and signed registers never roll over."""
    max_per_hour: Annotated[float, Field(gt=0)] | None = None
    """Counters: the largest increase per hour the device can physically make (its rated power,
    say); a bigger step is quarantined as a jump instead of being counted."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.type is DataType.STRING:
            raise ValueError("string points are device metadata; readings carry numbers only")
        if self.table in BIT_TABLES and self.type is not DataType.BITS:
            raise ValueError(f"table {self.table!r} holds single bits: use type 'bits'")
        if not math.isfinite(self.scale) or self.scale == 0:
            raise ValueError("scale must be a finite, non-zero number")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if (self.rollover is not None or self.max_per_hour is not None) and (
            self.kind_or_catalogue is not Kind.COUNTER
        ):
            raise ValueError("rollover and max_per_hour apply to counters only")
        known = metric(self.name)
        if known is not None:
            if self.unit is not None and self.unit != known.unit:
                raise ValueError(f"{self.name} is in {known.unit}, not {self.unit}")
            if self.kind is not None and self.kind is not known.kind:
                raise ValueError(f"{self.name} is a {known.kind}, not a {self.kind}")
        return self

    @property
    def unit_or_catalogue(self) -> str | None:
        known = metric(self.name)
        return self.unit if known is None else known.unit

    @property
    def kind_or_catalogue(self) -> Kind:
        known = metric(self.name)
        return known.kind if known is not None else (self.kind or Kind.GAUGE)

    def modulus(self) -> float | None:
        """The counter's modulus in engineering units: ``rollover`` or the register's range."""
        if self.rollover is not None:
            return self.rollover
        if self.type not in (DataType.UINT16, DataType.UINT32, DataType.UINT64):
            return None  # floats never wrap; a signed counter going negative is not a wrap
        return float(1 << (16 * self.words())) * abs(self.scale)

    def encoding(self, default_order: WordOrder) -> Encoding:
        # A coil or discrete input arrives as one 0/1 value per address: no bytes to reorder.
        order = WordOrder.ABCD if self.table in BIT_TABLES else self.order or default_order
        return Encoding(type=self.type, order=order, length=self.length, bit=self.bit)

    def words(self) -> int:
        """How many registers (or bits, in a bit table) the point occupies."""
        if self.table in BIT_TABLES:
            return 1
        return register_count(self.encoding(WordOrder.ABCD))


class Hole(_Model):
    """Addresses a device answers with an exception: a request must never include them."""

    table: Table = "holding"
    first: Annotated[int, Field(ge=0, le=0xFFFF)]
    last: Annotated[int, Field(ge=0, le=0xFFFF)]

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.last < self.first:
            raise ValueError(f"hole ends ({self.last}) before it starts ({self.first})")
        return self

    def overlaps(self, table: str, start: int, end: int) -> bool:
        """Whether addresses ``start`` (inclusive) to ``end`` (exclusive) of ``table`` touch it."""
        return table == self.table and start <= self.last and self.first < end


class Quirks(_Model):
    """How a device wants to be read. A profile sets them for its kind of device; a device in a
    gateway config may override any of them (``None`` means: keep the profile's, or the default).
    """

    max_registers: Annotated[int, Field(ge=1, le=125)] | None = None
    """Words per request; many meters refuse more than 32 or 64 although the protocol allows 125."""
    max_gap: Annotated[int, Field(ge=0, le=125)] | None = None
    """Unused words a request may read through to save a round trip (default 8)."""
    holes: tuple[Hole, ...] | None = None
    one_request_per_point: bool | None = None
    """Read every point with its own request (devices that refuse multi-point reads)."""
    connect_pause_s: Annotated[float, Field(ge=0, le=30)] | None = None
    """Wait after opening a connection before the first request (slow TCP converters)."""
    request_pause_s: Annotated[float, Field(ge=0, le=30)] | None = None
    """Wait between two requests to this device."""
    close_after_poll: bool | None = None
    """Close the connection after every poll (devices that allow one short connection)."""

    def over(self, base: Quirks) -> Quirks:
        """These quirks, with ``base`` filling what they leave unset."""
        mine = self.model_dump(exclude_none=True)
        return base.model_copy(update={k: getattr(self, k) for k in mine})


class ProfileHeader(_Model):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
    description: str
    manufacturer: str | None = None
    model: str | None = None
    source: str
    """Where the register map comes from (datasheet title and edition, or "Zayton simulator")."""
    word_order: WordOrder = WordOrder.ABCD


class Profile(_Model):
    profile: ProfileHeader
    quirks: Quirks = Quirks()
    points: Annotated[list[Point], Field(min_length=1)]

    @model_validator(mode="after")
    def _no_clashes(self) -> Self:
        names: set[str] = set()
        for point in self.points:
            if point.name in names:
                raise ValueError(f"point {point.name!r} is defined twice")
            names.add(point.name)
            for hole in self.quirks.holes or ():
                if hole.overlaps(point.table, point.address, point.address + point.words()):
                    raise ValueError(
                        f"point {point.name!r} lies in the hole {hole.first}-{hole.last}"
                    )
        return self

    @property
    def id(self) -> str:
        return self.profile.id

    def encoding(self, point: Point) -> Encoding:
        return point.encoding(self.profile.word_order)

    def point(self, name: str) -> Point:
        for candidate in self.points:
            if candidate.name == name:
                return candidate
        raise KeyError(f"profile {self.id} has no point {name!r}")


def library() -> dict[str, Path]:
    """The profiles shipped with Zayton, by id (the file name without .toml)."""
    return {path.stem: path for path in sorted(LIBRARY.glob("*.toml"))}


_PARSED: dict[tuple[Path, int], Profile] = {}


def _parsed(path: Path) -> Profile:
    """A profile file parsed once per version of the file: a gateway with a thousand meters of
    one kind holds one (immutable) profile, not a thousand."""
    try:
        key = (path.resolve(), path.stat().st_mtime_ns)
    except OSError:
        return load_model(path, Profile)  # reports the missing file with its path
    profile = _PARSED.get(key)
    if profile is None:
        profile = _PARSED[key] = load_model(path, Profile)
    return profile


def load_profile(ref: str, base_dir: Path | None = None) -> Profile:
    """Load a profile by library id (``zayton-meter-f32``) or by path (``./my-meter.toml``).

    A relative path is taken from ``base_dir`` (the directory of the config that names it).
    """
    if ref.endswith(".toml") or "/" in ref:
        path = Path(ref)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
    else:
        shipped = library()
        if ref not in shipped:
            raise ConfigError(f"no profile {ref!r} in the library (have: {', '.join(shipped)})")
        path = shipped[ref]
    profile = _parsed(path)
    if not ref.endswith(".toml") and "/" not in ref and profile.id != ref:
        raise ConfigError(f"{path}: profile.id {profile.id!r} differs from its file name")
    return profile
