"""`convo-sim export`: a rollouts file as one RL trainer's training rows.

::

    convo-sim export rollouts.jsonl --format trl --out trl.jsonl

Formats: `nemo-rl`, `trl`, `verl`, `skyrl` (token ids, masks and logprobs
from a run with `--capture-tokens`) and `messages` (chat messages and the
reward, any run). A contiguous rollout becomes one whole-dialogue row, any
other one row per policy turn (`--per-turn` splits them all). Rollouts
whose dialogue failed are left out unless `--include-errors`. The field
names and their sources are in docs/training-data.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register `export` on the `convo-sim` sub-command parser."""
    from convo_sim._export import EXPORT_FORMATS

    p: argparse.ArgumentParser = sub.add_parser(
        "export",
        help="write a rollouts file as an RL trainer's training rows",
        description=(
            "Write the rollouts of FILE as training rows for NeMo-RL, TRL, verl or SkyRL "
            "(token ids, loss masks, logprobs, reward), or as chat messages."
        ),
    )
    p.add_argument("file", metavar="FILE", type=Path, help="a rollouts file (convo-sim run --out)")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="the trainer's format")
    p.add_argument("--out", metavar="OUT", type=Path, required=True, help="where to write (JSONL)")
    p.add_argument(
        "--per-turn",
        action="store_true",
        help="one row per policy turn, even for a contiguous rollout",
    )
    p.add_argument(
        "--include-errors",
        action="store_true",
        help="also export rollouts whose dialogue failed (reward 0)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the `export` command; returns the exit code.

    Raises:
        InputError: the file is missing or malformed, or OUT cannot be written.
    """
    from convo_sim._export import write_export

    stats = write_export(
        args.file,
        args.out,
        args.format,
        per_turn=args.per_turn,
        include_errors=args.include_errors,
    )
    split = f" ({stats.split} of them one row per policy turn)" if stats.split else ""
    print(
        f"wrote {stats.rows} {args.format} rows to {args.out} from {stats.rollouts} rollouts{split}"
    )
    left = []
    if stats.no_tokens:
        left.append(f"{stats.no_tokens} without token data (run with --capture-tokens)")
    if stats.errors:
        left.append(f"{stats.errors} failed dialogues (--include-errors keeps them)")
    if left:
        print(f"left out {', '.join(left)}")
    return 0
