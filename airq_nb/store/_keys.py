"""KV keys: validation and Deno KV's own byte encoding, so SQLite sorts keys as Deno does.

Deno encodes a key with the FoundationDB tuple layer (denokv ``proto/codec.rs``); its
runtime order is the ``memcmp`` order of those bytes. Python types map to Deno's as
``bytes`` = Uint8Array, ``str`` = string, ``int`` = bigint, ``float`` = number and
``bool`` = boolean, so parts sort by type first — bytes < str < int < float < False <
True — then by value: bytes and strings (UTF-8) bytewise, integers numerically, floats
-NaN < -inf < ... < -0.0 < 0.0 < ... < inf < NaN. A ``list(prefix=..., start=...,
end=...)`` is then a plain range scan over a BLOB primary key.
"""

from __future__ import annotations

import struct
from typing import TypeAlias

from .._errors import InvalidKeyError

__all__ = ["MAX_KEY_BYTES", "Key", "KeyPart", "decode_key", "encode_key", "prefix_range"]

KeyPart: TypeAlias = bytes | str | float | int | bool
Key: TypeAlias = tuple[KeyPart, ...]

#: Deno KV's limit on an encoded key (denokv ``proto/limits.rs`` MAX_WRITE_KEY_SIZE_BYTES).
MAX_KEY_BYTES = 2048

# Type tags of denokv's codec.rs. Integers take a tag per magnitude length: INT_ZERO for 0,
# INT_ZERO ± n for an n-byte magnitude (n <= 8), NEG_INT_START / POS_INT_END plus a length
# byte for longer ones.
_BYTES, _STRING, _DOUBLE, _FALSE, _TRUE = 0x01, 0x02, 0x21, 0x26, 0x27
_NEG_INT_START, _INT_ZERO, _POS_INT_END = 0x0B, 0x14, 0x1D
_MAX_SHORT_INT_BYTES = 8
_MAX_INT_BYTES = 255
_SIGN_BIT = 1 << 63
_ALL_BITS = (1 << 64) - 1
# Every NaN is stored as one of two NaNs, keeping its sign (codec.rs canonicalize_f64).
_CANONICAL_NAN_POS, _CANONICAL_NAN_NEG = 0x7FF8000000000000, 0xFFF8000000000000
_EXPONENT_ALL_ONES = 0x7FF0000000000000
_MANTISSA = 0x000FFFFFFFFFFFFF


def _escape(raw: bytes) -> bytes:
    # 0x00 ends a part, so a literal 0x00 becomes 0x00 0xFF (the tuple layer's escape).
    return raw.replace(b"\x00", b"\x00\xff") + b"\x00"


def _encode_float(number: float) -> bytes:
    bits = int.from_bytes(struct.pack(">d", number), "big")
    if bits & _EXPONENT_ALL_ONES == _EXPONENT_ALL_ONES and bits & _MANTISSA:
        bits = _CANONICAL_NAN_NEG if bits & _SIGN_BIT else _CANONICAL_NAN_POS
    # Negative (sign bit set, -NaN included): flip every bit; otherwise flip the sign bit.
    # The bytes then sort as the numbers do, -NaN first and NaN last.
    bits = bits ^ _ALL_BITS if bits & _SIGN_BIT else bits ^ _SIGN_BIT
    return bytes([_DOUBLE]) + bits.to_bytes(8, "big")


def _decode_float(raw: bytes) -> float:
    bits = int.from_bytes(raw, "big")
    bits = bits ^ _SIGN_BIT if bits & _SIGN_BIT else bits ^ _ALL_BITS
    return struct.unpack(">d", bits.to_bytes(8, "big"))[0]


def _encode_int(number: int) -> bytes:
    if number == 0:
        return bytes([_INT_ZERO])
    size = (abs(number).bit_length() + 7) // 8
    if size > _MAX_INT_BYTES:
        raise InvalidKeyError(f"integer key part is too large ({size} bytes; max 255)")
    magnitude = abs(number).to_bytes(size, "big")
    if number > 0:
        if size <= _MAX_SHORT_INT_BYTES:
            return bytes([_INT_ZERO + size]) + magnitude
        return bytes([_POS_INT_END, size]) + magnitude
    # Negative: the magnitude's ones' complement, so larger magnitudes sort first.
    inverted = bytes(0xFF - b for b in magnitude)
    if size <= _MAX_SHORT_INT_BYTES:
        return bytes([_INT_ZERO - size]) + inverted
    return bytes([_NEG_INT_START, size ^ 0xFF]) + inverted


