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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, TypeVar

import anyio
from anyio import CancelScope
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from convo_sim import _logging
from convo_sim._actors import Actor, ActorRole, View
from convo_sim._affinity import dialogue_scope
from convo_sim._completion import Detector, stop_token
from convo_sim._dialogue import Dialogue, Failure, check_counts
from convo_sim._logging import get_logger
from convo_sim._messages import Message, Transcript
from convo_sim._results import DialogueResult, TerminationReason
from convo_sim._tools import ToolEnv
from convo_sim._verification import (
    FinalVerifier,
    RewardFn,
    TurnVerifier,
    cumulative,
    final_only,
)

__all__ = ["DEFAULT_MAX_TURN_STEPS", "default_reward", "run_dialogue"]

DEFAULT_MAX_TURN_STEPS = 16
"""The most assistant messages in one turn of a dialogue with tools, unless set."""

_log = get_logger("convo_sim.orchestrator")


_Reply: TypeAlias = tuple[object, float]
_T = TypeVar("_T")
S = TypeVar("S")
_Pipe: TypeAlias = tuple[MemoryObjectSendStream[_T], MemoryObjectReceiveStream[_T]]
# Endings after which an actor may still be inside respond().
_MAY_BE_STUCK = frozenset((TerminationReason.TURN_TIMEOUT, TerminationReason.CANCELLED))


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
            reply: object
            try:
                reply = await actor.respond(view)
            except Exception as exc:  # cancellation is a BaseException and passes through
                reply = Failure(exc)
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
    tools: ToolEnv[Any] | None = None,
    max_steps: int | None = None,
    max_turn_steps: int | None = DEFAULT_MAX_TURN_STEPS,
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
        tools: the dialogue's tool environment (its tools and the state
            they act on); an assistant message that calls tools is then a
            step: the calls run, their results are appended and the
            assistant is asked again until it answers the user. None: no
            tools (tool calls are not run).
        max_steps: the most assistant messages in the whole dialogue,
            tool-calling steps included; `None` for no limit.
        max_turn_steps: the most assistant messages within one turn (with
            tools); `None` for no limit. Both end the dialogue as `max_steps`.

    Returns:
        A `DialogueResult` for every ending: a failing actor, a timeout or a
        crashing verifier is recorded in it, never raised.

    Raises:
        ValueError: an argument is out of range.
        TypeError: a completion detector returned something that is not a decision.
        Exception: whatever a completion detector raised (a bug in the caller's code).
    """
    check_counts(max_turns=max_turns, max_steps=max_steps, max_turn_steps=max_turn_steps)
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
    started = time.perf_counter()

    # The dialogue scope lets a `ModelPool` keep the dialogue on one replica
    # (the actor tasks copy it when they start) and frees its binding at the end.
    with _logging.BoundContext(dialogue_id=dialogue_id), dialogue_scope(dialogue_id):
        # One concrete logger per dialogue: the lazy proxy would rebuild one
        # on every event, and turn events are on the hot path.
        log = _log.bind()
        dialogue: Dialogue[S] = Dialogue(
            start if start is not None else Transcript(),
            scenario=scenario,
            opening=opening,
            max_turns=max_turns,
            detectors=detectors,
            turn_verifiers=turn_verifiers,
            log=log,
            tools=tools,
            max_steps=max_steps,
            max_turn_steps=max_turn_steps,
        )
        log.info("dialogue.started", prefix_messages=len(dialogue.transcript), max_turns=max_turns)
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
                tg.start_soon(_watch_stop, stop, dialogue, tg.cancel_scope)
            try:
                await _drive(
                    dialogue,
                    {
                        "assistant": _Channel(a_in_send, a_out_recv),
                        "user": _Channel(u_in_send, u_out_recv),
                    },
                    turn_timeout,
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
            if stop is not None or dialogue.stop is None or dialogue.stop.reason in _MAY_BE_STUCK:
                tg.cancel_scope.cancel()
        # Only the budget cancels the group before the dialogue has decided
        # (the stop watcher decides before it cancels).
        if tg.cancel_scope.cancelled_caught:
            dialogue.end(TerminationReason.TURN_TIMEOUT, "time_budget")
        if dialogue.misuse is not None:
            raise dialogue.misuse
        assert dialogue.stop is not None  # _drive always decides, or a scope did
        result = await dialogue.finish(final_verifiers, reward, dialogue_id, started)
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


async def _watch_stop(stop: anyio.Event, dialogue: Dialogue[S], scope: CancelScope) -> None:
    await stop.wait()
    dialogue.end(TerminationReason.CANCELLED, "stop_event")
    scope.cancel()


async def _drive(
    dialogue: Dialogue[S], ask: dict[ActorRole, _Channel], turn_timeout: float | None
) -> None:
    """Ask each speaker in turn and hand its reply to the dialogue, until it ends."""
    # One scope for every turn's timeout: its deadline is set while the host
    # waits for a reply and lifted after, which costs a timer per turn
    # instead of a cancel scope per turn (fewer objects per dialogue in flight).
    with CancelScope() as limit:
        while dialogue.stop is None:
            channel = ask[dialogue.speaker]
            try:
                channel.send.send_nowait(dialogue.view())
            except anyio.BrokenResourceError:
                # Only cancellation ends an actor's task while the host
                # runs, and it may have reached the actor first (the host
                # got its last reply without a checkpoint): deliver it here
                # rather than let a BrokenResourceError out beside it.
                await anyio.lowlevel.checkpoint()
                raise
            if turn_timeout is None:
                reply, seconds = await channel.recv.receive()
            else:
                limit.deadline = anyio.current_time() + turn_timeout
                reply, seconds = await channel.recv.receive()
                if limit.cancel_called:
                    break  # the deadline passed in the loop turn the reply came in
                limit.deadline = math.inf
            await dialogue.take(reply, seconds)
        else:
            return
    # Only a passed turn deadline leaves the loop without deciding.
    dialogue.time_out(turn_timeout)
