"""The package's exception types: every error says what went wrong and what to do next."""

from __future__ import annotations

import math

__all__ = [
    "AirqError",
    "CollectionFailedError",
    "ConfigurationError",
    "InvalidApiKeyError",
    "InvalidDelayError",
    "InvalidKeyError",
    "InvalidScheduleError",
    "InvalidValueError",
    "MalformedReplyError",
    "MessageNotFoundError",
    "PayloadTooLargeError",
    "Permanent",
    "RateLimitedError",
    "RequestRejectedError",
    "Retry",
    "ScheduleNotFoundError",
    "SchedulerError",
    "SourceConfigurationError",
    "SourceError",
    "SourceUnavailableError",
    "StoreClosedError",
    "StoreError",
]


class AirqError(Exception):
    """Base class of every error airq_nb raises on purpose."""


class CollectionFailedError(AirqError):
    """A headless collection run failed; the run stays queued for its retry, nothing is lost."""

    def __init__(self, message: str, *, summary: object = None) -> None:
        super().__init__(message)
        self.summary = summary


class StoreError(AirqError):
    """The SQLite file cannot be used as an airq_nb store (corrupt, newer schema, unreadable)."""


class StoreClosedError(StoreError):
    """The store was closed (``store.close()``); open it again with ``open_store()``."""


class ConfigurationError(AirqError, ValueError):
    """A setting (argument or environment variable) has a value airq_nb cannot use."""


class InvalidKeyError(AirqError, TypeError):
    """A KV key is not a non-empty tuple of str, int, float, bool or bytes parts."""


class InvalidValueError(AirqError, ValueError):
    """A KV value or queue payload cannot be stored as JSON."""


class PayloadTooLargeError(InvalidValueError):
    """A KV value or queue payload is larger than the store accepts."""


class InvalidDelayError(AirqError, ValueError):
    """A delay, expiry or back-off is negative, not finite or too long."""


class MessageNotFoundError(AirqError, LookupError):
    """No queue message has the given id (it was delivered, deleted or never existed)."""


class InvalidScheduleError(AirqError, ValueError):
    """A recurring schedule's definition (interval, cron, time zone, misfire policy) is invalid."""


class ScheduleNotFoundError(AirqError, LookupError):
    """No schedule has the given name."""


class SchedulerError(AirqError, RuntimeError):
    """The scheduler cannot do what was asked in its current state or with these options."""


class SourceError(AirqError):
    """An air-quality source failed; ``retryable`` says whether trying again can help."""

    retryable: bool = True
    retry_after: float | None = None

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidApiKeyError(SourceError):
    """The source rejected the API key (HTTP 401/403); retrying cannot help."""

    retryable = False


class RateLimitedError(SourceError):
    """The source answered HTTP 429; ``retry_after`` holds the wait it asked for, if any."""


class RequestRejectedError(SourceError):
    """The source refused the request itself (HTTP 400/404, Open-Meteo ``"error": true``)."""

    retryable = False


class SourceConfigurationError(ConfigurationError, SourceError):
    """A collection run cannot pick its source here (unknown name, no API key); not retried."""

    retryable = False


class SourceUnavailableError(SourceError):
    """The source is down or unreachable (5xx, connection error, time-out)."""


class MalformedReplyError(SourceError):
    """The source answered, but the reply is not what its API documents; nothing was written."""

    retryable = True


class Retry(AirqError):
    """Raised by a queue handler: this attempt failed, try the message again.

    ``after`` (seconds, at most 30 days) replaces the next step of the message's back-off
    (e.g. an HTTP 429's ``Retry-After``); ``None`` keeps the back-off. The attempt counts:
    when the message has no attempts left it is dead-lettered as for any other failure.
    ``reason`` is what the delivery log and the dead letter record.
    """

    def __init__(self, after: float | None = None, reason: str = "") -> None:
        if after is not None and (
            isinstance(after, bool)
            or not isinstance(after, int | float)
            or not 0 <= after < math.inf
        ):
            raise ValueError(
                f"Retry(after=...) must be None or a finite number of seconds >= 0, got {after!r}"
            )
        super().__init__(reason or "the handler asked for a retry")
        self.after = None if after is None else float(after)
        self.reason = reason


class Permanent(AirqError):
    """Raised by a queue handler: this message can never succeed, dead-letter it now.

    No further attempt is made (an invalid API key, a malformed message); the message's
    value is written under its ``keys_if_undelivered`` and ``reason`` is its last error.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
