"""open_rollouts through the public API: seeds, limits, streaming, records."""

from __future__ import annotations

import functools
import gc
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from convo_sim import (
    Actor,
    FinalContext,
    InputError,
    Message,
    Rollout,
    RolloutError,
    RolloutPlan,
    RolloutSink,
    RolloutStream,
    TerminationReason,
    TurnContext,
    TurnScore,
    Verdict,
    View,
    generate_rollouts_sync,
    open_rollouts,
    read_rollouts,
    sample_seed,
)
from convo_sim.agents import FunctionAssistant
from convo_sim.scenarios import Scenario
from convo_sim.users import FunctionUser, ScriptedUser

ANYIO_BACKENDS = ("asyncio", "trio")  # the core runs on both; see tests/conftest.py

pytestmark = pytest.mark.timeout(30)


def scenarios(n: int) -> list[Scenario]:
    return [
        Scenario(id=f"s{i}", system_prompt=f"You help with task {i}.", max_turns=5)
        for i in range(n)
    ]


def seeded_assistant(scenario: Scenario, seed: int) -> Actor:
    rng = random.Random(seed)
    return FunctionAssistant(
        lambda view: (
            f"{scenario.id} reply {rng.randint(0, 10**6)} to {view.last and view.last.content}"
        )
    )


def seeded_user(scenario: Scenario, seed: int) -> Actor:
    rng = random.Random(seed)
    return ScriptedUser([f"ask {rng.randint(0, 10**6)}" for _ in range(rng.randint(1, 4))])


def verifiers(scenario: Scenario) -> tuple[list[object], list[object]]:
    def replied(ctx: TurnContext) -> TurnScore:
        return TurnScore(score=1.0 if "reply" in ctx.message.text else 0.0, reason="pass")

    def even_turns(ctx: FinalContext) -> Verdict:
        ok = ctx.turns % 2 == 0
        return Verdict(
            reward=1.0 if ok else 0.0, reason="pass" if ok else "odd", details={"t": (1, 2)}
        )

    return [replied], [even_turns]


async def collect(
    *,
    scenarios: list[Scenario],
    samples_per_scenario: int = 1,
    skip: AbstractSet[tuple[str, int]] = frozenset(),
    **plan: Any,
) -> list[Rollout]:
    with anyio.fail_after(20):
        async with open_rollouts(
            scenarios, RolloutPlan(**plan), samples_per_scenario=samples_per_scenario, skip=skip
        ) as rollouts:
            return [r async for r in rollouts]


async def test_one_record_per_scenario_sample_with_its_seed() -> None:
    rollouts = await collect(
        scenarios=scenarios(5),
        assistant=seeded_assistant,
        user=seeded_user,
        verifiers=verifiers,
        samples_per_scenario=3,
        seed=7,
    )
    assert sorted(r.key for r in rollouts) == sorted(
        (f"s{i}", k) for i in range(5) for k in range(3)
    )
    for r in rollouts:
        assert r.seed == sample_seed(7, r.scenario_id, r.sample_index)
        assert r.termination is TerminationReason.USER_STOP
        assert r.responses_create_params["input"][0] == {
            "role": "system",
            "content": f"You help with task {r.scenario_id[1:]}.",
        }
        assert r.transcript.messages[-1].content == "###STOP###"
        assert len(r.turn_scores) == r.turns and all(s.score == 1.0 for s in r.turn_scores)
        assert r.reward == (1.0 if r.turns % 2 == 0 else 0.0)
    # Samples differ: the per-sample seed reaches the actors.
    inputs = {str(r.responses_create_params["input"]) for r in rollouts}
    assert len(inputs) == len(rollouts)


async def test_same_seed_same_transcripts_other_seed_other_transcripts() -> None:
    kwargs: dict[str, object] = dict(
        scenarios=scenarios(4), assistant=seeded_assistant, user=seeded_user, samples_per_scenario=2
    )
    first = {
        r.key: r.responses_create_params for r in await collect(**kwargs, seed=1, concurrency=8)
    }
    again = {
        r.key: r.responses_create_params for r in await collect(**kwargs, seed=1, concurrency=1)
    }
    other = {r.key: r.responses_create_params for r in await collect(**kwargs, seed=2)}
    assert first == again
    assert all(first[k] != other[k] for k in first)


def test_sample_seed_is_stable_across_processes() -> None:
    code = "from convo_sim import sample_seed; print(sample_seed(3, 'cal-7', 2))"
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(int(out.stdout))
    assert outputs == {sample_seed(3, "cal-7", 2)}
    assert sample_seed(3, "cal-7", 2) != sample_seed(3, "cal-7", 3)
    assert sample_seed(3, "cal-7", 2) != sample_seed(4, "cal-7", 2)
    assert 0 <= sample_seed(3, "cal-7", 2) < 2**63


