"""`convo-sim run`: run a domain's scenarios offline and write one rollout record per dialogue.

With no arguments it runs the calendar domain's default bundled scenarios
with its two rule-based actors (`CalendarSolverAssistant` and
`CalendarUser`, or `PersonaCalendarUser` for a scenario that names a
persona), writes `rollouts.jsonl` and prints a summary; `--domain NAME`
runs another installed domain's. `--samples K` runs K dialogues per
scenario (pass@k, pass^k); at most `--concurrency` run at once, in this
process or on Ray (`--backend ray`).

The run goes through the rollout engine (`convo_sim._rollouts`,
`convo_sim._sink`, wired in `convo_sim.cli.wiring`): records are flushed one
complete line at a time, and running the same command again after a crash
or Ctrl-C finishes what is missing (`--no-resume` starts over).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def add_parser(sub: Any) -> None:
    """Register `run` on the `convo-sim` sub-command parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run dialogues offline and write rollouts",
        description=(
            "Run a domain's scenarios (default: the calendar's) with its rule-based assistant "
            "and simulated user (offline, deterministic), write one JSON record per dialogue "
            "and print a summary."
        ),
    )
    p.add_argument(
        "--scenarios",
        metavar="FILE",
        type=Path,
        default=None,
        help="scenario file in a format of the domain; for the calendar: native JSONL/YAML, "
        "NeMo-Gym rows or seed records (default: the domain's bundled examples)",
    )
    p.add_argument(
        "--generate",
        metavar="N",
        type=_positive,
        default=None,
        help="run N scenarios from the domain's seeded generator (seeded by --seed) "
        "instead of a file or the bundled examples",
    )
    p.add_argument(
        "--script",
        metavar="PATH",
        type=Path,
        default=None,
        help="a Python scenario script defining SCENARIOS, scenarios(), DIALOGUE or main() "
        "(see docs/scripts.md); records are written as rollouts",
    )
    p.add_argument(
        "--max-turns",
        type=_positive,
        default=None,
        help="turn limit per dialogue (default: each scenario's, else the domain's: 20)",
    )
    p.add_argument(
        "--max-steps",
        type=_positive,
        default=None,
        help="most assistant messages per dialogue, tool steps included (default: no limit)",
    )
    p.add_argument(
        "--max-turn-steps",
        type=_positive,
        default=None,
        help="most assistant messages within one turn of a dialogue with tools (default: 16)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="run seed: each sample's user wording is seeded from it, the scenario's id, "
        "own seed and the sample index (default: 0)",
    )
    p.add_argument(
        "--samples",
        metavar="K",
        type=_positive,
        default=1,
        help="dialogues per scenario; the summary shows pass@k and pass^k for k=1..K (default: 1)",
    )
    p.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="run in this process, or spread over Ray workers (needs convo-sim[ray])",
    )
    p.add_argument(
        "--workers",
        type=_positive,
        default=2,
        help="Ray workers with --backend ray, each running --concurrency dialogues (default: 2)",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        default=None,
        help="with --backend ray: the cluster to join (ray://HOST:10001, HOST:6379, or 'auto' "
        "for one `ray start` runs here; default: start a local Ray of this run's own)",
    )
    p.add_argument(
        "--cpus-per-worker",
        metavar="N",
        type=_positive_float,
        default=None,
        help="with --backend ray: CPUs each worker reserves (default: the cluster's CPUs "
        "shared between the workers, at most 1 each); more than the cluster has is refused",
    )
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="start the output file over instead of finishing the samples it lacks",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress line on standard error",
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        type=Path,
        default=Path("rollouts.jsonl"),
        help="where to write the records, one JSON object per line (default: rollouts.jsonl)",
    )
    p.add_argument(
        "--concurrency",
        type=_positive,
        default=32,
        help="dialogues run at once (default: 32)",
    )
    from convo_sim.cli.actors_spec import add_actor_arguments
    from convo_sim.cli.domain import add_domain_argument

    add_domain_argument(p)
    add_actor_arguments(p)  # --assistant, --user, their endpoints and keys, --capture-tokens
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the `run` command; returns the exit code.

    Raises:
        ScenarioError: the scenario file is malformed (the CLI prints one line).
        InputError: the output file cannot be written, or holds rollouts of
            another seed, or Ray is missing for `--backend ray`.
        RolloutError: building an actor or verifier failed for some sample.
    """
    from convo_sim.cli.domain import domain_of
    from convo_sim.cli.wiring import load_scenario_set, run_rollouts_command

    if args.script is not None:  # the script may name its own DOMAIN
        from convo_sim.cli.script import run_script_command

        return run_script_command(args)
    domain = domain_of(args)  # an unknown --domain is one line, exit 2
    if getattr(args, "generate", None) is not None:
        return run_rollouts_command(args, domain, domain.generate(args.generate, seed=args.seed))
    return run_rollouts_command(args, domain, load_scenario_set(domain, args.scenarios))
