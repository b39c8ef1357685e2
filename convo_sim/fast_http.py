"""A small HTTP/1.1 keep-alive client for JSON POSTs to one origin, on asyncio.

This is the transport under `convo_sim.fast_chat`: the hot path of every
simulated turn against an OpenAI-compatible server is one small POST and
one small JSON reply, and a general-purpose client spends most of its time
per request on machinery that path does not need (see `benchmarks/`).

What it does: one origin (`http` or `https`), persistent connections in a
pool (at most `max_connections`, idle ones reused newest first and dropped
after `keepalive_expiry` seconds), `Content-Length` and chunked replies,
replies read to EOF when they have neither, a per-request timeout that
covers waiting for a connection, connecting, sending and reading.

What it does not do: redirects, proxies, compression, HTTP/2, streaming,
retries. It never retries (the caller's `RetryPolicy` is the one retry
layer) and never logs; headers (the API key) never appear in its errors.

Each connection is an `asyncio.Protocol`: a reply that arrives in one
segment is parsed in `data_received` and wakes the waiting request once,
with no stream layer in between. It therefore needs an asyncio event loop
(anyio's default backend); `FastHTTPClient.supported()` says whether the
running loop is one.

Errors::

    TransportError          no complete reply: refused, reset, closed early, garbled
    ├── RequestTimeout      no complete reply within the timeout
    HTTPStatusError         a complete reply with status >= 400 (status_code, headers, body)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "FastHTTPClient",
    "HTTPResponse",
    "HTTPStatusError",
    "RequestTimeout",
    "TransportError",
]

_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
# The timers' callbacks read no context variables: run them in one shared
# empty context instead of a copy of the caller's per request (a timer and
# its context stay in the loop's heap after cancel() until they are purged).
_TIMER_CONTEXT = contextvars.Context()


class TransportError(Exception):
    """The request got no complete reply (connection refused, reset, closed, garbled)."""


class RequestTimeout(TransportError):
    """The request got no complete reply within its timeout."""


class HTTPStatusError(Exception):
    """The server answered with an error status.

    Attributes:
        status_code: the HTTP status (400 or more).
        headers: the reply's headers, names in lower case.
        body: the reply's body.
    """

    def __init__(self, status_code: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.body = body
        text = body[:500].decode("utf-8", "replace")
        super().__init__(f"HTTP {status_code}: {text}")


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    """A complete reply.

    Attributes:
        status: the HTTP status.
        headers: the headers, names in lower case (repeated ones joined by ", ").
        body: the body, de-chunked.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes


