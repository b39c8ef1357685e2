"""Scenario scripts: scenarios, actors and verifiers written as a Python file.

A script is an ordinary Python file that `convo-sim run --script PATH` (or
`load_script`) executes once. It defines at module level at least one of:

* `SCENARIOS`: a list of `Scenario` objects (or dicts in the native format);
* `scenarios()`: a function returning them;
* `DIALOGUE`: a scripted user, the list of user messages to say in order,
  optionally with `EXPECTED_STATE` (NeMo-Gym `exp_cal_state` or seed
  `expected_state`), `SYSTEM_PROMPT` and `MAX_TURNS`, which become one
  scenario named after the file;
* `async def main()`: runs anything it likes and returns a
  `DialogueResult`, a list of them, or None.

and, optionally, `DOMAIN` (the domain's name, default `calendar`), whose
scenario type, actors and verifiers are the defaults, and hooks that
replace them:

* `assistant(scenario, seed) -> Actor` (default: the domain's; the
  calendar solver);
* `user(scenario, seed) -> Actor` (default: the domain's, which plays the
  scenario's persona when it names one and has a goal);
* `verifiers(scenario) -> (turn_verifiers, final_verifiers)` (default: the
  domain's; `calendar_verifiers`);
* `REWARD`: a reward function such as `final_only(combine="min")`;
* `SAMPLES`: samples per scenario (default 1).

A script that cannot be loaded (a syntax error, an exception while it runs,
no scenarios, a malformed scenario) raises `ScenarioError` naming the file
and, where there is one, the line. See `docs/scripts.md`.
"""

from __future__ import annotations

import ast
import difflib
import functools
import hashlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pydantic

from convo_sim._actors import Actor
from convo_sim._errors import InputError, ScenarioError, UnknownDomainError
from convo_sim._records import Rollout
from convo_sim._results import DialogueResult
from convo_sim._rollouts import open_rollouts
from convo_sim._verification import FinalVerifier, RewardFn, TurnVerifier
from convo_sim.domains import Domain, get
from convo_sim.scenarios._model import Scenario
from convo_sim.scenarios._run import user_seed
from convo_sim.users._persona import PERSONAS, UnknownPersonaError, scenario_persona

__all__ = ["ScenarioScript", "load_script", "run_script", "script_user"]

ActorHook = Callable[[Any, int], Actor]
VerifierHook = Callable[[Any], tuple[Sequence[TurnVerifier[Any]], Sequence[FinalVerifier[Any]]]]
MainHook = Callable[[], Awaitable[object]]

_DEFINES = ("SCENARIOS", "scenarios", "DIALOGUE", "main")


@dataclass(frozen=True, slots=True)
class ScenarioScript:
    """A loaded scenario script.

    Attributes:
        path: the file.
        domain: the domain its scenarios belong to (`DOMAIN`, default `calendar`).
        scenarios: its scenarios (empty for a `main()` script).
        assistant: the `assistant(scenario, seed)` hook, if defined.
        user: the `user(scenario, seed)` hook, if defined.
        verifiers: the `verifiers(scenario)` hook, if defined.
        reward: the `REWARD` function, if defined.
        main: the `async def main()` coroutine function, if defined.
        samples: samples per scenario (`SAMPLES`, default 1).
    """

    path: Path
    domain: Domain[Any]
    scenarios: tuple[Scenario, ...]
    assistant: ActorHook | None = None
    user: ActorHook | None = None
    verifiers: VerifierHook | None = None
    reward: RewardFn | None = None
    main: MainHook | None = None
    samples: int = 1


def _assignments(source: str) -> dict[str, int]:
    """Module-level names the script binds, with the line of the first binding."""
    lines: dict[str, int] = {}
    for node in ast.parse(source).body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines.setdefault(node.name, node.lineno)
        for target in targets:
            if isinstance(target, ast.Name):
                lines.setdefault(target.id, node.lineno)
    return lines


