"""The alerts' public verbs: store and list rules, read states, history and firing periods.

What a notebook panel needs is here: :func:`alert_rules` (the rules),
:func:`alert_states` (each (rule, place)'s state, since when, its last notification),
:func:`alert_history` (every transition and send) and :func:`alert_periods` (when each
rule was firing, for shading a chart), all as plain values or pandas DataFrames.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._errors import AlertRuleNotFoundError, InvalidAlertRuleError
from ..store import alerts as table
from ..store.alerts import HISTORY_COLUMNS
from ..store.readings import utc_datetime
from ._channels import check_channel
from ._evaluate import COLLECT_PREFIX
from ._rules import AlertRule, rule_from_json
from ._sending import ensure_timer

if TYPE_CHECKING:
    import pandas

    from ..store import Store

__all__ = [
    "AlertState",
    "alert_history",
    "alert_periods",
    "alert_rules",
    "alert_states",
    "delete_alert_rule",
    "get_alert_rule",
    "set_alert_rule",
]

#: A place that needs no readings yet: the default location of the modelled sources.
_DEFAULT_PLACE = "London"


@dataclass(frozen=True, slots=True)
class AlertState:
    """One (rule, place) now: its state, since when, its number and what was last sent.

    A (rule, place) with no row here is "ok" and has never moved.
    """

    rule: str
    place: str
    #: "ok", "pending" or "firing".
    state: str
    since: datetime | None
    #: The rule's number: the current one while pending or firing; once ok again, the
    #: number it resolved with (an ok pair is not rewritten at every evaluation).
    value: float | None
    #: The highest value since it last left "ok".
    peak: float | None
    firing_since: datetime | None
    #: What the channels were last told: "FIRING" or "RESOLVED" (None: nothing yet).
    last_notification: str | None
    #: When that notification was queued (a quiet-hours one waits for their end).
    last_notified_at: datetime | None
    #: The newest send attempt: "sent" or "failed", when, to which channel.
    last_send: str | None
    last_send_at: datetime | None
    last_send_channel: str | None
    transitions: int


def _known_places(store: Store) -> set[str]:
    return (
        set(table.reading_locations(store))
        | {
            name.removeprefix(COLLECT_PREFIX)
            for name in table.schedule_names(store, prefix=COLLECT_PREFIX)
        }
        | {_DEFAULT_PLACE}
    )


def set_alert_rule(store: Store, rule: AlertRule) -> AlertRule:
    """Store ``rule`` under its name (replacing a rule of that name; idempotent).

    Refuses, storing nothing: a place that has no readings or collection schedule, a
    channel whose ``AIRQ_NB_ALERT_<NAME>`` is unset or not an Apprise URL
    (:class:`~airq_nb.AlertChannelError`). Also registers the evaluation timer
    (``alerts:evaluate``, every 15 minutes) that the collector's scheduler runs.
    """
    if not isinstance(rule, AlertRule):
        raise InvalidAlertRuleError(
            f"set_alert_rule takes an airq_nb.AlertRule, got {type(rule).__name__}"
        )
    if rule.location is not None:
        if rule.kind == "dead_letters":
            raise InvalidAlertRuleError("a dead-letter rule watches a topic, not a location")
        known = _known_places(store)
        if rule.location not in known:
            raise InvalidAlertRuleError(
                f"unknown place {rule.location!r}; collect it first (start_collector) or "
                f"write one of {sorted(known)}, or location=None for every place"
            )
    for channel in rule.notify:
        check_channel(channel)
    table.upsert_rule(store, rule.name, rule.to_json(), now=store.now())
    ensure_timer(store)
    return rule


def delete_alert_rule(store: Store, name: str) -> None:
    """Delete the rule ``name`` and its states (its history stays); AlertRuleNotFoundError if none."""
    table.delete_rule(store, name)
    ensure_timer(store)


def get_alert_rule(store: Store, name: str) -> AlertRule:
    """The rule ``name``; AlertRuleNotFoundError if there is none."""
    definition = table.get_rule(store, name)
    if definition is None:
        raise AlertRuleNotFoundError(
            f"no alert rule named {name!r}; airq_nb.alert_rules(store) lists them"
        )
    return rule_from_json(definition)


def alert_rules(store: Store) -> list[AlertRule]:
    """Every stored rule, by name."""
    return [rule_from_json(definition) for _name, definition in table.list_rules(store)]


def alert_states(store: Store, *, rule: str | None = None) -> list[AlertState]:
    """Each (rule, place) that has ever left "ok": its state now and its last notification."""
    sends = table.last_sends(store)
    out = []
    for row in table.read_states(store):
        if rule is not None and row.rule != rule:
            continue
        send = sends.get((row.rule, row.place))
        told = None
        if row.notified_at is not None:
            told = "FIRING" if row.notified == "firing" else "RESOLVED"
        out.append(
            AlertState(
                rule=row.rule,
                place=row.place,
                state=row.state,
                since=utc_datetime(row.since),
                value=row.value,
                peak=row.peak,
                firing_since=utc_datetime(row.firing_since),
                last_notification=told,
                last_notified_at=utc_datetime(row.notified_at),
                last_send=send[1] if send else None,
                last_send_at=utc_datetime(send[0]) if send else None,
                last_send_channel=send[2] if send else None,
                transitions=row.transition,
            )
        )
    return out


def _frame(rows: list[tuple[Any, ...]], columns: list[str], times: tuple[str, ...]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=columns)
    for column in times:
        frame[column] = pd.to_datetime(frame[column].astype("float64"), unit="s", utc=True)
    return frame


def alert_history(
    store: Store,
    *,
    rule: str | None = None,
    since: datetime | float | None = None,
    limit: int | None = None,
) -> pandas.DataFrame:
    """Every transition and send, oldest first, as a DataFrame (times in UTC).

    Columns: ``at``, ``rule``, ``place``, ``event`` (pending, firing, resolved, cleared —
    a pending that ended without firing —, queued, held, sent, failed, test sent, test
    failed), ``transition``, ``channel``, ``value``, ``detail``. Kept as long as readings.
    """
    start = since.timestamp() if isinstance(since, datetime) else since
    rows = table.read_history(store, rule=rule, since=start, limit=limit)
    return _frame(rows, list(HISTORY_COLUMNS), ("at",))


def alert_periods(store: Store, *, rule: str | None = None) -> pandas.DataFrame:
    """When each (rule, place) was firing, for shading charts: one row per period.

    Columns: ``rule``, ``place``, ``start``, ``end`` (UTC; NaT while still firing),
    ``peak``. Periods come from the history's firing and resolved transitions.
    """
    rows = table.read_history(store, rule=rule, events=("firing", "resolved"))
    open_periods: dict[tuple[str, str], list[Any]] = {}
    periods: list[list[Any]] = []
    for at, name, place, event, _transition, _channel, value, detail in rows:
        key = (name, place)
        if event == "firing":
            open_periods[key] = [name, place, at, None, value]
            periods.append(open_periods[key])
        elif key in open_periods:
            period = open_periods.pop(key)
            period[3] = at
            peak = (detail or "").removeprefix("peak ")
            period[4] = float(peak) if peak not in ("", "None") else period[4]
    peaks = {(s.rule, s.place): s.peak for s in table.read_states(store)}
    for period in periods:
        peak = peaks.get((period[0], period[1]))
        if period[3] is None and peak is not None:
            period[4] = peak
    return _frame(periods, ["rule", "place", "start", "end", "peak"], ("start", "end"))
