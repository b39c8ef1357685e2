"""The reward rule: the final verdict comes from the final assistant turn, or the reward is 0.

A dialogue whose last assistant turn is missing, empty, whitespace, only
tool calls, failed or timed out earns nothing, whatever the aggregation and
whatever the final verifiers would say about an earlier reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from convo_sim import (
    FinalContext,
    Message,
    TerminationReason,
    Transcript,
    TurnContext,
    TurnScore,
    Verdict,
    View,
    all_of,
    cumulative,
    final_only,
    final_reply,
    rescore,
    run_dialogue,
)
from convo_sim._messages import ToolCall
from convo_sim._models import Completion
from convo_sim._records import Rollout
from convo_sim._verification import RewardFn
from convo_sim.agents import CalendarSolverAssistant, FunctionAssistant, LLMAssistant
from convo_sim.scenarios import bundled_scenarios
from convo_sim.testing import FunctionModel
from convo_sim.users import CalendarUser, ScriptedUser
from convo_sim.verifiers import calendar_verifiers

pytestmark = pytest.mark.timeout(30)

GOOD = "all good"


def naive_final(ctx: FinalContext) -> Verdict:
    """A final verifier written the easy way: it grades the last non-empty assistant text."""
    texts = [m.text for m in ctx.transcript.messages if m.role == "assistant" and m.text.strip()]
    return Verdict(reward=1.0 if texts and texts[-1] == GOOD else 0.0, reason="naive")


def always_one(ctx: TurnContext) -> TurnScore:
    return TurnScore(score=1.0, reason="fine")


def custom(scores: Sequence[TurnScore], verdicts: Sequence[Verdict]) -> float | None:
    return 1.0  # a reward function that pays whatever happened


REWARDS: dict[str, RewardFn] = {
    "final_only": final_only(),
    "final_only_min": final_only(combine="min"),
    "cumulative": cumulative(),
    "cumulative_blend": cumulative(final_weight=0.5),
    "cumulative_exp": cumulative(weighting="exponential"),
    "all_of": all_of(),
    "custom": custom,
}


class Then:
    """An assistant that says GOOD first, then ends its last turn badly."""

    def __init__(self, ending: str) -> None:
        self.ending = ending
        self.calls = 0

    async def respond(self, view: View) -> Message:
        self.calls += 1
        if self.calls == 1:
            return Message(role="assistant", content=GOOD)
        if self.ending == "empty":
            return Message(role="assistant", content="")
        if self.ending == "whitespace":
            return Message(role="assistant", content=" \n\t ")
        if self.ending == "none":
            return Message(role="assistant", content=None, tool_calls=(_call(),))
        if self.ending == "tool_calls":
            return Message(role="assistant", content="", tool_calls=(_call(),))
        if self.ending == "text_and_tool_calls":
            return Message(role="assistant", content=GOOD, tool_calls=(_call(),))
        if self.ending == "error":
            raise RuntimeError("out of tokens")
        await anyio.sleep_forever()  # "timeout": never answers
        raise AssertionError("unreachable")


def _call() -> ToolCall:
    return ToolCall(id="c1", name="lookup", arguments="{}")


ENDINGS = ["empty", "whitespace", "none", "tool_calls", "text_and_tool_calls", "error", "timeout"]


@pytest.mark.parametrize("reward_name", list(REWARDS))
@pytest.mark.parametrize("ending", ENDINGS)
async def test_a_bad_last_turn_earns_nothing_under_every_aggregation(
    ending: str, reward_name: str
) -> None:
    with anyio.fail_after(10):
        result = await run_dialogue(
            Then(ending),
            ScriptedUser(["first", "second"], when_done="stop"),
            max_turns=2,
            turn_timeout=0.2,
            turn_verifiers=[always_one],
            final_verifiers=[naive_final],
            reward=REWARDS[reward_name],
        )
    assert result.turns >= 1
    assert result.reward == 0.0, (ending, reward_name, result.verdicts)
    assert [v.reason for v in result.verdicts] == ["no_final_reply"]
    assert result.verdicts[0].verifier == "naive_final"


async def test_the_rule_holds_without_any_final_verifier() -> None:
    # Turn scores only (cumulative by default): the missing turn is not
    # averaged away; the reward is 0 and a verdict says why.
    result = await run_dialogue(
        Then("error"),
        ScriptedUser(["first", "second"]),
        max_turns=2,
        turn_verifiers=[always_one],
    )
    assert result.termination is TerminationReason.ASSISTANT_ERROR
    assert result.reward == 0.0
    assert [(v.verifier, v.reason) for v in result.verdicts] == [("final_reply", "no_final_reply")]


async def test_no_verifiers_no_reward() -> None:
    result = await run_dialogue(Then("error"), ScriptedUser(["a", "b"]), max_turns=2)
    assert result.reward is None and result.verdicts == ()


@pytest.mark.parametrize("reward_name", list(REWARDS))
async def test_a_good_last_turn_is_graded_normally(reward_name: str) -> None:
    result = await run_dialogue(
        FunctionAssistant(lambda view: GOOD),
        ScriptedUser(["first", "second"], when_done="stop"),
        max_turns=5,
        turn_verifiers=[always_one],
        final_verifiers=[naive_final],
        reward=REWARDS[reward_name],
    )
    # The user's closing stop message needs no answer.
    assert result.termination is TerminationReason.USER_STOP
    assert result.transcript.messages[-1].role == "user"
    assert result.reward == 1.0
    assert [v.reason for v in result.verdicts] == ["naive"]


async def test_a_user_failing_after_the_answer_keeps_the_answer() -> None:
    def fail(view: View) -> str:
        if view.turn > 1:
            raise RuntimeError("user broke")
        return "first"

    from convo_sim.users import FunctionUser

    result = await run_dialogue(
        FunctionAssistant(lambda view: GOOD),
        FunctionUser(fail),
        max_turns=3,
        final_verifiers=[naive_final],
    )
    assert result.termination is TerminationReason.USER_ERROR
    assert result.reward == 1.0


def test_final_reply_reads_the_end_of_the_dialogue() -> None:
    user = Message(role="user", content="add it")
    answer = Message(role="assistant", content="done")
    stop = Message(role="user", content="thanks ###STOP###")
    T = TerminationReason

    def of(*messages: Message, ending: TerminationReason = T.MAX_TURNS) -> Message | None:
        return final_reply(Transcript(messages=messages), ending)

    assert of(user, answer) == answer
    assert of(user, answer, stop, ending=T.USER_STOP) == answer
    assert of(user, answer, stop, ending=T.GOAL_REACHED) == answer
    # A user message the dialogue did not end on is a question left unanswered.
    assert of(user, answer, stop, ending=T.TURN_TIMEOUT) is None
    assert of(user, answer, stop, ending=T.CANCELLED) is None
    assert of(user) is None
    assert of() is None
    assert of(user, answer, ending=T.ASSISTANT_ERROR) is None
    assert of(user, answer, ending=T.USER_ERROR) == answer
    assert of(user, Message(role="assistant", content="  ")) is None
    assert of(user, Message(role="assistant", content=None, tool_calls=(_call(),))) is None
    assert of(user, Message(role="assistant", content="done", tool_calls=(_call(),))) is None
    tool = Message(role="tool", content="{}", tool_call_id="c1")
    assert of(user, answer, tool) is None
    # Only the reply closing a stop-ended dialogue is skipped, never two.
    assert of(user, answer, stop, stop, ending=T.USER_STOP) is None


# --- The reproductions -------------------------------------------------------


async def test_nemo_row_with_an_empty_length_cut_reply_earns_nothing() -> None:
    scenario = bundled_scenarios("nemo_calendar_example")[0]
    model = FunctionModel(
        lambda messages, settings: Completion(
            message=Message(role="assistant", content=""), finish_reason="length"
        )
    )
    turn, final = calendar_verifiers(scenario)
    with anyio.fail_after(10):
        result = await run_dialogue(
            LLMAssistant(model),
            ScriptedUser([]),
            prefix=scenario.opening_transcript(),
            scenario=scenario,
            max_turns=scenario.max_turns,
            turn_verifiers=turn,
            final_verifiers=final,
        )
    assert result.termination is TerminationReason.ASSISTANT_ERROR
    assert result.reward == 0.0
    assert [(v.verifier, v.reason) for v in result.verdicts] == [
        ("calendar_final", "no_final_reply")
    ]


class FailsAfterGoal:
    """The rule-based solver, which then fails on the turn after it met the goal."""

    def __init__(self, scenario: Any) -> None:
        self.inner = CalendarSolverAssistant()
        self.turns = 0
        self.limit = len(scenario.goal.steps)

    async def respond(self, view: View) -> Message:
        self.turns += 1
        if self.turns > self.limit:
            raise RuntimeError("the model ran out of tokens")
        return await self.inner.respond(view)


@pytest.mark.parametrize("index", range(4))
async def test_a_solver_failing_after_reaching_the_goal_earns_nothing(index: int) -> None:
    scenario = bundled_scenarios()[index]
    assert scenario.goal is not None
    turn, final = calendar_verifiers(scenario)
    with anyio.fail_after(10):
        result = await run_dialogue(
            FailsAfterGoal(scenario),
            _NeverStops(CalendarUser(scenario)),
            scenario=scenario,
            prefix=scenario.opening_transcript(),
            max_turns=50,
            turn_verifiers=turn,
            final_verifiers=final,
        )
    assert result.termination is TerminationReason.ASSISTANT_ERROR
    assert result.reward == 0.0
    assert [v.reason for v in result.verdicts] == ["no_final_reply"]


class _NeverStops:
    """A calendar user that keeps talking once its goal is met (so the assistant must answer)."""

    def __init__(self, user: CalendarUser) -> None:
        self.user = user

    async def respond(self, view: View) -> Message:
        message = await self.user.respond(view)
        return message.model_copy(
            update={"content": message.text.replace(self.user.stop_token, "Anything else?")}
        )


async def test_rescoring_applies_the_same_rule() -> None:
    scenario = bundled_scenarios("nemo_calendar_example")[0]
    transcript = scenario.opening_transcript()
    # The record of a dialogue whose assistant failed: the transcript ends on
    # the user's message, and the dataset's own assistant turns come before it.
    record = Rollout(
        responses_create_params={"input": transcript.to_responses_input()},
        scenario_id=scenario.id,
        sample_index=0,
        seed=0,
        termination=TerminationReason.ASSISTANT_ERROR,
        terminated_by="assistant_error",
        turns=0,
    )
    turn, final = calendar_verifiers(scenario)
    for reward in (None, *REWARDS.values()):
        again = await rescore(
            record, scenario, turn_verifiers=turn, final_verifiers=final, reward=reward
        )
        assert again.reward == 0.0
        assert [v.reason for v in again.verdicts] == ["no_final_reply"]
