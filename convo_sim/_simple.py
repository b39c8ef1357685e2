"""Building blocks for scripted and function actors.

The family packages expose them per side (`convo_sim.agents.ScriptedAssistant`,
`convo_sim.users.ScriptedUser`, ...); they live here so that both sides share
one implementation.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import ClassVar, Literal

from convo_sim._actors import ActorRole, View
from convo_sim._completion import DEFAULT_STOP_TOKEN
from convo_sim._errors import ScriptExhausted
from convo_sim._messages import Message

__all__ = ["FunctionActor", "ScriptedActor", "WhenDone"]

WhenDone = Literal["stop", "error", "repeat"]


def _as_message(reply: Message | str, role: ActorRole) -> Message:
    if isinstance(reply, Message):
        return reply
    if isinstance(reply, str):
        return Message(role=role, content=reply)
    raise TypeError(f"actor function returned {type(reply).__name__}, expected Message or str")


class ScriptedActor:
    """Replays a fixed list of messages, one per call.

    Keeps its position, so use one instance per dialogue.

    Args:
        script: the messages (or plain strings) to say, in order.
        when_done: what to do once the script is used up: `stop` says the
            stop token, `error` raises `ScriptExhausted` (the dialogue ends
            with an actor error), `repeat` says the last message again.
        stop_token: the text said with `when_done="stop"`.
    """

    role: ClassVar[ActorRole]

    def __init__(
        self,
        script: Iterable[Message | str],
        *,
        when_done: WhenDone = "error",
        stop_token: str = DEFAULT_STOP_TOKEN,
    ) -> None:
        self.script = tuple(_as_message(m, self.role) for m in script)
        self.when_done = when_done
        self.stop_token = stop_token
        self.position = 0

    async def respond(self, view: View) -> Message:
        """Return the next scripted message.

        Raises:
            ScriptExhausted: the script is used up and `when_done="error"`.
        """
        if self.position < len(self.script):
            message = self.script[self.position]
            self.position += 1
            return message
        if self.when_done == "stop":
            return Message(role=self.role, content=self.stop_token)
        if self.when_done == "repeat" and self.script:
            return self.script[-1]
        raise ScriptExhausted(len(self.script))


class FunctionActor:
    """Wraps a sync or async callable `fn(view) -> Message | str`."""

    role: ClassVar[ActorRole]

    def __init__(self, fn: Callable[[View], Message | str | Awaitable[Message | str]]) -> None:
        self.fn = fn

    async def respond(self, view: View) -> Message:
        """Call the function and wrap a string reply in a message.

        Raises:
            Exception: whatever the function raises.
        """
        reply = self.fn(view)
        if inspect.isawaitable(reply):
            reply = await reply
        return _as_message(reply, self.role)
