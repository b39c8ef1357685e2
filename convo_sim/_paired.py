"""Paired comparisons of assistants: the same simulated users, differences per pair.

In an experiment every assistant meets the same users: a sample's user
seed depends on the run seed, the base scenario and the sample index only
(`RolloutPlan.seed_key`), never on the assistant. So two assistants'
rollouts of one (persona, base scenario, sample) form a *pair*, and the
difference of their rewards is free of the user's randomness. This module
finds the pairs in rollout metadata and reports, per persona and over all
of them, the mean difference with its paired-bootstrap interval, the wins,
losses and ties, and the sign-flip permutation test's p-value
(`convo_sim._stats.sign_flip_test`; exact for binary rewards). The pooled
row treats pairs of different personas as independent.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from convo_sim._records import Rollout
from convo_sim._stats import bootstrap_interval, mean, sign_flip_test

__all__ = [
    "ALL_GROUPS",
    "PairedComparison",
    "paired_comparisons",
    "paired_json",
    "write_paired_csv",
]

ALL_GROUPS = "(all)"
"""The group value of the row that pools every group's pairs."""

Interval = tuple[float, float] | None


class PairedComparison(BaseModel):
    """One assistant against the baseline, on the pairs of one group.

    Attributes:
        group: the grouping keys and this row's values (`{"persona": "terse"}`,
            or `"(all)"` for the pooled row).
        baseline: the assistant compared against.
        other: the assistant compared.
        pairs: pairs with a reward on both sides.
        baseline_mean: the baseline's mean reward over the pairs.
        other_mean: the other's mean reward over the pairs.
        mean_difference: `other_mean - baseline_mean`, with `difference_ci`
            its 95% paired-bootstrap interval (pairs resampled whole).
        wins: pairs where the other scored higher; `losses` lower; `ties` equal.
        p_value: the two-sided sign-flip permutation test (None without pairs).
        test: how the p-value was computed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: dict[str, str]
    baseline: str
    other: str
    pairs: int
    baseline_mean: float | None = None
    other_mean: float | None = None
    mean_difference: float | None = None
    difference_ci: Interval = None
    wins: int = 0
    losses: int = 0
    ties: int = 0
    p_value: float | None = None
    test: str = ""


def _value(rollout: Rollout, key: str) -> str:
    if key == "sample_index":
        return str(rollout.sample_index)
    value = rollout.metadata.get(key)
    return "(none)" if value is None else str(value)


def paired_comparisons(
    rollouts: Iterable[Rollout],
    *,
    by: str = "assistant",
    within: Sequence[str] = ("persona",),
    pair_on: Sequence[str] = ("base_scenario", "sample_index"),
    baseline: str | None = None,
    seed: int = 0,
) -> list[PairedComparison]:
    """Every other value of `by` against `baseline`, per group of `within` and pooled.

    Args:
        rollouts: the records (an experiment's: `metadata` holds `assistant`,
            `persona` and `base_scenario`).
        by: the metadata key of the compared conditions.
        within: metadata keys of the groups (one row each, then `(all)`).
        pair_on: what makes two records a pair besides the group
            (`sample_index` is the record's own).
        baseline: the condition compared against; default the first in
            sorted order.
        seed: the bootstrap's seed.

    Returns:
        Rows ordered by other condition, then group (`(all)` last); none
        when fewer than two conditions are present.
    """
    scored: dict[str, dict[tuple[tuple[str, ...], tuple[str, ...]], float]] = defaultdict(dict)
    for rollout in rollouts:
        if rollout.reward is None or rollout.metadata.get(by) is None:
            continue
        group = tuple(_value(rollout, key) for key in within)
        pair = tuple(_value(rollout, key) for key in pair_on)
        scored[str(rollout.metadata[by])][(group, pair)] = rollout.reward
    conditions = sorted(scored)
    if len(conditions) < 2:
        return []
    base = baseline if baseline in scored else conditions[0]
    rows: list[PairedComparison] = []
    for other in (c for c in conditions if c != base):
        shared = scored[base].keys() & scored[other].keys()
        groups = sorted({group for group, _ in shared})
        chosen: list[tuple[str, ...] | None] = [*groups, None]
        for wanted in chosen:  # each group, then all of them pooled
            keys = sorted(k for k in shared if wanted is None or k[0] == wanted)
            labels = (ALL_GROUPS,) * len(within) if wanted is None else wanted
            rows.append(
                _compare(
                    dict(zip(within, labels, strict=True)),
                    base,
                    other,
                    [scored[base][k] for k in keys],
                    [scored[other][k] for k in keys],
                    seed,
                )
            )
    return rows


def _compare(
    group: dict[str, str],
    baseline: str,
    other: str,
    base: Sequence[float],
    them: Sequence[float],
    seed: int,
) -> PairedComparison:
    differences = [b - a for a, b in zip(base, them, strict=True)]
    p_value, test = sign_flip_test(differences, seed=seed)
    return PairedComparison(
        group=group,
        baseline=baseline,
        other=other,
        pairs=len(differences),
        baseline_mean=mean(base),
        other_mean=mean(them),
        mean_difference=mean(differences),
        difference_ci=bootstrap_interval(differences, seed=seed),
        wins=sum(d > 0 for d in differences),
        losses=sum(d < 0 for d in differences),
        ties=sum(d == 0 for d in differences),
        p_value=p_value,
        test=test,
    )


def paired_json(rows: Sequence[PairedComparison]) -> list[Mapping[str, Any]]:
    """The rows as JSON values."""
    return [row.model_dump(mode="json") for row in rows]


def write_paired_csv(rows: Sequence[PairedComparison], path: str | Path) -> Path:
    """Write the rows as CSV (the interval as `difference_ci_low`/`_high`)."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        if rows:
            flat = []
            for row in rows:
                data: dict[str, Any] = dict(row.group)
                dumped = row.model_dump(exclude={"group", "difference_ci"})
                ci = row.difference_ci
                data.update(dumped)
                data["difference_ci_low"] = None if ci is None else ci[0]
                data["difference_ci_high"] = None if ci is None else ci[1]
                flat.append(data)
            writer = csv.DictWriter(handle, fieldnames=list(flat[0]))
            writer.writeheader()
            for record in flat:
                writer.writerow({k: "" if v is None else v for k, v in record.items()})
    return path