class Gauge:
    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def exit(self) -> None:
        self.now -= 1


@pytest.mark.parametrize(
    ("assistant_limit", "user_limit"), [(3, None), (None, 2), (4, 4), (None, None)]
)
async def test_dialogue_and_model_call_limits_hold(
    assistant_limit: int | None, user_limit: int | None
) -> None:
    dialogues, assistant_calls, user_calls = Gauge(), Gauge(), Gauge()

    def assistant(scenario: Scenario, seed: int) -> Actor:
        async def reply(view: View) -> str:
            assistant_calls.enter()
            await anyio.sleep(0.01)
            assistant_calls.exit()
            return "ok"

        return FunctionAssistant(reply)

    def user(scenario: Scenario, seed: int) -> Actor:
        dialogues.enter()

        async def say(view: View) -> str:
            user_calls.enter()
            await anyio.sleep(0.01)
            user_calls.exit()
            if view.turn > 2:
                dialogues.exit()
                return "###STOP###"
            return "hi"

        return FunctionUser(say)

    rollouts = await collect(
        scenarios=scenarios(30),
        assistant=assistant,
        user=user,
        concurrency=10,
        assistant_concurrency=assistant_limit,
        user_concurrency=user_limit,
    )
    assert len(rollouts) == 30
    assert dialogues.peak == 10
    for gauge, limit in ((assistant_calls, assistant_limit), (user_calls, user_limit)):
        if limit is not None:
            assert gauge.peak == limit
    if assistant_limit is None and user_limit is None:
        # Unlimited: all ten dialogues open with a user call at once.
        assert user_calls.peak == 10


async def test_results_stream_in_completion_order() -> None:
    def user(scenario: Scenario, seed: int) -> Actor:
        async def say(view: View) -> str:
            await anyio.sleep(0.3 if scenario.id == "s0" else 0.0)
            return "###STOP###"

        return FunctionUser(say)

    order = [
        r.scenario_id
        for r in await collect(scenarios=scenarios(4), assistant=seeded_assistant, user=user)
    ]
    assert order[-1] == "s0" and sorted(order) == ["s0", "s1", "s2", "s3"]


async def test_skip_runs_only_the_missing_samples() -> None:
    done = {("s0", 0), ("s1", 1), ("s2", 0), ("s2", 1)}
    rollouts = await collect(
        scenarios=scenarios(3),
        assistant=seeded_assistant,
        user=seeded_user,
        samples_per_scenario=2,
        skip=done,
    )
    assert sorted(r.key for r in rollouts) == [("s0", 1), ("s1", 0)]


async def test_scenario_params_and_metadata_are_kept() -> None:
    scenario = Scenario(
        id="meta",
        prefix=(Message(role="user", content="Book lunch."),),
        metadata={"responses_create_params": {"temperature": 0.2, "tools": []}, "split": "dev"},
    )
    (rollout,) = await collect(scenarios=[scenario], assistant=seeded_assistant, user=seeded_user)
    assert rollout.responses_create_params["temperature"] == 0.2
    assert rollout.responses_create_params["tools"] == []
    assert rollout.responses_create_params["input"][0] == {"role": "user", "content": "Book lunch."}
    assert rollout.responses_create_params["input"][1]["role"] == "assistant"
    assert rollout.metadata == {"split": "dev"}


async def test_records_round_trip_losslessly_through_the_sink(tmp_path: Path) -> None:
    rollouts = await collect(
        scenarios=scenarios(4),
        assistant=seeded_assistant,
        user=seeded_user,
        verifiers=verifiers,
        samples_per_scenario=2,
    )
    path = tmp_path / "out.jsonl"
    with RolloutSink(path) as sink:
        for r in rollouts:
            sink.write(r)
    assert read_rollouts(path) == rollouts
    assert [Rollout.model_validate_json(r.model_dump_json()) for r in rollouts] == rollouts
    # Verifier details that were tuples are stored as JSON lists from the start.
    assert rollouts[0].verdicts[0].details == {"t": [1, 2]}


async def test_a_failing_factory_raises_rollout_error_with_its_key() -> None:
    def user(scenario: Scenario, seed: int) -> Actor:
        if scenario.id == "s2":
            raise KeyError("no persona")
        return ScriptedUser(["hi"])

    with pytest.raises(RolloutError) as info:
        await collect(scenarios=scenarios(4), assistant=seeded_assistant, user=user)
    assert (info.value.scenario_id, info.value.sample_index) == ("s2", 0)
    assert isinstance(info.value.__cause__, KeyError)


