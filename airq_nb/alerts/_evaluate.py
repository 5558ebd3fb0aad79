"""Evaluating the rules: one number per (rule, place), one step of its state, its notifications.

Each (rule, place) moves ``ok → pending → firing → ok``. Only the *current* numbers are
looked at (after downtime nothing is replayed) and each evaluation moves a pair at most
one step. A notification is owed whenever the channels were last told something other
than the pair's state (``firing`` vs ``ok``); outside quiet hours it is queued at once,
one message per channel, in the same commit as the state (``store.alerts.evaluate``),
with the dedup key ``alert:<rule>@<created>:<place>:<transition>:<channel>``. In quiet
hours it waits; at their end only what is still owed is sent, so an alert that fired and
resolved meanwhile sends nothing.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from ..daqi import daqi_band
from ..store import alerts as table
from ..store.alerts import Decision, HistoryRow, Notification, StateRow
from ..store.readings import utc_datetime
from ._messages import firing_message, resolved_message
from ._rules import POLLUTANTS, AlertRule, london_text, rule_from_json

if TYPE_CHECKING:
    from ..store import Store

__all__ = [
    "EVALUATE_TOPIC",
    "SEND_BACKOFF",
    "SEND_TOPIC",
    "AlertTransition",
    "Observations",
    "evaluate_alerts",
    "observe",
]

#: The queue topic of notifications: one message per (transition, channel).
SEND_TOPIC = "alerts.send"
#: The queue topic of evaluation runs (the timer's, and the end of quiet hours).
EVALUATE_TOPIC = "alerts.evaluate"
#: Back-off of a notification's sends (seconds): about 1 h 50 min of retries in all,
#: so a channel down for an hour still gets it; then it is a dead letter.
SEND_BACKOFF = (10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0)
#: A 24-hour mean needs this many of its 24 hours (75%, as the UK's statistics do).
MIN_HOURS_FOR_MEAN = 18
HOUR = 3600.0
COLLECT_PREFIX = "collect:"


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """One state change an evaluation made: (rule, place) from ``before`` to ``after``."""

    rule: str
    place: str
    before: str
    after: str
    at: datetime
    value: float | None
    #: The pair's transition count after this one (the notification's dedup key uses it).
    transition: int


@dataclass(slots=True)
class Observations:
    """The numbers the rules look at, read once per evaluation."""

    now: float
    hourly: dict[tuple[str, str], float]
    mean_24h: dict[tuple[str, str], float]
    newest: dict[str, float]
    collected: set[str]
    failures: dict[str, tuple[int, int]]
    dead_letters: dict[str, int]

    @property
    def places(self) -> set[str]:
        """Every place with readings or a collection schedule."""
        return set(self.newest) | self.collected


def observe(store: Store, *, now: float, dead_letters: bool = True) -> Observations:
    """Read the current numbers: newest values and 24-hour means per place (the worse of
    its sources), newest reading times, failed collection runs, dead letters per topic
    (with ``dead_letters`` False none are counted: no rule watches them)."""
    series: dict[tuple[str, str], list[tuple[int, Any, Any]]] = defaultdict(list)
    for location, source, when, pm2_5, pm10 in table.recent_readings(store):
        series[location, source].append((when, pm2_5, pm10))
    hourly: dict[tuple[str, str], float] = {}
    means: dict[tuple[str, str], float] = {}
    newest: dict[str, float] = {}
    for (location, _source), rows in series.items():
        newest[location] = max(newest.get(location, -math.inf), rows[-1][0])
        for column, pollutant in enumerate(POLLUTANTS, start=1):
            values = [row[column] for row in rows if row[column] is not None]
            if not values:
                continue
            key = (pollutant, location)
            hourly[key] = max(hourly.get(key, -math.inf), values[-1])
            if len(values) >= MIN_HOURS_FOR_MEAN:
                means[key] = max(means.get(key, -math.inf), sum(values) / len(values))
    # The collector's own record of each place's last run is written inside the run, so
    # a success is seen at once (its delivery-log row comes only after the handler returns).
    succeeded: dict[str, float] = {}
    for entry in store.list(prefix=("airq_nb", "collector")):
        record = entry.value if isinstance(entry.value, dict) else {}
        if record.get("outcome") == "ok" and isinstance(record.get("at"), int | float):
            place = str(record.get("location"))
            succeeded[place] = max(succeeded.get(place, -math.inf), record["at"])
    failures = {}
    for name, (failed, dead, latest) in table.collection_failures(
        store, prefix=COLLECT_PREFIX
    ).items():
        place = name.removeprefix(COLLECT_PREFIX)
        if succeeded.get(place, -math.inf) < latest:
            failures[place] = (failed, dead)
    collected = {
        name.removeprefix(COLLECT_PREFIX)
        for name in table.schedule_names(store, prefix=COLLECT_PREFIX)
    }
    dead = table.dead_letter_counts(store) if dead_letters else {}
    return Observations(now, hourly, means, newest, collected, failures, dead)


def _places(rule: AlertRule, obs: Observations) -> set[str]:
    if rule.kind == "dead_letters":
        return {rule.topic} if rule.topic is not None else set(obs.dead_letters)
    if rule.location is not None:
        return {rule.location}
    if rule.kind == "collection":
        return set(obs.collected)
    if rule.kind == "stale":
        return obs.places
    return set(obs.newest)


def _signal(rule: AlertRule, obs: Observations) -> tuple[dict[str, float], float | None]:
    """The rule's number per place now, and the number of a place missing from the map
    (None: nothing to judge by, the state stays)."""
    kind = rule.kind
    if kind == "air":
        source = obs.hourly if rule.mean == "hour" else obs.mean_24h
        return {place: v for (p, place), v in source.items() if p == rule.pollutant}, None
    if kind == "daqi":
        pollutants = (rule.pollutant,) if rule.pollutant else POLLUTANTS
        indexes: dict[str, float] = {}
        for (p, place), mean in obs.mean_24h.items():
            band = daqi_band(p, mean) if p in pollutants else None
            if band is not None:
                indexes[place] = max(indexes.get(place, 0.0), float(band.index))
        return indexes, None
    if kind == "collection":
        runs = rule.runs or 0
        return {
            place: float(max(failed, runs) if dead else failed)
            for place, (failed, dead) in obs.failures.items()
        }, 0.0
    if kind == "stale":
        ages = {place: max(0.0, (obs.now - t) / HOUR) for place, t in obs.newest.items()}
        # A place collected (scheduled) that has no readings at all is as stale as can be.
        ages.update({place: math.inf for place in obs.collected if place not in ages})
        return ages, None
    return {topic: float(count) for topic, count in obs.dead_letters.items()}, 0.0


def _signal_key(rule: AlertRule) -> tuple[Any, ...]:
    """Rules with the same key look at the same numbers (computed once per evaluation)."""
    return (rule.kind, rule.pollutant, rule.mean, rule.runs)


@functools.lru_cache(maxsize=4096)
def _rule(definition: str) -> AlertRule:
    return rule_from_json(definition)


class _Evaluation:
    """One pass over every rule and place: the pure part, run inside the store's commit."""

    def __init__(self, store: Store, now: float) -> None:
        self.store = store
        self.now = now
        self.at = utc_datetime(now)
        self.states: list[StateRow] = []
        self.notes: list[Notification] = []
        self.history: list[HistoryRow] = []
        self.transitions: list[AlertTransition] = []
        self.renewed: list[tuple[str, str, float | None, float | None]] = []
        self.obs: Observations

    def __call__(
        self,
        rules: list[tuple[str, str, float]],
        stored: dict[tuple[str, str], tuple[Any, ...]],
    ) -> Decision:
        parsed = [(name, _rule(definition), created_at) for name, definition, created_at in rules]
        # Observed inside the commit: an evaluator that waited for another one's turn
        # judges by the same (or newer) readings, never by older ones. Counting dead
        # letters reads the whole queue: only when a rule watches them.
        watched = any(rule.kind == "dead_letters" for _, rule, _ in parsed)
        self.obs = observe(self.store, now=self.now, dead_letters=watched)
        by_rule: dict[str, dict[str, tuple[Any, ...]]] = defaultdict(dict)
        for (name, place), row in stored.items():
            by_rule[name][place] = row
        signals: dict[tuple[Any, ...], tuple[dict[str, float], float | None]] = {}
        now, renewed = self.now, self.renewed
        for name, rule, created_at in parsed:
            quiet = rule.quiet
            held = quiet is not None and quiet.contains(now)
            rows = by_rule.get(name, {})
            levels = _levels(rule)
            fire = levels.fire
            key = _signal_key(rule)
            if key not in signals:
                signals[key] = _signal(rule, self.obs)
            values, missing = signals[key]
            for place in _places(rule, self.obs) | rows.keys():
                value = values.get(place, missing)
                found = rows.get(place)
                if found is None:
                    if value is None or value <= fire:
                        continue
                    row = StateRow(name, place)
                else:
                    # (rule, place, state, since, transition, value, peak, firing_since,
                    # notified, notified_at, repeats): most pairs neither move nor owe a
                    # notification, and only their number (while pending or firing) changes.
                    state = found[2]
                    if (value is None or _next(levels, state, found[3], value, now) is None) and (
                        _owed(levels, state, found[8], found[9], now) is None
                    ):
                        if value is not None and state != "ok":
                            number = peak = _storable(value)
                            if found[6] is not None and value <= found[6]:
                                peak = found[6]
                            if number != found[5] or peak != found[6]:
                                renewed.append((name, place, number, peak))
                        continue
                    row = StateRow(*found)
                self._step(rule, levels, row, value)
                self._notify(rule, levels, row, f"{name}@{created_at:.0f}", held, quiet)
                if row.as_tuple() != found:
                    self.states.append(row)
        return Decision(self.states, self.notes, self.history, renewed)

    def _move(
        self, rule: AlertRule, row: StateRow, after: str, event: str, detail: str | None = None
    ) -> None:
        before = row.state
        row.state, row.since = after, self.now
        row.transition += 1
        self.history.append(
            HistoryRow(
                self.now, rule.name, row.place, event, row.transition, None, row.value, detail
            )
        )
        self.transitions.append(
            AlertTransition(
                rule.name,
                row.place,
                before,
                after,
                self.at,
                row.value,
                row.transition,
            )  # type: ignore[arg-type]
        )

    def _step(self, rule: AlertRule, levels: _Levels, row: StateRow, value: float | None) -> None:
        if value is None:
            return  # nothing to judge by (no recent readings): the state stays
        event = _next(levels, row.state, row.since, value, self.now)
        if row.state == "ok" and event is None:
            return  # an ok pair's row keeps the number it last moved with: no write
        row.value = _storable(value)
        if row.state == "ok":
            row.peak, row.firing_since = row.value, None
            if event == "pending":
                self._move(rule, row, "pending", "pending")
            else:
                self._fire(rule, row)
            return
        row.peak = _storable(max(value, row.peak if row.peak is not None else -math.inf))
        if event == "cleared":
            self._move(rule, row, "ok", "cleared")
        elif event == "firing":
            self._fire(rule, row)
        elif event == "resolved":
            self._move(rule, row, "ok", "resolved", f"peak {row.peak!r}")

    def _fire(self, rule: AlertRule, row: StateRow) -> None:
        self._move(rule, row, "firing", "firing")
        row.firing_since, row.repeats = self.now, 0

    def _notify(
        self, rule: AlertRule, levels: _Levels, row: StateRow, key: str, held: bool, quiet: Any
    ) -> None:
        owed = _owed(levels, row.state, row.notified, row.notified_at, self.now)
        if owed is None:
            return
        told, repeat = owed
        if held:
            self._hold(rule, row, key, quiet)
            return
        if row.state == "firing":
            title, body = firing_message(rule, row, repeat=repeat)
            kind, notify_type = ("REPEAT" if repeat else "FIRING"), "failure"
        else:
            title, body = resolved_message(rule, row)
            kind, notify_type = "RESOLVED", "success"
        if repeat:
            row.repeats += 1
        suffix = f":repeat{row.repeats}" if repeat else ""
        for channel in rule.notify:
            dedup = f"alert:{key}:{row.place}:{row.transition}{suffix}:{channel}"
            message = {
                "rule": rule.name,
                "place": row.place,
                "channel": channel,
                "kind": kind,
                "transition": row.transition,
                "key": dedup,
                "title": title,
                "body": body,
                "notify_type": notify_type,
            }
            self.notes.append(Notification(message, SEND_TOPIC, dedup, SEND_BACKOFF))
            self.history.append(
                HistoryRow(
                    self.now,
                    rule.name,
                    row.place,
                    "queued",
                    row.transition,
                    channel,
                    row.value,
                    kind,
                )
            )
        row.notified, row.notified_at = told, self.now

    def _hold(self, rule: AlertRule, row: StateRow, key: str, quiet: Any) -> None:
        """Quiet hours: the notification waits; an evaluation is queued for their end."""
        ends = quiet.ends_after(self.now)
        moved = self.transitions and self.transitions[-1].rule == rule.name
        if moved and self.transitions[-1].place == row.place:
            detail = f"quiet hours {rule.quiet_hours}, until {london_text(ends)}"
            self.history.append(
                HistoryRow(
                    self.now, rule.name, row.place, "held", row.transition, None, row.value, detail
                )
            )
        self.notes.append(
            Notification(
                {"reason": "quiet hours ended", "rule": rule.name},
                EVALUATE_TOPIC,
                f"alert-quiet-end:{key}:{ends:.0f}",
                delay=max(0.0, ends - self.now),
            )
        )


