"""Sparkplug B 3.0 codec: topics, payloads and the state of one edge-node session.

Pure: no MQTT, no I/O. The caller publishes what these functions return.

Payloads are Protocol Buffers messages (``sparkplug_b.proto``, proto2), encoded here by hand from
the wire format: a field is a key ``(field_number << 3) | wire_type`` written as a varint, then
its value. Sparkplug only uses unsigned integers (uint32/uint64, plain varints, never zigzag),
length-delimited strings, bytes and sub-messages, and little-endian fixed32/fixed64 for
float/double. Field numbers, from the specification's schema:

    Payload: timestamp=1 metrics=2 seq=3 uuid=4 body=5
    Metric:  name=1 alias=2 timestamp=3 datatype=4 is_historical=5 is_transient=6 is_null=7
             metadata=8 properties=9 int_value=10 long_value=11 float_value=12
             double_value=13 boolean_value=14 string_value=15 bytes_value=16
             dataset_value=17 template_value=18 extension_value=19

Not covered: DataSet, Template, MetaData and PropertySet contents. Encoding them is refused;
decoding skips them (a DataSet or Template metric comes back with ``value=None``).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from enum import IntEnum, StrEnum
from typing import NamedTuple, TypeAlias

NAMESPACE = "spBv1.0"
BD_SEQ_METRIC = "bdSeq"
REBIRTH_METRIC = "Node Control/Rebirth"
SEQ_MODULUS = 256
"""seq and bdSeq both run 0..255 and wrap to 0."""

_UINT32_MAX = (1 << 32) - 1
_UINT64_MAX = (1 << 64) - 1
_RESERVED_ID_CHARS = frozenset("/+#")


class TopicError(ValueError):
    """A group, edge-node or device id, or a topic, that Sparkplug does not allow."""


class DecodeError(ValueError):
    """Bytes that are not a well-formed Sparkplug B payload."""


class SessionError(RuntimeError):
    """A message the edge-node session may not send in its current state."""


# --- topics -------------------------------------------------------------------------------------


class MessageType(StrEnum):
    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    NDATA = "NDATA"
    NCMD = "NCMD"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    DDATA = "DDATA"
    DCMD = "DCMD"


_DEVICE_MESSAGES = frozenset(
    {MessageType.DBIRTH, MessageType.DDEATH, MessageType.DDATA, MessageType.DCMD}
)


class Topic(NamedTuple):
    group_id: str
    message_type: MessageType
    edge_node_id: str
    device_id: str | None = None


def check_id(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid Sparkplug id: non-empty UTF-8 without ``/ + #``."""
    if not value:
        raise TopicError(f"{kind} is empty")
    bad = sorted(_RESERVED_ID_CHARS.intersection(value))
    if bad:
        raise TopicError(f"{kind} {value!r} contains reserved characters {' '.join(bad)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TopicError(f"{kind} {value!r} is not valid UTF-8") from exc
    return value


def topic(
    group_id: str,
    message_type: MessageType,
    edge_node_id: str,
    device_id: str | None = None,
) -> str:
    """``spBv1.0/<group_id>/<message_type>/<edge_node_id>[/<device_id>]``.

    Device messages (DBIRTH, DDEATH, DDATA, DCMD) need a ``device_id``; node messages refuse one.
    """
    parts = [
        NAMESPACE,
        check_id("group_id", group_id),
        message_type.value,
        check_id("edge_node_id", edge_node_id),
    ]
    if message_type in _DEVICE_MESSAGES:
        if device_id is None:
            raise TopicError(f"{message_type} needs a device_id")
        parts.append(check_id("device_id", device_id))
    elif device_id is not None:
        raise TopicError(f"{message_type} takes no device_id")
    return "/".join(parts)


def parse_topic(text: str) -> Topic:
    """The inverse of :func:`topic`, for the host side and for tests."""
    parts = text.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE:
        raise TopicError(f"not a Sparkplug B edge topic: {text!r}")
    try:
        message_type = MessageType(parts[2])
    except ValueError as exc:
        raise TopicError(f"unknown message type {parts[2]!r} in {text!r}") from exc
    device_id = parts[4] if len(parts) == 5 else None
    topic(parts[1], message_type, parts[3], device_id)  # validates ids and the device part
    return Topic(parts[1], message_type, parts[3], device_id)


# --- data model ---------------------------------------------------------------------------------


class DataType(IntEnum):
    """Sparkplug B data type codes (the specification's ``DataType`` enum)."""

    UNKNOWN = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14
    UUID = 15
    DATASET = 16
    BYTES = 17
    FILE = 18
    TEMPLATE = 19
    PROPERTYSET = 20
    PROPERTYSETLIST = 21
    INT8_ARRAY = 22
    INT16_ARRAY = 23
    INT32_ARRAY = 24
    INT64_ARRAY = 25
    UINT8_ARRAY = 26
    UINT16_ARRAY = 27
    UINT32_ARRAY = 28
    UINT64_ARRAY = 29
    FLOAT_ARRAY = 30
    DOUBLE_ARRAY = 31
    BOOLEAN_ARRAY = 32
    STRING_ARRAY = 33
    DATETIME_ARRAY = 34


MetricValue: TypeAlias = int | float | bool | str | bytes
"""Array types carry their packed little-endian bytes; DateTime is milliseconds since epoch."""


@dataclass(frozen=True, slots=True)
class Metric:
    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    """Milliseconds since epoch (UTC) when the value was acquired."""
    datatype: DataType | None = None
    value: MetricValue | None = None
    is_null: bool = False
    is_historical: bool = False
    is_transient: bool = False


@dataclass(frozen=True, slots=True)
class Payload:
    timestamp: int | None = None
    """Milliseconds since epoch (UTC) when the message was sent."""
    metrics: tuple[Metric, ...] = ()
    seq: int | None = None
    uuid: str | None = None
    body: bytes | None = None


def double_metric(name: str, value: float | None, timestamp: int | None = None) -> Metric:
    """A Zayton reading (gauge or counter) as a Double metric; ``None`` is sent as is_null."""
    return Metric(
        name=name,
        timestamp=timestamp,
        datatype=DataType.DOUBLE,
        value=value,
        is_null=value is None,
    )


def alias_names(birth: Payload) -> dict[int, str]:
    """alias -> metric name, as declared by an NBIRTH or DBIRTH (host side)."""
    return {
        metric.alias: metric.name
        for metric in birth.metrics
        if metric.alias is not None and metric.name is not None
    }


# --- protobuf wire format -----------------------------------------------------------------------


class _Wire(IntEnum):
    VARINT = 0
    I64 = 1
    LEN = 2
    SGROUP = 3
    EGROUP = 4
    I32 = 5


class _Value(IntEnum):
    """Metric's value fields (the proto's ``oneof value``)."""

    INT = 10
    LONG = 11
    FLOAT = 12
    DOUBLE = 13
    BOOLEAN = 14
    STRING = 15
    BYTES = 16
    DATASET = 17
    TEMPLATE = 18
    EXTENSION = 19


_MAX_GROUP_DEPTH = 32

_INT_RANGES: dict[DataType, tuple[int, int]] = {
    DataType.INT8: (-(1 << 7), (1 << 7) - 1),
    DataType.INT16: (-(1 << 15), (1 << 15) - 1),
    DataType.INT32: (-(1 << 31), (1 << 31) - 1),
    DataType.INT64: (-(1 << 63), (1 << 63) - 1),
    DataType.UINT8: (0, (1 << 8) - 1),
    DataType.UINT16: (0, (1 << 16) - 1),
    DataType.UINT32: (0, _UINT32_MAX),
    DataType.UINT64: (0, _UINT64_MAX),
    DataType.DATETIME: (0, _UINT64_MAX),
}
_SIGNED_BITS = {DataType.INT8: 8, DataType.INT16: 16, DataType.INT32: 32, DataType.INT64: 64}

_ARRAY_TYPES = tuple(
    DataType(code) for code in range(DataType.INT8_ARRAY, DataType.DATETIME_ARRAY + 1)
)
"""Int8Array..DateTimeArray: packed little-endian bytes, carried as bytes_value."""

_VALUE_FIELD: dict[DataType, _Value] = {
    **dict.fromkeys((DataType.INT8, DataType.INT16, DataType.INT32), _Value.INT),
    **dict.fromkeys((DataType.UINT8, DataType.UINT16, DataType.UINT32), _Value.INT),
    **dict.fromkeys((DataType.INT64, DataType.UINT64, DataType.DATETIME), _Value.LONG),
    DataType.FLOAT: _Value.FLOAT,
    DataType.DOUBLE: _Value.DOUBLE,
    DataType.BOOLEAN: _Value.BOOLEAN,
    **dict.fromkeys((DataType.STRING, DataType.TEXT, DataType.UUID), _Value.STRING),
    **dict.fromkeys((DataType.BYTES, DataType.FILE, *_ARRAY_TYPES), _Value.BYTES),
}
"""Which value field carries each data type; the types missing here are not supported."""


def _varint(value: int) -> bytes:
    if not 0 <= value <= _UINT64_MAX:
        raise ValueError(f"{value} is outside the uint64 range")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire: _Wire) -> bytes:
    return _varint(number << 3 | wire)


