"""The orchestrator: one dialogue between two actor tasks.

Shape of one dialogue::

    run_dialogue (host task)                 actor tasks
      ├─ view ──► assistant inbox ──► assistant.respond() ──► assistant outbox ─┐
      │◄────────────────────────────────────────────────────────────────────────┘
      ├─ view ──► user inbox ──────► user.respond() ─────────► user outbox ─────┐
      │◄────────────────────────────────────────────────────────────────────────┘
      └─ after every message: turn verifiers (assistant only), completion detectors

The exchange is strictly lock-step: the host sends one view and waits for the
reply before it sends the next, so at most one message is in flight per
stream. That makes a buffer of one with `send_nowait` safe, and it was
measured (STYLE.md) at well under half the cost of buffer 0 with awaited
sends. Closing an inbox is the shutdown signal for its actor.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypeVar

import anyio
from anyio import CancelScope
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from convo_sim import _logging
from convo_sim._actors import Actor, ActorRole, View
from convo_sim._affinity import dialogue_scope
from convo_sim._completion import (
    Detector,
    Stop,
    TurnContext,
    check_detector,
    detector_name,
    stop_token,
)
from convo_sim._logging import get_logger
from convo_sim._messages import Message, Transcript
from convo_sim._results import (
    DialogueResult,
    ErrorInfo,
    TerminationReason,
    Timing,
    TurnScore,
    Usage,
    Verdict,
)
from convo_sim._verification import (
    FinalContext,
    FinalVerifier,
    RewardFn,
    TurnVerifier,
    cumulative,
    final_only,
    judge,
    score_turn,
)

__all__ = ["default_reward", "run_dialogue"]

_log = get_logger("convo_sim.orchestrator")


@dataclass(slots=True)
class _Failure:
    """An actor's exception, carried back to the host as data."""

    exc: Exception


_Reply: TypeAlias = tuple[Message | _Failure, float]
_T = TypeVar("_T")
S = TypeVar("S")
_Pipe: TypeAlias = tuple[MemoryObjectSendStream[_T], MemoryObjectReceiveStream[_T]]
# Endings after which an actor may still be inside respond().
_MAY_BE_STUCK = frozenset((TerminationReason.TURN_TIMEOUT, TerminationReason.CANCELLED))


@dataclass(slots=True)
class _State:
    """Everything the dialogue has produced so far; survives cancellation."""

    transcript: Transcript
    turns: int = 0
    scores: list[TurnScore] = field(default_factory=list)
    # (turn, role, seconds): plain tuples of atoms, which the collector stops
    # tracking; the `Timing` records are built once, in `_finish`.
    timings: list[tuple[int, ActorRole, float]] = field(default_factory=list)
    stop: Stop | None = None
    error: ErrorInfo | None = None
    misuse: BaseException | None = None


def default_reward(
    turn_verifiers: Sequence[object], final_verifiers: Sequence[object]
) -> RewardFn | None:
    """The reward used when none is given: final verdicts if any, else turn scores."""
    if final_verifiers:
        return final_only()
    if turn_verifiers:
        return cumulative()
    return None


async def _actor_task(
    actor: Actor,
    inbox: MemoryObjectReceiveStream[View],
    outbox: MemoryObjectSendStream[_Reply],
) -> None:
    # The task owns its ends and closes them however it ends. (try/finally
    # rather than `async with`: each `async with` keeps a bound __aexit__
    # alive for the dialogue's lifetime, which the collector scans.)
    try:
        while True:
            # receive() rather than `async for`: one coroutine less held per
            # idle actor, and the end of the inbox is the shutdown signal.
            try:
                view = await inbox.receive()
            except anyio.EndOfStream:
                return
            started = time.perf_counter()
            reply: Message | _Failure
            try:
                reply = await actor.respond(view)
            except Exception as exc:  # cancellation is a BaseException and passes through
                reply = _Failure(exc)
            else:
                if not isinstance(reply, Message):
                    reply = _Failure(
                        TypeError(f"respond() returned {type(reply).__name__}, expected Message")
                    )
            try:
                # Lock-step: the host reads every reply before sending the next view.
                outbox.send_nowait((reply, time.perf_counter() - started))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return
            # While the other side takes its turn, this turn's view (and the
            # user's flipped copy of the dialogue it caches) is garbage.
            del view, reply
    finally:
        inbox.close()
        outbox.close()


