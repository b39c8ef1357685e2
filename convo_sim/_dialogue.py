"""One dialogue's rules, message by message: the state machine both loops drive.

`run_dialogue` calls both actors itself; `DialogueEnv` lets a trainer supply
the assistant's messages and calls only the simulated user. Both hand every
message to one `Dialogue`, which owns what a message does: who speaks next,
the turn count, the turn verifiers, the completion detectors, the turn
limit, failures and timeouts, and at the end the final verifiers and the
reward. Neither loop has rules of its own, so the two cannot drift apart.

A turn is one user message and the assistant's answer. `take` decides who
speaks next after each message (`speaker`). With a tool environment
(`convo_sim._tools.ToolEnv`), an assistant message that calls tools is a
step within the turn: the dialogue runs the calls, appends their results
and asks the assistant again, until it answers the user (a message without
tool calls), which ends the turn. Turn verifiers and completion detectors
see only the answers. `max_turns` bounds the turns, `max_steps` the
assistant's messages in all and `max_turn_steps` those within one turn;
each ends the dialogue with its own termination reason. Without a tool
environment a message's tool calls are not run and it ends the turn as any
answer does (the calendar's behaviour).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from convo_sim import _logging
from convo_sim._actors import ActorRole, View
from convo_sim._completion import Detector, Stop, TurnContext, check_detector, detector_name
from convo_sim._messages import Message, Transcript
from convo_sim._results import (
    DialogueResult,
    ErrorInfo,
    TerminationReason,
    Timing,
    TurnScore,
    Usage,
)
from convo_sim._tools import ToolEnv
from convo_sim._verification import FinalContext, FinalVerifier, RewardFn, TurnVerifier, judge
from convo_sim._verification import score_turn as _score_turn

__all__ = ["Dialogue", "Failure", "check_counts", "first_speaker", "usage_of"]

S = TypeVar("S")


@dataclass(slots=True)
class Failure:
    """An actor's exception, carried to the dialogue as data."""

    exc: Exception


def check_counts(**limits: int | None) -> None:
    """Check that every count limit (`max_turns`, `max_steps`, ...) is None or at least 1.

    Raises:
        ValueError: naming the first limit out of range.
    """
    for name, count in limits.items():
        if count is not None and count < 1:
            raise ValueError(f"{name} must be at least 1 or None, got {count!r}")


def first_speaker(transcript: Transcript, opening: ActorRole) -> ActorRole:
    """Who speaks first: the side that did not speak last in `transcript`, else `opening`."""
    for message in reversed(transcript.messages):
        if message.role == "user":
            return "assistant"
        if message.role in ("assistant", "tool"):
            return "user"
    return opening