def _varint_field(number: int, value: int) -> bytes:
    return _key(number, _Wire.VARINT) + _varint(value)


def _len_field(number: int, data: bytes) -> bytes:
    return _key(number, _Wire.LEN) + _varint(len(data)) + data


def _encode_int(datatype: DataType, value: MetricValue) -> bytes:
    low, high = _INT_RANGES[datatype]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{datatype.name} needs an int, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{datatype.name} needs an integer in [{low}, {high}], got {value}")
    # Signed values travel as two's complement in the unsigned field (Int8..Int32 in 32 bits).
    mask = _UINT32_MAX if _VALUE_FIELD[datatype] == _Value.INT else _UINT64_MAX
    return _varint(value & mask)


def _real(datatype: DataType, value: MetricValue) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{datatype.name} needs a number, got {value!r}")
    try:
        return float(value)
    except OverflowError as exc:
        raise ValueError(f"{datatype.name} cannot hold {value!r}") from exc


def _encode_float(datatype: DataType, value: MetricValue) -> bytes:
    try:
        return struct.pack("<f", _real(datatype, value))
    except OverflowError as exc:
        raise ValueError(f"{datatype.name} cannot hold {value!r}") from exc


def _encode_double(datatype: DataType, value: MetricValue) -> bytes:
    return struct.pack("<d", _real(datatype, value))


