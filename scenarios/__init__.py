"""Scenarios: models, loaders, generators and bundled data (installed as `convo_sim.scenarios`)."""

from __future__ import annotations

from convo_sim.scenarios.loaders import (
    BundledSet,
    NemoMode,
    bundled_scenarios,
    load_scenarios,
    native_scenario,
    nemo_replay_scenario,
    nemo_scenario,
    seed_scenario,
)
from convo_sim.scenarios.model import CalendarGoal, GoalStep, Scenario
from convo_sim.scenarios.prompts import CALENDAR_SYSTEM_PROMPT

__all__ = [
    "CALENDAR_SYSTEM_PROMPT",
    "BundledSet",
    "CalendarGoal",
    "GoalStep",
    "NemoMode",
    "Scenario",
    "bundled_scenarios",
    "load_scenarios",
    "native_scenario",
    "nemo_replay_scenario",
    "nemo_scenario",
    "seed_scenario",
]
