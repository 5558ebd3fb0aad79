"""The alert tables: rules, the state of each (rule, place), and one history of transitions and sends.

This module is the tables' one owner (SQL only here), written once for both backends
through :mod:`._dialect`. :mod:`airq_nb.alerts` validates rules and decides transitions;
:func:`evaluate` gives it the stored states inside one write transaction and writes back
what it decided — new states, the queue messages of their notifications (with dedup keys)
and history rows — in the same commit, so a state change and its notification are never
apart. It also reads what the rules look at: recent readings, failed collection runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from .._errors import AlertRuleNotFoundError
from . import _dialect, _queue
from .models import PreparedMessage, prepare_like

if TYPE_CHECKING:
    from ._backend import Store

__all__ = [
    "HISTORY_COLUMNS",
    "Decision",
    "HistoryRow",
    "Notification",
    "StateRow",
    "collection_failures",
    "dead_letter_counts",
    "delete_rule",
    "evaluate",
    "get_rule",
    "has_rules",
    "last_sends",
    "list_rules",
    "prune_history",
    "read_history",
    "read_states",
    "reading_locations",
    "recent_readings",
    "record_history",
    "schedule_names",
    "sent_before",
    "upsert_rule",
]

STATE_COLUMNS = (
    "rule, place, state, since, transition, value, peak, firing_since, notified, "
    "notified_at, repeats"
)
HISTORY_COLUMNS = ("at", "rule", "place", "event", "transition", "channel", "value", "detail")


@dataclass(slots=True)
class StateRow:
    """One (rule, place): its state, since when, and what its channels were last told."""

    rule: str
    place: str
    state: str = "ok"  # ok | pending | firing
    since: float | None = None
    #: How many transitions this (rule, place) has made: the dedup key's last part.
    transition: int = 0
    value: float | None = None
    #: The highest value since it last left "ok" (a resolved message reports it).
    peak: float | None = None
    firing_since: float | None = None
    #: "firing" once a FIRING notification was queued, "ok" once a RESOLVED one was (or never).
    notified: str = "ok"
    notified_at: float | None = None
    #: Repeat notifications queued during the current firing.
    repeats: int = 0

    def as_tuple(self) -> tuple[Any, ...]:
        """The columns in ``STATE_COLUMNS`` order (``dataclasses.astuple`` deep-copies: slow)."""
        return (
            self.rule,
            self.place,
            self.state,
            self.since,
            self.transition,
            self.value,
            self.peak,
            self.firing_since,
            self.notified,
            self.notified_at,
            self.repeats,
        )


class HistoryRow(NamedTuple):
    """One line of the alert history: a transition, a queued, held or finished send.

    A named tuple (an evaluation makes thousands: a frozen dataclass costs four times as
    much to make); its fields are the columns in ``HISTORY_COLUMNS`` order."""

    at: float
    rule: str
    place: str
    event: str
    transition: int | None = None
    channel: str | None = None
    value: float | None = None
    detail: str | None = None

    def as_tuple(self) -> tuple[Any, ...]:
        """The columns in ``HISTORY_COLUMNS`` order."""
        return tuple(self)


class Notification(NamedTuple):
    """A queue message to enqueue with the transition: one per channel."""

    message: dict[str, Any]
    topic: str
    dedup_key: str
    backoff_schedule: tuple[float, ...] | None = None
    delay: float = 0.0


@dataclass(slots=True)
class Decision:
    """What one evaluation decided: changed states, notifications and history rows.

    ``renewed`` are the pairs whose only change is their number: (rule, place, value, peak).
    """

    states: list[StateRow]
    notifications: list[Notification]
    history: list[HistoryRow]
    renewed: list[tuple[str, str, float | None, float | None]] = field(default_factory=list)


# -- rules ------------------------------------------------------------------------------------


def upsert_rule(store: Store, name: str, definition_json: str, *, now: float) -> None:
    """Create or replace the rule ``name`` (its definition as JSON); keeps its states."""
    with _dialect.transaction(store) as conn:
        conn.execute(
            "INSERT INTO alert_rules (name, definition, created_at, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "definition = excluded.definition, updated_at = excluded.updated_at",
            (name, definition_json, now, now),
        )


def delete_rule(store: Store, name: str) -> None:
    """Delete the rule and its states (its history stays); AlertRuleNotFoundError if none."""
    with _dialect.transaction(store) as conn:
        if conn.execute("DELETE FROM alert_rules WHERE name = ?", (name,)).rowcount == 0:
            raise AlertRuleNotFoundError(
                f"no alert rule named {name!r}; airq_nb.alert_rules(store) lists them"
            )
        conn.execute("DELETE FROM alert_state WHERE rule = ?", (name,))


def list_rules(store: Store) -> list[tuple[str, str]]:
    """Every rule as (name, definition JSON), by name."""
    return [
        (name, definition)
        for name, definition in _dialect.read(
            store, "SELECT name, definition FROM alert_rules ORDER BY name"
        )
    ]


def has_rules(store: Store) -> bool:
    """Whether any alert rule is stored (a cheap read: evaluation is skipped without one)."""
    return bool(_dialect.read(store, "SELECT 1 FROM alert_rules LIMIT 1"))


def get_rule(store: Store, name: str) -> str | None:
    """One rule's definition JSON, or None."""
    rows = _dialect.read(store, "SELECT definition FROM alert_rules WHERE name = ?", (name,))
    return rows[0][0] if rows else None


