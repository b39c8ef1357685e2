"""The local backend: every dialogue in this process's event loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from anyio.streams.memory import MemoryObjectSendStream

from convo_sim._records import Rollout
from convo_sim._rollouts import RolloutPlan, S, run_plan

__all__ = ["LocalBackend"]


@dataclass(frozen=True, slots=True)
class LocalBackend:
    """Runs the plan in this process (what `open_rollouts` does with no backend)."""

    async def run(
        self,
        items: Sequence[tuple[S, int]],
        plan: RolloutPlan[S],
        send: MemoryObjectSendStream[Rollout],
    ) -> None:
        """Send one `Rollout` per item to `send`, in completion order.

        Raises:
            RolloutError: a factory raised for some sample.
        """
        await run_plan(items, plan, send)
