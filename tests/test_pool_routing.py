"""`ModelPool`'s bookkeeping under any mix of answers and failures (fake replicas, both loops).

A unit test of the routing alone: the replicas are fake `ChatModel`s that
answer or fail as hypothesis says, so every interleaving of dialogues,
failures, probes and moves can be tried. `tests/test_pool.py` runs the pool
over real servers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convo_sim import Completion, Message, ModelError, ModelPool, ModelSettings
from convo_sim._affinity import current_dialogue, dialogue_scope

BACKENDS = ["asyncio", "trio"]


@dataclass
class Log:
    events: list[tuple[str, str, int]] = field(default_factory=list)  # (kind, dialogue, replica)
    running: list[int] = field(default_factory=list)


@dataclass
class FakeReplica:
    """Answers, or fails like a dead server (status None) or a bad request (400)."""

    index: int
    plan: list[str]  # one outcome per request: "ok", "down" or "reject"; then "ok"
    log: Log
    bound: int

    async def complete(self, messages: Sequence[Message], settings: ModelSettings) -> Completion:
        outcome = self.plan.pop(0) if self.plan else "ok"
        scope = current_dialogue()
        name = scope.dialogue_id if scope is not None else "?"
        self.log.running[self.index] += 1
        assert self.log.running[self.index] <= self.bound  # admission, at the replica itself
        try:
            await anyio.lowlevel.checkpoint()  # let the others interleave
            await anyio.lowlevel.checkpoint()
        finally:
            self.log.running[self.index] -= 1
        if outcome == "down":
            self.log.events.append(("failed", name, self.index))
            raise ModelError("no reply", status_code=None, attempts=1)
        if outcome == "reject":
            raise ModelError("bad request", status_code=400, attempts=1)
        self.log.events.append(("ok", name, self.index))
        return Completion(message=Message(role="assistant", content="ok"))


outcomes = st.lists(st.sampled_from(["ok", "ok", "down", "reject"]), max_size=12)


@pytest.mark.parametrize("backend", BACKENDS)
@given(
    plans=st.lists(outcomes, min_size=1, max_size=4),
    dialogues=st.lists(st.integers(1, 6), min_size=1, max_size=12),
    bound=st.integers(1, 3),
    cooldown=st.sampled_from([0.0, 60.0]),
)
def test_routing_bookkeeping_holds_for_any_failures(
    backend: str, plans: list[list[str]], dialogues: list[int], bound: int, cooldown: float
) -> None:
    log = Log(running=[0] * len(plans))
    replicas = [FakeReplica(i, list(p), log, bound) for i, p in enumerate(plans)]
    pool = ModelPool(replicas, max_in_flight=bound, cooldown=cooldown)
    answered = [0]

    async def one(number: int, requests: int) -> None:
        with dialogue_scope(f"d{number}"):
            for _ in range(requests):
                try:
                    await pool.complete([Message(role="user", content="hi")])
                except ModelError:
                    continue
                answered[0] += 1

    async def main() -> None:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for number, requests in enumerate(dialogues):
                    tg.start_soon(one, number, requests)

    anyio.run(main, backend=backend)
    stats = pool.stats()
    # Nothing is left bound, running or waiting once every dialogue is over.
    assert [(s.dialogues, s.in_flight, s.waiting) for s in stats] == [(0, 0, 0)] * len(plans)
    assert all(s.peak_in_flight <= bound for s in stats)
    assert sum(s.requests for s in stats) == answered[0]
    assert [s.failures for s in stats] == [
        sum(1 for kind, _, r in log.events if kind == "failed" and r == i)
        for i in range(len(plans))
    ]
    # A dialogue leaves its replica only after that replica failed.
    last: dict[str, int] = {}
    failed_since: dict[str, set[int]] = {}
    for kind, name, replica in log.events:
        if kind == "failed":
            for seen in failed_since.values():
                seen.add(replica)
            continue
        before = last.get(name)
        if before is not None and before != replica:
            assert before in failed_since[name], (name, before, replica, log.events)
        last[name] = replica
        failed_since[name] = set()


async def test_calls_outside_any_dialogue_bind_nothing() -> None:
    log = Log(running=[0, 0])
    pool = ModelPool([FakeReplica(i, [], log, 4) for i in range(2)])
    for _ in range(4):
        await pool.complete([Message(role="user", content="hi")])
    assert [s.requests for s in pool.stats()] == [2, 2]
    assert [s.dialogues for s in pool.stats()] == [0, 0]
