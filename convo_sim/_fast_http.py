"""A small HTTP/1.1 keep-alive client for JSON POSTs to one origin, on asyncio.

This is the transport under `convo_sim._fast_chat`: the hot path of every
simulated turn against an OpenAI-compatible server is one small POST and
one small JSON reply, and a general-purpose client spends most of its time
per request on machinery that path does not need (see `benchmarks/`).

What it does: one origin (`http` or `https`), persistent connections in a
pool (at most `max_connections`, idle ones reused newest first and dropped
after `keepalive_expiry` seconds), replies framed by `Content-Length`,
chunked or read to the end of the connection, each capped at `max_body`
bytes, a per-request timeout that covers waiting for a connection,
connecting, sending and reading, and the proxies the environment names
(`HTTP(S)_PROXY`, `ALL_PROXY`, `NO_PROXY`, read as the `openai` SDK reads
them; see `convo_sim._http_proxy`), `http://` and `https://` ones, with
`CONNECT` tunnels to `https` origins.

What it does not do: redirects, compression, HTTP/2, streaming, retries.
It never retries (the caller's `RetryPolicy` is the one retry layer) and
never logs; headers (the API key) never appear in its errors.

Replies are parsed by llhttp (Node.js's HTTP parser, through `httptools`),
which rejects malformed framing (a negative or overflowing chunk size,
conflicting lengths, bare CR or LF in a header). Each connection is an
`asyncio.Protocol` that feeds llhttp what arrives and wakes the waiting
request once its reply is complete, with no stream layer in between, so
the client needs an asyncio event loop (anyio's default backend);
`FastHTTPClient.supported()` says whether the running loop is one.

Errors::

    TransportError          no complete reply: refused, reset, closed early, garbled, too large
    ├── RequestTimeout      no complete reply within the timeout
    HTTPStatusError         a complete reply with status >= 400 (status_code, headers, body)
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import contextvars
import re
import ssl
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

import httptools

from convo_sim._http_proxy import proxy_from_environment

__all__ = [
    "FastHTTPClient",
    "HTTPResponse",
    "HTTPStatusError",
    "RequestTimeout",
    "TransportError",
]

_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
# Chunk-size lines and extensions cost wire bytes but no body bytes: the
# wire is capped too, so a stream of empty extensions cannot run forever.
_WIRE_SLACK = 2
# The timers' callbacks read no context variables: run them in one shared
# empty context instead of a copy of the caller's per request (a timer and
# its context stay in the loop's heap after cancel() until they are purged).
_TIMER_CONTEXT = contextvars.Context()
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_VALUE = re.compile(r"[\r\n\x00]")


class TransportError(Exception):
    """The request got no complete reply (refused, reset, closed, garbled, too large)."""


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


class HTTPResponse:
    """A complete reply.

    Attributes:
        status: the HTTP status.
        body: the body, de-chunked.
    """

    __slots__ = ("_headers", "_raw", "body", "status")

    def __init__(self, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.body = body
        self._raw = raw_headers
        self._headers: dict[str, str] | None = None

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers, names in lower case (repeated ones joined by ", ")."""
        # Built on first use: the hot path (a 200) never reads them.
        if self._headers is None:
            headers: dict[str, str] = {}
            for raw_name, raw_value in self._raw:
                name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            self._headers = headers
        return self._headers


class _Stop(Exception):
    """Raised from a parser callback to stop llhttp (a reply past its cap, say)."""


