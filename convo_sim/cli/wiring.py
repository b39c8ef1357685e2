"""The CLI's wiring of the rollout engine to a domain (`--domain`, default `calendar`).

The core never imports a domain; the CLI takes one by name from the
registry. A domain's factories are top-level functions, so `RayBackend`
ships them to workers by reference. `run_rollouts_command` is what
`convo-sim run` does with them.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from convo_sim._errors import InputError
from convo_sim._metrics import summarize
from convo_sim._pool import format_replicas
from convo_sim._progress import Progress
from convo_sim._sink import iter_rollouts, write_rollouts
from convo_sim.backends import RayBackend
from convo_sim.cli.summary import format_summary

if TYPE_CHECKING:
    from convo_sim.domains import Domain

__all__ = ["load_scenario_set", "ray_backend", "run_rollouts_command"]


def load_scenario_set(
    domain: Domain[Any], path: Path | None, *, every_set: bool = False
) -> list[Any]:
    """The domain's scenarios in `path`; when it is None, its default bundled sets
    (every bundled set with `every_set`).

    Raises:
        ScenarioError: the file is missing or malformed.
    """
    if path is not None:
        return domain.load(path)
    return domain.scenarios(list(domain.bundled) if every_set else None)


def ray_backend(args: argparse.Namespace) -> RayBackend | None:
    """The backend `--backend`, `--workers`, `--ray-address` and `--cpus-per-worker` ask for.

    Raises:
        InputError: `--backend ray` without Ray installed, or a Ray option
            without `--backend ray`.
    """
    address = getattr(args, "ray_address", None)
    cpus = getattr(args, "cpus_per_worker", None)
    if args.backend != "ray":
        if address is not None or cpus is not None:
            raise InputError("--ray-address and --cpus-per-worker need --backend ray")
        return None
    if importlib.util.find_spec("ray") is None:
        raise InputError("--backend ray needs Ray: pip install 'convo-sim[ray]'")
    return RayBackend(
        num_workers=args.workers,
        address=address,
        num_cpus_per_worker=cpus,
        log_level=getattr(args, "log_level", "warning"),
    )


def run_rollouts_command(
    args: argparse.Namespace, domain: Domain[Any], scenarios: Sequence[Any]
) -> int:
    """`convo-sim run` on the rollout engine: resumable file, progress, summary.

    Reads `args.out`, `samples`, `seed`, `max_turns`, `concurrency`,
    `backend`, `workers`, `no_resume`, `no_progress`, `log_level`.

    Raises:
        InputError: the output cannot be written or is not a rollouts file of
            this run's seed, or Ray is missing for `--backend ray`.
        RolloutError: a factory failed for some sample.
    """
    out: Path = args.out
    if args.max_turns is not None:
        # The flag overrides every scenario's own limit.
        scenarios = [s.model_copy(update={"max_turns": args.max_turns}) for s in scenarios]
    from convo_sim.cli.actors_spec import wire_actors

    actors = wire_actors(args, builtin_assistant=domain.assistant, builtin_user=domain.user)
    steps: dict[str, int] = {
        name: value
        for name in ("max_steps", "max_turn_steps")
        if (value := getattr(args, name, None)) is not None
    }
    plan = domain.plan(
        assistant=actors.assistant,
        user=actors.user,
        concurrency=args.concurrency,
        seed=args.seed,
        **steps,
    )
    backend = ray_backend(args)

    def replicas() -> str:
        stats = actors.replica_stats()
        return f"replicas {format_replicas(stats)}" if stats else ""

    progress = None if args.no_progress else Progress(status=replicas)
    try:
        stats = anyio.run(
            functools.partial(
                actors.closing(write_rollouts),  # closes the openai: actors' connection pools
                out,
                scenarios,
                plan,
                samples_per_scenario=args.samples,
                resume=not args.no_resume,
                backend=backend,
                progress=progress,
            )
        )
    except OSError as exc:
        raise InputError(f"cannot write the output: {exc.strerror or exc}", path=out) from None
    # The file is read one record at a time and the summary keeps counts,
    # not records: memory stays flat however many rollouts the run wrote.
    ids = {s.id for s in scenarios}
    records = (
        r for r in iter_rollouts(out) if r.scenario_id in ids and r.sample_index < args.samples
    )
    print(format_summary(summarize(records)))
    replica_stats = actors.replica_stats()
    if replica_stats:
        print(f"replicas     {format_replicas(replica_stats)} (requests answered)")
    resumed = f" ({stats.resumed} already there)" if stats.resumed else ""
    print(f"wrote        {stats.written} records to {out}{resumed}")
    return 0
