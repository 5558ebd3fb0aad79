"""KV keys: validation and an order-preserving byte encoding, so SQLite sorts keys as Deno KV does.

Deno orders key parts by type first — bytes < str < number (float) < bigint (int) < bool —
then by value. Each part is encoded to bytes whose ``memcmp`` order is that order, so a
``list(prefix=..., start=..., end=...)`` is a plain range scan over a BLOB primary key.
"""

from __future__ import annotations

import math
import struct
from typing import TypeAlias

from .._errors import InvalidKeyError

__all__ = ["MAX_KEY_BYTES", "Key", "KeyPart", "decode_key", "encode_key", "prefix_range"]

KeyPart: TypeAlias = bytes | str | float | int | bool
Key: TypeAlias = tuple[KeyPart, ...]

#: Deno KV's limit on an encoded key.
MAX_KEY_BYTES = 2048

_BYTES, _STR, _FLOAT, _INT, _FALSE, _TRUE = 0x01, 0x02, 0x21, 0x30, 0x40, 0x41
_INT_NEG, _INT_POS = 0x00, 0x01
_MAX_INT_BYTES = 255
_CANONICAL_NAN = struct.pack(">d", math.nan)


def _escape(raw: bytes) -> bytes:
    # 0x00 ends a part, so a literal 0x00 becomes 0x00 0xFF (FoundationDB's tuple layer trick).
    return raw.replace(b"\x00", b"\x00\xff") + b"\x00"


def _encode_float(number: float) -> bytes:
    raw = _CANONICAL_NAN if math.isnan(number) else struct.pack(">d", number)
    bits = int.from_bytes(raw, "big")
    # Positive numbers: set the sign bit; negative: flip every bit. Bytes then sort numerically.
    bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | (1 << 63)
    return bits.to_bytes(8, "big")


def _decode_float(raw: bytes) -> float:
    bits = int.from_bytes(raw, "big")
    bits = bits & ~(1 << 63) if bits >> 63 else bits ^ 0xFFFFFFFFFFFFFFFF
    return struct.unpack(">d", bits.to_bytes(8, "big"))[0]


def _encode_int(number: int) -> bytes:
    magnitude = abs(number).to_bytes((abs(number).bit_length() + 7) // 8, "big")
    if len(magnitude) > _MAX_INT_BYTES:
        raise InvalidKeyError(f"integer key part is too large ({len(magnitude)} bytes; max 255)")
    if number >= 0:
        return bytes([_INT_POS, len(magnitude)]) + magnitude
    # Longer negative magnitudes are smaller numbers, so invert both length and digits.
    inverted = bytes(0xFF - b for b in magnitude)
    return bytes([_INT_NEG, _MAX_INT_BYTES - len(magnitude)]) + inverted


def _encode_part(part: object) -> bytes:
    # bool before int: True is an int in Python but a boolean part in Deno.
    if isinstance(part, bool):
        return bytes([_TRUE if part else _FALSE])
    if isinstance(part, bytes):
        return bytes([_BYTES]) + _escape(part)
    if isinstance(part, str):
        return bytes([_STR]) + _escape(part.encode("utf-8", "surrogatepass"))
    if isinstance(part, float):
        return bytes([_FLOAT]) + _encode_float(part)
    if isinstance(part, int):
        return bytes([_INT]) + _encode_int(part)
    raise InvalidKeyError(
        f"key part {part!r} has type {type(part).__name__}; "
        "key parts must be str, int, float, bool or bytes"
    )


def encode_key(key: object, *, allow_empty: bool = False) -> bytes:
    """Encode a key tuple to order-preserving bytes, refusing anything Deno KV would refuse."""
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


def _read_escaped(raw: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    while True:
        byte = raw[pos]
        if byte == 0x00:
            if pos + 1 < len(raw) and raw[pos + 1] == 0xFF:
                out.append(0x00)
                pos += 2
                continue
            return bytes(out), pos + 1
        out.append(byte)
        pos += 1


def decode_key(raw: bytes) -> Key:
    """Turn bytes made by :func:`encode_key` back into the key tuple."""
    parts: list[KeyPart] = []
    pos = 0
    while pos < len(raw):
        tag = raw[pos]
        pos += 1
        if tag == _BYTES:
            value, pos = _read_escaped(raw, pos)
            parts.append(value)
        elif tag == _STR:
            value, pos = _read_escaped(raw, pos)
            parts.append(value.decode("utf-8", "surrogatepass"))
        elif tag == _FLOAT:
            parts.append(_decode_float(raw[pos : pos + 8]))
            pos += 8
        elif tag == _INT:
            sign, length = raw[pos], raw[pos + 1]
            pos += 2
            if sign == _INT_POS:
                parts.append(int.from_bytes(raw[pos : pos + length], "big"))
            else:
                length = _MAX_INT_BYTES - length
                digits = bytes(0xFF - b for b in raw[pos : pos + length])
                parts.append(-int.from_bytes(digits, "big"))
            pos += length
        elif tag in (_FALSE, _TRUE):
            parts.append(tag == _TRUE)
        else:
            raise InvalidKeyError(f"stored key has an unknown part tag 0x{tag:02x}")
    return tuple(parts)


def prefix_range(prefix: bytes) -> tuple[bytes, bytes]:
    """The half-open byte range holding every key that extends ``prefix`` (not the prefix itself).

    Every part starts with a tag byte below 0xFF, so ``prefix + b"\\xff"`` bounds the range.
    """
    return prefix + b"\x00", prefix + b"\xff"