async def test_a_failing_actor_is_recorded_not_raised() -> None:
    def assistant(scenario: Scenario, seed: int) -> Actor:
        def boom(view: View) -> str:
            raise RuntimeError("model down")

        return FunctionAssistant(boom)

    (rollout,) = await collect(scenarios=scenarios(1), assistant=assistant, user=seeded_user)
    assert rollout.termination is TerminationReason.ASSISTANT_ERROR
    assert rollout.error is not None and rollout.error.type == "RuntimeError"


async def test_duplicate_scenario_ids_are_rejected() -> None:
    with pytest.raises(InputError):
        await collect(
            scenarios=scenarios(2) + scenarios(1), assistant=seeded_assistant, user=seeded_user
        )


async def test_stopping_early_cancels_the_running_dialogues() -> None:
    running = Gauge()

    def user(scenario: Scenario, seed: int) -> Actor:
        async def say(view: View) -> str:
            running.enter()
            try:
                await anyio.sleep(0 if scenario.id == "s0" else 60)
            finally:
                running.exit()
            return "###STOP###"

        return FunctionUser(say)

    with anyio.fail_after(5):
        async with open_rollouts(
            scenarios(5), RolloutPlan(assistant=seeded_assistant, user=user)
        ) as rollouts:
            first = await anext(rollouts)
    assert first.scenario_id == "s0"
    assert running.now == 0


def test_sync_wrapper_returns_every_rollout() -> None:
    rollouts = generate_rollouts_sync(
        scenarios(3),
        RolloutPlan(assistant=seeded_assistant, user=seeded_user, seed=5),
        samples_per_scenario=2,
    )
    assert sorted(r.key for r in rollouts) == sorted(
        (f"s{i}", k) for i in range(3) for k in range(2)
    )


async def test_run_max_turns_applies_to_scenarios_without_their_own() -> None:
    def chatty_user(scenario: Scenario, seed: int) -> Actor:
        return FunctionUser(lambda view: "more")

    mixed = [Scenario(id="own", max_turns=2), Scenario(id="default")]
    rollouts = await collect(
        scenarios=mixed, assistant=seeded_assistant, user=chatty_user, max_turns=3
    )
    turns = {r.scenario_id: r.turns for r in rollouts}
    assert turns == {"own": 2, "default": 3}
    assert {r.termination for r in rollouts} == {TerminationReason.MAX_TURNS}


def test_calendar_actors_give_the_same_dialogues_for_the_same_seed() -> None:
    from convo_sim.domains.calendar import DOMAIN
    from convo_sim.scenarios import bundled_scenarios

    def transcripts(seed: int, concurrency: int) -> dict[tuple[str, int], object]:
        rollouts = generate_rollouts_sync(
            bundled_scenarios(),
            RolloutPlan(
                assistant=DOMAIN.assistant,
                user=DOMAIN.user,
                verifiers=DOMAIN.verifiers,
                seed=seed,
                concurrency=concurrency,
                max_turns=20,
            ),
            samples_per_scenario=2,
        )
        return {r.key: r.responses_create_params["input"] for r in rollouts}

    first, again, other = transcripts(3, 32), transcripts(3, 1), transcripts(4, 32)
    assert len(first) == 20
    assert first == again
    # The simulated user's wording follows the sample seed: other seeds and
    # other samples of the same scenario read differently.
    assert sum(first[k] != other[k] for k in first) >= 5
    assert sum(first[(s, 0)] != first[(s, 1)] for s, _ in first) >= 5


async def test_every_slot_is_filled_when_the_actors_block() -> None:
    concurrency = 200
    inside = Gauge()
    release = anyio.Event()

    def user(scenario: Scenario, seed: int) -> Actor:
        async def say(view: View) -> str:
            inside.enter()
            await release.wait()
            inside.exit()
            return "###STOP###"

        return FunctionUser(say)

    seen: list[int] = []

    async def look_then_release() -> None:
        # Runs once every task (the engine's and the consumer) waits on something.
        await anyio.wait_all_tasks_blocked()
        seen.append(inside.now)
        release.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(look_then_release)
            async with open_rollouts(
                scenarios(concurrency + 50),
                RolloutPlan(assistant=seeded_assistant, user=user, concurrency=concurrency),
            ) as stream:
                rollouts = [r async for r in stream]
    assert seen == [concurrency]
    assert len(rollouts) == concurrency + 50
    assert inside.peak == concurrency