def _encode_boolean(datatype: DataType, value: MetricValue) -> bytes:
    if not isinstance(value, bool):
        raise TypeError(f"{datatype.name} needs a bool, got {value!r}")
    return b"\x01" if value else b"\x00"


def _encode_string(datatype: DataType, value: MetricValue) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{datatype.name} needs a str, got {value!r}")
    data = value.encode("utf-8")
    return _varint(len(data)) + data


def _encode_bytes(datatype: DataType, value: MetricValue) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"{datatype.name} needs bytes, got {value!r}")
    return _varint(len(value)) + value


_VALUE_ENCODERS: dict[_Value, tuple[_Wire, Callable[[DataType, MetricValue], bytes]]] = {
    _Value.INT: (_Wire.VARINT, _encode_int),
    _Value.LONG: (_Wire.VARINT, _encode_int),
    _Value.FLOAT: (_Wire.I32, _encode_float),
    _Value.DOUBLE: (_Wire.I64, _encode_double),
    _Value.BOOLEAN: (_Wire.VARINT, _encode_boolean),
    _Value.STRING: (_Wire.LEN, _encode_string),
    _Value.BYTES: (_Wire.LEN, _encode_bytes),
}


def _encode_value(label: str, datatype: DataType | None, value: MetricValue) -> bytes:
    if datatype is None:
        raise ValueError(f"metric {label}: a value needs a datatype")
    number = _VALUE_FIELD.get(datatype)
    if number is None:
        raise ValueError(f"metric {label}: datatype {datatype.name} is not supported")
    wire, encoder = _VALUE_ENCODERS[number]
    try:
        return _key(number, wire) + encoder(datatype, value)
    except TypeError as exc:
        raise TypeError(f"metric {label}: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"metric {label}: {exc}") from exc


def _encode_metric(metric: Metric) -> bytes:
    label = repr(metric.name) if metric.name is not None else f"alias {metric.alias}"
    if metric.name is None and metric.alias is None:
        raise ValueError("a metric needs a name or an alias")
    if metric.is_null and metric.value is not None:
        raise ValueError(f"metric {label}: is_null with a value")
    parts: list[bytes] = []
    if metric.name is not None:
        parts.append(_len_field(1, metric.name.encode("utf-8")))
    if metric.alias is not None:
        parts.append(_varint_field(2, metric.alias))
    if metric.timestamp is not None:
        parts.append(_varint_field(3, metric.timestamp))
    if metric.datatype is not None:
        parts.append(_varint_field(4, int(metric.datatype)))
    # proto2 optional bools: false and absent mean the same, so only true is written.
    for number, flag in ((5, metric.is_historical), (6, metric.is_transient), (7, metric.is_null)):
        if flag:
            parts.append(_varint_field(number, 1))
    if metric.value is not None:
        parts.append(_encode_value(label, metric.datatype, metric.value))
    return b"".join(parts)


def encode_payload(payload: Payload) -> bytes:
    """Serialise ``payload``; fields in field-number order, absent optionals left out."""
    parts: list[bytes] = []
    if payload.timestamp is not None:
        parts.append(_varint_field(1, payload.timestamp))
    parts.extend(_len_field(2, _encode_metric(metric)) for metric in payload.metrics)
    if payload.seq is not None:
        parts.append(_varint_field(3, payload.seq))
    if payload.uuid is not None:
        parts.append(_len_field(4, payload.uuid.encode("utf-8")))
    if payload.body is not None:
        parts.append(_len_field(5, payload.body))
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class _Field:
    number: int
    wire: int
    varint: int = 0
    data: bytes = b""

    def _expect(self, wire: _Wire) -> None:
        if self.wire != wire:
            raise DecodeError(f"field {self.number}: wire type {self.wire}, expected {wire}")

    def uint(self) -> int:
        self._expect(_Wire.VARINT)
        return self.varint

    def fixed(self, wire: _Wire) -> bytes:
        self._expect(wire)
        return self.data

    def chunk(self) -> bytes:
        self._expect(_Wire.LEN)
        return self.data

    def text(self) -> str:
        try:
            return self.chunk().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"field {self.number}: invalid UTF-8") from exc


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def done(self) -> bool:
        return self._pos >= len(self._data)

    def varint(self) -> int:
        result = 0
        for shift in range(0, 70, 7):
            if self.done():
                raise DecodeError("truncated varint")
            byte = self._data[self._pos]
            self._pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if result > _UINT64_MAX:
                    raise DecodeError("varint exceeds 64 bits")
                return result
        raise DecodeError("varint longer than 10 bytes")

    def take(self, count: int) -> bytes:
        end = self._pos + count
        if end > len(self._data):
            raise DecodeError(f"field needs {count} bytes, {len(self._data) - self._pos} left")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def key(self) -> tuple[int, int]:
        key = self.varint()
        number, wire = key >> 3, key & 7
        if number == 0:
            raise DecodeError("field number 0")
        return number, wire

    def field(self, depth: int = 0) -> _Field | None:
        """The next field; ``None`` for a group, which Sparkplug never uses and is skipped."""
        number, wire = self.key()
        match wire:
            case _Wire.VARINT:
                return _Field(number, wire, varint=self.varint())
            case _Wire.I64:
                return _Field(number, wire, data=self.take(8))
            case _Wire.LEN:
                return _Field(number, wire, data=self.take(self.varint()))
            case _Wire.I32:
                return _Field(number, wire, data=self.take(4))
            case _Wire.SGROUP:
                self._skip_group(number, depth + 1)
                return None
        raise DecodeError(f"field {number}: unexpected wire type {wire}")

    def _skip_group(self, number: int, depth: int) -> None:
        if depth > _MAX_GROUP_DEPTH:
            raise DecodeError("groups nested too deeply")
        while not self.done():
            start = self._pos
            inner, wire = self.key()
            if wire == _Wire.EGROUP:
                if inner != number:
                    raise DecodeError(f"group {number} closed by end-group {inner}")
                return
            self._pos = start
            self.field(depth)
        raise DecodeError(f"group {number} is not closed")