# -- states and evaluation --------------------------------------------------------------------


def read_states(store: Store) -> list[StateRow]:
    """Every stored (rule, place) state; a pair without a row is "ok" and never moved."""
    rows = _dialect.read(store, f"SELECT {STATE_COLUMNS} FROM alert_state ORDER BY rule, place")
    return [StateRow(*row) for row in rows]


_STATE_TYPES = (
    ("text",) * 3 + ("real", "integer") + ("real",) * 3 + ("text", "real", "integer", "real")
)
# The SELECT's WHERE tells SQLite's parser the ON CONFLICT is the INSERT's.
_UPSERT_STATE = (
    f"INSERT INTO alert_state ({STATE_COLUMNS}, updated_at) SELECT * FROM {{rows}} AS u "
    "WHERE true ON CONFLICT(rule, place) DO UPDATE SET "
    + ", ".join(
        f"{column} = excluded.{column}"
        for column in (
            "state",
            "since",
            "transition",
            "value",
            "peak",
            "firing_since",
            "notified",
            "notified_at",
            "repeats",
            "updated_at",
        )
    )
)
_HISTORY_TYPES = ("real", "text", "text", "text", "integer", "text", "real", "text")
_INSERT_HISTORY = (
    f"INSERT INTO alert_history ({', '.join(HISTORY_COLUMNS)}) SELECT * FROM {{rows}} AS u"
)
_RENEW_TYPES = ("text", "text", "real", "real", "real")
_RENEW_STATE = (
    "UPDATE alert_state SET value = u.column3, peak = u.column4, updated_at = u.column5 "
    "FROM {rows} AS u WHERE alert_state.rule = u.column1 AND alert_state.place = u.column2"
)


