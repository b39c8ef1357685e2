"""The CLI's wiring of the rollout engine to the calendar domain.

The core never imports the family packages; the CLI does, here. Every
factory is a top-level function, so `RayBackend` can ship it to workers by
reference (workers import this module). `run_rollouts_command` is what
`convo-sim run` does with them.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import anyio

from convo_sim._actors import Actor
from convo_sim._errors import InputError
from convo_sim._metrics import summarize
from convo_sim._pool import format_replicas
from convo_sim._progress import Progress
from convo_sim._rollouts import RolloutPlan
from convo_sim._sink import iter_rollouts, write_rollouts
from convo_sim._verification import FinalVerifier, TurnVerifier
from convo_sim.backends import RayBackend
from convo_sim.cli.summary import format_summary
from convo_sim.scenarios import Scenario

__all__ = [
    "calendar_assistant",
    "calendar_user",
    "calendar_verifier_set",
    "load_scenario_set",
    "run_rollouts_command",
]


def calendar_assistant(scenario: Scenario, seed: int) -> Actor:
    """The rule-based calendar assistant (a constraint solver; it needs no seed)."""
    from convo_sim.agents.calendar import CalendarSolverAssistant

    return CalendarSolverAssistant()


def calendar_user(scenario: Scenario, seed: int) -> Actor:
    """The scenario's default user, its wording seeded per sample.

    The scenario's own seed is mixed in, so changing it in a scenario file
    still changes the wording, as the scenario format promises.
    """
    from convo_sim.scenarios.run import default_user

    return default_user(scenario, seed=seed ^ scenario.seed)


def calendar_verifier_set(
    scenario: Scenario,
) -> tuple[Sequence[TurnVerifier], Sequence[FinalVerifier]]:
    """The calendar turn verifiers and NeMo-Gym's final rule, for one scenario."""
    from convo_sim.verifiers import calendar_verifiers

    return calendar_verifiers(scenario)


def load_scenario_set(path: Path | None) -> list[Scenario]:
    """The scenarios in `path`, or every bundled set when it is None.

    Raises:
        ScenarioError: the file is missing or malformed.
    """
    from convo_sim.scenarios import bundled_scenarios, load_scenarios

    if path is not None:
        return load_scenarios(path)
    return [*bundled_scenarios("calendar_examples"), *bundled_scenarios("nemo_calendar_example")]


def run_rollouts_command(args: argparse.Namespace, scenarios: Sequence[Scenario]) -> int:
    """`convo-sim run` on the rollout engine: resumable file, progress, summary.

    Reads `args.out`, `samples`, `seed`, `max_turns`, `concurrency`,
    `backend`, `workers`, `no_resume`, `no_progress`, `log_level`.

    Raises:
        InputError: the output cannot be written or is not a rollouts file of
            this run's seed, or Ray is missing for `--backend ray`.
        RolloutError: a factory failed for some sample.
    """
    from convo_sim.scenarios.run import DEFAULT_MAX_TURNS

    out: Path = args.out
    if args.max_turns is not None:
        # The flag overrides every scenario's own limit.
        scenarios = [s.model_copy(update={"max_turns": args.max_turns}) for s in scenarios]
    from convo_sim.cli.actors_spec import wire_actors

    actors = wire_actors(args, builtin_assistant=calendar_assistant, builtin_user=calendar_user)
    plan = RolloutPlan(
        assistant=actors.assistant,
        user=actors.user,
        verifiers=calendar_verifier_set,
        concurrency=args.concurrency,
        seed=args.seed,
        max_turns=DEFAULT_MAX_TURNS,
    )
    backend: RayBackend | None = None
    if args.backend == "ray":
        if importlib.util.find_spec("ray") is None:
            raise InputError("--backend ray needs Ray: pip install 'convo-sim[ray]'")
        backend = RayBackend(
            num_workers=args.workers, log_level=getattr(args, "log_level", "warning")
        )

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