def _fields(data: bytes) -> Iterator[_Field]:
    reader = _Reader(data)
    while not reader.done():
        field = reader.field()
        if field is not None:
            yield field


def _signed(raw: int, datatype: DataType | None) -> int:
    bits = _SIGNED_BITS.get(datatype) if datatype is not None else None
    if bits is None:
        return raw
    raw &= (1 << bits) - 1  # accepts Int8 written as 0xFF as well as 0xFFFFFFFF
    return raw - (1 << bits) if raw >> (bits - 1) else raw


def _decode_value(field: _Field, datatype: DataType | None) -> MetricValue | None:
    value: MetricValue | None
    match field.number:
        case _Value.INT:
            value = _signed(field.uint() & _UINT32_MAX, datatype)
        case _Value.LONG:
            value = _signed(field.uint(), datatype)
        case _Value.FLOAT:
            value = float(struct.unpack("<f", field.fixed(_Wire.I32))[0])
        case _Value.DOUBLE:
            value = float(struct.unpack("<d", field.fixed(_Wire.I64))[0])
        case _Value.BOOLEAN:
            value = field.uint() != 0
        case _Value.STRING:
            value = field.text()
        case _Value.BYTES:
            value = field.chunk()
        case _:
            value = None  # DataSet, Template and extensions are not decoded
    return value


