"""``scheduler_for`` keys schedulers by the store's identity, not by a path under the cwd."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import airq_nb

pytestmark = pytest.mark.backends("sqlite", "postgres")


def test_the_same_store_gets_the_same_scheduler_after_a_chdir(
    db_path: Path | str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    location: Path | str = db_path
    if isinstance(db_path, Path):  # SQLite: name the file relative to the cwd, as a notebook may
        monkeypatch.chdir(db_path.parent)
        location = db_path.name
    with airq_nb.open_store(location) as store:
        first = airq_nb.scheduler_for(store)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)  # a notebook's %cd
        assert airq_nb.scheduler_for(store) is first
        # The same store opened again from the new folder is still the same store.
        reopened = db_path if isinstance(db_path, str) else os.path.join("..", db_path.name)
        with airq_nb.open_store(reopened) as again:
            assert again.identity == store.identity
            assert airq_nb.scheduler_for(again) is first
        first.close()


def test_two_stores_get_two_schedulers(tmp_path: Path) -> None:
    with (
        airq_nb.open_store(tmp_path / "one.db") as one,
        airq_nb.open_store(tmp_path / "two.db") as two,
    ):
        assert one.identity != two.identity
        first, second = airq_nb.scheduler_for(one), airq_nb.scheduler_for(two)
        assert first is not second
        first.close()
        second.close()
