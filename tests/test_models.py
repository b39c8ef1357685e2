"""The model seam, the retry policy and the OpenAI adapter (against the bundled server)."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import anyio
import pytest
from structlog.testing import capture_logs

from convo_sim import (
    ChatModel,
    Completion,
    EmptyReplyError,
    Message,
    ModelError,
    ModelSettings,
    RetryPolicy,
    Usage,
)
from convo_sim._faults import Fault, FaultPlan
from convo_sim._models import complete_nonempty
from convo_sim._openai_model import LOCAL_API_KEY, OpenAIChatModel
from convo_sim._retry import Transient, parse_retry_after
from convo_sim._served_models import EchoModel
from convo_sim._server import serve_models

ANYIO_BACKENDS = ("asyncio", "trio")  # the core runs on both; see tests/conftest.py

FAST = RetryPolicy(attempts=4, initial=0.001, max_wait=0.01, jitter=0.001, max_retry_after=0.02)
HELLO = [Message(role="user", content="hello there")]


class Recorder:
    """A served model that remembers every request body and echoes."""

    def __init__(self) -> None:
        self.bodies: list[Mapping[str, Any]] = []
        self.messages: list[Sequence[Message]] = []

    async def reply(self, messages: Sequence[Message], body: Mapping[str, Any]) -> Message:
        self.bodies.append(body)
        self.messages.append(messages)
        return Message(role="assistant", content=f"got {len(messages)} messages")


# -- settings ---------------------------------------------------------------


def test_settings_merge_overrides_only_what_is_set() -> None:
    base = ModelSettings(temperature=0.7, max_tokens=100, extra={"top_k": 5, "a": 1})
    merged = base.merged(ModelSettings(max_tokens=20, extra={"a": 2}))
    assert merged.temperature == 0.7
    assert merged.max_tokens == 20
    assert merged.extra == {"top_k": 5, "a": 2}
    assert base.merged(None) is base
    assert base.merged(ModelSettings()) == base


# -- retry policy -------------------------------------------------------------


def test_backoff_grows_exponentially_is_capped_and_jittered() -> None:
    policy = RetryPolicy(initial=1.0, max_wait=5.0, jitter=0.5)
    for retry, base in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)):
        waits = [policy.backoff(retry) for _ in range(50)]
        assert all(base <= w <= base + 0.5 for w in waits), (retry, waits)
        assert len(set(waits)) > 1  # jittered
    assert RetryPolicy(initial=1.0, jitter=0).backoff(2) == 2.0


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(initial=1.0, max_retry_after=3.0, jitter=0)
    assert policy.wait_for(1, Transient(status=429, retry_after=2.0)) == 2.0
    assert policy.wait_for(1, Transient(status=429, retry_after=600.0)) == 3.0
    assert policy.wait_for(1, Transient(status=500)) == 1.0


def test_parse_retry_after_reads_seconds_and_http_dates() -> None:
    now = time.time()
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") == 0.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30, abs=1)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


@pytest.mark.parametrize("bad", [{"attempts": 0}, {"initial": -1.0}, {"max_wait": float("inf")}])
def test_retry_policy_rejects_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**bad)


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


def _classify(exc: Exception) -> Transient | None:
    return Transient(status=503) if isinstance(exc, Flaky) else None


def _give_up(exc: Exception, attempts: int) -> ModelError:
    return ModelError(f"{type(exc).__name__}", attempts=attempts)


@pytest.mark.timeout(10)
async def test_policy_retries_transient_errors_and_logs_each_retry() -> None:
    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Flaky
        return "ok"

    with capture_logs() as logs:
        assert await FAST.call(fn, classify=_classify, give_up=_give_up) == "ok"
    retries = [e for e in logs if e["event"] == "model.retry"]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert all(e["error"] == "Flaky" and e["status"] == 503 for e in retries)
    assert all(0 <= e["wait_s"] <= 0.02 for e in retries)


@pytest.mark.timeout(10)
async def test_policy_gives_up_after_the_attempts_and_not_on_fatal_errors() -> None:
    async def flaky() -> str:
        raise Flaky

    async def fatal() -> str:
        raise Fatal

    with pytest.raises(ModelError) as exhausted:
        await FAST.call(flaky, classify=_classify, give_up=_give_up)
    assert exhausted.value.attempts == FAST.attempts
    with pytest.raises(ModelError) as failed:
        await FAST.call(fatal, classify=_classify, give_up=_give_up)
    assert failed.value.attempts == 1
    assert str(failed.value) == "Fatal"


@pytest.mark.timeout(10)
async def test_cancellation_is_never_retried() -> None:
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        await anyio.sleep(10)
        return "late"

    with anyio.move_on_after(0.05) as scope:
        await FAST.call(slow, classify=lambda exc: Transient(), give_up=_give_up)
    assert scope.cancelled_caught
    assert calls == 1


# -- empty replies --------------------------------------------------------------


class Scripted:
    """A fake ChatModel answering with the given texts in order."""

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)
        self.calls = 0

    async def complete(self, messages: Sequence[Message], settings: ModelSettings) -> Completion:
        text = self.texts[min(self.calls, len(self.texts) - 1)]
        self.calls += 1
        usage = Usage(prompt_tokens=10, completion_tokens=1, total_tokens=11)
        message = Message(role="assistant", content=text, metadata={"usage": usage.model_dump()})
        return Completion(message=message, usage=usage)


async def test_complete_nonempty_asks_again_and_counts_every_token() -> None:
    model = Scripted("", "  ", "finally")
    assert isinstance(model, ChatModel)
    completion = await complete_nonempty(model, HELLO, ModelSettings(), empty_retries=2)
    assert completion.message.content == "finally"
    assert completion.usage.total_tokens == 33
    assert completion.message.metadata["usage"]["total_tokens"] == 33


async def test_complete_nonempty_gives_up_with_empty_reply_error() -> None:
    model = Scripted("")
    with pytest.raises(EmptyReplyError) as info:
        await complete_nonempty(model, HELLO, ModelSettings(), empty_retries=2)
    assert info.value.attempts == 3
    assert model.calls == 3


# -- the OpenAI adapter over loopback ------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_adapter_returns_reply_usage_and_metadata(api: Literal["chat", "responses"]) -> None:
    with anyio.fail_after(15):
        async with (
            serve_models({"echo": EchoModel()}) as server,
            OpenAIChatModel("echo", base_url=server.base_url, api=api, retry=FAST) as model,
        ):
            completion = await model.complete(HELLO, ModelSettings())
    assert completion.message.role == "assistant"
    assert completion.message.content == "hello there"
    assert completion.usage == Usage(prompt_tokens=2, completion_tokens=2, total_tokens=4)
    assert completion.message.metadata["usage"] == completion.usage.model_dump()
    assert completion.finish_reason == "stop"
    assert completion.id


@pytest.mark.timeout(20)
async def test_adapter_sends_settings_and_extra_fields() -> None:
    recorder = Recorder()
    defaults = ModelSettings(temperature=0.2, extra={"top_k": 7})
    with anyio.fail_after(15):
        async with (
            serve_models({"rec": recorder}) as server,
            OpenAIChatModel("rec", base_url=server.base_url, settings=defaults) as chat,
            OpenAIChatModel("rec", base_url=server.base_url, api="responses") as responses,
        ):
            await chat.complete(HELLO, ModelSettings(max_tokens=9, seed=3, stop=("END",)))
            await responses.complete(
                [Message(role="system", content="be brief"), *HELLO], ModelSettings(max_tokens=9)
            )
    body = recorder.bodies[0]
    assert body["temperature"] == 0.2 and body["top_k"] == 7
    assert body["max_tokens"] == 9 and body["seed"] == 3 and body["stop"] == ["END"]
    assert body["messages"] == [{"role": "user", "content": "hello there"}]
    rbody = recorder.bodies[1]
    assert rbody["max_output_tokens"] == 9 and rbody["store"] is False
    assert [m.role for m in recorder.messages[1]] == ["system", "user"]


@pytest.mark.timeout(20)
async def test_adapter_reuses_one_connection_and_honours_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with anyio.fail_after(15):
        async with serve_models({"echo": EchoModel()}) as server:
            monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
            async with OpenAIChatModel("echo") as model:
                assert model.base_url == server.base_url
                for _ in range(20):
                    await model.complete(HELLO, ModelSettings())
            assert server.connections == 1
            assert server.requests == 20
    assert LOCAL_API_KEY not in repr(model)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("fault", "status"),
    [(Fault.server_error(400), 400), (Fault.server_error(404), 404), (Fault.unauthorized(), 401)],
)
async def test_client_errors_are_not_retried(fault: Fault, status: int) -> None:
    plan = FaultPlan().add(fault, times=None)
    with anyio.fail_after(15):
        async with (
            serve_models({"echo": EchoModel()}, faults=plan) as server,
            OpenAIChatModel("echo", base_url=server.base_url, retry=FAST) as model,
        ):
            with pytest.raises(ModelError) as info:
                await model.complete(HELLO, ModelSettings())
            assert server.requests == 1
    assert info.value.status_code == status
    assert info.value.attempts == 1


@pytest.mark.timeout(20)
@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503])
async def test_retryable_statuses_are_retried_until_attempts_run_out(status: int) -> None:
    plan = FaultPlan().add(Fault.server_error(status), times=None)
    with anyio.fail_after(15):
        async with (
            serve_models({"echo": EchoModel()}, faults=plan) as server,
            OpenAIChatModel("echo", base_url=server.base_url, retry=FAST) as model,
        ):
            with pytest.raises(ModelError) as info:
                await model.complete(HELLO, ModelSettings())
            assert server.requests == FAST.attempts
    assert info.value.status_code == status
    assert info.value.attempts == FAST.attempts


@pytest.mark.timeout(20)
async def test_rate_limit_waits_for_retry_after_then_succeeds() -> None:
    plan = FaultPlan().add(Fault.rate_limit(retry_after="0"), times=2)
    with anyio.fail_after(15):
        async with (
            serve_models({"echo": EchoModel()}, faults=plan) as server,
            OpenAIChatModel("echo", base_url=server.base_url, retry=FAST) as model,
        ):
            with capture_logs() as logs:
                completion = await model.complete(HELLO, ModelSettings())
    assert completion.message.content == "hello there"
    retries = [e for e in logs if e["event"] == "model.retry"]
    assert [(e["attempt"], e["status"], e["wait_s"]) for e in retries] == [
        (1, 429, 0.0),
        (2, 429, 0.0),
    ]
    assert all(e["model"] == "echo" for e in retries)


@pytest.mark.timeout(20)
async def test_a_long_retry_after_is_capped() -> None:
    policy = RetryPolicy(attempts=2, initial=0.001, jitter=0, max_retry_after=0.05)
    plan = FaultPlan().add(Fault.rate_limit(retry_after="3600"))
    with anyio.fail_after(5):  # an uncapped wait would be an hour
        async with (
            serve_models({"echo": EchoModel()}, faults=plan) as server,
            OpenAIChatModel("echo", base_url=server.base_url, retry=policy) as model,
        ):
            with capture_logs() as logs:
                await model.complete(HELLO, ModelSettings())
    assert [e["wait_s"] for e in logs if e["event"] == "model.retry"] == [0.05]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "NaN"])
def test_a_retry_after_that_is_no_number_of_seconds_is_ignored(value: str) -> None:
    policy = RetryPolicy(initial=1.0, max_retry_after=3.0, jitter=0)
    # Unreadable, like a `Retry-After` of "soon": the usual backoff applies.
    assert policy.wait_for(1, Transient(status=429, retry_after=float(value))) == 1.0


class _Throttling:
    """A raw HTTP server: the first request gets 429 with `retry-after-ms: nan`, then 200."""

    def __init__(self, header: str) -> None:
        self.header = header
        self.requests = 0

    async def handle(self, client: anyio.abc.SocketStream) -> None:
        from anyio.streams.buffered import BufferedByteReceiveStream

        async with client:
            buffered = BufferedByteReceiveStream(client)
            try:
                while True:
                    head = await buffered.receive_until(b"\r\n\r\n", 65536)
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    await buffered.receive_exactly(length)
                    self.requests += 1
                    if self.requests == 1:
                        status, extra = b"429 Too Many Requests", self.header.encode()
                        body = b'{"error": {"message": "slow down", "type": "rate_limit"}}'
                    else:
                        status, extra = b"200 OK", b""
                        body = json.dumps(
                            {
                                "id": "c1",
                                "object": "chat.completion",
                                "created": 0,
                                "model": "m",
                                "choices": [
                                    {
                                        "index": 0,
                                        "message": {"role": "assistant", "content": "ok"},
                                        "finish_reason": "stop",
                                    }
                                ],
                            }
                        ).encode()
                    await client.send(
                        b"HTTP/1.1 "
                        + status
                        + b"\r\ncontent-type: application/json\r\n"
                        + extra
                        + b"content-length: "
                        + str(len(body)).encode()
                        + b"\r\n\r\n"
                        + body
                    )
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                return


@pytest.mark.parametrize("transport", ["lean", "sdk"])
@pytest.mark.parametrize("header", ["retry-after-ms: nan\r\n", "retry-after: nan\r\n"])
async def test_a_429_with_retry_after_ms_nan_is_retried_after_the_usual_backoff(
    transport: str, header: str, anyio_backend: str
) -> None:
    server = _Throttling(header)
    fast = RetryPolicy(attempts=3, initial=0.01, max_wait=0.05, jitter=0.0)
    with anyio.fail_after(15):
        async with (
            await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(listener.serve, server.handle)
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            async with OpenAIChatModel(
                "m",
                base_url=f"http://127.0.0.1:{port}/v1",
                retry=fast,
                transport=transport,  # type: ignore[arg-type]
            ) as model:
                reply = await model.complete([Message(role="user", content="hi")])
            tg.cancel_scope.cancel()
    assert reply.message.text == "ok"
    assert server.requests == 2
