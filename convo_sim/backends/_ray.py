"""The Ray backend: the same rollout loop, sharded over Ray actors.

Shape::

    driver (open_rollouts / write_rollouts)
      ├─ shard 0 ──► _ShardWorker actor: run(shard 0) = run_plan into its buffer
      │               ◄── take(): the rollouts buffered so far ── pump 0 ─┐
      ├─ shard 1 ──► _ShardWorker actor ...                ── pump 1 ─┤──► send ──► caller
      └─ ...                                                          ┘

Every worker runs `run_plan`, the local backend's async loop, on its shard
with many dialogues at once; the driver's pump for that shard fetches the
finished rollouts in batches (`take`) and sends them on. The driver writes
them, so `write_rollouts`' resume guarantees hold unchanged. Seeds depend
only on `(seed, scenario id, sample index)`, so records equal the local
backend's, timings and dialogue ids aside.

A worker that dies (its process killed, its node lost) loses only the
rollouts the driver has not taken yet: the pump starts a new worker for
exactly those samples, so the run still ends with one record per sample.
A shard whose workers keep dying (`max_worker_restarts`) ends the run.

The worker's `run` is a coroutine that owns its task group and `take` a
separate call, rather than one streaming generator: a generator would
yield from inside the task group that runs the dialogues.

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
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from convo_sim._errors import InputError, RolloutError
from convo_sim._logging import Level, get_logger
from convo_sim._records import Rollout, RolloutKey
from convo_sim._rollouts import RolloutPlan, S, run_plan

__all__ = ["RayBackend"]

_log = get_logger("convo_sim.backends.ray")

_TAKE = 256
"""Most rollouts one `take` call brings back (one round trip per batch, not per record)."""


class _ShardWorker:
    """A Ray actor that runs `run_plan` on one shard; the driver takes the rollouts."""

    def __init__(self, log_level: Level, buffer: int) -> None:
        from convo_sim._logging import configure_logging

        # Unconfigured structlog prints to stdout, which Ray forwards to the
        # driver's stdout; keep workers' events on stderr like the CLI's.
        configure_logging(log_level)
        self._send, self._receive = anyio.create_memory_object_stream[Rollout](buffer)

    async def ready(self) -> None:
        """Return once the actor is up (also marks the actor as async for Ray)."""

    async def run(self, items: Sequence[tuple[Any, int]], plan: RolloutPlan[Any]) -> None:
        """Run the shard; its rollouts wait in the buffer until taken.

        Raises:
            RolloutError: a factory raised for some sample.
        """
        async with self._send:  # closing it tells `take` the shard is done
            await run_plan(items, plan, self._send)

    async def take(self, most: int) -> list[Rollout]:
        """The rollouts finished so far (at least one), or [] once the shard is done."""
        try:
            batch = [await self._receive.receive()]
        except anyio.EndOfStream:
            return []
        while len(batch) < most:
            try:
                batch.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
        return batch


def _get(ref: Any) -> Any:
    """`ray.get`, re-raising what a worker raised (a RolloutError, say), not Ray's wrapper."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
            raise cause from exc
        raise


def _take(take: Any, done: Any) -> list[Rollout]:
    """The batch `take` brings, unless the shard's `run` fails first: then its error.

    A `run` that fails before it opens its stream (its arguments would not
    unpickle in the worker, say) never closes it, so waiting on `take`
    alone could wait forever.
    """
    import ray

    ready, _ = ray.wait([take, done], num_returns=1)
    if take not in ready:
        _get(done)  # raises what ended the shard; if it ended well, `take` answers at once
    batch: list[Rollout] = _get(take)
    return batch


def _split(limit: int | None, parts: int) -> int | None:
    return None if limit is None else max(1, math.ceil(limit / parts))


def _init_local_ray(options: Mapping[str, Any]) -> None:
    """Start a local Ray whose servers listen on 127.0.0.1 only.

    Ray turns a node address of 127.0.0.1 into the machine's network
    address, and its servers then listen on every interface, unless it
    believes it runs a single-machine cluster (what it assumes on macOS and
    Windows). Ray reads that from a module constant when it starts, so the
    constant is set for the duration of `ray.init` only.
    """
    import ray

    with ExitStack() as stack:
        if options.get("_node_ip_address", "127.0.0.1") == "127.0.0.1":
            try:
                from ray._private import ray_constants
            except ImportError:  # pragma: no cover - a Ray without the constant
                _log.warning("ray.bind_all_interfaces", reason="unknown Ray layout")
            else:
                from unittest import mock

                stack.enter_context(mock.patch.object(ray_constants, "ENABLE_RAY_CLUSTER", False))
        # "local": a Ray of our own, not one that `ray start` left running.
        ray.init(
            **{
                "address": "local",
                "include_dashboard": False,
                "_node_ip_address": "127.0.0.1",
                **options,
            }
        )


