"""JSON encoding of KV values and queue payloads: the only serialisation airq_nb uses (never pickle)."""

from __future__ import annotations

import json
from typing import Any

from ._errors import InvalidValueError, PayloadTooLargeError

__all__ = ["MAX_VALUE_BYTES", "dump_value", "load_value"]

#: Largest KV value or queue payload, as UTF-8 JSON (Deno KV's limit too).
MAX_VALUE_BYTES = 64 * 1024

_encoder = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def dump_value(value: Any, *, what: str = "value") -> str:
    """Serialise ``value`` to compact JSON, refusing what JSON cannot hold or what is too large."""
    try:
        text = _encoder.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidValueError(
            f"{what} must be JSON (dict, list, str, int, float, bool or None): {exc}. "
            "Convert it first, e.g. bytes to base64 text or datetimes to ISO strings."
        ) from None
    # ensure_ascii makes the text pure ASCII, so its length is its size in bytes.
    if len(text) > MAX_VALUE_BYTES:
        raise PayloadTooLargeError(
            f"{what} is {len(text):,} bytes as JSON; the limit is {MAX_VALUE_BYTES:,}. "
            "Store the data under a KV key or in a table and enqueue its key instead."
        )
    return text


def load_value(text: str) -> Any:
    """Parse stored JSON; raises ``ValueError`` on text the store did not write."""
    return json.loads(text)
