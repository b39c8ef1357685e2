"""The orchestrator, driven through the public API."""

from __future__ import annotations

import math

import anyio
import pytest

from convo_sim import (
    CompletionContext,
    FinalContext,
    Message,
    TerminationReason,
    Transcript,
    TurnContext,
    TurnScore,
    Verdict,
    View,
    all_of,
    any_of,
    completion_phrases,
    cumulative,
    final_only,
    run_dialogue,
    state_predicate,
    stop_token,
)
from convo_sim.agents import FunctionAssistant, ScriptedAssistant
from convo_sim.users import FunctionUser, ScriptedUser

ANYIO_BACKENDS = ("asyncio", "trio")  # the core runs on both; see tests/conftest.py

pytestmark = pytest.mark.timeout(30)


def echo_assistant() -> FunctionAssistant:
    return FunctionAssistant(lambda view: f"echo: {view.last.content if view.last else ''}")


async def test_user_stop_keeps_the_stop_message() -> None:
    result = await run_dialogue(echo_assistant(), ScriptedUser(["hi", "bye ###STOP###"]))
    assert result.termination is TerminationReason.USER_STOP
    assert "stop_token" in result.terminated_by
    assert [m.content for m in result.transcript] == ["hi", "echo: hi", "bye ###STOP###"]
    assert result.turns == 1


async def test_assistant_stop() -> None:
    result = await run_dialogue(
        ScriptedAssistant(["working", "All done, goodbye!"]),
        ScriptedUser(["a", "b", "c"]),
        completion=[stop_token(), completion_phrases("goodbye")],
    )
    assert result.termination is TerminationReason.ASSISTANT_STOP
    assert result.terminated_by.startswith("completion_phrases")
    assert result.turns == 2


async def test_goal_reached_by_state_predicate() -> None:
    def count(transcript: Transcript) -> int:
        return sum(1 for m in transcript if m.role == "assistant")

    result = await run_dialogue(
        echo_assistant(),
        ScriptedUser(["x"] * 10),
        completion=state_predicate(count, lambda n: n >= 3, name="three_replies"),
    )
    assert result.termination is TerminationReason.GOAL_REACHED
    assert result.terminated_by == "three_replies"
    assert result.turns == 3


async def test_any_of_records_the_detector_that_fired() -> None:
    result = await run_dialogue(
        ScriptedAssistant(["fine", "DONE"]),
        ScriptedUser(["a", "b", "c"]),
        completion=any_of(stop_token(), completion_phrases("DONE", case_sensitive=True)),
    )
    assert result.termination is TerminationReason.ASSISTANT_STOP
    assert result.terminated_by == "completion_phrases('DONE',)"


async def test_plain_sync_and_async_callables_as_detectors() -> None:
    def never(ctx: CompletionContext) -> bool:
        return False

    async def second_user_message(ctx: CompletionContext) -> TerminationReason | None:
        users = [m for m in ctx.transcript if m.role == "user"]
        return TerminationReason.GOAL_REACHED if len(users) == 2 else None

    result = await run_dialogue(
        echo_assistant(), ScriptedUser(["a", "b", "c"]), completion=[never, second_user_message]
    )
    assert result.termination is TerminationReason.GOAL_REACHED
    assert result.terminated_by == "second_user_message"
    assert result.transcript.last == Message(role="user", content="b")


async def test_max_turns() -> None:
    result = await run_dialogue(echo_assistant(), ScriptedUser(["a"] * 10), max_turns=3)
    assert result.termination is TerminationReason.MAX_TURNS
    assert result.turns == 3
    assert len(result.transcript) == 6


async def test_unlimited_turns_end_by_detector() -> None:
    result = await run_dialogue(echo_assistant(), ScriptedUser(["a"] * 30), max_turns=None)
    assert result.termination is TerminationReason.USER_STOP
    assert result.turns == 30


