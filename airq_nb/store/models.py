"""The store's value types and limits: KV entries and commit results; the durable queue's
deliveries, messages, counts, and input checks.

What a message may be is decided here, before any transaction opens; the SQL lives in
``_queue.py`` (statements and row handling, which re-exports these names) and ``queue.py``
(the store's verbs).
Times are Unix seconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from .._errors import InvalidDelayError, InvalidValueError
from ._json import dump_value
from ._keys import Key

__all__ = [
    "DEFAULT_BACKOFF_SCHEDULE",
    "MAX_BACKOFF_ENTRIES",
    "MAX_BACKOFF_SECONDS",
    "MAX_DELAY_SECONDS",
    "CommitResult",
    "DeadLettered",
    "Delivery",
    "Entry",
    "FailOutcome",
    "Message",
    "PreparedMessage",
    "QueueCounts",
    "backoff_of",
    "check_backoff",
    "check_claim_limit",
    "check_delay",
    "check_time",
    "check_topic",
    "check_topics",
    "dump_value",
    "prepare_like",
    "prepare_message",
]


@dataclass(frozen=True, slots=True)
class Entry:
    """A KV entry; ``value`` and ``versionstamp`` are ``None`` when the key is absent."""

    key: Key
    value: Any
    versionstamp: str | None


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What an atomic commit did: ``ok`` is False when a check failed and nothing was written."""

    ok: bool
    versionstamp: str | None = None
    message_ids: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return self.ok


#: Seconds to wait before each retry, Deno KV's default: 6 attempts in all.
DEFAULT_BACKOFF_SCHEDULE: tuple[float, ...] = (0.1, 1.0, 5.0, 30.0, 60.0)
#: Longest ``delay`` accepted at enqueue (Deno KV's limit: 30 days).
MAX_DELAY_SECONDS = 30 * 24 * 3600.0
#: Most retries one message may have.
MAX_BACKOFF_ENTRIES = 20
#: Longest single back-off step (one day).
MAX_BACKOFF_SECONDS = 24 * 3600.0

