"""Run one scenario with a domain's defaults: its actors, verifiers and turn limit."""

from __future__ import annotations

from typing import Any

from convo_sim._actors import Actor
from convo_sim._orchestrator import run_dialogue
from convo_sim._results import DialogueResult
from convo_sim._verification import RewardFn
from convo_sim.domains import Domain
from convo_sim.domains._registry import resolve

__all__ = ["run_scenario", "user_seed"]


def user_seed(scenario: Any, sample_seed: int) -> int:
    """The seed of one sample's simulated user: the sample's seed mixed with the scenario's.

    What a domain's default user, an LLM user's sampling seed and its
    scenario card use, so that they agree. Mixing in the scenario's own
    `seed` keeps the promise that changing it in a scenario file changes
    its user's wording; with sample seed 0 the user gets the scenario's.
    """
    seed: int = sample_seed ^ scenario.seed
    return seed


async def run_scenario(
    scenario: Any,
    *,
    domain: str | Domain[Any] = "calendar",
    assistant: Actor | None = None,
    user: Actor | None = None,
    max_turns: int | None = None,
    turn_timeout: float | None = 60.0,
    reward: RewardFn | None = None,
    seed: int = 0,
    dialogue_id: str | None = None,
) -> DialogueResult:
    """Run one dialogue of `scenario` and return its result.

    With the same `seed`, the dialogue is the one the rollout engine (and
    `convo-sim run`) gives sample `i` of run seed `r` when `seed` is
    `sample_seed(r, scenario.id, i)`: the domain's factories build both.

    Args:
        scenario: what to run, a scenario of `domain`.
        domain: the domain, or its name (`convo_sim.domains.names()`).
        assistant: the assistant; the domain's by default.
        user: the user; the domain's by default, seeded with `seed`.
        max_turns: the turn limit; the scenario's, else the domain's.
        turn_timeout: seconds one actor may take for one message.
        reward: the reward function; by default the final verdict.
        seed: the sample seed the domain's actors get.
        dialogue_id: bound to every log event; random by default.

    Returns:
        The `DialogueResult`, scored by the domain's verifiers.

    Raises:
        UnknownDomainError: no domain has that name.
        ValueError: a limit is out of range.
        ScenarioError: the domain cannot build a user for the scenario (the
            calendar: a persona that is not bundled).
    """
    chosen = resolve(domain)
    turn_verifiers, final_verifiers = chosen.verifiers(scenario)
    return await run_dialogue(
        assistant if assistant is not None else chosen.assistant(scenario, seed),
        user if user is not None else chosen.user(scenario, seed),
        prefix=scenario.opening_transcript(),
        scenario=scenario,
        max_turns=max_turns or scenario.max_turns or chosen.max_turns,
        turn_timeout=turn_timeout,
        completion=chosen.completion(scenario) if chosen.completion else None,
        turn_verifiers=turn_verifiers,
        final_verifiers=final_verifiers,
        reward=reward,
        dialogue_id=dialogue_id,
        tools=chosen.tools(scenario) if chosen.tools else None,
    )