class _Levels(NamedTuple):
    """A rule's numbers for one step, read once per evaluation."""

    fire: float
    clear: float
    #: Seconds a pending pair waits before firing (0: it fires at once).
    pending: float
    #: Seconds between repeats of a firing notification, or None.
    repeat: float | None


def _levels(rule: AlertRule) -> _Levels:
    repeat = None if rule.repeat_hours is None else rule.repeat_hours * HOUR
    return _Levels(rule.fire_above, rule.clear_at, rule.for_hours * HOUR, repeat)


def _next(levels: _Levels, state: str, since: float | None, value: float, now: float) -> str | None:
    """The event one step of a pair in ``state`` makes with its number ``value`` now:
    "pending", "firing", "cleared" or "resolved"; None if it stays."""
    active = value > levels.fire
    if state == "ok":
        if not active:
            return None
        return "pending" if levels.pending else "firing"
    if state == "pending":
        if not active:
            return "cleared"
        return "firing" if now - (since or now) >= levels.pending else None
    return "resolved" if value <= levels.clear else None


def _owed(
    levels: _Levels, state: str, notified: str, notified_at: float | None, now: float
) -> tuple[str, bool] | None:
    """What a pair in ``state`` owes its channels now: what to tell them ("firing" or
    "ok") and whether it is a repeat of a firing; None if nothing."""
    told = "firing" if state == "firing" else "ok"
    if told != notified:
        return told, False
    repeat = levels.repeat
    if (
        state == "firing"
        and repeat is not None
        and notified_at is not None
        and now - notified_at >= repeat
    ):
        return told, True
    return None


def _storable(value: float) -> float | None:
    """A number for the store: infinity (a place with no readings at all) is kept as None."""
    return None if math.isinf(value) else value


def evaluate_alerts(store: Store) -> list[AlertTransition]:
    """Evaluate every alert rule now (the store's clock) and queue the notifications owed.

    Returns the transitions made (empty when nothing changed). Safe to call from several
    processes at once: they take turns, and no transition or notification is made twice.
    The collector's scheduler calls it after each collection that stored new or revised
    values and every 15 minutes; call it yourself after changing readings by hand.
    """
    if not table.has_rules(store):
        return []
    now = store.now()
    run = _Evaluation(store, now)
    table.evaluate(store, now=now, decide=run)
    return run.transitions
