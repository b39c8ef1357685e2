"""Rollout generation: many dialogues at once, streamed as `Rollout` records.

Shape of one run::

    async with open_rollouts(scenarios, plan) as rollouts:   one task group, owned here
      ├─ producer task: backend.run(items, plan, send)
      │    └─ run_plan (local by default, or on Ray workers): one task group
      │         └─ `concurrency` workers, started at once; each takes the
      │              next (scenario, sample) not skipped, builds actors and
      │              verifiers from the factories, runs run_dialogue(),
      │              sends the Rollout to the results stream (buffer =
      │              concurrency), and takes the next, until none is left
      └─ the caller's body: `async for rollout in rollouts`

The caller's body runs inside the context manager's task group, never
inside an async generator's: a failing factory cancels the body and leaves
the `async with` as one `RolloutError`, whatever the body was awaiting, and
leaving the body early cancels the dialogues still running.

Three limits apply: `concurrency` dialogues at once, and optionally
`assistant_concurrency` / `user_concurrency` model calls at once (each actor
is wrapped in a proxy whose `respond()` holds a shared
`anyio.CapacityLimiter`). Waiting for a model slot happens inside the turn,
so it counts against `turn_timeout`.

While a run is in progress the garbage collector's young generation is
sized for the dialogues in flight (`RolloutPlan.tune_gc`, on by default;
see `convo_sim._gc_tuning`).

Every sample gets its own seed, derived from `(seed, scenario.id,
sample_index)` by a stable hash, so a sample's actors are the same whatever
the order, concurrency or backend. A plan's `seed_key` may name another key
than the id: an experiment keys on the scenario without its assistant, so
every assistant meets the same simulated user (a paired design).

The factories travel to Ray workers with cloudpickle: make them top-level
functions, `functools.partial`s of them, or small dataclasses with a
`__call__`, and build live resources (HTTP clients, model connections)
inside the factory, never in the object that is shipped.
"""

from __future__ import annotations

import hashlib
import inspect
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeAlias, TypeVar, overload

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from convo_sim._actors import Actor, View
from convo_sim._completion import Detector
from convo_sim._errors import InputError, RolloutError
from convo_sim._gc_tuning import collector_sized_for
from convo_sim._logging import get_logger
from convo_sim._messages import Message
from convo_sim._orchestrator import DEFAULT_MAX_TURN_STEPS, run_dialogue
from convo_sim._records import Rollout, RolloutKey, ScenarioLike
from convo_sim._tools import ToolEnv
from convo_sim._verification import FinalVerifier, RewardFn, TurnVerifier

__all__ = [
    "DEFAULT_MAX_TURNS",
    "ActorFactory",
    "Annotator",
    "Backend",
    "CompletionFactory",
    "PlanItems",
    "RolloutPlan",
    "RolloutStream",
    "SeedKey",
    "ToolFactory",
    "VerifierFactory",
    "generate_rollouts_sync",
    "open_plan",
    "open_rollouts",
    "plan_items",
    "run_plan",
    "sample_seed",
]

S = TypeVar("S", bound=ScenarioLike)

ActorFactory: TypeAlias = Callable[[S, int], Actor]
"""Builds one actor for one sample: `factory(scenario, sample_seed) -> Actor`."""
VerifierFactory: TypeAlias = Callable[
    [S], tuple[Sequence[TurnVerifier[S]], Sequence[FinalVerifier[S]]]
]
"""Builds a scenario's verifiers: `factory(scenario) -> (turn_verifiers, final_verifiers)`."""
CompletionFactory: TypeAlias = Callable[[S], Detector | Sequence[Detector]]
"""Builds a scenario's completion detectors (default: the user's stop token)."""
SeedKey: TypeAlias = Callable[[S], str]
"""What a sample's seed is derived from besides the run seed and the sample index."""
Annotator: TypeAlias = Callable[[Rollout, S], Rollout | Awaitable[Rollout]]
"""Adds what a domain knows to a finished record (persona, fidelity, user failure)."""
ToolFactory: TypeAlias = Callable[[S], "ToolEnv[Any] | None"]
"""Builds one dialogue's tool environment (its own state): `factory(scenario) -> ToolEnv`."""

DEFAULT_MAX_TURNS = 20
"""The turn limit of scenarios that set none, when neither the run nor the domain sets one.

The one default: `RolloutPlan`, `run_scenario`, `Domain.max_turns`, the
CLI and scenario scripts all fall back to it.
"""

