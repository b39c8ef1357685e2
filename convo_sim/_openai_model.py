"""The OpenAI adapter: a `ChatModel` over any OpenAI-compatible server.

This is the only module that imports `openai`. It works against OpenAI
itself, vLLM (`vllm serve ...`), and the bundled `convo-sim serve`, through
either the chat-completions API (default) or the Responses API.

Chat completions travel over `transport="lean"` by default: a small
keep-alive HTTP/1.1 client (`convo_sim._fast_chat`) that costs several times
less CPU per request than the SDK, measured in `benchmarks/`. The
Responses API, and chat completions with `transport="sdk"` or on an event
loop other than asyncio's, go through the `openai` SDK.

Retries live here and only here: the SDK's own are off (`max_retries=0`)
and every request runs under one `RetryPolicy` (429 with `Retry-After`,
408, 409, 5xx, timeouts, dropped connections and unreadable bodies are
retried; other 4xx are not). The API key is kept private: it is never
logged, never part of `repr()`, scrubbed from every error message and from
every reply before the reply is returned (a server or model that echoes
it cannot get it into a transcript, a rollouts file or a report), and never
pickled: a pickled model reads its key again, from `api_key_env`, in the
process that unpickles it.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

import openai
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from convo_sim import _fast_chat as fast_chat
from convo_sim._capture import CAPTURE_REQUEST, MissingTokens, chat_messages
from convo_sim._errors import ModelError, TokenCaptureError
from convo_sim._logging import get_logger
from convo_sim._messages import Message, ToolCall, Transcript
from convo_sim._models import Completion, ModelSettings
from convo_sim._results import Usage
from convo_sim._retry import RetryPolicy, Transient, parse_retry_after
from convo_sim._tools import chat_tools, responses_tools

__all__ = ["LOCAL_API_KEY", "OpenAIChatModel"]

_log = get_logger("convo_sim.openai_model")

LOCAL_API_KEY = "not-needed"
"""The key sent when none is configured: local servers (vLLM, `convo-sim serve`) ignore it."""

_RETRY_STATUSES = frozenset((408, 409, 429))
# Key-like tokens scrubbed from error text even when they are not our key:
# a proxy may echo a different credential.
_KEY_PATTERNS = re.compile(r"(sk-[A-Za-z0-9_\-*]{6,}|Bearer\s+\S+)")
_MAX_ERROR_TEXT = 300


class _MalformedReply(Exception):
    """The server answered 200 with something that is not a usable reply."""


class OpenAIChatModel:
    """A `ChatModel` backed by an OpenAI-compatible HTTP API.

    One `openai.AsyncOpenAI` client is made per model object, on first use,
    and reused for every request (its connection pool is what keeps
    per-request overhead low); share one object between dialogues and
    close it with `aclose()` (or `async with`) when done.

    Args:
        model: the model name sent to the server.
        base_url: the API root, e.g. `http://127.0.0.1:8000/v1`; default
            `$OPENAI_BASE_URL`, else OpenAI's.
        api_key: default `$OPENAI_API_KEY`, else the placeholder
            `LOCAL_API_KEY`, which local servers accept.
        api: `chat` for chat completions, `responses` for the Responses API.
            The Responses API has no `seed` or `stop`; they are not sent.
        timeout: seconds one HTTP request may take before it is abandoned
            (and retried, if attempts remain).
        retry: the retry policy.
        settings: default sampling settings; per-call settings override them.
        transport: how chat completions travel: `lean` (`convo_sim._fast_chat`,
            the default; needs asyncio, anyio's default backend, and is
            skipped on any other) or `sdk` (the `openai` client). The
            Responses API always uses the SDK. Retries, timeout, usage and
            errors behave the same on both.
        api_key_env: the environment variable the key is read from when
            `api_key` is not given, and again wherever a pickled copy of
            this model is unpickled (the key itself is never pickled).
        capture_tokens: keep every reply's token ids and logprobs, as
            `ModelSettings(capture_tokens=True)` does for one call (chat
            completions only; see docs/training-data.md).

    Raises:
        ValueError: an option is out of range, or `capture_tokens` with the
            Responses API.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api: Literal["chat", "responses"] = "chat",
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        settings: ModelSettings | None = None,
        transport: Literal["lean", "sdk"] = "lean",
        api_key_env: str = "OPENAI_API_KEY",
        capture_tokens: bool = False,
    ) -> None:
        if transport not in ("lean", "sdk"):
            raise ValueError(f"transport must be 'lean' or 'sdk', got {transport!r}")
        if api not in ("chat", "responses"):
            raise ValueError(f"api must be 'chat' or 'responses', got {api!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if capture_tokens and api != "chat":
            raise ValueError("capture_tokens needs the chat-completions API (api='chat')")
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.api: Literal["chat", "responses"] = api
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.settings = settings or ModelSettings()
        if capture_tokens:
            self.settings = self.settings.merged(ModelSettings(capture_tokens=True))
        self.api_key_env = api_key_env
        self.transport: Literal["lean", "sdk"] = transport
        self._set_key(api_key or os.environ.get(api_key_env) or LOCAL_API_KEY)

    def _set_key(self, api_key: str) -> None:
        self._api_key = api_key
        self._secret = _Secret(api_key)
        self._client: openai.AsyncOpenAI | None = None
        self._lean: fast_chat.FastChatTransport | None = None

    def __repr__(self) -> str:
        return f"OpenAIChatModel({self.model!r}, base_url={self.base_url!r}, api={self.api!r})"

    # A model travels to Ray workers inside the actors and factories that
    # hold it. Its key stays behind, with the connection pools; the copy
    # reads the key of the process it lands in.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for private in ("_api_key", "_secret", "_client", "_lean"):
            state.pop(private, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._set_key(os.environ.get(self.api_key_env) or LOCAL_API_KEY)

    def __deepcopy__(self, memo: dict[int, Any]) -> OpenAIChatModel:
        # A copy within this process keeps the key (but not the pools).
        clone = OpenAIChatModel.__new__(OpenAIChatModel)
        clone.__dict__.update(copy.deepcopy(self.__getstate__(), memo))
        clone._set_key(self._api_key)
        return clone

    def _get_client(self) -> openai.AsyncOpenAI:
        # Made lazily so that a model object can be built outside an event
        # loop; no await happens between the check and the assignment.
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=0,  # tenacity is the one retry layer
            )
        return self._client

    def _chat_sender(self, capture: bool) -> Callable[[dict[str, Any]], Awaitable[Completion]]:
        if self.transport == "sdk" or not fast_chat.FastChatTransport.supported():
            return self._send_chat_capturing if capture else self._send_chat
        if self._lean is None:
            self._lean = fast_chat.FastChatTransport(
                self.base_url or "https://api.openai.com/v1",
                api_key=self._api_key,
                timeout=self.timeout,
            )
        if capture:
            return functools.partial(self._lean.complete, capture=True)
        return self._lean.complete

    async def aclose(self) -> None:
        """Close the HTTP connection pool (a later call opens a new one)."""
        client, self._client = self._client, None
        lean, self._lean = self._lean, None
        if lean is not None:
            await lean.aclose()
        if client is not None:
            await client.close()

    async def __aenter__(self) -> OpenAIChatModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def complete(
        self, messages: Sequence[Message], settings: ModelSettings | None = None
    ) -> Completion:
        """Send `messages` and return the reply, retrying transient failures.

        Token usage goes into the reply's `metadata["usage"]`; with
        `capture_tokens`, the token fields too (`convo_sim._capture`).

        Raises:
            ModelError: the request failed for good; `status_code` and
                `attempts` say how, and the message never contains the API key.
            TokenCaptureError: `capture_tokens`, and the reply lacks token ids
                or logprobs (or the API is the Responses API).
        """
        merged = self.settings.merged(settings)
        model = merged.model or self.model
        if self.api == "chat":
            request = self._chat_request(model, messages, merged)
            send = self._chat_sender(bool(merged.capture_tokens))
        elif merged.capture_tokens:
            raise TokenCaptureError(
                f"model {model!r}: capture_tokens needs the chat-completions API (api='chat')",
                missing="api",
            )
        else:
            request = self._responses_request(model, messages, merged)
            send = self._send_responses

        # Most requests succeed at once, so the first attempt builds nothing
        # for retrying: no closures or frames are held while it waits.
        try:
            reply = await send(request)
        except Exception as exc:  # cancellation is a BaseException and passes through
            reply = await self._retry(send, request, model, exc)
        # Whatever the transport, nothing the server said reaches the caller
        # (and so a transcript, a rollouts file, a report) with our key in it.
        return self._secret.scrub_completion(reply)

    async def _retry(
        self,
        send: Callable[[dict[str, Any]], Awaitable[Completion]],
        request: dict[str, Any],
        model: str,
        failure: Exception,
    ) -> Completion:
        """Hand a failed first attempt to the retry policy as its own first attempt.

        The policy classifies the failure, waits, logs and counts exactly as
        if it had made that attempt itself.
        """
        first: Exception | None = failure

        async def attempt() -> Completion:
            nonlocal first
            if first is not None:
                failed, first = first, None
                raise failed
            return await send(request)

        return await self.retry.call(
            attempt,
            classify=_classify,
            give_up=lambda exc, attempts: self._give_up(exc, attempts, model),
            log_fields={"model": model, "api": self.api},
        )

    # -- chat completions ---------------------------------------------------

    @staticmethod
    def _chat_request(model: str, messages: Sequence[Message], s: ModelSettings) -> dict[str, Any]:
        capture = bool(s.capture_tokens)
        chat = chat_messages(messages) if capture else [m.to_openai() for m in messages]
        request: dict[str, Any] = {"model": model, "messages": chat}
        if capture:
            request.update(CAPTURE_REQUEST)
        for key, value in (
            ("temperature", s.temperature),
            ("top_p", s.top_p),
            ("max_tokens", s.max_tokens),
            ("seed", s.seed),
            ("stop", list(s.stop) if s.stop else None),
            ("tools", chat_tools(s.tools) if s.tools else None),
        ):
            if value is not None:
                request[key] = value
        # Provider fields go in the body as they are; ours win a clash.
        return {**s.extra, **request} if s.extra else request

    async def _send_chat(self, request: dict[str, Any]) -> Completion:
        # `post` with a body we built ourselves: the typed `create()` spends
        # about a third of the client's time per request re-transforming
        # TypedDict params that are plain JSON already (measured on loopback).
        reply = await self._get_client().post(
            "/chat/completions", body=request, cast_to=ChatCompletion
        )
        if not isinstance(reply, ChatCompletion) or not reply.choices:
            raise _MalformedReply("the server's reply has no choices")
        choice = reply.choices[0]
        calls = tuple(
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
            for c in choice.message.tool_calls or ()
            if c.type == "function"
        )
        usage = Usage()
        if reply.usage is not None:
            usage = Usage(
                prompt_tokens=reply.usage.prompt_tokens or 0,
                completion_tokens=reply.usage.completion_tokens or 0,
                total_tokens=reply.usage.total_tokens or 0,
            )
        content = choice.message.content
        return _completion(
            content if content is not None or calls else "",
            calls,
            usage,
            choice.finish_reason,
            reply.id,
            request["model"],
        )

    async def _send_chat_capturing(self, request: dict[str, Any]) -> Completion:
        # The typed ChatCompletion has no place for vLLM's token fields: read
        # the body as JSON and parse it as the lean transport does (its
        # MalformedReply is retried like ours).
        data = await self._get_client().post(
            "/chat/completions", body=request, cast_to=dict[str, Any]
        )
        return fast_chat.parse_chat_completion(data, request["model"], capture=True)

    # -- Responses API ------------------------------------------------------

    @staticmethod
    def _responses_request(
        model: str, messages: Sequence[Message], s: ModelSettings
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": model,
            "input": Transcript.model_construct(messages=tuple(messages)).to_responses_input(),
            # Simulated dialogues are not worth keeping server-side.
            "store": False,
        }
        for key, value in (
            ("temperature", s.temperature),
            ("top_p", s.top_p),
            ("max_output_tokens", s.max_tokens),
            ("tools", responses_tools(s.tools) if s.tools else None),
        ):
            if value is not None:
                request[key] = value
        return {**s.extra, **request} if s.extra else request

    async def _send_responses(self, request: dict[str, Any]) -> Completion:
        reply = await self._get_client().post("/responses", body=request, cast_to=Response)
        if not isinstance(reply, Response):
            raise _MalformedReply("the server's reply is not a response object")
        calls = tuple(
            ToolCall(id=item.call_id, name=item.name, arguments=item.arguments)
            for item in reply.output
            if item.type == "function_call"
        )
        usage = Usage()
        if reply.usage is not None:
            usage = Usage(
                prompt_tokens=reply.usage.input_tokens or 0,
                completion_tokens=reply.usage.output_tokens or 0,
                total_tokens=reply.usage.total_tokens or 0,
            )
        finish = "stop"
        if reply.status == "incomplete":
            details = reply.incomplete_details
            finish = "length" if details and details.reason == "max_output_tokens" else "incomplete"
        text = reply.output_text
        return _completion(
            text if text or not calls else None, calls, usage, finish, reply.id, request["model"]
        )

    # -- failures -----------------------------------------------------------

    def _give_up(self, exc: Exception, attempts: int, model: str) -> ModelError:
        if isinstance(exc, MissingTokens):
            _log.warning("model.no_tokens", model=model, missing=exc.field)
            return TokenCaptureError(
                f"model {model!r}: token capture was asked for, but {_scrub(str(exc), self._api_key)}",
                missing=exc.field,
                attempts=attempts,
            )
        status = (
            exc.status_code
            if isinstance(exc, openai.APIStatusError | fast_chat.HTTPStatusError)
            else None
        )
        detail = _scrub(str(exc), self._api_key)
        where = f" (HTTP {status})" if status is not None else ""
        _log.warning(
            "model.failed", model=model, attempts=attempts, error=type(exc).__name__, status=status
        )
        return ModelError(
            f"model {model!r} failed after {attempts} attempt(s): "
            f"{type(exc).__name__}{where}: {detail}",
            status_code=status,
            attempts=attempts,
        )


def _completion(
    content: str | None,
    calls: tuple[ToolCall, ...],
    usage: Usage,
    finish_reason: str | None,
    reply_id: str | None,
    model: str,
) -> Completion:
    metadata: dict[str, Any] = {"usage": usage.model_dump(), "model": model}
    if finish_reason is not None:
        metadata["finish_reason"] = finish_reason
    message = Message(role="assistant", content=content, tool_calls=calls, metadata=metadata)
    return Completion(message=message, usage=usage, finish_reason=finish_reason, id=reply_id)


def _classify(exc: Exception) -> Transient | None:
    """Whether a failed request is worth another attempt, and when."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status in _RETRY_STATUSES or status >= 500:
            return Transient(status=status, retry_after=_retry_after(exc.response.headers))
        return None
    if isinstance(exc, fast_chat.HTTPStatusError):
        status = exc.status_code
        if status in _RETRY_STATUSES or status >= 500:
            return Transient(status=status, retry_after=_retry_after(exc.headers))
        return None
    if isinstance(exc, openai.APIConnectionError | fast_chat.TransportError):  # timeouts too
        return Transient()
    if isinstance(exc, _MalformedReply | fast_chat.MalformedReply | json.JSONDecodeError):
        # A truncated or garbled body from a healthy-looking 200 is a glitch
        # of the server or a proxy; the same request usually succeeds.
        return Transient(status=200)
    return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


class _Secret:
    """Finds the API key, whole or in part, in what a server sends back.

    Any run of 8 characters of the key counts (servers echo keys partly
    masked, `sk-abc...wxyz`). Scanning a reply for every such run costs
    about a millisecond for a long key and a long reply, so a reply is
    first checked for the runs that start at every 4th character of the
    key, which any leaked run of 11 or more characters contains, and only
    a reply that has one is scrubbed run by run. The placeholder key of
    local servers is no secret and costs nothing.
    """

    __slots__ = ("_probes", "key")

    def __init__(self, key: str) -> None:
        self.key = key if key and key != LOCAL_API_KEY else ""
        self._probes = tuple(self.key[i : i + 8] for i in range(0, max(len(self.key) - 7, 0), 4))

    def found_in(self, text: str) -> bool:
        return bool(self.key) and (self.key in text or any(probe in text for probe in self._probes))

    def scrub(self, text: str) -> str:
        """`text` with the key and every 8-character run of it replaced by `***`."""
        if not self.found_in(text):
            return text
        text = text.replace(self.key, "***")
        for i in range(len(self.key) - 7):
            piece = self.key[i : i + 8]
            if piece in text:
                text = text.replace(piece, "***")
        return text

    def scrub_completion(self, completion: Completion) -> Completion:
        """The completion with the key scrubbed from its text, tool calls and id."""
        if not self.key:
            return completion
        message = completion.message
        parts = [message.text, completion.id or ""]
        parts += [f"{call.id}\x00{call.name}\x00{call.arguments}" for call in message.tool_calls]
        if not any(self.found_in(part) for part in parts):
            return completion
        calls = tuple(
            call.model_copy(
                update={
                    "id": self.scrub(call.id),
                    "name": self.scrub(call.name),
                    "arguments": self.scrub(call.arguments),
                }
            )
            for call in message.tool_calls
        )
        content = None if message.content is None else self.scrub(message.content)
        scrubbed = message.model_copy(update={"content": content, "tool_calls": calls})
        reply_id = None if completion.id is None else self.scrub(completion.id)
        _log.warning("model.key_echoed", model=message.metadata.get("model"))
        return completion.model_copy(update={"message": scrubbed, "id": reply_id})


def _scrub(text: str, api_key: str) -> str:
    """Remove the API key (and anything key-like) from error text, and shorten it."""
    if api_key and api_key != LOCAL_API_KEY:
        text = text.replace(api_key, "***")
        # Servers often echo a key partly masked ("sk-abc...wxyz"): drop any
        # 8-character run of it as well.
        for i in range(len(api_key) - 7):
            piece = api_key[i : i + 8]
            if piece in text:
                text = text.replace(piece, "***")
    text = _KEY_PATTERNS.sub("***", text)
    if len(text) > _MAX_ERROR_TEXT:
        text = text[:_MAX_ERROR_TEXT] + "..."
    return text
