"""One verifier runner: a live run and a re-scored record name, number and zero the same."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from convo_sim import (
    FinalContext,
    Rollout,
    TurnContext,
    TurnScore,
    Verdict,
    rescore,
    run_dialogue,
)
from convo_sim.agents import FunctionAssistant
from convo_sim.scenarios import Scenario
from convo_sim.users import ScriptedUser

ANYIO_BACKENDS = ("asyncio", "trio")
pytestmark = pytest.mark.timeout(20)


def plain(ctx: TurnContext) -> TurnScore:
    return TurnScore(score=1.0, reason="ok")


class Named:
    name = "named_by_attribute"

    def __call__(self, ctx: TurnContext) -> TurnScore:
        # Names itself and claims the wrong turn: the name stays, the turn is fixed.
        return TurnScore(score=0.5, reason="half", verifier="self_named", turn=99)


def crashes(ctx: TurnContext) -> TurnScore:
    raise KeyError("missing")


def wrong_type(ctx: TurnContext) -> TurnScore:
    return "fine"  # type: ignore[return-value]


async def slow(ctx: TurnContext) -> TurnScore:
    await anyio.lowlevel.checkpoint()
    return TurnScore(score=float(ctx.turn % 2), reason=f"turn {ctx.turn}")


def final_crash(ctx: FinalContext) -> Verdict:
    raise ValueError("no")


def final_ok(ctx: FinalContext) -> Verdict:
    return Verdict(reward=1.0, reason="pass")


TURN: Sequence[Any] = (plain, Named(), crashes, wrong_type, slow)
FINAL: Sequence[Any] = (final_ok, final_crash)


async def test_a_live_run_and_its_rescore_agree_score_for_score() -> None:
    scenario = Scenario(id="runner", system_prompt="Answer briefly.")
    result = await run_dialogue(
        FunctionAssistant(lambda view: f"ok {view.turn}"),
        ScriptedUser(["one", "two", "three"]),
        prefix=scenario.opening_transcript(),
        scenario=scenario,
        turn_verifiers=TURN,
        final_verifiers=FINAL,
    )
    scores = [(s.verifier, s.turn, s.score, s.reason) for s in result.turn_scores]
    assert scores[:5] == [
        ("plain", 1, 1.0, "ok"),
        ("self_named", 1, 0.5, "half"),
        ("crashes", 1, 0.0, "verifier_error"),
        ("wrong_type", 1, 0.0, "verifier_error"),
        ("slow", 1, 1.0, "turn 1"),
    ]
    assert len(scores) == 5 * result.turns == 15
    assert result.turn_scores[2].details == {"error": "KeyError: 'missing'"}
    assert "returned str" in result.turn_scores[3].details["error"]
    assert [(v.verifier, v.reward, v.reason) for v in result.verdicts] == [
        ("final_ok", 1.0, "pass"),
        ("final_crash", 0.0, "verifier_error"),
    ]

    record = Rollout.from_result(scenario, 0, 0, result)
    again = await rescore(record, scenario, turn_verifiers=TURN, final_verifiers=FINAL)
    assert again.turn_scores == record.turn_scores
    assert again.verdicts == record.verdicts
    assert again.reward == record.reward == 0.5