async def run_dialogue(
    assistant: Actor,
    user: Actor,
    *,
    prefix: Transcript | Sequence[Message] | None = None,
    opening: Literal["user", "assistant"] = "user",
    scenario: S | None = None,
    max_turns: int | None = 10,
    turn_timeout: float | None = 60.0,
    time_budget: float | None = None,
    completion: Detector | Sequence[Detector] | None = None,
    turn_verifiers: Sequence[TurnVerifier[S]] = (),
    final_verifiers: Sequence[FinalVerifier[S]] = (),
    reward: RewardFn | None = None,
    stop: anyio.Event | None = None,
    dialogue_id: str | None = None,
) -> DialogueResult:
    """Run one dialogue to its end and return what it produced.

    Args:
        assistant: the assistant actor.
        user: the user-simulator actor.
        prefix: a transcript to start from (for example a NeMo-Gym
            conversation prefix). The side that did not speak last goes next.
        opening: who speaks first when there is no prefix (or the prefix
            holds only system or developer messages).
        scenario: passed through to actors, detectors and verifiers (its
            type is the one the verifiers take: `TurnVerifier[S]`).
        max_turns: the most assistant turns this run produces; `None` for no
            limit. A turn is one user message and the assistant's reply.
        turn_timeout: seconds one actor may take for one message; `None` for
            no limit.
        time_budget: seconds the whole dialogue may take; `None` for no limit.
            Running out ends it as `turn_timeout`, recorded as `time_budget`.
        completion: detectors checked after every message, in order. Default:
            the user's stop token `###STOP###`. Pass `()` for none.
        turn_verifiers: score every assistant turn.
        final_verifiers: judge the finished dialogue, whatever its ending.
        reward: turns scores and verdicts into the reward; default
            `default_reward(turn_verifiers, final_verifiers)`.
        stop: when set, the dialogue ends at once as `cancelled` and the
            partial result is returned (a graceful stop, unlike cancelling
            the caller, which propagates).
        dialogue_id: bound to every log event; a random id by default.

    Returns:
        A `DialogueResult` for every ending: a failing actor, a timeout or a
        crashing verifier is recorded in it, never raised.

    Raises:
        ValueError: an argument is out of range.
        TypeError: a completion detector returned something that is not a decision.
        Exception: whatever a completion detector raised (a bug in the caller's code).
    """
    if max_turns is not None and max_turns < 1:
        raise ValueError(f"max_turns must be at least 1 or None, got {max_turns!r}")
    for name, value in (("turn_timeout", turn_timeout), ("time_budget", time_budget)):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive or None, got {value!r}")
    if completion is None:
        detectors: Sequence[Detector] = (stop_token(),)
    elif callable(completion):
        detectors = (completion,)
    else:
        detectors = tuple(completion)
    if reward is None:
        reward = default_reward(turn_verifiers, final_verifiers)
    dialogue_id = dialogue_id or uuid.uuid4().hex[:12]
    start = Transcript(messages=tuple(prefix)) if isinstance(prefix, Sequence) else prefix
    state = _State(transcript=start if start is not None else Transcript())
    started = time.perf_counter()

    # The dialogue scope lets a `ModelPool` keep the dialogue on one replica
    # (the actor tasks copy it when they start) and frees its binding at the end.
    with _logging.BoundContext(dialogue_id=dialogue_id), dialogue_scope(dialogue_id):
        # One concrete logger per dialogue: the lazy proxy would rebuild one
        # on every event, and turn events are on the hot path.
        log = _log.bind()
        log.info("dialogue.started", prefix_messages=len(state.transcript), max_turns=max_turns)
        # Typed by annotation, not by subscripting the factory: a
        # subscripted call builds a generic alias on every dialogue.
        a_in: _Pipe[View] = anyio.create_memory_object_stream(1)
        a_out: _Pipe[_Reply] = anyio.create_memory_object_stream(1)
        u_in: _Pipe[View] = anyio.create_memory_object_stream(1)
        u_out: _Pipe[_Reply] = anyio.create_memory_object_stream(1)
        (a_in_send, a_in_recv), (a_out_send, a_out_recv) = a_in, a_out
        (u_in_send, u_in_recv), (u_out_send, u_out_recv) = u_in, u_out
        async with anyio.create_task_group() as tg:
            if time_budget is not None:
                # The group's own scope bounds the host and both actors; no
                # scope of its own for a dialogue without a budget.
                tg.cancel_scope.deadline = anyio.current_time() + time_budget
            tg.start_soon(_actor_task, assistant, a_in_recv, a_out_send)
            tg.start_soon(_actor_task, user, u_in_recv, u_out_send)
            if stop is not None:
                tg.start_soon(_watch_stop, stop, state, tg.cancel_scope)
            try:
                await _drive(
                    state,
                    ask={
                        "assistant": _Channel(a_in_send, a_out_recv),
                        "user": _Channel(u_in_send, u_out_recv),
                    },
                    first=_first_speaker(state.transcript, opening),
                    scenario=scenario,
                    max_turns=max_turns,
                    turn_timeout=turn_timeout,
                    detectors=detectors,
                    turn_verifiers=turn_verifiers,
                    log=log,
                )
            finally:
                # The host owns its ends (try/finally, not `async with`: see
                # _actor_task); closing the inboxes stops idle actors.
                a_in_send.close()
                a_out_recv.close()
                u_in_send.close()
                u_out_recv.close()
            # A stuck actor (timeout) or the stop watcher would keep the
            # group open. Lock-step means no actor is mid-reply otherwise,
            # and anyio formats a task repr on every cancel(), so only then.
            if stop is not None or state.stop is None or state.stop.reason in _MAY_BE_STUCK:
                tg.cancel_scope.cancel()
        # Only the budget cancels the group before the dialogue has decided
        # (the stop watcher decides before it cancels).
        if tg.cancel_scope.cancelled_caught and state.stop is None:
            state.stop = Stop(TerminationReason.TURN_TIMEOUT, "time_budget")
        if state.misuse is not None:
            raise state.misuse
        assert state.stop is not None  # _drive always decides, or a scope did
        result = await _finish(state, scenario, final_verifiers, reward, dialogue_id, started)
        log.info(
            "dialogue.finished",
            termination=result.termination.value,
            terminated_by=result.terminated_by,
            reward=result.reward,
            turns=result.turns,
            duration_ms=round(result.duration_s * 1000, 1),
        )
        return result


