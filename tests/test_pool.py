"""`ModelPool` over real local servers: affinity, least-loaded placement, admission, failover.

Every replica is a `serve_models` server on 127.0.0.1 and every request
goes through `OpenAIChatModel` over HTTP. Servers answer with a recording
model that can hold its replies behind a gate, so tests wait for counters
(requests in flight, dialogues bound), never for time.
"""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from convo_sim import (
    DialogueResult,
    InputError,
    Message,
    ModelError,
    ModelPool,
    RetryPolicy,
    RolloutPlan,
    TerminationReason,
    open_rollouts,
    run_dialogue,
)
from convo_sim._faults import Fault, FaultPlan
from convo_sim._openai_model import OpenAIChatModel
from convo_sim._server import ModelServer, ServerThread, serve_models
from convo_sim.agents import LLMAssistant
from convo_sim.cli import main
from convo_sim.cli.actors_spec import check_base_url
from convo_sim.scenarios import Scenario
from convo_sim.users import LLMUser

FAST = RetryPolicy(attempts=2, initial=0.001, max_wait=0.01, jitter=0.001)
ONCE = RetryPolicy(attempts=1)
MARK = re.compile(r"dialogue (\w+)")


@dataclass
class Recorder:
    """A served model that counts requests per dialogue and may hold its replies.

    The dialogue is read from the first message (`dialogue ID`, which the
    tests put in both sides' system prompts).
    """

    gate: anyio.Event | None = None
    latency: float = 0.0
    seen: Counter[str] = field(default_factory=Counter)
    current: int = 0
    peak: int = 0

    async def reply(self, messages: Sequence[Message], body: Mapping[str, Any]) -> Message:
        found = MARK.search(messages[0].text) if messages else None
        self.current += 1
        self.peak = max(self.peak, self.current)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.latency:
                await anyio.sleep(self.latency)
        finally:
            self.current -= 1
        self.seen[found.group(1) if found else "?"] += 1
        return Message(role="assistant", content="ok")


@dataclass
class Fleet:
    servers: list[ModelServer]
    recorders: list[Recorder]
    pool: ModelPool
    threads: list[ServerThread]

    def in_flight_at_servers(self) -> int:
        return sum(r.current for r in self.recorders)

    async def kill(self, index: int) -> None:
        """Stop a threaded server: its connections close and new ones are refused."""
        await anyio.to_thread.run_sync(self.threads[index].__exit__, None, None, None)


@asynccontextmanager
async def fleet(
    count: int,
    *,
    gated: bool = False,
    latency: float = 0.0,
    faults: Mapping[int, FaultPlan] | None = None,
    retry: RetryPolicy = FAST,
    threaded: bool = False,
    **pool_options: Any,
) -> AsyncIterator[Fleet]:
    """`count` servers and a pool over them.

    `threaded`: each server on its own event loop in a thread (`ServerThread`),
    so that one can be killed mid-run; gates need the servers in this loop.
    """
    assert not (gated and threaded)
    recorders = [
        Recorder(gate=anyio.Event() if gated else None, latency=latency) for _ in range(count)
    ]
    threads: list[ServerThread] = []
    servers = []
    async with AsyncExitStack() as stack:
        stack.callback(lambda: [r.gate.set() for r in recorders if r.gate is not None])
        for i, recorder in enumerate(recorders):
            models = {"m": recorder}
            plan = (faults or {}).get(i)
            if threaded:
                thread = ServerThread(models, faults=plan)  # type: ignore[arg-type]
                threads.append(thread)
                servers.append(await anyio.to_thread.run_sync(thread.__enter__))
                stack.push_async_callback(
                    anyio.to_thread.run_sync, thread.__exit__, None, None, None
                )
            else:
                served = serve_models(models, faults=plan)  # type: ignore[arg-type]
                servers.append(await stack.enter_async_context(served))
        models = [
            OpenAIChatModel("m", base_url=s.base_url, retry=retry, timeout=10.0) for s in servers
        ]
        async with ModelPool(models, **pool_options) as pool:
            yield Fleet(servers, recorders, pool, threads)


