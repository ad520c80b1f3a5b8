"""Pure Modbus register codec: register words <-> values.

The gateway decodes with this module and the simulators encode with it, so both sides agree on
every byte. No I/O and no pymodbus here.

Word/byte order is named by where the bytes of a value land. For a value whose big-endian bytes
are ``A B C D`` (``A`` most significant):

==========  ============  ==============================================
order       registers     meaning
==========  ============  ==============================================
ABCD        [AB, CD]      big-endian, the Modbus default
CDAB        [CD, AB]      word swap (common in energy meters)
BADC        [BA, DC]      byte swap within each word
DCBA        [DC, BA]      little-endian
==========  ============  ==============================================

64-bit values extend this to four registers (CDAB reverses the word order, BADC swaps the bytes
of each word, DCBA does both); 16-bit values and ``bits`` only see the byte swap (BADC, DCBA).
Strings hold two ASCII characters per register, high byte first for ABCD/CDAB and low byte
first for BADC/DCBA.

Every numeric conversion is two precompiled :class:`struct.Struct` calls: the words are packed
into bytes with the word endianness of the order, the bytes are unpacked as the value with the
value endianness of the order. :func:`decoder` and :func:`encoder` return closures compiled once
per :class:`Encoding`; the gateway builds them at start-up and calls them on every poll.
"""

from __future__ import annotations

import functools
import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

__all__ = [
    "DataType",
    "Decoder",
    "Encoder",
    "Encoding",
    "WordOrder",
    "decode",
    "decoder",
    "encode",
    "encoder",
    "layout",
    "register_count",
]

logger = logging.getLogger(__name__)

Value: TypeAlias = int | float | str
Decoder: TypeAlias = Callable[[Sequence[int]], Value]
Encoder: TypeAlias = Callable[[Value], list[int]]


