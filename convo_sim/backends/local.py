"""The local backend: every dialogue in this process's event loop."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from convo_sim.records import Rollout
from convo_sim.rollouts import RolloutPlan, S, run_plan

__all__ = ["LocalBackend"]


@dataclass(frozen=True, slots=True)
class LocalBackend:
    """Runs the plan in this process (what `generate_rollouts` does with no backend)."""

    def run(
        self, items: Sequence[tuple[S, int]], plan: RolloutPlan[S]
    ) -> AsyncGenerator[Rollout, None]:
        """Yield one `Rollout` per item, in completion order.

        Raises:
            RolloutError: a factory raised for some sample.
        """
        return run_plan(items, plan)
