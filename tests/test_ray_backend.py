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
    plan = RolloutPlan(assistant=assistant, user=user, verifiers=verifiers, seed=21)
    with anyio.fail_after(45):
        async with open_rollouts(
            scenarios(8),
            plan,
            samples_per_scenario=3,
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
                RolloutPlan(assistant=assistant, user=failing_user),
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
            scenarios(10),
            RolloutPlan(assistant=pid_assistant, user=user),
            backend=RayBackend(num_workers=2),
        ) as stream:
            rollouts = [r async for r in stream]
    pids = {r.transcript.by_role("assistant")[0].text for r in rollouts}
    assert len(rollouts) == 10
    assert len(pids) == 2 and f"pid {os.getpid()}" not in pids


async def test_calendar_actors_on_ray_give_the_local_dialogues() -> None:
    from convo_sim.domains.calendar import DOMAIN
    from convo_sim.scenarios import bundled_scenarios

    async def records(backend: RayBackend | None) -> dict[tuple[str, int], dict[str, object]]:
        with anyio.fail_after(45):
            async with open_rollouts(
                bundled_scenarios(),
                RolloutPlan(
                    assistant=DOMAIN.assistant,
                    user=DOMAIN.user,
                    verifiers=DOMAIN.verifiers,
                    seed=8,
                    max_turns=20,
                ),
                samples_per_scenario=2,
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


# -- a worker that dies, and where a local Ray listens ----------------------------


def killing_user(marker: Path, deaths: int, scenario: Scenario, seed: int) -> Actor:
    """Kills its own worker process (SIGKILL) when it builds r5's user, `deaths` times."""
    import os
    import signal

    if scenario.id == "r5":
        done = len(list(marker.parent.glob(f"{marker.name}.*")))
        if done < deaths:
            (marker.parent / f"{marker.name}.{done}").touch()
            os.kill(os.getpid(), signal.SIGKILL)
    return user(scenario, seed)


def deaths_in(folder: Path) -> int:
    return len(list(folder.glob("killed.*")))


async def test_a_killed_worker_s_samples_are_rescheduled_exactly_once(tmp_path: Path) -> None:
    import functools

    marker = tmp_path / "killed"
    path = tmp_path / "out.jsonl"
    plan = RolloutPlan(
        assistant=assistant,
        user=functools.partial(killing_user, marker, 1),
        verifiers=verifiers,
        seed=21,
        concurrency=2,
    )
    with anyio.fail_after(50):
        stats = await write_rollouts(
            path, scenarios(8), plan, samples_per_scenario=3, backend=RayBackend(num_workers=2)
        )
    assert deaths_in(tmp_path) == 1  # the worker really died
    assert (stats.total, stats.written) == (24, 24)
    records = read_rollouts(path)
    assert sorted(r.key for r in records) == sorted(
        (f"r{i}", k) for i in range(8) for k in range(3)
    )
    local = {r.key: comparable(r) for r in await run(None)}
    assert {r.key: comparable(r) for r in records} == local


async def test_a_shard_whose_workers_keep_dying_ends_the_run(tmp_path: Path) -> None:
    import functools

    marker = tmp_path / "killed"
    with anyio.fail_after(50), pytest.raises(RolloutError) as raised:
        async with open_rollouts(
            scenarios(6),
            RolloutPlan(assistant=assistant, user=functools.partial(killing_user, marker, 99)),
            backend=RayBackend(num_workers=2, max_worker_restarts=1),
        ) as stream:
            async for _ in stream:
                pass
    assert deaths_in(tmp_path) == 2  # the first death and the one restart
    # One line for the CLI to print (a ConvoSimError), naming a lost sample;
    # Ray's own error stays the cause.
    message = str(raised.value)
    assert "Ray worker died 2 times" in message and "max_worker_restarts=1" in message
    assert "\n" not in message
    assert isinstance(raised.value.__cause__, ray.exceptions.RayActorError)


LISTENING = r'''
import json, os, sys
import anyio
from convo_sim import open_rollouts, RayBackend, RolloutPlan
from convo_sim.agents import FunctionAssistant
from convo_sim.scenarios import Scenario
from convo_sim.users import ScriptedUser

def listening(root):
    """Listening TCP addresses of `root` and every process below it, from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    tree, grew = {root}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    inodes = {}
    for name in ("tcp", "tcp6"):
        with open(f"/proc/net/{name}") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":
                    inodes[fields[9]] = (name, fields[1])
    found = set()
    for pid in tree:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inode = target[8:-1]
                    if inode in inodes:
                        found.add(inodes[inode])
        except OSError:
            pass
    return sorted(found)

async def main():
    seen = []
    scenarios = [Scenario(id=f"s{i}") for i in range(4)]
    plan = RolloutPlan(
        assistant=lambda s, seed: FunctionAssistant(lambda view: "ok"),
        user=lambda s, seed: ScriptedUser(["hi"]),
    )
    async with open_rollouts(
        scenarios, plan, backend=RayBackend(num_workers=1, num_cpus_per_worker=0.5)
    ) as rollouts:
        async for _ in rollouts:
            if not seen:
                seen.extend(listening(os.getpid()))
    print(json.dumps(seen))

anyio.run(main)
'''


def test_a_local_ray_started_by_the_backend_listens_on_loopback_only(tmp_path: Path) -> None:
    import json
    import subprocess

    script = tmp_path / "listening.py"
    script.write_text(LISTENING)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr[-2000:]
    sockets = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(sockets) >= 3  # the GCS, the raylet, a worker: Ray really ran
    # /proc/net shows addresses in hex: 0100007F is 127.0.0.1; in tcp6, the
    # IPv4-mapped ::ffff:127.0.0.1 ends in 0100007F and ::1 is 0...01000000.
    loopback = (
        "0100007F:",
        "0000000000000000FFFF00000100007F:",
        "00000000000000000000000001000000:",
    )
    assert all(address.startswith(loopback) for _, address in sockets), sockets


def _refuse_to_load() -> Actor:
    raise RuntimeError("this factory cannot be rebuilt in a worker")


class ShipsBadly:
    """A factory that pickles in the driver but cannot be unpickled in a worker."""

    def __call__(self, scenario: Scenario, seed: int) -> Actor:
        return user(scenario, seed)

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_refuse_to_load, ())


async def test_a_plan_a_worker_cannot_load_ends_the_run_instead_of_hanging() -> None:
    with anyio.fail_after(50), pytest.raises(Exception) as info:
        async with open_rollouts(
            scenarios(4),
            RolloutPlan(assistant=assistant, user=ShipsBadly()),
            backend=RayBackend(num_workers=1),
        ) as stream:
            async for _ in stream:
                pass
    assert not isinstance(info.value, TimeoutError)
    assert "cannot be rebuilt in a worker" in str(info.value)
