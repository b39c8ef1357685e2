"""Verifier protocols and reward aggregations.

A turn verifier scores one assistant turn in context; a final verifier
judges the finished dialogue. Both are plain callables, sync or async. A
verifier reports failure as data (a low score with a reason) and raises only
when it crashes; the orchestrator turns a crash into a zero with the error
as its reason, so one broken verifier never ends a run.

A reward function turns the scores and verdicts of one dialogue into one
number. Three families are provided: `final_only`, `cumulative` (uniform,
linear by turn index, or exponential recency weighting of turn scores) and
`all_of` (every constraint must hold).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias

from convo_sim.messages import Message, Transcript
from convo_sim.results import TerminationReason, TurnScore, Verdict

__all__ = [
    "FinalContext",
    "FinalVerifier",
    "RewardFn",
    "TurnContext",
    "TurnVerifier",
    "all_of",
    "cumulative",
    "final_only",
]


@dataclass(frozen=True, slots=True)
class TurnContext:
    """One assistant turn in context: the dialogue up to and including it."""

    transcript: Transcript
    message: Message
    turn: int
    scenario: object | None = None


@dataclass(frozen=True, slots=True)
class FinalContext:
    """A finished dialogue, for final verifiers."""

    transcript: Transcript
    termination: TerminationReason
    turns: int
    turn_scores: tuple[TurnScore, ...]
    scenario: object | None = None


class TurnVerifier(Protocol):
    """Scores one assistant turn: `TurnScore` with 0..1 and a reason."""

    def __call__(self, ctx: TurnContext, /) -> TurnScore | Awaitable[TurnScore]: ...


class FinalVerifier(Protocol):
    """Judges a finished dialogue: `Verdict` with a reward 0..1 and a reason."""

    def __call__(self, ctx: FinalContext, /) -> Verdict | Awaitable[Verdict]: ...


RewardFn: TypeAlias = Callable[[Sequence[TurnScore], Sequence[Verdict]], float | None]


def _per_turn(scores: Sequence[TurnScore]) -> list[float]:
    """Mean score of each turn, in turn order (several verifiers per turn)."""
    by_turn: dict[int, list[float]] = {}
    for s in scores:
        by_turn.setdefault(s.turn, []).append(s.score)
    return [sum(v) / len(v) for _, v in sorted(by_turn.items())]


def final_only(*, combine: Literal["mean", "min"] = "mean") -> RewardFn:
    """Reward from the final verdicts alone (mean or minimum of them).

    Returns None when there is no verdict.
    """

    def reward(scores: Sequence[TurnScore], verdicts: Sequence[Verdict]) -> float | None:
        if not verdicts:
            return None
        values = [v.reward for v in verdicts]
        return min(values) if combine == "min" else sum(values) / len(values)

    return reward


def cumulative(
    *,
    weighting: Literal["uniform", "linear", "exponential"] = "uniform",
    decay: float = 0.5,
    final_weight: float = 0.0,
) -> RewardFn:
    """Weighted mean of per-turn scores, optionally blended with the verdicts.

    Args:
        weighting: `uniform` weighs every turn alike; `linear` weighs turn i
            by i (later turns count more); `exponential` weighs the last turn
            1, the one before `decay`, then `decay**2`, ... (recency).
        decay: the ratio for `exponential`, in (0, 1].
        final_weight: share of the reward taken from the mean final verdict,
            in [0, 1]; the rest comes from the turns.

    Raises:
        ValueError: `decay` or `final_weight` is out of range.
    """
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"decay must be in (0, 1], got {decay!r}")
    if not 0.0 <= final_weight <= 1.0:
        raise ValueError(f"final_weight must be in [0, 1], got {final_weight!r}")

    def reward(scores: Sequence[TurnScore], verdicts: Sequence[Verdict]) -> float | None:
        turns = _per_turn(scores)
        final = sum(v.reward for v in verdicts) / len(verdicts) if verdicts else None
        if not turns:
            return final
        n = len(turns)
        if weighting == "uniform":
            weights = [1.0] * n
        elif weighting == "linear":
            weights = [float(i + 1) for i in range(n)]
        else:
            weights = [math.pow(decay, n - 1 - i) for i in range(n)]
        turn_part = sum(w * s for w, s in zip(weights, turns, strict=True)) / sum(weights)
        if final is None or final_weight == 0.0:
            return turn_part
        return (1.0 - final_weight) * turn_part + final_weight * final

    return reward


def all_of(*, threshold: float = 1.0) -> RewardFn:
    """1.0 when every turn score and every verdict reaches `threshold`, else 0.0.

    Returns None when nothing was scored.
    """

    def reward(scores: Sequence[TurnScore], verdicts: Sequence[Verdict]) -> float | None:
        if not scores and not verdicts:
            return None
        ok = all(s.score >= threshold for s in scores) and all(
            v.reward >= threshold for v in verdicts
        )
        return 1.0 if ok else 0.0

    return reward
