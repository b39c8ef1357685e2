"""A small OpenAI-compatible HTTP server whose models are rule-based actors.

It lets the real `openai` client path (retries, timeouts, streaming, both
APIs) run offline, without a key: `convo-sim serve` starts it from the
command line; tests start it in-process (`serve_models`, an async context
manager, or `ServerThread`, which runs it on its own event loop).

Endpoints (under `/v1`): `GET /models`, `POST /chat/completions` and
`POST /responses`, each non-streaming or streaming (server-sent events in
the wire format the `openai` client parses). The models are `ServedModel`s
(see `convo_sim.served_models`); a `FaultPlan` injects failures.

The HTTP/1.1 layer is written on anyio sockets with only the standard
library: keep-alive, `Content-Length` and chunked request bodies, chunked
streaming replies. Every connection is its own task, so many dialogues can
share one server. It binds 127.0.0.1 unless told otherwise and never logs
request headers (they carry the API key) or content.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any

import anyio
import anyio.from_thread
from anyio.abc import ByteStream, SocketAttribute, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

from convo_sim import server_wire as wire
from convo_sim.errors import InputError
from convo_sim.faults import Fault, FaultPlan
from convo_sim.logging import get_logger
from convo_sim.messages import Message, Transcript
from convo_sim.served_models import ServedModel, default_models

__all__ = ["ModelServer", "ServerThread", "serve_models"]

_log = get_logger("convo_sim.server")

_MAX_HEAD = 64 * 1024
_MAX_BODY = 32 * 1024 * 1024
_CLOSED = (
    anyio.EndOfStream,
    anyio.IncompleteRead,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    ConnectionError,
)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


@dataclass(slots=True)
class _Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    stream: Iterable[bytes] | None = None  # server-sent events, sent chunked
    drop: bool = False  # close the connection without answering

    @classmethod
    def json(cls, status: int, data: Mapping[str, Any], **kw: Any) -> _Reply:
        return cls(status, json.dumps(data, separators=(",", ":")).encode(), **kw)

    @classmethod
    def error(cls, status: int, message: str) -> _Reply:
        return cls.json(status, wire.error_body(message, kind="invalid_request_error"))


class ModelServer:
    """An OpenAI-compatible server over `ServedModel`s.

    Args:
        models: the models by name; default `default_models()`.
        faults: failures to inject; default none. May be edited while serving.
        host: the address to bind; loopback by default.
        port: the port; 0 picks a free one (read `port` once started).
    """

    def __init__(
        self,
        models: Mapping[str, ServedModel] | None = None,
        *,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.models: dict[str, ServedModel] = (
            dict(models) if models is not None else default_models()
        )
        self.faults = faults if faults is not None else FaultPlan()
        self.host = host
        self.port = port
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
        """
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port)
        async with listener:
            self.port = listener.extra(SocketAttribute.local_port)
            _log.info("server.started", host=self.host, port=self.port, models=sorted(self.models))
            task_status.started(self.port)
            await listener.serve(self._connection)

    # -- HTTP/1.1 ------------------------------------------------------------

    async def _connection(self, stream: ByteStream) -> None:
        self.connections += 1
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            try:
                while await self._exchange(stream, reader):
                    pass
            except _CLOSED:
                pass  # the client went away; nothing to answer
            except (anyio.DelimiterNotFound, ValueError, UnicodeError) as exc:
                # Garbage on the wire ends this connection, never the server.
                _log.info("server.bad_request", error=type(exc).__name__)
                with contextlib.suppress(*_CLOSED):
                    await _send(
                        stream, _Reply.error(400, "malformed HTTP request"), keep_alive=False
                    )

    async def _exchange(self, stream: ByteStream, reader: BufferedByteReceiveStream) -> bool:
        """Serve one request; False when the connection should close."""
        head = await reader.receive_until(b"\r\n\r\n", _MAX_HEAD)
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            await _send(stream, _Reply.error(400, "bad request line"), keep_alive=False)
            return False
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        if headers.get("expect", "").lower() == "100-continue":
            await stream.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await _read_body(reader, headers)
        if body is None:
            await _send(stream, _Reply.error(413, "request body too large"), keep_alive=False)
            return False
        reply = await self._dispatch(method, target.split("?", 1)[0], headers, body)
        if reply.drop:
            return False
        await _send(stream, reply, keep_alive=keep_alive)
        return keep_alive

    # -- routing -------------------------------------------------------------

    async def _dispatch(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> _Reply:
        self.requests += 1
        try:
            if path in ("/v1/models", "/models") and method == "GET":
                return _Reply.json(200, self._model_list())
            if path in ("/v1/chat/completions", "/v1/responses"):
                if method != "POST":
                    raise _HTTPError(405, f"use POST for {path}")
                return await self._complete(path.endswith("/responses"), headers, body)
            if path in ("/health", "/v1/health"):
                return _Reply.json(200, {"status": "ok"})
            raise _HTTPError(404, f"no route {method} {path}", "not_found_error")
        except _HTTPError as exc:
            return _Reply.json(exc.status, wire.error_body(exc.message, kind=exc.kind))
        except Exception as exc:  # cancellation is a BaseException and passes through
            # A crashing model must not take the server (or other dialogues) down.
            _log.warning("server.model_error", path=path, error=type(exc).__name__)
            message = f"{type(exc).__name__}: {exc}"
            return _Reply.json(500, wire.error_body(message, kind="server_error"))

    def _model_list(self) -> dict[str, Any]:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "convo-sim"}
            for name in sorted(self.models)
        ]
        return {"object": "list", "data": data}

    async def _complete(self, responses: bool, headers: Mapping[str, str], raw: bytes) -> _Reply:
        try:
            body = json.loads(raw)
        except ValueError:
            raise _HTTPError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _HTTPError(400, "the request body must be a JSON object")
        name = body.get("model")
        model = self.models.get(name) if isinstance(name, str) else None
        if model is None or not isinstance(name, str):
            raise _HTTPError(404, f"the model {name!r} does not exist", "not_found_error")
        messages = _request_messages(body, responses)
        fault = self.faults.take(name, body)
        if fault is not None:
            _log.info("server.fault", model=name, fault=fault.kind, status=fault.status)
            early = await _fault_reply(fault, headers)
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
            return _Reply(stream=events, content_type="text/event-stream")
        if responses:
            data = wire.response_object(reply, model=name, usage=usage, request=body)
        else:
            data = wire.chat_completion(reply, model=name, usage=usage)
        return _Reply.json(200, data)


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


