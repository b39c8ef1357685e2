"""Assistant actors (installed as `convo_sim.agents`)."""

from __future__ import annotations

from convo_sim.agents.calendar import CalendarSolverAssistant
from convo_sim.agents.llm import LLMAssistant
from convo_sim.agents.simple import FunctionAssistant, ScriptedAssistant

__all__ = ["CalendarSolverAssistant", "FunctionAssistant", "LLMAssistant", "ScriptedAssistant"]
