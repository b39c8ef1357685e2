"""What a run keeps per rollout it writes: counts and bits, never the records.

The peak-RSS target (10,000 against 100,000 rollouts) lives in
`benchmarks/memory.py`; these tests pin the pieces without timing: the
summary matches a straightforward reference and lets every record go, the
sample-index sets stay a bit per index, the plan is made on the fly and
the sink adds nothing per record it writes.
"""

from __future__ import annotations

import gc
import math
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convo_sim import (
    Rollout,
    RolloutSink,
    TerminationReason,
    Usage,
    iter_rollouts,
    pass_at_k,
    pass_hat_k,
    summarize,
)
from convo_sim._metrics import _Indices
from convo_sim._rollouts import PlanItems, plan_items
from convo_sim.scenarios import Scenario


def record(scenario: str, index: int, reward: float | None, turns: int = 1) -> Rollout:
    return Rollout(
        responses_create_params={"input": []},
        reward=reward,
        scenario_id=scenario,
        sample_index=index,
        seed=index,
        termination=TerminationReason.USER_STOP if reward else TerminationReason.MAX_TURNS,
        terminated_by="test",
        turns=turns,
        usage=Usage(prompt_tokens=turns, completion_tokens=1, total_tokens=turns + 1),
    )


def reference(records: list[Rollout], threshold: float) -> dict[str, object]:
    """The summary computed the plain way: every record kept, exact binomials."""
    unique: dict[tuple[str, int], Rollout] = {}
    for r in records:
        unique.setdefault(r.key, r)
    kept = list(unique.values())
    rewards = [r.reward for r in kept if r.reward is not None]
    per: dict[str, list[float]] = {}
    for r in kept:
        if r.reward is not None:
            per.setdefault(r.scenario_id, []).append(r.reward)
    tallies = [(len(v), sum(x >= threshold for x in v)) for v in per.values()]
    at, hat = {}, {}
    for k in range(1, max((n for n, _ in tallies), default=0) + 1):
        ok = [(n, c) for n, c in tallies if n >= k]
        at[k] = sum(pass_at_k(n, c, k) for n, c in ok) / len(ok)
        hat[k] = sum(pass_hat_k(n, c, k) for n, c in ok) / len(ok)
    mean = sum(rewards) / len(rewards) if rewards else None
    stderr = None
    if mean is not None and len(rewards) >= 2:
        stderr = math.sqrt(
            sum((x - mean) ** 2 for x in rewards) / (len(rewards) - 1) / len(rewards)
        )
    return {
        "rollouts": len(kept),
        "duplicates": len(records) - len(kept),
        "scored": len(rewards),
        "mean_reward": mean,
        "reward_stderr": stderr,
        "pass_at_k": at,
        "pass_hat_k": hat,
        "turns": sum(r.turns for r in kept),
    }


records_strategy = st.lists(
    st.builds(
        record,
        st.sampled_from(["a", "b", "c"]),
        st.one_of(st.integers(0, 12), st.integers(0, 10**15)),
        st.one_of(st.none(), st.sampled_from([0.0, 0.5, 1.0]), st.floats(0, 1)),
        st.integers(0, 5),
    ),
    max_size=60,
)


@given(records=records_strategy, threshold=st.sampled_from([0.5, 1.0]))
def test_the_streaming_summary_matches_the_plain_computation(
    records: list[Rollout], threshold: float
) -> None:
    summary = summarize(iter(records), threshold=threshold)
    want = reference(records, threshold)
    assert summary.rollouts == want["rollouts"]
    assert summary.duplicates == want["duplicates"]
    assert summary.scored == want["scored"]
    assert summary.mean_reward == pytest.approx(want["mean_reward"], abs=1e-12)
    assert summary.reward_stderr == pytest.approx(want["reward_stderr"], abs=1e-12)
    assert summary.pass_at_k == pytest.approx(want["pass_at_k"], abs=1e-12)
    assert summary.pass_hat_k == pytest.approx(want["pass_hat_k"], abs=1e-12)
    if summary.rollouts:
        assert summary.mean_turns == pytest.approx(want["turns"] / want["rollouts"])


