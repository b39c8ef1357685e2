"""`convo-sim experiment`: a user-modeling grid (personas x assistants x seeds).

Every base scenario is run once per persona and assistant, each with
`--samples` samples (`--seeds` is the old name; each sample has its own
seed, so a persona's random behaviour, its wording and its noise differ
between samples, and pass^k is defined for k up to `--samples`). The
design is **paired**: a sample's seed depends on the run seed, the base
scenario and the sample index only (`RolloutPlan.seed_key`), never on the
assistant or the persona, so every assistant meets the same simulated users
and their difference is free of the users' randomness. Each rollout records
its cell in `metadata` (`persona`, `assistant`, `base_scenario`), the
user-fidelity metrics in `metadata["fidelity"]` and what the user did wrong
in `user_failure`. The run writes, into `--out-dir`:

* `rollouts.jsonl`: the records (resumable: the same command continues);
* `results.csv` and `results.json`: one row per (persona, assistant) cell
  with mean reward, pass rate, pass^k, turns, errors, the fidelity metrics
  and the failures split by who failed (assistant or simulator), each with
  a 95% interval (Wilson score for rates, percentile bootstrap with a fixed
  seed for means);
* `paired.csv` (and `paired` in `results.json`), with two or more
  assistants: each against the first, per persona and pooled, the mean
  paired difference with its paired-bootstrap interval, wins, losses, ties
  and the sign-flip permutation test's p-value;
* `report.html`: the HTML report (unless `--no-html`);
* `scenarios.jsonl`: the grid's scenarios as run (one per base scenario,
  persona and assistant), which `convo-sim verify results/rollouts.jsonl
  --scenarios results/scenarios.jsonl` re-scores against.

`--max-turns` overrides every scenario's own limit, as in `convo-sim run`.

Assistants are given by spec: `builtin` is the domain's rule-based
assistant (the calendar's exact solver); `openai:MODEL` is an LLM assistant
on an OpenAI-compatible server (`--base-url` or `OPENAI_BASE_URL`). The
user is the domain's rule-based user playing each persona (`--user
openai:MODEL` for an LLM user), so the default grid runs offline in
seconds. `--population N` replaces `--personas` by N personas drawn from
the population sampler (`convo_sim.users.sample_personas`, seeded by
`--seed`). `--domain NAME` runs another domain's grid.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from convo_sim._judging import JudgeCache
from convo_sim._logging import get_logger
from convo_sim._models import ChatModel
from convo_sim._paired import PairedComparison, paired_comparisons, paired_json, write_paired_csv
from convo_sim._records import Rollout
from convo_sim._report_pages import write_report
from convo_sim._rollouts import open_rollouts
from convo_sim._sink import RolloutSink
from convo_sim.agents import LLMAssistant
from convo_sim.cli.domain import add_domain_argument, domain_of
from convo_sim.cli.run import _positive
from convo_sim.domains import Domain
from convo_sim.domains._registry import resolve
from convo_sim.scenarios import Scenario, save_scenarios
from convo_sim.users import (
    PERSONA_SPEC_KEY,
    PERSONAS,
    JudgedUserReview,
    Persona,
    UserReviewer,
    get_persona,
    population_diversity,
    sample_personas,
)

__all__ = [
    "ExperimentOutput",
    "add_parser",
    "build_grid",
    "format_table",
    "pair_key",
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
        paired: each assistant against the first, per persona and pooled
            (empty with one assistant).
        paths: output name (`rollouts`, `csv`, `json`, `paired`, `html`) -> file.
    """

    rollouts: list[Rollout]
    cells: list[CellStats]
    paired: list[PairedComparison]
    paths: dict[str, Path]


def pair_key(scenario: Scenario) -> str:
    """The seed key of a grid scenario: its base scenario, neither assistant nor persona.

    Every cell of one base scenario gets the same sample seeds, so each
    assistant meets the same user (a paired design), and each persona's
    user words its requests as the others do.
    """
    return str(scenario.metadata.get("base_scenario", scenario.id))


