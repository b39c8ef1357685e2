"""Run one scenario with the calendar domain's defaults wired in."""

from __future__ import annotations

from convo_sim._actors import Actor
from convo_sim._errors import ScenarioError
from convo_sim._orchestrator import run_dialogue
from convo_sim._results import DialogueResult
from convo_sim._verification import RewardFn
from convo_sim.domains.calendar._assistant import CalendarSolverAssistant
from convo_sim.domains.calendar._persona_user import PersonaCalendarUser
from convo_sim.domains.calendar._scenario import Scenario
from convo_sim.domains.calendar._user import CalendarUser
from convo_sim.domains.calendar._verifiers import calendar_verifiers
from convo_sim.users._persona import Persona, UnknownPersonaError, get_persona
from convo_sim.users._simple import ScriptedUser

__all__ = ["DEFAULT_MAX_TURNS", "default_user", "run_scenario"]

DEFAULT_MAX_TURNS = 20
"""The turn limit when neither the call nor the scenario sets one."""


def default_user(scenario: Scenario, *, seed: int | None = None) -> Actor:
    """The user a scenario gets by default.

    A `ScriptedUser` replaying `user_script` when the scenario has one; else,
    for a calendar goal, a `PersonaCalendarUser` playing the scenario's
    `persona` (a bundled persona name) or a plain `CalendarUser` when it
    names none; else (a NeMo-Gym prefix, whose later user turns are not in
    the data) a user that stops at once.

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


def _persona(scenario: Scenario) -> Persona | None:
    """The bundled persona `scenario.persona` names, or None when it names none.

    Raises:
        ScenarioError: the name is not a bundled persona.
    """
    if scenario.persona is None:
        return None
    try:
        return get_persona(scenario.persona)
    except UnknownPersonaError as exc:
        raise ScenarioError(f"scenario {scenario.id!r}: {exc}", scenario_id=scenario.id) from None


async def run_scenario(
    scenario: Scenario,
    *,
    assistant: Actor | None = None,
    user: Actor | None = None,
    max_turns: int | None = None,
    turn_timeout: float | None = 60.0,
    reward: RewardFn | None = None,
    seed: int | None = None,
    dialogue_id: str | None = None,
) -> DialogueResult:
    """Run one dialogue of `scenario` and return its result.

    Args:
        scenario: what to run.
        assistant: the assistant; a `CalendarSolverAssistant` by default.
        user: the user; `default_user(scenario, seed=seed)` by default.
        max_turns: the turn limit; the scenario's, else `DEFAULT_MAX_TURNS`.
        turn_timeout: seconds one actor may take for one message.
        reward: the reward function; by default the final verdict
            (`CalendarFinalVerifier`, NeMo-Gym's rule).
        seed: the default user's seed; the scenario's by default.
        dialogue_id: bound to every log event; random by default.

    Returns:
        The `DialogueResult`, scored by the calendar turn verifiers and the
        final verifier (see `calendar_verifiers`).

    Raises:
        ValueError: a limit is out of range.
        ScenarioError: the default user needs a persona that is not bundled.
    """
    turn_verifiers, final_verifiers = calendar_verifiers(scenario)
    return await run_dialogue(
        assistant if assistant is not None else CalendarSolverAssistant(),
        user if user is not None else default_user(scenario, seed=seed),
        prefix=scenario.opening_transcript(),
        scenario=scenario,
        max_turns=max_turns or scenario.max_turns or DEFAULT_MAX_TURNS,
        turn_timeout=turn_timeout,
        turn_verifiers=turn_verifiers,
        final_verifiers=final_verifiers,
        reward=reward,
        dialogue_id=dialogue_id,
    )
