"""Tool steps: typed tools a domain gives the assistant, and the environment that runs them.

A `Tool` is a function of the dialogue's state and one pydantic model of
arguments; `ToolEnv` holds a dialogue's state and its tools, exposes them as
OpenAI `tools` schemas (chat completions and Responses shapes) and executes
an assistant's `ToolCall`s against the state. Every call gives one `tool`
message: the result as JSON, or `{"error": ...}` for a call that cannot run
(an unknown tool, arguments that are not JSON or not of the declared types,
or a `ToolError` the tool raised). A bad call is the model's mistake, never
the dialogue's crash: it is counted (`ToolEnv.errors`) and the model sees the
error and may try again.

The dialogue state machine (`convo_sim._dialogue`) asks the environment to
run the calls of every assistant message that makes them, so `run_dialogue`
and the step-wise `DialogueEnv` execute tools alike. `replay` runs the calls
of a finished transcript again on a fresh state: tools are deterministic, so
a final verifier (or a re-scoring of a record) gets the final state from the
transcript alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from convo_sim._messages import Message, ToolCall, Transcript

__all__ = ["Tool", "ToolEnv", "ToolError", "chat_tools", "replay", "responses_tools"]

StateT = TypeVar("StateT")

TOOL_ERROR_KEY = "tool_error"
"""The metadata key of a tool message whose call failed; its value is the kind of failure."""


class ToolError(Exception):
    """A tool refuses a call (an unknown order, an action the state does not allow).

    Its text goes back to the model as the call's result; the dialogue goes on.
    """


@dataclass(frozen=True, slots=True)
class Tool(Generic[StateT]):
    """One function the assistant may call.

    Attributes:
        name: the function name the model calls.
        description: what it does, for the model.
        params: the pydantic model the JSON arguments must validate as.
        fn: `fn(state, args) -> result`; the result is JSON-able (or a
            pydantic model); raise `ToolError` to refuse. It may change
            `state` in place.
    """

    name: str
    description: str
    params: type[BaseModel]
    fn: Callable[[StateT, Any], Any]

    def chat_schema(self) -> dict[str, Any]:
        """The tool as a chat-completions `tools` entry."""
        return {"type": "function", "function": self._function()}

    def responses_schema(self) -> dict[str, Any]:
        """The tool as a Responses API `tools` entry."""
        return {"type": "function", **self._function()}

    def _function(self) -> dict[str, Any]:
        schema = self.params.model_json_schema()
        schema.pop("title", None)
        return {"name": self.name, "description": self.description, "parameters": schema}


def chat_tools(schemas: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Tool schemas in either OpenAI shape, as chat-completions `tools` entries."""
    return [_as_chat(s) for s in schemas]


def responses_tools(schemas: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Tool schemas in either OpenAI shape, as Responses API `tools` entries."""
    out: list[dict[str, Any]] = []
    for schema in schemas:
        function = _as_chat(schema).get("function", {})
        # The entry's own type last: a "type" inside the function must not override it.
        out.append({**{k: v for k, v in function.items() if k != "type"}, "type": "function"})
    return out


def _as_chat(schema: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(schema.get("function"), Mapping):
        return {"type": "function", "function": dict(schema["function"])}
    function = {k: v for k, v in schema.items() if k != "type"}
    return {"type": "function", "function": function}


class ToolEnv(Generic[StateT]):
    """A dialogue's tools and the state they act on.

    Args:
        tools: the tools, by their names.
        state: the state the tools read and change (the environment's own
            copy: give it a fresh one per dialogue).

    Attributes:
        state: the state now.
        calls: tool calls executed.
        errors: calls that failed (unknown tool, bad arguments, a refusal).
    """

    def __init__(self, tools: Sequence[Tool[StateT]], state: StateT) -> None:
        self.tools: dict[str, Tool[StateT]] = {t.name: t for t in tools}
        if len(self.tools) != len(tools):
            raise ValueError("two tools share a name")
        self.state = state
        self.calls = 0
        self.errors = 0

    def schemas(self) -> tuple[dict[str, Any], ...]:
        """Every tool as a chat-completions `tools` entry, in order."""
        return tuple(t.chat_schema() for t in self.tools.values())

    def run(self, call: ToolCall) -> Message:
        """Execute one call against the state; its result as a `tool` message."""
        self.calls += 1
        tool = self.tools.get(call.name)
        if tool is None:
            known = ", ".join(self.tools)
            return self._error(call, "unknown_tool", f"unknown tool {call.name!r}; tools: {known}")
        try:
            raw = json.loads(call.arguments or "{}")
        except ValueError as exc:
            return self._error(call, "bad_json", f"arguments are not JSON: {exc}")
        try:
            args = tool.params.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            return self._error(call, "bad_arguments", f"invalid arguments: {problems}")
        try:
            result = tool.fn(self.state, args)
        except ToolError as exc:
            return self._error(call, "refused", str(exc))
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        text = result if isinstance(result, str) else json.dumps(result, sort_keys=True)
        return Message(role="tool", content=text, tool_call_id=call.id, name=call.name)

    def _error(self, call: ToolCall, kind: str, text: str) -> Message:
        self.errors += 1
        return Message(
            role="tool",
            content=json.dumps({"error": text}),
            tool_call_id=call.id,
            name=call.name,
            metadata={TOOL_ERROR_KEY: kind},
        )


def replay(env: ToolEnv[StateT], transcript: Transcript) -> ToolEnv[StateT]:
    """Run on `env` every call of `transcript` that was answered by a tool message, in order.

    Returns `env`, its state now the state the dialogue ended with (tools
    are deterministic). A call left unanswered (the dialogue ended first)
    is not run.
    """
    answered = {m.tool_call_id for m in transcript.messages if m.role == "tool"}
    for message in transcript.messages:
        for call in message.tool_calls if message.role == "assistant" else ():
            if call.id in answered:
                env.run(call)
    return env