def _encode_part(part: object) -> bytes:
    # bool before int: True is an int in Python but a boolean part in Deno.
    if isinstance(part, bool):
        return bytes([_TRUE if part else _FALSE])
    if isinstance(part, bytes):
        return bytes([_BYTES]) + _escape(part)
    if isinstance(part, str):
        return bytes([_STRING]) + _escape(part.encode("utf-8", "surrogatepass"))
    if isinstance(part, int):
        return _encode_int(part)
    if isinstance(part, float):
        return _encode_float(part)
    raise InvalidKeyError(
        f"key part {part!r} has type {type(part).__name__}; "
        "key parts must be str, int, float, bool or bytes"
    )


def encode_key(key: object, *, allow_empty: bool = False) -> bytes:
    """Encode a key tuple to Deno's order-preserving bytes, refusing what Deno KV would refuse."""
    if not isinstance(key, tuple):
        raise InvalidKeyError(
            f"keys are tuples of parts, e.g. ('readings', 'london'); got {type(key).__name__}"
        )
    if not key and not allow_empty:
        raise InvalidKeyError("a key needs at least one part, e.g. ('settings',)")
    encoded = b"".join(_encode_part(part) for part in key)
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidKeyError(
            f"key is {len(encoded)} bytes once encoded; the limit is {MAX_KEY_BYTES}"
        )
    return encoded


class _Reader:
    """Reads the parts of one encoded key, refusing truncated or unknown input."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.pos = 0

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self.raw):
            raise self.malformed("it ends in the middle of a part")
        chunk = self.raw[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def escaped(self) -> bytes:
        out = bytearray()
        raw = self.raw
        while self.pos < len(raw):
            byte = raw[self.pos]
            self.pos += 1
            if byte == 0x00:
                if self.pos < len(raw) and raw[self.pos] == 0xFF:
                    out.append(0x00)
                    self.pos += 1
                    continue
                return bytes(out)
            out.append(byte)
        raise self.malformed("a bytes or string part has no terminator")

    def malformed(self, why: str) -> InvalidKeyError:
        return InvalidKeyError(
            f"stored key {self.raw.hex()} is not a valid encoded key ({why}); "
            "it was written behind airq_nb's back"
        )


#: Part tags of the encoding before schema 6 (int 0x30, False 0x40, True 0x41).
_OLD_TAGS = frozenset({0x30, 0x40, 0x41})


def _decode_part(reader: _Reader) -> KeyPart:
    (tag,) = reader.take(1)
    if tag == _BYTES:
        return reader.escaped()
    if tag == _STRING:
        try:
            return reader.escaped().decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise reader.malformed(f"a string part is not UTF-8: {exc}") from None
    if _INT_ZERO <= tag <= _INT_ZERO + _MAX_SHORT_INT_BYTES:
        return int.from_bytes(reader.take(tag - _INT_ZERO), "big")
    if _INT_ZERO - _MAX_SHORT_INT_BYTES <= tag < _INT_ZERO:
        return -int.from_bytes(bytes(0xFF - b for b in reader.take(_INT_ZERO - tag)), "big")
    if tag == _POS_INT_END:
        return int.from_bytes(reader.take(reader.take(1)[0]), "big")
    if tag == _NEG_INT_START:
        size = reader.take(1)[0] ^ 0xFF
        return -int.from_bytes(bytes(0xFF - b for b in reader.take(size)), "big")
    if tag == _DOUBLE:
        return _decode_float(reader.take(8))
    if tag in (_FALSE, _TRUE):
        return tag == _TRUE
    if tag in _OLD_TAGS:
        # Schemas before 6 wrote ints as 0x30 and bools as 0x40/0x41; the upgrade re-encodes
        # them, so such a key now was written by an older airq_nb still open on the file.
        raise InvalidKeyError(
            f"stored key {reader.raw.hex()} is in the key encoding of an airq_nb from before "
            f"Deno's key order (its int/bool tag 0x{tag:02x}): an older airq_nb process is "
            "still writing this file. Stop it (restart its kernel with this airq_nb), then "
            "re-write or delete that key"
        )
    raise reader.malformed(f"unknown part tag 0x{tag:02x}")


def decode_key(raw: bytes) -> Key:
    """Turn bytes made by :func:`encode_key` back into the key tuple."""
    reader = _Reader(raw)
    parts: list[KeyPart] = []
    while reader.pos < len(raw):
        parts.append(_decode_part(reader))
    return tuple(parts)


def prefix_range(prefix: bytes) -> tuple[bytes, bytes]:
    """The half-open byte range holding every key that extends ``prefix`` (not the prefix itself).

    Every part starts with a tag byte below 0xFF, so ``prefix + b"\\xff"`` bounds the range.
    """
    return prefix + b"\x00", prefix + b"\xff"
