"""Golden table and round-trip properties of the Modbus register codec.

Every expected register word below is written by hand from the byte layout of the value
(big-endian bytes A B C D ...), never computed with the module under test.
"""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from profiles.codec import (
    DataType,
    Encoding,
    WordOrder,
    decode,
    decoder,
    encode,
    encoder,
    register_count,
)

pytestmark = pytest.mark.unit

T = DataType
ABCD, CDAB, BADC, DCBA = WordOrder.ABCD, WordOrder.CDAB, WordOrder.BADC, WordOrder.DCBA

# (encoding without order, value) -> words per order. Decode and encode must both match.
GOLDEN: list[tuple[Encoding, int | float | str, dict[WordOrder, list[int]]]] = [
    # int16 -12345 = 0xCFC7
    (
        Encoding(T.INT16),
        -12345,
        {ABCD: [0xCFC7], CDAB: [0xCFC7], BADC: [0xC7CF], DCBA: [0xC7CF]},
    ),
    # int16 -2 = 0xFFFE
    (Encoding(T.INT16), -2, {ABCD: [0xFFFE], CDAB: [0xFFFE], BADC: [0xFEFF], DCBA: [0xFEFF]}),
    # uint16 0x1234
    (Encoding(T.UINT16), 0x1234, {ABCD: [0x1234], CDAB: [0x1234], BADC: [0x3412], DCBA: [0x3412]}),
    (Encoding(T.UINT16), 65535, {ABCD: [0xFFFF], CDAB: [0xFFFF], BADC: [0xFFFF], DCBA: [0xFFFF]}),
    # int32 -123456789 = 0xF8A432EB
    (
        Encoding(T.INT32),
        -123456789,
        {
            ABCD: [0xF8A4, 0x32EB],
            CDAB: [0x32EB, 0xF8A4],
            BADC: [0xA4F8, 0xEB32],
            DCBA: [0xEB32, 0xA4F8],
        },
    ),
    # int32 -2 = 0xFFFFFFFE
    (
        Encoding(T.INT32),
        -2,
        {
            ABCD: [0xFFFF, 0xFFFE],
            CDAB: [0xFFFE, 0xFFFF],
            BADC: [0xFFFF, 0xFEFF],
            DCBA: [0xFEFF, 0xFFFF],
        },
    ),
    # uint32 0x12345678
    (
        Encoding(T.UINT32),
        0x12345678,
        {
            ABCD: [0x1234, 0x5678],
            CDAB: [0x5678, 0x1234],
            BADC: [0x3412, 0x7856],
            DCBA: [0x7856, 0x3412],
        },
    ),
    # uint32 max = 0xFFFFFFFF
    (
        Encoding(T.UINT32),
        4294967295,
        {
            ABCD: [0xFFFF, 0xFFFF],
            CDAB: [0xFFFF, 0xFFFF],
            BADC: [0xFFFF, 0xFFFF],
            DCBA: [0xFFFF, 0xFFFF],
        },
    ),
    # int64 min = 0x8000000000000000
    (
        Encoding(T.INT64),
        -9223372036854775808,
        {
            ABCD: [0x8000, 0x0000, 0x0000, 0x0000],
            CDAB: [0x0000, 0x0000, 0x0000, 0x8000],
            BADC: [0x0080, 0x0000, 0x0000, 0x0000],
            DCBA: [0x0000, 0x0000, 0x0000, 0x0080],
        },
    ),
    # int64 -2 = 0xFFFFFFFFFFFFFFFE
    (
        Encoding(T.INT64),
        -2,
        {
            ABCD: [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE],
            CDAB: [0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF],
            BADC: [0xFFFF, 0xFFFF, 0xFFFF, 0xFEFF],
            DCBA: [0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF],
        },
    ),
    # uint64 bytes 01 02 03 04 05 06 07 08
    (
        Encoding(T.UINT64),
        0x0102030405060708,
        {
            ABCD: [0x0102, 0x0304, 0x0506, 0x0708],
            CDAB: [0x0708, 0x0506, 0x0304, 0x0102],
            BADC: [0x0201, 0x0403, 0x0605, 0x0807],
            DCBA: [0x0807, 0x0605, 0x0403, 0x0201],
        },
    ),
    # float32 1.0 = 0x3F800000
    (
        Encoding(T.FLOAT32),
        1.0,
        {
            ABCD: [0x3F80, 0x0000],
            CDAB: [0x0000, 0x3F80],
            BADC: [0x803F, 0x0000],
            DCBA: [0x0000, 0x803F],
        },
    ),
    # float32 -2.5 = 0xC0200000
    (
        Encoding(T.FLOAT32),
        -2.5,
        {
            ABCD: [0xC020, 0x0000],
            CDAB: [0x0000, 0xC020],
            BADC: [0x20C0, 0x0000],
            DCBA: [0x0000, 0x20C0],
        },
    ),
    # float32 nearest to pi = 0x40490FDB
    (
        Encoding(T.FLOAT32),
        3.1415927410125732,
        {
            ABCD: [0x4049, 0x0FDB],
            CDAB: [0x0FDB, 0x4049],
            BADC: [0x4940, 0xDB0F],
            DCBA: [0xDB0F, 0x4940],
        },
    ),
    # float64 pi = 0x400921FB54442D18
    (
        Encoding(T.FLOAT64),
        math.pi,
        {
            ABCD: [0x4009, 0x21FB, 0x5444, 0x2D18],
            CDAB: [0x2D18, 0x5444, 0x21FB, 0x4009],
            BADC: [0x0940, 0xFB21, 0x4454, 0x182D],
            DCBA: [0x182D, 0x4454, 0xFB21, 0x0940],
        },
    ),
    # float64 -2.5 = 0xC004000000000000
    (
        Encoding(T.FLOAT64),
        -2.5,
        {
            ABCD: [0xC004, 0x0000, 0x0000, 0x0000],
            CDAB: [0x0000, 0x0000, 0x0000, 0xC004],
            BADC: [0x04C0, 0x0000, 0x0000, 0x0000],
            DCBA: [0x0000, 0x0000, 0x0000, 0x04C0],
        },
    ),
    # "ABCDE" in 4 registers: 41 42 43 44 45 00 00 00 (odd length, NUL padding)
    (
        Encoding(T.STRING, length=4),
        "ABCDE",
        {
            ABCD: [0x4142, 0x4344, 0x4500, 0x0000],
            CDAB: [0x4142, 0x4344, 0x4500, 0x0000],
            BADC: [0x4241, 0x4443, 0x0045, 0x0000],
            DCBA: [0x4241, 0x4443, 0x0045, 0x0000],
        },
    ),
    # whole bit mask 0x8001
    (Encoding(T.BITS), 0x8001, {ABCD: [0x8001], CDAB: [0x8001], BADC: [0x0180], DCBA: [0x0180]}),
    # bit 15 set
    (
        Encoding(T.BITS, bit=15),
        1,
        {ABCD: [0x8000], CDAB: [0x8000], BADC: [0x0080], DCBA: [0x0080]},
    ),
    (Encoding(T.BITS, bit=3), 0, {ABCD: [0], CDAB: [0], BADC: [0], DCBA: [0]}),
]


