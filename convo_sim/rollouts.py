"""Rollout generation: many dialogues at once, streamed as `Rollout` records.

Shape of one run::

    generate_rollouts
      └─ backend (local by default, or RayBackend)
           └─ run_plan: one task group
                └─ `concurrency` workers, started at once; each takes the
                     next (scenario, sample) not skipped, builds actors and
                     verifiers from the factories, runs run_dialogue(),
                     sends the Rollout to the results stream (buffer =
                     concurrency), and takes the next, until none is left

Three limits apply: `concurrency` dialogues at once, and optionally
`assistant_concurrency` / `user_concurrency` model calls at once (each actor
is wrapped in a proxy whose `respond()` holds a shared
`anyio.CapacityLimiter`). Waiting for a model slot happens inside the turn,
so it counts against `turn_timeout`.

While a run is in progress the garbage collector's young generation is
sized for the dialogues in flight (`tune_gc`, on by default; see
`generate_rollouts`).

Every sample gets its own seed, derived from `(seed, scenario.id,
sample_index)` by a stable hash, so a sample's actors are the same whatever
the order, concurrency or backend.

The factories travel to Ray workers with cloudpickle: make them top-level
functions, `functools.partial`s of them, or small dataclasses with a
`__call__`, and build live resources (HTTP clients, model connections)
inside the factory, never in the object that is shipped.
"""

from __future__ import annotations

import gc
import hashlib
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from collections.abc import Set as AbstractSet
from contextlib import aclosing, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Generic, Protocol, TypeAlias, TypeVar

import anyio

from convo_sim.actors import Actor, View
from convo_sim.completion import Detector
from convo_sim.errors import InputError, RolloutError
from convo_sim.logging import get_logger
from convo_sim.messages import Message
from convo_sim.orchestrator import run_dialogue
from convo_sim.records import Rollout, RolloutKey, ScenarioLike
from convo_sim.verification import FinalVerifier, RewardFn, TurnVerifier

__all__ = [
    "DEFAULT_MAX_TURNS",
    "ActorFactory",
    "Backend",
    "CompletionFactory",
    "RolloutPlan",
    "VerifierFactory",
    "generate_rollouts",
    "generate_rollouts_sync",
    "plan_items",
    "run_plan",
    "sample_seed",
]

S = TypeVar("S", bound=ScenarioLike)

ActorFactory: TypeAlias = Callable[[S, int], Actor]
"""Builds one actor for one sample: `factory(scenario, sample_seed) -> Actor`."""
VerifierFactory: TypeAlias = Callable[[S], tuple[Sequence[TurnVerifier], Sequence[FinalVerifier]]]
"""Builds a scenario's verifiers: `factory(scenario) -> (turn_verifiers, final_verifiers)`."""
CompletionFactory: TypeAlias = Callable[[S], Detector | Sequence[Detector]]
"""Builds a scenario's completion detectors (default: the user's stop token)."""

DEFAULT_MAX_TURNS = 10
"""The turn limit of scenarios that set none, when the run sets none either."""

_log = get_logger("convo_sim.rollouts")


def sample_seed(seed: int, scenario_id: str, sample_index: int) -> int:
    """The seed of one sample: a stable 63-bit hash of the three values.

    Stable across processes and machines (unlike the salted built-in `hash`).
    """
    data = f"{seed}\x1f{scenario_id}\x1f{sample_index}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") >> 1


@dataclass(frozen=True, slots=True)
class RolloutPlan(Generic[S]):
    """Everything a backend needs to run rollouts, apart from the work items.

    Picklable (by cloudpickle) when its factories and reward are, so that a
    backend can ship it to worker processes. `tune_gc`: see `generate_rollouts`.
    """

    assistant: ActorFactory[S]
    user: ActorFactory[S]
    verifiers: VerifierFactory[S] | None = None
    completion: CompletionFactory[S] | None = None
    concurrency: int = 32
    assistant_concurrency: int | None = None
    user_concurrency: int | None = None
    seed: int = 0
    max_turns: int | None = None
    turn_timeout: float | None = 60.0
    reward: RewardFn | None = None
    tune_gc: bool = True

    def __post_init__(self) -> None:
        for name in ("concurrency", "assistant_concurrency", "user_concurrency"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value!r}")
        if self.max_turns is not None and self.max_turns < 1:
            raise ValueError(f"max_turns must be at least 1 or None, got {self.max_turns!r}")


class Backend(Protocol[S]):
    """Runs work items of a plan somewhere and streams their rollouts back."""

    def run(
        self, items: Sequence[tuple[S, int]], plan: RolloutPlan[S]
    ) -> AsyncGenerator[Rollout, None]:
        """Yield one `Rollout` per item, in any order."""
        ...


