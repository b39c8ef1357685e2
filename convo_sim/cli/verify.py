"""`convo-sim verify FILE`: re-score saved rollouts with the current verifiers.

Each record's dialogue is rebuilt from the file and scored again by the
domain's verifiers (`--domain`, default the calendar: its turn verifiers
and NeMo-Gym's final rule), exactly as in a live run but without running
any actor. Useful after a verifier fix, or to check a file produced
elsewhere. The scenarios the records came from are needed (`--scenarios
FILE`, default: every set the domain bundles; `--script PATH` for the
records of `run --script`, whose verifier hooks and REWARD are used).
Every file the tool writes can be re-scored: `run` (with `--scenarios` or
`--script` as it was run), `experiment` (`--scenarios
DIR/scenarios.jsonl`) and `generate`'s scenarios.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from convo_sim._errors import InputError
from convo_sim._metrics import summarize
from convo_sim._records import Rollout
from convo_sim._rescore import rescore
from convo_sim._sink import RolloutSink, read_rollouts
from convo_sim._verification import RewardFn
from convo_sim.cli.domain import add_domain_argument, domain_of
from convo_sim.cli.report import add_threshold
from convo_sim.cli.summary import format_summary
from convo_sim.cli.wiring import load_scenario_set
from convo_sim.scenarios._script import VerifierHook

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register `verify` on the `convo-sim` sub-command parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "verify",
        help="re-score saved rollouts with the current verifiers",
        description=(
            "Re-run the turn and final verifiers over the dialogues saved in a rollouts file "
            "(no actor is run), print the new summary and optionally write the re-scored records."
        ),
    )
    p.add_argument("file", metavar="FILE", type=Path, help="a rollouts JSONL file")
    p.add_argument(
        "--scenarios",
        metavar="FILE",
        type=Path,
        default=None,
        help="the scenarios the rollouts came from (default: every set the domain bundles)",
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        type=Path,
        default=None,
        help="write the re-scored records here (may be FILE itself; replaced atomically)",
    )
    p.add_argument(
        "--script",
        metavar="PATH",
        type=Path,
        default=None,
        help="or the scenario script the rollouts came from (`run --script`): its scenarios, "
        "and its verifiers and REWARD when it defines them",
    )
    add_threshold(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_domain_argument(p)
    p.set_defaults(handler=run)


async def _rescore_all(
    verifiers: VerifierHook,
    reward: RewardFn | None,
    rollouts: Sequence[Rollout],
    scenarios: Mapping[str, Any],
    path: Path,
) -> list[Rollout]:
    out: list[Rollout] = []
    for rollout in rollouts:
        scenario = scenarios[rollout.scenario_id]
        turn_verifiers, final_verifiers = verifiers(scenario)
        try:
            out.append(
                await rescore(
                    rollout,
                    scenario,
                    turn_verifiers=turn_verifiers,
                    final_verifiers=final_verifiers,
                    reward=reward,
                )
            )
        except ValueError as exc:
            raise InputError(str(exc), path=path) from None
    return out


def _write(path: Path, rollouts: Sequence[Rollout]) -> None:
    # Written beside the target and renamed over it, so FILE itself can be
    # the output and an interrupted verify never leaves half a file.
    tmp = path.with_name(path.name + ".tmp")
    try:
        with RolloutSink(tmp, resume=False) as sink:
            for rollout in rollouts:
                sink.write(rollout)
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write the output: {exc.strerror or exc}", path=path) from None


def run(args: argparse.Namespace) -> int:
    """Re-score the file, print the summary, write the records if asked; returns the exit code.

    Raises:
        InputError: the rollouts or scenarios file is missing or malformed, a
            record's scenario is not among the scenarios, or the domain is
            unknown (one line, exit 2).
    """
    verifiers: VerifierHook
    reward: RewardFn | None = None
    if args.script is not None:
        if args.scenarios is not None:
            raise InputError("use either --scenarios or --script, not both")
        from convo_sim.scenarios import load_script

        script = load_script(args.script, domain=args.domain)
        if script.main is not None and not script.scenarios:
            raise InputError(
                "the script's main() runs its own dialogues and verifiers; "
                "there are no scenarios to re-score its records against",
                path=args.script,
            )
        verifiers, reward = script.verifiers or script.domain.verifiers, script.reward
        listed = list(script.scenarios)
    else:
        domain = domain_of(args)
        verifiers = domain.verifiers
        listed = load_scenario_set(domain, args.scenarios, every_set=True)
    rollouts = read_rollouts(args.file)
    scenarios = {s.id: s for s in listed}
    missing = sorted({r.scenario_id for r in rollouts} - scenarios.keys())
    if missing:
        raise InputError(
            f"{len(missing)} scenario id(s) are not among the scenarios (first: {missing[0]!r}); "
            "pass the scenarios the rollouts came from with --scenarios FILE (an experiment "
            "saves them as scenarios.jsonl beside its rollouts) or --script PATH",
            path=args.file,
        )
    rescored = anyio.run(_rescore_all, verifiers, reward, rollouts, scenarios, args.file)
    summary = summarize(rescored, threshold=args.threshold)
    if args.out is not None:
        _write(args.out, rescored)
    if args.json:
        print(summary.model_dump_json(indent=2))
        return 0
    changed = sum(old.reward != new.reward for old, new in zip(rollouts, rescored, strict=True))
    print(format_summary(summary))
    print(f"rescored     {len(rescored)} records, reward changed for {changed}")
    if args.out is not None:
        print(f"wrote        {len(rescored)} records to {args.out}")
    return 0
