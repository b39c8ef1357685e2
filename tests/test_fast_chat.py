"""The lean chat transport against real servers on 127.0.0.1: the bundled one
(with injected faults) and a raw socket server for the HTTP/1.1 corners.

Most behaviour is checked on both transports (`lean` and `sdk`): the lean
one must keep the adapter's semantics, retries and errors included.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from anyio.abc import ByteStream, Listener, SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSListener
from certificates import make_certificate
from structlog.testing import capture_logs

from convo_sim import Message, ModelError, ModelSettings, RetryPolicy, ToolCall
from convo_sim._fast_chat import (
    FastChatTransport,
    MalformedReply,
    RequestTimeout,
    TransportError,
    parse_chat_completion,
)
from convo_sim._faults import Fault, FaultPlan
from convo_sim._openai_model import OpenAIChatModel
from convo_sim._served_models import EchoModel, ServedModel
from convo_sim._server import ModelServer, serve_models

FAST = RetryPolicy(attempts=4, initial=0.001, max_wait=0.01, jitter=0.001, max_retry_after=0.02)
HELLO = [Message(role="user", content="hello there")]
KEY = "sk-test-abcdefghijklmnopqrstuvwxyz0123456789"
TRANSPORTS = ["lean", "sdk"]
Transport = Literal["lean", "sdk"]


class ToolCaller:
    """A served model that answers with one tool call and no text."""

    async def reply(self, messages: Sequence[Message], body: Mapping[str, Any]) -> Message:
        call = ToolCall(id="call_1", name="add_event", arguments='{"name": "gym"}')
        return Message(role="assistant", content=None, tool_calls=(call,))


@asynccontextmanager
async def server(plan: FaultPlan | None = None) -> AsyncIterator[ModelServer]:
    models: dict[str, ServedModel] = {"echo": EchoModel(), "tools": ToolCaller()}
    async with serve_models(models, faults=plan) as running:
        yield running


def model_for(
    url: str, transport: Transport, *, timeout: float = 10.0, retry: RetryPolicy = FAST
) -> OpenAIChatModel:
    return OpenAIChatModel(
        "echo", base_url=url, api_key=KEY, transport=transport, timeout=timeout, retry=retry
    )


# -- replies -------------------------------------------------------------------


@pytest.mark.timeout(20)
async def test_lean_and_sdk_read_the_same_reply_and_usage() -> None:
    with anyio.fail_after(15):
        async with server() as running:
            replies = {}
            for transport in ("lean", "sdk"):
                async with model_for(running.base_url, transport) as model:
                    replies[transport] = await model.complete(HELLO)
    lean, sdk = replies["lean"], replies["sdk"]
    assert lean.message.content == sdk.message.content == "hello there"
    assert lean.usage == sdk.usage
    assert lean.usage.total_tokens == 4  # two words in, two words out
    assert lean.finish_reason == sdk.finish_reason == "stop"
    assert lean.message.metadata == sdk.message.metadata
    assert lean.message.metadata["usage"] == lean.usage.model_dump()
    assert lean.id is not None and lean.id.startswith("chatcmpl-")


@pytest.mark.timeout(20)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tool_calls_are_read_with_no_content(transport: Transport) -> None:
    with anyio.fail_after(15):
        async with server() as running, model_for(running.base_url, transport) as model:
            reply = await model.complete(HELLO, None)
            from_settings = await model.complete(HELLO, ModelSettings(model="tools"))
    assert reply.message.content == "hello there"
    assert from_settings.message.content is None
    assert from_settings.message.tool_calls == (
        ToolCall(id="call_1", name="add_event", arguments='{"name": "gym"}'),
    )
    assert from_settings.finish_reason == "tool_calls"
    assert not from_settings.empty


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"choices": []},
        {"choices": [{"message": {"content": 3}}]},
        {"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": "many"}},
        {"choices": [{"message": {"tool_calls": [{"function": {}}]}}]},
        ["not", "an", "object"],
    ],
)
def test_unusable_chat_completions_are_malformed(data: Any) -> None:
    with pytest.raises(MalformedReply):
        parse_chat_completion(data, "m")


def test_a_reply_without_content_or_calls_is_empty_text() -> None:
    completion = parse_chat_completion({"choices": [{"message": {"content": None}}]}, "m")
    assert completion.message.content == ""
    assert completion.empty
    assert completion.usage.total_tokens == 0


# -- the pool ------------------------------------------------------------------


@pytest.mark.timeout(20)
async def test_sequential_requests_reuse_one_connection() -> None:
    with anyio.fail_after(15):
        async with server() as running, model_for(running.base_url, "lean") as model:
            for _ in range(20):
                await model.complete(HELLO)
            assert running.connections == 1
            assert running.requests == 20


@pytest.mark.timeout(20)
async def test_the_pool_grows_to_the_concurrency_and_respects_its_limit() -> None:
    with anyio.fail_after(15):
        async with server() as running:
            transport = FastChatTransport(running.base_url, api_key=KEY, max_connections=3)
            request = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
            replies: list[str | None] = []

            async def one() -> None:
                replies.append((await transport.complete(request)).message.content)

            for _ in range(2):  # the second wave reuses the first wave's connections
                async with anyio.create_task_group() as tg:
                    for _ in range(12):
                        tg.start_soon(one)
            await transport.aclose()
    assert replies == ["hi"] * 24
    assert running.connections == transport.http.connections_opened == 3


@pytest.mark.timeout(20)
async def test_waiting_for_a_connection_counts_against_the_timeout_and_gives_up_its_place() -> None:
    plan = FaultPlan().add(Fault.hang(1.0))
    request = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    outcomes: dict[str, str | None] = {}
    with anyio.fail_after(15):
        async with server(plan) as running:
            transport = FastChatTransport(
                running.base_url, api_key=KEY, timeout=0.3, max_connections=1
            )

            async def one(name: str) -> None:
                with anyio.move_on_after(0.1 if name == "cancelled" else 10):
                    try:
                        outcomes[name] = (await transport.complete(request)).message.content
                    except RequestTimeout:
                        outcomes[name] = "timeout"
                    return
                outcomes[name] = "cancelled"

            async with anyio.create_task_group() as tg:
                for name in ("hung", "waiting", "cancelled"):  # "hung" takes the only slot
                    tg.start_soon(one, name)
            # Had a slot leaked, these would queue behind it and time out.
            async with anyio.create_task_group() as tg:
                for name in ("after-1", "after-2"):
                    tg.start_soon(one, name)
            await transport.aclose()
    assert outcomes == {
        "hung": "timeout",
        "waiting": "timeout",
        "cancelled": "cancelled",
        "after-1": "hi",
        "after-2": "hi",
    }


# -- faults, on both transports -------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("fault", "status"),
    [
        pytest.param(Fault.rate_limit(retry_after="0"), 429, id="429"),
        pytest.param(Fault.server_error(500), 500, id="500"),
        pytest.param(Fault.server_error(503), 503, id="503"),
        pytest.param(Fault.malformed(), 200, id="malformed-json"),
        pytest.param(Fault.disconnect(), None, id="dropped-connection"),
    ],
)
async def test_transient_faults_are_retried(
    transport: Transport, fault: Fault, status: int | None
) -> None:
    plan = FaultPlan().add(fault, times=2)
    with anyio.fail_after(15):
        async with server(plan) as running, model_for(running.base_url, transport) as model:
            with capture_logs() as logs:
                reply = await model.complete(HELLO)
    assert reply.message.content == "hello there"
    assert plan.injected[fault.kind] == 2
    retries = [e for e in logs if e["event"] == "model.retry"]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert all(e["status"] == status for e in retries)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_retry_after_is_waited_for(transport: Transport) -> None:
    policy = RetryPolicy(attempts=2, initial=0.0, jitter=0.0, max_retry_after=5.0)
    plan = FaultPlan().add(Fault.rate_limit(retry_after="0.3"))
    with anyio.fail_after(15):
        async with (
            server(plan) as running,
            model_for(running.base_url, transport, retry=policy) as model,
        ):
            started = time.monotonic()
            reply = await model.complete(HELLO)
            waited = time.monotonic() - started
    assert reply.message.content == "hello there"
    assert waited >= 0.3


@pytest.mark.timeout(20)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_hang_times_out_and_the_retry_succeeds(transport: Transport) -> None:
    plan = FaultPlan().add(Fault.hang(5.0))
    with anyio.fail_after(15):
        async with (
            server(plan) as running,
            model_for(running.base_url, transport, timeout=0.3) as model,
        ):
            with capture_logs() as logs:
                started = time.monotonic()
                reply = await model.complete(HELLO)
                took = time.monotonic() - started
    assert reply.message.content == "hello there"
    assert 0.3 <= took < 4.0
    assert [e["status"] for e in logs if e["event"] == "model.retry"] == [None]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_empty_content_is_an_empty_completion(transport: Transport) -> None:
    plan = FaultPlan().add(Fault.empty())
    with anyio.fail_after(15):
        async with server(plan) as running, model_for(running.base_url, transport) as model:
            first = await model.complete(HELLO)
            second = await model.complete(HELLO)
    assert first.empty and first.message.content == ""
    assert not second.empty


@pytest.mark.timeout(20)
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("fault", "status", "attempts"),
    [
        pytest.param(Fault.server_error(500), 500, FAST.attempts, id="500-every-time"),
        pytest.param(Fault.hang(5.0), None, FAST.attempts, id="hang-every-time"),
        pytest.param(Fault.disconnect(), None, FAST.attempts, id="drop-every-time"),
        pytest.param(Fault.unauthorized(), 401, 1, id="401-not-retried"),
        pytest.param(Fault.server_error(400), 400, 1, id="400-not-retried"),
    ],
)
async def test_persistent_failures_become_model_errors_without_the_key(
    transport: Transport, fault: Fault, status: int | None, attempts: int
) -> None:
    plan = FaultPlan().add(fault, times=None)
    # A short timeout only where the fault is a hang: a loaded machine must
    # not turn another fault into a timeout.
    timeout = 0.2 if fault.kind == "hang" else 10.0
    with anyio.fail_after(15):
        async with (
            server(plan) as running,
            model_for(running.base_url, transport, timeout=timeout) as model,
        ):
            with capture_logs() as logs, pytest.raises(ModelError) as caught:
                await model.complete(HELLO)
    assert caught.value.status_code == status
    assert caught.value.attempts == attempts
    assert KEY not in str(caught.value)
    assert KEY[3:11] not in str(caught.value)
    assert KEY not in repr(logs)
    assert [e["event"] for e in logs].count("model.failed") == 1


@pytest.mark.timeout(20)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_unknown_model_is_not_retried(transport: Transport) -> None:
    with anyio.fail_after(15):
        async with server() as running, model_for(running.base_url, transport) as model:
            with pytest.raises(ModelError) as caught:
                await model.complete(HELLO, ModelSettings(model="no-such-model"))
            assert running.requests == 1
    assert caught.value.status_code == 404
    assert caught.value.attempts == 1


@pytest.mark.timeout(20)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_refused_connection_is_retried_then_reported(transport: Transport) -> None:
    with anyio.fail_after(15):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(SocketAttribute.local_port)
        await listener.aclose()  # nothing listens there now
        async with model_for(f"http://127.0.0.1:{port}/v1", transport) as model:
            with pytest.raises(ModelError) as caught:
                await model.complete(HELLO)
    assert caught.value.status_code is None
    assert caught.value.attempts == FAST.attempts


# -- cancellation and event loops ------------------------------------------------


@pytest.mark.timeout(20)
async def test_a_cancelled_request_does_not_leave_its_connection_in_the_pool() -> None:
    plan = FaultPlan().add(Fault.hang(3.0))
    with anyio.fail_after(15):
        async with server(plan) as running, model_for(running.base_url, "lean") as model:
            with anyio.move_on_after(0.2) as scope:
                await model.complete(HELLO)
            assert scope.cancelled_caught
            reply = await model.complete(HELLO)
            assert running.connections == 2  # the hung one was dropped, not reused
    assert reply.message.content == "hello there"


def test_one_transport_serves_two_event_loops_in_turn() -> None:
    from convo_sim._server import ServerThread

    with ServerThread({"echo": EchoModel()}) as running:
        transport = FastChatTransport(running.base_url, api_key=KEY)
        request = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}

        async def ask() -> list[str | None]:
            with anyio.fail_after(10):
                try:
                    return [(await transport.complete(request)).message.content for _ in range(3)]
                finally:
                    await transport.aclose()  # before the loop ends: its sockets die with it

        # A second loop (a second anyio.run) starts a new pool on the same object.
        assert anyio.run(ask) == ["hi"] * 3
        assert anyio.run(ask) == ["hi"] * 3
    assert running.connections == transport.http.connections_opened == 2


def test_transport_is_checked_and_the_key_stays_out_of_reprs() -> None:
    with pytest.raises(ValueError, match="transport"):
        OpenAIChatModel("m", transport="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="base_url"):
        FastChatTransport("ftp://example.invalid", api_key=KEY)
    transport = FastChatTransport("http://127.0.0.1:9/v1", api_key=KEY)
    assert KEY not in repr(transport)
    assert "127.0.0.1:9/v1" in repr(transport)
    assert not FastChatTransport.supported()  # no event loop runs here


# -- HTTP/1.1 corners, from a raw server -------------------------------------------

Handler = Callable[[ByteStream, BufferedByteReceiveStream], Awaitable[bool]]
"""Answers one request on a connection; returns whether to keep the connection."""


async def _read_request(reader: BufferedByteReceiveStream) -> bytes:
    head = await reader.receive_until(b"\r\n\r\n", 65536)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return await reader.receive_exactly(length)


@asynccontextmanager
async def raw_server(
    handler: Handler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[int]]]:
    """Serves `handler` on 127.0.0.1; yields the base URL and a connection counter."""
    accepted = [0]

    async def connection(stream: ByteStream) -> None:
        accepted[0] += 1
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            try:
                while True:
                    await _read_request(reader)
                    if not await handler(stream, reader):
                        return
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                return

    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp.extra(SocketAttribute.local_port)
    # standard_compatible=False: no closing TLS handshake, which a client
    # that refused the certificate would never answer.
    listener: Listener[Any] = (
        tcp if tls is None else TLSListener(tcp, tls, standard_compatible=False)
    )
    scheme = "http" if tls is None else "https"
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, connection)
        try:
            yield f"{scheme}://127.0.0.1:{port}/v1", accepted
        finally:
            tg.cancel_scope.cancel()


def _body(text: str) -> bytes:
    return (
        b'{"id":"c1","choices":[{"index":0,"message":{"role":"assistant","content":"'
        + text.encode()
        + b'"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,'
        b'"total_tokens":2}}'
    )


async def _ask_twice(url: str) -> list[str | None]:
    async with model_for(url, "lean") as model:
        return [(await model.complete(HELLO)).message.content for _ in range(2)]


@pytest.mark.timeout(20)
async def test_chunked_replies_split_across_segments() -> None:
    async def chunked(stream: ByteStream, reader: BufferedByteReceiveStream) -> bool:
        body = _body("chunky")
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        await anyio.sleep(0.01)  # the head arrives in two segments
        await stream.send(b"Transfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(body), 40):
            piece = body[start : start + 40]
            await stream.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            await anyio.sleep(0.001)
        await stream.send(b"0\r\n\r\n")
        return True

    with anyio.fail_after(15):
        async with raw_server(chunked) as (url, accepted):
            assert await _ask_twice(url) == ["chunky", "chunky"]
    assert accepted == [1]


@pytest.mark.timeout(20)
async def test_a_reply_without_length_is_read_to_eof_and_not_reused() -> None:
    async def until_eof(stream: ByteStream, reader: BufferedByteReceiveStream) -> bool:
        # An interim reply first (HTTP/1.1: an HTTP/1.0 one would close the exchange).
        await stream.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await stream.send(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n")
        await stream.send(_body("eof"))
        return False  # closing the connection ends the body

    with anyio.fail_after(15):
        async with raw_server(until_eof) as (url, accepted):
            assert await _ask_twice(url) == ["eof", "eof"]
    assert accepted == [2]


@pytest.mark.timeout(20)
async def test_connection_close_and_idle_closes_open_a_fresh_connection_without_a_retry() -> None:
    async def close_after(stream: ByteStream, reader: BufferedByteReceiveStream) -> bool:
        body = _body("fresh")
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return False  # closes while the client holds the connection idle

    with anyio.fail_after(15):
        async with raw_server(close_after) as (url, accepted):
            with capture_logs() as logs:
                async with model_for(url, "lean") as model:
                    first = await model.complete(HELLO)
                    await anyio.sleep(0.05)  # the close reaches the idle connection
                    second = await model.complete(HELLO)
    assert first.message.content == second.message.content == "fresh"
    assert accepted == [2]
    assert not [e for e in logs if e["event"] == "model.retry"]


@pytest.mark.timeout(20)
async def test_a_garbled_reply_is_retried_on_a_new_connection() -> None:
    calls = [0]

    async def garbled_once(stream: ByteStream, reader: BufferedByteReceiveStream) -> bool:
        calls[0] += 1
        if calls[0] == 1:
            await stream.send(b"SPDY/9 what\r\n\r\n")
            return True
        body = _body("clean")
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return True

    with anyio.fail_after(15):
        async with raw_server(garbled_once) as (url, accepted):
            with capture_logs() as logs:
                assert await _ask_twice(url) == ["clean", "clean"]
    assert [e["error"] for e in logs if e["event"] == "model.retry"] == ["TransportError"]
    assert accepted == [2]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1."""
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.mark.timeout(20)
async def test_https_verifies_the_server_and_keeps_the_connection(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def reply(stream: ByteStream, reader: BufferedByteReceiveStream) -> bool:
        body = _body("secure")
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return True

    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with anyio.fail_after(15):
        async with raw_server(reply, tls=server_tls) as (url, accepted):
            trusted = FastChatTransport(
                url, api_key=KEY, ssl_context=ssl.create_default_context(cafile=cert)
            )
            replies = [(await trusted.complete(request)).message.content for _ in range(3)]
            await trusted.aclose()
            untrusted = FastChatTransport(url, api_key=KEY)  # the system's trust store
            with pytest.raises(TransportError):
                await untrusted.complete(request)
            await untrusted.aclose()
    assert replies == ["secure"] * 3
    assert accepted[0] >= 1 and trusted.http.connections_opened == 1


# -- the canned server the benchmarks run against ---------------------------------

SCRIPT = Path(sys.executable).with_name("convo-sim")


@pytest.mark.timeout(30)
async def test_convo_sim_serve_canned_answers_every_request_after_its_latency() -> None:
    command = [
        str(SCRIPT),
        "serve",
        "--port",
        "0",
        "--canned",
        "fixed reply",
        "--latency-ms",
        "150",
    ]
    process = await anyio.open_process(command)
    try:
        assert process.stdout is not None
        with anyio.fail_after(20):
            first = BufferedByteReceiveStream(process.stdout)
            line = (await first.receive_until(b"\n", 1024)).decode()
            assert (
                line.startswith("convo-sim serve: http://127.0.0.1:") and "(models: canned)" in line
            )
            url = line.split()[2]
            transport = FastChatTransport(url, api_key=KEY)
            request = {"model": "canned", "messages": [{"role": "user", "content": "anything"}]}
            started = time.monotonic()
            replies = [(await transport.complete(request)).message.content for _ in range(2)]
            took = time.monotonic() - started
            await transport.aclose()
    finally:
        process.terminate()
        with anyio.move_on_after(10, shield=True):
            await process.wait()
        await process.aclose()
    assert replies == ["fixed reply"] * 2
    assert took >= 0.3  # two requests, 150 ms each


def test_latency_without_canned_is_a_one_line_input_error() -> None:
    done = subprocess.run(
        [str(SCRIPT), "serve", "--port", "0", "--latency-ms", "50"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "convo-sim: error: --latency-ms applies to the canned model: add --canned"
    ]