_log = get_logger("convo_sim.rollouts")


def sample_seed(seed: int, scenario_id: str, sample_index: int) -> int:
    """The seed of one sample: a stable 63-bit hash of the three values.

    Stable across processes and machines (unlike the salted built-in `hash`).
    """
    data = f"{seed}\x1f{scenario_id}\x1f{sample_index}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") >> 1


@dataclass(frozen=True, slots=True)
class RolloutPlan(Generic[S]):
    """How to run rollouts: the one place their options live.

    `open_rollouts`, `generate_rollouts_sync` and `write_rollouts` take a
    plan; a domain makes one with its factories (`domain.plan(seed=3)`).
    Picklable (by cloudpickle) when its factories and reward are, so that a
    backend can ship it to worker processes.

    Attributes:
        assistant: `factory(scenario, sample_seed) -> Actor` for the assistant.
        user: `factory(scenario, sample_seed) -> Actor` for the simulated user.
        verifiers: `factory(scenario) -> (turn_verifiers, final_verifiers)`.
        completion: `factory(scenario) -> detectors`; default: the user's
            stop token.
        concurrency: dialogues at once (per worker for a distributed backend).
        assistant_concurrency: assistant `respond()` calls at once; None: no limit.
        user_concurrency: user `respond()` calls at once; None: no limit.
        seed: the run's seed; each sample's seed is `sample_seed(seed, key, index)`.
        seed_key: `seed_key(scenario) -> str`, the key of that seed; None:
            the scenario's id. Scenarios with the same key get the same
            seeds, so their users are the same: an experiment keys on the
            scenario without its assistant (a paired comparison).
        annotate: `annotate(rollout, scenario) -> rollout`, sync or async,
            called on every record before it is sent (a domain's plan
            records the persona, the user-fidelity metrics and
            `user_failure`); None: records as they are.
        max_turns: the limit of scenarios that set none (None:
            `DEFAULT_MAX_TURNS`, 20).
        turn_timeout: seconds one actor may take for one message; None: no limit.
        reward: turns scores and verdicts into the reward (default: final
            verdicts if any, else the mean turn score).
        tools: `factory(scenario) -> ToolEnv`, a fresh tool environment per
            dialogue (see `run_dialogue`); None: no tools.
        max_steps: the most assistant messages per dialogue, tool steps
            included; None: no limit.
        max_turn_steps: the most assistant messages within one turn.
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

    Raises:
        ValueError: a count or limit is out of range.
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
    seed_key: SeedKey[S] | None = None
    annotate: Annotator[S] | None = None
    tools: ToolFactory[S] | None = None
    max_steps: int | None = None
    max_turn_steps: int | None = DEFAULT_MAX_TURN_STEPS

    def seed_for(self, scenario: S, index: int) -> int:
        """The seed of sample `index` of `scenario` in this plan."""
        key = scenario.id if self.seed_key is None else self.seed_key(scenario)
        return sample_seed(self.seed, key, index)

    def __post_init__(self) -> None:
        for name in ("concurrency", "assistant_concurrency", "user_concurrency"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value!r}")
        for name in ("max_turns", "max_steps", "max_turn_steps"):
            count = getattr(self, name)
            if count is not None and count < 1:
                raise ValueError(f"{name} must be at least 1 or None, got {count!r}")


class Backend(Protocol[S]):
    """Runs the work items of a plan somewhere and sends their rollouts back."""

    async def run(
        self,
        items: Sequence[tuple[S, int]],
        plan: RolloutPlan[S],
        send: MemoryObjectSendStream[Rollout],
    ) -> None:
        """Send one `Rollout` per item to `send`, in any order; return when all are sent.

        The caller owns `send` and closes it after this returns.

        Raises:
            RolloutError: a factory raised for some sample.
        """
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


class PlanItems(Sequence[tuple[S, int]]):
    """The `(scenario, sample_index)` pairs of a run, sample-major, computed as they are read.

    A run of a million samples would hold a million tuples as a list; this
    holds the scenarios, and for a resumed run one 8-byte code per sample
    still to do. Indexing and iteration build the pairs on the fly; a
    slice is a list.
    """

    __slots__ = ("_codes", "_count", "_scenarios")

    def __init__(
        self, scenarios: Sequence[S], samples_per_scenario: int, skip: AbstractSet[RolloutKey]
    ) -> None:
        self._scenarios = scenarios
        width = len(scenarios)
        self._codes: array[int] | None = None
        self._count = width * samples_per_scenario
        if skip:
            # Code of a pair: sample_index * width + position of its scenario.
            self._codes = array(
                "q",
                (
                    index * width + position
                    for index in range(samples_per_scenario)
                    for position, scenario in enumerate(scenarios)
                    if (scenario.id, index) not in skip
                ),
            )
            self._count = len(self._codes)

    def _pair(self, code: int) -> tuple[S, int]:
        index, position = divmod(code, len(self._scenarios))
        return self._scenarios[position], index

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, item: int) -> tuple[S, int]: ...

    @overload
    def __getitem__(self, item: slice) -> list[tuple[S, int]]: ...

    def __getitem__(self, item: int | slice) -> tuple[S, int] | list[tuple[S, int]]:
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(self._count))]
        if item < 0:
            item += self._count
        if not 0 <= item < self._count:
            raise IndexError("plan item index out of range")
        return self._pair(item if self._codes is None else self._codes[item])

    def __iter__(self) -> Iterator[tuple[S, int]]:
        codes: Iterable[int] = range(self._count) if self._codes is None else self._codes
        for code in codes:
            yield self._pair(code)


def plan_items(
    scenarios: Iterable[S], samples_per_scenario: int, skip: AbstractSet[RolloutKey]
) -> PlanItems[S]:
    """The `(scenario, sample_index)` pairs to run, sample-major.

    Sample-major order (every scenario's sample 0, then every sample 1, ...)
    spreads a partial run over all scenarios, so early metrics are fair.
    The pairs are made as they are read (`PlanItems`), not held.

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
    return PlanItems(unique, samples_per_scenario, skip)


async def _run_one(
    scenario: S,
    index: int,
    plan: RolloutPlan[S],
    assistant_limit: anyio.CapacityLimiter | None,
    user_limit: anyio.CapacityLimiter | None,
) -> Rollout:
    seed = plan.seed_for(scenario, index)
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
        tools=plan.tools(scenario) if plan.tools else None,
        max_steps=plan.max_steps,
        max_turn_steps=plan.max_turn_steps,
    )
    rollout = Rollout.from_result(scenario, index, seed, result)
    if plan.annotate is not None:
        annotated = plan.annotate(rollout, scenario)
        rollout = await annotated if inspect.isawaitable(annotated) else annotated
    return rollout


