"""Reading an assistant's reply as a calendar: one reading, shared by everyone who reads it.

The grader (`convo_sim.domains.calendar._grading`), the turn verifiers, the
simulated user and the solver assistant all ask one question of a reply:
which calendar does it show? They must get one answer, or a policy could be
paid by one of them and failed by another for the same text. This module is
that answer, in NeMo-Gym's terms:

* a blank reply shows nothing (`empty_reply`), and neither does a reply
  holding `<think>` anywhere (`think_found`);
* the calendar is the first JSON list of objects in the text
  (`json_list_span`): prose and code fences around it are fine, and only
  that first candidate is decoded;
* an entry is keyed by `str(event_id)`; its `start_time` is read by
  `reply_minutes`, the reference's `int()` reading in any letter case
  (`"9:75"` is 10:15, `"10:00 AM"` is 10:00); its `duration` must be a
  JSON number, and equal to a whole, positive number of minutes for the
  entry to be a `ListedEvent` (`60.0` is 60).

The grader keeps the reference's order of checks and its reasons on top of
the same pieces (`reply_minutes`, `entry_start`, `entry_duration`,
`json_list_span`, `decode_list`, `THINK_MARKER`); everyone else reads
`read_reply(text).events`.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from convo_sim.domains.calendar._listing import decode_list, json_list_span
from convo_sim.domains.calendar._times import CalendarDataError, format_24h

__all__ = [
    "THINK_MARKER",
    "CalendarReading",
    "ListedEvent",
    "ReadingProblem",
    "entry_duration",
    "entry_start",
    "extract_json_list",
    "format_calendar",
    "parse_listed_events",
    "read_reply",
    "reply_minutes",
]

THINK_MARKER: Final = "<think>"
"""A reply holding this anywhere earns nothing (NeMo-Gym's rule; `</think>` alone is fine)."""

ReadingProblem = Literal["empty_reply", "think_found", "no_json_list", "bad_entry"]

_EMPTY_LIST: Final = re.compile(r"\[\s*\]")


def reply_minutes(value: object) -> int | None:
    """Read a listed `start_time` as the reference does, in any letter case; None if unreadable.

    The reference reads around the `:` and the `am`/`pm` marker with
    Python's `int()`, so `"10:75"` is 11:15, `"13pm"` is 25:00 and
    `" 1_0:00"` is 10:00; convo-sim keeps that, and reads `"10:00 AM"` too.
    A value that is not a string is unreadable.
    """
    if not isinstance(value, str):
        return None
    return _minutes(value)


# Cached: a calendar repeats a few dozen distinct times, and every reader
# reads each of them (failures are cached too; they are plain None).
@functools.lru_cache(maxsize=4096)
def _minutes(value: str) -> int | None:
    text = value.strip().lower()
    marker = "am" if "am" in text else "pm" if "pm" in text else None
    if marker is not None:
        text = text.replace(marker, "")
    parts = text.split(":") if marker is None or ":" in text else [text, "0"]
    if len(parts) != 2:
        return None
    try:
        hours, minutes = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    if marker is None:
        return hours * 60 + minutes
    return (0 if hours == 12 else hours * 60) + (12 * 60 if marker == "pm" else 0) + minutes


class EntryError(CalendarDataError):
    """A listed entry lacks a field or holds a value that cannot be read.

    Attributes:
        field: the offending field.
    """

    def __init__(self, problem: str, *, value: object, field: str) -> None:
        self.field = field
        super().__init__(problem, value=value)


def entry_start(item: Mapping[str, object]) -> int:
    """A listed entry's start, in minutes since midnight (`reply_minutes`).

    Raises:
        EntryError: the entry has no `start_time`, or it cannot be read.
    """
    if "start_time" not in item:
        raise EntryError("no 'start_time'", value=item, field="start_time")
    start = reply_minutes(item["start_time"])
    if start is None:
        raise EntryError(
            f"start_time {_clip(item['start_time'])} is not a time (expected 'HH:MM')",
            value=item["start_time"],
            field="start_time",
        )
    return start


def entry_duration(item: Mapping[str, object]) -> int | float:
    """A listed entry's duration: a JSON number (`true` counts as 1, as in the reference).

    Raises:
        EntryError: the entry has no `duration`, or it is not a number.
    """
    if "duration" not in item:
        raise EntryError("no 'duration'", value=item, field="duration")
    duration = item["duration"]
    if not isinstance(duration, int | float):
        raise EntryError(
            f"duration {_clip(duration)} is not a number of minutes",
            value=duration,
            field="duration",
        )
    return duration


@dataclass(frozen=True, slots=True)
class ListedEvent:
    """One entry of a calendar as the assistant prints it.

    Attributes:
        event_id: `str` of the printed id.
        event_name: the printed name.
        start_time: minutes since midnight, as read (it may lie outside the day).
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
        """Read one printed entry the way the grader reads it.

        `start_time` by `reply_minutes`; `duration` a JSON number equal to a
        whole, positive number of minutes (a duration the grader could never
        accept makes the entry unreadable).

        Raises:
            CalendarDataError: `item` is not a readable calendar entry.
        """
        if type(item) is dict and "event_id" in item:
            # The usual entry, by the same rules without the checks that name a fault.
            start_time, duration = item.get("start_time"), item.get("duration")
            if type(start_time) is str and type(duration) is int and duration > 0:
                start = reply_minutes(start_time)
                if start is not None:
                    name = item.get("event_name", "")
                    event_id = item["event_id"]
                    return cls(
                        event_id if type(event_id) is str else str(event_id),
                        name if type(name) is str else str(name),
                        start,
                        duration,
                    )
        if not isinstance(item, Mapping) or "event_id" not in item:
            raise CalendarDataError(
                f"not a calendar entry: {_clip(item)}; expected an object with "
                "'event_id', 'start_time' and 'duration'",
                value=item,
            )
        start = entry_start(item)
        duration = entry_duration(item)
        if type(duration) is not int:  # the usual case needs no further check
            if not (math.isfinite(duration) and duration == int(duration)):
                raise EntryError(
                    f"duration must be a whole number of minutes, got {duration!r}",
                    value=duration,
                    field="duration",
                )
            duration = int(duration)
        if duration <= 0:
            raise EntryError(
                f"duration must be positive, got {duration!r}", value=duration, field="duration"
            )
        name = item.get("event_name", "")
        return cls(str(item["event_id"]), name if type(name) is str else str(name), start, duration)

    def to_json(self) -> dict[str, object]:
        """This entry in the assistant's format (`start_time` as `HH:MM`).

        Raises:
            ValueError: `start_time` lies outside the day (0..1440).
        """
        return {
            "event_id": _json_id(self.event_id),
            "event_name": self.event_name,
            "start_time": format_24h(self.start_time),
            "duration": self.duration,
        }


def _json_id(event_id: str) -> int | str:
    # The assistant's format has integer ids; keep anything else as written.
    return int(event_id) if event_id.isascii() and event_id.isdigit() else event_id


# json.dumps(..., ensure_ascii=False) builds an encoder per call.
_CALENDAR_JSON: Final = json.JSONEncoder(ensure_ascii=False)


def format_calendar(events: Iterable[ListedEvent]) -> str:
    """The JSON list an assistant should print for `events`, in the given order."""
    return _CALENDAR_JSON.encode([event.to_json() for event in events])


@dataclass(frozen=True, slots=True)
class CalendarReading:
    """What one reply shows.

    Attributes:
        events: the calendar shown, in the order listed (`()` for an empty
            one), or None when the reply shows none.
        problem: why there is none: `empty_reply`, `think_found`,
            `no_json_list` (no list, or the first candidate is not JSON), or
            `bad_entry` (an entry cannot be read).
        detail: the cause in words.
    """

    events: tuple[ListedEvent, ...] | None
    problem: ReadingProblem | None = None
    detail: str = ""


def read_reply(text: str) -> CalendarReading:
    """Read `text` as a calendar, the way the grader does (see the module's docstring).

    A reply with no list of objects whose first `[` opens an empty JSON list
    (`[]`, as an assistant prints an empty calendar) shows the empty
    calendar: the grader's pattern needs an object and cannot see it, which
    changes no grade (see `docs/calendar-grading.md`), but the simulated
    user, the solver and the turn verifiers must tell "an empty calendar"
    from "no calendar".

    Cached: within one turn the simulated user, the turn verifiers and, next
    turn, the solver all read the same reply. The cache keeps the last 1,024
    replies of up to 32 KB and the last 4 larger ones, so that it holds a few
    megabytes at most.
    """
    return _read_small(text) if len(text) <= _SMALL else _read_large(text)


_SMALL: Final = 32 * 1024


@functools.lru_cache(maxsize=1024)
def _read_small(text: str) -> CalendarReading:
    return _read(text)


@functools.lru_cache(maxsize=4)
def _read_large(text: str) -> CalendarReading:
    return _read(text)


def _read(text: str) -> CalendarReading:
    if not text.strip():
        return CalendarReading(None, "empty_reply", "the reply is empty")
    if THINK_MARKER in text:
        return CalendarReading(None, "think_found", f"the reply contains {THINK_MARKER!r}")
    span = json_list_span(text)
    if span is None:
        first = text.find("[")
        if first >= 0 and _EMPTY_LIST.match(text, first):
            return CalendarReading(())
        return CalendarReading(None, "no_json_list", "the reply holds no JSON list of objects")
    try:
        items = decode_list(text, span)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        return CalendarReading(None, "no_json_list", f"the first list cannot be read: {exc}")
    try:
        return CalendarReading(tuple(ListedEvent.from_json(item) for item in items))
    except CalendarDataError as exc:
        return CalendarReading(None, "bad_entry", str(exc))


def extract_json_list(text: str) -> list[object] | None:
    """Parse the first JSON-like list of objects in `text` (see `json_list_span`).

    Prose and code fences around the list are fine. Only the first candidate
    is tried, as in the reference: if it is not valid JSON, the result is
    `None` even when a later list would parse. Items are returned as parsed
    and need not all be objects.
    """
    span = json_list_span(text)
    if span is None:
        return None
    try:
        return decode_list(text, span)
    except (ValueError, RecursionError):
        return None


def parse_listed_events(text: str) -> list[ListedEvent] | None:
    """The calendar `text` shows (`read_reply(text).events`), or None."""
    events = read_reply(text).events
    return None if events is None else list(events)


def _clip(value: object, limit: int = 80) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
