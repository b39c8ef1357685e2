"""Messages and transcripts, with conversion to and from OpenAI wire shapes.

`Message` and `Transcript` are frozen pydantic models so that a transcript can
be shared between actors, verifiers and sinks without defensive copies. The
JSON round-trip is lossless (`model_dump_json` / `model_validate_json`).

Two OpenAI shapes are supported:

* chat-completions messages (`{"role", "content", "tool_calls", ...}`), and
* Responses API `input` items, the shape of NeMo-Gym's
  `responses_create_params.input` (`{"role", "content"}` messages whose
  content may be a string or a list of `input_text`/`output_text` parts, plus
  `function_call` and `function_call_output` items).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TOKEN_FIELDS", "Message", "Role", "ToolCall", "Transcript"]

Role: TypeAlias = Literal["system", "developer", "user", "assistant", "tool"]

_ROLES: frozenset[str] = frozenset(("system", "developer", "user", "assistant", "tool"))

TOKEN_FIELDS = ("prompt_token_ids", "generation_token_ids", "generation_log_probs")
"""NeMo-Gym's names for a policy turn's tokens: kept in a captured assistant
message's metadata and written on its last Responses item (see
`convo_sim._capture` and docs/training-data.md)."""


class ToolCall(BaseModel):
    """One function call requested by the assistant.

    `arguments` is the JSON text exactly as the model produced it, so that a
    malformed call survives the round-trip for a verifier to judge.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    arguments: str = "{}"


class Message(BaseModel):
    """One message of a dialogue.

    Attributes:
        role: who speaks.
        content: the text; `None` only for an assistant message that carries
            tool calls and no text.
        tool_calls: function calls of an assistant message.
        tool_call_id: for a `tool` message, the call it answers.
        name: optional speaker or tool name.
        metadata: free-form data that is kept but never sent to a model
            (usage, latency, which actor produced it); the exception is a
            captured assistant reply's token fields (`TOKEN_FIELDS`), which
            a capturing model sends back and records keep.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    content: str | None = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    metadata: Mapping[str, Any] = Field(default_factory=dict)

    @property
    def text(self) -> str:
        """The content as a string (empty when there is none)."""
        return self.content or ""

    def to_openai(self) -> dict[str, Any]:
        """Return this message as an OpenAI chat-completions message dict."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in self.tool_calls
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out

    @classmethod
    def from_openai(cls, data: Mapping[str, Any]) -> Message:
        """Build a message from an OpenAI chat-completions message dict.

        Raises:
            ValueError: the role is unknown or the content has an unknown shape.
        """
        role = data.get("role")
        if role not in _ROLES:
            raise ValueError(f"unknown message role {role!r}; expected one of {sorted(_ROLES)}")
        calls = tuple(
            ToolCall(
                id=str(call.get("id", "")),
                name=str(call["function"]["name"]),
                arguments=str(call["function"].get("arguments", "{}")),
            )
            for call in data.get("tool_calls") or ()
        )
        return cls(
            role=role,
            content=_content_text(data.get("content")),
            tool_calls=calls,
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
        )

    def to_responses_items(self) -> list[dict[str, Any]]:
        """Return this message as Responses API `input` items.

        A plain message is one item; an assistant message with tool calls
        becomes its text (if any) followed by one `function_call` item per
        call; a tool message becomes a `function_call_output` item. A
        captured assistant reply's token fields go on its last item, where
        NeMo-Gym puts them.
        """
        if self.role == "tool":
            return [
                {
                    "type": "function_call_output",
                    "call_id": self.tool_call_id or "",
                    "output": self.text,
                }
            ]
        items: list[dict[str, Any]] = []
        if self.content is not None or not self.tool_calls:
            items.append({"role": self.role, "content": self.text})
        items.extend(
            {
                "type": "function_call",
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments,
            }
            for call in self.tool_calls
        )
        if self.role == "assistant" and self.metadata and TOKEN_FIELDS[1] in self.metadata:
            meta = self.metadata
            items[-1].update((name, meta[name]) for name in TOKEN_FIELDS if name in meta)
        return items


