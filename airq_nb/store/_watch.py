"""``store.watch(keys)``: Deno KV's ``kv.watch``, the entries of up to 10 keys as they change.

A watch yields the keys' entries at once, then again whenever a commit has changed the
versionstamp of any of them (Deno's ``watch`` without ``raw``). It never yields a state
older than the one before, and it keeps up with the latest state rather than with every
intermediate one: each yield is one fresh :meth:`get_many` made when the consumer asks, so
a burst of commits while the consumer is busy is one yield.

What makes a watch look again is only a hint — the store's change signal — and every look
re-reads the keys, so a hint lost (a PostgreSQL reconnect, a NOTIFY that never came) costs
time, never a change. One :class:`_ChangeHub` thread per store object turns the signal into
wake-ups for every watch of that store in the process:

- SQLite: a change waiter of its own from ``store._change_signal()`` (``PRAGMA
  data_version`` + inotify, as ``store.wait_for_change``), since the store's shared waiter
  serves one consumer (the scheduler) and a second one would take its wake-ups.
- PostgreSQL: a LISTEN of its own on the store's channel (``store._change_signal()``),
  which KV writes, new work and settlements NOTIFY, waited on for :data:`LOOK_EVERY` at a
  time; after each wait ``store.data_version()`` (one tiny query, moving with every commit
  on the server) catches a notification lost to a reconnect. Not
  ``store.wait_for_change``: a change its LISTEN connection reads for one waiting thread is
  not reported to a thread that calls it later, so the watch would take a scheduler's
  wake-ups (``tests/test_watch.py``).

Every watch also re-reads at least every :data:`RESYNC_INTERVAL` seconds (an entry's expiry
is no commit, and shows then). A closed store ends the watch (as Deno's stream ends when
the database closes); a lost PostgreSQL connection does not: it re-reads once the server is
back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import InvalidKeyError, StoreClosedError, StoreError
from . import _dialect
from ._keys import Key, encode_key

if TYPE_CHECKING:
    from .kv import Entry

__all__ = ["LOOK_EVERY", "MAX_WATCHED_KEYS", "RESYNC_INTERVAL", "KeyWatch"]

log = logging.getLogger("airq_nb.watch")

#: Deno KV's limit on the keys of one watch (ext/kv ``MAX_WATCHED_KEYS``).
MAX_WATCHED_KEYS = 10
#: A watch re-reads its keys at least this often, whatever the change signal says (seconds).
RESYNC_INTERVAL = 2.0
#: How long one wait on the backend's change signal lasts before the hub looks at
#: ``data_version`` (a change whose signal was lost) and checks the store is open (seconds).
LOOK_EVERY = 0.25
#: An in-memory store has no file to watch: its change count is looked at this often.
_MEMORY_LOOK_EVERY = 0.005
#: After a failed read (the PostgreSQL server away), the first and the longest pause.
_RETRY_FIRST, _RETRY_MOST = 0.05, 1.0


class _ChangeHub:
    """One thread per store: waits on the store's change signal and wakes every watch of it.

    Runs while at least one watch of the store is open; ``generation`` counts the changes
    seen, so a watch that noted it before a read knows whether anything came after.
    """

    def __init__(self, store: Any) -> None:
        self._store = weakref.ref(store)
        self._postgres = _dialect.is_postgres(store)
        self._changed = threading.Condition()
        self.generation = 0
        self.closed = False
        self._members: weakref.WeakSet[KeyWatch] = weakref.WeakSet()
        self._callbacks: weakref.WeakKeyDictionary[KeyWatch, Callable[[], None]] = (
            weakref.WeakKeyDictionary()
        )
        self._thread: threading.Thread | None = None

    # -- membership ---------------------------------------------------------------------

    def join(self, watch: KeyWatch) -> None:
        """Count ``watch`` as open, starting the thread if it is not running."""
        with self._changed:
            self._members.add(watch)
            if self._thread is None and not self.closed:
                self._thread = threading.Thread(target=self._run, name="airq_nb watch", daemon=True)
                self._thread.start()

    def leave(self, watch: KeyWatch) -> None:
        with self._changed:
            self._members.discard(watch)

    # -- waiting ------------------------------------------------------------------------

    def wait(self, watch: KeyWatch, seen: int, timeout: float) -> None:
        """Block until a change after generation ``seen``, the store or ``watch`` closes, or
        ``timeout`` passes."""
        with self._changed:
            self._changed.wait_for(
                lambda: self.generation != seen or self.closed or watch.closed, timeout
            )

    async def wait_async(self, watch: KeyWatch, seen: int, timeout: float) -> None:
        """:meth:`wait` for a coroutine: the event loop is never blocked."""
        loop = asyncio.get_running_loop()
        woken = loop.create_future()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(lambda: woken.done() or woken.set_result(None))

        with self._changed:
            if self.generation != seen or self.closed or watch.closed:
                return
            self._callbacks[watch] = wake
        try:
            await asyncio.wait([woken], timeout=timeout)
        finally:
            with self._changed:
                if self._callbacks.get(watch) is wake:
                    del self._callbacks[watch]

    def wake(self, watch: KeyWatch) -> None:
        """End ``watch``'s own wait under way, if any (it was closed); the others sleep on."""
        with self._changed:
            self._changed.notify_all()  # a blocking wait rechecks watch.closed
            callback = self._callbacks.get(watch)
        if callback is not None:
            callback()

    def _fire(self, *, closed: bool = False) -> None:
        with self._changed:
            self.generation += 1
            self.closed = self.closed or closed
            self._changed.notify_all()
            callbacks = list(self._callbacks.values())
        for callback in callbacks:
            callback()

    # -- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        first = self._store()
        # The backend's own change signal for a watch (SQLite's file waiter), or None: poll.
        waiter = None if first is None else first._change_signal()
        del first
        last: int | None = None
        failing = False
        try:
            while True:
                with self._changed:
                    if not self._members:
                        self._thread = None
                        return
                store = self._store()
                if store is None:
                    return
                try:
                    if waiter is None:
                        time.sleep(_MEMORY_LOOK_EVERY)
                        changed = False
                    else:
                        changed = waiter.wait(LOOK_EVERY)
                    version = store.data_version()
                except StoreClosedError:
                    self._fire(closed=True)
                    return
                except StoreError as exc:  # the PostgreSQL server is away: try again
                    if not failing:
                        log.info("airq_nb watch: the change signal failed (%s); retrying", exc)
                    failing = True
                    del store
                    time.sleep(_RETRY_MOST)
                    continue
                del store  # a store dropped meanwhile must be free to go
                if changed or failing or version != last:
                    self._fire()
                last, failing = version, False
        finally:
            if waiter is not None:
                waiter.close()
            with self._changed:
                if self._thread is threading.current_thread():
                    self._thread = None
            # A store closed, or gone: any watch left waiting wakes and finds out.
            if self._store() is None or self.closed:
                self._fire(closed=True)


