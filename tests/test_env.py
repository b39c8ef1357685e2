"""The step-wise environment has exactly `run_dialogue`'s semantics.

The equivalence tests drive a `DialogueEnv` with an actor (the trainer's
part: the actor answers each observation, the answer goes to `step`) and
run `run_dialogue` with a fresh copy of the same actor; transcript, turn
scores, verdicts, reward, termination, error and the rollout record must
be equal, on every bundled scenario, 200 generated ones (with assistants
that slip, fail and run out of turns) and every termination reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from convo_sim import (
    TOKEN_FIELDS,
    Actor,
    DialogueEnv,
    DialogueResult,
    Message,
    Rollout,
    SyncDialogueEnv,
    TerminationReason,
    Transcript,
    TurnContext,
    TurnScore,
    View,
    completion_phrases,
    run_dialogue,
    state_predicate,
    stop_token,
)
from convo_sim.agents import FunctionAssistant, ScriptedAssistant
from convo_sim.domains import get
from convo_sim.domains.calendar import (
    PERSONA_CHOICES,
    CalendarScenario,
    bundled_scenarios,
    load_scenarios,
)
from convo_sim.scenarios import run_scenario
from convo_sim.users import FunctionUser, ScriptedUser

ANYIO_BACKENDS = ("asyncio", "trio")  # the core runs on both; see tests/conftest.py

pytestmark = pytest.mark.timeout(60)

CALENDAR = get("calendar")
SEED = 11
# What may differ between two runs of one dialogue: wall time and the random id.
VOLATILE = {"timings", "duration_s", "dialogue_id"}


async def drive(env: DialogueEnv[Any], actor: Actor, scenario: Any, seed: int) -> DialogueResult:
    """The trainer's loop: the actor answers every observation, the env does the rest."""
    obs = await env.reset(scenario, seed)
    while not env.done:
        try:
            reply = await actor.respond(obs)
        except Exception as exc:
            step = await env.fail(exc)
        else:
            step = await env.step(reply)
        obs = step.observation
    return await env.result()


def same(env_result: DialogueResult, reference: DialogueResult) -> None:
    mine = env_result.model_dump(exclude=VOLATILE)
    theirs = reference.model_dump(exclude=VOLATILE)
    assert mine == theirs
    # Same messages by the same sides in the same turns (the seconds differ).
    assert [(t.turn, t.role) for t in env_result.timings] == [
        (t.turn, t.role) for t in reference.timings
    ]


def same_record(scenario: Any, env_record: Rollout, reference: DialogueResult) -> None:
    # What `convo-sim run` writes: the domain adds the persona, the fidelity
    # metrics and `user_failure` to every record (issue 16).
    expected = CALENDAR.annotate(Rollout.from_result(scenario, 0, SEED, reference), scenario)
    if getattr(scenario, "goal", None) is not None:  # reviewed: the user had a goal
        assert env_record.user_failure is not None and "fidelity" in env_record.metadata
    assert env_record.model_dump(exclude=VOLATILE) == expected.model_dump(exclude=VOLATILE)


# ---------------------------------------------------------------- the calendar


def slipping(scenario: CalendarScenario, seed: int) -> Actor:
    """The solver, except that on every third turn it forgets the last event."""
    solver = CALENDAR.assistant(scenario, seed)

    async def reply(view: View) -> Message:
        message = await solver.respond(view)
        if view.turn % 3 == 0 and message.content and "}, {" in message.content:
            cut = message.content.rsplit("}, {", 1)[0] + "}]"
            return message.model_copy(update={"content": cut})
        return message

    return FunctionAssistant(reply)


def failing(scenario: CalendarScenario, seed: int) -> Actor:
    """The solver until turn 3, then a model that raises."""
    solver = CALENDAR.assistant(scenario, seed)

    async def reply(view: View) -> Message:
        if view.turn >= 3:
            raise RuntimeError("model server went away")
        return await solver.respond(view)

    return FunctionAssistant(reply)