class _Connection(asyncio.Protocol):
    """One persistent connection: sends a request, parses the reply as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[HTTPResponse] | None = None
        self.closed = False
        self.reusable = True
        self.idle_since = 0.0
        self._buf: bytes | bytearray = b""
        self._status = 0
        self._headers: dict[str, str] | None = None
        self._length = -1  # -1: chunked or until EOF (see _until_eof)
        self._until_eof = False
        self._chunks: list[bytes | bytearray] = []

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            # Bytes nobody asked for: the connection's state is unknown now.
            self.reusable = False
            self.abort()
            return
        if self._buf:
            # Rare (a reply split over segments); a bytearray keeps it linear.
            if not isinstance(self._buf, bytearray):
                self._buf = bytearray(self._buf)
            self._buf += data
        else:
            self._buf = data
        try:
            response = self._parse()
        except (ValueError, UnicodeError) as exc:
            self._fail(TransportError(f"unreadable HTTP reply: {exc}"))
            return
        if response is not None:
            self.waiter = None
            waiter.set_result(response)

    def eof_received(self) -> bool:
        self.closed = True
        self.reusable = False
        if self._until_eof and self._headers is not None and self.waiter is not None:
            waiter, self.waiter = self.waiter, None
            if not waiter.done():
                waiter.set_result(self._finish(self._buf))
        else:
            self._fail(TransportError("the server closed the connection before replying"))
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        reason = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        self._fail(TransportError(f"the connection was lost{reason}"))

    # -- requests --------------------------------------------------------------

    def start(self, data: bytes) -> asyncio.Future[HTTPResponse]:
        """Send one request; the future resolves with its reply."""
        assert self.transport is not None
        waiter: asyncio.Future[HTTPResponse] = self.loop.create_future()
        self.waiter = waiter
        self._buf = b""
        self._headers = None
        self._length = -1
        self._until_eof = False
        self._chunks = []
        self.transport.write(data)
        return waiter

    def timed_out(self) -> None:
        self._fail(RequestTimeout("no complete reply within the timeout"))

    def abort(self) -> None:
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: TransportError) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if not self.closed:
            self.abort()

    # -- parsing -----------------------------------------------------------------

    def _parse(self) -> HTTPResponse | None:
        while self._headers is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > _MAX_HEAD:
                    raise ValueError("reply head too large")
                return None
            head, self._buf = self._buf[:end], self._buf[end + 4 :]
            self._read_head(head)
        if self._length >= 0:
            if len(self._buf) < self._length:
                return None
            body = self._buf[: self._length]
            if len(self._buf) > self._length:
                self.reusable = False  # nothing may follow an answered request
            return self._finish(body)
        if self._until_eof:
            if len(self._buf) > _MAX_BODY:
                raise ValueError("reply body too large")
            return None
        return self._parse_chunks()

    def _read_head(self, head: bytes | bytearray) -> None:
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1.x status line: {lines[0][:40]!r}")
        status = int(rest[:3])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"malformed header line {line[:40]!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if 100 <= status < 200:
            return  # an interim reply (100 Continue): the real one follows
        self._status = status
        self._headers = headers
        connection = headers.get("connection", "").lower()
        if "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection):
            self.reusable = False
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._length = -1
        elif "content-length" in headers:
            self._length = int(headers["content-length"])
            if not 0 <= self._length <= _MAX_BODY:
                raise ValueError(f"bad Content-Length {self._length}")
        else:
            self._until_eof = True
            self.reusable = False

    def _parse_chunks(self) -> HTTPResponse | None:
        buf = self._buf
        while True:
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                self._buf = buf
                return None
            size = int(buf[:line_end].split(b";", 1)[0].strip() or b"x", 16)
            if size == 0:
                # The last chunk, then optional trailers, then a blank line.
                end = buf.find(b"\r\n\r\n", line_end)
                if end < 0:
                    self._buf = buf
                    return None
                if len(buf) > end + 4:
                    self.reusable = False
                return self._finish(b"".join(self._chunks))
            start = line_end + 2
            if len(buf) < start + size + 2:
                self._buf = buf
                return None
            self._chunks.append(buf[start : start + size])
            buf = buf[start + size + 2 :]

    def _finish(self, body: bytes | bytearray) -> HTTPResponse:
        assert self._headers is not None
        self._buf = b""
        return HTTPResponse(self._status, self._headers, bytes(body))


class FastHTTPClient:
    """POSTs to one origin over a pool of keep-alive connections.

    Make it anywhere; it binds to the event loop of its first request (a
    request from another loop drops the old pool and starts a new one).

    Args:
        base_url: the origin and path prefix, e.g. `http://127.0.0.1:8000/v1`.
        headers: sent with every request (e.g. `Authorization`); never
            part of any error or log.
        timeout: seconds one request may take, from waiting for a free
            connection to the last byte of the reply.
        max_connections: the most connections open at once; more requests
            than that wait for one to come free.
        keepalive_expiry: idle connections older than this are closed
            instead of reused (servers close idle ones, e.g. after 5 s).
        ssl_context: for `https`, the TLS settings; default
            `ssl.create_default_context()` (the system's trust store, which
            `SSL_CERT_FILE` can point elsewhere).

    Raises:
        ValueError: the URL is not `http(s)://host[:port][/path]`, or a
            number is out of range.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        max_connections: int = 1000,
        keepalive_expiry: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port][/path], got {base_url!r}")
        if timeout <= 0 or max_connections < 1 or keepalive_expiry < 0:
            raise ValueError(
                "timeout must be positive, max_connections at least 1 and keepalive_expiry >= 0"
            )
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.tls = url.scheme == "https"
        self.prefix = url.path.rstrip("/")
        self.timeout = timeout
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        authority = url.netloc.rpartition("@")[2]
        lines = [f"Host: {authority}", "Accept: application/json", "User-Agent: convo-sim"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self._common = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[_Connection] = []
        self._busy = 0  # requests holding a connection slot
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._ssl = ssl_context
        self._heads: dict[str, bytes] = {}
        self.connections_opened = 0
        """Connections opened so far (a reused one is counted once)."""

    def __repr__(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"FastHTTPClient('{scheme}://{self.host}:{self.port}{self.prefix}')"

    @staticmethod
    def supported() -> bool:
        """True when an asyncio event loop runs in this thread (the client needs one)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop, or another library's (trio)
            return False
        return True

    async def post(self, path: str, body: bytes) -> HTTPResponse:
        """POST `body` (JSON) to `prefix + path` and return the reply if its status is < 400.

        Raises:
            HTTPStatusError: the server answered with status 400 or more.
            RequestTimeout: no complete reply within `timeout`.
            TransportError: no complete reply (refused, reset, closed, garbled).
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop)
        deadline = loop.time() + self.timeout
        head = self._heads.get(path)
        if head is None:
            head = self._heads[path] = (
                f"POST {self.prefix}{path} HTTP/1.1\r\n".encode("latin-1")
                + self._common
                + b"Content-Type: application/json\r\nContent-Length: "
            )
        data = b"%s%d\r\n\r\n%s" % (head, len(body), body)
        if self._busy < self.max_connections and not self._waiters:
            self._busy += 1
        else:
            await self._wait_for_slot(loop, deadline)
        try:
            conn = self._take_idle(loop.time())
            if conn is None:
                conn = await self._connect(loop, deadline)
            response = await self._exchange(conn, data, loop, deadline)
        finally:
            self._release_slot()
        if response.status >= 400:
            raise HTTPStatusError(response.status, response.headers, response.body)
        return response

    async def _exchange(
        self,
        conn: _Connection,
        data: bytes,
        loop: asyncio.AbstractEventLoop,
        deadline: float,
    ) -> HTTPResponse:
        waiter = conn.start(data)
        timer = loop.call_at(deadline, conn.timed_out, context=_TIMER_CONTEXT)
        try:
            response = await waiter
        except BaseException:
            # Cancelled or failed mid-request: the connection's state is
            # unknown, so it is never reused. Cancellation propagates.
            conn.abort()
            raise
        finally:
            timer.cancel()
        if conn.reusable and not conn.closed:
            conn.idle_since = loop.time()
            self._idle.append(conn)
        else:
            conn.abort()
        return response

    async def _wait_for_slot(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        # A plain FIFO of futures: a finishing request hands its slot to the
        # first waiter directly. (asyncio.wait_for around a semaphore costs a
        # task per waiter, which shows at 10,000 dialogues in flight.)
        slot: asyncio.Future[None] = loop.create_future()
        self._waiters.append(slot)
        timer = loop.call_at(deadline, _expire, slot, context=_TIMER_CONTEXT)
        try:
            await slot
        except BaseException:
            if slot.done() and not slot.cancelled() and slot.exception() is None:
                self._release_slot()  # handed over just as we were cancelled: pass it on
            raise
        finally:
            timer.cancel()

    def _release_slot(self) -> None:
        waiters = self._waiters
        while waiters:
            slot = waiters.popleft()
            if not slot.done():  # skips waiters that timed out or were cancelled
                slot.set_result(None)  # the slot changes hands; `_busy` stays
                return
        self._busy -= 1

    def _take_idle(self, now: float) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()  # newest first: the likeliest to be alive
            if not conn.closed and now - conn.idle_since <= self.keepalive_expiry:
                return conn
            conn.abort()
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        if self.tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop),
                    self.host,
                    self.port,
                    ssl=self._ssl if self.tls else None,
                    server_hostname=self.host if self.tls else None,
                ),
                max(deadline - loop.time(), 0.0),
            )
        except TimeoutError:
            raise RequestTimeout(f"could not connect to {self.host}:{self.port} in time") from None
        except OSError as exc:
            raise TransportError(
                f"could not connect to {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        self.connections_opened += 1
        return conn

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        # Connections belong to the loop that opened them; a new loop (a
        # second `anyio.run`) starts from an empty pool.
        for conn in self._idle:
            with contextlib.suppress(RuntimeError):  # the old loop may be closed
                conn.abort()
        self._idle = []
        self._busy = 0
        self._waiters = collections.deque()
        self._loop = loop

    async def aclose(self) -> None:
        """Close the idle connections; busy ones close when their request ends."""
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(RuntimeError):
                conn.abort()
        self._loop = None


def _expire(slot: asyncio.Future[None]) -> None:
    if not slot.done():
        slot.set_exception(RequestTimeout("no free connection within the timeout"))