class _Limited:
    """An actor whose `respond()` first takes a slot of a shared limiter."""

    __slots__ = ("actor", "limiter")

    def __init__(self, actor: Actor, limiter: anyio.CapacityLimiter) -> None:
        self.actor = actor
        self.limiter = limiter

    async def respond(self, view: View) -> Message:
        async with self.limiter:
            return await self.actor.respond(view)


def plan_items(
    scenarios: Iterable[S], samples_per_scenario: int, skip: AbstractSet[RolloutKey]
) -> list[tuple[S, int]]:
    """The `(scenario, sample_index)` pairs to run, sample-major.

    Sample-major order (every scenario's sample 0, then every sample 1, ...)
    spreads a partial run over all scenarios, so early metrics are fair.

    Raises:
        InputError: two scenarios share an id (rollouts are keyed by it).
        ValueError: `samples_per_scenario` is below 1.
    """
    if samples_per_scenario < 1:
        raise ValueError(f"samples_per_scenario must be at least 1, got {samples_per_scenario!r}")
    unique: list[S] = []
    seen: set[str] = set()
    for scenario in scenarios:
        if scenario.id in seen:
            raise InputError(f"scenario id {scenario.id!r} appears twice; ids must be unique")
        seen.add(scenario.id)
        unique.append(scenario)
    return [
        (scenario, index)
        for index in range(samples_per_scenario)
        for scenario in unique
        if (scenario.id, index) not in skip
    ]


async def _run_one(
    scenario: S,
    index: int,
    plan: RolloutPlan[S],
    assistant_limit: anyio.CapacityLimiter | None,
    user_limit: anyio.CapacityLimiter | None,
) -> Rollout:
    seed = sample_seed(plan.seed, scenario.id, index)
    assistant = plan.assistant(scenario, seed)
    user = plan.user(scenario, seed)
    if assistant_limit is not None:
        assistant = _Limited(assistant, assistant_limit)
    if user_limit is not None:
        user = _Limited(user, user_limit)
    turn_verifiers, final_verifiers = plan.verifiers(scenario) if plan.verifiers else ((), ())
    result = await run_dialogue(
        assistant,
        user,
        prefix=scenario.opening_transcript(),
        scenario=scenario,
        max_turns=scenario.max_turns or plan.max_turns or DEFAULT_MAX_TURNS,
        turn_timeout=plan.turn_timeout,
        completion=plan.completion(scenario) if plan.completion else None,
        turn_verifiers=turn_verifiers,
        final_verifiers=final_verifiers,
        reward=plan.reward,
    )
    return Rollout.from_result(scenario, index, seed, result)


# -- the collector during a run ---------------------------------------------------
#
# CPython collects its young generation after every 700 (3.13: 2000) net
# new container objects. A dialogue waiting for a model keeps ~200 of them
# alive (tasks, cancel scopes, streams, the await chain, its transcript), so
# with hundreds of dialogues in flight nearly everything a young collection
# examines is still alive: it is promoted, examined again, and every ~100
# young collections a full collection re-scans the whole heap. Measured at
# 50 ms per model call: 20-30% of the client's CPU at 256 dialogues, 60% at
# 10,000 (benchmarks/README.md). While a run is in progress its young
# generation is therefore sized for the dialogues in flight, and the
# thresholds are restored when the last overlapping run ends.

GC_OBJECTS_PER_DIALOGUE = 200
"""Young-generation room per dialogue slot while a run tunes the collector.

About what one dialogue over an LLM keeps alive while it waits for a model
(measured: 190-260 GC-tracked objects)."""
GC_MAX_THRESHOLD = 1_000_000
"""The largest young-generation threshold a run sets (bounds one collection's pause)."""

_gc_lock = threading.Lock()
_gc_runs = 0
_gc_saved: tuple[int, int, int] | None = None
_gc_ours: tuple[int, int, int] | None = None


@contextmanager
def _collector_sized_for(concurrency: int) -> Iterator[None]:
    """Raise the young-generation threshold for `concurrency` dialogues while inside.

    Runs may nest or overlap (two `generate_rollouts` in one event loop, or
    in two threads): the first to start saves the thresholds, each raises
    them to what it needs, and the last to end restores them, unless the
    program changed them in between (then the program's setting stays).
    """
    global _gc_runs, _gc_saved, _gc_ours
    want = min(GC_OBJECTS_PER_DIALOGUE * concurrency, GC_MAX_THRESHOLD)
    with _gc_lock:
        current = gc.get_threshold()
        if _gc_runs == 0:
            _gc_saved = _gc_ours = current
        if current == _gc_ours and want > current[0]:
            gc.set_threshold(want, current[1], current[2])
            _gc_ours = gc.get_threshold()
        _gc_runs += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_runs -= 1
            if _gc_runs == 0:
                if _gc_saved is not None and gc.get_threshold() == _gc_ours:
                    gc.set_threshold(*_gc_saved)
                _gc_saved = _gc_ours = None


