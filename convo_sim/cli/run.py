"""`convo-sim run`: run calendar scenarios offline and write one rollout record per dialogue.

With no arguments it runs the bundled native calendar scenarios with the two
rule-based actors (`CalendarSolverAssistant` and `CalendarUser`), writes
`rollouts.jsonl` and prints a summary. Dialogues run concurrently in one
task group, at most `--concurrency` at a time.

The record shape lives in `rollout_record` and the writing in
`JsonlWriter`, so that a fuller rollout engine can replace either.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio

from convo_sim.errors import InputError
from convo_sim.results import DialogueResult

__all__ = ["JsonlWriter", "RunSummary", "add_parser", "rollout_record", "run", "run_all"]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_parser(sub: Any) -> None:
    """Register `run` on the `convo-sim` sub-command parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run calendar dialogues offline and write rollouts",
        description=(
            "Run calendar scenarios with the rule-based solver assistant and simulated user "
            "(offline, deterministic), write one JSON record per dialogue and print a summary."
        ),
    )
    p.add_argument(
        "--scenarios",
        metavar="FILE",
        type=Path,
        default=None,
        help="scenario file: native JSONL/YAML, NeMo-Gym rows or seed records "
        "(default: the bundled calendar examples)",
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
        help="turn limit per dialogue (default: each scenario's, else 20)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the simulated users' wording (default: each scenario's own)",
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
    p.set_defaults(handler=run)


def rollout_record(scenario_id: str, seed: int, result: DialogueResult) -> dict[str, Any]:
    """One dialogue as a JSON-ready record (the rollout line format)."""
    return {
        "scenario_id": scenario_id,
        "seed": seed,
        "dialogue_id": result.dialogue_id,
        "termination": result.termination.value,
        "terminated_by": result.terminated_by,
        "turns": result.turns,
        "reward": result.reward,
        "turn_scores": [s.model_dump(mode="json") for s in result.turn_scores],
        "verdicts": [v.model_dump(mode="json") for v in result.verdicts],
        "responses_create_params": {"input": result.transcript.to_responses_input()},
        "error": None if result.error is None else result.error.model_dump(mode="json"),
        "duration_s": round(result.duration_s, 6),
    }


class JsonlWriter:
    """Writes records as JSON lines, flushed one by one so a crash loses at most one."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        """Write one record and flush it."""
        self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.stream.flush()
        self.count += 1


@dataclass(slots=True)
class RunSummary:
    """What `convo-sim run` prints at the end."""

    dialogues: int = 0
    rewards: list[float] = field(default_factory=list)
    terminations: Counter[str] = field(default_factory=Counter)
    turns: int = 0
    errors: int = 0

    def add(self, result: DialogueResult) -> None:
        """Count one finished dialogue."""
        self.dialogues += 1
        if result.reward is not None:
            self.rewards.append(result.reward)
        self.terminations[result.termination.value] += 1
        self.turns += result.turns
        self.errors += result.error is not None

    def lines(self) -> list[str]:
        """The summary as aligned lines of text."""
        if self.rewards:
            mean = sum(self.rewards) / len(self.rewards)
            reward = f"{mean:.3f} ({len(self.rewards)} scored)"
        else:
            reward = "n/a (nothing scored)"
        endings = ", ".join(f"{k} {v}" for k, v in self.terminations.most_common()) or "none"
        turns = f"{self.turns / self.dialogues:.2f}" if self.dialogues else "n/a"
        out = [
            f"dialogues    {self.dialogues}",
            f"mean reward  {reward}",
            f"termination  {endings}",
            f"mean turns   {turns}",
        ]
        if self.errors:
            out.append(f"errors       {self.errors}")
        return out


async def run_all(
    scenarios: Sequence[Any],
    writer: JsonlWriter,
    *,
    max_turns: int | None = None,
    seed: int | None = None,
    concurrency: int = 32,
) -> RunSummary:
    """Run every scenario with the default actors and verifiers; write each record as it ends.

    Raises:
        ValueError: a limit is out of range.
    """
    # Imported here: the CLI module must stay importable (for --help) even
    # if a domain module is broken.
    from convo_sim.scenarios.run import run_scenario

    summary = RunSummary()
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(scenario: Any) -> None:
        async with limiter:
            result = await run_scenario(scenario, max_turns=max_turns, seed=seed)
        writer.write(rollout_record(scenario.id, scenario.seed if seed is None else seed, result))
        summary.add(result)

    async with anyio.create_task_group() as tg:
        for scenario in scenarios:
            tg.start_soon(one, scenario)
    return summary


def run(args: argparse.Namespace) -> int:
    """Run the `run` command; returns the exit code.

    Raises:
        ScenarioError: the scenario file is malformed (the CLI prints one line).
        InputError: the output file cannot be written.
    """
    if args.script is not None:
        from convo_sim.cli.script import run_script_command

        return run_script_command(args)
    from convo_sim.scenarios import bundled_scenarios, load_scenarios

    scenarios = load_scenarios(args.scenarios) if args.scenarios else bundled_scenarios()
    out: Path = args.out
    try:
        stream = out.open("w", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write the output: {exc.strerror or exc}", path=out) from None
    with stream:
        writer = JsonlWriter(stream)
        summary = anyio.run(
            lambda: run_all(
                scenarios,
                writer,
                max_turns=args.max_turns,
                seed=args.seed,
                concurrency=args.concurrency,
            )
        )
    for line in summary.lines():
        print(line)
    print(f"wrote        {writer.count} records to {out}")
    return 0
