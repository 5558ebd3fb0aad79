"""Alert rules: what to watch, when it fires and clears, when to keep quiet, whom to tell.

:class:`AlertRule` is a frozen value checked when it is made, so a bad rule is refused
before anything is stored. Air rules compare a pollutant's hourly value or 24-hour mean
with ``above``; the DAQI form compares the UK index; the collector's rules count failed
runs, hours since the newest reading and dead letters. Every kind reduces to one number
per place, which fires above :attr:`AlertRule.fire_above` and clears at or below
:attr:`AlertRule.clear_at`.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import KW_ONLY, asdict, dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .._errors import InvalidAlertRuleError
from ..daqi import daqi_bands

__all__ = [
    "DAQI_LEVELS",
    "KINDS",
    "LONDON_TZ",
    "MEANS",
    "POLLUTANTS",
    "AlertRule",
    "QuietHours",
    "london_text",
    "parse_quiet_hours",
    "rule_from_json",
]

#: The pollutant columns an air rule can watch.
POLLUTANTS = ("pm2_5", "pm10")
#: What an air rule compares: the newest hourly value, or the mean of the newest 24 hours.
MEANS = ("hour", "24h")
#: The kinds of rule: on the air, on the UK DAQI, and on the collector's health.
KINDS = ("air", "daqi", "collection", "stale", "dead_letters")
#: The DAQI levels in words, each with its lowest index.
DAQI_LEVELS = {"low": 1, "moderate": 4, "high": 7, "very high": 10}
#: Quiet hours are wall-clock times here.
LONDON_TZ = ZoneInfo("Europe/London")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.:-]{0,99}")
_CHANNEL = re.compile(r"[A-Za-z0-9_]{1,50}")
_QUIET = re.compile(r"\s*(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})\s*")
_ALIASES = {"pm25": "pm2_5", "pm2.5": "pm2_5", "pm2_5": "pm2_5", "pm10": "pm10"}


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window of Europe/London wall-clock time (may cross midnight)."""

    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, when: float) -> bool:
        """Whether Unix time ``when`` falls inside the window (London time)."""
        local = datetime.fromtimestamp(when, LONDON_TZ).time()
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def ends_after(self, when: float) -> float:
        """The Unix time the window that holds ``when`` ends (the next ``end`` in London)."""
        local = datetime.fromtimestamp(when, LONDON_TZ)
        day = local.date()
        for offset in range(3):
            candidate = datetime.combine(day + timedelta(days=offset), self.end, LONDON_TZ)
            if candidate.timestamp() > when:
                return candidate.timestamp()
        raise AssertionError("unreachable: an end time comes within two days")


def parse_quiet_hours(text: object) -> QuietHours:
    """``"22:00-07:00"`` as :class:`QuietHours`; InvalidAlertRuleError says what to write."""
    match = _QUIET.fullmatch(text) if isinstance(text, str) else None
    hint = 'write quiet hours as "HH:MM-HH:MM" in Europe/London time, e.g. "22:00-07:00"'
    if match is None:
        raise InvalidAlertRuleError(f"quiet_hours {text!r} does not parse; {hint}")
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    if not (h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60):
        raise InvalidAlertRuleError(f"quiet_hours {text!r} is not a time of day; {hint}")
    start, end = time(h1, m1), time(h2, m2)
    if start == end:
        raise InvalidAlertRuleError(f"quiet_hours {text!r} starts when it ends; {hint}")
    return QuietHours(start, end)