async def test_stuck_actor_ends_by_turn_timeout() -> None:
    async def stuck(view: View) -> str:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    with anyio.fail_after(5):
        result = await run_dialogue(
            FunctionAssistant(stuck), ScriptedUser(["hi"]), turn_timeout=0.05
        )
    assert result.termination is TerminationReason.TURN_TIMEOUT
    assert result.terminated_by == "turn_timeout(assistant)"
    assert result.error is not None and result.error.source == "assistant"
    assert [m.content for m in result.transcript] == ["hi"]


async def test_time_budget_ends_a_slow_dialogue() -> None:
    async def slow(view: View) -> str:
        await anyio.sleep(0.02)
        return "ok"

    with anyio.fail_after(5):
        result = await run_dialogue(
            FunctionAssistant(slow), ScriptedUser(["a"] * 1000), max_turns=None, time_budget=0.2
        )
    assert result.termination is TerminationReason.TURN_TIMEOUT
    assert result.terminated_by == "time_budget"
    assert 1 <= result.turns < 1000


async def test_assistant_exception_is_captured() -> None:
    def broken(view: View) -> str:
        raise RuntimeError("model exploded")

    result = await run_dialogue(FunctionAssistant(broken), ScriptedUser(["hi"]))
    assert result.termination is TerminationReason.ASSISTANT_ERROR
    assert result.error is not None
    assert (result.error.source, result.error.type, result.error.message) == (
        "assistant",
        "RuntimeError",
        "model exploded",
    )
    assert result.turns == 0


async def test_user_exception_is_captured() -> None:
    async def broken(view: View) -> str:
        if view.turn > 1:
            raise ValueError("persona lost")
        return "hello"

    result = await run_dialogue(echo_assistant(), FunctionUser(broken))
    assert result.termination is TerminationReason.USER_ERROR
    assert result.error is not None and result.error.type == "ValueError"
    assert result.turns == 1


async def test_script_exhausted_assistant_is_an_error() -> None:
    result = await run_dialogue(ScriptedAssistant(["one"]), ScriptedUser(["a", "b"]))
    assert result.termination is TerminationReason.ASSISTANT_ERROR
    assert result.error is not None and result.error.type == "ScriptExhausted"


async def test_non_message_reply_is_an_error() -> None:
    class Bad:
        async def respond(self, view: View) -> Message:
            return 42  # type: ignore[return-value]

    result = await run_dialogue(Bad(), ScriptedUser(["a"]))
    assert result.termination is TerminationReason.ASSISTANT_ERROR
    assert result.error is not None and result.error.type == "TypeError"


async def test_stop_event_cancels_gracefully() -> None:
    stop = anyio.Event()

    async def slow(view: View) -> str:
        if view.turn == 2:
            stop.set()
            await anyio.sleep_forever()
        return "ok"

    with anyio.fail_after(5):
        result = await run_dialogue(FunctionAssistant(slow), ScriptedUser(["a"] * 5), stop=stop)
    assert result.termination is TerminationReason.CANCELLED
    assert result.turns == 1
    assert len(result.transcript) == 3


async def test_caller_cancellation_stops_both_actors() -> None:
    entered = anyio.Event()
    finished: list[str] = []

    async def waits(view: View) -> str:
        entered.set()
        try:
            await anyio.sleep_forever()
        finally:
            finished.append(view.role)
        return "never"

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: run_dialogue(FunctionAssistant(waits), ScriptedUser(["hi"])))
            await entered.wait()
            tg.cancel_scope.cancel()
    assert finished == ["assistant"]
    # Nothing of the dialogue is left running: only this test's task exists.
    await anyio.wait_all_tasks_blocked()


async def test_caller_cancellation_propagates_as_cancellation() -> None:
    async def waits(view: View) -> str:
        await anyio.sleep_forever()
        return "never"

    with anyio.fail_after(5), anyio.move_on_after(0.05) as scope:
        await run_dialogue(FunctionAssistant(waits), ScriptedUser(["hi"]))
    assert scope.cancelled_caught


