"""The calendar domain behind the `Domain` seam: its factories, card and `DOMAIN`.

Every factory here is a top-level function (or a `functools.partial` of
one), so a `RolloutPlan` built from them ships to Ray workers by reference.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from convo_sim._actors import Actor
from convo_sim._errors import InputError, ScenarioError
from convo_sim._records import Rollout
from convo_sim._verification import FinalVerifier, TurnVerifier
from convo_sim.domains._domain import Domain
from convo_sim.domains.calendar._assistant import CalendarSolverAssistant
from convo_sim.domains.calendar._fidelity import user_fidelity
from convo_sim.domains.calendar._generate import generate_scenarios
from convo_sim.domains.calendar._loaders import bundled_scenarios, load_scenarios
from convo_sim.domains.calendar._persona_user import PersonaCalendarUser
from convo_sim.domains.calendar._prompts import CALENDAR_SYSTEM_PROMPT
from convo_sim.domains.calendar._review import review_rollout
from convo_sim.domains.calendar._scenario import CalendarGoal, CalendarScenario
from convo_sim.domains.calendar._served import served_models
from convo_sim.domains.calendar._user import CalendarUser
from convo_sim.domains.calendar._verifiers import calendar_verifiers
from convo_sim.scenarios._run import user_seed
from convo_sim.users._persona import (
    PERSONA_SPEC_KEY,
    Persona,
    UnknownPersonaError,
    scenario_persona,
)
from convo_sim.users._simple import ScriptedUser

__all__ = [
    "DOMAIN",
    "assistant",
    "card",
    "default_user",
    "describe_goal",
    "fidelity",
    "from_card",
    "user",
    "verifiers",
]


def default_user(scenario: CalendarScenario, *, seed: int | None = None) -> Actor:
    """The user a calendar scenario gets by default, seeded with `seed` as it is.

    A `ScriptedUser` replaying `user_script` when the scenario has one; else,
    for a calendar goal, a `PersonaCalendarUser` playing the scenario's
    `persona` (a bundled persona name) or a plain `CalendarUser` when it
    names none; else (a NeMo-Gym prefix, whose later user turns are not in
    the data) a user that stops at once.

    Args:
        scenario: the scenario.
        seed: the user's seed; the scenario's own by default.

    Raises:
        ScenarioError: the scenario's goal-driven user needs a persona that
            is not bundled; `exc.scenario_id` names the scenario.
    """
    if scenario.user_script:
        return ScriptedUser(scenario.user_script)
    if scenario.goal is not None:
        persona = _persona(scenario)
        if persona is None:
            return CalendarUser(scenario, seed=seed)
        return PersonaCalendarUser(scenario, persona=persona, seed=seed)
    return ScriptedUser(())


def _persona(scenario: CalendarScenario) -> Persona | None:
    """The persona of `scenario` (`scenario_persona`), or None when it names none.

    Raises:
        ScenarioError: the name is not a bundled persona, or the persona
            carried in its metadata is not valid.
    """
    try:
        return scenario_persona(scenario)
    except (UnknownPersonaError, InputError) as exc:
        raise ScenarioError(f"scenario {scenario.id!r}: {exc}", scenario_id=scenario.id) from None


def assistant(scenario: CalendarScenario, seed: int) -> Actor:
    """The rule-based calendar assistant (an exact scheduler; it needs no seed)."""
    return CalendarSolverAssistant()


def user(scenario: CalendarScenario, seed: int) -> Actor:
    """The scenario's default user (`default_user`), seeded by `user_seed(scenario, seed)`.

    Raises:
        ScenarioError: the scenario names a persona that is not bundled.
    """
    return default_user(scenario, seed=user_seed(scenario, seed))


def verifiers(
    scenario: CalendarScenario,
) -> tuple[Sequence[TurnVerifier[CalendarScenario]], Sequence[FinalVerifier[CalendarScenario]]]:
    """The four turn verifiers and NeMo-Gym's final rule, for one scenario."""
    return calendar_verifiers(scenario)


