"""Payload models of wire contract v1 (JSON, UTF-8).

A telemetry batch::

    {"schema_version": 1, "gateway": "gw-01", "seq": 42, "sent_at": "2026-11-22T03:00:05Z",
     "readings": [{"device": "meter-1", "point": "active_power_kw",
                   "ts": "2026-11-22T03:00:00Z", "value": 12.5, "quality": "good"}]}

``seq`` increases by at least one with every batch a gateway sends, across restarts, so a receiver
can detect replays and gaps. Validation is strict: types are not coerced ("12.5" is not a number),
NaN and infinities are refused, timestamps must carry a time zone (they are kept as the
instants they name, in the offset they were sent with), unknown fields are refused, and
a batch that breaks any rule is rejected whole with a reason, never half-accepted.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

import msgspec
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from wire.topics import Topic, check_identifier

SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 1 << 20
MAX_READINGS = 10_000
MAX_SEQ = (1 << 63) - 1

_DEVICE = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"
_POINT = r"[a-z][a-z0-9_]{0,63}"
_GATEWAY = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
_STAMP = r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d{1,9})?([Zz]|[+-]\d\d:\d\d)"
"""RFC 3339 with a mandatory offset."""

DeviceName = Annotated[str, StringConstraints(pattern=f"^{_DEVICE}$")]
PointName = Annotated[str, StringConstraints(pattern=f"^{_POINT}$")]
GatewayId = Annotated[str, StringConstraints(pattern=f"^{_GATEWAY}$")]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class PayloadError(ValueError):
    """A payload that does not fit the contract; ``reason`` says why, for the dead-letter record."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Quality(StrEnum):
    GOOD = "good"
    UNCERTAIN = "uncertain"
    """Read, but suspicious: outside the plausible range of its profile."""
    BAD = "bad"
    """The device answered with a value that means "not available"; ``value`` is null."""


class Uplink(StrEnum):
    """How a gateway reaches the platform; 5G gateways count towards 5G+工业互联网."""

    FIVE_G = "5g"
    LTE = "4g"
    CAT1 = "cat-1"
    NB_IOT = "nb-iot"
    WIRED = "wired"
    WIFI = "wifi"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _check_version(value: int) -> int:
    if value != SCHEMA_VERSION:
        raise ValueError(_version_error(value))
    return value


def _version_error(value: int) -> str:
    return f"unsupported schema version {value}; this side reads {SCHEMA_VERSION}"