def _decode_datatype(field: _Field) -> DataType:
    code = field.uint() & _UINT32_MAX
    try:
        return DataType(code)
    except ValueError as exc:
        raise DecodeError(f"unknown datatype {code}") from exc


def _decode_metric(data: bytes) -> Metric:
    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    datatype: DataType | None = None
    flags = {5: False, 6: False, 7: False}
    value_field: _Field | None = None
    for field in _fields(data):
        match field.number:
            case 1:
                name = field.text()
            case 2:
                alias = field.uint()
            case 3:
                timestamp = field.uint()
            case 4:
                datatype = _decode_datatype(field)
            case 5 | 6 | 7:
                flags[field.number] = field.uint() != 0
            case number if _Value.INT <= number <= _Value.EXTENSION:
                value_field = field  # oneof: the last value field wins
            case _:
                pass  # metadata, properties and unknown fields
    return Metric(
        name=name,
        alias=alias,
        timestamp=timestamp,
        datatype=datatype,
        value=None if value_field is None else _decode_value(value_field, datatype),
        is_null=flags[7],
        is_historical=flags[5],
        is_transient=flags[6],
    )


def decode_payload(data: bytes) -> Payload:
    """Parse a Sparkplug B payload; unknown fields of any wire type are skipped."""
    timestamp: int | None = None
    metrics: list[Metric] = []
    seq: int | None = None
    uuid: str | None = None
    body: bytes | None = None
    for field in _fields(data):
        match field.number:
            case 1:
                timestamp = field.uint()
            case 2:
                metrics.append(_decode_metric(field.chunk()))
            case 3:
                seq = field.uint()
            case 4:
                uuid = field.text()
            case 5:
                body = field.chunk()
    return Payload(timestamp=timestamp, metrics=tuple(metrics), seq=seq, uuid=uuid, body=body)


# --- edge-node session --------------------------------------------------------------------------


