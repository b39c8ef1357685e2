"""Turn and final verifiers (installed as `convo_sim.verifiers`)."""

from __future__ import annotations

from convo_sim.verifiers.calendar_turns import (
    CalendarFinalVerifier,
    ConstraintsHonoured,
    EventsPresent,
    NoConflicts,
    ValidCalendar,
    calendar_verifiers,
)

__all__ = [
    "CalendarFinalVerifier",
    "ConstraintsHonoured",
    "EventsPresent",
    "NoConflicts",
    "ValidCalendar",
    "calendar_verifiers",
]