async def test_views_are_role_relative() -> None:
    seen: dict[str, list[tuple[str, str | None]]] = {}

    def assistant(view: View) -> str:
        seen["assistant"] = [(m.role, m.content) for m in view.messages]
        return "A1"

    def user(view: View) -> str:
        seen["user"] = [(m.role, m.content) for m in view.messages]
        return "U" + str(view.turn)

    result = await run_dialogue(
        FunctionAssistant(assistant),
        FunctionUser(user),
        prefix=[Message(role="system", content="be brief")],
        max_turns=2,
    )
    assert result.turns == 2
    assert seen["assistant"] == [
        ("system", "be brief"),
        ("user", "U1"),
        ("assistant", "A1"),
        ("user", "U2"),
    ]
    # The user sees no system prompt of the assistant, and roles are flipped.
    assert seen["user"] == [("assistant", "U1"), ("user", "A1")]


async def test_prefix_ending_on_user_lets_the_assistant_speak_first() -> None:
    prefix = Transcript(
        messages=(Message(role="system", content="s"), Message(role="user", content="book it"))
    )
    result = await run_dialogue(echo_assistant(), ScriptedUser([]), prefix=prefix)
    assert [m.content for m in result.transcript] == ["s", "book it", "echo: book it", "###STOP###"]


async def test_assistant_may_open() -> None:
    result = await run_dialogue(
        ScriptedAssistant(["How can I help?", "sure"]), ScriptedUser(["x"]), opening="assistant"
    )
    assert [m.role for m in result.transcript] == ["assistant", "user", "assistant", "user"]
    assert result.termination is TerminationReason.USER_STOP


async def test_user_reply_with_assistant_role_is_normalised() -> None:
    result = await run_dialogue(
        echo_assistant(),
        FunctionUser(lambda v: Message(role="assistant", content="I am the user")),
        max_turns=1,
    )
    assert result.transcript[0] == Message(role="user", content="I am the user")


async def test_turn_verifiers_final_verifiers_and_reward() -> None:
    def length_ok(ctx: TurnContext) -> TurnScore:
        return TurnScore(score=1.0 if len(ctx.message.text) < 10 else 0.0, reason="len")

    async def last_is_short(ctx: FinalContext) -> Verdict:
        assert ctx.termination is TerminationReason.USER_STOP
        return Verdict(reward=0.5, reason="half")

    result = await run_dialogue(
        ScriptedAssistant(["short", "this one is long", "ok"]),
        ScriptedUser(["a", "b", "c"]),
        turn_verifiers=[length_ok],
        final_verifiers=[last_is_short],
    )
    assert [(s.turn, s.score, s.verifier) for s in result.turn_scores] == [
        (1, 1.0, "length_ok"),
        (2, 0.0, "length_ok"),
        (3, 1.0, "length_ok"),
    ]
    assert result.verdicts[0].verifier == "last_is_short"
    assert result.reward == 0.5  # final verdicts decide by default


async def test_crashing_verifier_scores_zero_with_reason() -> None:
    def crash(ctx: TurnContext) -> TurnScore:
        raise KeyError("boom")

    def final_crash(ctx: FinalContext) -> Verdict:
        raise RuntimeError("bad")

    result = await run_dialogue(
        echo_assistant(), ScriptedUser(["a"]), turn_verifiers=[crash], final_verifiers=[final_crash]
    )
    assert result.turn_scores[0].score == 0.0
    assert result.turn_scores[0].reason == "verifier_error"
    assert "KeyError" in result.turn_scores[0].details["error"]
    assert result.verdicts[0].reason == "verifier_error"
    assert result.reward == 0.0


async def test_crashing_detector_is_raised_plainly_not_as_a_group() -> None:
    def broken(ctx: CompletionContext) -> bool:
        raise LookupError("detector bug")

    with pytest.raises(LookupError, match="detector bug"):
        await run_dialogue(echo_assistant(), ScriptedUser(["a"]), completion=broken)


