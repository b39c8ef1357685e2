"""Result records: termination reasons, scores, verdicts, timings, usage.

These are plain data (frozen pydantic models) so that a `DialogueResult`
serialises losslessly into a rollout record and back.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from convo_sim._messages import Transcript

__all__ = [
    "DialogueResult",
    "ErrorInfo",
    "TerminationReason",
    "Timing",
    "TurnScore",
    "Usage",
    "Verdict",
]


class TerminationReason(StrEnum):
    """Why a dialogue ended. Every `DialogueResult` carries exactly one."""

    USER_STOP = "user_stop"
    """The simulated user sent its stop signal (`###STOP###` by default)."""
    ASSISTANT_STOP = "assistant_stop"
    """The assistant said one of its completion phrases."""
    GOAL_REACHED = "goal_reached"
    """A state predicate saw the goal state."""
    MAX_TURNS = "max_turns"
    """The turn limit was reached."""
    MAX_STEPS = "max_steps"
    """The step limit was reached: the assistant's messages in all (`max_steps`) or
    within one turn (`max_turn_steps`), tool-calling steps included."""
    TURN_TIMEOUT = "turn_timeout"
    """An actor took longer than the turn timeout, or the dialogue's time budget ran out."""
    ASSISTANT_ERROR = "assistant_error"
    """The assistant actor raised, or replied with something unusable."""
    USER_ERROR = "user_error"
    """The user-simulator actor raised, or replied with something unusable."""
    CANCELLED = "cancelled"
    """The caller asked the dialogue to stop early (the `stop` event)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TurnScore(_Frozen):
    """A turn verifier's score for one assistant turn.

    Attributes:
        score: 0 (worst) to 1 (best).
        reason: short machine-readable reason (`pass`, `conflicting_events`).
        details: anything that explains the score, in words or data.
        verifier: the verifier's name (filled in by the orchestrator).
        turn: 1-based index of the assistant turn (filled in by the orchestrator).
    """

    score: float = Field(ge=0.0, le=1.0)
    reason: str = ""
    details: Mapping[str, Any] = Field(default_factory=dict)
    verifier: str = ""
    turn: int = 0


class Verdict(_Frozen):
    """A final verifier's judgement of a finished dialogue.

    Attributes:
        reward: 0 (worst) to 1 (best).
        reason: short machine-readable reason.
        details: anything that explains the reward.
        verifier: the verifier's name (filled in by the orchestrator).
    """

    reward: float = Field(ge=0.0, le=1.0)
    reason: str = ""
    details: Mapping[str, Any] = Field(default_factory=dict)
    verifier: str = ""

    @property
    def passed(self) -> bool:
        """True when the reward is full marks."""
        return self.reward >= 1.0


class ErrorInfo(_Frozen):
    """What went wrong, recorded as data instead of raised.

    Attributes:
        source: which part failed; `record` when the finished record could
            not be written as JSON and was escaped (`Rollout.escaped`).
        type: the exception's class name.
        message: the exception's text (never contains API keys).
        turn: the turn in which it happened.
    """

    source: Literal["assistant", "user", "verifier", "completion", "record"]
    type: str
    message: str
    turn: int = 0


class Timing(_Frozen):
    """How long one actor took to produce one message."""

    turn: int
    role: Literal["assistant", "user"]
    seconds: float


class Usage(_Frozen):
    """Token usage as reported by models (zero for rule-based actors)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class DialogueResult(_Frozen):
    """Everything one finished dialogue produced.

    Attributes:
        dialogue_id: identifier bound to every log event of the dialogue.
        transcript: the whole dialogue, including any prefix it started from.
        termination: why it ended.
        terminated_by: name of the detector or limit that ended it.
        turns: assistant turns produced in this run (a prefix does not count).
        turn_scores: every turn verifier's score for every assistant turn.
        verdicts: every final verifier's verdict.
        reward: the aggregated reward, or None when nothing was scored.
        timings: per-message latencies.
        usage: token usage summed over the dialogue.
        error: the failure that ended the dialogue, if any.
        duration_s: wall time of the whole dialogue.
    """

    dialogue_id: str
    transcript: Transcript
    termination: TerminationReason
    terminated_by: str
    turns: int
    turn_scores: tuple[TurnScore, ...] = ()
    verdicts: tuple[Verdict, ...] = ()
    reward: float | None = None
    timings: tuple[Timing, ...] = ()
    usage: Usage = Field(default_factory=Usage)
    error: ErrorInfo | None = None
    duration_s: float = 0.0