def _token_metadata(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: item[name] for name in TOKEN_FIELDS if name in item}


def _content_text(content: Any) -> str | None:
    """Flatten OpenAI content (a string or a list of text parts) to a string."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise ValueError(f"unsupported content part {part!r}; expected a text part")
        return "".join(parts)
    raise ValueError(f"unsupported message content {content!r}; expected a string or parts")


class Transcript(BaseModel):
    """An ordered, immutable sequence of messages."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    messages: tuple[Message, ...] = ()

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self) -> Iterator[Message]:  # type: ignore[override]
        return iter(self.messages)

    def __getitem__(self, index: int) -> Message:
        return self.messages[index]

    def append(self, message: Message) -> Transcript:
        """Return a new transcript with `message` added at the end."""
        # Validation does not re-validate the earlier messages (model
        # instances are accepted as they are), and pydantic-core does it for
        # less than model_construct's Python loop costs (measured).
        return Transcript(messages=(*self.messages, message))

    def extend(self, messages: Iterable[Message]) -> Transcript:
        """Return a new transcript with `messages` added at the end."""
        return Transcript(messages=(*self.messages, *messages))

    @property
    def last(self) -> Message | None:
        """The last message, or None for an empty transcript."""
        return self.messages[-1] if self.messages else None

    def by_role(self, role: Role) -> tuple[Message, ...]:
        """The messages spoken by `role`, in order."""
        return tuple(m for m in self.messages if m.role == role)

    def to_openai(self) -> list[dict[str, Any]]:
        """Return the transcript as OpenAI chat-completions messages."""
        return [m.to_openai() for m in self.messages]

    @classmethod
    def from_openai(cls, messages: Sequence[Mapping[str, Any]]) -> Transcript:
        """Build a transcript from OpenAI chat-completions messages.

        Raises:
            ValueError: a message has an unknown role or content shape.
        """
        return cls(messages=tuple(Message.from_openai(m) for m in messages))

    def to_responses_input(self) -> list[dict[str, Any]]:
        """Return the transcript as Responses API `input` items."""
        return [item for m in self.messages for item in m.to_responses_items()]

    @classmethod
    def from_responses_input(cls, items: Sequence[Mapping[str, Any]] | str) -> Transcript:
        """Build a transcript from Responses API `input` (a string or items).

        Consecutive `function_call` items attach to the assistant message that
        precedes them (or to a new, text-less assistant message). Token
        fields on an assistant item go into its message's metadata.

        Raises:
            ValueError: an item has an unknown type, role or content shape.
        """
        if isinstance(items, str):
            return cls(messages=(Message(role="user", content=items),))
        out: list[Message] = []
        for item in items:
            kind = item.get("type", "message")
            if kind == "message":
                role = item.get("role")
                if role not in _ROLES:
                    raise ValueError(f"unknown message role {role!r} in Responses input item")
                tokens = _token_metadata(item) if role == "assistant" else {}
                out.append(
                    Message(role=role, content=_content_text(item.get("content")), metadata=tokens)
                )
            elif kind == "function_call":
                call = ToolCall(
                    id=str(item.get("call_id", "")),
                    name=str(item["name"]),
                    arguments=str(item.get("arguments", "{}")),
                )
                tokens = _token_metadata(item)
                if out and out[-1].role == "assistant":
                    prev = out[-1]
                    update: dict[str, Any] = {"tool_calls": (*prev.tool_calls, call)}
                    if tokens:
                        update["metadata"] = {**prev.metadata, **tokens}
                    out[-1] = prev.model_copy(update=update)
                else:
                    out.append(
                        Message(role="assistant", content=None, tool_calls=(call,), metadata=tokens)
                    )
            elif kind == "function_call_output":
                output = item.get("output", "")
                out.append(
                    Message(
                        role="tool",
                        content=output if isinstance(output, str) else json.dumps(output),
                        tool_call_id=str(item.get("call_id", "")),
                    )
                )
            else:
                raise ValueError(f"unsupported Responses input item type {kind!r}")
        return cls(messages=tuple(out))
