"""The bundled server against hostile and heavy clients, over raw sockets on 127.0.0.1.

Slow heads and bodies, idle connections, oversized and over-deep bodies,
requests that cost seconds of CPU, and a process out of file descriptors:
each must cost its own connection at most, never the server or the others.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import anyio
import openai
import pytest
from anyio.abc import ByteStream
from anyio.streams.buffered import BufferedByteReceiveStream
from structlog.testing import capture_logs

from convo_sim import Message
from convo_sim._served_models import EchoModel
from convo_sim._server import ServerLimits, serve_models

TIGHT = ServerLimits(max_body=64 * 1024, idle_timeout=0.5, body_timeout=0.5, offload_above=8 * 1024)
CHAT = [{"role": "user", "content": "one two three"}]


async def read_reply(stream: ByteStream) -> bytes:
    """Everything the server sends until it closes the connection (or 10 s pass)."""
    received = b""
    with anyio.move_on_after(10):
        try:
            while True:
                received += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            pass
    return received


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


async def exchange(data: bytes, limits: ServerLimits = TIGHT) -> tuple[bytes, int, int]:
    """Send raw bytes on a fresh connection; returns the server's whole answer,
    the requests it handed to a model, and the status of a clean request after."""
    async with serve_models({"echo": EchoModel()}, limits=limits) as server:
        async with await anyio.connect_tcp("127.0.0.1", server.port) as client:
            await client.send(data)
            reply = await read_reply(client)
        requests = server.requests
        after, _ = await post_raw(
            server.port, json.dumps({"model": "echo", "messages": CHAT}).encode()
        )
    return reply, requests, after


async def post_raw(port: int, body: bytes) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        async with session.post(url, data=body) as response:
            return response.status, await response.json()


# -- slow and idle clients ----------------------------------------------------------


@pytest.mark.timeout(20)
async def test_an_idle_connection_is_closed_after_the_idle_timeout() -> None:
    with anyio.fail_after(15):
        async with (
            serve_models({"echo": EchoModel()}, limits=TIGHT) as server,
            await anyio.connect_tcp("127.0.0.1", server.port) as idle,
        ):
            started = anyio.current_time()
            closed_with = await read_reply(idle)
            waited = anyio.current_time() - started
    assert closed_with == b""  # closed, without a word
    assert TIGHT.idle_timeout <= waited + 0.05 and waited < 5.0


@pytest.mark.timeout(20)
async def test_a_head_sent_one_byte_at_a_time_is_cut_off() -> None:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    sent = 0
    with anyio.fail_after(15):
        async with serve_models({"echo": EchoModel()}, limits=TIGHT) as server:
            async with await anyio.connect_tcp("127.0.0.1", server.port) as slow:
                try:
                    for byte in head:
                        await slow.send(bytes([byte]))
                        sent += 1
                        await anyio.sleep(0.02)
                except (anyio.BrokenResourceError, ConnectionError):
                    pass
                rest = await read_reply(slow)
            # The server is still there for everyone else.
            status, _ = await post_raw(
                server.port, json.dumps({"model": "echo", "messages": CHAT}).encode()
            )
    assert sent < len(head)  # cut off long before the 4+ s the head would have taken
    assert rest == b""
    assert status == 200


@pytest.mark.timeout(20)
async def test_a_slow_body_gets_408_and_the_connection_closes() -> None:
    with anyio.fail_after(15):
        reply, _, after = await exchange(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model"'
        )
    assert status_of(reply) == 408
    assert b"Connection: close" in reply
    assert after == 200


# -- sizes ----------------------------------------------------------------------------


@pytest.mark.timeout(20)
async def test_an_oversized_content_length_gets_413_before_any_body_is_read() -> None:
    with anyio.fail_after(15):
        reply, requests, after = await exchange(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 30000000000\r\n\r\n"
        )
    assert status_of(reply) == 413
    assert requests == 0  # refused at the door, never handed to a model
    assert after == 200


@pytest.mark.timeout(20)
async def test_an_endless_chunked_body_gets_413_at_the_cap() -> None:
    sent = 0
    with anyio.fail_after(15):
        async with (
            serve_models({"echo": EchoModel()}, limits=TIGHT) as server,
            await anyio.connect_tcp("127.0.0.1", server.port) as client,
        ):
            await client.send(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            reader = BufferedByteReceiveStream(client)
            piece = b"x" * 4096
            reply = b""
            async with anyio.create_task_group() as tg:

                async def flood() -> None:
                    nonlocal sent
                    try:
                        while True:
                            await client.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                            sent += len(piece)
                    except (
                        anyio.BrokenResourceError,
                        ConnectionError,
                        anyio.ClosedResourceError,
                    ):
                        pass

                tg.start_soon(flood)
                reply = await reader.receive_until(b"\r\n", 1024)
                tg.cancel_scope.cancel()
    assert status_of(reply + b" ") == 413
    # Flow control: the server stopped reading near the cap; the kernel holds the rest.
    assert sent < TIGHT.max_body + 16 * 1024 * 1024


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"model": "echo", "messages": [', id="truncated"),
        pytest.param(b"\xff\xfe not utf-8", id="not-utf-8"),
        pytest.param(b'["model", "echo"]', id="not-an-object"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deeper-than-the-c-stack-guard"),
        pytest.param(
            b'{"model": "echo", "messages": [], "metadata": '
            + b'{"a": ' * 65
            + b"1"
            + b"}" * 65
            + b"}",
            id="deeper-than-the-limit",
        ),
    ],
)
async def test_malformed_or_over_deep_json_is_a_400(body: bytes) -> None:
    with anyio.fail_after(15):
        async with serve_models({"echo": EchoModel()}) as server:
            status, error = await post_raw(server.port, body)
            ok, _ = await post_raw(
                server.port, json.dumps({"model": "echo", "messages": CHAT}).encode()
            )
    assert status == 400
    assert error["error"]["type"] == "invalid_request_error"
    assert ok == 200


# -- heavy requests -------------------------------------------------------------------


class Spinner:
    """A served model that burns CPU without ever yielding, until told to stop."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.stop = threading.Event()

    async def reply(self, messages: Sequence[Message], body: Mapping[str, Any]) -> Message:
        self.started.set()
        deadline = time.monotonic() + 10.0
        spins = 0
        while not self.stop.is_set() and time.monotonic() < deadline:
            spins += 1  # pure Python: holds the interpreter lock but for its switches
        return Message(role="assistant", content=f"spun {spins > 0}")