async def run_plan(
    items: Sequence[tuple[S, int]], plan: RolloutPlan[S]
) -> AsyncGenerator[Rollout, None]:
    """Run the items in this process and yield rollouts as they finish.

    This is the local backend's loop, and what every Ray worker runs on its
    shard. Close the iterator (`contextlib.aclosing`) if you stop early.
    While it runs, the collector is tuned as `plan.tune_gc` says (see
    `generate_rollouts`).

    Raises:
        RolloutError: a factory raised, or `run_dialogue` rejected its
            arguments; the other dialogues are cancelled.
    """
    assistant_limit = (
        anyio.CapacityLimiter(plan.assistant_concurrency) if plan.assistant_concurrency else None
    )
    user_limit = anyio.CapacityLimiter(plan.user_concurrency) if plan.user_concurrency else None
    # A buffer as deep as the dialogue limit: a finished dialogue rarely waits
    # for a slow consumer, and at most `concurrency` results are ever held.
    send, recv = anyio.create_memory_object_stream[Rollout](plan.concurrency)
    failures: list[RolloutError] = []
    # One worker per dialogue slot, all started before any of them runs: a
    # spawner that waits for a free slot before each start (a semaphore)
    # starts at most one dialogue per event-loop turn, and short dialogues
    # end before the last slots fill (measured: ~620 of 10,000 in flight).
    pending = iter(items)

    async def worker(cancel: anyio.CancelScope) -> None:
        for scenario, index in pending:
            try:
                rollout = await _run_one(scenario, index, plan, assistant_limit, user_limit)
            except Exception as exc:  # cancellation is a BaseException and passes through
                error = RolloutError(scenario.id, index, f"{type(exc).__name__}: {exc}")
                error.__cause__ = exc
                failures.append(error)
                _log.error("rollout.failed", scenario_id=scenario.id, sample_index=index)
                cancel.cancel()
                return
            # Sent before the worker takes the next item, so a slow consumer
            # slows the run down instead of piling up finished rollouts.
            try:
                try:
                    send.send_nowait(rollout)  # the buffer has room: no loop turn needed
                except anyio.WouldBlock:
                    await send.send(rollout)
            except anyio.BrokenResourceError:
                return  # the consumer closed the iterator; the group is being cancelled

    async def spawn(cancel: anyio.CancelScope) -> None:
        # The spawner owns the send end for the whole run: its task group
        # outlives every worker, so closing it here ends the consumer's
        # loop exactly when the last result is in.
        async with send, anyio.create_task_group() as workers:
            for _ in range(min(plan.concurrency, len(items))):
                workers.start_soon(worker, cancel)

    with _collector_sized_for(plan.concurrency) if plan.tune_gc else nullcontext():
        async with anyio.create_task_group() as tg:
            tg.start_soon(spawn, tg.cancel_scope)
            async with recv:
                try:
                    while True:
                        # Take what is buffered without a loop turn per rollout
                        # (receive() yields to the loop first): when many
                        # dialogues end together the consumer keeps up.
                        try:
                            rollout = recv.receive_nowait()
                        except anyio.WouldBlock:
                            try:
                                rollout = await recv.receive()
                            except anyio.EndOfStream:
                                break
                        except anyio.EndOfStream:
                            break
                        yield rollout
                except GeneratorExit:
                    # The caller closed the iterator: stop the dialogues and end
                    # quietly (a task group would wrap GeneratorExit in a group).
                    tg.cancel_scope.cancel()
                    return
    if failures:
        raise failures[0]


