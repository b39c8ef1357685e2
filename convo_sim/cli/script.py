"""`convo-sim run --script PATH`: run a Python scenario script from the command line.

Not a sub-command of its own: `convo-sim run` hands over to
`run_script_command` when `--script` is given. The records are `Rollout`
lines (readable by `convo-sim report`); the summary is the one `run` prints.
"""

from __future__ import annotations

import argparse
import dataclasses

import anyio

from convo_sim._errors import InputError
from convo_sim._metrics import summarize
from convo_sim._sink import RolloutSink

__all__ = ["run_script_command"]


def run_script_command(args: argparse.Namespace) -> int:
    """Load `args.script`, run it, write `args.out`, print a summary; return the exit code.

    Raises:
        ScenarioError: the script cannot be loaded (the CLI prints one line).
        InputError: `--script` is combined with `--scenarios`, or the output
            cannot be written.
    """
    # Imported here: loading the calendar domain is only needed for scripts.
    from convo_sim.cli.summary import format_summary
    from convo_sim.scenarios._script import load_script, run_script

    if getattr(args, "scenarios", None) is not None:
        raise InputError("use either --script or --scenarios, not both")
    script = load_script(args.script, domain=getattr(args, "domain", None))
    if args.max_turns is not None:
        # As in `convo-sim run --scenarios`: the flag overrides every scenario's own limit.
        script = dataclasses.replace(
            script,
            scenarios=tuple(
                s.model_copy(update={"max_turns": args.max_turns}) for s in script.scenarios
            ),
        )
    seed = args.seed if args.seed is not None else 0
    rollouts = anyio.run(
        lambda: run_script(
            script, seed=seed, max_turns=args.max_turns, concurrency=args.concurrency
        )
    )
    try:
        with RolloutSink(args.out, resume=False) as sink:
            for rollout in rollouts:
                sink.write(rollout)
    except OSError as exc:
        raise InputError(f"cannot write the output: {exc.strerror or exc}", path=args.out) from None
    if script.main is not None:
        for rollout in rollouts:
            print(f"--- {rollout.scenario_id}")
            for message in rollout.transcript:
                if message.role in ("user", "assistant"):
                    print(f"{message.role:>9}: {message.text}")
    print(format_summary(summarize(rollouts)))
    print(f"wrote        {len(rollouts)} records to {args.out}")
    return 0