async def test_short_dialogues_still_fill_every_slot() -> None:
    # Dialogues that end after a few event-loop turns: a spawner that starts
    # one dialogue per loop turn never has more than a few in flight.
    concurrency = 200
    in_flight = Gauge()

    def user(scenario: Scenario, seed: int) -> Actor:
        in_flight.enter()  # the engine builds the actors as a dialogue starts

        async def say(view: View) -> str:
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            in_flight.exit()
            return "###STOP###"

        return FunctionUser(say)

    rollouts = await collect(
        scenarios=scenarios(2 * concurrency),
        assistant=seeded_assistant,
        user=user,
        concurrency=concurrency,
    )
    assert len(rollouts) == 2 * concurrency
    assert in_flight.peak == concurrency


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    """The collector's thresholds before the test, put back after it whatever happens."""
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        yield gc.get_threshold()
    finally:
        gc.set_threshold(*saved)


def threshold_spy(seen: list[tuple[int, int, int]]) -> Callable[[Scenario, int], Actor]:
    def user(scenario: Scenario, seed: int) -> Actor:
        def say(view: View) -> str:
            seen.append(gc.get_threshold())
            return "###STOP###"

        return FunctionUser(say)

    return user


async def test_the_collector_is_sized_for_the_run_and_restored_after(
    thresholds: tuple[int, int, int],
) -> None:
    seen: list[tuple[int, int, int]] = []
    rollouts = await collect(
        scenarios=scenarios(12), assistant=seeded_assistant, user=threshold_spy(seen), concurrency=5
    )
    assert len(rollouts) == 12
    assert set(seen) == {(200 * 5, 10, 10)}
    assert gc.get_threshold() == thresholds
    # Never lowered: a run that needs less than the default leaves it.
    seen.clear()
    await collect(
        scenarios=scenarios(4), assistant=seeded_assistant, user=threshold_spy(seen), concurrency=2
    )
    assert set(seen) == {thresholds}


async def test_tune_gc_false_leaves_the_collector_alone(thresholds: tuple[int, int, int]) -> None:
    seen: list[tuple[int, int, int]] = []
    await collect(
        scenarios=scenarios(3), assistant=seeded_assistant, user=threshold_spy(seen), tune_gc=False
    )
    assert set(seen) == {thresholds}
    assert gc.get_threshold() == thresholds


async def test_the_collector_is_restored_after_a_failing_run(
    thresholds: tuple[int, int, int],
) -> None:
    def user(scenario: Scenario, seed: int) -> Actor:
        if scenario.id == "s1":
            raise KeyError("no persona")
        return ScriptedUser(["hi"])

    with pytest.raises(RolloutError):
        await collect(scenarios=scenarios(3), assistant=seeded_assistant, user=user)
    assert gc.get_threshold() == thresholds


async def test_the_collector_is_restored_after_a_cancelled_or_abandoned_run(
    thresholds: tuple[int, int, int],
) -> None:
    started = anyio.Event()

    def user(scenario: Scenario, seed: int) -> Actor:
        async def say(view: View) -> str:
            started.set()
            if scenario.id != "s0":
                await anyio.sleep_forever()
            return "###STOP###"

        return FunctionUser(say)

    with anyio.fail_after(5):
        # The caller cancels the run from outside.
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                functools.partial(
                    collect, scenarios=scenarios(3)[1:], assistant=seeded_assistant, user=user
                )
            )
            await started.wait()
            assert gc.get_threshold()[0] == 200 * 32
            tg.cancel_scope.cancel()
        assert gc.get_threshold() == thresholds
        # The caller stops iterating after the first rollout.
        async with open_rollouts(
            scenarios(3), RolloutPlan(assistant=seeded_assistant, user=user)
        ) as stream:
            await anext(stream)
            assert gc.get_threshold()[0] == 200 * 32
    assert gc.get_threshold() == thresholds


async def test_overlapping_runs_restore_the_collector_when_the_last_ends(
    thresholds: tuple[int, int, int],
) -> None:
    finish = {"small": anyio.Event(), "large": anyio.Event()}
    running = {"small": anyio.Event(), "large": anyio.Event()}

    def user(run: str) -> Callable[[Scenario, int], Actor]:
        def make(scenario: Scenario, seed: int) -> Actor:
            async def say(view: View) -> str:
                running[run].set()
                await finish[run].wait()
                return "###STOP###"

            return FunctionUser(say)

        return make

    async def run(name: str, concurrency: int) -> None:
        await collect(
            scenarios=scenarios(concurrency),
            assistant=seeded_assistant,
            user=user(name),
            concurrency=concurrency,
        )

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "small", 5)
            await running["small"].wait()
            assert gc.get_threshold() == (1000, 10, 10)
            tg.start_soon(run, "large", 8)
            await running["large"].wait()
            assert gc.get_threshold() == (1600, 10, 10)
            finish["small"].set()
            await anyio.wait_all_tasks_blocked()
            assert gc.get_threshold() == (1600, 10, 10)  # the large run is still going
            finish["large"].set()
    assert gc.get_threshold() == thresholds