class Dialogue(Generic[S]):
    """Everything one dialogue has produced so far, and the rules for the next message.

    The loop that drives it asks `view()` of `speaker`, gets a reply from
    that side (or a `Failure`, or a timeout) and hands it to `take`, until
    `stop` is set; then `finish` judges the dialogue. The state survives
    cancellation, so a dialogue cut short still gives its partial result.

    Attributes:
        transcript: the dialogue so far, prefix included.
        speaker: the side asked for the next message.
        turns: assistant turns produced (a prefix does not count).
        scores: every turn verifier's score so far.
        stop: why the dialogue ended; None while it goes on.
        error: the failure that ended it, if any.
        misuse: an exception of the caller's code (a crashing completion
            detector), to be raised once the dialogue is wound down.
    """

    __slots__ = (
        "detectors",
        "error",
        "log",
        "log_content",
        "max_steps",
        "max_turn_steps",
        "max_turns",
        "misuse",
        "scenario",
        "scores",
        "speaker",
        "steps",
        "stop",
        "timings",
        "tools",
        "transcript",
        "turn_steps",
        "turn_verifiers",
        "turns",
    )

    def __init__(
        self,
        transcript: Transcript,
        *,
        scenario: S | None,
        opening: ActorRole,
        max_turns: int | None,
        detectors: Sequence[Detector],
        turn_verifiers: Sequence[TurnVerifier[S]],
        log: Any,
        tools: ToolEnv[Any] | None = None,
        max_steps: int | None = None,
        max_turn_steps: int | None = None,
    ) -> None:
        self.transcript = transcript
        self.scenario = scenario
        self.speaker: ActorRole = first_speaker(transcript, opening)
        last = transcript.last
        if tools is not None and last is not None and last.role == "tool":
            # A prefix that ends on a tool result waits for the assistant.
            self.speaker = "assistant"
        self.tools = tools
        self.max_turns = max_turns
        self.max_steps = max_steps
        self.max_turn_steps = max_turn_steps
        self.steps = 0
        self.turn_steps = 0
        self.detectors = detectors
        self.turn_verifiers = turn_verifiers
        self.log = log
        self.log_content = _logging.content_logging_enabled()
        self.turns = 0
        self.scores: list[TurnScore] = []
        # (turn, role, seconds): plain tuples of atoms, which the collector
        # stops tracking; the `Timing` records are built once, in `finish`.
        self.timings: list[tuple[int, ActorRole, float]] = []
        self.stop: Stop | None = None
        self.error: ErrorInfo | None = None
        self.misuse: BaseException | None = None

    @property
    def turn(self) -> int:
        """The turn the next message belongs to (the user's message opens it)."""
        return self.turns + 1

    def view(self) -> View[S]:
        """What `speaker` sees when asked for the next message (the assistant: the tools too)."""
        if self.tools is not None and self.speaker == "assistant":
            return View(
                "assistant", self.transcript, self.turns + 1, self.scenario, self.tools.schemas()
            )
        return View(self.speaker, self.transcript, self.turns + 1, self.scenario)

    async def take(self, reply: object, seconds: float) -> None:
        """Add `speaker`'s reply (or its `Failure`) and apply every rule to it.

        Sets `stop` when the dialogue is over; otherwise `speaker` says who
        goes next. Anything that is not a `Message` is the speaker's failure.
        """
        role = self.speaker
        turn = self.turns + 1
        if not isinstance(reply, Message):
            if not isinstance(reply, Failure):
                reply = Failure(
                    TypeError(f"respond() returned {type(reply).__name__}, expected Message")
                )
            self._fail(role, turn, reply.exc)
            return
        if reply.role != role:
            reply = reply.model_copy(update={"role": role})
        self.transcript = self.transcript.append(reply)
        self.timings.append((turn, role, seconds))
        if role == "assistant":
            self.steps += 1
            self.turn_steps += 1
            if reply.tool_calls and self.tools is not None:
                self._run_tools(reply, turn)
                return
            self.turn_steps = 0
        # One context per message, made only when someone reads it: the turn
        # verifiers and the completion detectors see the same one.
        ctx: TurnContext[S] | None = None
        if role == "assistant":
            self.turns = turn
            if self.turn_verifiers:
                ctx = TurnContext(self.transcript, reply, turn, self.scenario)
                self.scores.extend(await _score_turn(ctx, self.turn_verifiers))
        if self.log_content:
            self.log.debug(
                "turn.completed",
                turn=turn,
                role=role,
                latency_ms=seconds * 1000,
                content=reply.content,
            )
        else:
            self.log.debug("turn.completed", turn=turn, role=role, latency_ms=seconds * 1000)
        if self.detectors:
            if ctx is None:
                ctx = TurnContext(self.transcript, reply, turn, self.scenario)
            for detector in self.detectors:
                try:
                    decided = await check_detector(detector, ctx)
                except Exception as exc:
                    self.misuse = exc
                    self.stop = Stop(TerminationReason.CANCELLED, detector_name(detector))
                    return
                if decided is not None:
                    self.stop = decided
                    return
        if role == "assistant":
            if self.max_turns is not None and self.turns >= self.max_turns:
                self.stop = Stop(TerminationReason.MAX_TURNS, f"max_turns({self.max_turns})")
                return
            if self.max_steps is not None and self.steps >= self.max_steps:
                self.stop = Stop(TerminationReason.MAX_STEPS, f"max_steps({self.max_steps})")
                return
            self.speaker = "user"
        else:
            self.speaker = "assistant"

    def _run_tools(self, reply: Message, turn: int) -> None:
        """A step: run `reply`'s calls, append their results; the assistant goes again."""
        assert self.tools is not None
        env = self.tools
        errors = env.errors
        results = [env.run(call) for call in reply.tool_calls]
        self.transcript = self.transcript.extend(results)
        self.log.debug(
            "tools.called",
            turn=turn,
            calls=len(results),
            errors=env.errors - errors,
            tools=[call.name for call in reply.tool_calls],
        )
        if self.max_steps is not None and self.steps >= self.max_steps:
            self.stop = Stop(TerminationReason.MAX_STEPS, f"max_steps({self.max_steps})")
        elif self.max_turn_steps is not None and self.turn_steps >= self.max_turn_steps:
            self.stop = Stop(TerminationReason.MAX_STEPS, f"max_turn_steps({self.max_turn_steps})")
        # Otherwise the speaker stays the assistant: it answers the results.

    def time_out(self, limit: float | None) -> None:
        """`speaker` took longer than `limit` seconds for its message: the dialogue ends."""
        role = self.speaker
        self.stop = Stop(TerminationReason.TURN_TIMEOUT, f"turn_timeout({role})")
        self.error = ErrorInfo(
            source=role,
            type="TimeoutError",
            message=f"{role} took longer than {limit}s",
            turn=self.turns + 1,
        )

    def end(self, reason: TerminationReason, detector: str) -> None:
        """End the dialogue from outside (a spent time budget, a stop event), unless it has."""
        if self.stop is None:
            self.stop = Stop(reason, detector)

    def _fail(self, role: ActorRole, turn: int, exc: Exception) -> None:
        reason = (
            TerminationReason.ASSISTANT_ERROR
            if role == "assistant"
            else TerminationReason.USER_ERROR
        )
        self.stop = Stop(reason, f"{role}_error")
        self.error = ErrorInfo(source=role, type=type(exc).__name__, message=str(exc), turn=turn)
        self.log.warning("actor.failed", role=role, turn=turn, error=self.error.type)

    async def finish(
        self,
        final_verifiers: Sequence[FinalVerifier[S]],
        reward: RewardFn | None,
        dialogue_id: str,
        started: float,
    ) -> DialogueResult:
        """Judge the ended dialogue (the final-reply rule lives in `judge`) and build its result."""
        assert self.stop is not None
        if self.tools is not None:
            self.log.info("tools.summary", calls=self.tools.calls, errors=self.tools.errors)
        scores = tuple(self.scores)
        ctx = FinalContext(self.transcript, self.stop.reason, self.turns, scores, self.scenario)
        verdicts, value = await judge(ctx, final_verifiers, reward)
        return DialogueResult(
            dialogue_id=dialogue_id,
            transcript=self.transcript,
            termination=self.stop.reason,
            terminated_by=self.stop.detector,
            turns=self.turns,
            turn_scores=scores,
            verdicts=verdicts,
            reward=value,
            timings=tuple(
                Timing(turn=turn, role=role, seconds=seconds)
                for turn, role, seconds in self.timings
            ),
            usage=usage_of(self.transcript),
            error=self.error,
            duration_s=time.perf_counter() - started,
        )


def usage_of(transcript: Transcript) -> Usage:
    """The token usage the messages of `transcript` report, summed."""
    total = Usage()
    for message in transcript.messages:
        usage = message.metadata.get("usage") if message.metadata else None
        if isinstance(usage, Mapping):
            total = total + Usage.model_validate(usage)
    return total