@dataclass(slots=True)
class _Channel:
    send: MemoryObjectSendStream[View]
    recv: MemoryObjectReceiveStream[_Reply]


async def _watch_stop(stop: anyio.Event, state: _State, scope: CancelScope) -> None:
    await stop.wait()
    if state.stop is None:
        state.stop = Stop(TerminationReason.CANCELLED, "stop_event")
    scope.cancel()


def _first_speaker(transcript: Transcript, opening: ActorRole) -> ActorRole:
    for message in reversed(transcript.messages):
        if message.role == "user":
            return "assistant"
        if message.role in ("assistant", "tool"):
            return "user"
    return opening


async def _drive(
    state: _State,
    *,
    ask: dict[ActorRole, _Channel],
    first: ActorRole,
    scenario: S | None,
    max_turns: int | None,
    turn_timeout: float | None,
    detectors: Sequence[Detector],
    turn_verifiers: Sequence[TurnVerifier[S]],
    log: Any,
) -> None:
    role = first
    turn = state.turns + 1
    log_content = _logging.content_logging_enabled()
    # One scope for every turn's timeout: its deadline is set while the host
    # waits for a reply and lifted after, which costs a timer per turn
    # instead of a cancel scope per turn (fewer objects per dialogue in flight).
    with CancelScope() as limit:
        while True:
            # The user's message opens the turn the assistant's reply completes.
            turn = state.turns + 1
            channel = ask[role]
            channel.send.send_nowait(View(role, state.transcript, turn, scenario))
            if turn_timeout is None:
                reply, seconds = await channel.recv.receive()
            else:
                limit.deadline = anyio.current_time() + turn_timeout
                reply, seconds = await channel.recv.receive()
                if limit.cancel_called:
                    break  # the deadline passed in the loop turn the reply came in
                limit.deadline = math.inf
            if isinstance(reply, _Failure):
                reason = (
                    TerminationReason.ASSISTANT_ERROR
                    if role == "assistant"
                    else TerminationReason.USER_ERROR
                )
                state.stop = Stop(reason, f"{role}_error")
                state.error = ErrorInfo(
                    source=role, type=type(reply.exc).__name__, message=str(reply.exc), turn=turn
                )
                log.warning("actor.failed", role=role, turn=turn, error=state.error.type)
                return
            if reply.role != role:
                reply = reply.model_copy(update={"role": role})
            state.transcript = state.transcript.append(reply)
            state.timings.append((turn, role, seconds))
            # One context per message, made only when someone reads it: the
            # turn verifiers and the completion detectors see the same one.
            ctx: TurnContext[S] | None = None
            if role == "assistant":
                state.turns = turn
                if turn_verifiers:
                    ctx = TurnContext(state.transcript, reply, turn, scenario)
                    state.scores.extend(await score_turn(ctx, turn_verifiers))
            if log_content:
                log.debug(
                    "turn.completed",
                    turn=turn,
                    role=role,
                    latency_ms=seconds * 1000,
                    content=reply.content,
                )
            else:
                log.debug("turn.completed", turn=turn, role=role, latency_ms=seconds * 1000)
            if detectors:
                if ctx is None:
                    ctx = TurnContext(state.transcript, reply, turn, scenario)
                for detector in detectors:
                    try:
                        decided = await check_detector(detector, ctx)
                    except Exception as exc:
                        state.misuse = exc
                        state.stop = Stop(TerminationReason.CANCELLED, detector_name(detector))
                        return
                    if decided is not None:
                        state.stop = decided
                        return
            if role == "assistant":
                if max_turns is not None and state.turns >= max_turns:
                    state.stop = Stop(TerminationReason.MAX_TURNS, f"max_turns({max_turns})")
                    return
                role = "user"
            else:
                role = "assistant"
    # Only a passed turn deadline leaves the loop without deciding.
    state.stop = Stop(TerminationReason.TURN_TIMEOUT, f"turn_timeout({role})")
    state.error = ErrorInfo(
        source=role,
        type="TimeoutError",
        message=f"{role} took longer than {turn_timeout}s",
        turn=turn,
    )