def garbling(scenario: CalendarScenario, seed: int) -> Actor:
    """The solver until turn 2, then something that is no message."""
    solver = CALENDAR.assistant(scenario, seed)

    class Garbler:
        async def respond(self, view: View) -> Message:
            if view.turn >= 2:
                return {"role": "assistant", "content": "not a Message"}  # type: ignore[return-value]
            return await solver.respond(view)

    return Garbler()


ASSISTANTS: dict[str, Callable[[CalendarScenario, int], Actor]] = {
    "solver": CALENDAR.assistant,
    "slipping": slipping,
    "failing": failing,
    "garbling": garbling,
}


async def check_calendar(
    scenario: CalendarScenario,
    make: Callable[[CalendarScenario, int], Actor],
    max_turns: int | None,
) -> DialogueResult:
    reference = await run_scenario(
        scenario, assistant=make(scenario, SEED), seed=SEED, max_turns=max_turns
    )
    env: DialogueEnv[CalendarScenario] = DialogueEnv("calendar", max_turns=max_turns)
    result = await drive(env, make(scenario, SEED), scenario, SEED)
    same(result, reference)
    same_record(scenario, await env.rollout(), reference)
    return result


def nemo_rows() -> list[CalendarScenario]:
    """The five NeMo rows, as prefixes (as bundled) and replayed by a scripted user."""
    prefixes = bundled_scenarios("nemo_calendar_example")
    from importlib.resources import as_file, files

    resource = files("convo_sim.domains.calendar") / "data" / "nemo_calendar_example.jsonl"
    with as_file(resource) as path:
        replays = load_scenarios(path, nemo="replay")
    return prefixes + [s.model_copy(update={"id": s.id + "-replay"}) for s in replays]


async def test_every_bundled_scenario_with_every_assistant() -> None:
    scenarios = CALENDAR.scenarios() + nemo_rows()
    assert len(scenarios) == 20
    endings: set[TerminationReason] = set()
    with anyio.fail_after(50):
        for scenario in scenarios:
            for make in ASSISTANTS.values():
                endings.add((await check_calendar(scenario, make, None)).termination)
            endings.add((await check_calendar(scenario, CALENDAR.assistant, 2)).termination)
    assert {
        TerminationReason.USER_STOP,
        TerminationReason.MAX_TURNS,
        TerminationReason.ASSISTANT_ERROR,
    } <= endings


async def test_200_generated_scenarios() -> None:
    generated = CALENDAR.generate(200, seed=5)
    kinds = list(ASSISTANTS.items())
    rewards: list[float | None] = []
    endings: dict[TerminationReason, int] = {}
    with anyio.fail_after(55):
        for index, scenario in enumerate(generated):
            # Personas vary the user; the assistant and the turn limit vary the ending.
            persona = PERSONA_CHOICES[index % len(PERSONA_CHOICES)] if index % 2 else None
            scenario = scenario.model_copy(update={"persona": persona})
            _, make = kinds[index % len(kinds)]
            max_turns = 3 if index % 7 == 0 else None
            result = await check_calendar(scenario, make, max_turns)
            rewards.append(result.reward)
            endings[result.termination] = endings.get(result.termination, 0) + 1
    # The sweep covers what it claims: passes, failures and four endings.
    assert 0.0 in rewards and 1.0 in rewards
    assert {
        TerminationReason.USER_STOP,
        TerminationReason.MAX_TURNS,
        TerminationReason.ASSISTANT_ERROR,
    } <= set(endings)


# ---------------------------------------------------------------- every ending


def echo(view: View) -> str:
    return f"echo: {view.last.content if view.last else ''}"


async def check(
    make_assistant: Callable[[], Actor],
    make_user: Callable[[], Actor],
    **options: Any,
) -> DialogueResult:
    """run_dialogue and the env driven by the same (fresh) actors agree."""
    turn_timeout = options.pop("turn_timeout", 60.0)
    reference = await run_dialogue(
        make_assistant(), make_user(), turn_timeout=turn_timeout, **options
    )
    completion = options.pop("completion", None)
    verifiers = (options.pop("turn_verifiers", ()), options.pop("final_verifiers", ()))
    env: DialogueEnv[Any] = DialogueEnv(
        user=lambda scenario, seed: make_user(),
        verifiers=lambda scenario: verifiers,
        completion=(lambda scenario: completion) if completion is not None else None,
        turn_timeout=turn_timeout,
        policy_timeout=turn_timeout,
        **options,
    )
    result = await drive(env, make_assistant(), None, 0)
    same(result, reference)
    return result


