"""Metrics over rollouts: mean reward, pass@k, pass^k, terminations, turns, tokens.

For a scenario with `n` scored samples of which `c` passed (reward at or
above the threshold, 1.0 by default):

* pass@k = 1 - C(n-c, k) / C(n, k): the chance that at least one of k
  samples drawn without replacement passes (the unbiased estimator of
  Chen et al., 2021);
* pass^k = C(c, k) / C(n, k): the chance that all k pass (tau-bench's
  reliability measure).

Both are averaged over the scenarios that have at least k scored samples.
Rollouts with no reward (nothing scored them) count towards terminations,
turns and tokens but not towards reward metrics.

A sample (scenario id and sample index) counts once: a repeat of one
already seen (a file written by two runs at once, say) is left out and
counted in `Summary.duplicates`, so it cannot skew pass@k.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from convo_sim._records import Rollout
from convo_sim._results import Usage

__all__ = ["Summary", "pass_at_k", "pass_hat_k", "summarize", "unique_rollouts"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of `k` of `n` samples passes, `c` of them passing.

    Raises:
        ValueError: not 0 <= c <= n, or not 1 <= k <= n.
    """
    _check(n, c, k)
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """The chance that all `k` of `n` samples pass, `c` of them passing.

    Raises:
        ValueError: not 0 <= c <= n, or not 1 <= k <= n.
    """
    _check(n, c, k)
    return math.comb(c, k) / math.comb(n, k)


def _check(n: int, c: int, k: int) -> None:
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c!r}, n={n!r}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k!r}, n={n!r}")


class Summary(BaseModel):
    """The numbers a run is judged by.

    Attributes:
        rollouts: records summarised.
        scenarios: distinct scenario ids among them.
        samples_min: fewest records of one scenario.
        samples_max: most records of one scenario.
        scored: records with a reward.
        threshold: the reward at or above which a sample passes.
        mean_reward: mean reward of the scored records (None if none).
        reward_stderr: its standard error, sample std / sqrt(n) (None below 2).
        pass_at_k: k -> mean pass@k over scenarios with at least k scored samples.
        pass_hat_k: k -> mean pass^k, likewise.
        terminations: termination reason -> count, most common first.
        mean_turns: mean assistant turns per dialogue (None if no records).
        usage: token usage summed over all records.
        errors: records that ended with an actor error or timeout.
        duplicates: records left out as repeats of a sample already counted.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rollouts: int
    scenarios: int
    samples_min: int = 0
    samples_max: int = 0
    scored: int
    threshold: float = 1.0
    mean_reward: float | None = None
    reward_stderr: float | None = None
    pass_at_k: dict[int, float] = Field(default_factory=dict)
    pass_hat_k: dict[int, float] = Field(default_factory=dict)
    terminations: dict[str, int] = Field(default_factory=dict)
    mean_turns: float | None = None
    usage: Usage = Field(default_factory=Usage)
    errors: int = 0
    duplicates: int = 0


def summarize(rollouts: Iterable[Rollout], *, threshold: float = 1.0) -> Summary:
    """Compute the summary of a set of rollouts (any order, any number per scenario).

    Each `(scenario_id, sample_index)` counts once, the first record of it
    seen; later ones are counted in `duplicates` only.
    """
    records, duplicates = unique_rollouts(rollouts)
    per_scenario: dict[str, list[float]] = defaultdict(list)
    counts: Counter[str] = Counter()
    terminations: Counter[str] = Counter()
    rewards: list[float] = []
    usage = Usage()
    for r in records:
        counts[r.scenario_id] += 1
        terminations[r.termination.value] += 1
        usage = usage + r.usage
        if r.reward is not None:
            rewards.append(r.reward)
            per_scenario[r.scenario_id].append(r.reward)

    mean = sum(rewards) / len(rewards) if rewards else None
    stderr: float | None = None
    if mean is not None and len(rewards) >= 2:
        variance = sum((x - mean) ** 2 for x in rewards) / (len(rewards) - 1)
        stderr = math.sqrt(variance / len(rewards))

    at_k: dict[int, float] = {}
    hat_k: dict[int, float] = {}
    tallies = [(len(v), sum(x >= threshold for x in v)) for v in per_scenario.values()]
    for k in range(1, max((n for n, _ in tallies), default=0) + 1):
        eligible = [(n, c) for n, c in tallies if n >= k]
        at_k[k] = sum(pass_at_k(n, c, k) for n, c in eligible) / len(eligible)
        hat_k[k] = sum(pass_hat_k(n, c, k) for n, c in eligible) / len(eligible)

    return Summary(
        rollouts=len(records),
        scenarios=len(counts),
        samples_min=min(counts.values(), default=0),
        samples_max=max(counts.values(), default=0),
        scored=len(rewards),
        threshold=threshold,
        mean_reward=mean,
        reward_stderr=stderr,
        pass_at_k=at_k,
        pass_hat_k=hat_k,
        terminations=dict(terminations.most_common()),
        mean_turns=sum(r.turns for r in records) / len(records) if records else None,
        usage=usage,
        errors=sum(r.error is not None for r in records),
        duplicates=duplicates,
    )


def unique_rollouts(rollouts: Iterable[Rollout]) -> tuple[list[Rollout], int]:
    """The first record of each sample, in order, and how many repeats were left out."""
    seen: set[tuple[str, int]] = set()
    unique: list[Rollout] = []
    repeats = 0
    for r in rollouts:
        if r.key in seen:
            repeats += 1
        else:
            seen.add(r.key)
            unique.append(r)
    return unique, repeats
