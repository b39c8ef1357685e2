"""`convo-sim experiment`: a user-modeling grid (personas x assistants x seeds).

Every base scenario is run once per persona and assistant, each with
`--samples` samples (`--seeds` is the old name; each sample has its own
seed, so a persona's random behaviour, its wording and its noise differ
between samples, and pass^k is defined for k up to `--samples`). Each rollout records its cell in
`metadata` (`persona`, `assistant`, `base_scenario`) and the user-fidelity
metrics in `metadata["fidelity"]`. The run writes, into `--out-dir`:

* `rollouts.jsonl`: the records (resumable: the same command continues);
* `results.csv` and `results.json`: one row per (persona, assistant) cell
  with mean reward, pass rate, pass^k, turns and the fidelity metrics, each
  with a 95% interval (Wilson score for rates, percentile bootstrap with a
  fixed seed for means);
* `report.html`: the HTML report (unless `--no-html`);
* `scenarios.jsonl`: the grid's scenarios as run (one per base scenario,
  persona and assistant), which `convo-sim verify results/rollouts.jsonl
  --scenarios results/scenarios.jsonl` re-scores against.

`--max-turns` overrides every scenario's own limit, as in `convo-sim run`.

Assistants are given by spec: `builtin` is the domain's rule-based
assistant (the calendar's exact solver); `openai:MODEL` is an LLM assistant
on an OpenAI-compatible server (`--base-url` or `OPENAI_BASE_URL`). The
user is the domain's rule-based user playing each persona, so the default
grid runs offline in seconds. `--domain NAME` runs another domain's grid.
"""

from __future__ import annotations

import argparse
import functools
import sys
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
from convo_sim._report_pages import write_report
from convo_sim._rollouts import open_rollouts, sample_seed
from convo_sim._sink import RolloutSink
from convo_sim.agents import LLMAssistant
from convo_sim.cli.domain import add_domain_argument, domain_of
from convo_sim.cli.run import _positive
from convo_sim.domains import Domain
from convo_sim.domains._registry import resolve
from convo_sim.scenarios import Scenario, save_scenarios
from convo_sim.users import get_persona

__all__ = [
    "ExperimentOutput",
    "add_parser",
    "build_grid",
    "format_table",
    "run",
    "run_experiment",
]

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


