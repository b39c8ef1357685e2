"""Experiment tables: rollouts grouped into cells, with confidence intervals.

A user-modeling experiment runs a grid (personas x assistants x seeds) and
records, in each rollout's `metadata`, the cell it belongs to (`persona`,
`assistant`) and the user-fidelity metrics (`fidelity`, the fields of
`convo_sim.users.UserFidelity`). This module turns such rollouts into one
`CellStats` row per cell and writes the table as CSV and JSON. It reads
metadata only, so it works on any rollout file, and a rollout without the
keys falls into the `(none)` group.

Intervals (95%): Wilson score for proportions (pass rate, premature stops,
stop-token discipline); percentile bootstrap with a fixed seed for means
(reward, goal coverage, leakage, turns). See `convo_sim._stats`.

Failures are split by who failed (`Rollout.user_failure`): a failed record
whose user has a `critical` tag is a *simulator* failure, any other failed
record an *assistant* failure. Paired differences between assistants are in
`convo_sim._paired`.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from convo_sim._metrics import summarize
from convo_sim._records import Rollout
from convo_sim._stats import DEFAULT_RESAMPLES, bootstrap_interval, mean, wilson_interval
from convo_sim._user_failure import is_simulator_failure

__all__ = [
    "NO_GROUP",
    "CellStats",
    "cell_stats",
    "failure_split",
    "write_table_csv",
    "write_table_json",
]

NO_GROUP = "(none)"
"""The group of rollouts whose metadata lacks a grouping key."""

Interval = tuple[float, float] | None


class CellStats(BaseModel):
    """The numbers of one cell of an experiment grid.

    Attributes:
        group: the grouping keys and this cell's values (`{"persona": "terse"}`).
        rollouts: records in the cell.
        scored: records with a reward.
        errors: records whose dialogue ended in an error (an actor or model
            that failed, a verifier that crashed); they score 0, so a cell
            with errors measures the failure, not the assistant.
        mean_reward: mean reward, with `reward_ci` its bootstrap interval.
        pass_rate: share of scored records at or above the threshold, with
            `pass_ci` its Wilson interval.
        pass_hat_k: k -> pass^k (all k samples of a scenario pass).
        mean_turns: mean assistant turns, with `turns_ci`.
        terminations: termination reason -> count.
        fidelity_n: records carrying fidelity metrics (the rest are skipped below).
        goal_coverage: mean goal coverage, with `coverage_ci`.
        premature_stop_rate: share of premature stops, with `premature_stop_ci`.
        stop_ok_rate: share with a disciplined stop token, with `stop_ok_ci`.
        leakage: mean leakage over records with a persona, with `leakage_ci`.
        reviewed: records whose user was reviewed (`user_failure` not None).
        user_failures: reviewed records whose user did something wrong.
        failure_kinds: user-failure kind -> records with such a tag.
        simulator_failures: failed records whose user made the goal
            unreachable (a `critical` tag): the simulator failed.
        assistant_failures: the other failed records: the assistant failed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: dict[str, str]
    rollouts: int
    scored: int
    errors: int = 0
    mean_reward: float | None = None
    reward_ci: Interval = None
    pass_rate: float | None = None
    pass_ci: Interval = None
    pass_hat_k: dict[int, float] = Field(default_factory=dict)
    mean_turns: float | None = None
    turns_ci: Interval = None
    terminations: dict[str, int] = Field(default_factory=dict)
    fidelity_n: int = 0
    goal_coverage: float | None = None
    coverage_ci: Interval = None
    premature_stop_rate: float | None = None
    premature_stop_ci: Interval = None
    stop_ok_rate: float | None = None
    stop_ok_ci: Interval = None
    leakage: float | None = None
    leakage_ci: Interval = None
    reviewed: int = 0
    user_failures: int = 0
    failure_kinds: dict[str, int] = Field(default_factory=dict)
    simulator_failures: int = 0
    assistant_failures: int = 0


def failure_split(rollouts: Iterable[Rollout], threshold: float = 1.0) -> dict[str, Any]:
    """Who failed: `reviewed`, `user_failures`, `failure_kinds`, `simulator_failures`,
    `assistant_failures` (the `CellStats` fields) over `rollouts`."""
    kinds: dict[str, int] = defaultdict(int)
    reviewed = user_failures = simulator = assistant = 0
    for rollout in rollouts:
        failure = rollout.user_failure
        if failure is not None:
            reviewed += 1
        if failure:
            user_failures += 1
            for kind in sorted({tag.kind for tag in failure}):
                kinds[kind] += 1
        if rollout.reward is not None and rollout.reward >= threshold:
            continue
        if is_simulator_failure(failure):
            simulator += 1
        else:
            assistant += 1
    return {
        "reviewed": reviewed,
        "user_failures": user_failures,
        "failure_kinds": dict(sorted(kinds.items())),
        "simulator_failures": simulator,
        "assistant_failures": assistant,
    }


def _group_value(rollout: Rollout, key: str) -> str:
    value = rollout.metadata.get(key)
    return NO_GROUP if value is None else str(value)


def _fidelity(rollout: Rollout) -> Mapping[str, Any] | None:
    value = rollout.metadata.get("fidelity")
    return value if isinstance(value, Mapping) else None


def _rate(flags: Sequence[bool]) -> tuple[float | None, Interval]:
    if not flags:
        return None, None
    return sum(flags) / len(flags), wilson_interval(sum(flags), len(flags))