async def test_detector_returning_nonsense_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="expected a bool"):
        await run_dialogue(echo_assistant(), ScriptedUser(["a"]), completion=lambda ctx: "yes")  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize("kwargs", [{"max_turns": 0}, {"turn_timeout": 0}, {"time_budget": -1.0}])
async def test_bad_limits_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        await run_dialogue(echo_assistant(), ScriptedUser(["a"]), **kwargs)  # type: ignore[arg-type]


async def test_timings_and_usage_are_recorded() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    result = await run_dialogue(
        FunctionAssistant(
            lambda v: Message(role="assistant", content="x", metadata={"usage": usage})
        ),
        ScriptedUser(["a", "b"]),
    )
    assert [(t.turn, t.role) for t in result.timings] == [
        (1, "user"),
        (1, "assistant"),
        (2, "user"),
        (2, "assistant"),
        (3, "user"),
    ]
    assert all(t.seconds >= 0 for t in result.timings)
    assert result.usage.total_tokens == 10


async def test_result_round_trips_through_json() -> None:
    result = await run_dialogue(
        echo_assistant(),
        ScriptedUser(["a"]),
        turn_verifiers=[lambda ctx: TurnScore(score=1.0, reason="ok", details={"n": 1})],
    )
    assert type(result).model_validate_json(result.model_dump_json()) == result


async def test_thousand_concurrent_dialogues_complete_correctly() -> None:
    results: dict[int, object] = {}

    async def one(i: int) -> None:
        user = ScriptedUser([f"{i}-{k}" for k in range(3)])
        assistant = FunctionAssistant(lambda view: f"ack {view.last.content if view.last else ''}")
        results[i] = await run_dialogue(assistant, user)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for i in range(1000):
                tg.start_soon(one, i)
    assert len(results) == 1000
    for i, result in results.items():
        expected = []
        for k in range(3):
            expected += [f"{i}-{k}", f"ack {i}-{k}"]
        expected.append("###STOP###")
        assert [m.content for m in result.transcript] == expected  # type: ignore[attr-defined]
        assert result.termination is TerminationReason.USER_STOP  # type: ignore[attr-defined]


def scores(*values: float) -> list[TurnScore]:
    return [TurnScore(score=v, turn=i + 1) for i, v in enumerate(values)]


def test_aggregations() -> None:
    verdicts = [Verdict(reward=1.0), Verdict(reward=0.0)]
    assert final_only()([], verdicts) == 0.5
    assert final_only(combine="min")([], verdicts) == 0.0
    assert final_only()(scores(1.0), []) is None
    assert cumulative()(scores(1.0, 0.0, 0.5), []) == pytest.approx(0.5)
    # linear: weights 1, 2, 3
    assert cumulative(weighting="linear")(scores(1.0, 0.0, 0.5), []) == pytest.approx(2.5 / 6)
    # exponential recency with decay 0.5: weights 0.25, 0.5, 1
    assert cumulative(weighting="exponential", decay=0.5)(
        scores(1.0, 0.0, 0.5), []
    ) == pytest.approx(0.75 / 1.75)
    assert cumulative(final_weight=0.5)(scores(1.0), [Verdict(reward=0.0)]) == pytest.approx(0.5)
    assert all_of()(scores(1.0, 1.0), [Verdict(reward=1.0)]) == 1.0
    assert all_of()(scores(1.0, 0.9), [Verdict(reward=1.0)]) == 0.0
    assert all_of()([], []) is None
    # Several verifiers on one turn average before weighting.
    two = [TurnScore(score=1.0, turn=1), TurnScore(score=0.0, turn=1), TurnScore(score=1.0, turn=2)]
    assert cumulative()(two, []) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        cumulative(decay=0.0)
    assert not math.isnan(cumulative(weighting="linear")(scores(0.0), []) or 0.0)
