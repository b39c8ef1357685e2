"""`convo-sim experiment`: a user-modeling grid (personas x assistants x seeds).

Every base scenario is run once per persona and assistant, each with
`--seeds` samples (each sample has its own seed, so a persona's random
behaviour, its wording and its noise differ between samples, and pass^k is
defined for k up to `--seeds`). Each rollout records its cell in
`metadata` (`persona`, `assistant`, `base_scenario`) and the user-fidelity
metrics in `metadata["fidelity"]`. The run writes, into `--out-dir`:

* `rollouts.jsonl`: the records (resumable: the same command continues);
* `results.csv` and `results.json`: one row per (persona, assistant) cell
  with mean reward, pass rate, pass^k, turns and the fidelity metrics, each
  with a 95% interval (Wilson score for rates, percentile bootstrap with a
  fixed seed for means);
* `report.html`: the HTML report (unless `--no-html`).

Assistants are given by spec: `builtin` is the domain's rule-based
assistant (the calendar's exact solver); `openai:MODEL` is an LLM assistant
on an OpenAI-compatible server (`--base-url` or `OPENAI_BASE_URL`). The
user is the domain's rule-based user playing each persona, so the default
grid runs offline in seconds. `--domain NAME` runs another domain's grid.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from convo_sim._actors import Actor
from convo_sim._errors import InputError
from convo_sim._experiments import CellStats, cell_stats, write_table_csv, write_table_json
from convo_sim._logging import get_logger
from convo_sim._models import ChatModel
from convo_sim._records import Rollout
from convo_sim._report_html import write_html
from convo_sim._rollouts import open_rollouts, sample_seed
from convo_sim._sink import RolloutSink
from convo_sim.agents import LLMAssistant
from convo_sim.cli.domain import add_domain_argument, domain_of
from convo_sim.domains import Domain
from convo_sim.domains._registry import resolve
from convo_sim.scenarios import Scenario
from convo_sim.users import get_persona

__all__ = ["ExperimentOutput", "add_parser", "build_grid", "run", "run_experiment"]

_log = get_logger("convo_sim.experiment")


@dataclass(frozen=True, slots=True)
class ExperimentOutput:
    """What an experiment wrote.

    Attributes:
        rollouts: the records of this grid (resumed ones included).
        cells: one row per (persona, assistant).
        paths: output name (`rollouts`, `csv`, `json`, `html`) -> file.
    """

    rollouts: list[Rollout]
    cells: list[CellStats]
    paths: dict[str, Path]


def build_grid(
    scenarios: Sequence[Scenario], personas: Sequence[str], assistants: Sequence[str]
) -> list[Scenario]:
    """One scenario per (base scenario, persona, assistant), cell recorded in metadata.

    Raises:
        UnknownPersonaError: a persona name is not bundled.
        InputError: a base scenario has no goal for the rule-based user.
    """
    for name in personas:
        get_persona(name)
    grid: list[Scenario] = []
    for base in scenarios:
        if base.goal is None:
            raise InputError(f"scenario {base.id!r} has no goal; the persona user needs one")
        for persona in personas:
            for assistant in assistants:
                grid.append(
                    base.model_copy(
                        update={
                            "id": f"{base.id}/{persona}/{assistant}",
                            "persona": persona,
                            "metadata": {
                                **base.metadata,
                                "base_scenario": base.id,
                                "persona": persona,
                                "assistant": assistant,
                            },
                        }
                    )
                )
    return grid


def _assistant(
    domain: Domain[Any], models: Mapping[str, ChatModel], scenario: Scenario, seed: int
) -> Actor:
    spec = str(scenario.metadata["assistant"])
    if spec in ("builtin", "solver"):
        return domain.assistant(scenario, seed)
    return LLMAssistant(models[spec])


def _check_spec(spec: str) -> None:
    if spec in ("builtin", "solver"):
        return
    kind, _, model = spec.partition(":")
    if kind != "openai" or not model:
        raise InputError(f"unknown assistant spec {spec!r}; expected 'builtin' or 'openai:MODEL'")


async def run_experiment(
    scenarios: Sequence[Scenario],
    *,
    personas: Sequence[str],
    assistants: Sequence[str] = ("builtin",),
    seeds: int = 3,
    seed: int = 0,
    out_dir: str | Path,
    domain: str | Domain[Any] = "calendar",
    max_turns: int = 20,
    concurrency: int = 32,
    base_url: str | None = None,
    resume: bool = True,
    html: bool = True,
) -> ExperimentOutput:
    """Run the grid, write rollouts, tables and (optionally) the HTML report.

    Raises:
        InputError: an unknown persona or assistant spec, a scenario without a
            goal, or an output file written with another seed.
        RolloutError: an actor could not be built for some sample.
    """
    for flag, value in (
        ("--seeds", seeds),
        ("--max-turns", max_turns),
        ("--concurrency", concurrency),
    ):
        if value < 1:
            raise InputError(f"{flag} must be at least 1, got {value!r}")
    for spec in assistants:
        _check_spec(spec)
    chosen = resolve(domain)
    grid = build_grid(scenarios, personas, assistants)
    by_id = {s.id: s for s in grid}
    out = Path(out_dir)
    paths = {"rollouts": out / "rollouts.jsonl"}
    models: dict[str, Any] = {}
    for spec in assistants:
        if spec.startswith("openai:"):
            from convo_sim._openai_model import OpenAIChatModel

            models[spec] = OpenAIChatModel(spec.partition(":")[2], base_url=base_url)
    try:
        with RolloutSink(paths["rollouts"], resume=resume) as sink:
            for (scenario_id, index), recorded in sink.done.items():
                if scenario_id in by_id and recorded != sample_seed(seed, scenario_id, index):
                    raise InputError(
                        "holds rollouts made with another seed; use the same --seed, "
                        "another --out-dir, or --no-resume",
                        path=paths["rollouts"],
                    )
            skip = frozenset(sink.done)
            _log.info("experiment.started", cells=len(grid), seeds=seeds, skipped=len(skip))
            plan = chosen.plan(
                assistant=functools.partial(_assistant, chosen, models),
                seed=seed,
                max_turns=max_turns,
                concurrency=concurrency,
            )
            async with open_rollouts(grid, plan, samples_per_scenario=seeds, skip=skip) as rollouts:
                async for rollout in rollouts:
                    sink.write(chosen.with_fidelity(rollout, by_id[rollout.scenario_id]))
    finally:
        for model in models.values():
            await model.aclose()
    from convo_sim._sink import read_rollouts

    records = [r for r in read_rollouts(paths["rollouts"]) if r.scenario_id in by_id]
    records.sort(key=lambda r: (r.scenario_id, r.sample_index))
    cells = cell_stats(records, by=("persona", "assistant"))
    meta = {
        "domain": chosen.name,
        "personas": list(personas),
        "assistants": list(assistants),
        "seeds": seeds,
        "seed": seed,
        "scenarios": [s.id for s in scenarios],
        "max_turns": max_turns,
    }
    paths["csv"] = write_table_csv(cells, out / "results.csv")
    paths["json"] = write_table_json(cells, out / "results.json", meta=meta)
    if html:
        paths["html"] = write_html(
            records,
            out / "report.html",
            title="convo-sim experiment",
            source=str(paths["rollouts"]),
        )
    _log.info("experiment.finished", rollouts=len(records), cells=len(cells))
    return ExperimentOutput(rollouts=records, cells=cells, paths=paths)


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "experiment",
        help="run a user-modeling grid (personas x assistants x seeds) and tabulate it",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument(
        "--personas",
        default="cooperative,terse,impatient",
        help="comma-separated persona names (default: cooperative,terse,impatient)",
    )
    p.add_argument(
        "--assistants",
        default="builtin",
        help="comma-separated assistant specs: builtin, openai:MODEL (default: builtin)",
    )
    p.add_argument("--seeds", type=int, default=3, help="samples per scenario and cell (default 3)")
    p.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    p.add_argument(
        "--scenarios",
        type=int,
        default=4,
        help="generated scenarios of the domain, when no --scenario-file (default 4)",
    )
    p.add_argument("--scenario-file", type=Path, help="scenarios to use instead (JSONL/JSON/YAML)")
    p.add_argument(
        "--script", type=Path, help="or the scenarios of a Python scenario script (docs/scripts.md)"
    )
    p.add_argument("--out-dir", type=Path, default=Path("results"), help="output folder")
    p.add_argument("--max-turns", type=int, default=20, help="turn limit per dialogue")
    p.add_argument("--concurrency", type=int, default=32, help="dialogues at once")
    p.add_argument("--base-url", help="OpenAI-compatible server for openai:MODEL assistants")
    p.add_argument("--no-resume", action="store_true", help="start rollouts.jsonl over")
    p.add_argument("--no-html", action="store_true", help="do not write report.html")
    add_domain_argument(p)
    p.set_defaults(handler=run)


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _fmt(value: float | None, interval: tuple[float, float] | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" + (f" [{interval[0]:.2f},{interval[1]:.2f}]" if interval else "")


def run(args: argparse.Namespace) -> int:
    """Run the experiment the arguments describe; print the table."""
    personas, assistants = _names(args.personas), _names(args.assistants)
    if not personas or not assistants:
        raise InputError("--personas and --assistants need at least one name each")
    if args.scenario_file is not None and args.script is not None:
        raise InputError("use either --scenario-file or --script, not both")
    if args.script is not None:
        from convo_sim.scenarios._script import load_script

        script = load_script(args.script, domain=args.domain)
        domain, scenarios = script.domain, list(script.scenarios)
    else:
        domain = domain_of(args)
        if args.scenario_file is not None:
            scenarios = domain.load(args.scenario_file)
        else:
            if args.scenarios < 1:
                raise InputError(f"--scenarios must be at least 1, got {args.scenarios!r}")
            scenarios = domain.generate(args.scenarios, seed=args.seed)
    result = anyio.run(
        functools.partial(
            run_experiment,
            scenarios,
            domain=domain,
            personas=personas,
            assistants=assistants,
            seeds=args.seeds,
            seed=args.seed,
            out_dir=args.out_dir,
            max_turns=args.max_turns,
            concurrency=args.concurrency,
            base_url=args.base_url,
            resume=not args.no_resume,
            html=not args.no_html,
        )
    )
    k = args.seeds
    header = (
        f"{'persona':<12} {'assistant':<10} {'n':>3}  {'reward [95% CI]':<18} pass^{k:<3} "
        f"{'coverage':<18} {'premature':<18} stop_ok"
    )
    print(header)
    for c in result.cells:
        print(
            f"{c.group['persona']:<12} {c.group['assistant']:<10} {c.rollouts:>3}  "
            f"{_fmt(c.mean_reward, c.reward_ci):<18} {_fmt(c.pass_hat_k.get(k), None):<8} "
            f"{_fmt(c.goal_coverage, c.coverage_ci):<18} "
            f"{_fmt(c.premature_stop_rate, c.premature_stop_ci):<18} "
            f"{_fmt(c.stop_ok_rate, None)}"
        )
    for name, path in result.paths.items():
        print(f"{name}: {path}")
    return 0
