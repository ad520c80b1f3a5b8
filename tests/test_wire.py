"""The wire contract: topics, strict payload validation, broker URLs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.broker import BrokerSettings
from wire.counters import CounterEvent, EventKind, event_json
from wire.payload import (
    MAX_PAYLOAD_BYTES,
    PayloadError,
    Quality,
    Status,
    Uplink,
    encode_status,
    encode_telemetry,
    format_ts,
    parse_status,
    parse_telemetry,
)
from wire.topics import Stream, Topic, TopicError, subscription

pytestmark = pytest.mark.unit

TS = "2026-11-22T03:00:00Z"


def batch(**changes: object) -> bytes:
    reading: dict[str, object] = {
        "device": "meter-1",
        "point": "active_power_kw",
        "ts": TS,
        "value": 12.5,
        "quality": "good",
    }
    body: dict[str, object] = {
        "schema_version": 1,
        "gateway": "gw-01",
        "seq": 7,
        "sent_at": TS,
        "readings": [reading],
    }
    for key, value in changes.items():
        if key.startswith("r_"):
            reading[key[2:]] = value
        else:
            body[key] = value
    return json.dumps(body).encode()


def test_topic_round_trip() -> None:
    topic = Topic("site-a", "gw-01", Stream.TELEMETRY, root="zt-abc")
    assert str(topic) == "zt-abc/v1/site-a/gw-01/telemetry"
    assert Topic.parse(str(topic), root="zt-abc") == topic


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("zayton/v1/site/gw/telemetry/extra", "is not zayton/v1/"),
        ("zayton/v2/site/gw/telemetry", "is not under"),
        ("zayton/v1/site/gw/commands", "unknown stream"),
        ("zayton/v1/si+te/gw/telemetry", "not a valid identifier"),
    ],
)
def test_bad_topics_are_refused(text: str, problem: str) -> None:
    with pytest.raises(TopicError, match=problem):
        Topic.parse(text)


def test_subscriptions() -> None:
    assert subscription(Stream.STATUS) == "zayton/v1/+/+/status"
    shared = subscription(Stream.TELEMETRY, root="r", share_group="ingest")
    assert shared == "$share/ingest/r/v1/+/+/telemetry"


def test_a_valid_batch_parses_with_its_values() -> None:
    parsed = parse_telemetry(batch())
    reading = parsed.readings[0]
    assert (parsed.gateway, parsed.seq) == ("gw-01", 7)
    assert (reading.device, reading.point, reading.value) == ("meter-1", "active_power_kw", 12.5)
    assert reading.ts == datetime(2026, 11, 22, 3, tzinfo=UTC)
    assert reading.quality is Quality.GOOD


def test_timestamps_with_an_offset_name_the_same_instant() -> None:
    parsed = parse_telemetry(batch(r_ts="2026-11-22T11:00:00+08:00"))
    assert parsed.readings[0].ts == datetime(2026, 11, 22, 3, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "Invalid JSON"),
        (batch(schema_version=2), "unsupported schema version 2"),
        (batch(seq=0), "seq"),
        (batch(seq="7"), "seq"),
        (batch(r_value="12.5"), "readings.0.value"),
        (batch(r_value=True), "readings.0.value"),
        (batch(r_value=None), "good quality needs a value"),
        (batch(r_quality="fine"), "readings.0.quality"),
        (batch(r_ts="2026-11-22T03:00:00"), "timezone"),
        (batch(r_point="Active Power"), "readings.0.point"),
        (batch(r_device="meter/1"), "readings.0.device"),
        (batch(readings=[]), "at least 1"),
        (batch(extra="field"), "extra"),
        (batch(gateway="gw+1"), "gateway"),
        (b"x" * (MAX_PAYLOAD_BYTES + 1), "exceeds"),
        (batch(r_device="meter-1\n"), "readings.0.device"),
        (batch(r_ts="2026-11-22"), "readings.0.ts"),
        (batch(r_ts="20261122T030000Z"), "readings.0.ts"),
        (batch(r_delta=-1.0), "readings.0.delta"),
        (batch(r_unit="kW"), "readings.0: Object contains unknown field `unit`"),
        (batch(seq=1 << 63), "seq"),
        (batch(sent_at="2026-11-22T03:00:00"), "sent_at"),
        (batch(schema_version=9, readings="anything", more=1), "unsupported schema version 9"),
        (b"[1, 2]", "payload"),
        (
            batch(events=[{"device": "m", "point": "Bad", "ts": TS, "kind": "wrap"}]),
            "events.0.point",
        ),
        (batch(events=[{"device": "m", "point": "p", "ts": TS, "kind": "boom"}]), "events.0.kind"),
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_telemetry(payload)
    assert reason in caught.value.reason


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_values_are_rejected(token: str) -> None:
    payload = batch().replace(b"12.5", token.encode())
    with pytest.raises(PayloadError, match="finite"):
        parse_telemetry(payload)


def test_a_name_checked_as_a_device_is_still_checked_as_a_point() -> None:
    parse_telemetry(batch(r_device="Meter1"))  # a valid device name, now known
    with pytest.raises(PayloadError, match=r"readings\.0\.point: 'Meter1'"):
        parse_telemetry(batch(r_device="Meter1", r_point="Meter1"))


def test_numbers_beyond_the_float_range_are_refused() -> None:
    payload = batch().replace(b"12.5", b"1e999")
    with pytest.raises(PayloadError, match=r"readings\.0\.value: .*finite"):
        parse_telemetry(payload)


def test_rfc3339_variants_name_the_same_instant() -> None:
    for text in ("2026-11-22t03:00:00z", "2026-11-22 03:00:00Z", "2026-11-22T03:00:00.000000001Z"):
        parsed = parse_telemetry(batch(r_ts=text))
        assert parsed.readings[0].ts == datetime(2026, 11, 22, 3, tzinfo=UTC)
        assert parsed.stamps == {text: parsed.readings[0].ts}


def test_a_bad_quality_reading_may_carry_no_value() -> None:
    parsed = parse_telemetry(batch(r_value=None, r_quality="bad"))
    assert parsed.readings[0].value is None


def test_payload_gateway_must_match_its_topic() -> None:
    with pytest.raises(PayloadError, match="differs from topic"):
        parse_telemetry(batch(), Topic("site", "gw-02", Stream.TELEMETRY))


def test_the_fast_encoder_writes_what_the_parser_reads() -> None:
    sent = datetime(2026, 11, 22, 3, 0, 5, tzinfo=UTC)
    stamp = format_ts(datetime(2026, 11, 22, 11, tzinfo=timezone(timedelta(hours=8))))
    assert stamp == "2026-11-22T03:00:00Z"
    payload = encode_telemetry(
        "gw-01",
        3,
        sent,
        [("m1", "voltage_l1_v", stamp, 231.5, Quality.GOOD), ("m1", "x", stamp, None, Quality.BAD)],
    )
    parsed = parse_telemetry(payload)
    assert parsed.sent_at == sent
    assert [(r.point, r.value, r.quality) for r in parsed.readings] == [
        ("voltage_l1_v", 231.5, Quality.GOOD),
        ("x", None, Quality.BAD),
    ]


def test_the_fast_encoder_carries_counted_deltas_and_counter_events() -> None:
    stamp = format_ts(datetime(2026, 11, 22, 3, tzinfo=UTC))
    wrap = CounterEvent(
        ts=datetime(2026, 11, 22, 3, tzinfo=UTC).timestamp(),
        kind=EventKind.WRAP,
        before=42_949_670.0,
        after=1.5,
        amount=4.46,
        detail="",
    )
    payload = encode_telemetry(
        "gw-01",
        4,
        datetime(2026, 11, 22, 3, 0, 5, tzinfo=UTC),
        [
            ("m1", "energy_import_kwh", stamp, 1.5, Quality.GOOD, 4.46),
            ("m1", "energy_export_kwh", stamp, 7.0, Quality.GOOD, None),
            ("m1", "voltage_l1_v", stamp, 230.0, Quality.GOOD),
        ],
        [event_json("m1", "energy_import_kwh", wrap)],
    )
    parsed = parse_telemetry(payload)
    assert [r.delta for r in parsed.readings] == [4.46, None, None]
    (event,) = parsed.events
    assert (event.device, event.point, event.kind, event.before, event.after, event.amount) == (
        "m1",
        "energy_import_kwh",
        "wrap",
        42_949_670.0,
        1.5,
        4.46,
    )
    assert event.ts == datetime(2026, 11, 22, 3, tzinfo=UTC)


def test_the_encoder_refuses_non_finite_values() -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode_telemetry("gw", 1, datetime.now(UTC), [("m", "p", TS, float("nan"), Quality.GOOD)])


def test_status_round_trip() -> None:
    status = Status(
        schema_version=1,
        gateway="gw-01",
        state="online",
        ts=datetime(2026, 11, 22, tzinfo=UTC),
        firm="Demo",
        uplink=Uplink.FIVE_G,
    )
    assert parse_status(encode_status(status)) == status
    with pytest.raises(PayloadError, match="state"):
        parse_status(encode_status(status).replace(b"online", b"sleepy"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker", ("broker", 1883, None, None, False)),
        ("mqtts://u%40x:p%3Aw@b.example:9999", ("b.example", 9999, "u@x", "p:w", True)),
        ("mqtts://b", ("b", 8883, None, None, True)),
    ],
)
def test_broker_urls(url: str, expected: tuple[object, ...]) -> None:
    s = BrokerSettings.from_url(url)
    assert (s.host, s.port, s.username, s.password, s.tls) == expected
    assert "p:w" not in s.url()
    assert "p:w" not in repr(s)


@pytest.mark.parametrize("url", ["http://broker", "mqtt://"])
def test_bad_broker_urls(url: str) -> None:
    with pytest.raises(ValueError, match="broker URL"):
        BrokerSettings.from_url(url)


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}", fullmatch=True),
            st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
            st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_the_fast_encoder_round_trips_any_valid_reading(
    rows: list[tuple[str, str, float]],
) -> None:
    readings = [(d, p, TS, v, Quality.GOOD) for d, p, v in rows]
    payload = encode_telemetry("gw", 9, datetime(2026, 1, 1, tzinfo=UTC), readings)
    assert json.loads(payload)["readings"][0]["ts"] == TS
    parsed = parse_telemetry(payload)
    assert [(r.device, r.point, r.value) for r in parsed.readings] == [
        (d, p, float(v)) for d, p, v in rows
    ]
