"""Assistant actors (installed as `convo_sim.agents`).

`CalendarSolverAssistant` is still importable from here, as an alias of
`convo_sim.domains.calendar.CalendarSolverAssistant` (the calendar domain's
own actors live in its package).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convo_sim.agents._llm import LLMAssistant
from convo_sim.agents._simple import FunctionAssistant, ScriptedAssistant

if TYPE_CHECKING:
    from convo_sim.domains.calendar import CalendarSolverAssistant as CalendarSolverAssistant

_CALENDAR_ALIASES = frozenset({"CalendarSolverAssistant"})


def __getattr__(name: str) -> Any:
    # Imported on first use: the domain imports this package, and a program
    # that never touches the calendar should not load it.
    if name in _CALENDAR_ALIASES:
        from convo_sim.domains import calendar

        return getattr(calendar, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FunctionAssistant", "LLMAssistant", "ScriptedAssistant"]
