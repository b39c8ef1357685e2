"""The lean transport against a hostile model server: raw sockets on 127.0.0.1.

Each reply below once hung the client, blocked its event loop or grew its
memory without bound. Every one must now end in a clean error (a
`TransportError` from the transport, a `ModelError` from the adapter)
within the request timeout, and the client must stop reading once a reply
is over its cap: the server counts what it managed to send.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream

from convo_sim import Message, ModelError, RetryPolicy
from convo_sim._fast_chat import FastChatTransport, RequestTimeout, TransportError
from convo_sim._fast_http import FastHTTPClient
from convo_sim._openai_model import OpenAIChatModel

KEY = "sk-test-abcdefghijklmnopqrstuvwxyz0123456789"
REQUEST = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ONCE = RetryPolicy(attempts=2, initial=0.0, jitter=0.0)
CAP = 256 * 1024


@dataclass
class Sent:
    """What the hostile server managed to write before the client hung up."""

    bytes: int = 0
    connections: int = 0


Reply = Callable[[ByteStream, Sent], Awaitable[None]]


@asynccontextmanager
async def hostile(reply: Reply) -> AsyncIterator[tuple[str, Sent]]:
    """Answers every request on 127.0.0.1 with `reply`; yields the base URL and counters."""
    sent = Sent()

    async def connection(stream: ByteStream) -> None:
        sent.connections += 1
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            try:
                while True:
                    head = await reader.receive_until(b"\r\n\r\n", 65536)
                    length = next(
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    )
                    await reader.receive_exactly(length)
                    await reply(stream, sent)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                return
            except (anyio.ClosedResourceError, ConnectionError):
                return

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, connection)
        try:
            yield f"http://127.0.0.1:{port}/v1", sent
        finally:
            tg.cancel_scope.cancel()


async def send(stream: ByteStream, sent: Sent, data: bytes) -> None:
    await stream.send(data)
    sent.bytes += len(data)


def completion(text: str) -> bytes:
    return (
        b'{"id":"c1","choices":[{"index":0,"message":{"role":"assistant","content":"'
        + text.encode()
        + b'"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,'
        b'"total_tokens":2}}'
    )


CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
)


async def negative_chunk(stream: ByteStream, sent: Sent) -> None:
    await send(stream, sent, CHUNKED_HEAD + b"-6\r\nabcdef\r\n0\r\n\r\n")


async def endless_chunks(stream: ByteStream, sent: Sent) -> None:
    await send(stream, sent, CHUNKED_HEAD)
    piece = b"x" * 65536
    while True:
        await send(stream, sent, b"%x\r\n%s\r\n" % (len(piece), piece))


async def endless_until_close(stream: ByteStream, sent: Sent) -> None:
    await send(stream, sent, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    while True:
        await send(stream, sent, b"x" * 65536)


async def huge_length(stream: ByteStream, sent: Sent) -> None:
    await send(stream, sent, b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n")
    while True:
        await send(stream, sent, b"x" * 65536)


async def endless_header(stream: ByteStream, sent: Sent) -> None:
    await send(stream, sent, b"HTTP/1.1 200 OK\r\nX-Long: ")
    while True:
        await send(stream, sent, b"a" * 65536)


async def cr_in_header(stream: ByteStream, sent: Sent) -> None:
    body = completion("forged")
    await send(
        stream,
        sent,
        b"HTTP/1.1 200 OK\r\nX-Note: a\rSet-Cookie: b\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body),
    )


async def lf_in_header(stream: ByteStream, sent: Sent) -> None:
    body = completion("forged")
    await send(
        stream,
        sent,
        b"HTTP/1.1 200 OK\r\nX-Note: a\nContent-Length: 0\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body),
    )


async def slow_body(stream: ByteStream, sent: Sent) -> None:
    body = completion("slow")
    await send(stream, sent, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
    for byte in body:
        await send(stream, sent, bytes([byte]))
        await anyio.sleep(0.1)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        pytest.param(negative_chunk, "unreadable HTTP reply", id="negative-chunk-size"),
        pytest.param(endless_chunks, "larger than", id="endless-chunked-body"),
        pytest.param(endless_until_close, "larger than", id="endless-body-until-close"),
        pytest.param(huge_length, "larger than", id="huge-content-length"),
        pytest.param(endless_header, "head is larger", id="endless-header"),
        pytest.param(cr_in_header, "unreadable HTTP reply", id="cr-in-header"),
        pytest.param(lf_in_header, "unreadable HTTP reply", id="lf-in-header"),
    ],
)
async def test_hostile_replies_are_transport_errors_and_reading_stops_at_the_cap(
    reply: Reply, problem: str
) -> None:
    with anyio.fail_after(20):
        async with hostile(reply) as (url, sent):
            transport = FastChatTransport(url, api_key=KEY, timeout=10.0, max_body=CAP)
            with pytest.raises(TransportError) as caught:
                await transport.complete(REQUEST)
            await transport.aclose()
    assert not isinstance(caught.value, RequestTimeout)
    assert problem in str(caught.value)
    assert KEY not in str(caught.value)
    # The client hung up near its cap; the rest is what the kernel buffers
    # held (a few MB on loopback at most), never the endless stream.
    assert sent.bytes < 3 * CAP + 16 * 1024 * 1024


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(negative_chunk, id="negative-chunk-size"),
        pytest.param(endless_chunks, id="endless-chunked-body"),
        pytest.param(cr_in_header, id="cr-in-header"),
    ],
)
async def test_the_adapter_turns_hostile_replies_into_model_errors(reply: Reply) -> None:
    # The default cap (64 MiB), through OpenAIChatModel as a user runs it.
    with anyio.fail_after(25):
        async with (
            hostile(reply) as (url, sent),
            OpenAIChatModel("m", base_url=url, api_key=KEY, retry=ONCE, timeout=10.0) as model,
        ):
            with pytest.raises(ModelError) as caught:
                await model.complete([Message(role="user", content="hi")])
    assert caught.value.attempts == ONCE.attempts
    assert caught.value.status_code is None
    assert "TransportError" in str(caught.value)
    assert sent.connections == ONCE.attempts  # a broken connection is never reused


@pytest.mark.timeout(30)
async def test_a_trickling_reply_times_out() -> None:
    with anyio.fail_after(20):
        async with hostile(slow_body) as (url, _):
            transport = FastChatTransport(url, api_key=KEY, timeout=0.5)
            started = anyio.current_time()
            with pytest.raises(RequestTimeout):
                await transport.complete(REQUEST)
            took = anyio.current_time() - started
            await transport.aclose()
    assert took < 5.0


@pytest.mark.timeout(30)
async def test_one_byte_chunks_are_read_whole_and_the_loop_keeps_running() -> None:
    text = "y" * (200 * 1024)
    body = completion(text)

    # Built before memory is traced: the server's side is not what is measured.
    wire = b"".join(b"1\r\n%s\r\n" % body[i : i + 1] for i in range(len(body)))

    async def one_byte_chunks(stream: ByteStream, sent: Sent) -> None:
        await send(stream, sent, CHUNKED_HEAD)
        for start in range(0, len(wire), 65536):
            await send(stream, sent, wire[start : start + 65536])
        await send(stream, sent, b"0\r\n\r\n")

    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    with anyio.fail_after(20):
        async with hostile(one_byte_chunks) as (url, _), anyio.create_task_group() as tg:
            tg.start_soon(tick)
            transport = FastChatTransport(url, api_key=KEY, timeout=15.0)
            tracemalloc.start()
            try:
                reply = await transport.complete(REQUEST)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            await transport.aclose()
            tg.cancel_scope.cancel()
    assert reply.message.content == text
    # Parsing ran segment by segment: the loop's other tasks kept running.
    assert ticks > 0
    # One buffer for the body, not a piece per chunk (that was ~40 bytes a byte).
    assert peak < 8 * len(body)


@pytest.mark.timeout(30)
async def test_bytes_after_a_complete_reply_retire_the_connection() -> None:
    body = completion("first")

    async def two_replies(stream: ByteStream, sent: Sent) -> None:
        one = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        await send(stream, sent, one + one)  # a second, unasked-for reply

    with anyio.fail_after(20):
        async with hostile(two_replies) as (url, sent):
            transport = FastChatTransport(url, api_key=KEY, timeout=10.0)
            replies = [(await transport.complete(REQUEST)).message.content for _ in range(2)]
            await transport.aclose()
    assert replies == ["first", "first"]
    assert sent.connections == 2


def test_headers_that_would_forge_others_are_refused() -> None:
    for key in ("sk-abc\r\nX-Evil: 1", "sk-abc\n", "sk-\x00"):
        with pytest.raises(ValueError, match="CR, LF or NUL") as caught:
            FastChatTransport("http://127.0.0.1:9/v1", api_key=key)
        assert key not in str(caught.value)
    with pytest.raises(ValueError, match="token"):
        FastHTTPClient("http://127.0.0.1:9/v1", headers={"Bad Name": "x"})