FailOutcome = Literal["retry", "dead", "lost"]
MessageState = Literal["queued", "leased", "dead"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message leased to one consumer: ack it, fail it, extend or release the lease."""

    id: int
    topic: str
    value: Any
    attempt: int
    max_attempts: int
    deliver_at: float
    enqueued_at: float
    lease_token: str
    lease_expires_at: float
    schedule: str | None = None
    backoff_schedule: tuple[float, ...] = DEFAULT_BACKOFF_SCHEDULE


@dataclass(frozen=True, slots=True)
class Message:
    """A row of the queue as management sees it. ``corrupt`` names the damage of a bad row."""

    id: int
    topic: str
    value: Any
    state: str
    deliver_at: float
    attempts: int
    last_error: str | None
    enqueued_at: float
    paused: bool = False
    lease_expires_at: float | None = None
    dedup_key: str | None = None
    schedule: str | None = None
    dead_at: float | None = None
    max_attempts: int = len(DEFAULT_BACKOFF_SCHEDULE) + 1
    corrupt: str | None = None


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """How many messages are in each state, overall and per topic."""

    by_state: dict[str, int] = field(default_factory=dict)
    by_topic: dict[str, dict[str, int]] = field(default_factory=dict)
    paused_topics: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


def check_claim_limit(limit: object) -> int:
    """``claim_many``'s ``limit``: a positive int, else ``InvalidValueError``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidValueError(f"limit must be a positive integer, got {limit!r}")
    return limit


def check_delay(delay: float, *, what: str = "delay", limit: float = MAX_DELAY_SECONDS) -> float:
    """Return ``delay`` as float seconds, refusing negative, NaN, infinite or too-long values."""
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise InvalidDelayError(f"{what} must be a number of seconds, got {type(delay).__name__}")
    delay = float(delay)
    if not math.isfinite(delay) or delay < 0:
        raise InvalidDelayError(f"{what} must be a finite number of seconds >= 0, got {delay!r}")
    if delay > limit:
        raise InvalidDelayError(f"{what} of {delay:,.0f} s is over the limit of {limit:,.0f} s")
    return delay


def check_backoff(schedule: Iterable[float] | None) -> tuple[float, ...]:
    """Validate a back-off schedule (seconds before each retry); ``None`` means the default."""
    if schedule is None:
        return DEFAULT_BACKOFF_SCHEDULE
    if isinstance(schedule, str | bytes | dict) or not isinstance(schedule, Iterable):
        raise InvalidDelayError(
            f"backoff_schedule must be a list of seconds, e.g. [1, 5, 30]; got {schedule!r}"
        )
    steps = tuple(
        check_delay(step, what="backoff_schedule entry", limit=MAX_BACKOFF_SECONDS)
        for step in schedule
    )
    if len(steps) > MAX_BACKOFF_ENTRIES:
        raise InvalidDelayError(
            f"backoff_schedule has {len(steps)} entries; at most {MAX_BACKOFF_ENTRIES} retries"
        )
    return steps


def check_topic(topic: object) -> str:
    """Return ``topic`` if it can name a topic ("*" is reserved for "every topic")."""
    if not isinstance(topic, str) or not topic or topic == "*":
        raise InvalidValueError(f"topic must be a non-empty string other than '*', got {topic!r}")
    return topic


def check_topics(topics: Collection[str] | None) -> list[str] | None:
    """A consumer's topic filter as a list (``None``: every topic); one bare string is refused."""
    if topics is None:
        return None
    if isinstance(topics, str | bytes) or not isinstance(topics, Iterable):
        raise InvalidValueError(
            f"topics is a list of topic names, e.g. ['collect']; got {topics!r}"
        )
    return [check_topic(topic) for topic in topics]


class PreparedMessage(NamedTuple):
    """A validated message ready to insert; validation happens before any transaction opens."""

    topic: str
    value_json: str
    delay: float
    backoff_json: str | None
    keys_json: str | None
    dedup_key: str | None
    schedule: str | None


def prepare_message(
    value: Any,
    *,
    delay: float,
    topic: str,
    keys_if_undelivered: Sequence[bytes],
    backoff_schedule: Iterable[float] | None,
    dedup_key: str | None,
    schedule: str | None,
) -> PreparedMessage:
    """Validate everything about a message that does not need the database."""
    delay = check_delay(delay)
    backoff_json = None
    if backoff_schedule is not None:
        backoff_json = json.dumps(list(check_backoff(backoff_schedule)))
    keys_json = (
        json.dumps([key.hex() for key in keys_if_undelivered]) if keys_if_undelivered else None
    )
    if dedup_key is not None and not isinstance(dedup_key, str):
        raise InvalidValueError(f"dedup_key must be a string, got {type(dedup_key).__name__}")
    if schedule is not None and not isinstance(schedule, str):
        raise InvalidValueError(f"schedule must be a schedule name, got {type(schedule).__name__}")
    return PreparedMessage(
        topic=check_topic(topic),
        value_json=dump_value(value, what="queue payload"),
        delay=delay,
        backoff_json=backoff_json,
        keys_json=keys_json,
        dedup_key=dedup_key,
        schedule=schedule,
    )


def prepare_like(template: PreparedMessage, value: Any, *, dedup_key: str) -> PreparedMessage:
    """A message with ``template``'s checked options (topic, delay, back-off) and its own
    value and dedup key: a batch of alike messages is checked once, each value still on its
    own (JSON, size)."""
    if not isinstance(dedup_key, str):
        raise InvalidValueError(f"dedup_key must be a string, got {type(dedup_key).__name__}")
    return template._replace(
        value_json=dump_value(value, what="queue payload"), dedup_key=dedup_key
    )


def backoff_of(raw: str | None) -> tuple[float, ...]:
    """A stored ``backoff_schedule`` column (JSON, or NULL for the default), checked."""
    if raw is None:
        return DEFAULT_BACKOFF_SCHEDULE
    return check_backoff(json.loads(raw))


def check_time(when: object, *, what: str) -> float:
    """``when`` as float Unix seconds, refusing what is not a number."""
    if isinstance(when, bool) or not isinstance(when, int | float) or math.isnan(when):
        raise InvalidValueError(f"{what} is a Unix time in seconds (a number), got {when!r}")
    return float(when)


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """A message the store dead-lettered while claiming (a corrupt row, or a lease that
    expired on its last attempt), so a consumer can log it; fields are best-effort."""

    id: int
    topic: str | None
    schedule: str | None
    attempt: int | None
    deliver_at: float | None
    error: str
