"""JSON encoding of KV values and queue payloads: the only serialisation airq_nb uses (never pickle)."""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from .._errors import InvalidValueError, PayloadTooLargeError

__all__ = ["MAX_NESTING", "MAX_VALUE_BYTES", "dump_value", "load_value"]

#: Largest KV value or queue payload, as UTF-8 JSON (Deno KV's limit too).
MAX_VALUE_BYTES = 64 * 1024
#: Deepest nesting of lists and dicts. Python's JSON decoder recurses once per level, so a
#: value nested close to the interpreter's recursion limit could be written from a shallow
#: call stack yet fail to decode in a consumer that runs deeper (a scheduler thread).
MAX_NESTING = 128

_encoder = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The C encoder behind ``_encoder``, built once instead of on every call (enqueue's hot
# path). No ``markers`` dict: one left dirty by a failed call could refuse a later, valid
# value; a circular value still fails, as a RecursionError.
_c_encoder = (
    c_make_encoder(None, _refuse, encode_basestring_ascii, None, ":", ",", False, False, False)
    if c_make_encoder is not None
    else None
)


def _encode(value: Any) -> str:
    if _c_encoder is None:
        return _encoder.encode(value)
    return "".join(_c_encoder(value, 0))


def dump_value(value: Any, *, what: str = "value") -> str:
    """Serialise ``value`` to compact JSON, refusing what JSON cannot hold or what is too large."""
    try:
        text = _encode(value)
    except RecursionError:
        raise _too_deep(what) from None
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(
            f"{what} must be JSON (dict, list, str, int, float, bool or None): {exc}. "
            "Convert it first, e.g. bytes to base64 text or datetimes to ISO strings."
        ) from None
    # Too deep needs over MAX_NESTING opening and as many closing brackets, so short texts
    # skip the count; brackets inside strings are counted too, so the count only decides
    # whether to walk.
    if (
        len(text) > 2 * MAX_NESTING
        and text.count("[") + text.count("{") > MAX_NESTING
        and _nesting(value) > MAX_NESTING
    ):
        raise _too_deep(what)
    # ensure_ascii makes the text pure ASCII, so its length is its size in bytes.
    if len(text) > MAX_VALUE_BYTES:
        raise PayloadTooLargeError(
            f"{what} is {len(text):,} bytes as JSON; the limit is {MAX_VALUE_BYTES:,}. "
            "Store the data under a KV key or in a table and enqueue its key instead."
        )
    return text


def _too_deep(what: str) -> InvalidValueError:
    return InvalidValueError(
        f"{what} nests lists/dicts more than {MAX_NESTING} levels deep; flatten it first."
    )


def _nesting(value: Any) -> int:
    """How many lists/dicts deep ``value`` goes, without recursing (it may be very deep)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def load_value(text: str) -> Any:
    """Parse stored JSON; raises ``ValueError`` on text the store did not write."""
    return json.loads(text)