@pytest.mark.timeout(30)
async def test_the_model_list_is_answered_while_a_big_request_burns_cpu() -> None:
    spinner = Spinner()
    events: list[str] = []
    big = [{"role": "user", "content": "x" * (TIGHT.offload_above + 1)}]
    with anyio.fail_after(25):
        async with (
            serve_models({"echo": EchoModel(), "spin": spinner}, limits=TIGHT) as server,
            openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as c,
            anyio.create_task_group() as tg,
        ):

            async def heavy() -> None:
                reply = await c.chat.completions.create(model="spin", messages=big)  # type: ignore[arg-type]
                events.append(f"big: {reply.choices[0].message.content}")

            tg.start_soon(heavy)
            await anyio.to_thread.run_sync(spinner.started.wait, 10.0)
            events.append("spinning")
            models = await c.models.list()
            events.append(f"models: {len(models.data)}")
            spinner.stop.set()
    assert events == ["spinning", "models: 2", "big: spun True"]


@pytest.mark.timeout(20)
async def test_big_requests_stream_and_fail_as_small_ones_do() -> None:
    text = " ".join(f"w{i}" for i in range(4000))  # ~24 KB: over TIGHT's offload line
    with anyio.fail_after(15):
        async with (
            serve_models({"echo": EchoModel()}, limits=TIGHT) as server,
            openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as c,
        ):
            plain = await c.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": text}]
            )
            stream = await c.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": text}], stream=True
            )
            streamed = "".join([ch.choices[0].delta.content or "" async for ch in stream])
            with pytest.raises(openai.NotFoundError):
                await c.chat.completions.create(
                    model="nope", messages=[{"role": "user", "content": text}]
                )
    assert plain.choices[0].message.content == text
    assert streamed == text


# -- out of file descriptors ----------------------------------------------------------