def actors(pool: ModelPool, dialogue: str) -> tuple[LLMAssistant, LLMUser]:
    return (
        LLMAssistant(pool, system_prompt=f"You help in dialogue {dialogue}."),
        LLMUser(pool, goal=f"Finish dialogue {dialogue}."),
    )


async def dialogue(pool: ModelPool, name: str, turns: int = 2) -> DialogueResult:
    assistant, user = actors(pool, name)
    return await run_dialogue(assistant, user, max_turns=turns, completion=())


async def wait_for(condition: Any, what: str, seconds: float = 10.0) -> None:
    """Wait until `condition()` holds (a counter reached); `what` names it in a failure."""
    with anyio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 - the counters live in other code: poll them
            await anyio.sleep(0.005)


def bound(pool: ModelPool) -> list[int]:
    return [s.dialogues for s in pool.stats()]


async def test_a_dialogue_stays_on_one_replica_and_new_ones_spread_evenly() -> None:
    # 25, not a multiple of 3: a router that ignored dialogues and took the
    # replicas in turn would move most of them between turns.
    scenarios = [Scenario(id=f"d{i}") for i in range(25)]
    async with fleet(3) as f:
        assistant = {s.id: actors(f.pool, s.id)[0] for s in scenarios}
        user = {s.id: actors(f.pool, s.id)[1] for s in scenarios}
        with anyio.fail_after(30):
            plan = RolloutPlan(
                assistant=lambda s, seed: assistant[s.id],
                user=lambda s, seed: user[s.id],
                completion=lambda s: (),
                concurrency=25,
                max_turns=3,
            )
            async with open_rollouts(scenarios, plan) as rollouts:
                results = [r async for r in rollouts]
        assert all(r.error is None and r.turns == 3 for r in results)
        # Every request of a dialogue, both sides, went to one server.
        owners = {s.id: [i for i, r in enumerate(f.recorders) if s.id in r.seen] for s in scenarios}
        assert all(len(servers) == 1 for servers in owners.values()), owners
        assert all(f.recorders[o[0]].seen[d] == 6 for d, o in owners.items())
        # The 25 dialogues started together: 8 or 9 on each replica.
        assert sorted(Counter(o[0] for o in owners.values()).values()) == [8, 8, 9]
        stats = f.pool.stats()
        assert sorted(s.requests for s in stats) == [48, 48, 54]
        assert bound(f.pool) == [0, 0, 0]  # every binding released at the dialogue's end
        assert all(s.healthy and s.failures == 0 and s.in_flight == 0 for s in stats)


async def test_a_new_dialogue_goes_to_the_least_loaded_replica() -> None:
    async with fleet(3, gated=True) as f, anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(dialogue, f.pool, f"first{i}")
        await wait_for(lambda: f.in_flight_at_servers() == 6, "6 dialogues waiting")
        assert bound(f.pool) == [2, 2, 2]
        # Replica 0 finishes its two dialogues; 1 and 2 still hold theirs.
        assert f.recorders[0].gate is not None
        f.recorders[0].gate.set()
        await wait_for(lambda: bound(f.pool)[0] == 0, "replica 0 free")
        assert bound(f.pool) == [0, 2, 2]
        # Two new dialogues, one after the other: both go to replica 0, the
        # least loaded (round robin would send the second elsewhere).
        tg.start_soon(dialogue, f.pool, "late0")
        await wait_for(lambda: "late0" in f.recorders[0].seen, "late0 answered on replica 0")
        tg.start_soon(dialogue, f.pool, "late1")
        await wait_for(lambda: "late1" in f.recorders[0].seen, "late1 answered on replica 0")
        for recorder in f.recorders:
            assert recorder.gate is not None
            recorder.gate.set()
    assert not any(r.seen.keys() & {"late0", "late1"} for r in f.recorders[1:])


