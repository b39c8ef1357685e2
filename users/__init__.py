"""User-simulator actors (installed as `convo_sim.users`)."""

from __future__ import annotations

from convo_sim.users._llm import LLMUser
from convo_sim.users._persona import (
    PERSONAS,
    Persona,
    UnknownPersonaError,
    get_persona,
    persona_prompt,
)
from convo_sim.users._simple import FunctionUser, ScriptedUser
from convo_sim.users.calendar import CalendarUser
from convo_sim.users.fidelity import UserFidelity, user_fidelity
from convo_sim.users.persona_user import PersonaCalendarUser

__all__ = [
    "PERSONAS",
    "CalendarUser",
    "FunctionUser",
    "LLMUser",
    "Persona",
    "PersonaCalendarUser",
    "ScriptedUser",
    "UnknownPersonaError",
    "UserFidelity",
    "get_persona",
    "persona_prompt",
    "user_fidelity",
]