class Message(NamedTuple):
    topic: str
    payload: bytes


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class EdgeNode:
    """What one Sparkplug edge node must remember between messages.

    Per MQTT connection: call :meth:`start_session` (advances bdSeq), register
    :meth:`node_death` as the will, connect, then publish :meth:`node_birth`, one
    :meth:`device_birth` per device, then data. ``seq`` is 0 on NBIRTH and goes up by one,
    wrapping 255 -> 0, on every later message but NDEATH, which has none. Aliases are assigned at
    birth, unique across the node, and stay the same for a (device, metric name) for the lifetime
    of this object; DATA messages carry aliases only.
    """

    def __init__(
        self,
        group_id: str,
        edge_node_id: str,
        *,
        bd_seq: int = 0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        """``bd_seq`` is the bdSeq of the first session; ``clock`` gives milliseconds (UTC)."""
        if not 0 <= bd_seq < SEQ_MODULUS:
            raise ValueError(f"bd_seq {bd_seq} is outside 0..255")
        self.group_id = check_id("group_id", group_id)
        self.edge_node_id = check_id("edge_node_id", edge_node_id)
        self._clock = clock
        self._next_bd_seq = bd_seq
        self._bd_seq: int | None = None
        self._seq: int | None = None
        """The seq of the last message sent in this session; None until NBIRTH."""
        self._aliases: dict[tuple[str | None, str], int] = {}
        self._born: dict[str | None, dict[str, tuple[int, DataType]]] = {}
        """Per device (None: the node itself): metric name -> (alias, datatype) of its birth."""

    @property
    def bd_seq(self) -> int | None:
        """The bdSeq of the current session, None before :meth:`start_session`."""
        return self._bd_seq

    @property
    def next_bd_seq(self) -> int:
        """The bdSeq the next session will use: persist it to survive a restart."""
        return self._next_bd_seq

    def start_session(self, bd_seq: int | None = None) -> None:
        """Begin a new MQTT connection: the next bdSeq (or ``bd_seq``, the one its will
        carried), and nothing born yet."""
        if bd_seq is not None and not 0 <= bd_seq < SEQ_MODULUS:
            raise ValueError(f"bd_seq {bd_seq} is outside 0..255")
        self._bd_seq = self._next_bd_seq if bd_seq is None else bd_seq
        self._next_bd_seq = (self._bd_seq + 1) % SEQ_MODULUS
        self._seq = None
        self._born.clear()

    def node_death(self) -> Message:
        """NDEATH for the MQTT will (and for a clean disconnect): bdSeq only, no seq."""
        return self.death_certificate(self._session())

    def death_certificate(self, bd_seq: int) -> Message:
        """NDEATH naming ``bd_seq``, for the will of a connection not made yet. Reads no session
        state, so it may be built on another thread than the one driving the session."""
        now = self._clock()
        metric = Metric(name=BD_SEQ_METRIC, timestamp=now, datatype=DataType.INT64, value=bd_seq)
        return Message(
            self._topic(MessageType.NDEATH),
            encode_payload(Payload(timestamp=now, metrics=(metric,))),
        )

    def node_birth(self, metrics: Iterable[Metric] = ()) -> Message:
        """NBIRTH with seq 0, bdSeq and Node Control/Rebirth, then ``metrics``.

        Also a rebirth: every device needs a new DBIRTH afterwards.
        """
        metrics = tuple(metrics)
        reserved = {BD_SEQ_METRIC, REBIRTH_METRIC}.intersection(m.name for m in metrics)
        if reserved:
            raise ValueError(f"{', '.join(sorted(reserved))} is added by node_birth itself")
        required = (
            Metric(name=BD_SEQ_METRIC, datatype=DataType.INT64, value=self._session()),
            Metric(name=REBIRTH_METRIC, datatype=DataType.BOOLEAN, value=False),
        )
        return self._birth(None, (*required, *metrics), seq=0)

    def node_data(self, values: Mapping[str, MetricValue | None], timestamp: int) -> Message:
        """NDATA for node metrics declared in the NBIRTH, by alias."""
        return self._data(None, values, timestamp)

    def device_birth(self, device: str, metrics: Iterable[Metric]) -> Message:
        """DBIRTH declaring every metric the device will report, with name, alias and value."""
        check_id("device_id", device)
        return self._birth(device, tuple(metrics), seq=None)

    def device_data(
        self,
        device: str,
        values: Mapping[str, MetricValue | None],
        timestamp: int | Mapping[str, int],
    ) -> Message:
        """DDATA by alias only; ``timestamp`` (ms) is when the values were read, one for all or
        one per metric name; a value of None is null."""
        return self._data(device, values, timestamp)

    def device_death(self, device: str) -> Message:
        """DDEATH: the device stopped answering; it needs a new DBIRTH before more data."""
        if device not in self._born:
            raise SessionError(f"device {device!r} has no DBIRTH in this session")
        message = self._send(MessageType.DDEATH, device, (), self._following_seq())
        del self._born[device]
        return message

    def _session(self) -> int:
        if self._bd_seq is None:
            raise SessionError("start_session() first")
        return self._bd_seq

    def _following_seq(self) -> int:
        self._session()
        if self._seq is None:
            raise SessionError("node_birth() first")
        return (self._seq + 1) % SEQ_MODULUS

    def _alias(self, device: str | None, name: str) -> int:
        return self._aliases.setdefault((device, name), len(self._aliases) + 1)

    def _birth(self, device: str | None, metrics: tuple[Metric, ...], seq: int | None) -> Message:
        now = self._clock()
        declared: dict[str, tuple[int, DataType]] = {}
        stamped: list[Metric] = []
        for metric in metrics:
            if metric.name is None or metric.datatype is None:
                raise ValueError(f"birth metric {metric!r} needs a name and a datatype")
            if metric.name in declared:
                raise ValueError(f"metric {metric.name!r} appears twice in one birth")
            alias = self._alias(device, metric.name)
            declared[metric.name] = (alias, metric.datatype)
            timestamp = now if metric.timestamp is None else metric.timestamp
            stamped.append(replace(metric, alias=alias, timestamp=timestamp))
        message_type = MessageType.NBIRTH if device is None else MessageType.DBIRTH
        sent_seq = self._following_seq() if seq is None else seq
        message = self._send(message_type, device, tuple(stamped), sent_seq, now)
        if device is None:
            self._born.clear()  # a new NBIRTH voids every DBIRTH before it
        self._born[device] = declared
        return message

    def _data(
        self,
        device: str | None,
        values: Mapping[str, MetricValue | None],
        timestamp: int | Mapping[str, int],
    ) -> Message:
        declared = self._born.get(device)
        if declared is None:
            what = "the node" if device is None else f"device {device!r}"
            raise SessionError(f"{what} has no birth in this session")
        if not values:
            raise ValueError("a data message needs at least one value")
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise SessionError(f"metrics {unknown} were not declared at birth: rebirth first")
        metrics = tuple(
            Metric(
                alias=declared[name][0],
                timestamp=timestamp if isinstance(timestamp, int) else timestamp[name],
                datatype=declared[name][1],
                value=value,
                is_null=value is None,
            )
            for name, value in values.items()
        )
        message_type = MessageType.NDATA if device is None else MessageType.DDATA
        return self._send(message_type, device, metrics, self._following_seq())

    def _send(
        self,
        message_type: MessageType,
        device: str | None,
        metrics: tuple[Metric, ...],
        seq: int,
        now: int | None = None,
    ) -> Message:
        """Encode first, so a value that cannot be encoded leaves seq untouched."""
        timestamp = self._clock() if now is None else now
        data = encode_payload(Payload(timestamp=timestamp, metrics=metrics, seq=seq))
        self._seq = seq
        return Message(self._topic(message_type, device), data)

    def _topic(self, message_type: MessageType, device: str | None = None) -> str:
        return topic(self.group_id, message_type, self.edge_node_id, device)