async def run_plan(
    items: Sequence[tuple[S, int]], plan: RolloutPlan[S], send: MemoryObjectSendStream[Rollout]
) -> None:
    """Run the items in this process and send each rollout to `send` as it finishes.

    This is the local backend's loop, and what every Ray worker runs on its
    shard. It returns when every item's rollout is sent, or early when the
    receiving end is closed. `send` is not closed. While it runs, the
    collector is tuned as `plan.tune_gc` says (see `RolloutPlan`).

    Raises:
        RolloutError: a factory raised, or `run_dialogue` rejected its
            arguments; the other dialogues are cancelled.
    """
    assistant_limit = (
        anyio.CapacityLimiter(plan.assistant_concurrency) if plan.assistant_concurrency else None
    )
    user_limit = anyio.CapacityLimiter(plan.user_concurrency) if plan.user_concurrency else None
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
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                cancel.cancel()  # nobody reads any more: stop every dialogue
                return

    with collector_sized_for(plan.concurrency) if plan.tune_gc else nullcontext():
        async with anyio.create_task_group() as workers:
            for _ in range(min(plan.concurrency, len(items))):
                workers.start_soon(worker, workers.cancel_scope)
    if failures:
        raise failures[0]


class RolloutStream:
    """The rollouts of a run in completion order: `async for rollout in rollouts`.

    What `open_rollouts` hands to its body; it ends when every sample's
    rollout has been received.
    """

    __slots__ = ("_receive",)

    def __init__(self, receive: MemoryObjectReceiveStream[Rollout]) -> None:
        self._receive = receive

    def __aiter__(self) -> RolloutStream:
        return self

    async def __anext__(self) -> Rollout:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def receive(self) -> Rollout:
        """The next rollout to finish.

        Raises:
            anyio.EndOfStream: every rollout has been received.
        """
        # Take what is buffered without a loop turn per rollout (receive()
        # yields to the loop first): when many dialogues end together the
        # consumer keeps up. The buffer is bounded, so this never starves
        # the loop for long.
        try:
            return self._receive.receive_nowait()
        except anyio.WouldBlock:
            return await self._receive.receive()


