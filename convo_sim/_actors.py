"""The actor protocol and the role-relative view an actor answers.

An actor is anything with `async def respond(view) -> Message`. The
orchestrator runs each actor as its own task; the task owns its ends of two
memory object streams and stops when its inbox is closed (see
`convo_sim._orchestrator`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, runtime_checkable

from typing_extensions import TypeVar

from convo_sim._messages import Message, Transcript

__all__ = ["Actor", "ActorRole", "View", "flip_for_user"]

ActorRole = Literal["assistant", "user"]
ScenarioT_co = TypeVar("ScenarioT_co", covariant=True, default=object)


@runtime_checkable
class Actor(Protocol):
    """One side of a dialogue: the assistant or the simulated user."""

    async def respond(self, view: View) -> Message:
        """Return this actor's next message.

        The returned message's role is normalised by the orchestrator to the
        actor's side, so an LLM user simulator that thinks of itself as the
        assistant may return `role="assistant"`.

        Raises:
            Exception: any failure; the orchestrator records it and ends the
                dialogue with `assistant_error` or `user_error`.
        """
        ...


@dataclass(frozen=True, slots=True)
class View(Generic[ScenarioT_co]):
    """What an actor sees when it is asked to speak; generic over the scenario type.

    Attributes:
        role: the side the actor plays.
        transcript: the canonical dialogue so far (roles as spoken).
        turn: 1-based index of the assistant turn being produced (for the
            user, the turn its message opens).
        scenario: the scenario object passed to `run_dialogue`, if any.
        tools: for the assistant of a dialogue with tools, the tools it may
            call, as chat-completions `tools` entries; empty otherwise.
    """

    role: ActorRole
    transcript: Transcript
    turn: int
    scenario: ScenarioT_co | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    # The user's flipped messages, computed on first use (set through
    # object.__setattr__, the frozen dataclass's own way).
    _flipped: tuple[Message, ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def messages(self) -> tuple[Message, ...]:
        """The dialogue from this actor's point of view, ready for a chat model.

        The assistant sees the transcript as is (its system prompt included
        when the dialogue began from one). The user simulator sees only the
        spoken dialogue with roles flipped: the assistant's words arrive as
        `user` messages and its own as `assistant` messages; system, developer
        and tool messages belong to the assistant and are left out. The actor
        prepends its own prompt.
        """
        if self.role == "assistant":
            return self.transcript.messages
        # Computed on first use and cached: rule-based users never need it.
        flipped = self._flipped
        if flipped is None:
            flipped = flip_for_user(self.transcript)
            object.__setattr__(self, "_flipped", flipped)
        return flipped

    @property
    def last(self) -> Message | None:
        """The other side's latest message, or None if it has not spoken."""
        other = "user" if self.role == "assistant" else "assistant"
        for message in reversed(self.transcript.messages):
            if message.role == other:
                return message
        return None


_FLIP: dict[str, Literal["user", "assistant"]] = {"user": "assistant", "assistant": "user"}


def flip_for_user(transcript: Transcript) -> tuple[Message, ...]:
    """Return the spoken dialogue with user and assistant roles swapped."""
    out: list[Message] = []
    for message in transcript.messages:
        flipped = _FLIP.get(message.role)
        if flipped is None or not message.content:
            continue
        # The validating constructor: for a two-field message it is several
        # times cheaper than model_construct, which fills each missing
        # default in Python (measured with pydantic 2.14).
        out.append(Message(role=flipped, content=message.content))
    return tuple(out)