_hubs: weakref.WeakKeyDictionary[Any, _ChangeHub] = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()


def _hub(store: Any) -> _ChangeHub:
    with _hubs_lock:
        hub = _hubs.get(store)
        if hub is None or hub.closed:
            hub = _hubs[store] = _ChangeHub(store)
        return hub


def check_watch_keys(keys: object) -> tuple[Key, ...]:
    """``keys`` as a tuple of valid keys; ``InvalidKeyError`` as Deno's ``TypeError``."""
    if isinstance(keys, tuple) and keys and not isinstance(keys[0], tuple | list):
        raise InvalidKeyError(
            "watch() takes a sequence of keys, e.g. [('readings', 'london')], not one key; "
            "wrap it in a list"
        )
    if isinstance(keys, str | bytes) or not isinstance(keys, Sequence):
        raise InvalidKeyError(
            f"watch() takes a sequence of keys, e.g. [('readings', 'london')]; got "
            f"{type(keys).__name__}"
        )
    if len(keys) > MAX_WATCHED_KEYS:
        raise InvalidKeyError(
            f"Too many keys (max {MAX_WATCHED_KEYS}): watch() was given {len(keys)}; "
            "watch them in several watches of up to 10 keys each"
        )
    for key in keys:
        encode_key(key)  # the same refusals as get(): not a tuple, empty, too long
    return tuple(keys)


