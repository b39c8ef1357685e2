"""The calendar domain: constraints, expected states and listed events.

An *expected state* says what a correct calendar must look like at one point
of a dialogue (NeMo-Gym's `exp_cal_state`); a *listed event* is one entry of
the JSON calendar an assistant prints (read in `convo_sim.domains.calendar._reply`,
re-exported here). Event ids are strings throughout, because the reference
grader keys every event by `str(event_id)`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from typing import Any, Final, Literal

from convo_sim.domains.calendar._listing import json_list_span
from convo_sim.domains.calendar._reply import (
    ListedEvent,
    _json_id,
    extract_json_list,
    format_calendar,
    parse_listed_events,
)
from convo_sim.domains.calendar._times import (
    MINUTES_PER_DAY,
    CalendarDataError,
    _parse_time,
    format_12h,
    format_24h,
    parse_time,
)

__all__ = [
    "WORKING_WINDOW",
    "Constraint",
    "ConstraintFormatError",
    "ConstraintKind",
    "ExpectedEvent",
    "ExpectedState",
    "ExpectedStateError",
    "ListedEvent",
    "extract_json_list",
    "format_calendar",
    "json_list_span",
    "parse_constraint",
    "parse_listed_events",
]

ConstraintKind = Literal["before", "after", "between", "at"]

WORKING_WINDOW: Final = (10 * 60, 16 * 60)
"""The working day of the public data, 10:00 to 16:00, in minutes."""

_NEMO_FIELDS: Final = frozenset(("constraint", "min_time", "max_time"))

_SINGLE: Final = re.compile(r"\s*(before|after|at)\s+(\S.*?)\s*", re.IGNORECASE | re.DOTALL)
_BETWEEN: Final = re.compile(r"\s*between\s+(\S.*?)\s+and\s+(\S.*?)\s*", re.IGNORECASE | re.DOTALL)


class ConstraintFormatError(CalendarDataError):
    """A constraint is not `before T`, `after T`, `between T1 and T2` or `at T`."""

    def __init__(self, value: object, why: str = "") -> None:
        super().__init__(
            f"not a constraint: {value!r}{'; ' + why if why else ''}; expected 'before T', "
            "'after T', 'between T1 and T2' or 'at T' with times like '1pm' or '11:45am'",
            value=value,
        )


class ExpectedStateError(CalendarDataError):
    """An expected state (NeMo `exp_cal_state` or seed `expected_state`) is malformed.

    Attributes:
        event_id: the key of the offending entry, if one is at fault.
        field: the offending field of that entry, if one is at fault.
    """

    def __init__(
        self, problem: str, *, value: object, event_id: str | None = None, field: str | None = None
    ) -> None:
        self.event_id = event_id
        self.field = field
        where = "" if event_id is None else f"event {event_id!r}: "
        super().__init__(f"{where}{problem}", value=value)


@dataclass(frozen=True, slots=True)
class Constraint:
    """A time constraint on one event, times in minutes since midnight.

    `before T`: ends at or before T. `after T`: starts at or after T.
    `between T and U`: starts at or after T and ends at or before U.
    `at T`: starts exactly at T.

    Attributes:
        kind: which of the four constraints.
        time: T.
        until: U, for `between` only.
    """

    kind: ConstraintKind
    time: int
    until: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("before", "after", "between", "at"):
            raise ValueError(f"unknown constraint kind {self.kind!r}")
        if (self.until is None) == (self.kind == "between"):
            raise ValueError(f"'until' is required for 'between' and only for it: {self!r}")
        if self.until is not None and self.until < self.time:
            raise ValueError(f"'between' must not end before it starts: {self!r}")

    @property
    def text(self) -> str:
        """NeMo-Gym's wording, e.g. `"between 10am and 11:45am"` (the end of the day is `24:00`)."""
        if self.until is not None:
            return f"between {_clock_text(self.time)} and {_clock_text(self.until)}"
        return f"{self.kind} {_clock_text(self.time)}"

    def allows(self, start: int, duration: int) -> bool:
        """Whether an event starting at `start` and lasting `duration` minutes satisfies this."""
        end = start + duration
        if self.kind == "before":
            return end <= self.time
        if self.kind == "after":
            return start >= self.time
        if self.kind == "at":
            return start == self.time
        assert self.until is not None
        return start >= self.time and end <= self.until

    def __str__(self) -> str:
        return self.text


def _clock_text(minutes: int) -> str:
    # 12-hour text has no end of day, and `12am` means midnight at the start;
    # `24:00` reads back as 1440 here and in the reference alike.
    return format_12h(minutes) if minutes < MINUTES_PER_DAY else format_24h(minutes)


