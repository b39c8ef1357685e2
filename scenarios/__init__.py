"""Scenarios: models, loaders, generators and bundled data (installed as `convo_sim.scenarios`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convo_sim.scenarios.generate import (
    DURATIONS,
    PERSONA_CHOICES,
    generate_calendar_scenarios,
    is_goal_solvable,
)
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

if TYPE_CHECKING:
    from convo_sim.scenarios.run import DEFAULT_MAX_TURNS, default_user, run_scenario

# `run` wires in the default actors and verifiers, which themselves import
# `convo_sim.scenarios.model`; importing it lazily keeps that from being a cycle.
_RUN_NAMES = frozenset({"DEFAULT_MAX_TURNS", "default_user", "run_scenario"})


def __getattr__(name: str) -> Any:
    if name in _RUN_NAMES:
        from convo_sim.scenarios import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CALENDAR_SYSTEM_PROMPT",
    "DEFAULT_MAX_TURNS",
    "DURATIONS",
    "PERSONA_CHOICES",
    "BundledSet",
    "CalendarGoal",
    "GoalStep",
    "NemoMode",
    "Scenario",
    "bundled_scenarios",
    "default_user",
    "generate_calendar_scenarios",
    "is_goal_solvable",
    "load_scenarios",
    "native_scenario",
    "nemo_replay_scenario",
    "nemo_scenario",
    "run_scenario",
    "seed_scenario",
]
