"""The calendar domain: constraints, expected states and listed events.

An *expected state* says what a correct calendar must look like at one point
of a dialogue (NeMo-Gym's `exp_cal_state`); a *listed event* is one entry of
the JSON calendar an assistant prints. Event ids are strings throughout,
because the reference grader keys every event by `str(event_id)`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from typing import Any, Final, Literal

from convo_sim.calendar.times import CalendarDataError, format_12h, format_24h, parse_time

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
        """NeMo-Gym's wording, e.g. `"between 10am and 11:45am"`."""
        if self.until is not None:
            return f"between {format_12h(self.time)} and {format_12h(self.until)}"
        return f"{self.kind} {format_12h(self.time)}"

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
        events = []
        for key, entry in _entries(data):
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
        """Read either format: entries that all have `start_time` are the seed format.

        Raises:
            ExpectedStateError: `data` is malformed in the format it appears to be.
        """
        entries = _entries(data)
        if entries and all("start_time" in entry for _, entry in entries):
            return cls.from_seed(data)
        return cls.from_nemo(data)

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
        if not isinstance(entry, Mapping):
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


def _json_id(event_id: str) -> int | str:
    # The assistant's format has integer ids; keep anything else as written.
    return int(event_id) if event_id.isascii() and event_id.isdigit() else event_id


@dataclass(frozen=True, slots=True)
class ListedEvent:
    """One entry of a calendar as the assistant prints it.

    Attributes:
        event_id: `str` of the printed id.
        event_name: the printed name.
        start_time: minutes since midnight.
        duration: minutes.
    """

    event_id: str
    event_name: str
    start_time: int
    duration: int

    @property
    def end_time(self) -> int:
        """Minutes since midnight at which the event ends (exclusive)."""
        return self.start_time + self.duration

    @classmethod
    def from_json(cls, item: object) -> ListedEvent:
        """Read one printed entry strictly (`start_time` by `parse_time`, integer `duration`).

        Raises:
            CalendarDataError: `item` is not a well-formed calendar entry.
        """
        if not isinstance(item, Mapping) or not {"event_id", "start_time", "duration"} <= set(item):
            raise CalendarDataError(
                f"not a calendar entry: {item!r}; expected an object with "
                "'event_id', 'start_time' and 'duration'",
                value=item,
            )
        duration = item["duration"]
        if isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0:
            raise CalendarDataError(
                f"duration must be a positive integer, got {duration!r}", value=duration
            )
        name = item.get("event_name", "")
        return cls(str(item["event_id"]), str(name), parse_time(item["start_time"]), duration)

    def to_json(self) -> dict[str, object]:
        """This entry in the assistant's format (`start_time` as `HH:MM`)."""
        return {
            "event_id": _json_id(self.event_id),
            "event_name": self.event_name,
            "start_time": format_24h(self.start_time),
            "duration": self.duration,
        }


# json.dumps(..., ensure_ascii=False) builds an encoder per call.
_CALENDAR_JSON: Final = json.JSONEncoder(ensure_ascii=False)


def format_calendar(events: Iterable[ListedEvent]) -> str:
    """The JSON list an assistant should print for `events`, in the given order."""
    return _CALENDAR_JSON.encode([event.to_json() for event in events])


def json_list_span(text: str) -> tuple[int, int] | None:
    """Where the first JSON-like list of objects in `text` is, as `(start, end)`.

    This is exactly the text NeMo-Gym's extraction regular expression finds:
    a `[`, then text in which every square bracket lies inside a `{...}` group
    holding no `}` before it, with at least one `{` later closed by `}`, then
    `]`. The leftmost `[` that starts such a text wins; among its possible
    ends, the one a backtracking engine reaches first. The reference's
    pattern backtracks exponentially on a list without its closing bracket
    (a truncated reply); this computes the same answer in linear time.
    """
    size = len(text)
    if "[" not in text or "{" not in text:
        return None
    start = text.find("[")
    end = text.find("]", start)
    if end >= 0 and text.count("[") == 1 and text.count("]") == 1:
        # One "[" before one "]" (every reply of the rule-based assistant):
        # the pattern's only choice is that pair, with no brackets between,
        # so it matches exactly when a "{" there is followed by a "}" before
        # the "]". The general pass below costs ~0.1 ms per reply.
        brace = text.find("{", start, end)
        return (start, end + 1) if brace >= 0 and text.find("}", brace, end) >= 0 else None
    # next_close[p]: index of the first "}" at or after p, or -1.
    next_close = [-1] * (size + 1)
    for p in range(size - 1, -1, -1):
        next_close[p] = p if text[p] == "}" else next_close[p + 1]
    # The pattern after "[" is: items, "{", items, "}", items, "]", where an
    # item is one non-bracket character or a "{...}" group without "}" inside.
    # after_*[p] is where the first match found from p ends (-1: none); the
    # engine tries, at each item, a character, then a group, then moving on.
    # Every choice leads to a later position, so one right-to-left pass gives
    # the engine's depth-first answer without its exponential re-exploration.
    after_close = [-1] * (size + 1)  # items then "]"
    after_open = [-1] * (size + 1)  # items then "}" then items then "]"
    after_start = [-1] * (size + 1)  # items then "{" ... "]"
    for p in range(size - 1, -1, -1):
        char = text[p]
        plain = char not in "[]"
        group = next_close[p + 1] + 1 if char == "{" and next_close[p + 1] >= 0 else -1
        for table, stop_char, then in (
            (after_close, "]", None),
            (after_open, "}", after_close),
            (after_start, "{", after_open),
        ):
            end = table[p + 1] if plain else -1
            if end < 0 and group >= 0:
                end = table[group]
            if end < 0 and char == stop_char:
                end = p + 1 if then is None else then[p + 1]
            table[p] = end
    for p in range(size):
        if text[p] == "[" and after_start[p + 1] >= 0:
            return p, after_start[p + 1]
    return None


def extract_json_list(text: str) -> list[Any] | None:
    """Parse the first JSON-like list of objects in `text` (see `json_list_span`).

    Prose and code fences around the list are fine. Only the first candidate
    is tried, as in the reference: if it is not valid JSON, the result is
    `None` even when a later list would parse. Items are returned as parsed
    and need not all be objects.
    """
    span = json_list_span(text)
    return None if span is None else _decode_list(text, span)


def _decode_list(text: str, span: tuple[int, int]) -> list[Any] | None:
    try:
        parsed = json.loads(text[span[0] : span[1]])
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, list) else None


_EMPTY_LIST: Final = re.compile(r"\[\s*\]")


def parse_listed_events(text: str) -> list[ListedEvent] | None:
    """The calendar printed in `text`, or `None` if there is none or an entry is malformed.

    The calendar is the grader's first JSON list of objects
    (`extract_json_list`). A text with no such list whose first `[` opens an
    empty JSON list (`[]`, as an assistant prints an empty calendar) shows
    the empty calendar, `[]`: the grader's pattern needs an object and cannot
    see it, which changes no grade (see `docs/calendar-grading.md`), but the
    simulated user, the solver and the turn verifiers must tell "an empty
    calendar" from "no calendar".
    """
    span = json_list_span(text)
    if span is None:
        first = text.find("[")
        return [] if first >= 0 and _EMPTY_LIST.match(text, first) else None
    items = _decode_list(text, span)
    if items is None:
        return None
    try:
        return [ListedEvent.from_json(item) for item in items]
    except CalendarDataError:
        return None