def scored(ctx: TurnContext) -> TurnScore:
    return TurnScore(score=0.5 if "2" in ctx.message.text else 1.0, reason="ok")


async def test_user_stop() -> None:
    result = await check(
        lambda: FunctionAssistant(echo),
        lambda: ScriptedUser(["1", "2", "bye ###STOP###"]),
        turn_verifiers=[scored],
    )
    assert result.termination is TerminationReason.USER_STOP
    assert [s.score for s in result.turn_scores] == [1.0, 0.5]


async def test_max_turns() -> None:
    result = await check(
        lambda: FunctionAssistant(echo), lambda: ScriptedUser(["x"] * 9), max_turns=3
    )
    assert result.termination is TerminationReason.MAX_TURNS
    assert result.turns == 3


async def test_assistant_stop_and_goal_reached() -> None:
    result = await check(
        lambda: ScriptedAssistant(["working", "All done, goodbye!"]),
        lambda: ScriptedUser(["a", "b", "c"]),
        completion=[stop_token(), completion_phrases("goodbye")],
    )
    assert result.termination is TerminationReason.ASSISTANT_STOP

    def replies(transcript: Transcript) -> int:
        return sum(m.role == "assistant" for m in transcript)

    result = await check(
        lambda: FunctionAssistant(echo),
        lambda: ScriptedUser(["x"] * 9),
        completion=state_predicate(replies, lambda n: n >= 2, name="two"),
    )
    assert (result.termination, result.terminated_by) == (TerminationReason.GOAL_REACHED, "two")


async def test_assistant_and_user_errors() -> None:
    def boom(view: View) -> str:
        if view.turn == 2:
            raise ValueError("policy crashed")
        return "ok"

    result = await check(lambda: FunctionAssistant(boom), lambda: ScriptedUser(["a", "b", "c"]))
    assert result.termination is TerminationReason.ASSISTANT_ERROR
    assert result.error is not None and result.error.turn == 2

    def broken(view: View) -> str:
        if view.turn == 2:
            raise KeyError("user model")
        return "hi"

    result = await check(lambda: FunctionAssistant(echo), lambda: FunctionUser(broken))
    assert result.termination is TerminationReason.USER_ERROR
    assert result.error is not None and result.error.type == "KeyError"


async def test_a_user_that_stops_before_the_assistant_speaks() -> None:
    result = await check(lambda: FunctionAssistant(echo), lambda: ScriptedUser(["###STOP###"]))
    assert result.termination is TerminationReason.USER_STOP
    assert result.turns == 0


async def test_the_assistant_opens() -> None:
    result = await check(
        lambda: FunctionAssistant(lambda view: "Hello, how can I help?"),
        lambda: ScriptedUser(["x", "###STOP###"]),
        opening="assistant",
    )
    assert [m.role for m in result.transcript] == ["assistant", "user", "assistant", "user"]


async def test_slow_assistant_and_slow_user_time_out() -> None:
    async def slow(view: View) -> str:
        if view.turn == 2:
            await anyio.sleep(0.3)
        return "ok"

    with anyio.fail_after(10):
        result = await check(
            lambda: FunctionAssistant(slow), lambda: ScriptedUser(["a", "b", "c"]), turn_timeout=0.1
        )
    assert (result.termination, result.terminated_by) == (
        TerminationReason.TURN_TIMEOUT,
        "turn_timeout(assistant)",
    )
    assert result.error is not None and result.error.source == "assistant"

    with anyio.fail_after(10):
        result = await check(
            lambda: FunctionAssistant(echo), lambda: FunctionUser(slow), turn_timeout=0.1
        )
    assert result.terminated_by == "turn_timeout(user)"
    assert result.error is not None and result.error.turn == 2


