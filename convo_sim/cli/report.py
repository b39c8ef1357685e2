"""`convo-sim report FILE`: the summary of a rollouts file, recomputed from its records.

The summary is domain-free (rewards, endings, turns, tokens); `--domain`
is checked like every command's and names the domain in the HTML report's
title.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from convo_sim._errors import InputError
from convo_sim._metrics import summarize
from convo_sim._sink import iter_rollouts
from convo_sim.cli.domain import add_domain_argument, domain_of
from convo_sim.cli.summary import format_summary

__all__ = ["add_parser", "run"]


def add_threshold(p: argparse.ArgumentParser) -> None:
    """The shared `--threshold` option of the summary commands."""
    p.add_argument(
        "--threshold",
        type=float,
        default=1.0,
        help="reward at or above which a sample passes, for pass@k and pass^k (default: 1.0)",
    )


def add_parser(sub: Any) -> None:
    """Register `report` on the `convo-sim` sub-command parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "report",
        help="summarise a rollouts file: mean reward, pass@k, pass^k, endings",
        description=(
            "Recompute the summary of a rollouts file: mean reward with its standard error, "
            "pass@k and pass^k for k up to the samples per scenario, termination reasons, "
            "turns and tokens."
        ),
    )
    p.add_argument("file", metavar="FILE", type=Path, help="a rollouts JSONL file")
    add_threshold(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--html",
        metavar="OUT",
        type=Path,
        default=None,
        help="also write a self-contained HTML report to OUT: charts, per-persona "
        "comparison, filterable transcripts with turn scores and verifier reasons",
    )
    add_domain_argument(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the summary of the file; returns the exit code.

    Raises:
        InputError: the file is missing or not a rollouts file, the domain is
            unknown, or the HTML report cannot be written (one line, exit 2).
    """
    domain = domain_of(args) if getattr(args, "domain", None) is not None else None
    # Read one record at a time, twice: the summary keeps counts and the
    # report small facts per rollout, so a file of any size fits in memory.
    summary = summarize(iter_rollouts(args.file), threshold=args.threshold)
    print(summary.model_dump_json(indent=2) if args.json else format_summary(summary))
    if args.html is not None:
        from convo_sim._report_pages import write_report

        try:
            title = "convo-sim report" + (f" ({domain.name})" if domain else "")
            # Each sample once, as counted; past 1,000 rollouts the transcripts are paged.
            write_report(
                iter_rollouts(args.file),
                args.html,
                title=title,
                source=str(args.file),
                threshold=args.threshold,
            )
        except OSError as exc:
            raise InputError(
                f"cannot write the report: {exc.strerror or exc}", path=args.html
            ) from None
        if not args.json:
            print(f"html report  {args.html}")
    return 0
