"""``store.wait_for_change`` answers alike on both backends, first call included."""

from __future__ import annotations

import threading
import time

import pytest

import airq_nb

pytestmark = pytest.mark.backends("sqlite", "postgres")


def test_the_first_wait_says_look_now_then_waits_for_a_change(db_path: object) -> None:
    with airq_nb.open_store(db_path) as waiting, airq_nb.open_store(db_path) as other:
        # What happened before the store watched is unknown: the first answer is "look".
        assert waiting.wait_for_change(0) is True
        assert waiting.wait_for_change(0.05) is False
        other.enqueue({"n": 1})
        assert waiting.wait_for_change(5) is True
        assert waiting.wait_for_change(0.05) is False


def test_a_commit_made_between_two_waits_is_not_lost(db_path: object) -> None:
    with airq_nb.open_store(db_path) as waiting, airq_nb.open_store(db_path) as other:
        waiting.wait_for_change(0)
        other.enqueue({"n": 1})
        time.sleep(0.05)
        assert waiting.wait_for_change(5) is True


def test_the_last_consumer_done_ends_a_wait_under_way(db_path: object) -> None:
    with airq_nb.open_store(db_path) as store:
        store.open_change_wait()
        store.wait_for_change(0)
        began = time.monotonic()
        waiter = threading.Thread(target=store.wait_for_change, args=(30,))
        waiter.start()
        time.sleep(0.2)
        store.close_change_wait()
        waiter.join(10)
        assert not waiter.is_alive()
        assert time.monotonic() - began < 10


def test_a_negative_timeout_is_refused_on_both(db_path: object) -> None:
    with airq_nb.open_store(db_path) as store, pytest.raises(airq_nb.InvalidDelayError):
        store.wait_for_change(-1)