def test_pass_at_k_for_thousands_of_samples_matches_the_exact_binomials() -> None:
    records = [record("a", i, 1.0 if i % 7 else 0.0) for i in range(3000)]
    summary = summarize(records)
    n, c = 3000, sum(1 for i in range(3000) if i % 7)
    for k in (1, 2, 10, 100, 2999, 3000):
        assert summary.pass_at_k[k] == pytest.approx(pass_at_k(n, c, k), rel=1e-9, abs=1e-12)
        assert summary.pass_hat_k[k] == pytest.approx(pass_hat_k(n, c, k), rel=1e-9, abs=1e-300)


def test_summarize_lets_every_record_go() -> None:
    alive: list[weakref.ref[Rollout]] = []

    def stream() -> Iterator[Rollout]:
        for i in range(200):
            r = record(f"s{i % 4}", i, 1.0)
            alive.append(weakref.ref(r))
            yield r

    summary = summarize(stream())
    gc.collect()
    assert summary.rollouts == 200
    assert sum(ref() is not None for ref in alive) == 0


@given(st.lists(st.one_of(st.integers(0, 5000), st.integers(0, 2**62)), max_size=400))
def test_sample_index_sets_are_exact_and_stay_small(indices: list[int]) -> None:
    seen = _Indices()
    plain: set[int] = set()
    for index in indices:
        assert seen.add(index) == (index not in plain)
        plain.add(index)
        assert len(seen.bits) <= 8 * seen.count + 512
    assert seen.count == len(plain)


def test_dense_sample_indices_take_a_bit_each() -> None:
    seen = _Indices()
    for index in range(100_000):
        assert seen.add(index)
    assert len(seen.bits) <= 2 * 100_000 // 8 + 512 and not seen.far
    assert not seen.add(99_999)


scenario_ids = st.lists(st.text("abc", min_size=1, max_size=3), unique=True, max_size=6)


@given(ids=scenario_ids, samples=st.integers(1, 5), data=st.data())
def test_plan_items_are_the_pairs_a_list_would_hold(
    ids: list[str], samples: int, data: st.DataObject
) -> None:
    scenarios = [Scenario(id=i) for i in ids]
    every = [(s.id, i) for i in range(samples) for s in scenarios]
    skip = set(data.draw(st.lists(st.sampled_from(every), unique=True) if every else st.just([])))
    skip |= {("elsewhere", 0)}  # keys of other runs in the same file change nothing
    items = plan_items(scenarios, samples, skip)
    want = [(s, i) for i in range(samples) for s in scenarios if (s.id, i) not in skip]
    assert isinstance(items, PlanItems)
    assert len(items) == len(want)
    assert list(items) == want
    assert [items[i] for i in range(len(want))] == want
    assert items[::2] == want[::2] and items[1::3] == want[1::3]
    if want:
        assert items[-1] == want[-1]
    with pytest.raises(IndexError):
        items[len(want)]


def test_a_fresh_plan_holds_no_pair() -> None:
    items = plan_items([Scenario(id=f"s{i}") for i in range(10)], 100_000, frozenset())
    assert len(items) == 1_000_000
    assert items._codes is None  # nothing per pair: they are computed
    assert items[999_999][1] == 99_999


def test_the_sink_adds_nothing_per_record_it_writes(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with RolloutSink(path) as sink:
        for i in range(500):
            sink.write(record("a", i, 1.0))
        assert sink.done == {} and sink.written == 500
    with RolloutSink(path) as again:  # what a resumed run skips: read back from the file
        assert len(again.done) == 500 and again.written == 0
    assert sum(1 for _ in iter_rollouts(path)) == 500
