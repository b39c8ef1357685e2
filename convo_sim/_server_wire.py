"""The JSON the bundled server sends: OpenAI chat-completions and Responses shapes.

Only what the `openai` client reads is produced, in the documented shapes:
`chat.completion` objects and `chat.completion.chunk` stream deltas ending
in `data: [DONE]`; `response` objects and the Responses streaming events
(`response.created`, `response.in_progress`, `response.output_item.added`,
`response.content_part.added`, `response.output_text.delta`,
`response.output_text.done`, `response.content_part.done`,
`response.output_item.done`, `response.completed`).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from convo_sim._messages import Message
from convo_sim._results import Usage

__all__ = [
    "chat_chunks",
    "chat_completion",
    "error_body",
    "response_events",
    "response_object",
    "sse",
    "usage_for",
]

_PIECE = re.compile(r"\S+\s*|\s+")


def _id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def sse(data: Mapping[str, Any] | str, event: str | None = None) -> bytes:
    """One server-sent event, encoded."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


def error_body(message: str, *, kind: str, code: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def usage_for(prompt: list[Message], reply: Message) -> Usage:
    """A deterministic token count: whitespace-separated words."""
    prompt_tokens = sum(len(m.text.split()) for m in prompt)
    completion_tokens = len(reply.text.split())
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


def _pieces(text: str) -> list[str]:
    # One word (with its trailing space) per delta, like a tokenizer would.
    return _PIECE.findall(text)


def _tool_calls(reply: Message) -> list[dict[str, Any]]:
    return [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for call in reply.tool_calls
    ]


def _finish(reply: Message) -> str:
    return "tool_calls" if reply.tool_calls else "stop"


def chat_completion(reply: Message, *, model: str, usage: Usage) -> dict[str, Any]:
    """A non-streaming `chat.completion` object."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = _tool_calls(reply)
    return {
        "id": _id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": _finish(reply), "logprobs": None}
        ],
        "usage": usage.model_dump(),
    }


def chat_chunks(
    reply: Message, *, model: str, usage: Usage, include_usage: bool
) -> Iterator[bytes]:
    """The `chat.completion.chunk` events of a streamed reply, then `[DONE]`."""
    base = {
        "id": _id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return sse({**base, "choices": [choice]})

    yield chunk({"role": "assistant", "content": ""})
    for piece in _pieces(reply.text):
        yield chunk({"content": piece})
    if reply.tool_calls:
        yield chunk(
            {"tool_calls": [{"index": i, **call} for i, call in enumerate(_tool_calls(reply))]}
        )
    yield chunk({}, _finish(reply))
    if include_usage:
        yield sse({**base, "choices": [], "usage": usage.model_dump()})
    yield sse("[DONE]")


def _output_items(reply: Message, *, msg_id: str, status: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if reply.content is not None or not reply.tool_calls:
        items.append(
            {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "status": status,
                "content": [
                    {"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}
                ],
            }
        )
    items.extend(
        {
            "id": _id("fc_"),
            "type": "function_call",
            "call_id": call.id,
            "name": call.name,
            "arguments": call.arguments,
            "status": "completed",
        }
        for call in reply.tool_calls
    )
    return items


def response_object(
    reply: Message | None,
    *,
    model: str,
    usage: Usage | None,
    request: Mapping[str, Any],
    resp_id: str | None = None,
    msg_id: str | None = None,
) -> dict[str, Any]:
    """A Responses API `response` object (in progress when `reply` is None)."""
    done = reply is not None
    return {
        "id": resp_id or _id("resp_"),
        "object": "response",
        "created_at": int(time.time()),
        "model": model,
        "status": "completed" if done else "in_progress",
        "output": _output_items(reply, msg_id=msg_id or _id("msg_"), status="completed")
        if reply is not None
        else [],
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "metadata": request.get("metadata") or {},
        "parallel_tool_calls": True,
        "temperature": request.get("temperature"),
        "top_p": request.get("top_p"),
        "tool_choice": "auto",
        "tools": [],
        "text": {"format": {"type": "text"}},
        "usage": None
        if usage is None
        else {
            "input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.total_tokens,
        },
    }


def response_events(
    reply: Message, *, model: str, usage: Usage, request: Mapping[str, Any]
) -> Iterator[bytes]:
    """The Responses API streaming events of one reply, in the documented order."""
    resp_id, msg_id = _id("resp_"), _id("msg_")
    seq = iter(range(1_000_000))

    def event(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, "sequence_number": next(seq), **fields}, event=kind)

    pending = response_object(None, model=model, usage=None, request=request, resp_id=resp_id)
    yield event("response.created", response=pending)
    yield event("response.in_progress", response=pending)
    final = response_object(
        reply, model=model, usage=usage, request=request, resp_id=resp_id, msg_id=msg_id
    )
    for index, item in enumerate(final["output"]):
        if item["type"] != "message":
            yield event("response.output_item.added", output_index=index, item=item)
            yield event("response.output_item.done", output_index=index, item=item)
            continue
        empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        started = {**item, "status": "in_progress", "content": []}
        where = {"item_id": msg_id, "output_index": index, "content_index": 0}
        yield event("response.output_item.added", output_index=index, item=started)
        yield event("response.content_part.added", part=empty_part, **where)
        for piece in _pieces(reply.text):
            yield event("response.output_text.delta", delta=piece, logprobs=[], **where)
        yield event("response.output_text.done", text=reply.text, logprobs=[], **where)
        yield event("response.content_part.done", part=item["content"][0], **where)
        yield event("response.output_item.done", output_index=index, item=item)
    yield event("response.completed", response=final)
