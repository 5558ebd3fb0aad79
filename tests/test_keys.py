"""KV keys: Deno's order (by type, then value) as a property of real list() scans."""

from __future__ import annotations

import functools
import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import airq_nb
from airq_nb.store._keys import decode_key, encode_key

# Deno KV's runtime type order (denokv proto/interface.rs KeyPart::tag_ordering):
# Uint8Array < string < bigint < number < false < true.
_TYPE_RANK = {bytes: 0, str: 1, int: 2, float: 3, bool: 4}


def _float_rank(x: float) -> tuple[int, float]:
    # -NaN < -inf < ... < -0.0 < 0.0 < ... < inf < NaN (f64::total_cmp after canonicalizing
    # NaNs); -0.0 and 0.0, -NaN and NaN are distinct keys.
    if math.isnan(x):
        return (-1, 0.0) if math.copysign(1.0, x) < 0 else (3, 0.0)
    if x == 0:
        return (1, 0.0) if math.copysign(1.0, x) < 0 else (2, 0.0)
    return (0, x) if x < 0 else (2, x)


def _compare_parts(a: object, b: object) -> int:
    rank_a, rank_b = _TYPE_RANK[type(a)], _TYPE_RANK[type(b)]
    if rank_a != rank_b:
        return -1 if rank_a < rank_b else 1
    if isinstance(a, float):
        ka, kb = _float_rank(a), _float_rank(b)  # type: ignore[arg-type]
    elif isinstance(a, str):
        ka, kb = a.encode("utf-8"), b.encode("utf-8")  # type: ignore[union-attr]
    else:
        ka, kb = a, b
    return (ka > kb) - (ka < kb)  # type: ignore[operator]


def deno_compare(a: tuple, b: tuple) -> int:
    """Reference order of two keys, written independently of airq_nb's byte encoding."""
    for part_a, part_b in zip(a, b, strict=False):
        result = _compare_parts(part_a, part_b)
        if result:
            return result
    return (len(a) > len(b)) - (len(a) < len(b))


deno_key = functools.cmp_to_key(deno_compare)

key_parts = st.one_of(
    st.binary(max_size=6),
    st.text(max_size=6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, -math.nan]),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.booleans(),
    st.sampled_from([0.0, -0.0, 0, -1, 1, "", b"", "\x00", b"\x00", b"\x00\xff", "é", "z"]),
)
keys = st.lists(key_parts, min_size=1, max_size=4).map(tuple)


def _canonical(key: tuple) -> tuple:
    # The store keeps two NaNs (by sign); make equal-looking keys comparable for dict/set use.
    return tuple(
        ("nan", math.copysign(1.0, p))
        if isinstance(p, float) and math.isnan(p)
        else (type(p).__name__, repr(p))
        for p in key
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(keys, min_size=1, max_size=25))
def test_list_order_is_denos_order(store: airq_nb.Store, generated: list[tuple]) -> None:
    clear = store.atomic()
    for entry in store.list(prefix=()):
        clear.delete(entry.key)
    clear.commit()
    unique = {_canonical(key): key for key in generated}
    atomic = store.atomic()
    for key in unique.values():
        atomic.set(key, _canonical(key))
    atomic.commit()

    listed = [entry.key for entry in store.list(prefix=())]
    expected = sorted(unique.values(), key=deno_key)
    assert [_canonical(k) for k in listed] == [_canonical(k) for k in expected]
    reversed_listed = [entry.key for entry in store.list(prefix=(), reverse=True)]
    assert [_canonical(k) for k in reversed_listed] == [_canonical(k) for k in reversed(expected)]


@settings(max_examples=300, deadline=None)
@given(keys, keys)
def test_encoding_order_matches_reference(a: tuple, b: tuple) -> None:
    expected = deno_compare(a, b)
    ea, eb = encode_key(a), encode_key(b)
    assert ((ea > eb) - (ea < eb)) == expected


@settings(max_examples=300, deadline=None)
@given(keys)
def test_decode_round_trips(key: tuple) -> None:
    assert _canonical(decode_key(encode_key(key))) == _canonical(key)


