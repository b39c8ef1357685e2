"""Re-score saved rollouts with the current verifiers, without re-running them.

The dialogue is rebuilt from the record; each assistant message after the
scenario's opening is one turn, scored in the context the orchestrator gave
it (the dialogue up to and including that message). Final verifiers see the
recorded termination and turn count. The verifiers run exactly as in a live
run, through the same runner (`score_turn`, `judge` in
`convo_sim._verification`): a crashing verifier scores 0 with reason
`verifier_error`, and a record without a final assistant reply earns 0 with
reason `no_final_reply`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from convo_sim._completion import TurnContext
from convo_sim._messages import Transcript
from convo_sim._orchestrator import default_reward
from convo_sim._records import Rollout, ScenarioLike
from convo_sim._results import TurnScore
from convo_sim._verification import (
    FinalContext,
    FinalVerifier,
    RewardFn,
    TurnVerifier,
    judge,
    score_turn,
)

__all__ = ["rescore"]

S = TypeVar("S", bound=ScenarioLike)


async def rescore(
    rollout: Rollout,
    scenario: S,
    *,
    turn_verifiers: Sequence[TurnVerifier[S]] = (),
    final_verifiers: Sequence[FinalVerifier[S]] = (),
    reward: RewardFn | None = None,
) -> Rollout:
    """Return the record with new turn scores, verdicts and reward.

    Args:
        rollout: a saved record.
        scenario: its scenario (for the opening, and for the verifiers).
        turn_verifiers: scored on every assistant turn of the record.
        final_verifiers: judge the whole dialogue.
        reward: default `default_reward(turn_verifiers, final_verifiers)`.

    Raises:
        ValueError: the record's dialogue does not start with the scenario's opening.
    """
    transcript = rollout.transcript
    opening = Transcript.from_responses_input(scenario.opening_transcript().to_responses_input())
    start = len(opening)
    if transcript.messages[:start] != opening.messages:
        raise ValueError(
            f"rollout ({rollout.scenario_id!r}, sample {rollout.sample_index}) does not start "
            "with its scenario's opening; was the scenario changed?"
        )
    scores: list[TurnScore] = []
    turn = 0
    for position in range(start, len(transcript)):
        message = transcript[position]
        if message.role != "assistant":
            continue
        turn += 1
        ctx = TurnContext(
            Transcript(messages=transcript.messages[: position + 1]), message, turn, scenario
        )
        scores.extend(await score_turn(ctx, turn_verifiers))
    final = FinalContext(transcript, rollout.termination, rollout.turns, tuple(scores), scenario)
    if reward is None:
        reward = default_reward(turn_verifiers, final_verifiers)
    # The same rule as a live run: no final reply, no reward.
    verdicts, value = await judge(final, final_verifiers, reward)
    return rollout.model_copy(
        update={"turn_scores": tuple(scores), "verdicts": verdicts, "reward": value}
    ).writable()  # a verifier detail JSON cannot hold is escaped, not fatal
