"""Turn and final verifiers (installed as `convo_sim.verifiers`).

The generic machinery (`TurnVerifier`, `FinalVerifier`, the reward
aggregations) is in `convo_sim`; each domain brings its own verifiers.
`RubricJudge` is a generic turn verifier backed by an LLM judge. The
calendar's (`calendar_verifiers`, `CalendarFinalVerifier`, the four turn
verifiers, `grade_calendar_response`) are still importable from here, as
aliases of the same names in `convo_sim.domains.calendar`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convo_sim.verifiers._rubric import (
    RUBRIC_JUDGE_PROMPT,
    RUBRIC_JUDGE_VERSION,
    JudgeScore,
    RubricJudge,
)

if TYPE_CHECKING:
    from convo_sim.domains.calendar import (
        CalendarFinalVerifier as CalendarFinalVerifier,
    )
    from convo_sim.domains.calendar import (
        CalendarGrade as CalendarGrade,
    )
    from convo_sim.domains.calendar import (
        ConstraintsHonoured as ConstraintsHonoured,
    )
    from convo_sim.domains.calendar import (
        EventsPresent as EventsPresent,
    )
    from convo_sim.domains.calendar import (
        NoConflicts as NoConflicts,
    )
    from convo_sim.domains.calendar import (
        ValidCalendar as ValidCalendar,
    )
    from convo_sim.domains.calendar import (
        calendar_verifiers as calendar_verifiers,
    )
    from convo_sim.domains.calendar import (
        grade_calendar_response as grade_calendar_response,
    )

_CALENDAR_ALIASES = frozenset(
    {
        "CalendarFinalVerifier",
        "CalendarGrade",
        "ConstraintsHonoured",
        "EventsPresent",
        "NoConflicts",
        "ValidCalendar",
        "calendar_verifiers",
        "grade_calendar_response",
    }
)


def __getattr__(name: str) -> Any:
    # Imported on first use: the domain's verifiers import the core only,
    # but a program that never touches the calendar should not load it.
    if name in _CALENDAR_ALIASES:
        from convo_sim.domains import calendar

        return getattr(calendar, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RUBRIC_JUDGE_PROMPT", "RUBRIC_JUDGE_VERSION", "JudgeScore", "RubricJudge"]
