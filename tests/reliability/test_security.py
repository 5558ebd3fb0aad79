"""Security: payloads are only ever JSON (never unpickled or evaluated); hostile payloads and
keys are refused with a clear error or stored and shown safely; SQL stays parameterised.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest

import airq_nb
from airq_nb import InvalidKeyError, InvalidValueError, PayloadTooLargeError
from airq_nb.store._json import MAX_NESTING, MAX_VALUE_BYTES
from airq_nb.store._keys import MAX_KEY_BYTES

PACKAGE = Path(airq_nb.__file__).parent


class _Canary:
    """Unpickling this creates a file: proof that something ran pickle.loads on our data."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_the_package_has_no_unpickling_or_eval() -> None:
    forbidden = re.compile(
        r"\b(import pickle|from pickle|pickle\.|cPickle|marshal\.|shelve|dill|jsonpickle|"
        r"yaml\.load\(|yaml\.unsafe_load|eval\(|exec\()"
    )
    hits = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if forbidden.search(line) and not line.lstrip().startswith(("#", '"""'))
    ]
    assert hits == []


def test_pickle_bytes_are_refused_or_kept_as_plain_data(
    store: airq_nb.Store, tmp_path: Path
) -> None:
    canary = tmp_path / "unpickled"
    bomb = pickle.dumps(_Canary(canary))
    with pytest.raises(InvalidValueError, match="must be JSON"):
        store.set(("bomb",), bomb)
    with pytest.raises(InvalidValueError, match="must be JSON"):
        store.enqueue(bomb)
    # As text (latin-1 maps every byte to one character) it is just a string, returned as such.
    text = bomb.decode("latin-1")
    store.set(("bomb",), text)
    store.enqueue({"pickle": text})
    assert store.get(("bomb",)).value == text
    delivery = store.claim()
    assert delivery is not None and delivery.value == {"pickle": text}
    assert store.ack(delivery)
    # As a key part it is bytes, stored and listed as bytes.
    store.set(("raw", bomb), 1)
    assert store.list(prefix=("raw",))[0].key == ("raw", bomb)
    assert not canary.exists()


def test_a_pickled_row_written_behind_the_stores_back_is_dead_lettered_not_loaded(
    store: airq_nb.Store, tmp_path: Path
) -> None:
    canary = tmp_path / "unpickled"
    bomb = pickle.dumps(_Canary(canary))
    message_id = store.enqueue("placeholder")
    # Another program (or an attacker with write access) replaces the payload with a pickle.
    with store.transaction() as conn:
        conn.execute("UPDATE queue SET value = ? WHERE id = ?", (bomb, message_id))
        conn.execute(
            "INSERT INTO kv (key, value, versionstamp) VALUES (?, ?, ?)",
            (b"\x02evil\x00", bomb, "0" * 20),
        )
    assert store.claim() is None
    (dead,) = store.queue.dead_letters()
    assert dead.id == message_id and "corrupt" in (dead.last_error or "")
    with pytest.raises(airq_nb.StoreError):
        store.get(("evil",))
    assert not canary.exists()


def test_script_tags_are_stored_verbatim_and_escaped_in_the_inspector(store: airq_nb.Store) -> None:
    hostile = "<script>alert('airq')</script><img src=x onerror=alert(1)>"
    store.set(("note", hostile), {"html": hostile})
    store.enqueue({"html": hostile}, topic=f"t{hostile}")
    assert store.get(("note", hostile)).value == {"html": hostile}
    (message,) = store.queue.list()
    assert message.value == {"html": hostile}

    from airq_nb.ui.widgets import QueueInspector

    inspector = QueueInspector(store, autostart=False)
    inspector.refresh()
    shown = [
        child.value
        for row in [inspector.summary, inspector.footer, *inspector.table.children]
        for child in [row, *getattr(row, "children", ())]
        if isinstance(getattr(child, "value", None), str)
    ]
    page = "\n".join(shown)
    assert "&lt;script&gt;" in page
    assert "<script>" not in page and "<img" not in page


def test_payload_size_limit_is_exact_and_its_error_says_what_to_do(store: airq_nb.Store) -> None:
    # The limit counts the JSON text: two quotes around the string.
    largest = "x" * (MAX_VALUE_BYTES - 2)
    store.set(("big",), largest)
    assert store.get(("big",)).value == largest
    message_id = store.enqueue(largest)
    assert store.queue.get(message_id).value == largest
    with pytest.raises(PayloadTooLargeError, match="limit is 65,536") as raised:
        store.enqueue(largest + "x")
    assert "enqueue its key instead" in str(raised.value)
    # Non-ASCII text is stored as \\u escapes, so it counts 6 bytes a character.
    fits = (MAX_VALUE_BYTES - 2) // 6
    store.set(("big",), "é" * fits)
    with pytest.raises(PayloadTooLargeError):
        store.set(("big",), "é" * (fits + 1))


def test_deep_nesting_is_refused_before_it_can_break_a_consumer(store: airq_nb.Store) -> None:
    store.enqueue(nested(MAX_NESTING))
    # 990 levels: within the recursion limit at the top level, yet not decodable deeper down;
    # 100,000: deeper than the encoder itself can go. Both get the same clear error.
    for depth in (MAX_NESTING + 1, 990, 100_000):
        with pytest.raises(InvalidValueError, match=f"more than {MAX_NESTING} levels deep"):
            store.enqueue(nested(depth))

    # What was accepted decodes even from a deep call stack (a scheduler thread, a handler).
    def claim_from_depth(levels: int) -> airq_nb.Delivery | None:
        return store.claim() if levels == 0 else claim_from_depth(levels - 1)

    delivery = claim_from_depth(200)
    assert delivery is not None and delivery.value == nested(MAX_NESTING)


def test_hostile_keys_and_names_stay_data(store: airq_nb.Store) -> None:
    injection = "'); DROP TABLE kv; --"
    key = (injection, b"\x00\xff\x00", "\x00", "😀")
    store.set(key, injection)
    assert store.get(key).value == injection
    assert [entry.key for entry in store.list(prefix=(injection,))] == [key]
    store.enqueue(1, topic=injection, dedup_key=injection)
    assert store.queue.list(topic=injection)[0].dedup_key == injection
    assert store.queue.list(topic="x' OR '1'='1") == []
    assert store.queue.purge(topic="x' OR 1=1 --") == 0
    assert store.execute("SELECT COUNT(*) FROM kv")[0][0] == 1
    # Keys: the 2048-byte limit is exact (a str part costs 2 bytes of framing).
    store.set(("k" * (MAX_KEY_BYTES - 2),), 1)
    with pytest.raises(InvalidKeyError, match=f"limit is {MAX_KEY_BYTES}"):
        store.set(("k" * (MAX_KEY_BYTES - 1),), 1)
    assert os.environ.get("AIRQ_NB_DB") != str(store.path)