@dataclass(frozen=True, slots=True)
class RayBackend:
    """Runs rollouts on Ray actors, each a full async loop over its shard.

    Args:
        num_workers: Ray actors; the work items are dealt out round-robin.
        concurrency_per_worker: dialogues at once in each worker; None: the
            plan's `concurrency`.
        address: the cluster to join (`ray.init(address=...)`, `"auto"` for
            one `ray start` runs on this machine); None uses the Ray this
            process has initialised, or starts a local one of its own whose
            servers listen on 127.0.0.1 only (`init_options=
            {"_node_ip_address": IP}` says otherwise).
        num_cpus_per_worker: CPUs Ray reserves for each actor. None (the
            default) shares the cluster's CPUs between the workers, at most
            one each, so more workers than CPUs still all run at once (four
            workers on two cores get 0.5 each); a number that the cluster
            cannot give every worker is refused before any worker starts
            (`InputError`), instead of leaving workers waiting for a CPU.
        log_level: the workers' structlog level (events go to their stderr,
            which Ray forwards to the driver's).
        init_options: extra `ray.init` keywords when this backend starts Ray.
        max_worker_restarts: how many times a shard's worker may die (its
            process killed, its node lost) and be replaced by a new one that
            runs the shard's samples not yet received; one more death ends
            the run.

    The assistant and user model-call limits of the plan are split evenly
    over the workers (rounded up).
    """

    num_workers: int = 2
    concurrency_per_worker: int | None = None
    address: str | None = None
    num_cpus_per_worker: float | None = None
    log_level: Level = "warning"
    init_options: Mapping[str, Any] = field(default_factory=dict)
    max_worker_restarts: int = 3

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {self.num_workers!r}")
        if self.concurrency_per_worker is not None and self.concurrency_per_worker < 1:
            raise ValueError(
                f"concurrency_per_worker must be at least 1, got {self.concurrency_per_worker!r}"
            )
        if self.num_cpus_per_worker is not None and not self.num_cpus_per_worker > 0:
            raise ValueError(
                f"num_cpus_per_worker must be positive, got {self.num_cpus_per_worker!r}"
            )
        if self.max_worker_restarts < 0:
            raise ValueError(
                f"max_worker_restarts must be at least 0, got {self.max_worker_restarts!r}"
            )

    def cpus_per_worker(self, *, cluster_cpus: float, workers: int) -> float:
        """The CPUs each of `workers` actors reserves on a cluster of `cluster_cpus`.

        Raises:
            InputError: `num_cpus_per_worker` times the workers is more than
                the cluster has (the workers would wait for CPUs forever).
        """
        if self.num_cpus_per_worker is None:
            # Ray takes fractions to four decimals; rounding down keeps the
            # sum within the cluster.
            share = math.floor(cluster_cpus / workers * 10_000) / 10_000
            return max(min(1.0, share), 0.0001)
        need = self.num_cpus_per_worker * workers
        if need > cluster_cpus + 1e-9:
            raise InputError(
                f"{workers} Ray workers x {self.num_cpus_per_worker:g} CPU need {need:g} CPUs; "
                f"the cluster has {cluster_cpus:g}: use fewer workers or fewer CPUs per worker"
            )
        return self.num_cpus_per_worker

    def worker_plan(self, plan: RolloutPlan[S]) -> RolloutPlan[S]:
        """The plan each worker runs: its own dialogue limit, a share of the model limits."""
        return dataclasses.replace(
            plan,
            concurrency=self.concurrency_per_worker or plan.concurrency,
            assistant_concurrency=_split(plan.assistant_concurrency, self.num_workers),
            user_concurrency=_split(plan.user_concurrency, self.num_workers),
        )

    async def run(
        self,
        items: Sequence[tuple[S, int]],
        plan: RolloutPlan[S],
        send: MemoryObjectSendStream[Rollout],
    ) -> None:
        """Shard the items over Ray actors and send each rollout to `send` as it arrives.

        Raises:
            ImportError: Ray is not installed (`pip install 'convo-sim[ray]'`).
            InputError: `num_cpus_per_worker` asks for more CPUs than the
                cluster has.
            RolloutError: a factory raised for some sample, in some worker.
            RolloutError: a shard's worker died more than
                `max_worker_restarts` times (Ray's error is the `__cause__`).
            ray.exceptions.RayError: the cluster failed otherwise.
        """
        import ray

        if not items:
            return
        started_ray = False
        if not ray.is_initialized():
            # Blocking, but nothing else runs yet, and Ray installs its signal
            # handlers only when initialised from the main thread.
            if self.address is None:
                _init_local_ray(self.init_options)
            else:
                ray.init(address=self.address, **{"include_dashboard": False, **self.init_options})
            started_ray = True
        shards = [
            s for s in (list(items[i :: self.num_workers]) for i in range(self.num_workers)) if s
        ]
        resources: Any = ray.cluster_resources  # untyped in Ray
        try:
            cpus = self.cpus_per_worker(
                cluster_cpus=float(resources().get("CPU", 0.0)), workers=len(shards)
            )
        except InputError:
            if started_ray:
                ray.shutdown()
            raise
        _log.info("ray.sized", workers=len(shards), cpus_per_worker=cpus)
        worker_plan = self.worker_plan(plan)
        remote: Any = ray.remote(num_cpus=cpus)(_ShardWorker)
        # One thread per shard waits on Ray at a time; a limiter of their own
        # keeps many shards from queueing behind anyio's default of 40.
        threads = anyio.CapacityLimiter(len(shards))
        live: set[Any] = set()
        failures: list[Exception] = []

        async def wait(fn: Any, *refs: Any) -> Any:
            # A blocking wait in a thread keeps this backend independent of
            # the event loop; abandoned on cancel, it ends when the actor is
            # killed below.
            return await anyio.to_thread.run_sync(
                fn, *refs, abandon_on_cancel=True, limiter=threads
            )

        async def drain(worker: Any, pending: dict[RolloutKey, tuple[S, int]]) -> None:
            # A rollout counts as received once its `take` returns here; its
            # key leaves `pending`, so a worker that dies takes only the rest
            # with it.
            done = worker.run.remote(list(pending.values()), worker_plan)
            while batch := await wait(_take, worker.take.remote(_TAKE), done):
                for rollout in batch:
                    # A sample is sent once, even if it was somehow run twice.
                    if pending.pop(rollout.key, None) is not None:
                        await send.send(rollout)
            await wait(_get, done)  # the shard's own outcome: a RolloutError, or its death
            if pending:
                raise RuntimeError(f"a Ray worker ended without {len(pending)} of its samples")

        async def pump(number: int, shard: list[tuple[S, int]], cancel: anyio.CancelScope) -> None:
            pending: dict[RolloutKey, tuple[S, int]] = {(s.id, i): (s, i) for s, i in shard}
            deaths = 0
            try:
                while pending:
                    worker: Any = remote.remote(self.log_level, worker_plan.concurrency)
                    live.add(worker)
                    try:
                        await drain(worker, pending)
                    except ray.exceptions.RayActorError as exc:
                        if not pending:
                            break  # every sample is in: how the worker ended does not matter
                        deaths += 1
                        _log.warning(
                            "ray.worker_lost",
                            shard=number,
                            deaths=deaths,
                            pending=len(pending),
                            error=type(exc).__name__,
                        )
                        if deaths > self.max_worker_restarts:
                            # One line for the CLI (a ConvoSimError), naming
                            # a sample that is lost; Ray's error is the cause.
                            scenario, index = next(iter(pending.values()))
                            raise RolloutError(
                                scenario.id,
                                index,
                                f"its Ray worker died {deaths} times "
                                f"(max_worker_restarts={self.max_worker_restarts}; "
                                f"{len(pending)} samples of shard {number} not run)",
                            ) from exc
                    finally:
                        live.discard(worker)
                        ray.kill(worker)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                cancel.cancel()  # nobody reads any more
            except Exception as exc:  # cancellation is a BaseException and passes through
                failures.append(exc)
                cancel.cancel()

        try:
            _log.info("ray.started", workers=len(shards), items=len(items))
            async with anyio.create_task_group() as tg:
                for number, shard in enumerate(shards):
                    tg.start_soon(pump, number, shard, tg.cancel_scope)
        finally:
            # Synchronous on purpose: cleanup must finish even when cancelled,
            # and killing the actors also ends any abandoned waiting thread.
            for worker in live:
                ray.kill(worker)
            if started_ray:
                ray.shutdown()
        if failures:
            raise failures[0]
