"""User-simulator actors (installed as `convo_sim.users`)."""

from __future__ import annotations

from convo_sim.users.calendar import CalendarUser
from convo_sim.users.fidelity import UserFidelity, user_fidelity
from convo_sim.users.llm import LLMUser
from convo_sim.users.persona import (
    PERSONAS,
    Persona,
    UnknownPersonaError,
    get_persona,
    persona_prompt,
)
from convo_sim.users.persona_user import PersonaCalendarUser
from convo_sim.users.simple import FunctionUser, ScriptedUser

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
