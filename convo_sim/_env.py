"""The step-wise dialogue environment: the trainer speaks for the assistant.

`run_dialogue` owns the loop and calls both actors. In RL training the
trainer owns the policy's generation, so the control is inverted: the
environment holds the simulated user, the verifiers and the scenario, and
the caller hands it each assistant message::

    env = DialogueEnv("calendar")
    obs = await env.reset(scenario, seed)          # the user has spoken
    while not env.done:
        message = policy(obs.messages)             # the trainer's own generation
        obs, reward, terminated, truncated, info = await env.step(message)
    result = await env.result()                    # the same DialogueResult

Every message goes through the same `Dialogue` state machine as in
`run_dialogue` (`convo_sim._dialogue`), so the turn count, the turn and
final verifiers, the completion detectors, the turn limit, the termination
reasons and the reward are the same. The policy's latency is the time from
an observation to the next `step`; it is bounded only when `policy_timeout`
is set (a trainer batching generations may take long, and that is not the
dialogue's fault).

`SyncDialogueEnv` is the same environment for code without an event loop
(the environment's coroutines run on a portal thread).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, NamedTuple, TypeAlias, TypedDict, TypeVar, cast

import anyio
import structlog
from anyio.from_thread import BlockingPortal

from convo_sim._actors import Actor, ActorRole, View
from convo_sim._completion import Detector, stop_token
from convo_sim._dialogue import Dialogue, Failure, check_counts
from convo_sim._logging import get_logger
from convo_sim._messages import Message, Transcript
from convo_sim._orchestrator import DEFAULT_MAX_TURN_STEPS, default_reward
from convo_sim._records import Rollout, ScenarioLike
from convo_sim._results import DialogueResult, TerminationReason, TurnScore
from convo_sim._rollouts import (
    DEFAULT_MAX_TURNS,
    ActorFactory,
    CompletionFactory,
    ToolFactory,
    VerifierFactory,
)
from convo_sim._verification import FinalVerifier, RewardFn, TurnVerifier
from convo_sim.domains._domain import Domain
from convo_sim.domains._registry import resolve

__all__ = ["TRUNCATING", "DialogueEnv", "EnvStep", "StepInfo", "SyncDialogueEnv"]

S = TypeVar("S")
T = TypeVar("T")
Action: TypeAlias = Message | str

_log = get_logger("convo_sim.env")

TRUNCATING = frozenset(
    (
        TerminationReason.MAX_TURNS,
        TerminationReason.MAX_STEPS,
        TerminationReason.TURN_TIMEOUT,
        TerminationReason.CANCELLED,
    )
)
"""Endings that cut the dialogue short (`truncated`); every other ending is `terminated`."""


class StepInfo(TypedDict):
    """What `DialogueEnv.step` and `reset` say besides the observation.

    Keys:
        turn: assistant turns so far.
        new_messages: the messages added after the policy's last message
            (at `reset`, after the scenario's prefix): what the simulated
            user said.
        turn_scores: the turn verifiers' scores of the message just taken.
        termination: why the dialogue ended; None while it goes on.
        terminated_by: the detector or limit that ended it.
        result: the finished dialogue's `DialogueResult`, at the end.
    """

    turn: int
    new_messages: tuple[Message, ...]
    turn_scores: tuple[TurnScore, ...]
    termination: str | None
    terminated_by: str | None
    result: DialogueResult | None


class EnvStep(NamedTuple):
    """`(observation, reward, terminated, truncated, info)`, as gymnasium orders them.

    `reward` is the dialogue's reward at its end (0.0 when nothing scored
    it) and 0.0 before; the turn scores are in `info`.
    """

    observation: View[Any]
    reward: float
    terminated: bool
    truncated: bool
    info: StepInfo


class DialogueEnv(Generic[S]):
    """One scenario at a time, one assistant message per `step`; `run_dialogue`'s rules.

    Args:
        domain: the domain (or its name) whose user, verifiers, completion
            detectors and turn limit the environment uses; None for none
            (then `user` is required).
        user: the simulated user, as `factory(scenario, sample_seed)` or
            one actor for every dialogue; default the domain's.
        verifiers: `factory(scenario) -> (turn, final)`; default the domain's.
        completion: `factory(scenario) -> detectors`; default the domain's,
            else the user's stop token.
        max_turns: the turn limit; default the scenario's, else the
            domain's, else `DEFAULT_MAX_TURNS`.
        turn_timeout: seconds the simulated user may take for one message.
        policy_timeout: seconds from an observation to the next `step`;
            None (the default) for no limit. Past it the step's message is
            dropped and the dialogue ends as `turn_timeout`, as a slow
            assistant does in `run_dialogue`.
        time_budget: seconds the whole dialogue may take, from `reset`.
        reward: turns scores and verdicts into the reward; default as in
            `run_dialogue`.
        opening: who speaks first when the scenario's prefix does not say.
        tools: `factory(scenario) -> ToolEnv`, the dialogue's tools; default
            the domain's. A step whose message calls tools runs them: the
            observation holds their results and the policy acts again
            (`info["new_messages"]` are the tool messages).
        max_steps: the most assistant messages per dialogue; None: no limit.
        max_turn_steps: the most assistant messages within one turn.

    Raises:
        ValueError: a limit is out of range, or neither a domain nor a user is given.
        UnknownDomainError: no domain has that name.
    """

    def __init__(
        self,
        domain: str | Domain[Any] | None = None,
        *,
        user: ActorFactory[Any] | Actor | None = None,
        verifiers: VerifierFactory[Any] | None = None,
        completion: CompletionFactory[Any] | None = None,
        max_turns: int | None = None,
        turn_timeout: float | None = 60.0,
        policy_timeout: float | None = None,
        time_budget: float | None = None,
        reward: RewardFn | None = None,
        opening: ActorRole = "user",
        tools: ToolFactory[Any] | None = None,
        max_steps: int | None = None,
        max_turn_steps: int | None = DEFAULT_MAX_TURN_STEPS,
    ) -> None:
        check_counts(max_turns=max_turns, max_steps=max_steps, max_turn_steps=max_turn_steps)
        limits = {
            "turn_timeout": turn_timeout,
            "policy_timeout": policy_timeout,
            "time_budget": time_budget,
        }
        for name, value in limits.items():
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, got {value!r}")
        self.domain: Domain[Any] | None = None if domain is None else resolve(domain)
        if self.domain is None and user is None:
            raise ValueError("DialogueEnv needs a domain or a user")
        self._user = user
        self._verifiers = verifiers
        self._domain_verifiers = self.domain.verifiers if self.domain else None
        self._completion = completion or (self.domain.completion if self.domain else None)
        self._tools = tools or (self.domain.tools if self.domain else None)
        self.max_steps = max_steps
        self.max_turn_steps = max_turn_steps
        self.max_turns = max_turns
        self.turn_timeout = turn_timeout
        self.policy_timeout = policy_timeout
        self.time_budget = time_budget
        self._reward = reward
        self.opening: ActorRole = opening
        self._dialogue: Dialogue[S] | None = None
        self._result: DialogueResult | None = None
        self._scenario: S | None = None
        self._seed = 0
        self._actor: Actor | None = None
        self._final: Sequence[FinalVerifier[S]] = ()
        self._reward_fn: RewardFn | None = None
        self._dialogue_id = ""
        self._started = 0.0
        self._deadline = math.inf
        self._asked = 0.0
        self._mark = 0
        self._busy = False

    @property
    def done(self) -> bool:
        """True when the dialogue has ended (or none was started)."""
        return self._dialogue is None or self._dialogue.stop is not None

    @property
    def transcript(self) -> Transcript:
        """The dialogue so far.

        Raises:
            RuntimeError: `reset` was never called.
        """
        return self._current().transcript

    async def reset(
        self, scenario: S | None = None, seed: int = 0, *, dialogue_id: str | None = None
    ) -> View[S]:
        """Start a dialogue of `scenario`: the simulated user speaks until the assistant's turn.

        A dialogue in progress is dropped. When the user ends the dialogue
        before the assistant ever speaks (it stops at once, or fails),
        `done` is True at once and `result()` has the outcome.

        Args:
            scenario: the scenario (its prefix, turn limit and the domain's
                user and verifiers for it); None for a bare dialogue.
            seed: the sample seed the domain's user is built with (as in
                `run_scenario(scenario, seed=seed)`).
            dialogue_id: bound to every log event; random by default.

        Returns:
            The assistant's view: `obs.messages` is what the policy answers.

        Raises:
            ValueError: the scenario's turn limit is out of range.
            Exception: whatever a factory raised for this scenario (a
                persona that is not bundled, say), or a completion detector.
        """
        self._check_idle()
        self._dialogue = None
        self._result = None
        domain = self.domain
        turn_verifiers: Sequence[TurnVerifier[S]] = ()
        final_verifiers: Sequence[FinalVerifier[S]] = ()
        if self._verifiers is not None:
            turn_verifiers, final_verifiers = self._verifiers(scenario)
        elif self._domain_verifiers is not None and scenario is not None:
            turn_verifiers, final_verifiers = self._domain_verifiers(scenario)
        if self._user is None:
            assert domain is not None
            actor = domain.user(scenario, seed)
        elif isinstance(self._user, Actor):
            actor = self._user
        else:
            actor = self._user(scenario, seed)
        detectors = self._detectors(scenario)
        max_turns = (
            self.max_turns
            or getattr(scenario, "max_turns", None)
            or (domain.max_turns if domain else DEFAULT_MAX_TURNS)
        )
        if max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {max_turns!r}")
        opening = getattr(scenario, "opening_transcript", None)
        prefix: Transcript | None = opening() if callable(opening) else None
        self._dialogue_id = dialogue_id or uuid.uuid4().hex[:12]
        with structlog.contextvars.bound_contextvars(dialogue_id=self._dialogue_id):
            log = _log.bind()
            dialogue: Dialogue[S] = Dialogue(
                prefix if prefix is not None else Transcript(),
                scenario=scenario,
                opening=self.opening,
                max_turns=max_turns,
                detectors=detectors,
                turn_verifiers=turn_verifiers,
                log=log,
                tools=self._tools(scenario) if self._tools and scenario is not None else None,
                max_steps=self.max_steps,
                max_turn_steps=self.max_turn_steps,
            )
            log.info(
                "dialogue.started", prefix_messages=len(dialogue.transcript), max_turns=max_turns
            )
        self._dialogue = dialogue
        self._scenario = scenario
        self._seed = seed
        self._actor = actor
        self._final = final_verifiers
        self._reward_fn = (
            self._reward
            if self._reward is not None
            else default_reward(turn_verifiers, final_verifiers)
        )
        self._started = time.perf_counter()
        self._deadline = (
            math.inf if self.time_budget is None else anyio.current_time() + self.time_budget
        )
        self._mark = len(dialogue.transcript)
        step = await self._advance(())
        return step.observation

    async def step(self, message: Action) -> EnvStep:
        """Take the assistant's message, let the user answer, say what happened.

        Token fields the trainer captured (`TOKEN_FIELDS`) ride in the
        message's `metadata` and end up in the rollout record. A message
        that is no `Message` or `str` is the assistant's failure, as an
        actor returning one is in `run_dialogue`.

        Returns:
            `(observation, reward, terminated, truncated, info)`.

        Raises:
            RuntimeError: the dialogue has ended, was never started, or a
                step is already in progress.
            Exception: whatever a completion detector raised.
        """
        return await self._act(message)

    async def fail(self, error: Exception) -> EnvStep:
        """The policy could not produce its message: the dialogue ends as `assistant_error`.

        Raises:
            RuntimeError: the dialogue has ended, was never started, or a
                step is already in progress.
        """
        return await self._act(Failure(error))

    async def result(self) -> DialogueResult:
        """The finished dialogue's result; a dialogue still going on ends as `cancelled`.

        Raises:
            RuntimeError: `reset` was never called, or a step is in progress.
        """
        self._check_idle()
        dialogue = self._current()
        if self._result is None:
            dialogue.end(TerminationReason.CANCELLED, "closed")
            self._result = await self._finish(dialogue)
        return self._result

    async def rollout(self, sample_index: int = 0) -> Rollout:
        """The finished dialogue as a rollout record (what `convo-sim run` writes).

        With a domain, the record carries what the domain adds to every
        record: the persona, the fidelity metrics and `user_failure`.

        Raises:
            RuntimeError: `reset` was never called, or a step is in progress.
            ValueError: the dialogue has no scenario to name the record after.
        """
        result = await self.result()
        if not hasattr(self._scenario, "id"):
            raise ValueError("a rollout record needs the scenario the dialogue was reset with")
        scenario = cast(ScenarioLike, self._scenario)
        record = Rollout.from_result(scenario, sample_index, self._seed, result)
        # As `domain.plan()` does for `convo-sim run`: the persona, the
        # fidelity metrics and `user_failure`, so both records are alike.
        return record if self.domain is None else self.domain.annotate(record, scenario)

    # ------------------------------------------------------------ internals

    def _current(self) -> Dialogue[S]:
        if self._dialogue is None:
            raise RuntimeError("no dialogue: call reset() first")
        return self._dialogue

    def _check_idle(self) -> None:
        if self._busy:
            raise RuntimeError("a step of this environment is already in progress")

    def _detectors(self, scenario: S | None) -> Sequence[Detector]:
        completion = self._completion(scenario) if self._completion else None
        if completion is None:
            return (stop_token(),)
        if callable(completion):
            return (completion,)
        return tuple(completion)

    async def _act(self, reply: object) -> EnvStep:
        self._check_idle()
        dialogue = self._current()
        if dialogue.stop is not None:
            raise RuntimeError("the dialogue has ended: call reset() for another")
        seconds = time.perf_counter() - self._asked
        scored = len(dialogue.scores)
        if self.policy_timeout is not None and seconds > self.policy_timeout:
            dialogue.time_out(self.policy_timeout)
        elif anyio.current_time() > self._deadline:
            dialogue.end(TerminationReason.TURN_TIMEOUT, "time_budget")
        else:
            if isinstance(reply, str):
                reply = Message(role="assistant", content=reply)
            # What follows the policy's message is new: tool results, the user.
            self._mark = len(dialogue.transcript) + 1
            self._busy = True
            try:
                with structlog.contextvars.bound_contextvars(dialogue_id=self._dialogue_id):
                    await dialogue.take(reply, seconds)
            finally:
                self._busy = False
        return await self._advance(tuple(dialogue.scores[scored:]))

    async def _advance(self, scores: tuple[TurnScore, ...]) -> EnvStep:
        """Let the simulated user speak while it is its turn; then observe."""
        dialogue = self._current()
        self._busy = True
        try:
            with structlog.contextvars.bound_contextvars(dialogue_id=self._dialogue_id):
                while dialogue.stop is None and dialogue.speaker == "user":
                    await self._ask_user(dialogue)
        except BaseException:
            # Cancelled (or a bug) while the user spoke: the dialogue ends
            # here, so that result() still gives what it produced.
            dialogue.end(TerminationReason.CANCELLED, "cancelled")
            raise
        finally:
            self._busy = False
        if dialogue.misuse is not None:
            misuse, dialogue.misuse = dialogue.misuse, None
            raise misuse
        new = dialogue.transcript.messages[self._mark :]
        reward = 0.0
        result = None
        if dialogue.stop is not None:
            result = self._result = await self._finish(dialogue)
            reward = result.reward or 0.0
        else:
            self._asked = time.perf_counter()
        stop = dialogue.stop
        info = StepInfo(
            turn=dialogue.turns,
            new_messages=new,
            turn_scores=scores,
            termination=None if stop is None else stop.reason.value,
            terminated_by=None if stop is None else stop.detector,
            result=result,
        )
        observation: View[S] = (
            dialogue.view()
            if dialogue.stop is None
            else View("assistant", dialogue.transcript, dialogue.turns + 1, self._scenario)
        )
        truncated = stop is not None and stop.reason in TRUNCATING
        return EnvStep(observation, reward, stop is not None and not truncated, truncated, info)

    async def _ask_user(self, dialogue: Dialogue[S]) -> None:
        assert self._actor is not None
        turn_deadline = (
            math.inf if self.turn_timeout is None else anyio.current_time() + self.turn_timeout
        )
        started = time.perf_counter()
        reply: object
        with anyio.CancelScope(deadline=min(turn_deadline, self._deadline)) as scope:
            try:
                reply = await self._actor.respond(dialogue.view())
            except Exception as exc:  # cancellation is a BaseException and passes through
                reply = Failure(exc)
        if scope.cancel_called:
            # The deadline passed, even if the reply came in the same loop turn.
            if self._deadline < turn_deadline:
                dialogue.end(TerminationReason.TURN_TIMEOUT, "time_budget")
            else:
                dialogue.time_out(self.turn_timeout)
            return
        await dialogue.take(reply, time.perf_counter() - started)

    async def _finish(self, dialogue: Dialogue[S]) -> DialogueResult:
        with structlog.contextvars.bound_contextvars(dialogue_id=self._dialogue_id):
            result = await dialogue.finish(
                self._final, self._reward_fn, self._dialogue_id, self._started
            )
            _log.info(
                "dialogue.finished",
                termination=result.termination.value,
                terminated_by=result.terminated_by,
                reward=result.reward,
                turns=result.turns,
                duration_ms=round(result.duration_s * 1000, 1),
            )
        return result


class SyncDialogueEnv(Generic[S]):
    """`DialogueEnv` for code without an event loop (SkyRL-gym's envs, a plain loop).

    The environment's coroutines run on an event loop in a daemon thread
    (one per process, shared by every `SyncDialogueEnv`, started on first
    use) or on the `portal` given; a simulated user that talks to a model
    keeps its connections on that loop. Each method blocks until done.

    Args:
        env: the environment to drive; or pass `DialogueEnv`'s arguments.
        portal: an `anyio.from_thread.BlockingPortal` to run on instead.

    Raises:
        ValueError: as `DialogueEnv`.
        UnknownDomainError: as `DialogueEnv`.
    """

    def __init__(
        self,
        env: DialogueEnv[S] | str | Domain[Any] | None = None,
        /,
        *,
        portal: BlockingPortal | None = None,
        **options: Any,
    ) -> None:
        self.env: DialogueEnv[S] = (
            env if isinstance(env, DialogueEnv) else DialogueEnv(env, **options)
        )
        self._portal = portal

    @property
    def done(self) -> bool:
        """True when the dialogue has ended (or none was started)."""
        return self.env.done

    def reset(
        self, scenario: S | None = None, seed: int = 0, *, dialogue_id: str | None = None
    ) -> View[S]:
        """`DialogueEnv.reset`, blocking.

        Raises:
            Exception: as `DialogueEnv.reset`.
        """
        return self._call(lambda: self.env.reset(scenario, seed, dialogue_id=dialogue_id))

    def step(self, message: Action) -> EnvStep:
        """`DialogueEnv.step`, blocking.

        Raises:
            RuntimeError: as `DialogueEnv.step`.
        """
        return self._call(lambda: self.env.step(message))

    def fail(self, error: Exception) -> EnvStep:
        """`DialogueEnv.fail`, blocking.

        Raises:
            RuntimeError: as `DialogueEnv.fail`.
        """
        return self._call(lambda: self.env.fail(error))

    def result(self) -> DialogueResult:
        """`DialogueEnv.result`, blocking.

        Raises:
            RuntimeError: as `DialogueEnv.result`.
        """
        return self._call(self.env.result)

    def rollout(self, sample_index: int = 0) -> Rollout:
        """`DialogueEnv.rollout`, blocking.

        Raises:
            RuntimeError: as `DialogueEnv.rollout`.
            ValueError: as `DialogueEnv.rollout`.
        """
        return self._call(lambda: self.env.rollout(sample_index))

    def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        return (self._portal or _shared_portal()).call(make)


_portal_lock = threading.Lock()
_portal: BlockingPortal | None = None


def _shared_portal() -> BlockingPortal:
    """The process's portal for sync environments, on a daemon thread of its own.

    A daemon thread, unlike `anyio.from_thread.start_blocking_portal`'s
    executor thread, never keeps the interpreter from exiting when an
    environment is not closed (a trainer rarely closes them).
    """
    global _portal
    with _portal_lock:
        if _portal is None:
            ready: Future[BlockingPortal] = Future()

            async def serve() -> None:
                async with BlockingPortal() as portal:
                    ready.set_result(portal)
                    await portal.sleep_until_stopped()

            threading.Thread(
                target=anyio.run, args=(serve,), name="convo-sim-env", daemon=True
            ).start()
            _portal = ready.result()
        return _portal