async def _fault_reply(fault: Fault, headers: Mapping[str, str]) -> _Reply | None:
    """The reply a fault replaces the real one with; None to answer normally."""
    if fault.kind == "status":
        extra = [("Retry-After", fault.retry_after)] if fault.retry_after is not None else []
        kind = "rate_limit_exceeded" if fault.status == 429 else "server_error"
        body = wire.error_body(f"injected fault: HTTP {fault.status}", kind=kind, code=kind)
        return _Reply.json(fault.status, body, headers=extra)
    if fault.kind == "unauthorized":
        token = headers.get("authorization", "").removeprefix("Bearer ").strip()
        message = f"Incorrect API key provided: {token}. Check the key and try again."
        body = wire.error_body(message, kind="invalid_request_error", code="invalid_api_key")
        return _Reply.json(401, body)
    if fault.kind == "malformed":
        return _Reply(200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{')
    if fault.kind == "disconnect":
        return _Reply(drop=True)
    if fault.kind == "hang":
        await anyio.sleep(fault.seconds)
    return None  # hang (after waiting) and empty answer normally


async def _read_body(reader: BufferedByteReceiveStream, headers: Mapping[str, str]) -> bytes | None:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts: list[bytes] = []
        total = 0
        while True:
            size_line = await reader.receive_until(b"\r\n", 1024)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                await reader.receive_until(b"\r\n", _MAX_HEAD)  # trailers end with a blank line
                return b"".join(parts)
            total += size
            if total > _MAX_BODY:
                return None
            parts.append(await reader.receive_exactly(size))
            await reader.receive_exactly(2)
    length = int(headers.get("content-length", "0") or 0)
    if length > _MAX_BODY:
        return None
    return await reader.receive_exactly(length) if length else b""


async def _send(stream: ByteStream, reply: _Reply, *, keep_alive: bool) -> None:
    phrase = (
        HTTPStatus(reply.status).phrase if reply.status in HTTPStatus._value2member_map_ else ""
    )
    head = [
        f"HTTP/1.1 {reply.status} {phrase}",
        f"Content-Type: {reply.content_type}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    head.extend(f"{name}: {value}" for name, value in reply.headers)
    if reply.stream is None:
        head.append(f"Content-Length: {len(reply.body)}")
        await stream.send(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)
        return
    head += ["Cache-Control: no-cache", "Transfer-Encoding: chunked"]
    await stream.send(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    for event in reply.stream:
        await stream.send(b"%x\r\n%s\r\n" % (len(event), event))
    await stream.send(b"0\r\n\r\n")


@asynccontextmanager
async def serve_models(
    models: Mapping[str, ServedModel] | None = None,
    *,
    faults: FaultPlan | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[ModelServer]:
    """Run a `ModelServer` in the current event loop for the body of an `async with`.

    Raises:
        OSError: the address cannot be bound.
    """
    server = ModelServer(models, faults=faults, host=host, port=port)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


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
    ) -> None:
        self.server = ModelServer(models, faults=faults, host=host, port=port)
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