def _failure_line(exc: BaseException, path: Path) -> int | None:
    """The line of the script at which `exc` was raised (the innermost frame in it)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path:
            line = frame.lineno
    return line


def _locate(path: Path) -> Path:
    """The script's file; `scenarios/examples/NAME.py` falls back to the installed examples.

    The README's commands name the examples by their path in the repository,
    which only exists from its root; the same files are installed with the
    package, so the commands work from any directory.
    """
    if path.exists() or path.is_absolute() or path.parts[:2] != ("scenarios", "examples"):
        return path.resolve()
    installed = Path(__file__).resolve().parent / "examples" / Path(*path.parts[2:])
    return installed if installed.is_file() else path.resolve()


def _execute(path: Path) -> tuple[ModuleType, dict[str, int]]:
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read the script: {exc}", path=path) from None
    try:
        lines = _assignments(source)
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise ScenarioError(f"syntax error: {exc.msg}", path=path, line=exc.lineno) from None
    # A unique module name per file, registered while the script runs, so
    # that dataclasses, pickling and `inspect` inside the script work.
    name = "convo_sim_script_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(path))
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(path)
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except Exception as exc:
        del sys.modules[name]
        raise ScenarioError(
            f"the script raised {type(exc).__name__}: {exc}",
            path=path,
            line=_failure_line(exc, path),
        ) from exc
    return module, lines


def _as_scenario(
    domain: Domain[Any], item: object, index: int, path: Path, line: int | None
) -> Any:
    if isinstance(item, domain.scenario_type):
        return item
    if isinstance(item, Scenario):
        # A bare `Scenario` (what older scripts build) becomes the domain's,
        # its fields validated as the domain's goal and state.
        item = dict(item)
    if isinstance(item, Mapping):
        try:
            return pydantic.TypeAdapter(domain.scenario_type).validate_python(item)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "record"
            raise ScenarioError(
                f"scenario {index}: {where}: {first['msg']}", path=path, line=line
            ) from None
    raise ScenarioError(
        f"scenario {index} is a {type(item).__name__}; expected a "
        f"{domain.scenario_type.__name__} of domain {domain.name!r} or a dict",
        path=path,
        line=line,
    )


def _collect(
    domain: Domain[Any], module: ModuleType, lines: dict[str, int], path: Path
) -> tuple[Scenario, ...]:
    found: object
    line: int | None
    if hasattr(module, "SCENARIOS"):
        found, line = module.SCENARIOS, lines.get("SCENARIOS")
    elif callable(getattr(module, "scenarios", None)):
        line = lines.get("scenarios")
        try:
            found = module.scenarios()
        except Exception as exc:
            raise ScenarioError(
                f"scenarios() raised {type(exc).__name__}: {exc}",
                path=path,
                line=_failure_line(exc, path) or line,
            ) from exc
    elif hasattr(module, "DIALOGUE"):
        return (_dialogue_scenario(domain, module, lines, path),)
    else:
        return ()
    if isinstance(found, str | bytes | Mapping) or not isinstance(found, Iterable):
        raise ScenarioError(
            f"expected a list of scenarios, got a {type(found).__name__}", path=path, line=line
        )
    scenarios = tuple(_as_scenario(domain, item, i, path, line) for i, item in enumerate(found))
    seen: set[str] = set()
    for scenario in scenarios:
        if scenario.id in seen:
            raise ScenarioError(f"two scenarios share the id {scenario.id!r}", path=path, line=line)
        seen.add(scenario.id)
    return scenarios


def _dialogue_scenario(
    domain: Domain[Any], module: ModuleType, lines: dict[str, int], path: Path
) -> Any:
    dialogue = module.DIALOGUE
    line = lines.get("DIALOGUE")
    if isinstance(dialogue, str) or not all(isinstance(m, str) for m in dialogue):
        raise ScenarioError(
            "DIALOGUE must be a list of user messages (strings)", path=path, line=line
        )
    data = {
        "id": path.stem,
        "system_prompt": getattr(module, "SYSTEM_PROMPT", domain.system_prompt),
        "user_script": tuple(dialogue),
        "expected_state": getattr(module, "EXPECTED_STATE", None),
        "max_turns": getattr(module, "MAX_TURNS", None),
    }
    return _as_scenario(domain, data, 0, path, line)


def _hook(module: ModuleType, name: str, params: int, path: Path, line: int | None) -> Any:
    hook = getattr(module, name, None)
    if hook is None:
        return None
    if not callable(hook):
        raise ScenarioError(f"{name} must be a function", path=path, line=line)
    try:
        inspect.signature(hook).bind(*range(params))
    except TypeError:
        raise ScenarioError(
            f"{name} must take {params} argument(s)", path=path, line=line
        ) from None
    return hook


def load_script(path: str | Path, *, domain: str | None = None) -> ScenarioScript:
    """Execute a scenario script and collect what it defines.

    Args:
        path: the script.
        domain: the domain of its scenarios when the script sets no
            `DOMAIN` (default `calendar`); a script that sets another one
            is refused.

    Raises:
        ScenarioError: the file cannot be read, has a syntax error, raises
            while it runs, names a domain that is not installed or not
            `domain`, defines no scenarios, or defines malformed ones;
            `exc.path` names the file and `exc.line` the line, when known.
    """
    path = _locate(Path(path))
    module, lines = _execute(path)
    chosen = _domain(module, lines, path, domain)
    scenarios = _collect(chosen, module, lines, path)
    main = getattr(module, "main", None)
    if main is not None and not inspect.iscoroutinefunction(main):
        raise ScenarioError(
            "main must be an 'async def' function", path=path, line=lines.get("main")
        )
    if not scenarios and main is None:
        close = difflib.get_close_matches(
            "SCENARIOS", list(lines), n=1
        ) or difflib.get_close_matches("scenarios", list(lines), n=1)
        hint = f"; did you mean {close[0]!r} (line {lines[close[0]]})?" if close else ""
        raise ScenarioError(
            "the script defines none of SCENARIOS, scenarios(), DIALOGUE or main()" + hint,
            path=path,
            line=lines[close[0]] if close else None,
        )
    samples = getattr(module, "SAMPLES", 1)
    if not isinstance(samples, int) or samples < 1:
        raise ScenarioError(
            "SAMPLES must be a positive integer", path=path, line=lines.get("SAMPLES")
        )
    reward = getattr(module, "REWARD", None)
    if reward is not None and not callable(reward):
        raise ScenarioError("REWARD must be a reward function", path=path, line=lines.get("REWARD"))
    user = _hook(module, "user", 2, path, lines.get("user"))
    if user is None:
        # The default user plays personas by name; a `user` hook (an LLM
        # user, say) may take any text, so names are checked only without one.
        _check_personas(scenarios, path, lines.get("SCENARIOS") or lines.get("scenarios"))
    return ScenarioScript(
        path=path,
        domain=chosen,
        scenarios=scenarios,
        assistant=_hook(module, "assistant", 2, path, lines.get("assistant")),
        user=user,
        verifiers=_hook(module, "verifiers", 1, path, lines.get("verifiers")),
        reward=reward,
        main=main,
        samples=samples,
    )


def _domain(
    module: ModuleType, lines: dict[str, int], path: Path, wanted: str | None
) -> Domain[Any]:
    name = getattr(module, "DOMAIN", None)
    line = lines.get("DOMAIN")
    if name is None:
        name = "calendar" if wanted is None else wanted
    elif not isinstance(name, str):
        raise ScenarioError("DOMAIN must be a domain's name (a string)", path=path, line=line)
    elif wanted is not None and name != wanted:
        raise ScenarioError(
            f"the script's DOMAIN is {name!r}, but the run asks for domain {wanted!r}",
            path=path,
            line=line,
        )
    try:
        return get(name)
    except UnknownDomainError as exc:
        raise ScenarioError(exc.problem, path=path, line=line) from None


def _check_personas(scenarios: Sequence[Scenario], path: Path, line: int | None) -> None:
    for scenario in scenarios:
        if scenario.goal is None or scenario.user_script:
            continue
        try:
            scenario_persona(scenario)
        except UnknownPersonaError:
            problem = (
                f"unknown persona {scenario.persona!r}; expected one of: {', '.join(PERSONAS)}"
            )
        except InputError as exc:
            problem = exc.problem
        else:
            continue
        raise ScenarioError(
            f"scenario {scenario.id!r}: {problem}",
            path=path,
            line=line,
            scenario_id=scenario.id,
        )


def script_user(domain: Domain[Any], scenario: Scenario, seed: int) -> Actor:
    """The default user of a script's scenario: the domain's, seeded with the sample's seed.

    Scripts have always given the user the sample's seed as it is, where
    `convo-sim run` mixes the scenario's own in (`user_seed`); the domain's
    factory mixes it, and mixing is its own inverse, so mixing first undoes it.

    Raises:
        ScenarioError: the scenario names a persona that is not bundled.
    """
    return domain.user(scenario, user_seed(scenario, seed))


async def run_script(
    script: ScenarioScript,
    *,
    seed: int = 0,
    max_turns: int | None = None,
    concurrency: int = 32,
    turn_timeout: float | None = 60.0,
) -> list[Rollout]:
    """Run a loaded script and return its rollouts, sorted by scenario and sample.

    Records carry what the domain's plan records (`Domain.plan`): the
    persona, the user-fidelity metrics in `metadata["fidelity"]` and
    `user_failure`, where the domain measures them. A `main()` script is awaited; each
    `DialogueResult` it returns becomes a record named `<file stem>-<index>`.

    Raises:
        ScenarioError: `main()` returned something that is not a result.
        RolloutError: a hook raised while building an actor or verifiers.
    """
    if script.main is not None:
        return _main_records(script, await script.main())
    domain = script.domain
    plan = domain.plan(
        assistant=script.assistant or domain.assistant,
        user=script.user or functools.partial(script_user, domain),
        verifiers=script.verifiers or domain.verifiers,
        concurrency=concurrency,
        seed=seed,
        max_turns=max_turns or domain.max_turns,
        turn_timeout=turn_timeout,
        reward=script.reward,
    )
    async with open_rollouts(
        script.scenarios, plan, samples_per_scenario=script.samples
    ) as rollouts:
        records = [rollout async for rollout in rollouts]
    return sorted(records, key=lambda r: r.key)


def _main_records(script: ScenarioScript, returned: object) -> list[Rollout]:
    if returned is None:
        return []
    results = [returned] if isinstance(returned, DialogueResult) else returned
    if not isinstance(results, Iterable) or not all(isinstance(r, DialogueResult) for r in results):
        raise ScenarioError(
            "main() must return a DialogueResult, a list of them, or None", path=script.path
        )
    return [
        Rollout.from_result(Scenario(id=f"{script.path.stem}-{i}"), 0, 0, result)
        for i, result in enumerate(results)
    ]