class Reading(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    device: str
    point: str
    stamp: str = msgspec.field(name="ts")
    """``ts`` as sent (RFC 3339 with an offset); :attr:`ts` is the instant it names."""
    value: float | None
    quality: Quality = Quality.GOOD
    delta: Annotated[float, msgspec.Meta(ge=0)] | None = None
    """Counters only: the consumption since the previous counted reading of this point, after
    wrap, reset, replacement and glitch handling at the edge (docs/counters.md); absent when
    nothing is counted with this reading."""

    @property
    def ts(self) -> datetime:
        return parse_stamp(self.stamp)


EventKind = Literal["wrap", "reset", "replacement", "glitch", "jump"]


class CounterEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Something that happened to a counter, found at the edge (docs/counters.md)."""

    device: str
    point: str
    ts: Annotated[datetime, msgspec.Meta(tz=True)]
    kind: EventKind
    before: float | None = None
    after: float | None = None
    amount: float | None = None
    """wrap: what was counted across it; jump: the quarantined step (not counted)."""
    detail: Annotated[str, msgspec.Meta(max_length=500)] = ""


class _TelemetryWire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    schema_version: int
    gateway: str
    seq: Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]
    sent_at: Annotated[datetime, msgspec.Meta(tz=True)]
    readings: list[Reading]
    events: list[CounterEvent] = []


@dataclass(frozen=True, slots=True)
class Telemetry:
    """A validated telemetry batch."""

    gateway: str
    seq: int
    sent_at: datetime
    readings: list[Reading]
    events: list[CounterEvent]
    stamps: dict[str, datetime]
    """Every distinct ``ts`` of the readings as sent, with the instant it names: a poll stamps
    all its readings alike, so there are far fewer stamps than readings."""
    schema_version: int = SCHEMA_VERSION


class DeviceStatus(_Strict):
    """The health of one polled device, as its gateway sees it."""

    name: DeviceName
    state: Literal["online", "failing", "offline"]
    """online: the last poll read everything; failing: the last poll lost some or all requests;
    offline: several polls in a row read nothing, and the gateway now retries less often."""
    profile: str | None = None
    interval_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """How often the gateway polls the device: what data completeness expects."""
    last_success: AwareDatetime | None = None
    failures: Annotated[int, Field(ge=0)] = 0
    error: Annotated[str, StringConstraints(max_length=500)] | None = None


class Status(_Strict):
    """A gateway's retained state. Its last will carries the same model with state "offline"."""

    schema_version: int
    gateway: GatewayId
    state: Literal["online", "offline"]
    ts: AwareDatetime
    site: GatewayId | None = None
    firm: str | None = None
    uplink: Uplink | None = None
    software: str | None = None
    devices: Annotated[list[DeviceStatus], Field(max_length=MAX_READINGS)] = []
    alarms: Annotated[
        list[Annotated[str, StringConstraints(max_length=500)]], Field(max_length=100)
    ] = []
    """Conditions needing a person: a full outbox, readings dropped."""
    outbox_batches: Annotated[int, Field(ge=0)] | None = None
    """Batches stored and not yet acknowledged by the broker."""

    _version = field_validator("schema_version")(_check_version)


def _reason(err: ValidationError) -> str:
    parts = []
    for item in err.errors(include_url=False)[:3]:
        where = ".".join(str(p) for p in item["loc"]) or "payload"
        parts.append(f"{where}: {item['msg']}")
    more = err.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _check_size(payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")


_TELEMETRY = msgspec.json.Decoder(_TelemetryWire)
_device_ok = re.compile(_DEVICE).fullmatch
_point_ok = re.compile(_POINT).fullmatch
_gateway_ok = re.compile(_GATEWAY).fullmatch
_stamp_ok = re.compile(_STAMP).fullmatch
_VALID_DEVICES: set[str] = set()
_VALID_POINTS: set[str] = set()
"""Device and point names already checked, each against its own pattern (a fleet repeats a few
thousand names): a reading costs two set lookups instead of two regular expressions."""
_VALID_NAMES_MAX = 100_000
"""Per set; a full set is emptied."""
_WHERE = re.compile(r"\[(\d+)\]")


class _Version(msgspec.Struct):
    schema_version: object = None


def parse_stamp(text: str) -> datetime:
    """The instant an RFC 3339 timestamp names; :class:`ValueError` if it is not one or has no
    time zone."""
    if _stamp_ok(text) is None:
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp with a timezone offset")
    return datetime.fromisoformat(text.upper())


def parse_telemetry(payload: bytes, topic: Topic | None = None) -> Telemetry:
    """Validate a telemetry payload; raise :class:`PayloadError` with the reason if it is bad.

    Types are checked by msgspec while decoding (no coercion; JSON cannot carry NaN or
    infinities and numbers beyond the float range are refused), names and timestamps by one
    pass over the readings that checks each distinct name and timestamp once.
    """
    _check_size(payload)
    try:
        wire = _TELEMETRY.decode(payload)
    except msgspec.ValidationError as err:
        raise PayloadError(_version_reason(payload) or _decode_reason(str(err))) from None
    except msgspec.DecodeError as err:
        raise PayloadError(_malformed_reason(payload, err)) from None
    batch = _checked(wire)
    if topic is not None and topic.gateway != batch.gateway:
        raise PayloadError(
            f"payload gateway {batch.gateway!r} differs from topic {topic.gateway!r}"
        )
    return batch


def _checked(wire: _TelemetryWire) -> Telemetry:
    if wire.schema_version != SCHEMA_VERSION:
        raise PayloadError(f"schema_version: {_version_error(wire.schema_version)}")
    if _gateway_ok(wire.gateway) is None:
        raise PayloadError(f"gateway: {wire.gateway!r} does not match {_GATEWAY}")
    readings = wire.readings
    if not 1 <= len(readings) <= MAX_READINGS:
        raise PayloadError(
            f"readings: a batch carries at least 1 and at most {MAX_READINGS} readings, "
            f"not {len(readings)}"
        )
    if len(wire.events) > MAX_READINGS:
        raise PayloadError(f"events: more than {MAX_READINGS}")
    devices, points = _VALID_DEVICES, _VALID_POINTS
    stamps: dict[str, datetime] = {}
    for index, reading in enumerate(readings):
        if reading.device not in devices or reading.point not in points:
            _check_names(f"readings.{index}", reading.device, reading.point)
        if reading.stamp not in stamps:
            try:
                stamps[reading.stamp] = parse_stamp(reading.stamp)
            except ValueError as err:
                raise PayloadError(f"readings.{index}.ts: {err}") from None
        if reading.value is None and reading.quality is Quality.GOOD:
            raise PayloadError(f"readings.{index}: a reading of good quality needs a value")
    for index, event in enumerate(wire.events):
        _check_names(f"events.{index}", event.device, event.point)
    return Telemetry(
        gateway=wire.gateway,
        seq=wire.seq,
        sent_at=wire.sent_at,
        readings=readings,
        events=wire.events,
        stamps=stamps,
    )


def _check_names(where: str, device: str, point: str) -> None:
    if _device_ok(device) is None:
        raise PayloadError(f"{where}.device: {device!r} does not match {_DEVICE}")
    if _point_ok(point) is None:
        raise PayloadError(f"{where}.point: {point!r} does not match {_POINT}")
    for known, name in ((_VALID_DEVICES, device), (_VALID_POINTS, point)):
        if len(known) >= _VALID_NAMES_MAX:
            known.clear()
        known.add(name)


def _version_reason(payload: bytes) -> str | None:
    """The reason for a batch of another schema version, whatever else is wrong with it."""
    try:
        version = msgspec.json.decode(payload, type=_Version).schema_version
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if version == SCHEMA_VERSION or version is None:
        return None
    return f"schema_version: {_version_error(version)}"  # type: ignore[arg-type]


def _decode_reason(message: str) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.readings[0].seq`" as
    "readings.0.seq: Expected `int`, got `str`"."""
    text, _, where = message.rpartition(" - at `")
    if not text:
        return f"payload: {message}"
    path = _WHERE.sub(r".\1", where.rstrip("`")).removeprefix("$").lstrip(".")
    if "out of range" in text:
        text += " (numbers must be finite floats)"
    return f"{path or 'payload'}: {text}"


def _malformed_reason(payload: bytes, err: msgspec.DecodeError) -> str:
    """Invalid JSON, or JSON with NaN or Infinity (which Python writes): then say where."""
    try:
        loose = json.loads(payload)
    except (ValueError, RecursionError):
        return f"Invalid JSON: {err}"
    path = _non_finite(loose)
    if path is None:
        return f"Invalid JSON: {err}"
    return f"{path or 'payload'}: NaN and infinities are not finite numbers, and not JSON"


def _non_finite(value: object, path: str = "") -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, dict):
        items: Iterable[tuple[object, object]] = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def parse_status(payload: bytes, topic: Topic | None = None) -> Status:
    _check_size(payload)
    try:
        status = Status.model_validate_json(payload)
    except ValidationError as err:
        raise PayloadError(_reason(err)) from None
    if topic is not None and topic.gateway != status.gateway:
        raise PayloadError(
            f"payload gateway {status.gateway!r} differs from topic {topic.gateway!r}"
        )
    return status


def format_ts(ts: datetime) -> str:
    """UTC ISO-8601 with a Z, as the contract writes every timestamp."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


ReadingTuple = tuple[str, str, str, float | None, Quality]
"""(device, point, ts already formatted by :func:`format_ts`, value, quality)."""
CountedTuple = tuple[str, str, str, float | None, Quality, float | None]
"""A counter reading with the consumption counted with it (``delta``, None when nothing)."""


_QUALITY_JSON = {quality: f'"{quality.value}"' for quality in Quality}
_QUOTED: dict[str, str] = {}
_QUOTED_MAX = 100_000


def _quoted(text: str) -> str:
    """``text`` as a JSON string; device and point names repeat, so they are kept."""
    quoted = _QUOTED.get(text)
    if quoted is None:
        quoted = json.dumps(text)
        if len(_QUOTED) < _QUOTED_MAX:
            _QUOTED[text] = quoted
    return quoted


def _number(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
    return repr(float(value))


def encode_telemetry(
    gateway: str,
    seq: int,
    sent_at: datetime,
    readings: Iterable[ReadingTuple | CountedTuple],
    events: Sequence[str] = (),
) -> bytes:
    """Serialise a batch without building a model or a dict per reading (the hot path of the
    gateway and the simulators): strings are quoted by :func:`json.dumps` once per distinct
    name, numbers written as Python writes floats (as :mod:`json` does).

    ``events`` are counter events already encoded as JSON objects
    (:func:`wire.counters.event_json`). The result always parses with :func:`parse_telemetry`
    when its inputs are valid.
    """
    check_identifier("gateway", gateway)
    stamps: dict[str, str] = {}
    parts = []
    for device, point, ts, value, quality, *counted in readings:
        stamp = stamps.get(ts)
        if stamp is None:
            stamp = stamps[ts] = json.dumps(ts)
        number = "null" if value is None else _number(value)
        delta = f',"delta":{_number(counted[0])}' if counted and counted[0] is not None else ""
        parts.append(
            f'{{"device":{_quoted(device)},"point":{_quoted(point)},"ts":{stamp},'
            f'"value":{number}{delta},"quality":{_QUALITY_JSON[quality]}}}'
        )
    head = (
        f'{{"schema_version":{SCHEMA_VERSION},"gateway":{json.dumps(gateway)},"seq":{int(seq)},'
        f'"sent_at":"{format_ts(sent_at)}","readings":['
    )
    tail = f'],"events":[{",".join(events)}]}}' if events else "]}"
    return (head + ",".join(parts) + tail).encode()


def encode_status(status: Status) -> bytes:
    return status.model_dump_json().encode()
