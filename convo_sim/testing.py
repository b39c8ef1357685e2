"""Fakes for testing code built on convo-sim, without a server or a key.

In the spirit of pydantic-ai's `FunctionModel`: the real actors and the real
orchestrator run, and only the seam to the LLM is swapped.

* `FunctionModel(fn)`: a `ChatModel` whose replies come from `fn(messages,
  settings)`, sync or async, returning text, a `Message` or a `Completion`.
* `ScriptedModel(*replies)`: a `ChatModel` that replies from a list, in order.

Both record every request in `.calls`, so a test can check what an actor sent.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import cast

from convo_sim._messages import Message
from convo_sim._models import Completion, ModelSettings
from convo_sim._results import Usage

__all__ = ["FunctionModel", "ModelCall", "ScriptedModel"]

Reply = str | Message | Completion
ReplyFn = Callable[[Sequence[Message], ModelSettings], Reply | Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One request a fake model received."""

    messages: tuple[Message, ...]
    settings: ModelSettings


def _completion(reply: Reply, messages: Sequence[Message]) -> Completion:
    if isinstance(reply, Completion):
        return reply
    if isinstance(reply, str):
        reply = Message(role="assistant", content=reply)
    if not isinstance(reply, Message):
        raise TypeError(f"fake model reply {reply!r} is not a str, Message or Completion")
    # A rough, deterministic token count, so usage sums can be tested.
    prompt = sum(len(m.text.split()) for m in messages)
    completion = len(reply.text.split())
    usage = Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
    message = reply.model_copy(update={"metadata": {**reply.metadata, "usage": usage.model_dump()}})
    return Completion(message=message, usage=usage, finish_reason="stop")


class FunctionModel:
    """A `ChatModel` whose replies come from a function."""

    def __init__(self, fn: ReplyFn) -> None:
        self.fn = fn
        self.calls: list[ModelCall] = []

    async def complete(self, messages: Sequence[Message], settings: ModelSettings) -> Completion:
        """Call the function and wrap its reply as a completion.

        Raises:
            Exception: whatever the function raises.
        """
        self.calls.append(ModelCall(tuple(messages), settings))
        reply = self.fn(messages, settings)
        if inspect.isawaitable(reply):
            reply = await reply
        return _completion(reply, messages)


class ScriptedModel(FunctionModel):
    """A `ChatModel` that replies from a list, in order.

    Takes the list as `ScriptedUser` does, `ScriptedModel(["hi", "bye"])`,
    or the replies one by one, `ScriptedModel("hi", "bye")`.

    Raises `IndexError` from `complete()` once the list is used up (the
    actor's dialogue then ends with an actor error).
    """

    def __init__(self, *replies: Reply | Sequence[Reply]) -> None:
        if len(replies) == 1 and isinstance(replies[0], list | tuple):
            self.replies: list[Reply] = list(replies[0])
        else:
            self.replies = [cast(Reply, r) for r in replies]
        super().__init__(self._next)

    def _next(self, messages: Sequence[Message], settings: ModelSettings) -> Reply:
        index = len(self.calls) - 1
        if index >= len(self.replies):
            raise IndexError(
                f"ScriptedModel has {len(self.replies)} replies; call {index + 1} asked"
            )
        return self.replies[index]