def parse_constraint(text: str | None) -> Constraint | None:
    """Parse NeMo-Gym's constraint text; `None` (no constraint) stays `None`.

    Letter case and extra whitespace are ignored; times are read by `parse_time`.

    Raises:
        ConstraintFormatError: `text` is not one of the four forms or names a bad time.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise ConstraintFormatError(text)
    return _parse_constraint(text)


# Cached like `parse_time`: expected states re-read the same constraints every
# turn, and a `Constraint` is immutable.
@functools.lru_cache(maxsize=4096)
def _parse_constraint(text: str) -> Constraint:
    try:
        if match := _BETWEEN.fullmatch(text):
            start, until = parse_time(match[1]), parse_time(match[2])
            if until < start:
                raise ConstraintFormatError(text, "the second time is earlier than the first")
            return Constraint("between", start, until)
        if match := _SINGLE.fullmatch(text):
            kind: ConstraintKind = match[1].lower()  # type: ignore[assignment]
            return Constraint(kind, parse_time(match[2]))
    except CalendarDataError as exc:
        if isinstance(exc, ConstraintFormatError):
            raise
        raise ConstraintFormatError(text, str(exc)) from exc
    raise ConstraintFormatError(text)


@dataclass(frozen=True, slots=True)
class ExpectedEvent:
    """One event of an expected state.

    Attributes:
        event_id: the key the event is graded under (`str` of the listed id).
        duration: the exact duration the listing must show, in minutes.
        constraint: the user's time constraint, if any.
        min_time: earliest allowed start, minutes since midnight.
        max_time: latest allowed end, minutes since midnight.
    """

    event_id: str
    duration: int
    constraint: Constraint | None = None
    min_time: int = WORKING_WINDOW[0]
    max_time: int = WORKING_WINDOW[1]

    def __post_init__(self) -> None:
        if self.duration <= 0:
            raise ValueError(f"duration must be positive: {self!r}")
        if self.min_time > self.max_time:
            raise ValueError(f"min_time is after max_time: {self!r}")

    def allows(self, start: int) -> bool:
        """Whether starting at `start` keeps the event in its window and constraint."""
        end = start + self.duration
        if start < self.min_time or end > self.max_time:
            return False
        return self.constraint is None or self.constraint.allows(start, self.duration)

    def to_nemo(self) -> dict[str, object]:
        """This event as an entry of NeMo-Gym's `exp_cal_state`."""
        return {
            "event_id": _json_id(self.event_id),
            "duration": self.duration,
            "constraint": None if self.constraint is None else self.constraint.text,
            "min_time": format_24h(self.min_time),
            "max_time": format_24h(self.max_time),
        }


# Events are immutable, and a run grades the same expected states over and
# over (every sample of a scenario): building one is most of reading a state.
_expected_event: Final = functools.lru_cache(maxsize=8192)(ExpectedEvent)