async def test_a_spent_time_budget() -> None:
    async def slow_user(view: View) -> str:
        await anyio.sleep(0.08)
        return "more"

    with anyio.fail_after(10):
        result = await check(
            lambda: FunctionAssistant(echo), lambda: FunctionUser(slow_user), time_budget=0.2
        )
    assert (result.termination, result.terminated_by) == (
        TerminationReason.TURN_TIMEOUT,
        "time_budget",
    )


async def test_a_crashing_detector_is_raised_by_both() -> None:
    def bad(ctx: TurnContext) -> bool:
        raise ZeroDivisionError("detector bug")

    with pytest.raises(ZeroDivisionError):
        await run_dialogue(FunctionAssistant(echo), ScriptedUser(["a"]), completion=bad)
    env: DialogueEnv[Any] = DialogueEnv(user=ScriptedUser(["a"]), completion=lambda scenario: bad)
    with pytest.raises(ZeroDivisionError):
        await env.reset()


# ---------------------------------------------------------------- the environment itself


async def test_step_returns_gymnasium_tuples() -> None:
    env: DialogueEnv[Any] = DialogueEnv(user=ScriptedUser(["hi", "more", "bye ###STOP###"]))
    obs = await env.reset()
    assert obs.role == "assistant" and [m.content for m in obs.messages] == ["hi"]
    obs, reward, terminated, truncated, info = await env.step("hello")
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert [m.content for m in info["new_messages"]] == ["more"]
    assert info["termination"] is None and info["result"] is None
    obs, reward, terminated, truncated, info = await env.step(
        Message(role="assistant", content="x")
    )
    assert (terminated, truncated, info["termination"]) == (True, False, "user_stop")
    assert info["result"] is not None and info["result"] == await env.result()
    assert [m.content for m in obs.messages] == ["hi", "hello", "more", "x", "bye ###STOP###"]


async def test_truncation_is_max_turns_not_termination() -> None:
    env: DialogueEnv[Any] = DialogueEnv(user=ScriptedUser(["a", "b"]), max_turns=1)
    await env.reset()
    step = await env.step("ok")
    assert (step.terminated, step.truncated, step.info["termination"]) == (False, True, "max_turns")


async def test_the_reward_comes_at_the_end_and_is_the_result_s() -> None:
    scenario = CALENDAR.scenarios()[0]
    env: DialogueEnv[CalendarScenario] = DialogueEnv("calendar")
    solver = CALENDAR.assistant(scenario, 0)
    obs = await env.reset(scenario, 0)
    rewards = []
    while not env.done:
        step = await env.step(await solver.respond(obs))
        obs = step.observation
        rewards.append(step.reward)
        assert step.info["turn_scores"], "every assistant turn is scored"
    assert rewards[:-1] == [0.0] * (len(rewards) - 1)
    assert rewards[-1] == (await env.result()).reward == 1.0


async def test_token_fields_reach_the_record() -> None:
    env: DialogueEnv[Any] = DialogueEnv(
        "calendar", user=lambda scenario, seed: ScriptedUser(["a", "b", "###STOP###"])
    )
    scenario = CALENDAR.scenarios()[0].model_copy(update={"prefix": ()})
    await env.reset(scenario, 0)
    seen: list[int] = []
    for turn in range(2):
        prompt = [*seen, 100 + turn]  # the whole history, then the new user message
        tokens = {
            "prompt_token_ids": prompt,
            "generation_token_ids": [7, 8, turn],
            "generation_log_probs": [-0.5, -0.25, -1.0],
        }
        await env.step(Message(role="assistant", content="[]", metadata=tokens))
        seen = [*prompt, 7, 8, turn]
    record = await env.rollout()
    items = [i for i in record.responses_create_params["input"] if i.get("role") == "assistant"]
    assert [i["generation_token_ids"] for i in items] == [[7, 8, 0], [7, 8, 1]]
    assert all(set(TOKEN_FIELDS) <= set(i) for i in items)
    assert record.contiguity is not None and record.contiguity.contiguous


