"""Checkpointing the WAL beside a running scheduler, from a side connection and thread.

A running scheduler gets one from ``store.checkpointer()`` (None on PostgreSQL, whose
server checkpoints by itself).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

__all__ = ["CHECKPOINT_AFTER_WRITES", "WalCheckpointer"]

log = logging.getLogger("airq_nb.store")

#: While a scheduler runs, checkpoint the WAL from a side connection after this many commits.
CHECKPOINT_AFTER_WRITES = 50


class WalCheckpointer:
    """Checkpoints the store's WAL from a side connection and thread while a scheduler runs.

    Otherwise SQLite checkpoints inside whichever commit crosses the WAL size limit, and
    its fsyncs stall that commit, and so a delivery, for several ms. A PASSIVE checkpoint
    on its own connection runs beside the store's reads and writes. The thread sleeps
    until enough commits were noted, so an idle scheduler never wakes it.
    """

    def __init__(self, path: os.PathLike[str] | str) -> None:
        self._path = str(path)
        self._writes = 0
        self._due = threading.Event()
        self._closed = False
        threading.Thread(target=self._run, name="airq-checkpoint", daemon=True).start()

    def note_writes(self, count: int) -> None:
        self._writes += count
        if self._writes >= CHECKPOINT_AFTER_WRITES:
            self._due.set()

    def close(self) -> None:
        self._closed = True
        self._due.set()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, timeout=5.0, check_same_thread=False)
        except sqlite3.Error:
            return
        try:
            while True:
                self._due.wait()
                if self._closed:
                    return
                self._due.clear()
                self._writes = 0
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # only an optimisation: SQLite still checkpoints itself
            log.info("airq_nb scheduler: WAL checkpoint failed: %s", exc)
        finally:
            conn.close()
