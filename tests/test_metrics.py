"""Metrics on hand-computed values, and the progress line."""

from __future__ import annotations

import math
from io import StringIO

import pytest

from convo_sim import (
    ErrorInfo,
    Progress,
    Rollout,
    TerminationReason,
    Usage,
    pass_at_k,
    pass_hat_k,
    summarize,
)


def record(
    scenario: str,
    index: int,
    reward: float | None,
    *,
    turns: int = 2,
    termination: TerminationReason = TerminationReason.USER_STOP,
    tokens: int = 0,
    error: bool = False,
) -> Rollout:
    return Rollout(
        responses_create_params={"input": []},
        reward=reward,
        scenario_id=scenario,
        sample_index=index,
        seed=0,
        termination=termination,
        terminated_by="test",
        turns=turns,
        usage=Usage(prompt_tokens=tokens, completion_tokens=2 * tokens, total_tokens=3 * tokens),
        error=ErrorInfo(source="assistant", type="RuntimeError", message="x") if error else None,
    )


@pytest.mark.parametrize(
    ("n", "c", "k", "at", "hat"),
    [
        (5, 2, 1, 2 / 5, 2 / 5),
        (5, 2, 2, 1 - 3 / 10, 1 / 10),
        (5, 2, 3, 1 - 1 / 10, 0.0),
        (5, 2, 4, 1.0, 0.0),
        (4, 4, 4, 1.0, 1.0),
        (4, 0, 2, 0.0, 0.0),
        (3, 1, 1, 1 / 3, 1 / 3),
    ],
)
def test_pass_at_k_and_pass_hat_k(n: int, c: int, k: int, at: float, hat: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(at)
    assert pass_hat_k(n, c, k) == pytest.approx(hat)


@pytest.mark.parametrize(("n", "c", "k"), [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_pass_metrics_reject_impossible_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
    with pytest.raises(ValueError):
        pass_hat_k(n, c, k)


def test_summary_of_three_scenarios_with_three_samples() -> None:
    rewards = {"A": [1.0, 1.0, 0.0], "B": [0.0, 0.0, 0.0], "C": [1.0, 1.0, 1.0]}
    records = [
        record(s, i, r, turns=i + 1, tokens=10)
        for s, rs in rewards.items()
        for i, r in enumerate(rs)
    ]
    summary = summarize(records)
    assert (summary.rollouts, summary.scenarios, summary.scored) == (9, 3, 9)
    assert (summary.samples_min, summary.samples_max) == (3, 3)
    assert summary.mean_reward == pytest.approx(5 / 9)
    # Sample variance (5/18) over n = 9.
    assert summary.reward_stderr == pytest.approx(math.sqrt(5 / 18 / 9))
    # A: n=3, c=2; B: c=0; C: c=3.
    assert summary.pass_at_k == pytest.approx({1: (2 / 3 + 0 + 1) / 3, 2: 2 / 3, 3: 2 / 3})
    assert summary.pass_hat_k == pytest.approx({1: 5 / 9, 2: (1 / 3 + 0 + 1) / 3, 3: 1 / 3})
    assert summary.mean_turns == pytest.approx(2.0)
    assert summary.usage == Usage(prompt_tokens=90, completion_tokens=180, total_tokens=270)


def test_threshold_decides_what_passes() -> None:
    records = [record("A", 0, 0.6), record("A", 1, 0.4)]
    assert summarize(records).pass_at_k == {1: 0.0, 2: 0.0}
    assert summarize(records, threshold=0.5).pass_at_k == pytest.approx({1: 0.5, 2: 1.0})
    assert summarize(records, threshold=0.5).pass_hat_k == pytest.approx({1: 0.5, 2: 0.0})


def test_uneven_samples_average_over_scenarios_that_have_k() -> None:
    records = [record("A", 0, 1.0), record("A", 1, 0.0), record("B", 0, 0.0)]
    summary = summarize(records)
    assert (summary.samples_min, summary.samples_max) == (1, 2)
    assert summary.pass_at_k == pytest.approx({1: (0.5 + 0.0) / 2, 2: 1.0})
    assert summary.pass_hat_k == pytest.approx({1: 0.25, 2: 0.0})


def test_unscored_records_count_for_endings_not_for_reward() -> None:
    records = [
        record("A", 0, None, termination=TerminationReason.MAX_TURNS),
        record("A", 1, 1.0),
        record("B", 0, None, termination=TerminationReason.ASSISTANT_ERROR, error=True),
        record("C", 0, 0.5, termination=TerminationReason.MAX_TURNS),
    ]
    summary = summarize(records)
    assert (summary.rollouts, summary.scored, summary.errors) == (4, 2, 1)
    assert summary.mean_reward == pytest.approx(0.75)
    assert summary.reward_stderr == pytest.approx(math.sqrt(0.125 / 2))
    assert summary.terminations == {"max_turns": 2, "user_stop": 1, "assistant_error": 1}
    assert list(summary.terminations) == ["max_turns", "user_stop", "assistant_error"]
    assert summary.pass_at_k == pytest.approx({1: 0.5})


def test_empty_and_single_record_summaries() -> None:
    empty = summarize([])
    assert (empty.rollouts, empty.mean_reward, empty.mean_turns, empty.pass_at_k) == (
        0,
        None,
        None,
        {},
    )
    one = summarize([record("A", 0, 1.0)])
    assert (one.mean_reward, one.reward_stderr, one.pass_hat_k) == (1.0, None, {1: 1.0})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_redraws_in_place_on_a_terminal() -> None:
    stream, clock = StringIO(), Clock()
    progress = Progress(stream=stream, tty=True, interval=0.5, clock=clock)
    progress.start(10, already_done=2)
    clock.now += 1.0
    progress.update(record("A", 0, 1.0))
    clock.now += 0.1  # within the interval: no redraw
    progress.update(record("A", 1, 0.0))
    assert stream.getvalue().count("\r") == 2 and "\n" not in stream.getvalue()
    clock.now += 0.9
    progress.update(record("A", 2, None))
    # 3 done in 2 s this session, 5 left: 1.5/s, ETA 3.3 s.
    last = stream.getvalue().split("\r")[-1]
    assert last == "rollouts 5/10 (50%) | 1.5/s | mean reward 0.500 | ETA 0:00:03\x1b[K"
    progress.close()
    assert stream.getvalue().endswith("\n")


def test_progress_writes_plain_periodic_lines_elsewhere() -> None:
    stream, clock = StringIO(), Clock()
    progress = Progress(stream=stream, tty=False, clock=clock)
    assert progress.interval == 10.0
    progress.start(3)
    for i in range(3):
        clock.now += 6.0
        progress.update(record("A", i, 1.0))
    progress.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines[0] == "rollouts 0/3 (0%) | 0.0/s | ETA --"
    assert len(lines) == 3  # start, one after 12 s, close
    assert lines[-1] == "rollouts 3/3 (100%) | 0.2/s | mean reward 1.000 | elapsed 0:00:18"


def test_duplicate_records_are_flagged_and_counted_once() -> None:
    # Two writers on one file left the same sample twice: the repeat would
    # skew pass@k (here: a failing sample counted twice makes k=2 look bad).
    first = [record("a", 0, 1.0), record("a", 1, 0.0), record("b", 0, 1.0)]
    repeats = [record("a", 1, 0.0), record("a", 1, 1.0), record("b", 0, 0.0)]
    clean, summary = summarize(first), summarize(first + repeats)
    assert summary.duplicates == 3 and clean.duplicates == 0
    assert summary.model_dump(exclude={"duplicates"}) == clean.model_dump(exclude={"duplicates"})
    assert summary.rollouts == 3 and summary.samples_max == 2