def evaluate(
    store: Store,
    *,
    now: float,
    decide: Callable[
        [list[tuple[str, str, float]], dict[tuple[str, str], tuple[Any, ...]]], Decision
    ],
) -> Decision:
    """Run ``decide(rules, states)`` on the stored rules (name, definition JSON, created at)
    and states (each a row in ``STATE_COLUMNS`` order, by (rule, place)), and commit what it
    returns.

    One write transaction, taken in turns by every evaluator (any process, either backend):
    the second one sees the first one's states and so decides nothing twice. The changed
    states, the notifications' queue messages (each with its dedup key) and the history
    rows commit together or not at all.
    """
    with _dialect.transaction(store) as conn:
        _dialect.serialize(store, conn, "airq_nb alerts")
        rules = conn.execute(
            "SELECT name, definition, created_at FROM alert_rules ORDER BY name"
        ).fetchall()
        states = {
            (row[0], row[1]): row
            for row in conn.execute(f"SELECT {STATE_COLUMNS} FROM alert_state").fetchall()
        }
        decision = decide(rules, states)
        if decision.states:
            _dialect.write_rows(
                store,
                conn,
                _UPSERT_STATE,
                _STATE_TYPES,
                [(*s.as_tuple(), now) for s in decision.states],
            )
        if decision.renewed:
            _dialect.write_rows(
                store, conn, _RENEW_STATE, _RENEW_TYPES, [(*r, now) for r in decision.renewed]
            )
        if decision.notifications:
            messages = _prepared(store, decision.notifications)
            _queue.add_messages(conn, messages, now, store.dialect)
        if decision.history:
            _dialect.write_rows(store, conn, _INSERT_HISTORY, _HISTORY_TYPES, decision.history)
    if decision.notifications:
        store._queue_changed()
    return decision


def _prepared(store: Store, notes: Sequence[Notification]) -> list[PreparedMessage]:
    """The notifications as queue messages, checked as ``store.enqueue`` checks them: their
    few sets of options (topic, delay, back-off) once each, every payload on its own."""
    alike: dict[tuple[Any, ...], PreparedMessage] = {}
    messages = []
    for note in notes:
        options = (note.topic, note.delay, note.backoff_schedule)
        template = alike.get(options)
        if template is None:
            backoff = None if note.backoff_schedule is None else list(note.backoff_schedule)
            template = alike[options] = store._prepare(
                None, note.delay, note.topic, (), backoff, note.dedup_key, None
            )
        messages.append(prepare_like(template, note.message, dedup_key=note.dedup_key))
    return messages


# -- history ----------------------------------------------------------------------------------


def record_history(store: Store, rows: Iterable[HistoryRow]) -> None:
    """Append history rows (a send's outcome) in their own commit."""
    rows = [row.as_tuple() for row in rows]
    if rows:
        with _dialect.transaction(store) as conn:
            _dialect.write_rows(store, conn, _INSERT_HISTORY, _HISTORY_TYPES, rows)


def sent_before(store: Store, *, rule: str, place: str, detail: str, channel: str) -> bool:
    """Whether this notification (``detail`` is its dedup key) already reached ``channel``."""
    return bool(
        _dialect.read(
            store,
            "SELECT 1 FROM alert_history WHERE rule = ? AND place = ? AND event = 'sent' "
            "AND channel = ? AND detail = ? LIMIT 1",
            (rule, place, channel, detail),
        )
    )


