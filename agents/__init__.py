"""Assistant actors (installed as `convo_sim.agents`)."""

from __future__ import annotations

from convo_sim.agents._llm import LLMAssistant
from convo_sim.agents._simple import FunctionAssistant, ScriptedAssistant
from convo_sim.agents.calendar import CalendarSolverAssistant

__all__ = ["CalendarSolverAssistant", "FunctionAssistant", "LLMAssistant", "ScriptedAssistant"]
