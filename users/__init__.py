"""User-simulator actors (installed as `convo_sim.users`)."""

from __future__ import annotations

from convo_sim.users.llm import LLMUser
from convo_sim.users.simple import FunctionUser, ScriptedUser

__all__ = ["FunctionUser", "LLMUser", "ScriptedUser"]