def test_type_order_and_float_edges(store: airq_nb.Store) -> None:
    parts = [
        True,
        False,
        2**70,
        -(2**70),
        0,
        -1,
        math.nan,
        math.inf,
        1.5,
        0.0,
        -0.0,
        -math.inf,
        -math.nan,
        "é",
        "z",
        "",
        b"\xff",
        b"",
    ]
    for part in parts:
        store.set(("k", part), repr(part))
    listed = [entry.key[1] for entry in store.list(prefix=("k",))]
    assert [repr(p) for p in listed] == [
        "b''",
        "b'\\xff'",
        "''",
        "'z'",
        "'é'",
        str(-(2**70)),
        "-1",
        "0",
        str(2**70),
        "nan",
        "-inf",
        "-0.0",
        "0.0",
        "1.5",
        "inf",
        "nan",
        "False",
        "True",
    ]
    # -0.0 and 0.0 are two keys, and so are -NaN (first of the floats) and NaN, as in Deno.
    floats = [entry.key[1] for entry in store.list(prefix=("k",))[9:16]]
    assert struct.pack(">d", floats[2]) == struct.pack(">d", -0.0)
    assert math.copysign(1.0, floats[0]) == -1.0
    assert math.copysign(1.0, floats[-1]) == 1.0


@pytest.fixture
def numbered(store: airq_nb.Store) -> airq_nb.Store:
    atomic = store.atomic()
    for i in range(10):
        atomic.set(("n", i), i)
    atomic.set(("n",), "the prefix itself")
    atomic.set(("m", 0), "other prefix")
    atomic.commit()
    return store


def _values(entries: list[airq_nb.Entry]) -> list[object]:
    return [entry.value for entry in entries]


def test_prefix_excludes_the_prefix_key_itself(numbered: airq_nb.Store) -> None:
    assert _values(numbered.list(prefix=("n",))) == list(range(10))
    assert _values(numbered.list(prefix=("m",))) == ["other prefix"]


def test_start_is_inclusive_end_is_exclusive(numbered: airq_nb.Store) -> None:
    assert _values(numbered.list(prefix=("n",), start=("n", 3), end=("n", 6))) == [3, 4, 5]
    assert _values(numbered.list(start=("n", 8))) == [8, 9]
    assert _values(numbered.list(end=("n", 1))) == ["other prefix", "the prefix itself", 0]


def test_limit_and_reverse(numbered: airq_nb.Store) -> None:
    assert _values(numbered.list(prefix=("n",), limit=3)) == [0, 1, 2]
    assert _values(numbered.list(prefix=("n",), limit=3, reverse=True)) == [9, 8, 7]
    assert _values(numbered.list(prefix=("n",), start=("n", 2), end=("n", 5), reverse=True)) == [
        4,
        3,
        2,
    ]
    assert numbered.list(prefix=("n",), limit=0) == []


@pytest.mark.parametrize(
    "bad",
    [["a", 1], None, ("a", ("nested",)), (), "a", ("a", None), ("a", [1]), ("a", 2**2100)],
    ids=["list", "None", "nested", "empty", "str", "None-part", "list-part", "huge-int"],
)
def test_bad_keys_are_refused_and_write_nothing(store: airq_nb.Store, bad: object) -> None:
    with pytest.raises(airq_nb.InvalidKeyError) as raised:
        store.set(bad, 1)  # type: ignore[arg-type]
    assert "key" in str(raised.value)
    with pytest.raises(airq_nb.InvalidKeyError):
        store.get(bad)  # type: ignore[arg-type]
    assert store.list(prefix=()) == []


def test_oversize_key_is_refused(store: airq_nb.Store) -> None:
    with pytest.raises(airq_nb.InvalidKeyError, match="limit is 2048"):
        store.set(("x" * 3000,), 1)


def test_bad_list_arguments(store: airq_nb.Store) -> None:
    with pytest.raises(airq_nb.InvalidKeyError, match=r"prefix=\(\)"):
        store.list()
    for limit in (-1, 1.5, True, "3"):
        with pytest.raises(airq_nb.InvalidValueError, match="limit"):
            store.list(prefix=(), limit=limit)  # type: ignore[arg-type]
