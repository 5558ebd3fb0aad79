"""Time for the store and the scheduler: the real clock, and a fake one tests can move by hand."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    """What the store and scheduler need from time: now in Unix seconds, and a way to wait."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time (UTC Unix seconds) and real asyncio sleeps."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


class FakeClock:
    """A clock that only moves when told to; ``sleep`` jumps forward instead of waiting.

    Lets tests of hourly schedules, retries and back-off run in milliseconds.
    """

    def __init__(self, start: float | datetime = 1_700_000_000.0) -> None:
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` and return the new now."""
        if seconds < 0:
            raise ValueError("a FakeClock cannot go backwards")
        self._now += seconds
        return self._now

    def set(self, when: float | datetime) -> None:
        """Jump to ``when`` (a Unix time or an aware datetime), forwards only."""
        target = when.timestamp() if isinstance(when, datetime) else float(when)
        self.advance(target - self._now)

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
