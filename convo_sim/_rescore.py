"""Re-score saved rollouts with the current verifiers, without re-running them.

The dialogue is rebuilt from the record; each assistant message after the
scenario's opening is one turn, scored in the context the orchestrator gave
it (the dialogue up to and including that message). Final verifiers see the
recorded termination and turn count. A crashing verifier scores 0 with
reason `verifier_error`, and a record without a final assistant reply earns
0 with reason `no_final_reply`, as in a live run (`convo_sim._verification.judge`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from convo_sim._completion import detector_name
from convo_sim._messages import Transcript
from convo_sim._orchestrator import default_reward
from convo_sim._records import Rollout, ScenarioLike
from convo_sim._results import TurnScore
from convo_sim._verification import (
    FinalContext,
    FinalVerifier,
    RewardFn,
    TurnContext,
    TurnVerifier,
    judge,
)

__all__ = ["rescore"]


async def _call(verifier: object, ctx: object) -> Any:
    result = verifier(ctx)  # type: ignore[operator]
    return await result if inspect.isawaitable(result) else result


def _crash(exc: Exception) -> dict[str, str]:
    return {"error": f"{type(exc).__name__}: {exc}"}


async def rescore(
    rollout: Rollout,
    scenario: ScenarioLike,
    *,
    turn_verifiers: Sequence[TurnVerifier] = (),
    final_verifiers: Sequence[FinalVerifier] = (),
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
        for verifier in turn_verifiers:
            name = detector_name(verifier)
            try:
                score = await _call(verifier, ctx)
                if not isinstance(score, TurnScore):
                    raise TypeError(f"returned {type(score).__name__}, expected TurnScore")
            except Exception as exc:  # a crash is a zero, as in a live run
                score = TurnScore(score=0.0, reason="verifier_error", details=_crash(exc))
            scores.append(
                score.model_copy(update={"verifier": score.verifier or name, "turn": turn})
            )
    final = FinalContext(transcript, rollout.termination, rollout.turns, tuple(scores), scenario)
    if reward is None:
        reward = default_reward(turn_verifiers, final_verifiers)
    # The same rule as a live run: no final reply, no reward.
    verdicts, value = await judge(final, final_verifiers, reward)
    return rollout.model_copy(
        update={"turn_scores": tuple(scores), "verdicts": verdicts, "reward": value}
    ).writable()  # a verifier detail JSON cannot hold is escaped, not fatal
