"""The calendar domain's defaults, as picklable factories for the rollout engine.

The core never imports the family packages; the CLI does, here. Every
factory is a top-level function, so `RayBackend` can ship it to workers by
reference (workers import this module).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from convo_sim.actors import Actor
from convo_sim.scenarios import Scenario
from convo_sim.verification import FinalVerifier, TurnVerifier

__all__ = [
    "calendar_assistant",
    "calendar_user",
    "calendar_verifier_set",
    "load_scenario_set",
]


def calendar_assistant(scenario: Scenario, seed: int) -> Actor:
    """The rule-based calendar assistant (a constraint solver; it needs no seed)."""
    from convo_sim.agents.calendar import CalendarSolverAssistant

    return CalendarSolverAssistant()


def calendar_user(scenario: Scenario, seed: int) -> Actor:
    """The scenario's default user, its wording seeded per sample.

    The scenario's own seed is mixed in, so changing it in a scenario file
    still changes the wording, as the scenario format promises.
    """
    from convo_sim.scenarios.run import default_user

    return default_user(scenario, seed=seed ^ scenario.seed)


def calendar_verifier_set(
    scenario: Scenario,
) -> tuple[Sequence[TurnVerifier], Sequence[FinalVerifier]]:
    """The calendar turn verifiers and NeMo-Gym's final rule, for one scenario."""
    from convo_sim.verifiers import calendar_verifiers

    return calendar_verifiers(scenario)


def load_scenario_set(path: Path | None) -> list[Scenario]:
    """The scenarios in `path`, or every bundled set when it is None.

    Raises:
        ScenarioError: the file is missing or malformed.
    """
    from convo_sim.scenarios import bundled_scenarios, load_scenarios

    if path is not None:
        return load_scenarios(path)
    return [*bundled_scenarios("calendar_examples"), *bundled_scenarios("nemo_calendar_example")]