class _Connection(asyncio.Protocol):
    """One persistent connection: sends a request, feeds the reply to llhttp.

    It is also llhttp's callback object (`on_header`, `on_body`, ...), so a
    reply costs one Python call per parser event and nothing in between.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_body: int) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[HTTPResponse] | None = None
        self.closed = False
        self.reusable = True
        self.idle_since = 0.0
        self.max_body = max_body
        self._parser = httptools.HttpResponseParser(self)
        self._tunnel: asyncio.Future[int] | None = None
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: bytes | bytearray | None = None
        self._size = 0  # body bytes so far
        self._wire = 0  # bytes received for this reply
        self._head_done = False
        self._interim = False  # a 1xx reply: the real one follows
        self._complete = False

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel_data(data)
            return
        waiter = self.waiter
        if waiter is None or waiter.done():
            # Bytes nobody asked for: the connection's state is unknown now.
            self.reusable = False
            self.abort()
            return
        self._wire += len(data)
        if self._wire > _WIRE_SLACK * self.max_body + _MAX_HEAD:
            self._fail(TransportError(f"the reply is larger than {self.max_body} bytes"))
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self._complete:
                # The reply was whole; what followed it is not ours to read.
                self.reusable = False
                self.abort()
                return
            cause = exc.__context__ if isinstance(exc.__context__, _Stop) else exc
            self._fail(TransportError(f"unreadable HTTP reply: {cause}"))
            return
        if not self._head_done and self._wire > _MAX_HEAD:
            self._fail(TransportError(f"the reply's head is larger than {_MAX_HEAD} bytes"))

    def eof_received(self) -> bool:
        self.closed = True
        self.reusable = False
        if self._head_done and not self._complete and self._until_eof():
            self._finish()  # a reply framed by the end of the connection
        else:
            self._fail(TransportError("the server closed the connection before replying"))
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        reason = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        self._fail(TransportError(f"the connection was lost{reason}"))

    # -- llhttp callbacks --------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            raise _Stop("a second reply to one request")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._interim = True  # 100 Continue and friends: the real reply follows
            self._headers = []
            return
        self._status = status
        self._head_done = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.max_body:
            raise _Stop(f"the reply is larger than {self.max_body} bytes")
        held = self._body
        if held is None:
            self._body = body  # the common case: the whole body in one piece, kept as is
        elif isinstance(held, bytearray):
            held += body  # one buffer, however small the chunks (a list would cost ~40x)
        else:
            self._body = bytearray(held) + body

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if not self._parser.should_keep_alive():
            self.reusable = False
        self._finish()

    # -- requests --------------------------------------------------------------

    def start(self, data: bytes) -> asyncio.Future[HTTPResponse]:
        """Send one request; the future resolves with its reply."""
        assert self.transport is not None
        waiter: asyncio.Future[HTTPResponse] = self.loop.create_future()
        self.waiter = waiter
        self._reset()
        self.transport.write(data)
        return waiter

    def timed_out(self) -> None:
        self._fail(RequestTimeout("no complete reply within the timeout"))

    def abort(self) -> None:
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    def _until_eof(self) -> bool:
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == b"content-length" or (
                lowered == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                return False
        return True

    def _finish(self) -> None:
        self._complete = True
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            return
        body, self._body = self._body, None
        data = b"" if body is None else body if isinstance(body, bytes) else bytes(body)
        waiter.set_result(HTTPResponse(self._status, self._headers, data))

    def _fail(self, exc: TransportError) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        tunnel, self._tunnel = self._tunnel, None
        if tunnel is not None and not tunnel.done():
            tunnel.set_exception(exc)
        self._body = None
        if not self.closed:
            self.abort()

    # -- CONNECT tunnels through a proxy -------------------------------------------

    def open_tunnel(self, request: bytes) -> asyncio.Future[int]:
        """Send a CONNECT request; the future resolves with the proxy's status."""
        assert self.transport is not None
        tunnel: asyncio.Future[int] = self.loop.create_future()
        self._tunnel = tunnel
        self._reset()
        self._tunnel_parser = httptools.HttpResponseParser(_ProxyReply(self))
        self.transport.write(request)
        return tunnel

    def _tunnel_data(self, data: bytes) -> None:
        self._wire += len(data)
        try:
            self._tunnel_parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if not self._head_done:
                self._fail(TransportError(f"unreadable reply from the proxy: {exc}"))
                return
        if self._head_done:
            tunnel, self._tunnel = self._tunnel, None
            if tunnel is not None and not tunnel.done():
                tunnel.set_result(self._tunnel_parser.get_status_code())
            self._reset()
        elif self._wire > _MAX_HEAD:
            self._fail(TransportError("the proxy's reply head is too large"))


