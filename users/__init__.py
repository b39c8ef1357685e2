"""User-simulator actors and personas (installed as `convo_sim.users`).

The calendar's users (`CalendarUser`, `PersonaCalendarUser`) and its
fidelity metrics (`UserFidelity`, `user_fidelity`) are still importable from
here, as aliases of the same names in `convo_sim.domains.calendar`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convo_sim.users._llm import LLMUser
from convo_sim.users._persona import (
    PERSONA_SPEC_KEY,
    PERSONAS,
    Persona,
    UnknownPersonaError,
    get_persona,
    persona_prompt,
    scenario_persona,
)
from convo_sim.users._population import PopulationDiversity, population_diversity, sample_personas
from convo_sim.users._profile import PersonaProfile, Traits
from convo_sim.users._reviewer import (
    USER_REVIEW_PROMPT,
    USER_REVIEW_VERSION,
    JudgedUserReview,
    UserReview,
    UserReviewer,
)
from convo_sim.users._simple import FunctionUser, ScriptedUser

if TYPE_CHECKING:
    from convo_sim.domains.calendar import (
        CalendarUser as CalendarUser,
    )
    from convo_sim.domains.calendar import (
        PersonaCalendarUser as PersonaCalendarUser,
    )
    from convo_sim.domains.calendar import (
        UserFidelity as UserFidelity,
    )
    from convo_sim.domains.calendar import (
        user_fidelity as user_fidelity,
    )

_CALENDAR_ALIASES = frozenset(
    {"CalendarUser", "PersonaCalendarUser", "UserFidelity", "user_fidelity"}
)


def __getattr__(name: str) -> Any:
    # Imported on first use: the domain imports this package.
    if name in _CALENDAR_ALIASES:
        from convo_sim.domains import calendar

        return getattr(calendar, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PERSONAS",
    "PERSONA_SPEC_KEY",
    "USER_REVIEW_PROMPT",
    "USER_REVIEW_VERSION",
    "FunctionUser",
    "JudgedUserReview",
    "LLMUser",
    "Persona",
    "PersonaProfile",
    "PopulationDiversity",
    "ScriptedUser",
    "Traits",
    "UnknownPersonaError",
    "UserReview",
    "UserReviewer",
    "get_persona",
    "persona_prompt",
    "population_diversity",
    "sample_personas",
    "scenario_persona",
]
