"""A batch of trajectories for a trainer, from Python, with no file in between.

::

    batch = await collect(scenarios, plan, samples_per_scenario=8)
    out = batch.columns("trl")      # what a TRL rollout_func returns

`collect` runs a `RolloutPlan` on the rollout engine (`open_plan`), with the
policy's token capture switched on, and returns a `RolloutBatch`: the
`Rollout` records in scenario order, then sample order (a GRPO group's
samples together), which turns into `TokenSample`s or any export format.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Generic, overload

from convo_sim._actors import Actor
from convo_sim._errors import InputError
from convo_sim._export import ExportFormat, ExportStats, TokenSample, export_rows, token_samples
from convo_sim._models import ModelSettings
from convo_sim._records import Rollout, RolloutKey
from convo_sim._rollouts import ActorFactory, Backend, RolloutPlan, S, open_plan, plan_items

__all__ = ["RolloutBatch", "collect"]


class RolloutBatch(Sequence[Rollout]):
    """Rollouts ready for a trainer: a sequence of `Rollout`, plus conversions.

    Args:
        rollouts: the records, in the order the rows should come in.
    """

    def __init__(self, rollouts: Iterable[Rollout]) -> None:
        self.rollouts = list(rollouts)

    def __len__(self) -> int:
        return len(self.rollouts)

    @overload
    def __getitem__(self, index: int) -> Rollout: ...
    @overload
    def __getitem__(self, index: slice) -> RolloutBatch: ...
    def __getitem__(self, index: int | slice) -> Rollout | RolloutBatch:
        if isinstance(index, slice):
            return RolloutBatch(self.rollouts[index])
        return self.rollouts[index]

    def __iter__(self) -> Iterator[Rollout]:
        return iter(self.rollouts)

    def __repr__(self) -> str:
        return f"RolloutBatch({len(self.rollouts)} rollouts)"

    def samples(self, *, per_turn: bool = False) -> list[TokenSample]:
        """Every rollout's `TokenSample`s (see `token_samples`).

        Raises:
            ValueError: a token field is malformed.
        """
        return [s for rollout in self.rollouts for s in token_samples(rollout, per_turn=per_turn)]

    def rows(
        self, format: ExportFormat, *, per_turn: bool = False, include_errors: bool = False
    ) -> list[dict[str, Any]]:
        """The rows `convo-sim export --format FORMAT` would write, one dict each.

        Raises:
            ValueError: an unknown format, or a malformed token field.
        """
        return list(
            export_rows(self.rollouts, format, per_turn=per_turn, include_errors=include_errors)
        )

    def columns(
        self, format: ExportFormat, *, per_turn: bool = False, include_errors: bool = False
    ) -> dict[str, list[Any]]:
        """The rows as one dict of lists: a TRL `rollout_func` result, a SkyRL `GeneratorOutput`.

        Raises:
            ValueError: an unknown format, or a malformed token field.
        """
        rows = self.rows(format, per_turn=per_turn, include_errors=include_errors)
        keys = list(rows[0]) if rows else []
        return {key: [row[key] for row in rows] for key in keys}

    def stats(
        self, format: ExportFormat, *, per_turn: bool = False, include_errors: bool = False
    ) -> ExportStats:
        """What `rows` would keep and leave out.

        Raises:
            ValueError: an unknown format, or a malformed token field.
        """
        stats = ExportStats()
        for _ in export_rows(
            self.rollouts, format, per_turn=per_turn, include_errors=include_errors, stats=stats
        ):
            pass
        return stats


@dataclass(frozen=True, slots=True)
class CapturingAssistant(Generic[S]):
    """An assistant factory whose actors ask their model for the policy's tokens.

    Wraps `factory`; each actor it makes is a copy whose `settings` (a
    `ModelSettings`, as `LLMAssistant` has) say `capture_tokens=True`.
    Picklable when `factory` is, so it ships to Ray workers.
    """

    factory: ActorFactory[S]

    def __call__(self, scenario: S, seed: int) -> Actor:
        actor = self.factory(scenario, seed)
        settings = getattr(actor, "settings", None)
        if not isinstance(settings, ModelSettings):
            raise InputError(
                f"capture_tokens needs an assistant that asks a chat model with "
                f"ModelSettings (LLMAssistant); {type(actor).__name__} has no settings"
            )
        actor = copy.copy(actor)  # the factory may hand out one shared actor
        actor.settings = settings.merged(ModelSettings(capture_tokens=True))  # type: ignore[attr-defined]
        return actor


async def collect(
    scenarios: Iterable[S],
    plan: RolloutPlan[S],
    *,
    samples_per_scenario: int = 1,
    capture_tokens: bool = True,
    skip: AbstractSet[RolloutKey] = frozenset(),
    backend: Backend[S] | None = None,
) -> RolloutBatch:
    """Run `plan` on `scenarios` and return the rollouts as one batch.

    ::

        plan = RolloutPlan(assistant=policy, user=simulated_user, verifiers=graders)
        batch = await collect(scenarios, plan, samples_per_scenario=8)
        rows = batch.columns("verl")

    Args:
        scenarios: the scenarios (ids must be unique).
        plan: the actors, verifiers and limits (`RolloutPlan`).
        samples_per_scenario: rollouts per scenario (a GRPO group's size).
        capture_tokens: switch the policy's token capture on: every
            assistant the plan makes must hold `ModelSettings` (an
            `LLMAssistant`), and gets `capture_tokens=True`. The user is
            never touched: its tokens are not the policy's.
        skip: `(scenario_id, sample_index)` keys not to run.
        backend: where to run (default this process; `RayBackend` too).

    Returns:
        The rollouts in scenario order, then sample order.

    Raises:
        InputError: two scenarios share an id.
        RolloutError: a factory raised for some sample (with
            `capture_tokens`, an assistant without `ModelSettings`).
        ValueError: a count or limit is out of range.
    """
    scenario_list = list(scenarios)
    if capture_tokens:
        plan = dataclasses.replace(plan, assistant=CapturingAssistant(plan.assistant))
    items = plan_items(scenario_list, samples_per_scenario, skip)
    rollouts: list[Rollout] = []
    async with open_plan(items, plan, backend=backend) as stream:
        async for rollout in stream:
            rollouts.append(rollout)
    order = {scenario.id: position for position, scenario in enumerate(scenario_list)}
    rollouts.sort(key=lambda r: (order.get(r.scenario_id, len(order)), r.sample_index))
    return RolloutBatch(rollouts)