def _with_order(enc: Encoding, order: WordOrder) -> Encoding:
    return Encoding(enc.type, order, length=enc.length, bit=enc.bit)


GOLDEN_CASES = [
    pytest.param(_with_order(enc, order), words, value, id=f"{enc.type}-{order}-{value!r}")
    for enc, value, by_order in GOLDEN
    for order, words in by_order.items()
]

# Cases that only decode this way (a device's padding or other bits that encode never produces).
DECODE_ONLY = [
    pytest.param(Encoding(T.STRING, length=2), [0x4142, 0x2020], "AB", id="string-space-padded"),
    pytest.param(Encoding(T.STRING, length=3), [0x4100, 0x0000, 0x0000], "A", id="string-nul"),
    pytest.param(Encoding(T.STRING, length=1), [0x41FF], "A\ufffd", id="string-non-ascii"),
    pytest.param(Encoding(T.BITS, bit=0), [0x8001], 1, id="bit0-of-0x8001"),
    pytest.param(Encoding(T.BITS, bit=1), [0x8001], 0, id="bit1-of-0x8001"),
    pytest.param(Encoding(T.BITS, BADC, bit=0), [0x0100], 1, id="bit0-byte-swapped"),
    pytest.param(Encoding(T.BITS, DCBA, bit=8), [0x0100], 0, id="bit8-byte-swapped"),
]


