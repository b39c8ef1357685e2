"""`Domain`: everything one task family needs, behind one object.

The core runs dialogues of any scenario type; a domain says what its
scenarios are (type, file formats, bundled sets, generator), who talks in
them by default (a rule-based assistant and user, persona-aware), how they
are scored (turn and final verifiers, completion detectors, the turn
limit), what `convo-sim serve` serves for it, and how its simulated users
are judged (fidelity). The CLI, `run_scenario`, scripts and the server take
a domain by name (`convo_sim.domains.get`).

The factories have exactly the signatures the rollout engine takes
(`assistant(scenario, sample_seed)`, `user(scenario, sample_seed)`,
`verifiers(scenario)`, `completion(scenario)`), so `domain.plan()` is a
`RolloutPlan`, and a dialogue run from Python is the one the CLI runs for
the same seed. For Ray they must pickle: top-level functions or
`functools.partial`s of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from convo_sim._errors import InputError
from convo_sim._logging import get_logger
from convo_sim._records import Rollout, ScenarioLike
from convo_sim._rollouts import (
    DEFAULT_MAX_TURNS,
    ActorFactory,
    CompletionFactory,
    RolloutPlan,
    ToolFactory,
    VerifierFactory,
)
from convo_sim._served_models import ServedModel
from convo_sim._user_failure import UserFailure

__all__ = ["Annotator", "Domain", "ScenarioGenerator", "ScenarioLoader", "annotate_rollout"]

S = TypeVar("S", bound=ScenarioLike)

_log = get_logger("convo_sim.domains")


class ScenarioLoader(Protocol[S]):
    """Reads every scenario in a file, in any format the domain knows.

    Raises `ScenarioError` naming the file and line of a malformed record.
    """

    def __call__(self, path: Path, /) -> list[S]: ...


class ScenarioGenerator(Protocol[S]):
    """Makes `n` scenarios from a seed (the same seed, the same scenarios)."""

    def __call__(self, n: int, /, *, seed: int = 0) -> list[S]: ...


def _no_models() -> Mapping[str, ServedModel]:
    return {}


@dataclass(frozen=True, kw_only=True)
class Domain(Generic[S]):
    """One task family: its scenarios, default actors, verifiers and served models.

    Attributes:
        name: what `--domain` and `convo_sim.domains.get` call it.
        description: one line, for listings.
        scenario_type: the domain's scenario model (a `Scenario` subclass).
        load: `load(path) -> scenarios`, every file format the domain reads.
        bundled: the scenario sets shipped with the domain, by name.
        default_sets: the bundled sets `convo-sim run` runs with no
            `--scenarios`.
        generate: `generate(n, *, seed) -> scenarios`, each solvable.
        assistant: `assistant(scenario, sample_seed) -> Actor`, the default
            (rule-based) assistant.
        user: `user(scenario, sample_seed) -> Actor`, the default simulated
            user, playing the scenario's persona when it names one.
        verifiers: `verifiers(scenario) -> (turn_verifiers, final_verifiers)`.
        completion: `completion(scenario) -> detectors`; None: the user's
            stop token.
        max_turns: the turn limit of scenarios that set none.
        system_prompt: the assistant's instructions, for scenarios made
            without one (a script's `DIALOGUE`); None: none.
        served_models: the models `convo-sim serve` serves for this domain.
        card: `card(scenario, sample_seed) -> dict`, the scenario as data for
            an LLM user's prompt, from which a served user model rebuilds the
            rule-based user (`from_card`); None if the domain has no card.
        from_card: `from_card(card) -> scenario`, the inverse of `card`.
        describe_goal: `describe_goal(scenario) -> str | None`, the user's
            goal in words, for an LLM user's prompt; None (or no function):
            the generic description (the user script, or nothing to ask for).
        tools: `tools(scenario) -> ToolEnv`, a fresh tool environment for
            one dialogue (the assistant's tools and the state they act
            on); None: the domain's dialogues have no tools.
        fidelity: `fidelity(rollout, scenario) -> metrics`, how faithfully
            the simulated user played its part (JSON-able), or None when
            there is nothing to measure it against.
        review_user: `review_user(rollout, scenario) -> False | tags`, what
            the simulated user did wrong (`convo_sim.UserFailureTag`), or
            None when there is nothing to hold it to.
    """

    name: str
    description: str
    scenario_type: type[S]
    load: ScenarioLoader[S]
    bundled: Mapping[str, Callable[[], list[S]]]
    default_sets: tuple[str, ...]
    generate: ScenarioGenerator[S]
    assistant: ActorFactory[S]
    user: ActorFactory[S]
    verifiers: VerifierFactory[S]
    completion: CompletionFactory[S] | None = None
    max_turns: int = DEFAULT_MAX_TURNS
    system_prompt: str | None = None
    served_models: Callable[[], Mapping[str, ServedModel]] = field(default=_no_models)
    card: Callable[[S, int], Mapping[str, Any]] | None = None
    from_card: Callable[[Mapping[str, Any]], S] | None = None
    describe_goal: Callable[[S], str | None] | None = None
    fidelity: Callable[[Rollout, S], Mapping[str, Any] | None] | None = None
    review_user: Callable[[Rollout, S], UserFailure | None] | None = None
    tools: ToolFactory[S] | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"a domain's name must be an identifier, got {self.name!r}")
        unknown = [name for name in self.default_sets if name not in self.bundled]
        if unknown:
            raise ValueError(f"default set {unknown[0]!r} is not among the bundled sets")
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {self.max_turns!r}")
        if (self.card is None) != (self.from_card is None):
            raise ValueError("a domain has both card and from_card, or neither")

    def plan(self, **overrides: Any) -> RolloutPlan[S]:
        """A `RolloutPlan` with this domain's factories and turn limit.

        Its records carry what the domain knows about the simulated user
        (`annotate`): the scenario's persona in `metadata["persona"]`, the
        user-fidelity metrics in `metadata["fidelity"]` and `user_failure`.
        Any `RolloutPlan` field may be overridden by keyword
        (`domain.plan(seed=3, concurrency=8, user=my_user)`).

        Raises:
            TypeError: a keyword is not a `RolloutPlan` field.
            ValueError: a limit is out of range.
        """
        plan: RolloutPlan[S] = RolloutPlan(
            assistant=self.assistant,
            user=self.user,
            verifiers=self.verifiers,
            completion=self.completion,
            max_turns=self.max_turns,
            annotate=self.annotator(),
            tools=self.tools,
        )
        return dataclasses.replace(plan, **overrides) if overrides else plan

    def annotator(self) -> Annotator:
        """`annotate_rollout` with this domain's fidelity and user review (picklable)."""
        return Annotator(self.fidelity, self.review_user)

    def annotate(self, rollout: Rollout, scenario: S) -> Rollout:
        """`rollout` with the persona, fidelity metrics and `user_failure` (see `plan`)."""
        return annotate_rollout(
            rollout, scenario, fidelity=self.fidelity, review_user=self.review_user
        )

    def scenarios(self, sets: Iterable[str] | None = None) -> list[S]:
        """The scenarios of the named bundled sets, in order (default: `default_sets`).

        Raises:
            InputError: a set is not bundled with this domain.
        """
        out: list[S] = []
        for name in self.default_sets if sets is None else sets:
            if name not in self.bundled:
                known = ", ".join(self.bundled) or "none"
                raise InputError(
                    f"domain {self.name!r} bundles no scenario set {name!r}; expected one of: {known}"
                )
            out.extend(self.bundled[name]())
        return out

    def with_fidelity(self, rollout: Rollout, scenario: S) -> Rollout:
        """`rollout` with `metadata["fidelity"]` set, when the domain measures this scenario."""
        if self.fidelity is None:
            return rollout
        metrics = self.fidelity(rollout, scenario)
        if metrics is None:
            return rollout
        return rollout.model_copy(update={"metadata": {**rollout.metadata, "fidelity": metrics}})


@dataclass(frozen=True, slots=True)
class Annotator:
    """`annotate_rollout` bound to a domain's functions; pickles by reference, compares by value."""

    fidelity: Callable[[Rollout, Any], Mapping[str, Any] | None] | None = None
    review_user: Callable[[Rollout, Any], UserFailure | None] | None = None

    def __call__(self, rollout: Rollout, scenario: Any) -> Rollout:
        return annotate_rollout(
            rollout, scenario, fidelity=self.fidelity, review_user=self.review_user
        )


def annotate_rollout(
    rollout: Rollout,
    scenario: Any,
    *,
    fidelity: Callable[[Rollout, Any], Mapping[str, Any] | None] | None = None,
    review_user: Callable[[Rollout, Any], UserFailure | None] | None = None,
) -> Rollout:
    """`rollout` with what is known about its simulated user.

    `metadata["persona"]` (the scenario's persona, unless the metadata names
    one already), `metadata["fidelity"]` and `user_failure` (when the
    functions give them). A function that raises is a bug, not a reason to
    lose the record: it is logged as `rollout.annotate_failed`, its error
    kept in `metadata["annotate_error"]`, and the record goes on.
    """
    metadata = dict(rollout.metadata)
    update: dict[str, Any] = {}
    persona = getattr(scenario, "persona", None)
    if persona is not None:
        metadata.setdefault("persona", persona)
    try:
        metrics = fidelity(rollout, scenario) if fidelity is not None else None
        if metrics is not None:
            metadata["fidelity"] = dict(metrics)
        if review_user is not None:
            update["user_failure"] = review_user(rollout, scenario)
    except Exception as exc:  # a bug in a domain's review; the record is kept
        _log.error(
            "rollout.annotate_failed",
            scenario_id=rollout.scenario_id,
            sample_index=rollout.sample_index,
            error=type(exc).__name__,
        )
        metadata["annotate_error"] = f"{type(exc).__name__}: {exc}"[:500]
    update["metadata"] = metadata
    return rollout.model_copy(update=update)
