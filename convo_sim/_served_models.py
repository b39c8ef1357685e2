"""The "models" the bundled server serves: rule-based actors behind a chat API.

A served model gets what an OpenAI-compatible server gets, the chat
messages of one request, and returns one assistant message. Two kinds:

* `EchoModel` repeats the last message it was sent (tests, smoke checks).
* `ActorModel` wraps a convo-sim actor. It rebuilds the actor's `View` from
  the messages and calls `respond`:

  - role `assistant`: the messages *are* the transcript (system prompt
    first, tool calls and results included); the request's `tools` are
    the view's. The calendar solver reconstructs its state from it, the
    support agent its facts, and answers with real `tool_calls`.
  - role `user`: the messages arrive as an LLM user simulator sends them:
    its own system prompt first, then the dialogue with roles flipped. The
    model un-flips them, reads the **scenario card** from the system prompt
    (one line of JSON between `<convo-sim-scenario>` tags, written by
    `convo_sim.users.LLMUser` when given `scenario_card=`; what it holds is
    the domain's, see `Domain.card`), builds the actor from it,
    and replays the user's earlier turns (their output is discarded) so a
    user that keeps state across turns answers exactly as it would
    in-process. The card is the whole protocol: nothing rides in
    `extra_body` or `metadata`, so it passes through any client and both
    the chat and the Responses APIs.

`default_models()` is what `convo-sim serve` serves: `echo` and every
domain's models (`Domain.served_models`: the calendar's `calendar-solver`
and `calendar-user` are its rule-based actors).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from convo_sim._actors import Actor, View
from convo_sim._logging import get_logger
from convo_sim._messages import Message, Transcript
from convo_sim._scenario_card import parse_scenario_card
from convo_sim._tools import chat_tools

__all__ = ["ActorModel", "EchoModel", "ServedModel", "default_models", "request_tools"]

_FLIP: dict[str, Literal["user", "assistant"]] = {"user": "assistant", "assistant": "user"}

_log = get_logger("convo_sim.server")

ActorFactory = Callable[[Mapping[str, Any] | None], tuple[Actor, object | None]]
"""Builds a fresh actor (and the scenario its view carries) from a scenario card."""


class ServedModel(Protocol):
    """One model of the bundled server.

    The server answers a request whose body is over
    `ServerLimits.offload_above` bytes on its worker event loop, a thread of
    its own (so that a big request never stalls the others): a model must
    not hold state tied to one event loop, such as an `anyio.Event` made on
    another.
    """

    async def reply(self, messages: Sequence[Message], body: Mapping[str, Any]) -> Message:
        """Return the assistant message answering `messages`.

        Args:
            messages: the request's messages (chat) or input items (Responses),
                as convo-sim messages.
            body: the whole request body, for models that read settings.

        Raises:
            ValueError: the request cannot be answered (the server says 400).
        """
        ...


class EchoModel:
    """Answers with the text of the last non-system message (or `empty`)."""

    def __init__(self, *, prefix: str = "", empty: str = "hello") -> None:
        self.prefix = prefix
        self.empty = empty

    async def reply(self, messages: Sequence[Message], body: Mapping[str, Any]) -> Message:
        """Echo the last message.

        Raises:
            ValueError: never; the signature follows `ServedModel`.
        """
        for message in reversed(messages):
            if message.role not in ("system", "developer") and message.text:
                return Message(role="assistant", content=self.prefix + message.text)
        return Message(role="assistant", content=self.prefix + self.empty)


class ActorModel:
    """A convo-sim actor served as a chat model (see the module docstring).

    Args:
        role: the side the actor plays.
        factory: builds a fresh actor per request from the scenario card
            (None when the prompt has none) and returns it with the scenario
            object to put in its view.
        replay: for a user, call the actor on each earlier turn first so
            that per-dialogue state builds up as it did in-process.
    """

    def __init__(
        self,
        role: Literal["assistant", "user"],
        factory: ActorFactory,
        *,
        replay: bool = True,
    ) -> None:
        self.role = role
        self.factory = factory
        self.replay = replay

    async def reply(self, messages: Sequence[Message], body: Mapping[str, Any]) -> Message:
        """Rebuild the view, ask a fresh actor, return its message as the assistant's.

        Raises:
            ValueError: the scenario card is unreadable or does not fit the actor.
            Exception: whatever the actor raises.
        """
        if self.role == "assistant":
            transcript = Transcript.model_construct(messages=tuple(messages))
            actor, scenario = self.factory(None)
            tools = tuple(chat_tools(request_tools(body)))
            view = View("assistant", transcript, _turn(transcript), scenario, tools)
            reply = await actor.respond(view)
        else:
            reply = await self._user_reply(messages)
        return Message(role="assistant", content=reply.content, tool_calls=reply.tool_calls)

    async def _user_reply(self, messages: Sequence[Message]) -> Message:
        card = None
        if messages and messages[0].role in ("system", "developer"):
            card = parse_scenario_card(messages[0].text)
            messages = messages[1:]
        dialogue = tuple(
            Message.model_construct(role=_FLIP[m.role], content=m.content)
            for m in messages
            if m.role in _FLIP
        )
        actor, scenario = self.factory(card)
        if self.replay:
            for index, message in enumerate(dialogue):
                if message.role == "user":
                    earlier = Transcript.model_construct(messages=dialogue[:index])
                    await actor.respond(View("user", earlier, _turn(earlier), scenario))
        transcript = Transcript.model_construct(messages=dialogue)
        return await actor.respond(View("user", transcript, _turn(transcript), scenario))


def request_tools(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The request's `tools` (chat or Responses shape), checked; [] when it sends none.

    Raises:
        ValueError: `tools` is not a list of function tools with a name.
    """
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise ValueError("'tools' must be a list")
    for tool in tools:
        function = tool.get("function", tool) if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise ValueError("every entry of 'tools' must be a function tool with a name")
    return tools


def _turn(transcript: Transcript) -> int:
    # The orchestrator numbers a turn by the assistant replies before it.
    return sum(1 for m in transcript.messages if m.role == "assistant") + 1


def default_models() -> dict[str, ServedModel]:
    """The models `convo-sim serve` serves, by name: `echo` and every domain's.

    A model name a domain takes from another (or from `echo`) is logged as
    `server.model_name_taken` and left to the first: domains come in name
    order, so which one serves it never depends on installation order.
    """
    from convo_sim.domains import get, names

    models: dict[str, ServedModel] = {"echo": EchoModel()}
    for name in names():
        for model_name, model in get(name).served_models().items():
            if model_name in models:
                _log.warning("server.model_name_taken", model=model_name, domain=name)
                continue
            models[model_name] = model
    return models