def test_golden_table_covers_every_type_and_order() -> None:
    covered = {(enc.type, order) for enc, _, by_order in GOLDEN for order in by_order}
    assert covered == {(dtype, order) for dtype in DataType for order in WordOrder}


@pytest.mark.parametrize(("enc", "words", "value"), GOLDEN_CASES)
def test_golden_decode(enc: Encoding, words: list[int], value: int | float | str) -> None:
    decoded = decode(words, enc)
    assert decoded == value
    assert type(decoded) is type(value)


@pytest.mark.parametrize(("enc", "words", "value"), GOLDEN_CASES)
def test_golden_encode(enc: Encoding, words: list[int], value: int | float | str) -> None:
    assert encode(value, enc) == words
    assert register_count(enc) == len(words)


@pytest.mark.parametrize(("enc", "words", "value"), DECODE_ONLY)
def test_decode_only(enc: Encoding, words: list[int], value: int | float | str) -> None:
    assert decode(words, enc) == value


@pytest.mark.parametrize("order", list(WordOrder))
def test_float_specials_are_returned_as_they_are(order: WordOrder) -> None:
    f32, f64 = Encoding(T.FLOAT32, order), Encoding(T.FLOAT64, order)
    nan32 = {ABCD: [0x7FC0, 0], CDAB: [0, 0x7FC0], BADC: [0xC07F, 0], DCBA: [0, 0xC07F]}[order]
    inf32 = {ABCD: [0xFF80, 0], CDAB: [0, 0xFF80], BADC: [0x80FF, 0], DCBA: [0, 0x80FF]}[order]
    assert math.isnan(float(decode(nan32, f32)))
    assert decode(inf32, f32) == -math.inf
    assert math.isnan(float(decode(encode(math.nan, f64), f64)))
    assert decode(encode(math.inf, f64), f64) == math.inf


def test_encoding_accepts_toml_strings() -> None:
    assert Encoding("float32", "CDAB") == Encoding(T.FLOAT32, CDAB)  # type: ignore[arg-type]
    assert Encoding("uint16").order is ABCD  # type: ignore[arg-type]


def test_decoder_is_compiled_once_per_encoding() -> None:
    enc = Encoding(T.UINT32, CDAB)
    assert decoder(enc) is decoder(Encoding(T.UINT32, CDAB))
    assert encoder(enc) is encoder(Encoding(T.UINT32, CDAB))
    assert decoder(enc)((0x5678, 0x1234)) == 0x12345678


# --- round-trip properties -------------------------------------------------------------------

INT_RANGES = {
    T.INT16: (-(2**15), 2**15 - 1),
    T.UINT16: (0, 2**16 - 1),
    T.INT32: (-(2**31), 2**31 - 1),
    T.UINT32: (0, 2**32 - 1),
    T.INT64: (-(2**63), 2**63 - 1),
    T.UINT64: (0, 2**64 - 1),
    T.BITS: (0, 2**16 - 1),
}
orders = st.sampled_from(list(WordOrder))


@given(st.sampled_from(list(INT_RANGES)), orders, st.data())
def test_int_round_trip(dtype: DataType, order: WordOrder, data: st.DataObject) -> None:
    low, high = INT_RANGES[dtype]
    value = data.draw(st.integers(low, high))
    enc = Encoding(dtype, order)
    words = encode(value, enc)
    assert len(words) == register_count(enc)
    assert all(0 <= w <= 0xFFFF for w in words)
    assert decode(words, enc) == value


@given(st.integers(0, 15), orders, st.integers(0, 1))
def test_single_bit_round_trip(bit: int, order: WordOrder, value: int) -> None:
    enc = Encoding(T.BITS, order, bit=bit)
    assert decode(encode(value, enc), enc) == value


@given(st.floats(allow_nan=False), orders)
def test_float64_round_trip_is_exact(value: float, order: WordOrder) -> None:
    enc = Encoding(T.FLOAT64, order)
    decoded = decode(encode(value, enc), enc)
    assert decoded == value
    assert math.copysign(1.0, float(decoded)) == math.copysign(1.0, value)


