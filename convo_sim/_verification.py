"""Verifier protocols, the one verifier runner, and reward aggregations.

A turn verifier scores one assistant turn in context; a final verifier
judges the finished dialogue. Both are plain callables, sync or async. A
verifier reports failure as data (a low score with a reason) and raises only
when it crashes; a crash is a zero with the error as its reason, so one
broken verifier never ends a run.

Verifiers run in one place, under one set of rules: `score_turn` for the
turn verifiers of one turn, `judge` for the final verifiers of a finished
dialogue. The orchestrator, `rescore` and the step-wise environment call
them, so a live run and a re-scored record name, number and zero the same.

A reward function turns the scores and verdicts of one dialogue into one
number. Three families are provided: `final_only`, `cumulative` (uniform,
linear by turn index, or exponential recency weighting of turn scores) and
`all_of` (every constraint must hold).

One rule stands above every reward function: the final verdict comes from
the dialogue's final assistant turn (`final_reply`). A dialogue without one
(the assistant failed or timed out, or its last message is empty,
whitespace-only or calls tools) earns 0 with reason `no_final_reply`, whatever the
aggregation, and its final verifiers are not asked, so that none of them can
grade an earlier reply instead.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, Protocol, TypeAlias

from typing_extensions import TypeVar

from convo_sim._completion import TurnContext, detector_name
from convo_sim._messages import Message, Transcript
from convo_sim._results import TerminationReason, TurnScore, Verdict

__all__ = [
    "NO_FINAL_REPLY",
    "FinalContext",
    "FinalVerifier",
    "RewardFn",
    "TurnContext",
    "TurnVerifier",
    "all_of",
    "cumulative",
    "final_only",
    "final_reply",
    "judge",
    "score_turn",
]

ScenarioT_co = TypeVar("ScenarioT_co", covariant=True, default=object)
ScenarioT_contra = TypeVar("ScenarioT_contra", contravariant=True, default=object)
S = TypeVar("S", default=object)

NO_FINAL_REPLY: Final = "no_final_reply"
"""The reason of the zero verdict given to a dialogue without a final assistant reply."""

# Endings decided by a completion detector on the message that ended the
# dialogue: a user message that ends it (a stop token, a goal reached) asks
# for no answer, so the reply before it is the final one.
_CLOSED_BY_DETECTOR: Final = frozenset(
    (TerminationReason.USER_STOP, TerminationReason.ASSISTANT_STOP, TerminationReason.GOAL_REACHED)
)
_RULE: Final = "final_reply"  # the verdict's verifier name when no final verifier was given
VERIFIER_ERROR: Final = "verifier_error"
"""The reason of the zero a verifier earns by crashing (the error is in its details)."""


@dataclass(frozen=True, slots=True)
class FinalContext(Generic[ScenarioT_co]):
    """A finished dialogue, for final verifiers; generic over the scenario type.

    Attributes:
        transcript: the whole dialogue, prefix included.
        termination: why it ended.
        turns: the assistant turns it had.
        turn_scores: every turn verifier's score, in order.
        scenario: the dialogue's scenario, if it has one.
    """

    transcript: Transcript
    termination: TerminationReason
    turns: int
    turn_scores: tuple[TurnScore, ...]
    scenario: ScenarioT_co | None = None

    @property
    def final_reply(self) -> Message | None:
        """The assistant message the final verdict is about (see `final_reply`)."""
        return final_reply(self.transcript, self.termination)


def final_reply(transcript: Transcript, termination: TerminationReason) -> Message | None:
    """The dialogue's final assistant reply, or None when it has none.

    The final reply is the last message, when it is an assistant message with
    text; a user message that ended the dialogue through a completion
    detector (`user_stop`, `goal_reached`) is skipped, since it asks for no
    answer. There is none when the assistant failed (`assistant_error`), when
    any other user message is left unanswered (the assistant timed out or the
    dialogue was cancelled while it was answering), when the dialogue ends on
    a tool result, and when the last assistant message is empty,
    whitespace-only or calls tools (with or without text: it waits for
    their results).

    Args:
        transcript: the whole dialogue, prefix included.
        termination: why it ended.
    """
    if termination is TerminationReason.ASSISTANT_ERROR:
        return None
    messages = transcript.messages
    end = len(messages)
    if end and termination in _CLOSED_BY_DETECTOR and messages[-1].role == "user":
        end -= 1
    if not end:
        return None
    last = messages[end - 1]
    # A message that calls tools is waiting for their results, not answering
    # (NeMo-Gym scores a response whose last item is a tool call 0 as well).
    if last.role != "assistant" or last.tool_calls or not last.text.strip():
        return None
    return last


def _missing_reply(ctx: FinalContext[Any]) -> str:
    """Why `ctx` has no final reply, in words."""
    if ctx.termination is TerminationReason.ASSISTANT_ERROR:
        return "the assistant failed before it answered"
    messages = ctx.transcript.messages
    last = messages[-1] if messages else None
    if ctx.termination in _CLOSED_BY_DETECTOR and last is not None and last.role == "user":
        last = messages[-2] if len(messages) > 1 else None
    if last is None:
        return "the dialogue has no assistant reply"
    if last.role == "assistant":
        return (
            "the last assistant message calls tools and waits for their results"
            if last.tool_calls
            else "the last assistant message is empty"
        )
    if last.role == "tool":
        return "the dialogue ended on a tool result, before the assistant answered"
    return f"the assistant did not answer the last {last.role} message ({ctx.termination.value})"


_Answer = TypeVar("_Answer", TurnScore, Verdict)


async def _ask(verifier: Any, ctx: object, expected: type[_Answer]) -> _Answer | dict[str, str]:
    """The verifier's answer, or the details of the zero it earns by crashing.

    A verifier crashes when it raises or answers with something that is not
    `expected`; cancellation passes through.
    """
    try:
        answer = verifier(ctx)
        if inspect.isawaitable(answer):
            answer = await answer
        if not isinstance(answer, expected):
            raise TypeError(f"returned {type(answer).__name__}, expected {expected.__name__}")
    except Exception as exc:  # a crash is a zero; cancellation passes through
        return {"error": f"{type(exc).__name__}: {exc}"}
    return answer


async def score_turn(ctx: TurnContext[S], verifiers: Sequence[TurnVerifier[S]]) -> list[TurnScore]:
    """Every turn verifier's score of one assistant turn, in order.

    Each score is named after its verifier (unless it names itself) and
    numbered with `ctx.turn`; a verifier that crashes, or returns something
    that is not a `TurnScore`, scores 0 with reason `verifier_error` and the
    error in its details. Cancellation passes through.
    """
    scores: list[TurnScore] = []
    for verifier in verifiers:
        name = detector_name(verifier)
        score = await _ask(verifier, ctx, TurnScore)
        if not isinstance(score, TurnScore):
            score = TurnScore(score=0.0, reason=VERIFIER_ERROR, details=score)
        if score.verifier != name or score.turn != ctx.turn:
            score = score.model_copy(update={"verifier": score.verifier or name, "turn": ctx.turn})
        scores.append(score)
    return scores


async def judge(
    ctx: FinalContext[S], verifiers: Sequence[FinalVerifier[S]], reward: RewardFn | None
) -> tuple[tuple[Verdict, ...], float | None]:
    """The verdicts and the reward of a finished dialogue, under the final-reply rule.

    Shared by the orchestrator and `rescore`, so that a live run and a
    re-scored record follow one rule. A verifier that crashes gives 0 with
    reason `verifier_error`; a verdict is named after its verifier unless it
    names itself. Without a final reply every verifier's verdict
    is 0 with reason `no_final_reply` (one verdict named `final_reply` when
    there are no final verifiers), and the reward is 0.0 whatever `reward`
    would make of them; with no reward function at all it stays None.

    Raises:
        Exception: only what `reward` itself raises (a bug in the caller's code).
    """
    if ctx.final_reply is None:
        if reward is None and not verifiers:
            return (), None
        detail = {"detail": _missing_reply(ctx)}
        names = [detector_name(v) for v in verifiers] or [_RULE]
        zero = tuple(
            Verdict(reward=0.0, reason=NO_FINAL_REPLY, details=detail, verifier=name)
            for name in names
        )
        return zero, None if reward is None else 0.0
    verdicts: list[Verdict] = []
    for verifier in verifiers:
        verdict = await _ask(verifier, ctx, Verdict)
        if not isinstance(verdict, Verdict):
            verdict = Verdict(reward=0.0, reason=VERIFIER_ERROR, details=verdict)
        if not verdict.verifier:
            verdict = verdict.model_copy(update={"verifier": detector_name(verifier)})
        verdicts.append(verdict)
    value = reward(ctx.turn_scores, verdicts) if reward is not None else None
    return tuple(verdicts), value


class TurnVerifier(Protocol[ScenarioT_contra]):
    """Scores one assistant turn: `TurnScore` with 0..1 and a reason.

    `TurnVerifier[CalendarScenario]` reads `ctx.scenario` as a calendar
    scenario; a bare `TurnVerifier` takes any scenario.
    """

    def __call__(
        self, ctx: TurnContext[ScenarioT_contra], /
    ) -> TurnScore | Awaitable[TurnScore]: ...


class FinalVerifier(Protocol[ScenarioT_contra]):
    """Judges a finished dialogue: `Verdict` with a reward 0..1 and a reason."""

    def __call__(self, ctx: FinalContext[ScenarioT_contra], /) -> Verdict | Awaitable[Verdict]: ...


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

    Only turns that happened are weighed: a turn the dialogue never reached
    (it ended early, by a stop or a limit) counts neither as 0 nor as 1, and
    the turn index of `linear` and `exponential` is the position among the
    scored turns. A turn that was asked for and never answered is not a turn
    either; it leaves the dialogue without a final reply, which scores 0
    before this function is asked (see `final_reply`).

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
