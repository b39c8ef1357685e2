"""Grade an assistant's calendar reply the way NeMo-Gym's calendar server does.

`grade_calendar_response` agrees with the reference grader on every input
except the principled differences listed in `docs/calendar-grading.md`:
upper-case `AM`/`PM` is read, the expected state's times and constraints
are read as documented (and a malformed one is reported up front), a
duration that is not a number is a wrong duration rather than a grader
crash, an id listed twice fails instead of the last entry silently winning,
and a truncated list is graded in linear time. The reply is read with the
pieces every other reader shares (`convo_sim.domains.calendar._reply`).

The steps run in the reference's order, and where the reference would
crash on the reply, we fail with `error_in_grading` at the same point, so
that the reason agrees as well as the reward.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from convo_sim.domains.calendar._listing import decode_list, json_list_span
from convo_sim.domains.calendar._model import Constraint, ExpectedEvent, ExpectedState
from convo_sim.domains.calendar._overlaps import Span, overlapping, partner
from convo_sim.domains.calendar._reply import (
    THINK_MARKER,
    EntryError,
    entry_duration,
    entry_start,
    reply_minutes,
)
from convo_sim.domains.calendar._times import CalendarDataError, format_24h

__all__ = ["CalendarGrade", "GradeReason", "grade_calendar_response"]

GradeReason = Literal[
    "pass",
    "think_found",
    "no_json_list",
    "different_number_of_events",
    "conflicting_events",
    "constraint_violated",
    "error_in_grading",
]


class CalendarGrade(BaseModel):
    """The grade of one reply: NeMo-Gym's reward and reason, and the cause in words.

    Attributes:
        reward: 1.0 if the reply passes, else 0.0.
        reason: the reference grader's reason code.
        detail: which event and which rule, e.g. "event 1 starts at 11:30 and
            ends at 12:30, but 'before 11am' requires it to end by 11:00".
    """

    model_config = ConfigDict(frozen=True)

    reward: float
    reason: GradeReason
    detail: str

    @model_validator(mode="after")
    def _reward_matches_reason(self) -> CalendarGrade:
        if self.reward != (1.0 if self.reason == "pass" else 0.0):
            raise ValueError(f"reward {self.reward!r} does not match reason {self.reason!r}")
        return self

    @property
    def passed(self) -> bool:
        """Whether the reply earned the reward."""
        return self.reason == "pass"


def grade_calendar_response(
    text: str, expected: ExpectedState | Mapping[str, Any]
) -> CalendarGrade:
    """Grade an assistant reply against the expected calendar state.

    Never raises: whatever the reply holds, the result is a grade.

    Args:
        text: the assistant's reply, as sent.
        expected: an `ExpectedState`, NeMo-Gym's `exp_cal_state` dict, or the
            seed format's `expected_state` dict (recognised by every entry
            having a `start_time`).

    Returns:
        The grade, with the reference's reason code and a detail in words.
    """
    try:
        return _grade(text, expected)
    except _Verdict as verdict:
        return CalendarGrade(reward=0.0, reason=verdict.reason, detail=verdict.detail)
    except Exception as exc:  # the promise is a grade for any input; say what went wrong
        return _failed("error_in_grading", f"unexpected error while grading: {exc!r}")


class _Verdict(Exception):
    """Stops grading with a failing reason, at the point the reference decides."""

    def __init__(self, reason: GradeReason, detail: str) -> None:
        self.reason: GradeReason = reason
        self.detail = detail
        super().__init__(detail)


def _failed(reason: GradeReason, detail: str) -> CalendarGrade:
    return CalendarGrade(reward=0.0, reason=reason, detail=detail)


def _grade(text: str, expected: ExpectedState | Mapping[str, Any]) -> CalendarGrade:
    if not isinstance(text, str):
        return _failed("error_in_grading", f"the reply is not text: {_clip(text)}")
    if text == "":
        # NeMo-Gym's server scores an empty reply (a model that only
        # reasoned) 0 before the grading rule runs.
        return _failed("no_json_list", "the reply is empty")
    if THINK_MARKER in text:
        return _failed("think_found", f"the reply contains {THINK_MARKER!r}")
    state = _expected_state(expected)
    if not state:
        return CalendarGrade(reward=1.0, reason="pass", detail="no events are expected")

    items = _first_list(text)
    keys = _keys(items)
    position_of = {key: position for position, key in enumerate(keys)}  # the last one wins
    if len(position_of) != len(state):
        raise _Verdict(
            "different_number_of_events",
            f"the reply lists {len(position_of)} event(s) (ids {_ids(position_of)}); "
            f"{len(state)} are expected (ids {_ids(state)})",
        )
    if len(keys) != len(position_of):
        # Principled difference: the reference keeps the last entry of a
        # repeated id and grades the rest as if nothing were wrong.
        key, count = next((k, c) for k, c in Counter(keys).items() if c > 1)
        raise _Verdict(
            "different_number_of_events",
            f"event {key} is listed {count} times; each event must be listed once",
        )
    spans = _check_conflicts(items)
    for key, event in state.items():
        position = position_of.get(key)
        if position is None:
            # The reference fails here with a KeyError, hence its reason.
            raise _Verdict(
                "error_in_grading",
                f"expected event {key} is not listed (the reply lists ids {_ids(position_of)})",
            )
        _check_event(key, items[position], spans[position], event)
    return CalendarGrade(reward=1.0, reason="pass", detail=f"all {len(state)} event(s) fit")


def _expected_state(expected: ExpectedState | Mapping[str, Any]) -> ExpectedState:
    if isinstance(expected, ExpectedState):
        return expected
    if isinstance(expected, Mapping) and len(expected) == 0:
        return ExpectedState()
    try:
        return ExpectedState.from_dict(expected)
    except CalendarDataError as exc:
        raise _Verdict("error_in_grading", f"the expected state is malformed: {exc}") from exc


def _first_list(text: str) -> list[Any]:
    span = json_list_span(text)
    if span is None:
        raise _Verdict("no_json_list", "the reply holds no JSON list of objects")
    try:
        items = decode_list(text, span)
    except json.JSONDecodeError as exc:
        raise _Verdict(
            "no_json_list",
            f"the first list in the reply is not valid JSON ({exc.msg}): "
            f"{_clip(text[span[0] : span[1]])}",
        ) from exc
    except (ValueError, RecursionError) as exc:
        # Too deep or too long a number: the reference's parser raises
        # something other than a decoding error, and it grades that as an error.
        raise _Verdict("error_in_grading", f"the first list cannot be read: {exc!r}") from exc
    if not items:
        raise _Verdict("no_json_list", "the reply holds no JSON list of objects")
    return items


def _keys(items: list[Any]) -> list[str]:
    keys: list[str] = []
    for position, item in enumerate(items):
        if not isinstance(item, dict) or "event_id" not in item:
            raise _Verdict(
                "error_in_grading",
                f"item {position} of the list is not an object with an 'event_id': {_clip(item)}",
            )
        # str() of the parsed value, as the reference keys events: 0 and "0"
        # are the same event, 0.0 is another.
        keys.append(str(item["event_id"]))
    return keys


def _check_conflicts(items: list[Any]) -> list[Span]:
    """Each listed event's (start, end), failing on the first overlap the reference finds.

    The reference compares every event with every other that is not equal
    to it (so two identical entries never conflict), reading each entry's
    times when it first meets it, in list order; a reading failure stops
    it. Only its first pass (the first event against all the others) reads
    anything new, so that pass is replayed as it is. After it every time is
    known, and `overlapping` finds the first event that overlaps another in
    O(n log n) instead of comparing every pair.
    """
    first = items[0]
    spans: list[Span | None] = [None] * len(items)
    spans[0] = head = _interval(first)
    head_start, head_end = head
    for position in range(1, len(items)):
        other = items[position]
        if other == first:
            continue  # never read in this pass; equal entries have equal times
        spans[position] = span = _interval(other)
        if not (head_end <= span[0] or head_start >= span[1]):  # `overlaps`, inlined
            _conflict(first, head, other, span)
    known = [head if span is None else span for span in spans]

    def distinct(one: int, two: int) -> bool:
        return bool(items[one] != items[two])

    found = overlapping(known, distinct=distinct)
    if found:
        position = found[0]
        other = partner(known, position, distinct=distinct)
        assert other is not None  # `overlapping` saw one
        _conflict(items[position], known[position], items[other], known[other])
    return known


def _conflict(item: Any, span: Span, other: Any, other_span: Span) -> None:
    raise _Verdict(
        "conflicting_events",
        f"event {item['event_id']} ({_span(*span)}) overlaps event "
        f"{other['event_id']} ({_span(*other_span)})",
    )


def _interval(item: dict[str, Any]) -> Span:
    # The usual entry first, by the same reading (`reply_minutes`) without
    # the calls that name a fault; anything else takes the careful path.
    start_time, duration = item.get("start_time"), item.get("duration")
    if type(start_time) is str and type(duration) is int:
        start = reply_minutes(start_time)
        if start is not None:
            return start, start + duration
    event_id = item["event_id"]
    try:
        start = entry_start(item)
        duration = entry_duration(item)
    except EntryError as exc:
        if exc.field == "duration" and "duration" in item:
            # Principled difference: the reference crashes on a string (or
            # null) duration; we call it what it is, a wrong duration.
            raise _Verdict(
                "constraint_violated",
                f"event {event_id} has duration {_clip(item['duration'])}; "
                "durations must be integer minutes",
            ) from exc
        raise _Verdict("error_in_grading", f"event {event_id}: {exc}") from exc
    try:
        return start, start + duration
    except OverflowError as exc:
        raise _Verdict("error_in_grading", f"event {event_id}'s times overflow") from exc


def _check_event(
    key: str, item: dict[str, Any], interval: tuple[Any, Any], event: ExpectedEvent
) -> None:
    duration = item["duration"]
    if duration != event.duration:
        raise _Verdict(
            "constraint_violated",
            f"event {key} lasts {_clip(duration)} minutes; {event.duration} expected",
        )
    start, end = interval
    if start < event.min_time or end > event.max_time:
        raise _Verdict(
            "constraint_violated",
            f"event {key} runs {_span(start, end)}, outside the window "
            f"{_span(event.min_time, event.max_time)}",
        )
    constraint = event.constraint
    if constraint is not None and not constraint.allows(start, event.duration):
        raise _Verdict("constraint_violated", _violation(key, start, end, constraint))


def _violation(key: str, start: int, end: int, constraint: Constraint) -> str:
    runs = f"event {key} runs {_span(start, end)}, but '{constraint.text}' requires it to"
    if constraint.kind == "before":
        return f"{runs} end by {_clock(constraint.time)}"
    if constraint.kind == "after":
        return f"{runs} start at or after {_clock(constraint.time)}"
    if constraint.kind == "at":
        return f"{runs} start at exactly {_clock(constraint.time)}"
    assert constraint.until is not None
    return (
        f"{runs} start at or after {_clock(constraint.time)} and end by {_clock(constraint.until)}"
    )


def _clock(minutes: object) -> str:
    if isinstance(minutes, int) and 0 <= minutes <= 24 * 60:
        return format_24h(minutes)
    if isinstance(minutes, float) and math.isfinite(minutes) and minutes.is_integer():
        return _clock(int(minutes))
    return repr(minutes)


def _span(start: object, end: object) -> str:
    return f"{_clock(start)}-{_clock(end)}"


def _ids(events: Mapping[str, object], shown: int = 10) -> str:
    ids = list(itertools.islice(events, shown + 1))
    listed = ", ".join(ids[:shown]) or "none"
    return listed if len(ids) <= shown else f"{listed}, ... ({len(events)} in all)"


def _clip(value: object, limit: int = 80) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