def build_grid(
    scenarios: Sequence[Scenario],
    personas: Sequence[str | Persona],
    assistants: Sequence[str],
    *,
    max_turns: int | None = None,
) -> list[Scenario]:
    """One scenario per (base scenario, persona, assistant), cell recorded in metadata.

    A persona given as a `Persona` that is not bundled rides along as data
    (`metadata["persona_spec"]`). `max_turns` becomes the limit of the
    scenarios that set none, so that the user knows the limit it paces
    itself for.

    Raises:
        UnknownPersonaError: a persona name is not bundled.
        InputError: a base scenario has no goal for the rule-based user, or
            two personas share a name.
    """
    chosen = [get_persona(p) if isinstance(p, str) else p for p in personas]
    if len({p.name for p in chosen}) < len(chosen):
        raise InputError("two personas share a name; persona names must be unique")
    grid: list[Scenario] = []
    for base in scenarios:
        if base.goal is None:
            raise InputError(f"scenario {base.id!r} has no goal; the persona user needs one")
        limit = base.max_turns if base.max_turns is not None else max_turns
        for persona in chosen:
            spec = (
                {}
                if PERSONAS.get(persona.name) == persona
                else {PERSONA_SPEC_KEY: persona.model_dump(mode="json")}
            )
            for assistant in assistants:
                grid.append(
                    base.model_copy(
                        update={
                            "id": f"{base.id}/{persona.name}/{assistant}",
                            "persona": persona.name,
                            "max_turns": limit,
                            "metadata": {
                                **base.metadata,
                                **spec,
                                "base_scenario": base.id,
                                "persona": persona.name,
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
    personas: Sequence[str | Persona],
    assistants: Sequence[str] = ("builtin",),
    seeds: int = 3,
    seed: int = 0,
    out_dir: str | Path,
    domain: str | Domain[Any] = "calendar",
    max_turns: int | None = None,
    concurrency: int = 32,
    base_url: str | None = None,
    user: str = "builtin",
    user_reviewer: str = "rules",
    judge_cache: str | Path | None = None,
    resume: bool = True,
    html: bool = True,
    meta: Mapping[str, Any] | None = None,
) -> ExperimentOutput:
    """Run the grid, write rollouts, tables and (optionally) the HTML report.

    Args:
        scenarios: the base scenarios (each needs a goal).
        personas: bundled persona names, or `Persona`s (sampled ones).
        assistants: specs, `builtin` or `openai:MODEL`; the first is the
            baseline of the paired comparisons.
        seeds: samples per scenario and cell.
        seed: the run's seed.
        out_dir: where the files go.
        domain: the domain, or its name.
        max_turns: overrides every scenario's own turn limit (None: each
            scenario's, else the domain's).
        concurrency: dialogues at once.
        base_url: the OpenAI-compatible server of `openai:` specs.
        user: `builtin` (the domain's rule-based user) or `openai:MODEL`.
        user_reviewer: who decides `user_failure`: `rules` (the domain's
            rule-based review) or `openai:MODEL`, an LLM judge
            (`convo_sim.users.UserReviewer`) on every record.
        judge_cache: a JSONL file caching the judge's answers by content
            hash (None: in memory, for this run).
        resume: continue the rollouts file; False starts it over.
        html: write `report.html`.
        meta: more to record in `results.json`'s `meta`.

    The grid's scenarios are saved as `scenarios.jsonl` beside the
    rollouts, for `convo-sim verify`.

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
    # The domain's limit fills in for scenarios without one, so that the
    # persona user knows the limit it paces itself for; --max-turns overrides.
    grid = build_grid(scenarios, personas, assistants, max_turns=chosen.max_turns)
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
    users = _user_factory(user, chosen, base_url)
    reviewer = _reviewer(user_reviewer, chosen, base_url, judge_cache)
    try:
        plan = chosen.plan(
            assistant=functools.partial(_assistant, chosen, models),
            user=users.user,
            seed=seed,
            concurrency=concurrency,
            seed_key=pair_key,
        )
        if reviewer is not None:
            plan = dataclasses.replace(plan, annotate=reviewer.annotator)
        with RolloutSink(paths["rollouts"], resume=resume) as sink:
            for (scenario_id, index), recorded in sink.done.items():
                cell = by_id.get(scenario_id)
                if cell is not None and recorded != plan.seed_for(cell, index):
                    raise InputError(
                        "holds rollouts made with another seed; use the same --seed, "
                        "another --out-dir, or --no-resume",
                        path=paths["rollouts"],
                    )
            skip = frozenset(sink.done)
            _log.info("experiment.started", cells=len(grid), seeds=seeds, skipped=len(skip))
            async with open_rollouts(grid, plan, samples_per_scenario=seeds, skip=skip) as rollouts:
                async for rollout in rollouts:
                    sink.write(rollout)
    finally:
        for model in models.values():
            await model.aclose()
        await users.aclose()
        if reviewer is not None:
            await reviewer.aclose()
    from convo_sim._sink import read_rollouts

    records = [r for r in read_rollouts(paths["rollouts"]) if r.scenario_id in by_id]
    records.sort(key=lambda r: (r.scenario_id, r.sample_index))
    cells = cell_stats(records, by=("persona", "assistant"))
    paired = paired_comparisons(records, baseline=assistants[0]) if len(assistants) > 1 else []
    info = {
        "domain": chosen.name,
        "personas": [p if isinstance(p, str) else p.name for p in personas],
        "assistants": list(assistants),
        "user": user,
        "user_reviewer": user_reviewer,
        "seeds": seeds,
        "seed": seed,
        "scenarios": [s.id for s in scenarios],
        "max_turns": max_turns,
        "design": "paired: a sample's user seed depends on (run seed, base scenario, "
        "sample index) only",
        "errors": sum(c.errors for c in cells),
        **dict(meta or {}),
    }
    paths["csv"] = write_table_csv(cells, out / "results.csv")
    paths["json"] = write_table_json(
        cells, out / "results.json", meta=info, extra={"paired": paired_json(paired)}
    )
    if paired:
        paths["paired"] = write_paired_csv(paired, out / "paired.csv")
    if html:
        paths["html"] = write_report(
            records,
            out / "report.html",
            title="convo-sim experiment",
            source=str(paths["rollouts"]),
        )
    _log.info("experiment.finished", rollouts=len(records), cells=len(cells))
    return ExperimentOutput(rollouts=records, cells=cells, paired=paired, paths=paths)


@dataclass
class _Users:
    """The user factory of an experiment, and the model it may hold open."""

    user: Any
    shared: Any = None

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.aclose()


def _user_factory(spec: str, domain: Domain[Any], base_url: str | None) -> _Users:
    from convo_sim.cli.actors_spec import (
        ModelEndpoint,
        OpenAIUserFactory,
        _SharedModel,
        parse_actor_spec,
    )

    parsed = parse_actor_spec(spec, flag="--user")
    if parsed.kind == "builtin":
        return _Users(domain.user)
    assert parsed.model is not None
    shared = _SharedModel(ModelEndpoint(parsed.model, base_url))
    return _Users(OpenAIUserFactory(shared, domain.name), shared)


@dataclass
class _Reviewer:
    """The LLM reviewer of an experiment's users: one model and cache, made on first use."""

    shared: Any
    cache: JudgeCache
    domain: str
    _reviewer: UserReviewer | None = None

    def get(self) -> UserReviewer:
        if self._reviewer is None:
            self._reviewer = UserReviewer(
                self.shared.get(), model_name=self.shared.endpoint.model, cache=self.cache
            )
        return self._reviewer

    @property
    def annotator(self) -> JudgedUserReview:
        return JudgedUserReview(self.get, self.domain)

    async def aclose(self) -> None:
        await self.shared.aclose()


def _reviewer(
    spec: str, domain: Domain[Any], base_url: str | None, cache: str | Path | None
) -> _Reviewer | None:
    if spec == "rules":
        return None
    from convo_sim.cli.actors_spec import ModelEndpoint, _SharedModel

    kind, _, model = spec.partition(":")
    if kind != "openai" or not model.strip():
        raise InputError(f"--user-reviewer {spec!r}: expected 'rules' or 'openai:MODEL'")
    shared = _SharedModel(ModelEndpoint(model.strip(), base_url))
    return _Reviewer(shared, JudgeCache(cache), domain.name)


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
        "--population",
        metavar="N",
        type=int,
        default=None,
        help="instead of --personas: N personas drawn from the population sampler "
        "(demographics, OCEAN traits, behaviour), seeded by --seed",
    )
    p.add_argument(
        "--assistants",
        default="builtin",
        help="comma-separated assistant specs: builtin, openai:MODEL; the first is the "
        "baseline of the paired comparisons (default: builtin)",
    )
    p.add_argument(
        "--user",
        metavar="SPEC",
        default="builtin",
        help="the simulated user: builtin (rule-based, plays each persona) or openai:MODEL "
        "(an LLM given each persona as instructions)",
    )
    p.add_argument(
        "--user-reviewer",
        metavar="SPEC",
        default="rules",
        help="who reviews the simulated user for user_failure: rules (the domain's rule-based "
        "review, default) or openai:MODEL (an LLM judge; convo-sim serve's "
        "calendar-user-reviewer is the rule-based one behind HTTP)",
    )
    p.add_argument(
        "--judge-cache",
        metavar="FILE",
        type=Path,
        default=None,
        help="a JSONL file caching the LLM judge's answers by content hash (default: in memory)",
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
    personas: list[str | Persona] = list(_names(args.personas))
    assistants = _names(args.assistants)
    meta: dict[str, Any] = {}
    if args.population is not None:
        if args.population < 1:
            raise InputError(f"--population must be at least 1, got {args.population!r}")
        population = sample_personas(args.population, seed=args.seed)
        personas = list(population)
        meta["population"] = {
            "size": args.population,
            "seed": args.seed,
            "diversity": population_diversity(population).model_dump(mode="json"),
        }
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
            user=args.user,
            user_reviewer=args.user_reviewer,
            judge_cache=args.judge_cache,
            resume=not args.no_resume,
            html=not args.no_html,
            meta=meta,
        )
    )
    print(format_table(result.cells, k=args.seeds))
    if result.paired:
        _print_paired(result.paired)
    if "population" in meta:
        diversity = meta["population"]["diversity"]
        print(
            f"population: {args.population} personas, mean pairwise distance "
            f"{diversity['mean_pairwise_distance']:.2f}, distinct behaviours "
            f"{diversity['distinct_behaviours']:.2f}"
        )
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
    header += ["coverage", "premature", "stop_ok", "failed: assistant/simulator"]
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
            f"{c.assistant_failures}/{c.simulator_failures}",
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


def _print_paired(rows: Sequence[PairedComparison]) -> None:
    width = max([len(r.group.get("persona", "")) for r in rows] + [11])
    side = max([len(r.other) for r in rows] + [10])
    print(f"\npaired differences (other - {rows[0].baseline}), reward:")
    print(
        f"{'persona':<{width}} {'other':<{side}} {'pairs':>5}  {'difference [95% CI]':<22} "
        "wins/losses/ties  p"
    )
    for r in rows:
        p = "-" if r.p_value is None else f"{r.p_value:.3g}"
        print(
            f"{r.group.get('persona', ''):<{width}} {r.other:<{side}} {r.pairs:>5}  "
            f"{_fmt(r.mean_difference, r.difference_ci):<22} "
            f"{r.wins}/{r.losses}/{r.ties:<10} {p}"
        )