def _mean(values: Sequence[float], seed: int) -> tuple[float | None, Interval]:
    return mean(values), bootstrap_interval(values, seed=seed)


def cell_stats(
    rollouts: Iterable[Rollout],
    *,
    by: Sequence[str] = ("persona", "assistant"),
    threshold: float = 1.0,
    seed: int = 0,
) -> list[CellStats]:
    """One row per distinct combination of the metadata keys `by`, sorted by them.

    Args:
        rollouts: the records, any order.
        by: metadata keys that define a cell.
        threshold: the reward at or above which a record passes.
        seed: the bootstrap's seed (fixed, so tables are reproducible).
    """
    cells: dict[tuple[str, ...], list[Rollout]] = defaultdict(list)
    for rollout in rollouts:
        cells[tuple(_group_value(rollout, key) for key in by)].append(rollout)
    rows: list[CellStats] = []
    for values in sorted(cells):
        records = cells[values]
        summary = summarize(records, threshold=threshold)
        rewards = [r.reward for r in records if r.reward is not None]
        reward, reward_ci = _mean(rewards, seed)
        pass_rate, pass_ci = _rate([x >= threshold for x in rewards])
        turns, turns_ci = _mean([float(r.turns) for r in records], seed)
        fids = [f for f in map(_fidelity, records) if f is not None]
        coverage, coverage_ci = _mean([float(f["goal_coverage"]) for f in fids], seed)
        premature, premature_ci = _rate([bool(f["premature_stop"]) for f in fids])
        stop_ok, stop_ok_ci = _rate([f["stop_discipline"] == "ok" for f in fids])
        leaks = [float(f["leakage"]) for f in fids if f.get("leakage") is not None]
        leakage, leakage_ci = _mean(leaks, seed)
        rows.append(
            CellStats(
                group=dict(zip(by, values, strict=True)),
                rollouts=len(records),
                scored=len(rewards),
                errors=sum(r.error is not None for r in records),
                mean_reward=reward,
                reward_ci=reward_ci,
                pass_rate=pass_rate,
                pass_ci=pass_ci,
                pass_hat_k=summary.pass_hat_k,
                mean_turns=turns,
                turns_ci=turns_ci,
                terminations=summary.terminations,
                fidelity_n=len(fids),
                goal_coverage=coverage,
                coverage_ci=coverage_ci,
                premature_stop_rate=premature,
                premature_stop_ci=premature_ci,
                stop_ok_rate=stop_ok,
                stop_ok_ci=stop_ok_ci,
                leakage=leakage,
                leakage_ci=leakage_ci,
                **failure_split(records, threshold),
            )
        )
    return rows


_INTERVALS = (
    ("mean_reward", "reward_ci"),
    ("pass_rate", "pass_ci"),
    ("mean_turns", "turns_ci"),
    ("goal_coverage", "coverage_ci"),
    ("premature_stop_rate", "premature_stop_ci"),
    ("stop_ok_rate", "stop_ok_ci"),
    ("leakage", "leakage_ci"),
)


def _flat(row: CellStats, max_k: int) -> dict[str, Any]:
    out: dict[str, Any] = dict(row.group)
    out["rollouts"] = row.rollouts
    out["scored"] = row.scored
    out["errors"] = row.errors
    for name, ci_name in _INTERVALS:
        interval: Interval = getattr(row, ci_name)
        out[name] = getattr(row, name)
        out[f"{name}_ci_low"] = None if interval is None else interval[0]
        out[f"{name}_ci_high"] = None if interval is None else interval[1]
    for k in range(1, max_k + 1):
        out[f"pass_hat_{k}"] = row.pass_hat_k.get(k)
    out["fidelity_n"] = row.fidelity_n
    out["reviewed"] = row.reviewed
    out["user_failures"] = row.user_failures
    out["simulator_failures"] = row.simulator_failures
    out["assistant_failures"] = row.assistant_failures
    out["failure_kinds"] = ";".join(f"{k}={v}" for k, v in row.failure_kinds.items())
    out["terminations"] = ";".join(f"{k}={v}" for k, v in row.terminations.items())
    return out


def write_table_csv(rows: Sequence[CellStats], path: str | Path) -> Path:
    """Write the table as CSV, one flat row per cell (intervals as `_ci_low`/`_ci_high`).

    Empty cells mean "not measured" (no scored records, no fidelity metrics).
    """
    max_k = max((max(r.pass_hat_k, default=0) for r in rows), default=0)
    flat = [_flat(r, max_k) for r in rows]
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        if flat:
            writer = csv.DictWriter(handle, fieldnames=list(flat[0]))
            writer.writeheader()
            for record in flat:
                writer.writerow({k: "" if v is None else v for k, v in record.items()})
    return path


def write_table_json(
    rows: Sequence[CellStats],
    path: str | Path,
    *,
    meta: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the table as JSON: `{"meta": ..., "cells": [...], **extra}`."""
    payload = {
        "meta": dict(meta or {}),
        "intervals": "95%: Wilson score for rates; percentile bootstrap "
        f"({DEFAULT_RESAMPLES} resamples, fixed seed) for means",
        "cells": [r.model_dump(mode="json") for r in rows],
        **dict(extra or {}),
    }
    path = Path(path)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path