async def generate_rollouts(
    scenarios: Iterable[S],
    *,
    assistant: ActorFactory[S],
    user: ActorFactory[S],
    verifiers: VerifierFactory[S] | None = None,
    completion: CompletionFactory[S] | None = None,
    samples_per_scenario: int = 1,
    concurrency: int = 32,
    assistant_concurrency: int | None = None,
    user_concurrency: int | None = None,
    seed: int = 0,
    max_turns: int | None = None,
    turn_timeout: float | None = 60.0,
    reward: RewardFn | None = None,
    skip: AbstractSet[RolloutKey] = frozenset(),
    backend: Backend[S] | None = None,
    tune_gc: bool = True,
) -> AsyncIterator[Rollout]:
    """Run `samples_per_scenario` dialogues per scenario; yield each as it finishes.

    Results come in completion order, not input order. If you stop iterating
    early, close the iterator (`async with contextlib.aclosing(...)`) so the
    running dialogues are cancelled in the task that started them.

    Args:
        scenarios: the scenarios (ids must be unique).
        assistant: `factory(scenario, sample_seed) -> Actor` for the assistant.
        user: `factory(scenario, sample_seed) -> Actor` for the simulated user.
        verifiers: `factory(scenario) -> (turn_verifiers, final_verifiers)`.
        completion: `factory(scenario) -> detectors`; default: the user's stop token.
        samples_per_scenario: dialogues per scenario (k of pass@k).
        concurrency: dialogues at once (per worker for a distributed backend).
        assistant_concurrency: assistant `respond()` calls at once; None: no limit.
        user_concurrency: user `respond()` calls at once; None: no limit.
        seed: the run's seed; each sample's seed is `sample_seed(seed, id, index)`.
        max_turns: the limit of scenarios that set none (default 10).
        turn_timeout: seconds one actor may take for one message; None: no limit.
        reward: turns scores and verdicts into the reward (default: final
            verdicts if any, else the mean turn score).
        skip: `(scenario_id, sample_index)` keys already done (resume).
        backend: where to run; default this process (`RayBackend` spreads
            the same loop over a Ray cluster).
        tune_gc: while the run is in progress, raise the garbage collector's
            young-generation threshold to `200 x concurrency` net new
            objects (at most 1,000,000; never lowered), and restore the
            thresholds when the last run in progress ends, however it ends.
            With the default (700) every dialogue waiting for a model is
            examined and promoted again and again and full collections keep
            re-scanning the heap: 20-30% of the CPU at 256 dialogues in
            flight, 60% at 10,000 (`benchmarks/README.md`). The cost:
            garbage in reference cycles waits longer to be reclaimed (at most
            that many young objects), and one young collection takes longer
            (~10 ms at 1,000,000). The thresholds are process-wide; pass
            False to leave them alone.

    Yields:
        One `Rollout` per sample not skipped.

    Raises:
        InputError: two scenarios share an id.
        ValueError: a count or limit is out of range.
        RolloutError: a factory raised for some sample.
    """
    plan = RolloutPlan(
        assistant=assistant,
        user=user,
        verifiers=verifiers,
        completion=completion,
        concurrency=concurrency,
        assistant_concurrency=assistant_concurrency,
        user_concurrency=user_concurrency,
        seed=seed,
        max_turns=max_turns,
        turn_timeout=turn_timeout,
        reward=reward,
        tune_gc=tune_gc,
    )
    items = plan_items(scenarios, samples_per_scenario, skip)
    _log.info("rollouts.started", items=len(items), skipped=len(skip), concurrency=concurrency)
    stream = run_plan(items, plan) if backend is None else backend.run(items, plan)
    async with aclosing(stream):
        async for rollout in stream:
            yield rollout


def generate_rollouts_sync(
    scenarios: Iterable[S],
    *,
    assistant: ActorFactory[S],
    user: ActorFactory[S],
    verifiers: VerifierFactory[S] | None = None,
    completion: CompletionFactory[S] | None = None,
    samples_per_scenario: int = 1,
    concurrency: int = 32,
    assistant_concurrency: int | None = None,
    user_concurrency: int | None = None,
    seed: int = 0,
    max_turns: int | None = None,
    turn_timeout: float | None = 60.0,
    reward: RewardFn | None = None,
    skip: AbstractSet[RolloutKey] = frozenset(),
    backend: Backend[S] | None = None,
    tune_gc: bool = True,
) -> list[Rollout]:
    """`generate_rollouts` for code without an event loop: all rollouts, in completion order.

    Raises:
        InputError: two scenarios share an id.
        ValueError: a count or limit is out of range.
        RolloutError: a factory raised for some sample.
        RuntimeError: called from inside a running event loop.
    """
    scenario_list = list(scenarios)

    async def collect() -> list[Rollout]:
        stream = generate_rollouts(
            scenario_list,
            assistant=assistant,
            user=user,
            verifiers=verifiers,
            completion=completion,
            samples_per_scenario=samples_per_scenario,
            concurrency=concurrency,
            assistant_concurrency=assistant_concurrency,
            user_concurrency=user_concurrency,
            seed=seed,
            max_turns=max_turns,
            turn_timeout=turn_timeout,
            reward=reward,
            skip=skip,
            backend=backend,
            tune_gc=tune_gc,
        )
        return [rollout async for rollout in stream]

    return anyio.run(collect)
