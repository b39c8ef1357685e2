"""The bundled server's plumbing around aiohttp: limits, the worker loop, replies.

`convo_sim._server` decides what to answer; this module holds what keeps one
client from hurting the others:

- `ServerLimits`: request size, header size, idle and body timeouts, JSON
  depth, and which requests are too big for the server's event loop;
- `WorkerLoop`: an asyncio loop on a thread of its own, where those big
  requests are parsed and answered, so the server's loop keeps answering
  everyone else (CPython switches threads every few milliseconds);
- `accept_errors_logged`: when the process runs out of file descriptors,
  asyncio pauses accepting for a second and retries; this logs it as
  `server.out_of_file_descriptors` instead of an anonymous traceback.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import json
import logging
import sys
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from aiohttp import web

from convo_sim._logging import get_logger

__all__ = [
    "HTTP_LOGGER",
    "Reply",
    "ServerLimits",
    "WorkerLoop",
    "accept_errors_logged",
    "json_depth_exceeds",
]

_log = get_logger("convo_sim.server")

T = TypeVar("T")

_OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
# Server-sent events are written in batches of about this many bytes, with a
# pass through the event loop between batches: a long streamed reply never
# keeps the loop from the other connections.
_STREAM_BATCH = 16 * 1024


class _QuietLogger(logging.Logger):
    """aiohttp's per-connection logger, without the request in it.

    aiohttp logs a malformed request with a traceback whose message quotes
    the offending bytes (a header line, say, with its API key). This
    logger turns each into one `server.bad_request` event naming the error
    type only.
    """

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        _log.info("server.bad_request", error=type(error).__name__ if error else None)

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        _log.info("server.bad_request", error=None)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        pass  # aiohttp's debug notes quote requests too


HTTP_LOGGER: logging.Logger = _QuietLogger("convo_sim.server.http")
"""The logger the server hands aiohttp for its connections."""


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """How much a client may send, and how long it may take.

    Attributes:
        max_body: the largest request body, in bytes, however it is framed
            (413 beyond it).
        max_line: the longest request line or header line, in bytes (400
            beyond it).
        max_headers: the most header lines in one request (400 beyond).
        idle_timeout: seconds a connection may stay idle, from its start or
            its last reply, until a request's head has arrived: after that
            the server closes it. This is also the limit for receiving a
            request's head (one timer in aiohttp).
        body_timeout: seconds a request's body may take to arrive (408 after).
        max_json_depth: the deepest nesting of arrays and objects accepted
            in a request body (400 beyond).
        offload_above: requests with a larger body (in bytes) are parsed and
            answered on the worker loop, a thread of its own.
        offload_concurrency: how many such requests are answered at once;
            the others wait their turn.
    """

    max_body: int = 8 * 1024 * 1024
    max_line: int = 8190
    max_headers: int = 100
    idle_timeout: float = 10.0
    body_timeout: float = 30.0
    max_json_depth: int = 64
    offload_above: int = 64 * 1024
    offload_concurrency: int = 2

    def __post_init__(self) -> None:
        for name in ("max_body", "max_line", "max_headers", "max_json_depth", "offload_above"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.offload_concurrency < 1:
            raise ValueError(
                f"offload_concurrency must be at least 1, got {self.offload_concurrency!r}"
            )
        for name in ("idle_timeout", "body_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")


@dataclass(slots=True)
class Reply:
    """What to answer one request with (the server's reply, before aiohttp writes it)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    stream: Iterable[bytes] | None = None  # server-sent events, sent chunked
    drop: bool = False  # close the connection without answering
    close: bool = False  # answer, then close the connection

    @classmethod
    def json(cls, status: int, data: Mapping[str, Any], **kw: Any) -> Reply:
        return cls(status, json.dumps(data, separators=(",", ":")).encode(), **kw)

    async def send(self, request: web.BaseRequest) -> web.StreamResponse:
        """Write this reply to `request`'s connection; returns what aiohttp needs."""
        if self.drop:
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=499)  # never sent: the connection is gone
        headers = {"Content-Type": self.content_type, **dict(self.headers)}
        if self.stream is None:
            response = web.Response(status=self.status, body=self.body, headers=headers)
            if self.close:
                response.force_close()
            return response
        headers["Cache-Control"] = "no-cache"
        stream = web.StreamResponse(status=self.status, headers=headers)
        stream.enable_chunked_encoding()
        await stream.prepare(request)
        for batch in _batches(self.stream):
            await stream.write(batch)
            await anyio.lowlevel.checkpoint()
        await stream.write_eof()
        return stream


def _batches(events: Iterable[bytes]) -> Iterator[bytes]:
    pending: list[bytes] = []
    size = 0
    for event in events:
        pending.append(event)
        size += len(event)
        if size >= _STREAM_BATCH:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def json_depth_exceeds(raw: bytes, value: Any, limit: int) -> bool:
    """Whether `value` (decoded from `raw`) nests arrays and objects deeper than `limit`."""
    # Every nesting level opens a bracket, so few brackets means shallow:
    # the common small request is decided by two C-speed counts.
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


class WorkerLoop:
    """An asyncio event loop on a thread of its own, started on first use.

    Coroutines run there with `run`; cancelling the caller cancels them.
    The thread shares the interpreter (and its lock) with the server's
    loop, which CPython hands back every few milliseconds, so a
    CPU-heavy request there slows the others down instead of stopping them.
    """

    def __init__(self, concurrency: int) -> None:
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """Run `fn(*args)` on the worker loop and return its result.

        Raises:
            Exception: whatever `fn` raises.
            OSError: the worker loop could not start (out of file descriptors).
        """
        async with self._limiter:
            if self._loop is None:
                self._start()
            assert self._loop is not None
            future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(
                fn(*args), self._loop
            )
            # Cancelling this await cancels the concurrent future, which
            # cancels the task on the worker loop (without blocking here).
            return await asyncio.wrap_future(future)

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name="convo-sim-server-worker", daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread

    async def aclose(self) -> None:
        """Cancel what still runs there, stop the loop and join its thread."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(_stop_loop, loop)
        await anyio.to_thread.run_sync(thread.join, 10.0)
        if thread.is_alive():  # a model that never yields: leave the daemon thread be
            _log.warning("server.worker_stuck")
            return
        loop.close()


def _stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()

    async def finish() -> None:
        await asyncio.gather(*tasks, return_exceptions=True)
        loop.stop()

    loop.create_task(finish())


@contextmanager
def accept_errors_logged(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Log the loop's "out of file descriptors" accept errors while serving.

    The previous exception handler gets everything else, and is put back at
    the end unless someone replaced ours meanwhile.
    """
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_RESOURCES:
            # asyncio stops accepting for a second and tries again; the
            # connections waiting meanwhile stay in the listen backlog.
            _log.warning(
                "server.out_of_file_descriptors", error=errno.errorcode.get(exc.errno or 0, "?")
            )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    try:
        yield
    finally:
        if loop.get_exception_handler() is handler:
            loop.set_exception_handler(previous)
