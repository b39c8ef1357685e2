"""Completion detectors: decide, after each message, whether a dialogue is over.

A detector is any callable taking a `TurnContext` (the one context type:
what turn verifiers see too; `CompletionContext` is another name for it).
It may be sync or async and may return:

* `False` or `None`: keep going;
* `True`: stop, with the detector's `reason` attribute (default
  `goal_reached`);
* a `TerminationReason`: stop for that reason;
* a `Stop`: stop, naming reason and detector explicitly (what `any_of`
  returns, so the detector that really fired is recorded).

The built-ins cover the usual signals: the user's stop token, assistant
completion phrases, a predicate over derived state, and `any_of`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias

from typing_extensions import TypeVar

from convo_sim._messages import Message, Transcript
from convo_sim._results import TerminationReason

__all__ = [
    "DEFAULT_STOP_TOKEN",
    "CompletionContext",
    "Detector",
    "Stop",
    "TurnContext",
    "any_of",
    "check_detector",
    "completion_phrases",
    "detector_name",
    "state_predicate",
    "stop_token",
]

DEFAULT_STOP_TOKEN = "###STOP###"


ScenarioT_co = TypeVar("ScenarioT_co", covariant=True, default=object)


@dataclass(frozen=True, slots=True)
class TurnContext(Generic[ScenarioT_co]):
    """One message in context: the dialogue up to and including it.

    What completion detectors see after every message and turn verifiers
    after every assistant message; generic over the scenario type, so that
    a domain's verifiers read `ctx.scenario` with its own type
    (`TurnContext[CalendarScenario]`).

    Attributes:
        transcript: the dialogue so far, `message` last.
        message: the message just added.
        turn: the 1-based turn it belongs to.
        scenario: the dialogue's scenario, if it has one.
    """

    transcript: Transcript
    message: Message
    turn: int
    scenario: ScenarioT_co | None = None


CompletionContext = TurnContext
"""Another name of `TurnContext`: what a completion detector sees."""


@dataclass(frozen=True, slots=True)
class Stop:
    """A detector's decision to end the dialogue."""

    reason: TerminationReason
    detector: str


DetectorResult: TypeAlias = bool | TerminationReason | Stop | None
Detector: TypeAlias = Callable[[TurnContext[Any]], DetectorResult | Awaitable[DetectorResult]]


def detector_name(detector: object) -> str:
    """The name a detector or verifier is recorded under."""
    name = getattr(detector, "name", None)
    if isinstance(name, str):
        return name
    name = getattr(detector, "__name__", None)
    return name if isinstance(name, str) else type(detector).__name__


async def check_detector(detector: Detector, ctx: TurnContext[Any]) -> Stop | None:
    """Run one detector and normalise its answer to a `Stop` or None."""
    result: Any = detector(ctx)
    if inspect.isawaitable(result):
        result = await result
    if result is None or result is False:
        return None
    if isinstance(result, Stop):
        return result
    if isinstance(result, TerminationReason):
        return Stop(result, detector_name(detector))
    if result is True:
        reason = getattr(detector, "reason", TerminationReason.GOAL_REACHED)
        return Stop(TerminationReason(reason), detector_name(detector))
    raise TypeError(
        f"completion detector {detector_name(detector)!r} returned {result!r}; "
        "expected a bool, None, a TerminationReason or a Stop"
    )


class stop_token:
    """Fires when the user's message contains `token` (`###STOP###` by default)."""

    reason = TerminationReason.USER_STOP

    def __init__(self, token: str = DEFAULT_STOP_TOKEN) -> None:
        if not token:
            raise ValueError("stop token must be a non-empty string")
        self.token = token
        self.name = f"stop_token({token!r})"

    def __call__(self, ctx: TurnContext[Any]) -> bool:
        message = ctx.message
        return message.role == "user" and self.token in (message.content or "")


class completion_phrases:
    """Fires when the assistant's message contains one of `phrases`."""

    reason = TerminationReason.ASSISTANT_STOP

    def __init__(self, *phrases: str, case_sensitive: bool = False) -> None:
        if not phrases or not all(phrases):
            raise ValueError("completion_phrases needs at least one non-empty phrase")
        self.case_sensitive = case_sensitive
        self.phrases = phrases if case_sensitive else tuple(p.lower() for p in phrases)
        self.name = f"completion_phrases{phrases!r}"

    def __call__(self, ctx: TurnContext[Any]) -> bool:
        if ctx.message.role != "assistant":
            return False
        text = ctx.message.content or ""
        if not self.case_sensitive:
            text = text.lower()
        return any(p in text for p in self.phrases)


class state_predicate:
    """Fires when `predicate(extract(transcript))` holds after an assistant turn.

    `extract` derives the state from the dialogue (for the calendar domain,
    the calendar the assistant last showed); `predicate` says whether it is
    the goal state. `extract` may return None to mean "no state yet".
    """

    reason = TerminationReason.GOAL_REACHED

    def __init__(
        self,
        extract: Callable[[Transcript], Any],
        predicate: Callable[[Any], bool],
        *,
        name: str = "state_predicate",
    ) -> None:
        self.extract = extract
        self.predicate = predicate
        self.name = name

    def __call__(self, ctx: TurnContext[Any]) -> bool:
        if ctx.message.role != "assistant":
            return False
        state = self.extract(ctx.transcript)
        return state is not None and bool(self.predicate(state))


class any_of:
    """Fires when the first of `detectors` (checked in order) fires."""

    def __init__(self, *detectors: Detector) -> None:
        if not detectors:
            raise ValueError("any_of needs at least one detector")
        self.detectors: Sequence[Detector] = detectors
        self.name = "any_of(" + ", ".join(detector_name(d) for d in detectors) + ")"

    async def __call__(self, ctx: TurnContext[Any]) -> Stop | None:
        for detector in self.detectors:
            stop = await check_detector(detector, ctx)
            if stop is not None:
                return stop
        return None
