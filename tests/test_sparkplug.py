"""Sparkplug B codec: topics, the protobuf wire format and the edge-node session rules.

Every expected byte string below is written by hand from the protobuf wire rules, never produced
by the module under test. A field starts with the varint key ``(field_number << 3) | wire_type``;
wire types: 0 varint, 1 fixed64, 2 length-delimited, 3/4 group start/end, 5 fixed32. A varint
is little-endian groups of 7 bits, the high bit set on every byte but the last.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sparkplug import (
    BD_SEQ_METRIC,
    REBIRTH_METRIC,
    DataType,
    DecodeError,
    EdgeNode,
    Message,
    MessageType,
    Metric,
    MetricValue,
    Payload,
    SessionError,
    Topic,
    TopicError,
    alias_names,
    decode_payload,
    double_metric,
    encode_payload,
    parse_topic,
    topic,
)

pytestmark = pytest.mark.unit

T = DataType

# --- byte-exact encoding ------------------------------------------------------------------------

SMALL_PAYLOAD = Payload(
    timestamp=300,
    metrics=(Metric(name="t", alias=5, timestamp=300, datatype=T.DOUBLE, value=1.0),),
    seq=1,
)
SMALL_METRIC_BYTES = bytes.fromhex(
    "0a 01 74"  # name (1, LEN): key 1<<3|2 = 0x0a, length 1, "t" = 0x74
    "10 05"  # alias (2, varint): key 2<<3|0 = 0x10, 5
    "18 ac 02"  # timestamp (3, varint): key 0x18; 300 = 0b10_0101100 -> 0x2c|0x80, 0x02
    "20 0a"  # datatype (4, varint): key 0x20, Double = 10
    "69 00 00 00 00 00 00 f0 3f"  # double_value (13, fixed64): key 13<<3|1 = 0x69;
    # 1.0 = 0x3ff0000000000000, written little-endian
)
SMALL_PAYLOAD_BYTES = (
    bytes.fromhex("08 ac 02")  # Payload.timestamp (1, varint): key 0x08, 300 as above
    + bytes.fromhex("12 13")  # metrics (2, LEN): key 2<<3|2 = 0x12, length 3+2+3+2+9 = 19
    + SMALL_METRIC_BYTES
    + bytes.fromhex("18 01")  # seq (3, varint): key 0x18, 1
)


def test_small_payload_matches_hand_derived_bytes() -> None:
    assert len(SMALL_METRIC_BYTES) == 0x13
    assert encode_payload(SMALL_PAYLOAD) == SMALL_PAYLOAD_BYTES
    assert decode_payload(SMALL_PAYLOAD_BYTES) == SMALL_PAYLOAD


# One metric each: (metric, its bytes inside Payload.metrics). Keys: alias 0x10, datatype 0x20.
GOLDEN_METRICS: list[tuple[Metric, str]] = [
    # Int8 -1: int_value (10, varint) key 10<<3 = 0x50; two's complement in 32 bits = 0xffffffff
    # = 32 one-bits -> four 0x7f groups with continuation (ff ff ff ff), then 0b1111 (0f).
    (Metric(alias=7, datatype=T.INT8, value=-1), "10 07 20 01 50 ff ff ff ff 0f"),
    # UInt16 300: int_value key 0x50, 300 -> ac 02.
    (Metric(alias=8, datatype=T.UINT16, value=300), "10 08 20 06 50 ac 02"),
    # Int64 -2: long_value (11, varint) key 11<<3 = 0x58; 2**64-2: low 7 bits 1111110 -> 0xfe,
    # then eight all-ones groups (ff x8), then the top bit alone (01): ten bytes.
    (
        Metric(alias=6, datatype=T.INT64, value=-2),
        "10 06 20 04 58 fe ff ff ff ff ff ff ff ff 01",
    ),
    # Float 0.5: float_value (12, fixed32) key 12<<3|5 = 0x65; 0.5f = 0x3f000000, little-endian.
    (Metric(alias=1, datatype=T.FLOAT, value=0.5), "10 01 20 09 65 00 00 00 3f"),
    # Boolean true: boolean_value (14, varint) key 14<<3 = 0x70, 1.
    (Metric(alias=2, datatype=T.BOOLEAN, value=True), "10 02 20 0b 70 01"),
    # String "hi": string_value (15, LEN) key 15<<3|2 = 0x7a, length 2, 68 69.
    (Metric(alias=3, datatype=T.STRING, value="hi"), "10 03 20 0c 7a 02 68 69"),
    # Bytes: bytes_value (16, LEN) key 16<<3|2 = 130 = 0b1_0000010 -> two-byte key 82 01.
    (Metric(alias=4, datatype=T.BYTES, value=b"\x01\x02"), "10 04 20 11 82 01 02 01 02"),
    # Null Double: is_null (7, varint) key 7<<3 = 0x38, 1; no value field at all.
    (Metric(alias=5, datatype=T.DOUBLE, is_null=True), "10 05 20 0a 38 01"),
    # is_historical (5) key 0x28 and is_transient (6) key 0x30, both before the value.
    (
        Metric(alias=9, datatype=T.BOOLEAN, value=False, is_historical=True, is_transient=True),
        "10 09 20 0b 28 01 30 01 70 00",
    ),
]


@pytest.mark.parametrize(("metric", "hex_bytes"), GOLDEN_METRICS)
def test_metric_matches_hand_derived_bytes(metric: Metric, hex_bytes: str) -> None:
    inner = bytes.fromhex(hex_bytes)
    expected = bytes([0x12, len(inner)]) + inner  # metrics (2, LEN), every length < 128
    payload = Payload(metrics=(metric,))
    assert encode_payload(payload) == expected
    assert decode_payload(expected) == payload


def test_uuid_and_body() -> None:
    payload = Payload(uuid="u", body=b"\x00")
    # uuid (4, LEN) key 4<<3|2 = 0x22; body (5, LEN) key 5<<3|2 = 0x2a.
    expected = bytes.fromhex("22 01 75 2a 01 00")
    assert encode_payload(payload) == expected
    assert decode_payload(expected) == payload


def test_empty_payload_is_empty_bytes() -> None:
    assert encode_payload(Payload()) == b""
    assert decode_payload(b"") == Payload()


# --- round trip of every data type --------------------------------------------------------------

ROUND_TRIP: list[tuple[DataType, MetricValue]] = [
    (T.INT8, -128),
    (T.INT8, 127),
    (T.INT16, -32768),
    (T.INT16, 32767),
    (T.INT32, -(2**31)),
    (T.INT32, 2**31 - 1),
    (T.INT64, -(2**63)),
    (T.INT64, 2**63 - 1),
    (T.UINT8, 255),
    (T.UINT16, 65535),
    (T.UINT32, 2**32 - 1),
    (T.UINT64, 2**64 - 1),
    (T.FLOAT, -2.5),
    (T.FLOAT, 0.15625),
    (T.DOUBLE, 230.1),
    (T.DOUBLE, -1e-300),
    (T.BOOLEAN, True),
    (T.BOOLEAN, False),
    (T.STRING, "A相电压"),
    (T.DATETIME, 1_486_144_502_122),
    (T.TEXT, "line 1\nline 2"),
    (T.UUID, "0f8fad5b-d9cb-469f-a165-70867728950e"),
    (T.BYTES, b"\x00\xff"),
    (T.FILE, b"%PDF-1.7"),
    (T.INT8_ARRAY, b"\xe9\x7b"),
    (T.INT16_ARRAY, b"\x01\x00\xff\xff"),
    (T.INT32_ARRAY, b"\x15\xcd\x5b\x07"),
    (T.INT64_ARRAY, bytes(8)),
    (T.UINT8_ARRAY, b"\x01\x02"),
    (T.UINT16_ARRAY, b"\x01\x00"),
    (T.UINT32_ARRAY, bytes(4)),
    (T.UINT64_ARRAY, bytes(8)),
    (T.FLOAT_ARRAY, struct.pack("<f", 1.5)),
    (T.DOUBLE_ARRAY, struct.pack("<d", 1.5)),
    (T.BOOLEAN_ARRAY, b"\x01"),
    (T.STRING_ARRAY, b"a\x00b\x00"),
    (T.DATETIME_ARRAY, bytes(8)),
]
UNSUPPORTED = {T.UNKNOWN, T.DATASET, T.TEMPLATE, T.PROPERTYSET, T.PROPERTYSETLIST}


def test_round_trip_covers_every_data_type() -> None:
    assert {datatype for datatype, _ in ROUND_TRIP} | UNSUPPORTED == set(DataType)


@pytest.mark.parametrize(("datatype", "value"), ROUND_TRIP)
def test_round_trip(datatype: DataType, value: MetricValue) -> None:
    payload = Payload(
        timestamp=1_700_000_000_000,
        metrics=(Metric(name="m", alias=1, timestamp=1, datatype=datatype, value=value),),
        seq=42,
    )
    decoded = decode_payload(encode_payload(payload))
    assert decoded == payload
    assert type(decoded.metrics[0].value) is type(value)


@pytest.mark.parametrize("datatype", sorted(UNSUPPORTED))
def test_unsupported_types_refuse_a_value_but_allow_null(datatype: DataType) -> None:
    with pytest.raises(ValueError, match="not supported"):
        encode_payload(Payload(metrics=(Metric(name="m", datatype=datatype, value=1),)))
    null = Payload(metrics=(Metric(name="m", datatype=datatype, is_null=True),))
    assert decode_payload(encode_payload(null)) == null


def test_float_is_single_precision() -> None:
    payload = Payload(metrics=(Metric(alias=1, datatype=T.FLOAT, value=0.1),))
    value = decode_payload(encode_payload(payload)).metrics[0].value
    assert value == struct.unpack("<f", struct.pack("<f", 0.1))[0]
    assert value != 0.1


@given(
    timestamp=st.integers(0, 2**64 - 1),
    seq=st.integers(0, 2**64 - 1),
    value=st.integers(-(2**63), 2**63 - 1),
    reading=st.floats(allow_nan=False),
)
def test_round_trip_property(timestamp: int, seq: int, value: int, reading: float) -> None:
    payload = Payload(
        timestamp=timestamp,
        metrics=(
            Metric(alias=timestamp, timestamp=timestamp, datatype=T.INT64, value=value),
            Metric(alias=1, datatype=T.DOUBLE, value=reading),
        ),
        seq=seq,
    )
    assert decode_payload(encode_payload(payload)) == payload


@pytest.mark.parametrize(
    ("metric", "error"),
    [
        (Metric(name="m", datatype=T.INT8, value=128), ValueError),
        (Metric(name="m", datatype=T.UINT32, value=-1), ValueError),
        (Metric(name="m", datatype=T.INT32, value=True), TypeError),
        (Metric(name="m", datatype=T.INT32, value=1.0), TypeError),
        (Metric(name="m", datatype=T.DOUBLE, value="1"), TypeError),
        (Metric(name="m", datatype=T.FLOAT, value=1e39), ValueError),
        (Metric(name="m", datatype=T.BOOLEAN, value=1), TypeError),
        (Metric(name="m", datatype=T.STRING, value=b"x"), TypeError),
        (Metric(name="m", datatype=T.BYTES, value="x"), TypeError),
        (Metric(name="m", value=1.0), ValueError),  # a value without a datatype
        (Metric(datatype=T.DOUBLE, value=1.0), ValueError),  # neither name nor alias
        (Metric(name="m", datatype=T.DOUBLE, value=1.0, is_null=True), ValueError),
        (Metric(name="m", timestamp=-1), ValueError),
    ],
)
def test_encode_refuses(metric: Metric, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode_payload(Payload(metrics=(metric,)))


# --- decoding: unknown fields, tolerance, malformed input ---------------------------------------

# Unknown to Payload (fields 6..10 are its extension range), one of each wire type.
PAYLOAD_EXTRAS = bytes.fromhex(
    "30 96 01"  # field 6 varint 150: key 6<<3 = 0x30; 150 -> 0x96 0x01
    "39 01 02 03 04 05 06 07 08"  # field 7 fixed64: key 7<<3|1 = 0x39, 8 bytes
    "42 03 61 62 63"  # field 8 LEN: key 8<<3|2 = 0x42, "abc"
    "4d 01 02 03 04"  # field 9 fixed32: key 9<<3|5 = 0x4d, 4 bytes
    "53 08 01 54"  # field 10 group: start 10<<3|3 = 0x53, inner field 1 varint, end 0x54
)
# Inside a Metric: metadata (8) and properties (9) are skipped, fields 20..24 unknown.
METRIC_EXTRAS = bytes.fromhex(
    "42 02 08 01"  # metadata (8, LEN) holding MetaData.is_multi_part = true
    "4a 00"  # properties (9, LEN), empty PropertySet
    "a0 01 05"  # field 20 varint: key 160 -> a0 01
    "a9 01 00 00 00 00 00 00 00 00"  # field 21 fixed64: key 169 -> a9 01
    "b2 01 01 7a"  # field 22 LEN: key 178 -> b2 01
    "bd 01 00 00 00 00"  # field 23 fixed32: key 189 -> bd 01
    "c3 01 08 01 c3 01 c4 01 c4 01"  # field 24 group, holding a nested field-24 group
)


def test_decode_skips_unknown_fields_of_every_wire_type() -> None:
    metric = SMALL_METRIC_BYTES + METRIC_EXTRAS
    assert len(metric) < 128
    data = (
        PAYLOAD_EXTRAS
        + bytes.fromhex("08 ac 02")
        + bytes([0x12, len(metric)])
        + metric
        + PAYLOAD_EXTRAS
        + bytes.fromhex("18 01")
    )
    assert decode_payload(data) == SMALL_PAYLOAD


def test_decode_leaves_dataset_values_out() -> None:
    # dataset_value (17, LEN): key 17<<3|2 = 138 -> 8a 01, an empty DataSet.
    data = bytes.fromhex("12 08 0a 01 64 20 10 8a 01 00")
    assert decode_payload(data) == Payload(metrics=(Metric(name="d", datatype=T.DATASET),))


def test_decode_sign_extends_from_the_type_width() -> None:
    # Int8 -1 written as the single byte 0xff (varint ff 01) rather than 32-bit 0xffffffff.
    data = bytes.fromhex("12 05 20 01 50 ff 01")
    assert decode_payload(data).metrics[0].value == -1


@pytest.mark.parametrize(
    "hex_bytes",
    [
        "08 ac",  # varint cut short
        "08 ff ff ff ff ff ff ff ff ff ff 01",  # varint of 11 bytes
        "08 ff ff ff ff ff ff ff ff ff 7f",  # 10 bytes but above 2**64 - 1
        "12 05 0a",  # length runs past the end
        "0a 00",  # timestamp (varint) sent as LEN
        "19 00 00 00 00 00 00 00 00",  # seq (varint) sent as fixed64
        "12 02 20 63",  # datatype 99 does not exist
        "12 04 0a 02 c3 28",  # name is not UTF-8
        "53 08 01",  # group never closed
        "53 5c",  # group 10 closed by end-group 11
        "54",  # end-group with no group
        "00 00",  # field number 0
        "0e",  # wire type 6
        "39 00 00",  # fixed64 cut short
        "12 03 65 00 00",  # float_value (fixed32) cut short inside a metric
    ],
)
def test_decode_refuses_malformed(hex_bytes: str) -> None:
    with pytest.raises(DecodeError):
        decode_payload(bytes.fromhex(hex_bytes))


# --- topics -------------------------------------------------------------------------------------


def test_node_and_device_topics() -> None:
    assert topic("plant", MessageType.NBIRTH, "gw-01") == "spBv1.0/plant/NBIRTH/gw-01"
    assert topic("plant", MessageType.NDEATH, "gw-01") == "spBv1.0/plant/NDEATH/gw-01"
    assert topic("plant", MessageType.NDATA, "gw-01") == "spBv1.0/plant/NDATA/gw-01"
    for message_type in (MessageType.DBIRTH, MessageType.DDEATH, MessageType.DDATA):
        assert (
            topic("plant", message_type, "gw-01", "meter 1")
            == f"spBv1.0/plant/{message_type}/gw-01/meter 1"
        )


@pytest.mark.parametrize("bad", ["a/b", "a+b", "a#", "+", "#", "/", "", "\udc80"])
def test_ids_are_validated(bad: str) -> None:
    with pytest.raises(TopicError):
        topic(bad, MessageType.NDATA, "gw")
    with pytest.raises(TopicError):
        topic("g", MessageType.NDATA, bad)
    with pytest.raises(TopicError):
        topic("g", MessageType.DDATA, "gw", bad)
    with pytest.raises(TopicError):
        EdgeNode(bad, "gw")


def test_device_id_is_required_exactly_for_device_messages() -> None:
    with pytest.raises(TopicError, match="needs a device_id"):
        topic("g", MessageType.DDATA, "gw")
    with pytest.raises(TopicError, match="takes no device_id"):
        topic("g", MessageType.NDATA, "gw", "meter")


def test_parse_topic() -> None:
    assert parse_topic("spBv1.0/g/DDATA/gw/m") == Topic("g", MessageType.DDATA, "gw", "m")
    assert parse_topic("spBv1.0/g/NBIRTH/gw") == Topic("g", MessageType.NBIRTH, "gw")
    for bad in ("spAv1.0/g/NDATA/gw", "spBv1.0/g/STATE/gw", "spBv1.0/g/DDATA/gw", "spBv1.0/g"):
        with pytest.raises(TopicError):
            parse_topic(bad)


def test_data_type_codes_are_the_specifications() -> None:
    codes = {
        "UNKNOWN": 0, "INT8": 1, "INT16": 2, "INT32": 3, "INT64": 4, "UINT8": 5, "UINT16": 6,
        "UINT32": 7, "UINT64": 8, "FLOAT": 9, "DOUBLE": 10, "BOOLEAN": 11, "STRING": 12,
        "DATETIME": 13, "TEXT": 14, "UUID": 15, "DATASET": 16, "BYTES": 17, "FILE": 18,
        "TEMPLATE": 19, "PROPERTYSET": 20, "PROPERTYSETLIST": 21, "INT8_ARRAY": 22,
        "INT16_ARRAY": 23, "INT32_ARRAY": 24, "INT64_ARRAY": 25, "UINT8_ARRAY": 26,
        "UINT16_ARRAY": 27, "UINT32_ARRAY": 28, "UINT64_ARRAY": 29, "FLOAT_ARRAY": 30,
        "DOUBLE_ARRAY": 31, "BOOLEAN_ARRAY": 32, "STRING_ARRAY": 33, "DATETIME_ARRAY": 34,
    }  # fmt: skip
    assert {member.name: member.value for member in DataType} == codes


# --- edge-node session --------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def node(clock: FakeClock) -> EdgeNode:
    return EdgeNode("plant", "gw-01", clock=clock)


def decoded(message: Message) -> Payload:
    return decode_payload(message.payload)


def by_name(payload: Payload) -> dict[str, Metric]:
    return {metric.name: metric for metric in payload.metrics if metric.name is not None}


def bd_seq_of(payload: Payload) -> MetricValue | None:
    metric = by_name(payload)[BD_SEQ_METRIC]
    assert metric.datatype is T.INT64
    return metric.value


def meter_birth(node: EdgeNode, device: str = "meter-1") -> Message:
    return node.device_birth(
        device, [double_metric("voltage_a", 230.0), double_metric("energy_kwh", 10.5)]
    )


def test_nbirth(node: EdgeNode, clock: FakeClock) -> None:
    node.start_session()
    message = node.node_birth([Metric(name="Properties/OS", datatype=T.STRING, value="Linux")])
    assert message.topic == "spBv1.0/plant/NBIRTH/gw-01"
    payload = decoded(message)
    assert payload.seq == 0
    assert payload.timestamp == clock.now
    metrics = by_name(payload)
    assert list(metrics) == [BD_SEQ_METRIC, REBIRTH_METRIC, "Properties/OS"]
    assert metrics[REBIRTH_METRIC].datatype is T.BOOLEAN
    assert metrics[REBIRTH_METRIC].value is False
    for metric in payload.metrics:  # births carry name, alias, datatype and timestamp
        assert metric.alias is not None
        assert metric.timestamp == clock.now
    assert len({metric.alias for metric in payload.metrics}) == 3


def test_bd_seq_matches_the_will_and_increments_per_session(
    node: EdgeNode, clock: FakeClock
) -> None:
    node.start_session()
    will = node.node_death()
    birth = node.node_birth()
    assert will.topic == "spBv1.0/plant/NDEATH/gw-01"
    will_payload = decoded(will)
    assert will_payload.seq is None  # NDEATH carries no seq
    assert [metric.name for metric in will_payload.metrics] == [BD_SEQ_METRIC]
    assert bd_seq_of(will_payload) == bd_seq_of(decoded(birth)) == 0

    node.start_session()
    next_will, next_birth = node.node_death(), node.node_birth()
    assert bd_seq_of(decoded(next_will)) == bd_seq_of(decoded(next_birth)) == 1
    assert decoded(next_birth).seq == 0
    assert node.bd_seq == 1
    assert node.next_bd_seq == 2


def test_bd_seq_wraps_255_to_0(clock: FakeClock) -> None:
    node = EdgeNode("plant", "gw-01", bd_seq=255, clock=clock)
    seen = []
    for _ in range(2):
        node.start_session()
        seen.append(bd_seq_of(decoded(node.node_death())))
    assert seen == [255, 0]
    with pytest.raises(ValueError, match="outside"):
        EdgeNode("plant", "gw-01", bd_seq=256)


def test_seq_wraps_255_to_0(node: EdgeNode) -> None:
    node.start_session()
    messages = [node.node_birth(), meter_birth(node)]
    messages += [node.device_data("meter-1", {"voltage_a": 230.0 + i}, i) for i in range(300)]
    seqs = [decoded(message).seq for message in messages]
    assert seqs == [i % 256 for i in range(302)]
    assert seqs[255:257] == [255, 0]
    # NDEATH neither carries nor consumes a seq.
    node.node_death()
    assert decoded(node.device_death("meter-1")).seq == 302 % 256


def test_ddata_uses_aliases_only(node: EdgeNode, clock: FakeClock) -> None:
    node.start_session()
    node.node_birth()
    birth = meter_birth(node)
    assert birth.topic == "spBv1.0/plant/DBIRTH/gw-01/meter-1"
    data = node.device_data("meter-1", {"energy_kwh": 11.25, "voltage_a": None}, 1234)
    assert data.topic == "spBv1.0/plant/DDATA/gw-01/meter-1"
    assert b"energy_kwh" not in data.payload
    assert b"voltage_a" not in data.payload

    payload = decoded(data)
    assert payload.timestamp == clock.now
    assert all(metric.name is None for metric in payload.metrics)
    names = alias_names(decoded(birth))
    assert set(names.values()) == {"voltage_a", "energy_kwh"}
    values = {}
    for metric in payload.metrics:
        assert metric.alias is not None
        assert metric.datatype is T.DOUBLE
        assert metric.timestamp == 1234
        values[names[metric.alias]] = (metric.value, metric.is_null)
    assert values == {"energy_kwh": (11.25, False), "voltage_a": (None, True)}


def test_aliases_are_unique_per_node_and_stable_across_sessions(node: EdgeNode) -> None:
    node.start_session()
    first = [
        decoded(node.node_birth()),
        decoded(meter_birth(node)),
        decoded(meter_birth(node, "m2")),
    ]
    aliases = [metric.alias for payload in first for metric in payload.metrics]
    assert len(aliases) == len(set(aliases)) == 2 + 2 + 2

    node.start_session()
    node.node_birth()
    assert alias_names(decoded(meter_birth(node))) == alias_names(first[1])


def test_null_reading_at_birth() -> None:
    metric = double_metric("power_kw", None)
    assert metric == Metric(name="power_kw", datatype=T.DOUBLE, is_null=True)


def test_node_data(node: EdgeNode) -> None:
    node.start_session()
    birth = decoded(node.node_birth([double_metric("cpu_temp", 40.0)]))
    message = node.node_data({"cpu_temp": 41.0}, 5)
    assert message.topic == "spBv1.0/plant/NDATA/gw-01"
    (metric,) = decoded(message).metrics
    assert metric.alias is not None
    assert alias_names(birth)[metric.alias] == "cpu_temp"
    assert metric.value == 41.0


def test_ddeath_then_the_device_needs_a_new_birth(node: EdgeNode) -> None:
    node.start_session()
    node.node_birth()
    meter_birth(node)
    death = node.device_death("meter-1")
    assert death.topic == "spBv1.0/plant/DDEATH/gw-01/meter-1"
    assert decoded(death).metrics == ()
    assert decoded(death).seq == 2
    with pytest.raises(SessionError):
        node.device_data("meter-1", {"voltage_a": 1.0}, 0)
    with pytest.raises(SessionError):
        node.device_death("meter-1")
    assert decoded(meter_birth(node)).seq == 3


def test_rebirth_restarts_seq_and_voids_device_births(node: EdgeNode) -> None:
    node.start_session()
    node.node_birth()
    meter_birth(node)
    again = decoded(node.node_birth())
    assert again.seq == 0
    assert bd_seq_of(again) == 0  # same MQTT session, same will: same bdSeq
    with pytest.raises(SessionError):
        node.device_data("meter-1", {"voltage_a": 1.0}, 0)


def test_session_order_is_enforced(node: EdgeNode) -> None:
    with pytest.raises(SessionError):
        node.node_death()
    with pytest.raises(SessionError):
        node.node_birth()
    node.start_session()
    with pytest.raises(SessionError):
        meter_birth(node)
    node.node_birth()
    with pytest.raises(SessionError):
        node.device_data("meter-1", {"voltage_a": 1.0}, 0)
    meter_birth(node)
    with pytest.raises(SessionError, match="not declared"):
        node.device_data("meter-1", {"current_a": 1.0}, 0)
    with pytest.raises(ValueError, match="at least one"):
        node.device_data("meter-1", {}, 0)


def test_birth_metrics_are_checked(node: EdgeNode) -> None:
    node.start_session()
    with pytest.raises(ValueError, match="added by node_birth"):
        node.node_birth([Metric(name=BD_SEQ_METRIC, datatype=T.INT64, value=0)])
    node.node_birth()
    with pytest.raises(ValueError, match="name and a datatype"):
        node.device_birth("m", [Metric(name="x", value=1.0)])
    with pytest.raises(ValueError, match="twice"):
        node.device_birth("m", [double_metric("x", 1.0), double_metric("x", 2.0)])
    with pytest.raises(TopicError):
        node.device_birth("m/1", [double_metric("x", 1.0)])


def test_a_value_that_cannot_be_encoded_leaves_seq_alone(node: EdgeNode) -> None:
    node.start_session()
    node.node_birth()
    meter_birth(node)
    with pytest.raises(TypeError, match="alias"):
        node.device_data("meter-1", {"voltage_a": "high"}, 0)
    assert decoded(node.device_data("meter-1", {"voltage_a": 1.0}, 0)).seq == 2
