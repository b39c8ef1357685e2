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
from collections import Counter
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
    seen; later ones are counted in `duplicates` only. The records are read
    once, as they come, and none is kept: memory grows with the number of
    scenarios and the samples per scenario (a bit per sample index), not
    with the records, so a generator over a file of any size will do.
    """
    tally = _Tally(threshold)
    for rollout in rollouts:
        tally.add(rollout)
    return tally.summary()


class _Indices:
    """The sample indices seen of one scenario: a bitmap while they are dense, a set beyond.

    An index far beyond what the bitmap holds (a file's `sample_index`
    of 10**12, say) goes to the set, so the bitmap never outgrows about
    8 bytes per index seen.
    """

    __slots__ = ("bits", "count", "far")

    def __init__(self) -> None:
        self.bits = bytearray()
        self.count = 0
        self.far: set[int] | None = None

    def add(self, index: int) -> bool:
        """Note `index`; False if it was seen before."""
        byte, bit = divmod(index, 8)
        bits = self.bits
        limit = 8 * self.count + 512
        if byte >= len(bits) and byte < limit:
            self._grow(min(max(byte + 1, 2 * len(bits)), limit))
            bits = self.bits
        if byte < len(bits):
            if bits[byte] >> bit & 1:
                return False
            bits[byte] |= 1 << bit
        else:
            far = self.far if self.far is not None else set()
            if index in far:
                return False
            far.add(index)
            self.far = far
        self.count += 1
        return True

    def _grow(self, size: int) -> None:
        self.bits.extend(bytes(size - len(self.bits)))
        if self.far:
            limit = 8 * len(self.bits)
            for index in [i for i in self.far if i < limit]:
                self.far.discard(index)
                self.bits[index // 8] |= 1 << index % 8


class _Tally:
    """What `summarize` keeps while it reads: counts and sums, no records."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        # scenario id -> [records, scored, passed]
        self.per_scenario: dict[str, list[int]] = {}
        self.seen: dict[str, _Indices] = {}
        self.terminations: Counter[str] = Counter()
        self.records = self.duplicates = self.turns = self.errors = 0
        self.usage = Usage()
        # Welford's running mean and sum of squared deviations of the rewards.
        self.scored = 0
        self.mean = 0.0
        self.squares = 0.0

    def add(self, r: Rollout) -> None:
        seen = self.seen.get(r.scenario_id)
        if seen is None:
            seen = self.seen[r.scenario_id] = _Indices()
            self.per_scenario[r.scenario_id] = [0, 0, 0]
        if not seen.add(r.sample_index):
            self.duplicates += 1
            return
        counts = self.per_scenario[r.scenario_id]
        counts[0] += 1
        self.records += 1
        self.terminations[r.termination.value] += 1
        self.turns += r.turns
        self.errors += r.error is not None
        self.usage = self.usage + r.usage
        if r.reward is not None:
            counts[1] += 1
            counts[2] += r.reward >= self.threshold
            self.scored += 1
            delta = r.reward - self.mean
            self.mean += delta / self.scored
            self.squares += delta * (r.reward - self.mean)

    def summary(self) -> Summary:
        mean = self.mean if self.scored else None
        stderr: float | None = None
        if self.scored >= 2:
            stderr = math.sqrt(self.squares / (self.scored - 1) / self.scored)
        at_k, hat_k = _pass_curves([(n, c) for _, n, c in self.per_scenario.values() if n])
        sizes = [records for records, _, _ in self.per_scenario.values()]
        return Summary(
            rollouts=self.records,
            scenarios=len(self.per_scenario),
            samples_min=min(sizes, default=0),
            samples_max=max(sizes, default=0),
            scored=self.scored,
            threshold=self.threshold,
            mean_reward=mean,
            reward_stderr=stderr,
            pass_at_k=at_k,
            pass_hat_k=hat_k,
            terminations=dict(self.terminations.most_common()),
            mean_turns=self.turns / self.records if self.records else None,
            usage=self.usage,
            errors=self.errors,
            duplicates=self.duplicates,
        )


def _pass_curves(tallies: list[tuple[int, int]]) -> tuple[dict[int, float], dict[int, float]]:
    """pass@k and pass^k for every k, averaged over the scenarios with at least k scored.

    Per scenario, C(n-c, k) / C(n, k) and C(c, k) / C(n, k) follow from
    their values at k-1 by one factor each, so all k cost O(n) floats
    rather than O(n) big-integer binomials apiece (10,000 samples: 14 s
    per scenario with `math.comb`).
    """
    most = max((n for n, _ in tallies), default=0)
    fail_all = [0.0] * (most + 1)  # summed C(n-c, k) / C(n, k)
    pass_all = [0.0] * (most + 1)  # summed C(c, k) / C(n, k)
    eligible = [0] * (most + 1)
    for n, c in tallies:
        fail = hit = 1.0
        for k in range(1, n + 1):
            fail *= max(n - c - k + 1, 0) / (n - k + 1)
            hit *= max(c - k + 1, 0) / (n - k + 1)
            fail_all[k] += fail
            pass_all[k] += hit
            eligible[k] += 1
    at_k = {k: 1.0 - fail_all[k] / eligible[k] for k in range(1, most + 1)}
    hat_k = {k: pass_all[k] / eligible[k] for k in range(1, most + 1)}
    return at_k, hat_k


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