async def test_a_threshold_the_program_sets_during_a_run_is_kept(
    thresholds: tuple[int, int, int],
) -> None:
    def user(scenario: Scenario, seed: int) -> Actor:
        def say(view: View) -> str:
            gc.set_threshold(5000, 20, 20)
            return "###STOP###"

        return FunctionUser(say)

    await collect(scenarios=scenarios(2), assistant=seeded_assistant, user=user)
    assert gc.get_threshold() == (5000, 20, 20)


# -- the context manager owns the task group: failures reach the caller whole ------


def failing_at(failing_id: str) -> Callable[[Scenario, int], Actor]:
    def user(scenario: Scenario, seed: int) -> Actor:
        if scenario.id == failing_id:
            raise LookupError(f"no persona for {failing_id}")
        return ScriptedUser(["hi"])

    return user


@pytest.mark.parametrize("waiting_on", ["sleep", "event", "checkpoints"])
async def test_a_factory_failure_is_a_rollout_error_whatever_the_body_awaits(
    waiting_on: str,
) -> None:
    # The body awaits something of its own inside `async for`; with a
    # generator that yields inside a task group that await was cancelled
    # and the program died with a bare Cancelled instead of RolloutError.
    never = anyio.Event()
    seen: list[str] = []
    with anyio.fail_after(10), pytest.raises(RolloutError) as info:
        async with open_rollouts(
            scenarios(6),
            RolloutPlan(assistant=seeded_assistant, user=failing_at("s3"), concurrency=2),
        ) as rollouts:
            async for rollout in rollouts:
                seen.append(rollout.scenario_id)
                if waiting_on == "sleep":
                    await anyio.sleep(0.05)
                elif waiting_on == "event":
                    await never.wait()
                else:
                    for _ in range(100):
                        await anyio.lowlevel.checkpoint()
    assert (info.value.scenario_id, info.value.sample_index) == ("s3", 0)
    assert isinstance(info.value.__cause__, LookupError)
    assert "s3" not in seen


async def test_a_factory_failure_cancels_a_body_that_never_reads() -> None:
    with anyio.fail_after(10), pytest.raises(RolloutError):
        async with open_rollouts(
            scenarios(3), RolloutPlan(assistant=seeded_assistant, user=failing_at("s0"))
        ) as rollouts:
            assert isinstance(rollouts, RolloutStream)
            await anyio.sleep_forever()


async def test_the_bodys_own_exception_comes_out_unwrapped() -> None:
    with anyio.fail_after(10), pytest.raises(ZeroDivisionError):
        async with open_rollouts(
            scenarios(3), RolloutPlan(assistant=seeded_assistant, user=seeded_user)
        ) as rollouts:
            async for _ in rollouts:
                _ = 1 / 0


async def test_the_bodys_own_exception_comes_out_unwrapped_every_time() -> None:
    # A race, found under trio about once in twelve runs: a dialogue's host
    # got a reply, then sent the next view to the other actor, whose task
    # the cancellation had already ended; BrokenResourceError came out
    # beside the body's exception instead of the cancellation.
    for _ in range(100):
        with anyio.fail_after(10), pytest.raises(ZeroDivisionError):
            async with open_rollouts(
                scenarios(3), RolloutPlan(assistant=seeded_assistant, user=seeded_user)
            ) as rollouts:
                async for _ in rollouts:
                    _ = 1 / 0


async def test_cancelling_the_caller_cancels_the_run() -> None:
    running = Gauge()

    def user(scenario: Scenario, seed: int) -> Actor:
        async def say(view: View) -> str:
            running.enter()
            try:
                await anyio.sleep_forever()
            finally:
                running.exit()
            return "###STOP###"

        return FunctionUser(say)

    with anyio.fail_after(10):
        with anyio.move_on_after(0.2) as scope:
            async with open_rollouts(
                scenarios(4), RolloutPlan(assistant=seeded_assistant, user=user)
            ) as rollouts:
                async for _ in rollouts:
                    pass
    assert scope.cancelled_caught
    assert running.now == 0 and running.peak == 4


def test_the_sync_wrapper_raises_rollout_error_too() -> None:
    with pytest.raises(RolloutError):
        generate_rollouts_sync(
            scenarios(3), RolloutPlan(assistant=seeded_assistant, user=failing_at("s1"))
        )
