"""``StoreCore``: what both backends' store classes are made of besides their plumbing.

The KV and queue verbs (``kv.py``, ``queue.py``), the store's clock, the ``with`` form,
and the count of consumers waiting on changes. ``SqliteStore`` and ``PostgresStore``
inherit it and add only connections, transactions, errors, migrations and waking.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Self

from .._clock import SystemClock
from .kv import KvVerbs
from .queue import QueueVerbs

if TYPE_CHECKING:
    from .._clock import Clock
    from ._batch import Settlement, Work

__all__ = ["StoreCore"]


class StoreCore(KvVerbs, QueueVerbs):
    """The shared part of a store; a backend supplies the plumbing the verbs name."""

    def __init__(self, clock: Clock | None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._waiting_consumers = 0
        self._waiting_lock = threading.Lock()

    def now(self) -> float:
        """The store clock's time, Unix seconds: what expiry and due times are measured in."""
        return self.clock.now()

    def open_change_wait(self) -> None:
        """A consumer (a scheduler) starts waiting on this store; pair with :meth:`close_change_wait`."""
        with self._waiting_lock:
            self._waiting_consumers += 1

    def close_change_wait(self) -> None:
        """A consumer is done: when it was the last, a wait under way ends now and the
        connection it waits on is let go (it holds the store open)."""
        with self._waiting_lock:
            self._waiting_consumers = max(self._waiting_consumers - 1, 0)
            last = self._waiting_consumers == 0
        if last:
            self._no_one_waits()

    def _tracked(
        self, settlements: Sequence[Settlement], body: Callable[[list[Settlement]], Work]
    ) -> tuple[list[str], Work]:
        """Run a batched verb's transaction (``store/_batch.py``); the body opens it. A
        backend whose COMMIT can be cut with an unknown result tracks it instead."""
        work = body(list(settlements))
        return work.outcomes, work

    def _no_one_waits(self) -> None:
        """The backend's part of :meth:`close_change_wait` when the last consumer is done."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