async def test_result_of_an_unfinished_dialogue_is_cancelled() -> None:
    env: DialogueEnv[Any] = DialogueEnv(user=ScriptedUser(["a", "b"]))
    await env.reset()
    await env.step("one")
    result = await env.result()
    assert (result.termination, result.terminated_by, result.turns) == (
        TerminationReason.CANCELLED,
        "closed",
        1,
    )
    assert env.done


async def test_misuse_raises() -> None:
    env: DialogueEnv[Any] = DialogueEnv(user=ScriptedUser(["###STOP###"]))
    with pytest.raises(RuntimeError, match="reset"):
        await env.step("x")
    await env.reset()
    assert env.done
    with pytest.raises(RuntimeError, match="ended"):
        await env.step("x")
    with pytest.raises(ValueError, match="domain or a user"):
        DialogueEnv()
    with pytest.raises(ValueError, match="policy_timeout"):
        DialogueEnv(user=ScriptedUser([]), policy_timeout=0)


async def test_a_step_while_the_user_speaks_is_refused() -> None:
    release = anyio.Event()

    async def waits(view: View) -> str:
        await release.wait()
        return "later"

    env: DialogueEnv[Any] = DialogueEnv(user=FunctionUser(waits))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(env.reset)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(RuntimeError, match="in progress"):
                await env.step("x")
            release.set()
    assert not env.done


async def test_cancelling_a_step_ends_the_dialogue_as_cancelled() -> None:
    async def never(view: View) -> str:
        await anyio.sleep_forever()
        raise AssertionError

    env: DialogueEnv[Any] = DialogueEnv(user=FunctionUser(never))
    with anyio.move_on_after(0.1):
        await env.reset()
    result = await env.result()
    assert (result.termination, result.terminated_by) == (TerminationReason.CANCELLED, "cancelled")


def test_sync_env_matches_the_async_one() -> None:
    scenario = CALENDAR.scenarios()[1]
    env: SyncDialogueEnv[CalendarScenario] = SyncDialogueEnv("calendar")
    solver = CALENDAR.assistant(scenario, SEED)
    obs = env.reset(scenario, SEED)
    while not env.done:
        message = anyio.run(solver.respond, obs)
        obs = env.step(message).observation
    reference = anyio.run(functools.partial(run_scenario, scenario, seed=SEED))
    same(env.result(), reference)
    assert env.rollout().reward == 1.0


def test_sync_envs_share_one_loop_thread() -> None:
    first: SyncDialogueEnv[Any] = SyncDialogueEnv(user=ScriptedUser(["a", "###STOP###"]))
    second: SyncDialogueEnv[Any] = SyncDialogueEnv(
        DialogueEnv(user=ScriptedUser(["b", "###STOP###"]))
    )
    assert [m.content for m in first.reset().messages] == ["a"]
    assert [m.content for m in second.reset().messages] == ["b"]
    assert first.step("x").terminated and second.step("y").terminated


async def test_a_capturing_policy_through_the_env_is_run_dialogue_s_record() -> None:
    """The trainer's token ids (here from a capturing client of the bundled server)
    ride in with each message and give the same record as `run_dialogue`, contiguous."""
    from convo_sim.agents import LLMAssistant
    from convo_sim.openai_model import OpenAIChatModel
    from convo_sim.server import serve_models

    scenarios = CALENDAR.scenarios()[:3]
    with anyio.fail_after(40):
        async with (
            serve_models() as server,
            OpenAIChatModel(
                "calendar-solver", base_url=server.base_url, capture_tokens=True
            ) as model,
        ):
            for scenario in scenarios:
                reference = await run_scenario(scenario, assistant=LLMAssistant(model), seed=SEED)
                env: DialogueEnv[CalendarScenario] = DialogueEnv("calendar")
                result = await drive(env, LLMAssistant(model), scenario, SEED)
                same(result, reference)
                record = await env.rollout()
                same_record(scenario, record, reference)
                assert record.reward == 1.0
                assert record.contiguity is not None and record.contiguity.contiguous
                assert record.contiguity.policy_turns == reference.turns