@given(st.floats(min_value=-3.4e38, max_value=3.4e38), orders)
def test_float32_round_trip_rounds_to_float32(value: float, order: WordOrder) -> None:
    enc = Encoding(T.FLOAT32, order)
    expected = struct.unpack("<f", struct.pack("<f", value))[0]
    assert decode(encode(value, enc), enc) == expected


@given(st.floats(width=32, allow_nan=False), orders)
def test_float32_values_round_trip_exactly(value: float, order: WordOrder) -> None:
    enc = Encoding(T.FLOAT32, order)
    assert decode(encode(value, enc), enc) == value


@given(st.integers(1, 20), orders, st.data())
def test_string_round_trip(length: int, order: WordOrder, data: st.DataObject) -> None:
    printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
    text = data.draw(st.text(printable, max_size=2 * length))
    enc = Encoding(T.STRING, order, length=length)
    words = encode(text, enc)
    assert len(words) == length
    assert decode(words, enc) == text.rstrip(" ")


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("enc", "words"),
    [
        (Encoding(T.INT32), [1]),
        (Encoding(T.INT32), [1, 2, 3]),
        (Encoding(T.UINT16), []),
        (Encoding(T.FLOAT64, CDAB), [0, 0]),
        (Encoding(T.STRING, length=2), [0x4142]),
        (Encoding(T.BITS, bit=2), [1, 1]),
    ],
)
def test_wrong_word_count(enc: Encoding, words: list[int]) -> None:
    with pytest.raises(ValueError, match="register"):
        decode(words, enc)


@pytest.mark.parametrize("bad", [0x10000, -1])
@pytest.mark.parametrize(
    "enc", [Encoding(T.UINT32), Encoding(T.INT16, BADC), Encoding(T.STRING, DCBA, length=2)]
)
def test_word_out_of_range(enc: Encoding, bad: int) -> None:
    words = [0] * (register_count(enc) - 1) + [bad]
    with pytest.raises(ValueError, match=r"0\.\.0xFFFF"):
        decode(words, enc)


@pytest.mark.parametrize(
    ("dtype", "value"),
    [
        (T.INT16, 2**15),
        (T.INT16, -(2**15) - 1),
        (T.UINT16, -1),
        (T.UINT16, 2**16),
        (T.INT32, 2**31),
        (T.UINT32, 2**32),
        (T.UINT32, -1),
        (T.INT64, -(2**63) - 1),
        (T.UINT64, 2**64),
        (T.BITS, 2**16),
    ],
)
def test_int_out_of_range_is_not_wrapped(dtype: DataType, value: int) -> None:
    with pytest.raises(ValueError, match=f"cannot encode {value}"):
        encode(value, Encoding(dtype))


def test_float32_overflow() -> None:
    with pytest.raises(ValueError, match="float32"):
        encode(1e39, Encoding(T.FLOAT32))


def test_wrong_value_types() -> None:
    with pytest.raises(TypeError):
        encode(1.5, Encoding(T.INT32))
    with pytest.raises(TypeError):
        encode("1", Encoding(T.FLOAT32))
    with pytest.raises(TypeError):
        encode(12, Encoding(T.STRING, length=2))


def test_string_errors() -> None:
    with pytest.raises(ValueError, match="needs a length"):
        Encoding(T.STRING)
    with pytest.raises(ValueError, match="positive"):
        Encoding(T.STRING, length=0)
    with pytest.raises(ValueError, match="ascii"):
        encode("Überlast", Encoding(T.STRING, length=8))
    with pytest.raises(ValueError, match="longer than 4"):
        encode("ABCDE", Encoding(T.STRING, length=2))


@pytest.mark.parametrize("bit", [-1, 16])
def test_bit_out_of_range(bit: int) -> None:
    with pytest.raises(ValueError, match=r"0\.\.15"):
        Encoding(T.BITS, bit=bit)


def test_single_bit_value_must_be_0_or_1() -> None:
    with pytest.raises(ValueError, match="0 or 1"):
        encode(2, Encoding(T.BITS, bit=4))


def test_options_only_where_they_apply() -> None:
    with pytest.raises(ValueError, match="length applies to string only"):
        Encoding(T.UINT16, length=2)
    with pytest.raises(ValueError, match="bit applies to bits only"):
        Encoding(T.UINT16, bit=2)
    with pytest.raises(ValueError, match="float128"):
        Encoding("float128")  # type: ignore[arg-type]