class KeyWatch:
    """The entries of up to 10 keys, now and after each commit that changes any of them.

    ``async for entries in store.watch(keys)`` on an event loop, ``for entries in
    store.watch(keys)`` in a thread (it blocks). Each ``entries`` is a list of
    :class:`~airq_nb.store.Entry`, one per key in the order given; a missing key's entry
    has value and versionstamp ``None``. Leaving the loop, cancelling its task,
    :meth:`close` or closing the store ends it; a closed store ends it quietly.
    """

    def __init__(self, store: Any, keys: Sequence[Key]) -> None:
        self._store = store
        self.keys = check_watch_keys(keys)
        self._stamps: list[str | None] | None = None
        self._failing = False
        #: True once the watch has ended (closed, or its store closed).
        self.closed = not self.keys  # as in Deno, watching no keys yields nothing
        self._hub = _hub(store)
        if not self.closed:
            self._hub.join(self)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<KeyWatch {list(self.keys)!r} on {self._store!r} ({state})>"

    # -- the one step both kinds of iteration take --------------------------------------

    def _news(self, entries: list[Entry]) -> list[Entry] | None:
        """``entries`` if any versionstamp differs from the last yielded (or it is the first)."""
        stamps = [entry.versionstamp for entry in entries]
        if stamps == self._stamps:
            return None
        self._stamps = stamps
        return entries

    def _retryable(self, exc: StoreError) -> bool:
        """A read failed: wait and try again (a PostgreSQL server away), or end the watch."""
        if isinstance(exc, StoreClosedError):
            self.close()
            return False
        if not _dialect.is_postgres(self._store):
            return False
        if not self._failing:
            log.info("airq_nb watch: reading %s failed (%s); retrying", list(self.keys), exc)
        self._failing = True
        return True

    # -- async ---------------------------------------------------------------------------

    def __aiter__(self) -> KeyWatch:
        return self

    async def __anext__(self) -> list[Entry]:
        pause = _RETRY_FIRST
        while not self.closed:
            seen = self._hub.generation
            try:
                entries = await asyncio.to_thread(self._store.get_many, self.keys)
            except StoreError as exc:
                if not self._retryable(exc):
                    if self.closed:
                        break
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, _RETRY_MOST)
                continue
            pause, self._failing = _RETRY_FIRST, False
            news = self._news(entries)
            if news is not None:
                return news
            await self._hub.wait_async(self, seen, RESYNC_INTERVAL)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> KeyWatch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    # -- blocking ------------------------------------------------------------------------

    def __iter__(self) -> KeyWatch:
        return self

    def __next__(self) -> list[Entry]:
        pause = _RETRY_FIRST
        while not self.closed:
            seen = self._hub.generation
            try:
                entries = self._store.get_many(self.keys)
            except StoreError as exc:
                if not self._retryable(exc):
                    if self.closed:
                        break
                    raise
                time.sleep(pause)
                pause = min(pause * 2, _RETRY_MOST)
                continue
            pause, self._failing = _RETRY_FIRST, False
            news = self._news(entries)
            if news is not None:
                return news
            self._hub.wait(self, seen, RESYNC_INTERVAL)
        raise StopIteration

    def __enter__(self) -> KeyWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop watching: the iteration ends (a wait under way ends within a moment)."""
        if not self.closed:
            self.closed = True
            self._hub.leave(self)
            self._hub.wake(self)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._hub.leave(self)