async def test_in_flight_requests_per_replica_never_exceed_the_bound() -> None:
    async with fleet(2, gated=True, max_in_flight=2) as f, anyio.create_task_group() as tg:
        results: list[DialogueResult] = []

        async def one(i: int) -> None:
            results.append(await dialogue(f.pool, f"d{i}", turns=3))

        for i in range(12):
            tg.start_soon(one, i)
        # 12 dialogues, one request each at a time: 6 per replica, 2 admitted, 4 waiting.
        await wait_for(
            lambda: (
                [r.current for r in f.recorders] == [2, 2]
                and [s.waiting for s in f.pool.stats()] == [4, 4]
            ),
            "2 requests at each server, 4 queued per replica",
        )
        assert [s.in_flight for s in f.pool.stats()] == [2, 2]
        await anyio.wait_all_tasks_blocked()
        assert [r.current for r in f.recorders] == [2, 2]  # the servers see no more
        for recorder in f.recorders:
            assert recorder.gate is not None
            recorder.gate.set()
    assert len(results) == 12 and all(r.error is None and r.turns == 3 for r in results)
    stats = f.pool.stats()
    assert [s.peak_in_flight for s in stats] == [2, 2]
    assert [r.peak for r in f.recorders] == [2, 2]
    assert sum(s.requests for s in stats) == 12 * 6


async def test_a_faulted_replica_is_taken_out_and_its_dialogues_move() -> None:
    broken = FaultPlan()
    broken.add(Fault.server_error(503), times=None)
    with capture_logs() as logs:
        async with fleet(3, faults={1: broken}, cooldown=60.0) as f:
            results = [await dialogue(f.pool, f"d{i}", turns=3) for i in range(3)]
            async with anyio.create_task_group() as tg:
                for i in range(3, 12):
                    tg.start_soon(dialogue, f.pool, f"d{i}", 3)
    assert all(r.error is None and r.turns == 3 for r in results)
    stats = f.pool.stats()
    assert not stats[1].healthy and stats[1].requests == 0
    assert stats[1].failures == 1  # once out, it got no more requests
    assert stats[1].moved == 1
    assert stats[0].healthy and stats[2].healthy
    assert sum(s.requests for s in stats) == 12 * 6
    # Each dialogue's answered requests all came from one healthy server.
    for i in range(12):
        assert [r.seen[f"d{i}"] for r in f.recorders].count(6) == 1
    assert f.recorders[1].seen == Counter()
    failed = [e for e in logs if e["event"] == "pool.replica_failed"]
    assert len(failed) == 1 and failed[0]["status"] == 503


async def test_a_killed_replica_loses_no_dialogue() -> None:
    async with fleet(3, latency=0.002, threaded=True) as f, anyio.create_task_group() as tg:
        results: list[DialogueResult] = []

        async def one(i: int) -> None:
            results.append(await dialogue(f.pool, f"d{i}", turns=15))

        for i in range(9):
            tg.start_soon(one, i)
        await wait_for(lambda: f.pool.stats()[2].requests >= 9, "replica 2 busy")
        on_two = f.pool.stats()[2].dialogues
        assert on_two == 3
        await f.kill(2)
    assert len(results) == 9
    assert all(r.error is None and r.turns == 15 for r in results), [r.error for r in results]
    stats = f.pool.stats()
    assert not stats[2].healthy and stats[2].failures >= 1
    assert stats[2].moved == on_two  # every dialogue it held moved to another replica
    assert stats[0].healthy and stats[1].healthy
    assert [s.dialogues for s in stats] == [0, 0, 0]


async def test_a_replica_that_recovers_is_probed_and_taken_back() -> None:
    flaky = FaultPlan()
    flaky.add(Fault.server_error(502), times=2)
    async with fleet(2, faults={0: flaky}, retry=ONCE, cooldown=0.0) as f:
        results = [await dialogue(f.pool, f"d{i}") for i in range(8)]
    assert all(r.error is None for r in results)
    stats = f.pool.stats()
    assert stats[0].failures == 2
    assert stats[0].healthy and stats[0].requests > 0  # a probe answered: it is back


async def test_a_request_the_server_rejects_is_not_a_replica_failure() -> None:
    rejecting = FaultPlan()
    rejecting.add(Fault("status", status=400), times=None)
    async with fleet(2, faults={0: rejecting, 1: rejecting}) as f:
        with pytest.raises(ModelError) as caught:
            await f.pool.complete([Message(role="user", content="hi")])
    assert caught.value.status_code == 400
    assert all(s.healthy and s.failures == 0 for s in f.pool.stats())