class DataType(StrEnum):
    """What a run of registers holds; the values are the names used in TOML profiles."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"
    BITS = "bits"


class WordOrder(StrEnum):
    """Where the big-endian bytes ``A B C D`` of a value land in the registers."""

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


# struct format character and register count of each fixed-size type.
_FIXED: dict[DataType, tuple[str, int]] = {
    DataType.INT16: ("h", 1),
    DataType.UINT16: ("H", 1),
    DataType.BITS: ("H", 1),
    DataType.INT32: ("i", 2),
    DataType.UINT32: ("I", 2),
    DataType.INT64: ("q", 4),
    DataType.UINT64: ("Q", 4),
    DataType.FLOAT32: ("f", 2),
    DataType.FLOAT64: ("d", 4),
}

# (endianness of the words when packed to bytes, endianness of the value in those bytes).
_ENDIAN: dict[WordOrder, tuple[str, str]] = {
    WordOrder.ABCD: (">", ">"),
    WordOrder.CDAB: ("<", "<"),
    WordOrder.BADC: ("<", ">"),
    WordOrder.DCBA: (">", "<"),
}

# Precompiled (words struct, value struct) per (type, order): built once at import.
_STRUCTS: dict[tuple[DataType, WordOrder], tuple[struct.Struct, struct.Struct]] = {
    (dtype, order): (
        struct.Struct(f"{_ENDIAN[order][0]}{count}H"),
        struct.Struct(f"{_ENDIAN[order][1]}{char}"),
    )
    for dtype, (char, count) in _FIXED.items()
    for order in WordOrder
}


@dataclass(frozen=True, slots=True)
class Encoding:
    """How one value is laid out in registers.

    ``length`` is the register count of a ``string`` (required there, forbidden elsewhere).
    ``bit`` applies to ``bits`` only: 0-15 selects one bit (decoded as 0 or 1), ``None`` keeps
    the whole 16-bit mask. The byte swap of BADC/DCBA applies to ``bits`` before a bit is taken.
    """

    type: DataType
    order: WordOrder = WordOrder.ABCD
    length: int | None = None
    bit: int | None = None

    def __post_init__(self) -> None:
        # Accept the plain strings of a TOML file; an unknown name is a ValueError.
        object.__setattr__(self, "type", DataType(self.type))
        object.__setattr__(self, "order", WordOrder(self.order))
        if self.type is DataType.STRING:
            if self.length is None:
                msg = "string encoding needs a length (number of registers)"
                raise ValueError(msg)
            if not _is_int(self.length) or self.length < 1:
                raise ValueError(
                    f"string length must be a positive register count, got {self.length!r}"
                )
        elif self.length is not None:
            raise ValueError(f"length applies to string only, not {self.type}")
        if self.bit is not None:
            if self.type is not DataType.BITS:
                raise ValueError(f"bit applies to bits only, not {self.type}")
            if not _is_int(self.bit) or not 0 <= self.bit <= 15:
                raise ValueError(f"bit must be 0..15, got {self.bit!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def register_count(enc: Encoding) -> int:
    """Number of registers the encoding spans."""
    if enc.type is DataType.STRING and enc.length is not None:
        return enc.length
    return _FIXED[enc.type][1]


def layout(dtype: DataType, order: WordOrder) -> tuple[struct.Struct, bool]:
    """The struct that unpacks a value of a fixed-size type from bytes, and whether the words must
    be packed into those bytes little-endian (CDAB, BADC) rather than big-endian (ABCD, DCBA).

    For code that decodes a whole answer at once: pack its words both ways once, then
    ``unpack_from`` each value at twice its register offset.
    """
    return _STRUCTS[dtype, order][1], _ENDIAN[order][0] == "<"


def _bad_words(words: Sequence[int], enc: Encoding) -> ValueError:
    expected = register_count(enc)
    if len(words) != expected:
        return ValueError(f"{enc.type} needs {expected} register(s), got {len(words)}")
    return ValueError(f"register words must be integers 0..0xFFFF, got {list(words)!r}")


def _bad_value(value: object, enc: Encoding, err: Exception) -> ValueError:
    return ValueError(f"cannot encode {value!r} as {enc.type}: {err}")


def _string_decoder(enc: Encoding, words_struct: struct.Struct) -> Decoder:
    pack = words_struct.pack

    def decode_string(words: Sequence[int]) -> Value:
        try:
            raw = pack(*words)
        except struct.error as err:
            raise _bad_words(words, enc) from err
        return raw.rstrip(b"\x00 ").decode("ascii", errors="replace")

    return decode_string


def _numeric_decoder(enc: Encoding) -> Decoder:
    words_struct, value_struct = _STRUCTS[enc.type, enc.order]
    pack = words_struct.pack
    unpack = value_struct.unpack
    bit = enc.bit

    if bit is not None:

        def decode_bit(words: Sequence[int]) -> Value:
            try:
                mask: int = unpack(pack(*words))[0]
            except struct.error as err:
                raise _bad_words(words, enc) from err
            return (mask >> bit) & 1

        return decode_bit

    def decode_value(words: Sequence[int]) -> Value:
        try:
            value: int | float = unpack(pack(*words))[0]
        except struct.error as err:
            raise _bad_words(words, enc) from err
        return value

    return decode_value


@functools.lru_cache(maxsize=1024)
def decoder(enc: Encoding) -> Decoder:
    """Return a function decoding register words with ``enc``, compiled once per encoding.

    The function raises ValueError for a wrong number of words or a word outside 0..0xFFFF.
    Floats come back as they are, NaN and infinities included.
    """
    if enc.type is DataType.STRING:
        return _string_decoder(enc, _string_struct(enc))
    return _numeric_decoder(enc)


def _string_struct(enc: Encoding) -> struct.Struct:
    endian = "<" if enc.order in (WordOrder.BADC, WordOrder.DCBA) else ">"
    return struct.Struct(f"{endian}{register_count(enc)}H")


def _string_encoder(enc: Encoding) -> Encoder:
    unpack = _string_struct(enc).unpack
    size = 2 * register_count(enc)

    def encode_string(value: Value) -> list[int]:
        if not isinstance(value, str):
            raise TypeError(f"string encoding needs a str, got {value!r}")
        try:
            raw = value.encode("ascii")
        except UnicodeEncodeError as err:
            raise _bad_value(value, enc, err) from err
        if len(raw) > size:
            raise ValueError(f"{value!r} is longer than {size} characters ({size // 2} registers)")
        return list(unpack(raw.ljust(size, b"\x00")))

    return encode_string


def _numeric_encoder(enc: Encoding) -> Encoder:
    words_struct, value_struct = _STRUCTS[enc.type, enc.order]
    unpack = words_struct.unpack
    pack = value_struct.pack
    bit = enc.bit
    accepted = (int, float) if enc.type in (DataType.FLOAT32, DataType.FLOAT64) else int

    def encode_value(value: Value) -> list[int]:
        if not isinstance(value, accepted):
            raise TypeError(f"{enc.type} encoding cannot take {value!r}")
        if bit is not None:
            if value not in (0, 1):
                raise ValueError(f"a single bit is 0 or 1, got {value!r}")
            value = int(value) << bit
        try:
            return list(unpack(pack(value)))
        except (struct.error, OverflowError) as err:
            raise _bad_value(value, enc, err) from err

    return encode_value


@functools.lru_cache(maxsize=1024)
def encoder(enc: Encoding) -> Encoder:
    """Return a function encoding a value into register words with ``enc``, compiled once.

    Integers outside the range of the type raise ValueError (they are never wrapped); float32
    rounds to the nearest float32; a float beyond the float32 range raises ValueError.
    """
    if enc.type is DataType.STRING:
        return _string_encoder(enc)
    return _numeric_encoder(enc)


def decode(words: Sequence[int], enc: Encoding) -> Value:
    """Decode 16-bit unsigned register ``words`` laid out as ``enc``."""
    return decoder(enc)(words)


def encode(value: Value, enc: Encoding) -> list[int]:
    """Encode ``value`` into 16-bit register words laid out as ``enc``: the inverse of decode."""
    return encoder(enc)(value)