def _number(value: object, what: str, *, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidAlertRuleError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        least = "zero or more" if allow_zero else "more than zero"
        raise InvalidAlertRuleError(f"{what} must be a finite number {least}, got {value!r}")
    return number


def _pollutant(value: object) -> str:
    name = _ALIASES.get(value.strip().lower()) if isinstance(value, str) else None
    if name is None:
        raise InvalidAlertRuleError(
            f"unknown pollutant {value!r}; write pollutant='pm2_5' or pollutant='pm10'"
        )
    return name


def _daqi_level(band: object) -> tuple[str, int]:
    """A band given as a level ("High") or an index (7): its level name and lowest index."""
    if isinstance(band, int) and not isinstance(band, bool) and 1 <= band <= 10:
        return daqi_bands("pm2_5")[band - 1].level, band
    if isinstance(band, str) and band.strip().lower() in DAQI_LEVELS:
        low = DAQI_LEVELS[band.strip().lower()]
        return daqi_bands("pm2_5")[low - 1].level, low
    raise InvalidAlertRuleError(
        f"unknown DAQI band {band!r}; write one of 'Low', 'Moderate', 'High', 'Very High' "
        "or an index from 1 to 10"
    )


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One alert rule. The plain form watches the air::

        AlertRule("pm25-london", pollutant="pm2_5", above=35, location="London", mean="24h")

    fires when the value is above ``above`` (after ``for_hours`` of pending), clears at or
    below ``clear_below`` (default ``above``), repeats every ``repeat_hours`` while firing,
    holds notifications during ``quiet_hours`` ("22:00-07:00", Europe/London) and tells
    the channels in ``notify`` (each an ``AIRQ_NB_ALERT_<NAME>`` variable). ``location``
    None means every place. The other kinds: :meth:`daqi`, :meth:`collection_failing`,
    :meth:`stale_data`, :meth:`dead_letters`.
    """

    name: str
    _: KW_ONLY
    pollutant: str | None = None
    above: float | None = None
    location: str | None = None
    mean: str = "hour"
    clear_below: float | None = None
    for_hours: float = 0
    repeat_hours: float | None = None
    quiet_hours: str | None = None
    notify: tuple[str, ...] = ("default",)
    kind: str = "air"
    #: DAQI rules: the lowest level that fires ("High" fires on High and Very High).
    band: str | int | None = None
    #: Collection rules: how many failed runs in a row fire.
    runs: int | None = None
    #: Stale-data rules: how old (hours) the newest reading may be.
    hours: float | None = None
    #: Dead-letter rules: the topic watched (None: every topic).
    topic: str | None = None

    def __post_init__(self) -> None:
        put = object.__setattr__
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise InvalidAlertRuleError(
                f"alert rule name {self.name!r} must be 1-100 letters, digits, spaces or "
                "_ . : - (starting with a letter or digit), e.g. 'pm25-london'"
            )
        if self.kind not in KINDS:
            raise InvalidAlertRuleError(f"unknown rule kind {self.kind!r}; use one of {KINDS}")
        location = self.location
        if location is not None and not isinstance(location, str):
            location = getattr(location, "name", location)  # an airq_nb.Location
        if location is not None and (not isinstance(location, str) or not location.strip()):
            raise InvalidAlertRuleError(
                f"location must be a place name such as 'London' or 'laqn:KF1', or None for "
                f"every place; got {self.location!r}"
            )
        put(self, "location", location)
        notify = (self.notify,) if isinstance(self.notify, str) else tuple(self.notify)
        if not notify or not all(isinstance(c, str) and _CHANNEL.fullmatch(c) for c in notify):
            raise InvalidAlertRuleError(
                f"notify must name one or more channels (letters, digits, _), e.g. "
                f"notify=('team',) for AIRQ_NB_ALERT_TEAM; got {self.notify!r}"
            )
        put(self, "notify", tuple(c.lower() for c in notify))
        put(self, "for_hours", _number(self.for_hours, "for_hours"))
        if self.repeat_hours is not None:
            put(self, "repeat_hours", _number(self.repeat_hours, "repeat_hours", allow_zero=False))
        if self.quiet_hours is not None:
            put(self, "quiet_hours", str(parse_quiet_hours(self.quiet_hours)))
        getattr(self, f"_check_{self.kind}")()

    def _check_air(self) -> None:
        if self.pollutant is None or self.above is None:
            raise InvalidAlertRuleError(
                "an air rule needs pollutant= and above=, e.g. AlertRule('pm25', "
                "pollutant='pm2_5', above=35)"
            )
        object.__setattr__(self, "pollutant", _pollutant(self.pollutant))
        if self.mean not in MEANS:
            raise InvalidAlertRuleError(f"mean must be 'hour' or '24h', got {self.mean!r}")
        self._check_levels()

    def _check_levels(self) -> None:
        above = _number(self.above, "above")
        object.__setattr__(self, "above", above)
        if self.clear_below is not None:
            clear = _number(self.clear_below, "clear_below")
            if clear > above:
                raise InvalidAlertRuleError(
                    f"clear_below ({clear:g}) is above above ({above:g}); write a clear level "
                    f"at or below {above:g}, e.g. clear_below={above * 0.8:g}"
                )
            object.__setattr__(self, "clear_below", clear)

    def _check_daqi(self) -> None:
        level, low = _daqi_level(self.band)
        object.__setattr__(self, "band", level if isinstance(self.band, str) else low)
        if self.pollutant is not None:
            object.__setattr__(self, "pollutant", _pollutant(self.pollutant))
        object.__setattr__(self, "mean", "24h")
        object.__setattr__(self, "above", float(low - 1))
        self._no_levels_given(clear=True)

    def _check_collection(self) -> None:
        runs = self.runs
        if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
            raise InvalidAlertRuleError(f"runs must be a whole number of 1 or more, got {runs!r}")
        object.__setattr__(self, "above", float(runs - 1))
        self._no_levels_given(clear=True)

    def _check_stale(self) -> None:
        hours = _number(self.hours, "hours", allow_zero=False)
        object.__setattr__(self, "hours", hours)
        object.__setattr__(self, "above", hours)
        self._no_levels_given(clear=True)

    def _check_dead_letters(self) -> None:
        if self.topic is not None and (not isinstance(self.topic, str) or not self.topic):
            raise InvalidAlertRuleError(f"topic must be a topic name or None, got {self.topic!r}")
        object.__setattr__(self, "above", 0.0)
        self._no_levels_given(clear=True)

    def _no_levels_given(self, *, clear: bool) -> None:
        if clear and self.clear_below is not None:
            raise InvalidAlertRuleError(
                f"clear_below is for air rules; a {self.kind} rule clears when its condition ends"
            )

    # -- the other kinds ------------------------------------------------------------------

    @classmethod
    def daqi(
        cls, name: str, *, band: str | int = "High", pollutant: str | None = None, **options: Any
    ) -> AlertRule:
        """Fire when the UK DAQI (24-hour mean; of ``pollutant``, else the worse of PM2.5 and
        PM10) is in ``band`` or worse: "Low", "Moderate", "High", "Very High" or 1-10."""
        return cls(name, kind="daqi", band=band, pollutant=pollutant, **options)  # type: ignore[arg-type]

    @classmethod
    def collection_failing(cls, name: str, *, runs: int = 3, **options: Any) -> AlertRule:
        """Fire when a place's collection failed ``runs`` runs in a row or was dead-lettered."""
        return cls(name, kind="collection", runs=runs, **options)

    @classmethod
    def stale_data(cls, name: str, *, hours: float = 3, **options: Any) -> AlertRule:
        """Fire when a place's newest reading is more than ``hours`` old."""
        return cls(name, kind="stale", hours=hours, **options)

    @classmethod
    def dead_letters(cls, name: str, *, topic: str | None = None, **options: Any) -> AlertRule:
        """Fire while a topic (``topic``, or each topic) has dead letters."""
        return cls(name, kind="dead_letters", topic=topic, **options)

    # -- what evaluation uses -------------------------------------------------------------

    @property
    def fire_above(self) -> float:
        """The rule's number fires when it is above this."""
        assert self.above is not None
        return self.above

    @property
    def clear_at(self) -> float:
        """A firing rule clears when its number is at or below this."""
        return self.clear_below if self.clear_below is not None else self.fire_above

    @property
    def quiet(self) -> QuietHours | None:
        """The parsed quiet hours, or None."""
        return None if self.quiet_hours is None else parse_quiet_hours(self.quiet_hours)

    def describe(self) -> str:
        """What the rule watches, in words (used in notifications and lists)."""
        where = self.location or "every place"
        if self.kind == "air":
            what = f"{_label(self.pollutant)} {'hourly value' if self.mean == 'hour' else '24-hour mean'}"
            clear = (
                f", clears at or below {self.clear_at:g}" if self.clear_below is not None else ""
            )
            return f"{what} above {self.above:g} µg/m³{clear} at {where}"
        if self.kind == "daqi":
            of = _label(self.pollutant) if self.pollutant else "PM2.5/PM10"
            return f"DAQI ({of}) {self.band} or worse at {where}"
        if self.kind == "collection":
            return f"collection of {where} failed {self.runs} runs in a row or was dead-lettered"
        if self.kind == "stale":
            return f"newest reading of {where} older than {self.hours:g} h"
        return f"dead letters on {self.topic or 'any topic'}"

    def to_json(self) -> str:
        """The rule as stored: its given fields as JSON (no secrets: channels are names)."""
        data = {k: v for k, v in asdict(self).items() if v is not None}
        data["notify"] = list(self.notify)
        for derived in ("above", "mean") if self.kind != "air" else ():
            data.pop(derived, None)
        return json.dumps(data, sort_keys=True)


def rule_from_json(text: str) -> AlertRule:
    """A stored rule back as an :class:`AlertRule`."""
    data = json.loads(text)
    data["notify"] = tuple(data.get("notify", ("default",)))
    name = data.pop("name")
    return AlertRule(name, **data)


def _label(pollutant: str | None) -> str:
    return {"pm2_5": "PM2.5", "pm10": "PM10"}.get(pollutant or "", str(pollutant))


@functools.lru_cache(maxsize=4096)
def london_text(when: float | None) -> str:
    """A Unix time as London wall-clock text with its zone (GMT/BST), for messages.

    Cached: an evaluation's thousands of messages share a few times (its own, and when
    each alert began firing)."""
    if when is None:
        return "unknown"
    return datetime.fromtimestamp(when, UTC).astimezone(LONDON_TZ).strftime("%Y-%m-%d %H:%M %Z")