async def test_when_every_replica_fails_the_dialogue_ends_with_the_error() -> None:
    down = FaultPlan()
    down.add(Fault.disconnect(), times=None)
    async with fleet(2, faults={0: down, 1: down}) as f:
        result = await dialogue(f.pool, "doomed")
    assert result.termination == TerminationReason.USER_ERROR
    assert result.error is not None and result.error.type == "ModelError"
    stats = f.pool.stats()
    assert [s.failures for s in stats] == [1, 1]
    assert not any(s.healthy for s in stats)


async def test_round_robin_sends_each_request_to_the_next_replica() -> None:
    async with fleet(3, routing="round_robin") as f:
        await dialogue(f.pool, "rr", turns=3)
    assert [r.seen["rr"] for r in f.recorders] == [2, 2, 2]
    assert bound(f.pool) == [0, 0, 0]


def test_a_pickled_pool_keeps_its_replicas_and_no_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOL_TEST_KEY", "sk-pool-secret-0123456789")
    models = [
        OpenAIChatModel("m", base_url=f"http://127.0.0.1:{port}/v1", api_key_env="POOL_TEST_KEY")
        for port in (9001, 9002)
    ]
    pool = ModelPool(models, max_in_flight=7, routing="round_robin", cooldown=2.0)
    pool._replicas[0].requests = 5
    data = pickle.dumps(pool)
    assert b"sk-pool-secret" not in data
    copy = pickle.loads(data)
    assert [s.name for s in copy.stats()] == ["127.0.0.1:9001", "127.0.0.1:9002"]
    assert (copy.max_in_flight, copy.routing, copy.cooldown) == (7, "round_robin", 2.0)
    assert all(s.requests == 0 for s in copy.stats())


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"routing": "random"}, "routing"),
        ({"cooldown": -1.0}, "cooldown"),
        ({"cooldown": float("nan")}, "cooldown"),
        ({"names": ["only one"]}, "names"),
    ],
)
def test_bad_pool_options_are_refused(options: dict[str, Any], problem: str) -> None:
    models = [OpenAIChatModel("m", base_url="http://127.0.0.1:9/v1") for _ in range(2)]
    with pytest.raises(ValueError, match=problem):
        ModelPool(models, **options)
    with pytest.raises(ValueError, match="at least one"):
        ModelPool([])


SCRIPT = Path(sys.executable).with_name("convo-sim")


def test_the_cli_spreads_dialogues_over_replicas_and_reports_them(tmp_path: Path) -> None:
    with ServerThread() as one, ServerThread() as two:
        done = subprocess.run(
            [
                str(SCRIPT),
                "run",
                "--assistant",
                "openai:calendar-solver",
                "--user",
                "openai:calendar-user",
                "--base-url",
                one.base_url,
                "--base-url",
                two.base_url,
                "--max-in-flight",
                "3",
                "--samples",
                "2",
                "--out",
                str(tmp_path / "out.jsonl"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        served = (one.requests, two.requests)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^mean reward\s+1\.000", done.stdout, re.MULTILINE), done.stdout
    line = next(x for x in done.stdout.splitlines() if x.startswith("replicas"))
    counts = {
        name: int(n.replace(",", ""))
        for name, n in re.findall(r"(127\.0\.0\.1:\d+) ([\d,]+)", line)
    }
    names = [one.base_url.split("/")[2], two.base_url.split("/")[2]]
    assert [counts[n] for n in names] == list(served)
    assert all(n > 0 for n in served)
    # The progress line (standard error) ends with the same counts.
    assert f"replicas {names[0]} {served[0]:,}, {names[1]} {served[1]:,}" in done.stderr


@pytest.mark.parametrize(
    "url",
    [
        "localhost:8000",
        "ftp://x/v1",
        "http://:80/v1",
        "http://h:99999/v1",
        "http://[::1/v1",
        " http://h",
    ],
)
def test_a_bad_base_url_is_one_line_and_exit_2(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    code = main(["run", "--assistant", "openai:m", "--base-url", url, "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--base-url" in err and repr(url) in err
    assert not out.exists()


@given(st.text(max_size=40))
def test_any_base_url_is_accepted_or_refused_as_input(url: str) -> None:
    try:
        assert check_base_url(url) == url
    except InputError as exc:
        assert "--base-url" in str(exc)
        return
    assert url.lower().startswith(("http://", "https://")) and url == url.strip()
