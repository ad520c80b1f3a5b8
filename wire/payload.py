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
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from wire.topics import Topic, check_identifier

SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 1 << 20
MAX_READINGS = 10_000
MAX_SEQ = (1 << 63) - 1

DeviceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
PointName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
GatewayId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
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
        raise ValueError(f"unsupported schema version {value}; this side reads {SCHEMA_VERSION}")
    return value


class Reading(_Strict):
    device: DeviceName
    point: PointName
    ts: AwareDatetime
    value: FiniteFloat | None
    quality: Quality = Quality.GOOD
    delta: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    """Counters only: the consumption since the previous counted reading of this point, after
    wrap, reset, replacement and glitch handling at the edge (docs/counters.md); absent when
    nothing is counted with this reading."""


EventKind = Literal["wrap", "reset", "replacement", "glitch", "jump"]


class CounterEvent(_Strict):
    """Something that happened to a counter, found at the edge (docs/counters.md)."""

    device: DeviceName
    point: PointName
    ts: AwareDatetime
    kind: EventKind
    before: FiniteFloat | None = None
    after: FiniteFloat | None = None
    amount: FiniteFloat | None = None
    """wrap: what was counted across it; jump: the quarantined step (not counted)."""
    detail: Annotated[str, StringConstraints(max_length=500)] = ""


class Telemetry(_Strict):
    schema_version: int
    gateway: GatewayId
    seq: Annotated[int, Field(ge=1, le=MAX_SEQ)]
    sent_at: AwareDatetime
    readings: Annotated[list[Reading], Field(min_length=1, max_length=MAX_READINGS)]
    events: Annotated[list[CounterEvent], Field(max_length=MAX_READINGS)] = []

    _version = field_validator("schema_version")(_check_version)

    @model_validator(mode="after")
    def _values_present_when_good(self) -> Telemetry:
        # One check per batch rather than a validator per reading: it halves the parsing cost.
        for index, reading in enumerate(self.readings):
            if reading.value is None and reading.quality is Quality.GOOD:
                raise ValueError(f"readings.{index}: a reading of good quality needs a value")
        return self


class DeviceStatus(_Strict):
    """The health of one polled device, as its gateway sees it."""

    name: DeviceName
    state: Literal["online", "failing", "offline"]
    """online: the last poll read everything; failing: the last poll lost some or all requests;
    offline: several polls in a row read nothing, and the gateway now retries less often."""
    profile: str | None = None
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


def parse_telemetry(payload: bytes, topic: Topic | None = None) -> Telemetry:
    """Validate a telemetry payload; raise :class:`PayloadError` with the reason if it is bad."""
    _check_size(payload)
    try:
        batch = Telemetry.model_validate_json(payload)
    except ValidationError as err:
        raise PayloadError(_reason(err)) from None
    if topic is not None and topic.gateway != batch.gateway:
        raise PayloadError(
            f"payload gateway {batch.gateway!r} differs from topic {topic.gateway!r}"
        )
    return batch


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
    gateway: str, seq: int, sent_at: datetime, readings: Iterable[ReadingTuple]
) -> bytes:
    """Serialise a batch without building a model or a dict per reading (the hot path of the
    gateway and the simulators): strings are quoted by :func:`json.dumps` once per distinct
    name, numbers written as Python writes floats (as :mod:`json` does).

    The result always parses with :func:`parse_telemetry` when its inputs are valid.
    """
    check_identifier("gateway", gateway)
    stamps: dict[str, str] = {}
    parts = []
    for device, point, ts, value, quality in readings:
        stamp = stamps.get(ts)
        if stamp is None:
            stamp = stamps[ts] = json.dumps(ts)
        number = "null" if value is None else _number(value)
        parts.append(
            f'{{"device":{_quoted(device)},"point":{_quoted(point)},"ts":{stamp},'
            f'"value":{number},"quality":{_QUALITY_JSON[quality]}}}'
        )
    head = (
        f'{{"schema_version":{SCHEMA_VERSION},"gateway":{json.dumps(gateway)},"seq":{int(seq)},'
        f'"sent_at":"{format_ts(sent_at)}","readings":['
    )
    return (head + ",".join(parts) + "]}").encode()


def encode_status(status: Status) -> bytes:
    return status.model_dump_json().encode()
