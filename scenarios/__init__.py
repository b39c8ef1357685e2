"""Scenarios: models, loaders, generators and bundled data (installed as `convo_sim.scenarios`)."""

from __future__ import annotations

from convo_sim.scenarios.model import CalendarGoal, GoalStep, Scenario

__all__ = ["CalendarGoal", "GoalStep", "Scenario"]
