"""The Ray backend: the same rollout loop, sharded over Ray actors.

Shape::

    driver (generate_rollouts / write_rollouts)
      ├─ shard 0 ──► _ShardWorker actor: run_plan(shard 0)  ─┐ streaming
      ├─ shard 1 ──► _ShardWorker actor: run_plan(shard 1)  ─┤ generator,
      └─ ...                                                  ┘ one object per rollout
      ◄── one pump task per worker: next ref, ray.get ──► results stream ──► caller

Every worker runs `run_plan`, the local backend's async loop, on its shard
with many dialogues at once, and yields rollouts as they finish. The driver
writes them, so `write_rollouts`' resume guarantees hold unchanged. Seeds
depend only on `(seed, scenario id, sample index)`, so records equal the
local backend's, timings and dialogue ids aside.

The plan travels to the workers with cloudpickle. Its factories must not
hold live resources (clients, open files, event loops): use top-level
functions, `functools.partial`s of them or small dataclasses with a
`__call__`, and create clients inside the factory. Classes and functions
must be importable in the workers (installed packages), or registered with
`ray.cloudpickle.register_pickle_by_value(module)`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import anyio

from convo_sim.logging import Level, get_logger
from convo_sim.records import Rollout
from convo_sim.rollouts import RolloutPlan, S, run_plan

__all__ = ["RayBackend"]

_log = get_logger("convo_sim.backends.ray")


class _ShardWorker:
    """A Ray actor that runs `run_plan` on one shard and streams the rollouts."""

    def __init__(self, log_level: Level) -> None:
        from convo_sim.logging import configure_logging

        # Unconfigured structlog prints to stdout, which Ray forwards to the
        # driver's stdout; keep workers' events on stderr like the CLI's.
        configure_logging(log_level)

    async def ready(self) -> None:
        """Return once the actor is up (also marks the actor as async for Ray)."""

    async def run(
        self, items: Sequence[tuple[Any, int]], plan: RolloutPlan[Any]
    ) -> AsyncGenerator[Rollout, None]:
        async with aclosing(run_plan(items, plan)) as stream:
            async for rollout in stream:
                yield rollout


def _next_rollout(generator: Any) -> Rollout | None:
    """Block until the worker yields its next rollout; None when it is done."""
    import ray

    ref = next(generator, None)
    if ref is None:
        return None
    try:
        rollout: Rollout = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        # Re-raise what the worker raised (a RolloutError, say), not Ray's wrapper.
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Exception):
            raise cause from exc
        raise
    return rollout


def _split(limit: int | None, parts: int) -> int | None:
    return None if limit is None else max(1, math.ceil(limit / parts))


@dataclass(frozen=True, slots=True)
class RayBackend:
    """Runs rollouts on Ray actors, each a full async loop over its shard.

    Args:
        num_workers: Ray actors; the work items are dealt out round-robin.
        concurrency_per_worker: dialogues at once in each worker; None: the
            plan's `concurrency`.
        address: the cluster to join (`ray.init(address=...)`); None joins
            an initialised Ray or starts a local one.
        num_cpus_per_worker: CPUs Ray reserves for each actor (rule-based
            actors use CPU; model-backed ones mostly wait, so 0.5 or less
            packs more workers per machine).
        log_level: the workers' structlog level (events go to their stderr,
            which Ray forwards to the driver's).
        init_options: extra `ray.init` keywords when this backend starts Ray.

    The assistant and user model-call limits of the plan are split evenly
    over the workers (rounded up).
    """

    num_workers: int = 2
    concurrency_per_worker: int | None = None
    address: str | None = None
    num_cpus_per_worker: float = 1.0
    log_level: Level = "warning"
    init_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {self.num_workers!r}")
        if self.concurrency_per_worker is not None and self.concurrency_per_worker < 1:
            raise ValueError(
                f"concurrency_per_worker must be at least 1, got {self.concurrency_per_worker!r}"
            )

    def worker_plan(self, plan: RolloutPlan[S]) -> RolloutPlan[S]:
        """The plan each worker runs: its own dialogue limit, a share of the model limits."""
        return dataclasses.replace(
            plan,
            concurrency=self.concurrency_per_worker or plan.concurrency,
            assistant_concurrency=_split(plan.assistant_concurrency, self.num_workers),
            user_concurrency=_split(plan.user_concurrency, self.num_workers),
        )

    async def run(
        self, items: Sequence[tuple[S, int]], plan: RolloutPlan[S]
    ) -> AsyncGenerator[Rollout, None]:
        """Shard the items over Ray actors and yield rollouts as they finish.

        Raises:
            ImportError: Ray is not installed (`pip install 'convo-sim[ray]'`).
            RolloutError: a factory raised for some sample, in some worker.
            ray.exceptions.RayError: the cluster failed (a worker died, ...).
        """
        import ray

        if not items:
            return
        started_ray = False
        if not ray.is_initialized():
            # Blocking, but nothing else runs yet, and Ray installs its signal
            # handlers only when initialised from the main thread.
            ray.init(address=self.address, **{"include_dashboard": False, **self.init_options})
            started_ray = True
        shards = [
            s for s in (list(items[i :: self.num_workers]) for i in range(self.num_workers)) if s
        ]
        remote = ray.remote(num_cpus=self.num_cpus_per_worker)(_ShardWorker)
        workers: list[Any] = []
        worker_plan = self.worker_plan(plan)
        send, recv = anyio.create_memory_object_stream[Rollout](worker_plan.concurrency)

        async def pump(worker: Any, shard: list[tuple[S, int]]) -> None:
            generator: Any = worker.run.remote(shard, worker_plan)
            while True:
                # A blocking wait in a thread keeps this backend independent
                # of the event loop; abandoned on cancel, it ends when the
                # actor is killed below.
                rollout = await anyio.to_thread.run_sync(
                    _next_rollout, generator, abandon_on_cancel=True
                )
                if rollout is None:
                    return
                try:
                    await send.send(rollout)
                except anyio.BrokenResourceError:
                    return  # the caller closed the iterator; the group is being cancelled

        async def pump_all() -> None:
            async with send, anyio.create_task_group() as pumps:
                for worker, shard in zip(workers, shards, strict=True):
                    pumps.start_soon(pump, worker, shard)

        try:
            workers.extend(remote.remote(self.log_level) for _ in shards)
            _log.info("ray.started", workers=len(workers), items=len(items))
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump_all)
                async with recv:
                    try:
                        async for rollout in recv:
                            yield rollout
                    except GeneratorExit:
                        # The caller closed the iterator; a task group would
                        # wrap GeneratorExit in a group.
                        tg.cancel_scope.cancel()
                        return
        except BaseExceptionGroup as group:
            # One worker's failure is the run's failure: surface it alone.
            error = _first_error(group)
            if error is None:
                raise
            raise error from None
        finally:
            # Synchronous on purpose: cleanup must finish even when cancelled,
            # and killing the actors also ends any abandoned pump thread.
            for worker in workers:
                ray.kill(worker)
            if started_ray:
                ray.shutdown()


def _first_error(group: BaseExceptionGroup[BaseException]) -> Exception | None:
    """The first plain exception in a (nested) group; None if it holds only cancellations."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found = _first_error(exc)
            if found is not None:
                return found
        elif isinstance(exc, Exception):
            return exc
    return None