def _save_grid(path: Path, grid: Sequence[Scenario]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_scenarios(path, grid)


def _assistant(
    domain: Domain[Any], models: Mapping[str, ChatModel], scenario: Scenario, seed: int
) -> Actor:
    spec = str(scenario.metadata["assistant"])
    if spec in ("builtin", "solver"):
        return domain.assistant(scenario, seed)
    return LLMAssistant(models[spec])


def _check_spec(spec: str, base_url: str | None) -> None:
    if spec in ("builtin", "solver"):
        return
    kind, _, model = spec.partition(":")
    if kind != "openai" or not model:
        raise InputError(f"unknown assistant spec {spec!r}; expected 'builtin' or 'openai:MODEL'")
    # The check `convo-sim run` makes before any dialogue: a model with
    # neither a server nor a key would only fail every dialogue.
    from convo_sim.cli.actors_spec import require_endpoint

    require_endpoint(model, base_url, "OPENAI_API_KEY", flag="--base-url")


async def run_experiment(
    scenarios: Sequence[Scenario],
    *,
    personas: Sequence[str],
    assistants: Sequence[str] = ("builtin",),
    seeds: int = 3,
    seed: int = 0,
    out_dir: str | Path,
    domain: str | Domain[Any] = "calendar",
    max_turns: int | None = None,
    concurrency: int = 32,
    base_url: str | None = None,
    resume: bool = True,
    html: bool = True,
) -> ExperimentOutput:
    """Run the grid, write rollouts, tables and (optionally) the HTML report.

    `max_turns` overrides every scenario's own turn limit (None: each
    scenario's, else the domain's). The grid's scenarios are saved as
    `scenarios.jsonl` beside the rollouts, for `convo-sim verify`.

    Raises:
        InputError: an unknown persona or assistant spec, an `openai:`
            assistant with neither a server nor a key, a scenario without a
            goal, or an output file written with another seed.
        RolloutError: an actor could not be built for some sample.
    """
    for flag, value in (
        ("--samples", seeds),
        ("--max-turns", 1 if max_turns is None else max_turns),
        ("--concurrency", concurrency),
    ):
        if value < 1:
            raise InputError(f"{flag} must be at least 1, got {value!r}")
    for spec in assistants:
        _check_spec(spec, base_url)
    chosen = resolve(domain)
    grid = build_grid(scenarios, personas, assistants)
    if max_turns is not None:
        grid = [s.model_copy(update={"max_turns": max_turns}) for s in grid]
    by_id = {s.id: s for s in grid}
    out = Path(out_dir)
    paths = {"rollouts": out / "rollouts.jsonl", "scenarios": out / "scenarios.jsonl"}
    _save_grid(paths["scenarios"], grid)
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
        "errors": sum(c.errors for c in cells),
    }
    paths["csv"] = write_table_csv(cells, out / "results.csv")
    paths["json"] = write_table_json(cells, out / "results.json", meta=meta)
    if html:
        paths["html"] = write_report(
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
        description=(
            "Run a user-modeling grid: every scenario once per persona and assistant, each "
            "with --samples samples; write rollouts, a results table (CSV, JSON), the scenarios "
            "run and an HTML report into --out-dir, and print the table."
        ),
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
    p.add_argument(
        "--samples",
        "--seeds",
        dest="seeds",
        metavar="K",
        type=int,
        default=3,
        help="samples per scenario and cell, each with its own seed (default: 3)",
    )
    p.add_argument("--seed", type=int, default=0, help="the run's seed (default: 0)")
    p.add_argument(
        "--scenarios",
        metavar="FILE",
        type=Path,
        default=None,
        help="scenario file, as in run (default: --generate N generated scenarios)",
    )
    p.add_argument(
        "--generate",
        metavar="N",
        type=_positive,
        default=4,
        help="without --scenarios or --script: how many scenarios to generate (default: 4)",
    )
    p.add_argument("--scenario-file", type=Path, help=argparse.SUPPRESS)  # the old --scenarios
    p.add_argument(
        "--script",
        metavar="PATH",
        type=Path,
        help="or the scenarios of a Python scenario script (docs/scripts.md)",
    )
    p.add_argument(
        "--out-dir", metavar="DIR", type=Path, default=Path("results"), help="output folder"
    )
    p.add_argument(
        "--max-turns",
        metavar="N",
        type=int,
        default=None,
        help="turn limit per dialogue, overriding each scenario's (default: each scenario's, "
        "else the domain's: 20)",
    )
    p.add_argument("--concurrency", type=int, default=32, help="dialogues at once (default: 32)")
    p.add_argument(
        "--base-url",
        metavar="URL",
        help="OpenAI-compatible server for openai:MODEL assistants (default: $OPENAI_BASE_URL)",
    )
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


def _scenarios(args: argparse.Namespace) -> tuple[Domain[Any], list[Scenario]]:
    file: Path | None = args.scenarios if args.scenarios is not None else args.scenario_file
    if file is not None and args.script is not None:
        raise InputError("use either --scenarios or --script, not both")
    if args.script is not None:
        from convo_sim.scenarios._script import load_script

        script = load_script(args.script, domain=args.domain)
        return script.domain, list(script.scenarios)
    domain = domain_of(args)
    if file is None:
        return domain, domain.generate(args.generate, seed=args.seed)
    if str(file).isdigit() and not file.exists():
        # `--scenarios 4` once meant four generated scenarios.
        raise InputError(
            f"--scenarios takes a scenario file, and there is no file {str(file)!r}; "
            f"--generate {file} generates {file} scenarios"
        )
    return domain, domain.load(file)


def run(args: argparse.Namespace) -> int:
    """Run the experiment the arguments describe; print the table.

    Raises:
        InputError: bad options, scenarios or output folder (one line, exit 2).
        RolloutError: an actor could not be built for some sample.
    """
    personas, assistants = _names(args.personas), _names(args.assistants)
    if not personas or not assistants:
        raise InputError("--personas and --assistants need at least one name each")
    domain, scenarios = _scenarios(args)
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
    print(format_table(result.cells, k=args.seeds))
    for name, path in result.paths.items():
        print(f"{name}: {path}")
    errors = sum(c.errors for c in result.cells)
    if errors:
        total = sum(c.rollouts for c in result.cells)
        print(
            f"convo-sim: warning: {errors} of {total} rollouts ended in an error and scored 0 "
            f"(see the errors column and each record's 'error' in {result.paths['rollouts']})",
            file=sys.stderr,
        )
    return 0


def format_table(cells: Sequence[CellStats], *, k: int) -> str:
    """The experiment table as printed: one row per cell, columns as wide as their content."""
    header = ["persona", "assistant", "n", "errors", "reward [95% CI]", f"pass^{k}"]
    header += ["coverage", "premature", "stop_ok"]
    rows = [
        [
            c.group.get("persona", ""),
            c.group.get("assistant", ""),
            str(c.rollouts),
            str(c.errors),
            _fmt(c.mean_reward, c.reward_ci),
            _fmt(c.pass_hat_k.get(k), None),
            _fmt(c.goal_coverage, c.coverage_ci),
            _fmt(c.premature_stop_rate, c.premature_stop_ci),
            _fmt(c.stop_ok_rate, None),
        ]
        for c in cells
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = {2, 3}  # counts align right

    def line(row: list[str]) -> str:
        cells_ = [
            value.rjust(width) if i in numeric else value.ljust(width)
            for i, (value, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells_).rstrip()

    return "\n".join(line(row) for row in [header, *rows])
