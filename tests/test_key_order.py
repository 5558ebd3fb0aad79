"""Deno KV's own key-order tests, translated: exact encoded bytes and pairwise order.

Sources (read, not copied): denokv ``proto/codec.rs`` tests (``explicit_bijection``,
``order_bytes``, ``order_tags``, ``order_floats``, ``order_ints``, ``simple_roundtrip``,
``float_canonicalization``) and Deno's ``tests/unit/kv_test.ts`` ("key ordering", the
list cursors "AmIA"/"AmQA", "key size limit"). Python maps Uint8Array to bytes, string to
str, bigint to int, number to float and boolean to bool.
"""

from __future__ import annotations

import base64
import math
import struct

import pytest

import airq_nb
from airq_nb.store._keys import decode_key, encode_key


def _f(bits: int) -> float:
    return struct.unpack(">d", bits.to_bytes(8, "big"))[0]


NEG_NAN = -math.nan
# codec.rs explicit_bijection: key -> exact bytes, both ways.
BIJECTION = [
    (("hello",), "02 68 65 6c 6c 6f 00"),
    ((b"\x01\x02\x00\x07\x08",), "01 01 02 00 ff 07 08 00"),
    (("hello", b"\x01\x02\x00\x07\x08"), "02 68 65 6c 6c 6f 00 01 01 02 00 ff 07 08 00"),
]
# Derived from codec.rs bigint::encode_into / double::encode_into (tags INTZERO 0x14,
# NEGINTSTART 0x0b, POSINTEND 0x1d, DOUBLE 0x21, FALSE 0x26, TRUE 0x27).
DERIVED = [
    ((0,), "14"),
    ((1,), "15 01"),
    ((-1,), "13 fe"),
    ((10000,), "16 27 10"),
    ((-10000,), "12 d8 ef"),
    ((2**64 - 1,), "1c ff ff ff ff ff ff ff ff"),
    ((2**64,), "1d 09 01 00 00 00 00 00 00 00 00"),
    ((-(2**64),), "0b f6 fe ff ff ff ff ff ff ff ff"),
    ((0.0,), "21 80 00 00 00 00 00 00 00"),
    ((-0.0,), "21 7f ff ff ff ff ff ff ff"),
    ((1.0,), "21 bf f0 00 00 00 00 00 00"),
    ((math.inf,), "21 ff f0 00 00 00 00 00 00"),
    ((-math.inf,), "21 00 0f ff ff ff ff ff ff"),
    ((math.nan,), "21 ff f8 00 00 00 00 00 00"),
    ((NEG_NAN,), "21 00 07 ff ff ff ff ff ff"),
    ((False,), "26"),
    ((True,), "27"),
]


@pytest.mark.parametrize(("key", "hex_bytes"), BIJECTION + DERIVED, ids=repr)
def test_exact_bytes_both_ways(key: tuple, hex_bytes: str) -> None:
    expected = bytes.fromhex(hex_bytes)
    assert encode_key(key) == expected
    decoded = decode_key(expected)
    assert [struct.pack(">d", p) if isinstance(p, float) else p for p in decoded] == [
        struct.pack(">d", p) if isinstance(p, float) else p for p in key
    ]


# Each list is strictly increasing: codec.rs order_bytes, order_tags, order_floats, order_ints.
ASCENDING = {
    "bytes": [
        (b"\x00\x01\x02\x03\xff\x00\xff\x00",),
        (b"\x00\x01\x02\x03\xff\x00\xff\x00\x00",),
        (b"\x00\x01\x02\x03\xff\x00\xff\x01",),
    ],
    "tags": [(b"",), ("",), (0,), (0.0,), (False,), (True,)],
    "floats": [
        (NEG_NAN,),
        (-math.inf,),
        (-10.0,),
        (-0.0,),
        (0.0,),
        (10.0,),
        (math.inf,),
        (math.nan,),
    ],
    "ints": [(-10000,), (-100,), (-1,), (0,), (1,), (100,), (10000,)],
    # kv_test.ts "key ordering": Uint8Array, "a", 1n, 3.14, false, true.
    "kv_test": [(b"\x01",), ("a",), (1,), (3.14,), (False,), (True,)],
    # Beyond the upstream tests: an int of any size sorts before every float.
    "int_vs_float": [(-(2**1000),), (2**1000,), (-math.inf,), (-1e308,), (0.0,)],
    "long_ints": [(-(2**64),), (-(2**64) + 1,), (-(2**63),), (2**63,), (2**64 - 1,), (2**64,)],
}


