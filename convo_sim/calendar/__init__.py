"""The calendar domain: times, constraints, expected states, replies and exact scheduling.

A reply is read one way by everyone who reads it (`read_reply`, in
`convo_sim.calendar.reply`): the grader, the turn verifiers, the simulated
user and the solver assistant.

Errors raised here::

    convo_sim._errors.InputError
    └── CalendarDataError (also a ValueError)   calendar data is malformed
        ├── TimeFormatError                     not a clock time
        ├── ConstraintFormatError               not a constraint
        └── ExpectedStateError                  an expected state is malformed

The grader lives in `convo_sim.verifiers.calendar`.
"""

from __future__ import annotations

from convo_sim.calendar.model import (
    WORKING_WINDOW,
    Constraint,
    ConstraintFormatError,
    ConstraintKind,
    ExpectedEvent,
    ExpectedState,
    ExpectedStateError,
    ListedEvent,
    extract_json_list,
    format_calendar,
    json_list_span,
    parse_constraint,
    parse_listed_events,
)
from convo_sim.calendar.reply import CalendarReading, read_reply, reply_minutes
from convo_sim.calendar.solve import EventSpec, is_solvable, solve_schedule
from convo_sim.calendar.times import (
    MINUTES_PER_DAY,
    CalendarDataError,
    TimeFormatError,
    format_12h,
    format_24h,
    parse_time,
)

__all__ = [
    "MINUTES_PER_DAY",
    "WORKING_WINDOW",
    "CalendarDataError",
    "CalendarReading",
    "Constraint",
    "ConstraintFormatError",
    "ConstraintKind",
    "EventSpec",
    "ExpectedEvent",
    "ExpectedState",
    "ExpectedStateError",
    "ListedEvent",
    "TimeFormatError",
    "extract_json_list",
    "format_12h",
    "format_24h",
    "format_calendar",
    "is_solvable",
    "json_list_span",
    "parse_constraint",
    "parse_listed_events",
    "parse_time",
    "read_reply",
    "reply_minutes",
    "solve_schedule",
]