class ExpectedState(Mapping[str, ExpectedEvent]):
    """The expected calendar at one point of a dialogue: event id to `ExpectedEvent`.

    Iteration follows insertion order, which is the order the grader checks
    events in (as the reference does).
    """

    __slots__ = ("_events",)

    def __init__(self, events: Iterable[ExpectedEvent] = ()) -> None:
        self._events: dict[str, ExpectedEvent] = {}
        for event in events:
            if event.event_id in self._events:
                raise ValueError(f"event id {event.event_id!r} occurs twice")
            self._events[event.event_id] = event

    @classmethod
    def from_nemo(cls, data: Mapping[str, Any]) -> ExpectedState:
        """Read NeMo-Gym's `exp_cal_state`.

        Each entry needs `duration` (a positive integer), `constraint` (null
        or constraint text), `min_time` and `max_time`. Entries are keyed by
        the mapping's keys (as strings); an entry's own `event_id` and
        `event_name` are not used, as in the reference.

        Raises:
            ExpectedStateError: an entry is missing a field or holds a bad value.
        """
        return cls._nemo(_entries(data))

    @classmethod
    def _nemo(cls, entries: list[tuple[str, Mapping[str, Any]]]) -> ExpectedState:
        events = []
        for key, entry in entries:
            # The usual entry, read without the checks that name a fault;
            # anything unusual takes the careful path below, which does.
            try:
                duration, rule = entry["duration"], entry["constraint"]
                if type(duration) is int and duration > 0:
                    low, high = _parse_time(entry["min_time"]), _parse_time(entry["max_time"])
                    constraint = None if rule is None else _parse_constraint(rule)
                    if low <= high:
                        events.append(_expected_event(key, duration, constraint, low, high))
                        continue
            except (KeyError, TypeError, AttributeError, CalendarDataError):
                pass
            duration = _duration_field(entry, key)
            low, high = _time_field(entry, key, "min_time"), _time_field(entry, key, "max_time")
            if low > high:
                raise ExpectedStateError(
                    "min_time is after max_time", value=entry, event_id=key, field="max_time"
                )
            try:
                constraint = parse_constraint(_field(entry, key, "constraint"))
            except ConstraintFormatError as exc:
                raise ExpectedStateError(
                    str(exc), value=exc.value, event_id=key, field="constraint"
                ) from exc
            events.append(ExpectedEvent(key, duration, constraint, low, high))
        return cls(events)

    @classmethod
    def from_seed(cls, data: Mapping[str, Any]) -> ExpectedState:
        """Read the seed format, an exact calendar: `{id: {event_name, start_time, duration}}`.

        Each event becomes `at start_time` with its exact duration. Its window
        is the working window 10:00-16:00 widened just enough to contain the
        event, so that the expected calendar itself always passes. Event
        names are not graded.

        Raises:
            ExpectedStateError: an entry is missing a field or holds a bad value.
        """
        events = []
        for key, entry in _entries(data):
            start = _time_field(entry, key, "start_time")
            duration = _duration_field(entry, key)
            low, high = min(WORKING_WINDOW[0], start), max(WORKING_WINDOW[1], start + duration)
            events.append(ExpectedEvent(key, duration, Constraint("at", start), low, high))
        return cls(events)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExpectedState:
        """Read either format.

        The seed format is recognised when every entry has a `start_time` and
        none has a field of NeMo-Gym's (`constraint`, `min_time`,
        `max_time`). An entry with both is NeMo-Gym's: the reference grades
        by those fields and ignores `start_time`, and so does this.

        Raises:
            ExpectedStateError: `data` is malformed in the format it appears to be.
        """
        entries = _entries(data)
        if entries and all(
            "start_time" in entry and _NEMO_FIELDS.isdisjoint(entry) for _, entry in entries
        ):
            return cls.from_seed(data)
        return cls._nemo(entries)

    def to_nemo(self) -> dict[str, dict[str, object]]:
        """This state as NeMo-Gym's `exp_cal_state`."""
        return {key: event.to_nemo() for key, event in self._events.items()}

    def __getitem__(self, key: str) -> ExpectedEvent:
        return self._events[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._events)

    def __len__(self) -> int:
        return len(self._events)

    # The dict's own views and lookup: Mapping's defaults go through
    # __getitem__ in Python, and the simulated user and the grader walk every
    # expected state several times a turn.
    def __contains__(self, key: object) -> bool:
        return key in self._events

    def keys(self) -> KeysView[str]:
        return self._events.keys()

    def items(self) -> ItemsView[str, ExpectedEvent]:
        return self._events.items()

    def values(self) -> ValuesView[ExpectedEvent]:
        return self._events.values()

    def __repr__(self) -> str:
        return f"ExpectedState({list(self._events.values())!r})"


def _entries(data: object) -> list[tuple[str, Mapping[str, Any]]]:
    if not isinstance(data, Mapping):
        raise ExpectedStateError(f"expected a mapping of event ids, got {data!r}", value=data)
    entries = []
    for key, entry in data.items():
        if type(entry) is not dict and not isinstance(entry, Mapping):  # dict: the usual, fast
            raise ExpectedStateError(
                f"entry must be an object, got {entry!r}", value=entry, event_id=str(key)
            )
        entries.append((str(key), entry))
    return entries


def _field(entry: Mapping[str, Any], key: str, name: str) -> Any:
    if name not in entry:
        raise ExpectedStateError(f"missing {name!r}", value=entry, event_id=key, field=name)
    return entry[name]


def _duration_field(entry: Mapping[str, Any], key: str) -> int:
    """The entry's duration: a positive JSON integer (a bool is not one)."""
    duration = _field(entry, key, "duration")
    if isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0:
        raise ExpectedStateError(
            f"duration must be a positive integer, got {duration!r}",
            value=duration,
            event_id=key,
            field="duration",
        )
    return duration


def _time_field(entry: Mapping[str, Any], key: str, name: str) -> int:
    value = _field(entry, key, name)
    try:
        return parse_time(value)
    except CalendarDataError as exc:
        raise ExpectedStateError(str(exc), value=value, event_id=key, field=name) from exc