@pytest.mark.parametrize("name", sorted(ASCENDING))
def test_encoded_order(name: str) -> None:
    keys = ASCENDING[name]
    encoded = [encode_key(key) for key in keys]
    assert encoded == sorted(encoded)
    assert len(set(encoded)) == len(encoded)


def test_simple_roundtrip() -> None:
    # codec.rs simple_roundtrip: one key with every kind of part.
    key = (
        b"\x00\x01\x02\x03\xff\x00\xff\x00",
        "foo",
        NEG_NAN,
        -math.inf,
        -42.1,
        -0.0,
        0.0,
        42.1,
        math.inf,
        math.nan,
        -10000,
        -1,
        0,
        1,
        10000,
        False,
        True,
    )
    decoded = decode_key(encode_key(key))
    assert encode_key(decoded) == encode_key(key)
    assert math.copysign(1.0, decoded[2]) == -1.0 and math.isnan(decoded[2])
    assert math.copysign(1.0, decoded[9]) == 1.0 and math.isnan(decoded[9])
    assert math.copysign(1.0, decoded[5]) == -1.0


def test_nan_payloads_collapse_but_signs_do_not() -> None:
    # codec.rs float_canonicalization: NaNs differing only in payload are one key.
    assert encode_key((_f(0x7FF8000000000001),)) == encode_key((_f(0x7FF8000000000002),))
    assert encode_key((_f(0xFFF8000000000001),)) == encode_key((NEG_NAN,))
    assert encode_key((NEG_NAN,)) != encode_key((math.nan,))


def test_list_cursor_bytes_from_kv_test() -> None:
    # kv_test.ts "list prefix with manual cursor": after ["a","a"], ["a","b"] the cursor is
    # "AmIA", the base64 of the key's bytes after the prefix ["a"]; in reverse, "AmQA".
    prefix = encode_key(("a",))
    for last, cursor in ((("a", "b")), "AmIA"), ((("a", "d")), "AmQA"):
        assert encode_key(last)[len(prefix) :] == base64.b64decode(cursor)


def test_key_size_limit_from_kv_test(store: airq_nb.Store) -> None:
    # kv_test.ts "key size limit": 1 tag byte + 2046 bytes + 1 terminator is the largest key.
    store.set((b"\x01" * 2046,), 1)
    assert store.get((b"\x01" * 2046,)).value == 1
    with pytest.raises(airq_nb.InvalidKeyError, match="limit is 2048"):
        store.set((b"\x01" * 2047,), 1)


def test_store_lists_in_runtime_order(store: airq_nb.Store) -> None:
    keys = [
        (True,),
        (False,),
        (3.14,),
        (0.0,),
        (math.nan,),
        (NEG_NAN,),
        (1,),
        (0,),
        ("a",),
        (b"\x01",),
    ]
    for i, key in enumerate(keys):
        store.set(key, i)
    listed = [entry.value for entry in store.list(prefix=())]
    assert listed == [9, 8, 7, 6, 5, 3, 2, 4, 1, 0]
    assert store.get((NEG_NAN,)).value == 5
    assert store.get((math.nan,)).value == 4


@pytest.mark.parametrize(
    "raw",
    ["02 61", "15", "1d 05 01", "21 00 00", "7f", "02 ff fe 00"],
    ids=["unterminated", "short-int", "short-long-int", "short-float", "unknown-tag", "bad-utf8"],
)
def test_malformed_bytes_are_our_error(raw: str) -> None:
    with pytest.raises(airq_nb.InvalidKeyError, match="not a valid encoded key"):
        decode_key(bytes.fromhex(raw))
