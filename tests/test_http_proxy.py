"""Proxies from the environment, on both transports, as the `openai` SDK uses them.

The rules are checked against the SDK's own HTTP client (httpx2, which
the `openai` package depends on): for any `NO_PROXY` and target, the lean
transport proxies exactly when the SDK does. Then both transports go
through real proxies on 127.0.0.1: plain HTTP (the full URL in the request
line) and a `CONNECT` tunnel to an HTTPS origin, with credentials.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from anyio.abc import ByteStream, Listener, SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSListener
from certificates import make_certificate
from hypothesis import example, given, settings
from hypothesis import strategies as st

from convo_sim import Message, ModelError, RetryPolicy
from convo_sim._fast_http import FastHTTPClient
from convo_sim._http_proxy import proxy_from_environment
from convo_sim._openai_model import OpenAIChatModel

KEY = "sk-test-abcdefghijklmnopqrstuvwxyz0123456789"
HELLO = [Message(role="user", content="hi")]
ONCE = RetryPolicy(attempts=1)
Transport = Literal["lean", "sdk"]
PROXY_VARIABLES = ["http_proxy", "https_proxy", "all_proxy", "no_proxy"]


@pytest.fixture(autouse=True)
def _no_inherited_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


# -- the rules, against the SDK's --------------------------------------------------------


def sdk_proxy(url: str, proxies: dict[str, str]) -> str | None:
    """The proxy httpx2 (the SDK's client) picks for `url` under `proxies`."""
    import httpx2
    from httpx2._utils import URLPattern, get_environment_proxies

    with pytest.MonkeyPatch.context() as env:
        for scheme, value in proxies.items():
            env.setenv(f"{scheme}_proxy", value)
        mounts = sorted((URLPattern(k), v) for k, v in get_environment_proxies().items())
    target = httpx2.URL(url)
    for pattern, proxy in mounts:
        if pattern.matches(target):
            return proxy
    return None


HOSTS = ["example.com", "api.example.com", "xexample.com", "localhost", "127.0.0.1", "10.1.2.3"]
ENTRIES = [
    "example.com",
    ".example.com",
    "*.example.com",
    "api.example.com",
    "localhost",
    "127.0.0.1",
    "10.0.0.0/8",
    "10.1.2.3:8000",
    "example.com:443",
    "http://api.example.com",
    "https://example.com:8443",
    "*",
    "ample.com",
    "",
]


@pytest.mark.timeout(60)
@settings(max_examples=600)
@example(scheme="https", host="example.com", port=443, entries=["example.com:443"], which="all")
@given(
    scheme=st.sampled_from(["http", "https"]),
    host=st.sampled_from(HOSTS),
    port=st.sampled_from([None, 80, 443, 8000, 8443]),
    entries=st.lists(st.sampled_from(ENTRIES), max_size=3),
    which=st.sampled_from(["http", "https", "all"]),
)
def test_no_proxy_decisions_match_the_sdk(
    scheme: str, host: str, port: int | None, entries: list[str], which: str
) -> None:
    url = f"{scheme}://{host}{f':{port}' if port else ''}/v1"
    proxies = {which: "http://proxy.invalid:3128", "no": ",".join(entries)}
    assert proxy_from_environment(url, proxies) == sdk_proxy(url, proxies)


def test_a_proxy_without_a_scheme_is_http_and_the_schemes_own_wins() -> None:
    proxies = {"https": "tunnel:3128", "all": "http://other:1"}
    assert proxy_from_environment("https://api.example.com", proxies) == "http://tunnel:3128"
    assert proxy_from_environment("http://api.example.com", proxies) == "http://other:1"


def test_unsupported_proxy_schemes_are_refused_without_their_credentials() -> None:
    with pytest.raises(ValueError, match="socks5") as caught:
        FastHTTPClient("http://127.0.0.1:9/v1", proxy="socks5://user:secret@127.0.0.1:1080")
    assert "secret" not in str(caught.value)


# -- through real proxies on 127.0.0.1 -------------------------------------------------------


@dataclass
class Seen:
    """What a proxy saw: request lines and `Proxy-Authorization` values."""

    lines: list[bytes] = field(default_factory=list)
    credentials: list[bytes] = field(default_factory=list)


def _body(text: str) -> bytes:
    return (
        b'{"id":"c1","choices":[{"index":0,"message":{"role":"assistant","content":"'
        + text.encode()
        + b'"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,'
        b'"total_tokens":2}}'
    )


async def _read_head(reader: BufferedByteReceiveStream) -> tuple[bytes, dict[bytes, bytes]]:
    head = await reader.receive_until(b"\r\n\r\n", 65536)
    line, *rest = head.split(b"\r\n")
    headers = {}
    for item in rest:
        name, _, value = item.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return line, headers


async def _answer(stream: ByteStream, reader: BufferedByteReceiveStream, text: str) -> None:
    """Read one request's body and answer it with a completion saying `text`."""
    body = _body(text)
    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


async def _pipe(source: ByteStream, sink: ByteStream) -> None:
    try:
        async for chunk in source:
            await sink.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
        pass
    finally:
        await sink.aclose()


@asynccontextmanager
async def listening(
    handle: Callable[[ByteStream], Awaitable[None]], tls: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp.extra(SocketAttribute.local_port)
    listener: Listener[Any] = (
        tcp if tls is None else TLSListener(tcp, tls, standard_compatible=False)
    )

    async def guarded(stream: ByteStream) -> None:
        async with stream:
            try:
                await handle(stream)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                pass
            except (anyio.ClosedResourceError, ConnectionError, ssl.SSLError):
                pass

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, guarded)
        try:
            yield port
        finally:
            tg.cancel_scope.cancel()


def http_proxy(seen: Seen) -> Callable[[ByteStream], Awaitable[None]]:
    """A forward proxy: answers plain requests itself, tunnels CONNECT to the origin."""

    async def handle(stream: ByteStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        while True:
            line, headers = await _read_head(reader)
            seen.lines.append(line)
            seen.credentials.append(headers.get(b"proxy-authorization", b""))
            method, target, _ = line.split(b" ", 2)
            if method != b"CONNECT":
                await reader.receive_exactly(int(headers[b"content-length"]))
                await _answer(stream, reader, "via the proxy")
                continue
            host, _, port = target.rpartition(b":")
            origin = await anyio.connect_tcp(host.decode(), int(port))
            await stream.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            async with origin, anyio.create_task_group() as tg:
                tg.start_soon(_pipe, origin, stream)
                if reader.buffer:
                    await origin.send(bytes(reader.buffer))
                await _pipe(reader, origin)  # type: ignore[arg-type]
            return

    return handle


async def tls_origin(stream: ByteStream) -> None:
    reader = BufferedByteReceiveStream(stream)
    while True:
        _, headers = await _read_head(reader)
        await reader.receive_exactly(int(headers[b"content-length"]))
        await _answer(stream, reader, "secure, through the tunnel")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1."""
    return make_certificate(tmp_path_factory.mktemp("tls"))


async def ask(url: str, transport: Transport) -> str | None:
    async with OpenAIChatModel("m", base_url=url, api_key=KEY, transport=transport) as model:
        return (await model.complete(HELLO)).message.content


@pytest.mark.timeout(30)
@pytest.mark.parametrize("transport", ["lean", "sdk"])
async def test_plain_http_goes_through_the_environments_proxy_with_its_credentials(
    transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = Seen()
    with anyio.fail_after(25):
        async with listening(http_proxy(seen)) as proxy_port:
            monkeypatch.setenv("HTTP_PROXY", f"http://ana:p%40ss@127.0.0.1:{proxy_port}")
            origin = "http://127.0.0.1:9/v1"  # nothing listens there: only the proxy answers
            reply = await ask(origin, transport)
            monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
            with pytest.raises(ModelError):  # exempt: straight to the dead origin
                async with OpenAIChatModel(
                    "m", base_url=origin, api_key=KEY, transport=transport, retry=ONCE
                ) as model:
                    await model.complete(HELLO)
    assert reply == "via the proxy"
    assert seen.lines == [b"POST http://127.0.0.1:9/v1/chat/completions HTTP/1.1"]
    assert seen.credentials == [b"Basic " + base64.b64encode(b"ana:p@ss")]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("transport", ["lean", "sdk"])
@pytest.mark.parametrize("proxy_scheme", ["http", "https"])
async def test_https_goes_through_a_connect_tunnel_and_verifies_the_origin(
    transport: Transport,
    proxy_scheme: str,
    monkeypatch: pytest.MonkeyPatch,
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trusted as the SDK trusts it
    seen = Seen()
    with anyio.fail_after(25):
        async with (
            listening(tls_origin, tls=server_tls) as origin_port,
            # An https:// proxy: TLS to the proxy, then TLS to the origin inside it.
            listening(
                http_proxy(seen), tls=server_tls if proxy_scheme == "https" else None
            ) as proxy_port,
        ):
            monkeypatch.setenv("HTTPS_PROXY", f"{proxy_scheme}://127.0.0.1:{proxy_port}")
            reply = await ask(f"https://127.0.0.1:{origin_port}/v1", transport)
    assert reply == "secure, through the tunnel"
    assert seen.lines == [b"CONNECT 127.0.0.1:%d HTTP/1.1" % origin_port]
    assert seen.credentials == [b""]


@pytest.mark.timeout(30)
async def test_a_refused_tunnel_is_a_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(stream: ByteStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        await _read_head(reader)
        await stream.send(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
        )

    with anyio.fail_after(25):
        async with listening(refuse) as proxy_port:
            monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy_port}")
            async with OpenAIChatModel(
                "m", base_url="https://127.0.0.1:9/v1", api_key=KEY, retry=ONCE
            ) as model:
                with pytest.raises(ModelError) as caught:
                    await model.complete(HELLO)
    assert "407" in str(caught.value)
