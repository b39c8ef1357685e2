"""Chat completions over the lean HTTP transport: the hot path of LLM dialogues.

`OpenAIChatModel(..., transport="lean")` (the default) sends chat
completions through `FastChatTransport` instead of the `openai` SDK: the
request is the same JSON body, the reply is read into a `Completion` with
plain dict look-ups, and the objects built from it skip re-validation
(`model_construct`) once their fields have been type-checked here. On the
loopback benchmark this costs a fraction of the SDK's CPU per request (see
`benchmarks/README.md`).

The adapter keeps its semantics on this path: the same `RetryPolicy`
decides what to retry (it classifies `HTTPStatusError`, `TransportError`
and `MalformedReply` as it does the SDK's errors), the per-request timeout
is the adapter's, usage is recorded, and errors become `ModelError`s with
the API key scrubbed. The transport itself never retries and never logs.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from typing import Any

from pydantic_core import PydanticSerializationError, from_json, to_json

from convo_sim._capture import read_tokens
from convo_sim._fast_http import FastHTTPClient, HTTPStatusError, RequestTimeout, TransportError
from convo_sim._messages import Message, ToolCall
from convo_sim._models import Completion
from convo_sim._results import Usage

__all__ = [
    "FastChatTransport",
    "HTTPStatusError",
    "MalformedReply",
    "RequestTimeout",
    "TransportError",
    "parse_chat_completion",
]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def _encode_capturing(request: Mapping[str, Any]) -> bytes:
    """A capturing request as JSON: pydantic-core's serializer when it can.

    It carries the last reply's token ids back, thousands of numbers, which
    pydantic-core writes about six times faster than json (measured); json
    stays the fallback, so anything it refuses fails exactly as before.
    """
    try:
        return to_json(request)
    except (PydanticSerializationError, ValueError):
        return _dumps(request).encode()


class MalformedReply(Exception):
    """The server answered 200 with something that is not a chat completion."""


class FastChatTransport:
    """Sends chat-completion requests over pooled keep-alive connections.

    Args:
        base_url: the API root, e.g. `http://127.0.0.1:8000/v1`.
        api_key: sent as a bearer token; never logged, never in an error.
        timeout: seconds one request may take (connection wait included).
        max_connections: the most connections open at once; a run with
            more dialogues in flight than this queues for a connection.
        ssl_context: TLS settings for an `https` URL (default: the system's).
        max_body: the largest reply accepted, in bytes, however it is framed.
        proxy: the proxy URL; default the one the environment names for
            `base_url`, as the `openai` SDK reads it; `""` for none.

    Raises:
        ValueError: `base_url` or the proxy is not an `http(s)://` URL, or the
            API key holds CR, LF or NUL (it would forge headers).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        timeout: float = 60.0,
        max_connections: int = 1000,
        ssl_context: ssl.SSLContext | None = None,
        max_body: int = 64 * 1024 * 1024,
        proxy: str | None = None,
    ) -> None:
        self.http = FastHTTPClient(
            base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            max_connections=max_connections,
            ssl_context=ssl_context,
            max_body=max_body,
            proxy=proxy,
        )

    def __repr__(self) -> str:
        return f"FastChatTransport({self.http!r})"

    @staticmethod
    def supported() -> bool:
        """True when the running event loop can carry this transport (asyncio's)."""
        return FastHTTPClient.supported()

    async def complete(self, request: Mapping[str, Any], *, capture: bool = False) -> Completion:
        """POST `request` to `/chat/completions` and read the reply.

        `capture`: the reply must carry token ids and logprobs (see
        `convo_sim._capture`); they go into the message's metadata.

        Raises:
            HTTPStatusError: the server answered with status 400 or more.
            TransportError: no complete reply (`RequestTimeout` for a timeout).
            MalformedReply: a 200 whose body is not a usable chat completion.
            MissingTokens: `capture`, and the reply lacks a token field.
        """
        body = _encode_capturing(request) if capture else _dumps(request).encode()
        response = await self.http.post("/chat/completions", body)
        try:
            # A capturing reply holds thousands of numbers; pydantic-core's
            # parser reads them faster than json's (benchmarks/capture.py).
            data = from_json(response.body) if capture else json.loads(response.body)
        except (ValueError, RecursionError) as exc:  # undecodable, or nested too deep
            raise MalformedReply(f"the reply is not JSON: {exc}") from None
        return parse_chat_completion(data, str(request.get("model", "")), capture=capture)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self.http.aclose()


def parse_chat_completion(data: Any, model: str, *, capture: bool = False) -> Completion:
    """A `Completion` from a decoded `chat.completion` object.

    Content is `None` only when the reply carries tool calls (an empty
    reply becomes `""`, which the actors' empty-reply check asks again for).
    With `capture`, the token fields go into the message's metadata.

    Raises:
        MalformedReply: the object lacks choices, or a field has the wrong type.
        MissingTokens: `capture`, and the reply lacks a token field.
    """
    # Validated constructors, not model_construct: for these small models
    # pydantic-core's validation is cheaper than model_construct's
    # Python-level field loop (measured: 0.9 us against 2-6 us a message).
    try:
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content")
        calls = tuple(
            ToolCall(
                id=call.get("id", ""),
                name=call["function"]["name"],
                arguments=call["function"].get("arguments") or "{}",
            )
            for call in message.get("tool_calls") or ()
            if call.get("type", "function") == "function"
        )
        finish = choice.get("finish_reason")
        raw_usage = data.get("usage") or {}
        usage = Usage(
            prompt_tokens=raw_usage.get("prompt_tokens") or 0,
            completion_tokens=raw_usage.get("completion_tokens") or 0,
            total_tokens=raw_usage.get("total_tokens") or 0,
        )
        metadata: dict[str, Any] = {"usage": usage.model_dump(), "model": model}
        if finish is not None:
            metadata["finish_reason"] = finish
        if capture:
            metadata.update(read_tokens(data))
        reply = Message(
            role="assistant",
            content=content if content is not None or calls else "",
            tool_calls=calls,
            metadata=metadata,
        )
        return Completion(message=reply, usage=usage, finish_reason=finish, id=data.get("id"))
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        # ValueError includes pydantic's ValidationError (a field of the wrong type).
        problem = str(exc).splitlines()[0] if str(exc) else ""
        raise MalformedReply(f"not a chat completion ({type(exc).__name__}: {problem})") from None