def read_history(
    store: Store,
    *,
    rule: str | None = None,
    since: float | None = None,
    events: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[tuple[Any, ...]]:
    """History rows (``HISTORY_COLUMNS``), oldest first; the newest ``limit`` if given."""
    where, params = ["1 = 1"], []
    if rule is not None:
        where.append("rule = ?")
        params.append(rule)
    if events is not None:
        where.append(f"event IN ({', '.join('?' for _ in events)})")
        params.extend(events)
    if since is not None:
        where.append("at >= ?")
        params.append(since)
    statement = (
        f"SELECT {', '.join(HISTORY_COLUMNS)} FROM alert_history WHERE {' AND '.join(where)} "
        "ORDER BY at DESC, id DESC"
    )
    if limit is not None:
        statement += f" LIMIT {int(limit)}"
    return list(reversed(_dialect.read(store, statement, params)))


def last_sends(store: Store) -> dict[tuple[str, str], tuple[float, str, str | None, str | None]]:
    """Per (rule, place): the newest send attempt's (at, "sent"/"failed", channel, detail)."""
    rows = _dialect.read(
        store,
        "SELECT h.rule, h.place, h.at, h.event, h.channel, h.detail FROM alert_history h JOIN "
        "(SELECT MAX(id) AS id FROM alert_history WHERE event IN ('sent', 'failed') "
        "GROUP BY rule, place) l ON h.id = l.id",
    )
    return {
        (rule, place): (at, event, channel, detail)
        for rule, place, at, event, channel, detail in rows
    }


def prune_history(store: Store, cutoff: float) -> int:
    """Delete history rows at or before ``cutoff`` (the readings' retention); returns how many."""
    if not _dialect.read(store, "SELECT 1 FROM alert_history WHERE at <= ? LIMIT 1", (cutoff,)):
        return 0
    with _dialect.transaction(store) as conn:
        return conn.execute("DELETE FROM alert_history WHERE at <= ?", (cutoff,)).rowcount


# -- what the rules look at -------------------------------------------------------------------


def recent_readings(store: Store, *, window: int = 86400) -> list[tuple[Any, ...]]:
    """(location, source, time, pm2_5, pm10) of each series' newest ``window`` seconds."""
    return _dialect.read(
        store,
        "SELECT r.location, r.source, r.time, r.pm2_5, r.pm10 FROM readings r JOIN "
        "(SELECT source, location, MAX(time) AS newest FROM readings GROUP BY source, location) n "
        "ON r.source = n.source AND r.location = n.location WHERE r.time > n.newest - ? "
        "ORDER BY r.location, r.source, r.time",
        (window,),
    )


def collection_failures(store: Store, *, prefix: str) -> dict[str, tuple[int, int, float]]:
    """Per schedule named ``prefix``…: (failed attempts since its last success, dead letters
    since, when the newest of them ended).

    Every attempt counts, a retry too: "failed 3 runs in a row" is three failed attempts.
    """
    since_ok = (
        "COALESCE((SELECT MAX(o.finished_at) FROM delivery_log o "
        "WHERE o.schedule = {alias}.schedule AND o.outcome = 'ok'), 0)"
    )
    failed = _dialect.read(
        store,
        "SELECT d.schedule, COUNT(*), MAX(d.finished_at) FROM delivery_log d "
        "WHERE d.schedule LIKE ? AND d.outcome IN ('retry', 'dead') "
        f"AND d.finished_at > {since_ok.format(alias='d')} GROUP BY d.schedule",
        (prefix + "%",),
    )
    dead = _dialect.read(
        store,
        "SELECT q.schedule, COUNT(*), MAX(q.dead_at) FROM queue q "
        "WHERE q.state = 'dead' AND q.schedule LIKE ? "
        f"AND q.dead_at > {since_ok.format(alias='q')} GROUP BY q.schedule",
        (prefix + "%",),
    )
    out = {name: (int(count), 0, float(at)) for name, count, at in failed}
    for name, count, at in dead:
        before = out.get(name, (0, 0, at))
        out[name] = (before[0], int(count), max(before[2], float(at)))
    return out


def dead_letter_counts(store: Store) -> dict[str, int]:
    """Dead letters per topic (topics without any left out)."""
    return dict(
        _dialect.read(
            store, "SELECT topic, COUNT(*) FROM queue WHERE state = 'dead' GROUP BY topic"
        )
    )


def schedule_names(store: Store, *, prefix: str) -> list[str]:
    """Names of the schedules starting with ``prefix`` (e.g. the collector's places)."""
    return [
        name
        for (name,) in _dialect.read(
            store, "SELECT name FROM schedules WHERE name LIKE ? ORDER BY name", (prefix + "%",)
        )
    ]


def reading_locations(store: Store) -> list[str]:
    """Every location that has readings."""
    return [
        name
        for (name,) in _dialect.read(
            store, "SELECT DISTINCT location FROM readings ORDER BY location"
        )
    ]
