"""A small OpenAI-compatible HTTP server whose models are rule-based actors.

It lets the real `openai` client path (retries, timeouts, streaming, both
APIs) run offline, without a key: `convo-sim serve` starts it from the
command line; tests start it in-process (`serve_models`, an async context
manager, or `ServerThread`, which runs it on its own event loop).

Endpoints (under `/v1`): `GET /models`, `POST /chat/completions` and
`POST /responses`, each non-streaming or streaming (server-sent events in
the wire format the `openai` client parses); `GET /metrics` has counters in
Prometheus' text format (requests, and the canned model's prefix cache).
The models are `ServedModel`s (see `convo_sim._served_models`); a
`FaultPlan` injects failures. Whatever the model, non-streamed chat
completions carry token ids and logprobs when asked, as vLLM's do, and
`POST /tokenize` and `/detokenize` answer as vLLM's
(`convo_sim._server_tokens`, `TokenOptions`).

HTTP is aiohttp's server (llhttp parses the requests), which needs an
asyncio event loop (anyio's default backend). `ServerLimits` bounds what
one client can cost the others: request and header sizes, idle and body
timeouts, JSON nesting; requests with a body over `offload_above` bytes are
parsed and answered on a worker event loop in a thread of its own, so a
served model must not depend on which loop runs it. When the process runs
out of file descriptors it keeps serving (accepting pauses for a second)
and logs `server.out_of_file_descriptors`. It binds 127.0.0.1 unless told
otherwise and never logs request headers (they carry the API key) or
content.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any
from urllib.parse import unquote

import anyio
import anyio.from_thread
import anyio.to_thread
from aiohttp import web
from anyio.abc import TaskStatus

from convo_sim import _server_wire as wire
from convo_sim._errors import InputError
from convo_sim._faults import Fault, FaultPlan
from convo_sim._logging import get_logger
from convo_sim._messages import Message, Transcript
from convo_sim._served_models import ServedModel, default_models, request_tools
from convo_sim._server_http import (
    HTTP_LOGGER,
    Reply,
    ServerLimits,
    WorkerLoop,
    accept_errors_logged,
    json_depth_exceeds,
)
from convo_sim._server_tokens import (
    TokenOptions,
    add_token_fields,
    detokenize,
    encode_reply,
    tokenize,
    wants_tokens,
)

__all__ = ["ModelServer", "ServerLimits", "ServerThread", "serve_models"]

_log = get_logger("convo_sim.server")

_COMPLETIONS = {"/v1/chat/completions": False, "/v1/responses": True}
# vLLM mounts its tokenizer endpoints at the root; /v1 is accepted too.
_TOKENIZER = {"/tokenize", "/v1/tokenize", "/detokenize", "/v1/detokenize"}
# In-flight requests get this long to finish when the server stops.
_SHUTDOWN_GRACE = 1.0
# Connections waiting to be accepted (while the process is out of file
# descriptors, say) queue here rather than being refused.
_BACKLOG = 1024


class _HTTPError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        *,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.close = close


class _Server(web.Server):
    """aiohttp's low-level server, counting the connections it accepts."""

    def __init__(self, owner: ModelServer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.owner = owner

    def connection_made(self, handler: Any, transport: asyncio.Transport) -> None:
        self.owner.connections += 1
        super().connection_made(handler, transport)


class ModelServer:
    """An OpenAI-compatible server over `ServedModel`s.

    Args:
        models: the models by name; default `default_models()`.
        faults: failures to inject; default none. May be edited while serving.
        host: the address to bind; loopback by default.
        port: the port; 0 picks a free one (read `port` once started).
        limits: request size and time limits; default `ServerLimits()`.
        tokens: how token ids and logprobs are made (`TokenOptions`:
            drift, whether passed-back ids are honoured); default exact.
    """

    def __init__(
        self,
        models: Mapping[str, ServedModel] | None = None,
        *,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: ServerLimits | None = None,
        tokens: TokenOptions | None = None,
    ) -> None:
        self.models: dict[str, ServedModel] = (
            dict(models) if models is not None else default_models()
        )
        self.faults = faults if faults is not None else FaultPlan()
        self.host = host
        self.port = port
        self.limits = limits or ServerLimits()
        self.tokens = tokens or TokenOptions()
        self.tokenizer = self.tokens.tokenizer()
        self.connections = 0
        """Connections accepted so far (a pooled client reuses one)."""
        self.requests = 0
        """Requests received so far, faulty ones included."""

    @property
    def base_url(self) -> str:
        """The API root to give a client, e.g. `http://127.0.0.1:8000/v1`."""
        return f"http://{self.host}:{self.port}/v1"

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Accept connections until cancelled; reports the bound port to `task_status`.

        Raises:
            OSError: the address cannot be bound.
            RuntimeError: the event loop is not asyncio's.
        """
        limits = self.limits
        loop = asyncio.get_running_loop()
        worker = WorkerLoop(limits.offload_concurrency)
        server = _Server(
            self,
            handler=lambda request: self._handle(request, worker),
            request_factory=self._request_factory(loop),
            # A client that goes away cancels its request (a hung fault, say).
            handler_cancellation=True,
            keepalive_timeout=limits.idle_timeout,
            max_line_size=limits.max_line,
            max_field_size=limits.max_line,
            max_headers=limits.max_headers,
            lingering_time=min(2.0, limits.body_timeout),
            auto_decompress=False,  # no request is compressed; a zip bomb stays a bad body
            access_log=None,
            logger=HTTP_LOGGER,
        )
        runner = web.ServerRunner(server, shutdown_timeout=_SHUTDOWN_GRACE)
        await runner.setup()
        try:
            with accept_errors_logged(loop):
                # One socket, bound here: a host name with several addresses
                # would otherwise get a different free port on each.
                family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
                sock = await anyio.to_thread.run_sync(
                    lambda: socket.create_server((self.host, self.port), family=family)
                )
                site = web.SockSite(runner, sock, backlog=_BACKLOG)
                try:
                    await site.start()
                except BaseException:
                    sock.close()
                    raise
                self.port = sock.getsockname()[1]
                _log.info(
                    "server.started", host=self.host, port=self.port, models=sorted(self.models)
                )
                task_status.started(self.port)
                await anyio.sleep_forever()
        finally:
            with anyio.move_on_after(_SHUTDOWN_GRACE + 10, shield=True):
                await runner.cleanup()
                await worker.aclose()

    def _request_factory(self, loop: asyncio.AbstractEventLoop) -> Any:
        max_body = self.limits.max_body

        def make(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> Any:
            # aiohttp enforces client_max_size as the body is read, whatever its framing.
            return web.BaseRequest(
                message, payload, protocol, writer, task, loop, client_max_size=max_body
            )

        return make

    # -- requests ------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest, worker: WorkerLoop) -> web.StreamResponse:
        path, method = request.path, request.method
        try:
            responses = _COMPLETIONS.get(path)
            if responses is None and path in _TOKENIZER and method == "POST":
                raw = await self._read_body(request)
                self.requests += 1
                reply = self._tokenizer_reply(path, raw)
            elif responses is None:
                self.requests += 1
                reply = self._route(method, path)
            elif method != "POST":
                self.requests += 1
                raise _HTTPError(405, f"use POST for {path}")
            else:
                raw = await self._read_body(request)
                self.requests += 1
                authorization = request.headers.get("Authorization", "")
                if len(raw) > self.limits.offload_above:
                    reply = await worker.run(self._complete, responses, authorization, raw, True)
                else:
                    reply = await self._complete(responses, authorization, raw, False)
        except _HTTPError as exc:
            error = wire.error_body(exc.message, kind=exc.kind)
            reply = Reply.json(exc.status, error, close=exc.close)
        except Exception as exc:  # cancellation is a BaseException and passes through
            # A crashing model must not take the server (or other dialogues) down.
            _log.warning("server.model_error", path=path, error=type(exc).__name__)
            message = f"{type(exc).__name__}: {exc}"
            reply = Reply.json(500, wire.error_body(message, kind="server_error"))
        return await reply.send(request)

    def _route(self, method: str, path: str) -> Reply:
        if path in ("/v1/models", "/models") and method == "GET":
            return Reply.json(200, self._model_list())
        if path.startswith(("/v1/models/", "/models/")) and method == "GET":
            # A model id may hold slashes (`Qwen/Qwen2.5-7B-Instruct`).
            name = unquote(path.split("/models/", 1)[1])
            for model in self._model_list()["data"]:
                if model["id"] == name:
                    return Reply.json(200, model)
            raise _HTTPError(404, f"the model {name!r} does not exist", "not_found_error")
        if path in ("/health", "/v1/health"):
            return Reply.json(200, {"status": "ok"})
        if path == "/metrics" and method == "GET":
            return Reply(200, self._metrics_text(), content_type="text/plain; version=0.0.4")
        raise _HTTPError(404, f"no route {method} {path}", "not_found_error")

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        limits = self.limits
        length = request.content_length
        if length is not None and length > limits.max_body:
            raise _HTTPError(413, f"the request body is over {limits.max_body} bytes", close=True)
        if request.headers.get("Expect", "").lower() == "100-continue":
            # Serialising our own interim reply, as aiohttp's router does.
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            with anyio.fail_after(limits.body_timeout):
                return await request.read()
        except TimeoutError:
            raise _HTTPError(
                408, f"the request body took over {limits.body_timeout} s", close=True
            ) from None
        except web.HTTPRequestEntityTooLarge:
            raise _HTTPError(
                413, f"the request body is over {limits.max_body} bytes", close=True
            ) from None

    def _tokenizer_reply(self, path: str, raw: bytes) -> Reply:
        body = _decode(raw, self.limits.max_json_depth)
        try:
            if path.endswith("/detokenize"):
                return Reply.json(200, detokenize(body, self.tokenizer))
            chat = "messages" in body
            messages = _request_messages(body, False) if chat else None
            answer = tokenize(body, messages, self.tokenizer, honour=self.tokens.honour_token_ids)
        except ValueError as exc:
            raise _HTTPError(400, str(exc)) from None
        return Reply.json(200, answer)

    def _metrics_text(self) -> bytes:
        """Counters in Prometheus' text format, as vLLM serves them at `/metrics`.

        `convo_sim_requests_total`, and whatever the models count (a model
        with a `metrics()` method, such as the canned model's prefix cache).
        """
        totals: dict[str, float] = {"convo_sim_requests_total": self.requests}
        # A model served under several names counts once.
        for model in {id(m): m for m in self.models.values()}.values():
            counters = getattr(model, "metrics", None)
            if callable(counters):
                for name, value in counters().items():
                    totals[name] = totals.get(name, 0) + value
        lines = []
        for name, value in totals.items():
            shown = int(value) if float(value).is_integer() else float(value)
            lines += [f"# TYPE {name} counter", f"{name} {shown}"]
        return ("\n".join(lines) + "\n").encode()

    def _model_list(self) -> dict[str, Any]:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "convo-sim"}
            for name in sorted(self.models)
        ]
        return {"object": "list", "data": data}

    async def _complete(
        self, responses: bool, authorization: str, raw: bytes, materialize: bool
    ) -> Reply:
        """The reply to one completion request.

        `materialize`: build every byte of the reply here (on the worker
        loop), so the server's loop only writes it.
        """
        body = _decode(raw, self.limits.max_json_depth)
        name = body.get("model")
        model = self.models.get(name) if isinstance(name, str) else None
        if model is None or not isinstance(name, str):
            raise _HTTPError(404, f"the model {name!r} does not exist", "not_found_error")
        choices = body.get("n")
        if choices is not None and (type(choices) is not int or choices != 1):
            # One choice per request; answering n=3 with one would look like success.
            raise _HTTPError(
                400, f"'n' must be 1: convo-sim serve returns one choice, got {choices!r}"
            )
        messages = _request_messages(body, responses)
        try:
            request_tools(body)  # a model that ignores tools still gets a 400 for broken ones
        except ValueError as exc:
            raise _HTTPError(400, str(exc)) from None
        tokens = not responses and wants_tokens(body)
        if tokens and body.get("stream"):
            raise _HTTPError(
                400, "token ids and logprobs are served on non-streamed chat completions only"
            )
        fault = self.faults.take(name, body)
        if fault is not None:
            _log.info("server.fault", model=name, fault=fault.kind, status=fault.status)
            early = await _fault_reply(fault, authorization)
            if early is not None:
                return early
        try:
            reply = await model.reply(messages, body)
        except (ValueError, InputError) as exc:
            # A request the model cannot answer (an unknown persona in the
            # scenario card, say) is the client's error: 400, never retried.
            raise _HTTPError(400, str(exc)) from None
        if fault is not None and fault.kind == "empty":
            reply = Message(role="assistant", content="")
        usage = wire.usage_for(messages, reply)
        if body.get("stream"):
            if responses:
                events = wire.response_events(reply, model=name, usage=usage, request=body)
            else:
                options = body.get("stream_options") or {}
                include = bool(options.get("include_usage")) if isinstance(options, dict) else False
                events = wire.chat_chunks(reply, model=name, usage=usage, include_usage=include)
            return Reply(
                stream=list(events) if materialize else events, content_type="text/event-stream"
            )
        if responses:
            data = wire.response_object(reply, model=name, usage=usage, request=body)
        else:
            data = wire.chat_completion(reply, model=name, usage=usage)
            if tokens:
                try:
                    add_token_fields(data, body, messages, reply, self.tokenizer, self.tokens)
                except ValueError as exc:  # a malformed passed-back token field
                    raise _HTTPError(400, str(exc)) from None
                return Reply(200, encode_reply(data))
        return Reply.json(200, data)


def _decode(raw: bytes, max_depth: int) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # undecodable, or nested past the C stack's guard
        raise _HTTPError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _HTTPError(400, "the request body must be a JSON object")
    if json_depth_exceeds(raw, body, max_depth):
        raise _HTTPError(400, f"the request body nests deeper than {max_depth} levels")
    return body


def _request_messages(body: Mapping[str, Any], responses: bool) -> list[Message]:
    try:
        if responses:
            items = body.get("input")
            if not isinstance(items, str | list):
                raise _HTTPError(400, "'input' must be a string or a list of items")
            messages = list(Transcript.from_responses_input(items).messages)
            instructions = body.get("instructions")
            if isinstance(instructions, str) and instructions:
                messages.insert(0, Message(role="system", content=instructions))
            return messages
        chat = body.get("messages")
        if not isinstance(chat, list):
            raise _HTTPError(400, "'messages' must be a list")
        return list(Transcript.from_openai(chat).messages)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _HTTPError(400, f"unreadable messages: {exc}") from None


async def _fault_reply(fault: Fault, authorization: str) -> Reply | None:
    """The reply a fault replaces the real one with; None to answer normally."""
    if fault.kind == "status":
        extra = [("Retry-After", fault.retry_after)] if fault.retry_after is not None else []
        kind = "rate_limit_exceeded" if fault.status == 429 else "server_error"
        body = wire.error_body(f"injected fault: HTTP {fault.status}", kind=kind, code=kind)
        return Reply.json(fault.status, body, headers=extra)
    if fault.kind == "unauthorized":
        token = authorization.removeprefix("Bearer ").strip()
        message = f"Incorrect API key provided: {token}. Check the key and try again."
        body = wire.error_body(message, kind="invalid_request_error", code="invalid_api_key")
        return Reply.json(401, body)
    if fault.kind == "malformed":
        return Reply(200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{')
    if fault.kind == "disconnect":
        return Reply(drop=True)
    if fault.kind == "hang":
        await anyio.sleep(fault.seconds)
    return None  # hang (after waiting) and empty answer normally


@asynccontextmanager
async def serve_models(
    models: Mapping[str, ServedModel] | None = None,
    *,
    faults: FaultPlan | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    limits: ServerLimits | None = None,
    tokens: TokenOptions | None = None,
) -> AsyncIterator[ModelServer]:
    """Run a `ModelServer` for the body of an `async with`.

    On asyncio the server runs in the current event loop. aiohttp's server
    needs asyncio, so under any other loop (trio) it runs on an asyncio loop
    of its own in a background thread (`ServerThread`), with the same handle.

    Raises:
        OSError: the address cannot be bound.
    """
    if not _on_asyncio():
        thread = ServerThread(
            models, faults=faults, host=host, port=port, limits=limits, tokens=tokens
        )
        served = await anyio.to_thread.run_sync(thread.__enter__)
        try:
            yield served
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(thread.__exit__, None, None, None)
        return
    server = ModelServer(models, faults=faults, host=host, port=port, limits=limits, tokens=tokens)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # trio, or another loop: no asyncio loop is running
        return False
    return True


class ServerThread:
    """Run a `ModelServer` on its own event loop in a background thread.

    For synchronous code and for tests that want the server off the
    client's loop: `with ServerThread() as server: ... server.base_url`.
    """

    def __init__(
        self,
        models: Mapping[str, ServedModel] | None = None,
        *,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: ServerLimits | None = None,
        tokens: TokenOptions | None = None,
    ) -> None:
        self.server = ModelServer(
            models, faults=faults, host=host, port=port, limits=limits, tokens=tokens
        )
        self._portal_cm: Any = None
        self._task: Any = None

    def __enter__(self) -> ModelServer:
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        portal = self._portal_cm.__enter__()
        try:
            self._task, _ = portal.start_task(self.server.serve)
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        return self.server

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._task.cancel()
        self._portal_cm.__exit__(None, None, None)
