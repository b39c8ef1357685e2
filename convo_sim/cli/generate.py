"""`convo-sim generate N`: write N generated scenarios of a domain to a file.

The file holds one saved `Scenario` per line, which `convo-sim run
--scenarios FILE`, `experiment --scenarios FILE` and `verify --scenarios
FILE` read back as they are. The same `--seed` gives the same scenarios.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register `generate` on the `convo-sim` sub-command parser."""
    from convo_sim.cli.domain import add_domain_argument
    from convo_sim.cli.run import _positive

    p: argparse.ArgumentParser = sub.add_parser(
        "generate",
        help="write generated scenarios to a file",
        description=(
            "Generate N scenarios of a domain (the calendar's are proven solvable) and write "
            "them, one JSON object per line, to a file that --scenarios reads back."
        ),
    )
    p.add_argument("count", metavar="N", type=_positive, help="how many scenarios")
    p.add_argument(
        "--seed", type=int, default=0, help="generator seed: the same seed, the same scenarios"
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        type=Path,
        default=Path("scenarios.jsonl"),
        help="where to write them (default: scenarios.jsonl; replaced if it exists)",
    )
    add_domain_argument(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Generate and write the scenarios; returns the exit code.

    Raises:
        InputError: the domain is unknown or the file cannot be written.
    """
    from convo_sim.cli.domain import domain_of
    from convo_sim.scenarios import save_scenarios

    domain = domain_of(args)
    written = save_scenarios(args.out, domain.generate(args.count, seed=args.seed))
    print(f"wrote        {written} {domain.name} scenarios to {args.out}")
    return 0