SERVE_WITH_FEW_FDS = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
from convo_sim.cli import main
sys.exit(main(["--log-level", "warning", "serve", "--port", "0", "--idle-timeout", "0.5"]))
"""


@pytest.mark.timeout(60)
async def test_serve_keeps_serving_past_its_file_descriptor_limit() -> None:
    process = await anyio.open_process([sys.executable, "-c", SERVE_WITH_FEW_FDS])
    idle: list[ByteStream] = []
    stderr: list[bytes] = []
    try:
        assert process.stdout is not None and process.stderr is not None
        with anyio.fail_after(50):
            line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 1024)
            url = line.decode().split()[2]
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            async with anyio.create_task_group() as tg:
                out_of_fds = anyio.Event()

                async def drain() -> None:
                    async for chunk in process.stderr:  # type: ignore[union-attr]
                        stderr.append(chunk)
                        if b"server.out_of_file_descriptors" in b"".join(stderr):
                            out_of_fds.set()

                tg.start_soon(drain)
                # Far more idle connections than the server has descriptors.
                for _ in range(150):
                    idle.append(await anyio.connect_tcp("127.0.0.1", port))
                await out_of_fds.wait()
                # The idle ones are still open on our side; the server closes
                # its ends after the idle timeout and gets to this request.
                async with openai.AsyncOpenAI(
                    base_url=url, api_key="unused", max_retries=0, timeout=30
                ) as c:
                    reply = await c.chat.completions.create(model="echo", messages=CHAT)  # type: ignore[arg-type]
                assert process.returncode is None
                tg.cancel_scope.cancel()
    finally:
        for stream in idle:
            await stream.aclose()
        process.terminate()
        with anyio.move_on_after(10, shield=True):
            await process.wait()
        await process.aclose()
    assert reply.choices[0].message.content == "one two three"
    assert b"Traceback" not in b"".join(stderr)


@pytest.mark.timeout(20)
async def test_accept_errors_other_than_running_out_reach_the_previous_handler() -> None:
    import asyncio
    import errno

    from convo_sim._server_http import accept_errors_logged

    loop = asyncio.get_running_loop()
    seen: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: seen.append(context["message"]))
    try:
        with capture_logs() as logs, accept_errors_logged(loop):
            out = OSError(errno.EMFILE, "Too many open files")
            loop.call_exception_handler({"message": "accept", "exception": out})
            loop.call_exception_handler({"message": "something else"})
        loop.call_exception_handler({"message": "after"})
    finally:
        loop.set_exception_handler(previous)
    assert [e["event"] for e in logs] == ["server.out_of_file_descriptors"]
    assert seen == ["something else", "after"]


@pytest.mark.timeout(20)
async def test_a_malformed_request_is_logged_without_its_bytes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = b"sk-secret-abcdefghijklmnop"
    with anyio.fail_after(15), capture_logs() as logs:
        reply, _, _ = await exchange(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + secret + b"\x01\r\n\r\n"
        )
    assert status_of(reply) == 400
    assert [e["event"] for e in logs if e["event"].startswith("server.bad")] == [
        "server.bad_request"
    ]
    assert secret.decode() not in repr(logs) + caplog.text


@pytest.mark.timeout(20)
async def test_a_header_line_over_the_limit_is_a_400() -> None:
    with anyio.fail_after(15):
        reply, _, after = await exchange(
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: "
            + b"a" * (TIGHT.max_line + 10)
            + b"\r\n\r\n"
        )
    assert status_of(reply) == 400
    assert after == 200


@pytest.mark.timeout(20)
async def test_expect_100_continue_gets_the_interim_reply_before_the_body() -> None:
    body = json.dumps({"model": "echo", "messages": CHAT}).encode()
    with anyio.fail_after(15):
        async with (
            serve_models({"echo": EchoModel()}) as server,
            await anyio.connect_tcp("127.0.0.1", server.port) as client,
        ):
            await client.send(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            reader = BufferedByteReceiveStream(client)
            interim = await reader.receive_until(b"\r\n\r\n", 1024)
            await client.send(body)
            final = bytes(reader.buffer) + await read_reply(client)
    assert interim == b"HTTP/1.1 100 Continue"
    assert status_of(final) == 200
    assert final.endswith(b"}") and b'"one two three"' in final