async def _finish(
    state: _State,
    scenario: S | None,
    final_verifiers: Sequence[FinalVerifier[S]],
    reward: Callable[[Sequence[TurnScore], Sequence[Verdict]], float | None] | None,
    dialogue_id: str,
    started: float,
) -> DialogueResult:
    assert state.stop is not None
    scores = tuple(state.scores)
    ctx = FinalContext(state.transcript, state.stop.reason, state.turns, scores, scenario)
    # The final-reply rule (no answer to the last question: 0) lives in `judge`.
    verdicts, value = await judge(ctx, final_verifiers, reward)
    return DialogueResult(
        dialogue_id=dialogue_id,
        transcript=state.transcript,
        termination=state.stop.reason,
        terminated_by=state.stop.detector,
        turns=state.turns,
        turn_scores=scores,
        verdicts=verdicts,
        reward=value,
        timings=tuple(
            Timing(turn=turn, role=role, seconds=seconds) for turn, role, seconds in state.timings
        ),
        usage=_usage(state.transcript),
        error=state.error,
        duration_s=time.perf_counter() - started,
    )


def _usage(transcript: Transcript) -> Usage:
    total = Usage()
    for message in transcript.messages:
        usage = message.metadata.get("usage") if message.metadata else None
        if isinstance(usage, Mapping):
            total = total + Usage.model_validate(usage)
    return total
