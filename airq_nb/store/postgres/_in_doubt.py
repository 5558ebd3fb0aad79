"""Batched verbs whose COMMIT was cut by a restart: never lost, never settled twice.

A scheduler's trip (settle, plan and claim: ``store/_batch.py``) is one transaction. When
the server restarts or crashes, the connection can break while its ``COMMIT`` is under
way, and the client cannot tell whether it committed. Redoing it blindly would settle its
messages a second time (their acks then find nothing: "lost", with a second log row) and
leave the messages it claimed leased with nobody handling them until the leases lapse.

So each batched verb learns its transaction's id at the start, and one cut at ``COMMIT``
is kept *in doubt*, with what it did. Before the store's next batched verb, PostgreSQL is
asked (``pg_xact_status``; an id beyond the server's next one, whose WAL a crash lost, never
committed). Committed: when the caller settles those deliveries again
(its retry), their outcomes are handed back and nothing is written twice, and the
messages it claimed are given back (released, attempt not counted: no handler started
them). Aborted: the caller's retry does it all again, as after any failed transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..._errors import StoreError
from .._batch import Settlement, Work
from ._connection import CommitCut

if TYPE_CHECKING:
    from .._queue import Delivery
    from ._store import PostgresStore

__all__ = ["InDoubt"]

#: One delivery's settlement, whichever attempt of the caller's brings it.
_Key = tuple[int, str]


@dataclass(slots=True)
class _Cut:
    xid: str
    settled: dict[_Key, str]
    work: Work
    gave_back: list[Delivery]


def _key(settlement: Settlement) -> _Key:
    return settlement.delivery.id, settlement.delivery.lease_token


class InDoubt:
    """One store's transactions cut at COMMIT, until the server says how they ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cuts: list[_Cut] = []
        #: Outcomes committed by a cut transaction, until the caller settles them again.
        self._settled: dict[_Key, str] = {}
        #: Messages leased by a committed cut transaction (or whose giving back was cut):
        #: released by the next batched verb.
        self._give_back: list[Delivery] = []
        #: Runs queued and messages dead-lettered by committed cut transactions, reported
        #: with the next trip's.
        self._unreported = Work()

    def run(
        self,
        store: PostgresStore,
        settlements: Sequence[Settlement],
        body: Callable[[list[Settlement]], Work],
    ) -> tuple[list[str], Work]:
        """Run ``body`` in one tracked transaction; returns the outcomes of ``settlements``
        (in order) and what ``body`` did, with what committed cut transactions did.

        ``body`` is given the settlements still to write (those a committed cut transaction
        did not already write) followed by the give-backs; it returns their outcomes in that
        order. Raises ``StoreError`` (nothing committed, or in doubt) when the server fails.
        """
        with self._lock:
            self._resolve(store)
            give_back, self._give_back = self._give_back, []
            known = {k: self._settled[k] for s in settlements if (k := _key(s)) in self._settled}
            unreported, self._unreported = self._unreported, Work()
        todo = [s for s in settlements if _key(s) not in known] if known else list(settlements)
        now = store.clock.now()
        returns = [Settlement(d, d.deliver_at, now, now, release=True) for d in give_back]
        work: Work | None = None
        try:
            with store._db.tracked_transaction():
                work = body(todo + returns)
        except CommitCut as cut:
            assert work is not None  # the body ran to its end: the COMMIT was cut
            settled = dict(zip(map(_key, todo), work.outcomes, strict=False))
            with self._lock:
                self._cuts.append(_Cut(cut.xid, settled, work, give_back))
                self._merge_unreported(unreported)
            raise StoreError(
                f"{cut} The transaction may have committed: the store asks the server which "
                "before its next batched write, so nothing is settled twice."
            ) from cut
        except BaseException:
            with self._lock:  # nothing committed: give them back next time
                self._give_back.extend(give_back)
                self._merge_unreported(unreported)
            raise
        if known:
            with self._lock:
                for k in known:
                    self._settled.pop(k, None)
        written = iter(work.outcomes[: len(todo)])
        outcomes = [known[k] if (k := _key(s)) in known else next(written) for s in settlements]
        work.queued_runs = unreported.queued_runs + work.queued_runs
        work.dead_on_claim = unreported.dead_on_claim + work.dead_on_claim
        return outcomes, work

    def _merge_unreported(self, unreported: Work) -> None:
        self._unreported.queued_runs[:0] = unreported.queued_runs
        self._unreported.dead_on_claim[:0] = unreported.dead_on_claim

    def _resolve(self, store: PostgresStore) -> None:
        """Ask the server how each cut transaction ended (under the lock)."""
        if not self._cuts:
            return
        # A crash can lose the WAL of a transaction that had its id but never committed:
        # after recovery the id lies beyond the next one to be given ("in the future", which
        # pg_xact_status refuses). It never committed, so it counts as aborted.
        rows = store.execute(
            "SELECT x, CASE WHEN x::xid8 >= pg_snapshot_xmax(pg_current_snapshot()) "
            "THEN 'aborted' ELSE pg_xact_status(x::xid8) END "
            "FROM unnest(%s::text[]) AS x",
            ([cut.xid for cut in self._cuts],),
        )
        status: dict[str, Any] = {xid: answer for xid, answer in rows}
        if any(status.get(cut.xid) == "in progress" for cut in self._cuts):
            raise StoreError(
                f"PostgreSQL at {store.where} is still finishing a transaction whose COMMIT "
                "was cut; nothing was written. Try again in a moment."
            )
        for cut in self._cuts:
            if status.get(cut.xid) == "committed":
                self._settled.update(cut.settled)
                self._give_back.extend(d for d, _at in cut.work.claims)
                self._unreported.queued_runs += cut.work.queued_runs
                self._unreported.dead_on_claim += cut.work.dead_on_claim
            else:  # aborted (a crash aborts what was under way): the retry redoes it
                self._give_back.extend(cut.gave_back)
        self._cuts.clear()