def card(scenario: CalendarScenario, seed: int) -> dict[str, Any]:
    """The scenario card of one sample: what a served `calendar-user` rebuilds the user from.

    The card's `seed` is the user's (`user_seed`), so the served user words
    its messages exactly as `user(scenario, seed)` does in process; it holds
    the turn limit the user paces itself for, and a persona that is not
    bundled as data (`persona_spec`).
    """
    data: dict[str, Any] = {
        "id": scenario.id,
        "goal": scenario.goal.model_dump(mode="json") if scenario.goal else None,
        "persona": scenario.persona,
        "seed": user_seed(scenario, seed),
        "user_script": list(scenario.user_script),
    }
    if scenario.max_turns is not None:
        data["max_turns"] = scenario.max_turns
    spec = scenario.metadata.get(PERSONA_SPEC_KEY)
    if spec is not None:
        data[PERSONA_SPEC_KEY] = spec.model_dump(mode="json") if isinstance(spec, Persona) else spec
    return data


def from_card(data: Mapping[str, Any]) -> CalendarScenario:
    """The scenario a card describes, its seed the user's (see `card`).

    Raises:
        pydantic.ValidationError: the card does not describe a calendar scenario.
    """
    spec = data.get(PERSONA_SPEC_KEY)
    return CalendarScenario.model_validate(
        {
            "id": data.get("id", "served"),
            "goal": data.get("goal"),
            "persona": data.get("persona"),
            "seed": data.get("seed", 0),
            "user_script": data.get("user_script") or (),
            "max_turns": data.get("max_turns"),
            "metadata": {} if spec is None else {PERSONA_SPEC_KEY: spec},
        }
    )


def describe_goal(scenario: CalendarScenario) -> str | None:
    """The calendar goal in words, for an LLM user's prompt (None: no goal)."""
    goal = scenario.goal
    if goal is None:
        return None
    return _describe_calendar_goal(goal)


def _describe_calendar_goal(goal: CalendarGoal) -> str:
    names: dict[int, str] = {}
    lines: list[str] = []
    for step in goal.steps:
        if step.action == "add":
            names[step.event_id] = step.name or f"event {step.event_id}"
            what = (
                f'Add "{names[step.event_id]}" (event id {step.event_id}), {step.duration} minutes'
            )
            lines.append(what + (f", {step.constraint}." if step.constraint else "."))
        else:
            name = names.get(step.event_id, f"event {step.event_id}")
            lines.append(f'"{name}" (event id {step.event_id}) must be {step.constraint}.')
    numbered = "\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1))
    return (
        f"You want these events in your calendar for one working day "
        f"({goal.min_time} to {goal.max_time}), asked for in this order:\n{numbered}\n"
        "Always mention the event id. Check every calendar the assistant shows against "
        "what you asked for so far."
    )


def fidelity(rollout: Rollout, scenario: CalendarScenario) -> dict[str, Any] | None:
    """The user-fidelity metrics of a rollout whose scenario has a goal.

    The goal counts as met when the reward is 1 (by full coverage when the
    rollout has no reward). Pacing is measured against the scenario's
    persona, when it has one. None for a scenario without a goal or with a
    user script: there is nothing to hold the user to.

    Raises:
        UnknownPersonaError: the scenario names a persona that is not bundled.
    """
    if scenario.goal is None or scenario.user_script:
        return None
    metrics = user_fidelity(
        rollout.transcript,
        expected=scenario.goal,
        persona=scenario_persona(scenario),
        goal_met=None if rollout.reward is None else rollout.reward >= 1.0,
    )
    return metrics.model_dump(mode="json")


DOMAIN: Domain[CalendarScenario] = Domain(
    name="calendar",
    description="a scheduling assistant keeps one working day's calendar (NeMo-Gym's calendar)",
    scenario_type=CalendarScenario,
    load=load_scenarios,
    bundled={
        "calendar_examples": functools.partial(bundled_scenarios, "calendar_examples"),
        "nemo_calendar_example": functools.partial(bundled_scenarios, "nemo_calendar_example"),
    },
    default_sets=("calendar_examples",),
    generate=generate_scenarios,
    assistant=assistant,
    user=user,
    verifiers=verifiers,
    system_prompt=CALENDAR_SYSTEM_PROMPT,
    served_models=served_models,
    card=card,
    from_card=from_card,
    describe_goal=describe_goal,
    fidelity=fidelity,
    review_user=review_rollout,
)
"""The calendar domain (`convo_sim.domains.get("calendar")`)."""