class _ProxyReply:
    """llhttp callbacks for a proxy's answer to CONNECT: only its head matters."""

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn

    def on_headers_complete(self) -> None:
        self.conn._head_done = True
        # Stop here: after a 2xx the bytes that follow are the tunnel's.
        raise _Stop("end of the proxy's head")


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
        max_body: the largest reply body accepted, in bytes, whatever its
            framing; a larger one is a `TransportError`.
        proxy: the proxy URL (`http://` or `https://`, with optional
            `user:password@`); default: the one the environment names for
            `base_url` (see `convo_sim._http_proxy`); `""` for none.

    Raises:
        ValueError: the URL is not `http(s)://host[:port][/path]`, a header
            name is not a token or a value holds CR, LF or NUL, the proxy's
            scheme is not `http` or `https`, or a number is out of range.
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
        max_body: int = _MAX_BODY,
        proxy: str | None = None,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port][/path], got {base_url!r}")
        if timeout <= 0 or max_connections < 1 or keepalive_expiry < 0 or max_body < 0:
            raise ValueError(
                "timeout must be positive, max_connections at least 1, "
                "keepalive_expiry and max_body >= 0"
            )
        extra = dict(headers or {})
        for name, value in extra.items():
            # A CR or LF in a value would let it write headers of its own.
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"header name {name!r} is not an HTTP token")
            if _BAD_VALUE.search(value):
                raise ValueError(f"the value of header {name!r} holds CR, LF or NUL")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.tls = url.scheme == "https"
        self.prefix = url.path.rstrip("/")
        self.timeout = timeout
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self.max_body = max_body
        authority = url.netloc.rpartition("@")[2]
        lines = [f"Host: {authority}", "Accept: application/json", "User-Agent: convo-sim"]
        self._proxy = _Proxy.parse(
            proxy_from_environment(base_url) if proxy is None else proxy or None
        )
        # Plain HTTP through a proxy: the full URL in the request line. HTTPS
        # goes through a CONNECT tunnel, and the proxy never sees the request.
        self._target = ""
        if self._proxy is not None and not self.tls:
            self._target = f"http://{authority}"
            if self._proxy.authorization:
                lines.append(f"Proxy-Authorization: {self._proxy.authorization}")
        lines += [f"{name}: {value}" for name, value in extra.items()]
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
            TransportError: no complete reply (refused, reset, closed, garbled, too large).
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop)
        deadline = loop.time() + self.timeout
        head = self._heads.get(path)
        if head is None:
            head = self._heads[path] = (
                f"POST {self._target}{self.prefix}{path} HTTP/1.1\r\n".encode("latin-1")
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
        proxy = self._proxy
        host, port = (proxy.host, proxy.port) if proxy is not None else (self.host, self.port)
        where = "the proxy" if proxy is not None else f"{self.host}:{self.port}"
        # TLS to the first hop: the origin, or an https:// proxy.
        first_tls = proxy.tls if proxy is not None else self.tls
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop, self.max_body),
                    host,
                    port,
                    ssl=(self._proxy_ssl() if proxy is not None else self._ssl)
                    if first_tls
                    else None,
                    server_hostname=host if first_tls else None,
                )
                if proxy is not None and self.tls:
                    await self._tunnel(loop, conn, proxy)
        except TimeoutError:
            raise RequestTimeout(f"could not connect to {where} in time") from None
        except OSError as exc:
            raise TransportError(f"could not connect to {where}: {exc.strerror or exc}") from None
        self.connections_opened += 1
        return conn

    async def _tunnel(
        self, loop: asyncio.AbstractEventLoop, conn: _Connection, proxy: _Proxy
    ) -> None:
        authority = f"{self.host}:{self.port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if proxy.authorization:
            lines.append(f"Proxy-Authorization: {proxy.authorization}")
        try:
            status = await conn.open_tunnel(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            if not 200 <= status < 300:
                raise TransportError(f"the proxy refused the tunnel: HTTP {status}")
            assert conn.transport is not None and self._ssl is not None
            tls = await loop.start_tls(conn.transport, conn, self._ssl, server_hostname=self.host)
        except BaseException:
            conn.abort()
            raise
        if tls is None:  # the transport closed during the handshake
            raise TransportError("the tunnel closed during the TLS handshake")
        conn.transport = tls

    def _proxy_ssl(self) -> ssl.SSLContext:
        # An https:// proxy is verified like the origin would be.
        return self._ssl or ssl.create_default_context()

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


class _Proxy:
    """A proxy's address, whether to speak TLS to it, and its credentials."""

    def __init__(self, host: str, port: int, tls: bool, authorization: str) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.authorization = authorization

    @classmethod
    def parse(cls, url: str | None) -> _Proxy | None:
        if url is None:
            return None
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            # Never the URL itself: it may hold a password.
            raise ValueError(
                f"the proxy must be an http:// or https:// URL with a host, got scheme {scheme!r}"
            )
        authorization = ""
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        default = 443 if scheme == "https" else 80
        return cls(parts.hostname, parts.port or default, scheme == "https", authorization)


def _expire(slot: asyncio.Future[None]) -> None:
    if not slot.done():
        slot.set_exception(RequestTimeout("no free connection within the timeout"))