@asynccontextmanager
async def open_plan(
    items: Sequence[tuple[S, int]], plan: RolloutPlan[S], *, backend: Backend[S] | None = None
) -> AsyncIterator[RolloutStream]:
    """Run the items of a plan for the body of an `async with`; stream their rollouts.

    `open_rollouts` with the work items already chosen (`plan_items`), for
    callers that hold a `RolloutPlan`, such as `write_rollouts`.

    Raises:
        RolloutError: a factory raised for some sample (the body is cancelled).
    """
    send, receive = anyio.create_memory_object_stream[Rollout](plan.concurrency)
    failures: list[Exception] = []

    async def produce(cancel: anyio.CancelScope) -> None:
        async with send:  # closing it ends the body's `async for`
            try:
                if backend is None:
                    await run_plan(items, plan, send)
                else:
                    await backend.run(items, plan, send)
            except Exception as exc:  # cancellation is a BaseException and passes through
                # Kept, not raised: a task's error would reach the caller
                # wrapped in an ExceptionGroup, next to the body's own.
                failures.append(exc)
                cancel.cancel()

    body_error: BaseException | None = None
    try:
        async with receive, anyio.create_task_group() as tg:
            tg.start_soon(produce, tg.cancel_scope)
            try:
                yield RolloutStream(receive)
            finally:
                # The body is done, or left early: stop what still runs.
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Only the body's own exception can be in here (the producer keeps
        # its failure): give it back as the body raised it.
        body_error = _sole_exception(group)
        if body_error is None:
            raise
    if body_error is not None:
        raise body_error
    if failures:
        raise failures[0]


def _sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception in a (nested) group besides cancellations, or None."""
    cancelled = anyio.get_cancelled_exc_class()
    found: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        elif not isinstance(exc, cancelled):
            found.append(exc)
    return found[0] if len(found) == 1 else None


@asynccontextmanager
async def open_rollouts(
    scenarios: Iterable[S],
    plan: RolloutPlan[S],
    *,
    samples_per_scenario: int = 1,
    skip: AbstractSet[RolloutKey] = frozenset(),
    backend: Backend[S] | None = None,
) -> AsyncIterator[RolloutStream]:
    """Run `samples_per_scenario` dialogues per scenario for the body of an `async with`.

    ::

        async with open_rollouts(scenarios, domain.plan(seed=3)) as rollouts:
            async for rollout in rollouts:
                ...

    Results come in completion order, not input order. The dialogues run in
    a task group this context manager owns; leaving the body early (a
    `break`, an exception) cancels the ones still running. A failing
    factory cancels the body, whatever it is awaiting, and the `async with`
    raises `RolloutError`; an exception of the body's own comes out as it
    was raised.

    Args:
        scenarios: the scenarios (ids must be unique).
        plan: the factories, limits and seed (see `RolloutPlan`).
        samples_per_scenario: dialogues per scenario (k of pass@k).
        skip: `(scenario_id, sample_index)` keys already done (resume).
        backend: where to run; default this process (`RayBackend` spreads
            the same loop over a Ray cluster).

    Yields:
        A `RolloutStream` of one `Rollout` per sample not skipped.

    Raises:
        InputError: two scenarios share an id.
        ValueError: `samples_per_scenario` is below 1.
        RolloutError: a factory raised for some sample.
    """
    items = plan_items(scenarios, samples_per_scenario, skip)
    _log.info("rollouts.started", items=len(items), skipped=len(skip), concurrency=plan.concurrency)
    async with open_plan(items, plan, backend=backend) as rollouts:
        yield rollouts


def generate_rollouts_sync(
    scenarios: Iterable[S],
    plan: RolloutPlan[S],
    *,
    samples_per_scenario: int = 1,
    skip: AbstractSet[RolloutKey] = frozenset(),
    backend: Backend[S] | None = None,
) -> list[Rollout]:
    """`open_rollouts` for code without an event loop: all rollouts, in completion order.

    Raises:
        InputError: two scenarios share an id.
        ValueError: `samples_per_scenario` is below 1.
        RolloutError: a factory raised for some sample.
        RuntimeError: called from inside a running event loop.
    """
    scenario_list = list(scenarios)

    async def collect() -> list[Rollout]:
        async with open_rollouts(
            scenario_list,
            plan,
            samples_per_scenario=samples_per_scenario,
            skip=skip,
            backend=backend,
        ) as rollouts:
            return [rollout async for rollout in rollouts]

    return anyio.run(collect)
