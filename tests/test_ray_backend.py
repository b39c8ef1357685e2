"""The Ray backend against a real local Ray cluster (one per module)."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

# Ray is in the test extra: a missing Ray must fail this module, not skip it.
import ray

from convo_sim import (
    Actor,
    FinalContext,
    RayBackend,
    Rollout,
    RolloutError,
    RolloutPlan,
    TurnContext,
    TurnScore,
    Verdict,
    open_rollouts,
    read_rollouts,
    write_rollouts,
)
from convo_sim.agents import FunctionAssistant
from convo_sim.scenarios import Scenario
from convo_sim.users import ScriptedUser

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module", autouse=True)
def ray_cluster() -> Iterator[None]:
    # The factories below live in this test module, which Ray workers cannot
    # import; ship them by value instead.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # address="local": a new Ray of our own, even when another `ray start`
    # cluster runs on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def scenarios(n: int) -> list[Scenario]:
    return [Scenario(id=f"r{i}", system_prompt="Plan my day.", max_turns=6) for i in range(n)]


def assistant(scenario: Scenario, seed: int) -> Actor:
    rng = random.Random(seed)
    return FunctionAssistant(lambda view: f"plan {rng.randint(0, 10**9)}")


def user(scenario: Scenario, seed: int) -> Actor:
    rng = random.Random(seed ^ 0x5EED)
    return ScriptedUser([f"need {rng.randint(0, 10**9)}" for _ in range(rng.randint(1, 4))])


def verifiers(scenario: Scenario) -> tuple[list[object], list[object]]:
    def has_plan(ctx: TurnContext) -> TurnScore:
        return TurnScore(score=1.0 if ctx.message.text.startswith("plan") else 0.0)

    def short(ctx: FinalContext) -> Verdict:
        return Verdict(reward=1.0 if ctx.turns <= 2 else 0.0, reason=f"{ctx.turns} turns")

    return [has_plan], [short]


def comparable(rollout: Rollout) -> dict[str, object]:
    return rollout.model_dump(exclude={"timings", "dialogue_id", "duration_s"})


async def run(backend: RayBackend | None, **kwargs: object) -> list[Rollout]:
    with anyio.fail_after(45):
        async with open_rollouts(
            scenarios(8),
            assistant=assistant,
            user=user,
            verifiers=verifiers,
            samples_per_scenario=3,
            seed=21,
            backend=backend,
            **kwargs,  # type: ignore[arg-type]
        ) as stream:
            return [r async for r in stream]


async def test_ray_records_equal_the_local_backends() -> None:
    local = {r.key: comparable(r) for r in await run(None)}
    remote = await run(RayBackend(num_workers=2, concurrency_per_worker=4))
    assert len(remote) == len(local) == 24
    assert {r.key: comparable(r) for r in remote} == local
    # Both workers did work, and the records came back whole.
    assert len({r.dialogue_id for r in remote}) == 24
    assert {r.reward for r in remote} == {0.0, 1.0}


async def test_ray_run_resumes_a_file_with_the_same_guarantees(tmp_path: Path) -> None:
    path = tmp_path / "ray.jsonl"
    plan = RolloutPlan(assistant=assistant, user=user, verifiers=verifiers, seed=21)
    with anyio.fail_after(45):
        # A first, local run that stopped after half the scenarios.
        await write_rollouts(path, scenarios(4), plan, samples_per_scenario=2)
        stats = await write_rollouts(
            path, scenarios(8), plan, samples_per_scenario=2, backend=RayBackend(num_workers=2)
        )
    assert (stats.total, stats.resumed, stats.written) == (16, 8, 8)
    records = read_rollouts(path)
    assert sorted(r.key for r in records) == sorted(
        (f"r{i}", k) for i in range(8) for k in range(2)
    )
    local = {r.key: comparable(r) for r in await run(None)}
    assert all(comparable(r) == local[r.key] for r in records)


def failing_user(scenario: Scenario, seed: int) -> Actor:
    if scenario.id == "r3":
        raise LookupError("no persona for r3")
    return user(scenario, seed)


async def test_a_worker_failure_reaches_the_driver_as_rollout_error() -> None:
    with pytest.raises(RolloutError) as info:
        with anyio.fail_after(45):
            async with open_rollouts(
                scenarios(6),
                assistant=assistant,
                user=failing_user,
                backend=RayBackend(num_workers=2),
            ) as stream:
                async for _ in stream:
                    pass
    assert (info.value.scenario_id, info.value.sample_index) == ("r3", 0)
    assert "LookupError" in info.value.problem


def test_worker_plans_split_the_model_limits() -> None:
    plan = RolloutPlan(
        assistant=assistant,
        user=user,
        concurrency=64,
        assistant_concurrency=9,
        user_concurrency=None,
    )
    shard = RayBackend(num_workers=4, concurrency_per_worker=16).worker_plan(plan)
    assert (shard.concurrency, shard.assistant_concurrency, shard.user_concurrency) == (16, 3, None)
    assert RayBackend(num_workers=2).worker_plan(plan).concurrency == 64
    with pytest.raises(ValueError):
        RayBackend(num_workers=0)


def pid_assistant(scenario: Scenario, seed: int) -> Actor:
    import os

    return FunctionAssistant(lambda view: f"pid {os.getpid()}")


async def test_work_is_sharded_over_worker_processes() -> None:
    import os

    with anyio.fail_after(45):
        async with open_rollouts(
            scenarios(10), assistant=pid_assistant, user=user, backend=RayBackend(num_workers=2)
        ) as stream:
            rollouts = [r async for r in stream]
    pids = {r.transcript.by_role("assistant")[0].text for r in rollouts}
    assert len(rollouts) == 10
    assert len(pids) == 2 and f"pid {os.getpid()}" not in pids


async def test_calendar_actors_on_ray_give_the_local_dialogues() -> None:
    from convo_sim.cli.wiring import calendar_assistant, calendar_user, calendar_verifier_set
    from convo_sim.scenarios import bundled_scenarios

    async def records(backend: RayBackend | None) -> dict[tuple[str, int], dict[str, object]]:
        with anyio.fail_after(45):
            async with open_rollouts(
                bundled_scenarios(),
                assistant=calendar_assistant,
                user=calendar_user,
                verifiers=calendar_verifier_set,
                samples_per_scenario=2,
                seed=8,
                max_turns=20,
                backend=backend,
            ) as stream:
                return {r.key: comparable(r) async for r in stream}

    local = await records(None)
    assert len(local) == 20
    assert await records(RayBackend(num_workers=2, concurrency_per_worker=8)) == local


def test_cli_run_backend_ray_writes_the_local_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from convo_sim.cli import main

    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    common = ["--samples", "2", "--seed", "5", "--no-progress"]
    assert main(["run", "--out", str(local), *common]) == 0
    assert main(["run", "--out", str(remote), "--backend", "ray", "--workers", "2", *common]) == 0
    printed = capsys.readouterr().out
    assert printed.count("rollouts     20 (10 scenarios x 2 samples)") == 2
    by_key = {r.key: comparable(r) for r in read_rollouts(local)}
    assert {r.key: comparable(r) for r in read_rollouts(remote)} == by_key
