"""The bundled OpenAI-compatible server, driven by the real `openai` client over loopback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import anyio
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from convo_sim import Message
from convo_sim._faults import Fault, FaultPlan
from convo_sim._served_models import ActorModel, EchoModel, default_models
from convo_sim._server import ServerThread, serve_models
from convo_sim.users import ScriptedUser
from convo_sim.users._llm import parse_scenario_card, user_system_prompt

CHAT: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "be kind"},
    {"role": "user", "content": "one two three"},
]


def client(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=10)


def test_default_models_include_the_calendar_actors() -> None:
    assert {"echo", "calendar-solver", "calendar-user"} <= set(default_models())


@pytest.mark.timeout(20)
async def test_lists_models_and_answers_chat_completions() -> None:
    with anyio.fail_after(15):
        async with (
            serve_models({"echo": EchoModel(), "other": EchoModel()}) as server,
            client(server.base_url) as c,
        ):
            models = await c.models.list()
            reply = await c.chat.completions.create(model="echo", messages=CHAT)
    assert sorted(m.id for m in models.data) == ["echo", "other"]
    assert server.host == "127.0.0.1" and server.port > 0
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == "one two three"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (5, 3)


@pytest.mark.timeout(20)
async def test_streams_chat_completion_chunks_with_usage() -> None:
    with anyio.fail_after(15):
        async with serve_models({"echo": EchoModel()}) as server, client(server.base_url) as c:
            stream = await c.chat.completions.create(
                model="echo",
                messages=CHAT,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "one two three"
    assert len([ch for ch in chunks if ch.choices and ch.choices[0].delta.content]) == 3
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 8
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)


@pytest.mark.timeout(20)
async def test_answers_the_responses_api_plain_and_streamed() -> None:
    with anyio.fail_after(15):
        async with serve_models({"echo": EchoModel()}) as server, client(server.base_url) as c:
            plain = await c.responses.create(model="echo", input="hello world", instructions="hi")
            stream = await c.responses.create(
                model="echo",
                input=[{"role": "user", "content": "streamed reply text"}],
                stream=True,
            )
            events = [event async for event in stream]
            async with c.responses.stream(model="echo", input="via the helper") as helper:
                final = await helper.get_final_response()
    assert plain.output_text == "hello world"
    assert plain.usage is not None and plain.usage.input_tokens == 3
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "streamed reply text" and len(deltas) == 3
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "via the helper"


@pytest.mark.timeout(20)
async def test_unknown_models_and_bad_requests_get_openai_errors() -> None:
    with anyio.fail_after(15):
        async with serve_models({"echo": EchoModel()}) as server, client(server.base_url) as c:
            with pytest.raises(openai.NotFoundError):
                await c.chat.completions.create(model="nope", messages=CHAT)
            with pytest.raises(openai.BadRequestError):
                await c.chat.completions.create(
                    model="echo",
                    messages=[cast(Any, {"role": "wizard", "content": "x"})],
                )
            # Still serving after errors.
            reply = await c.chat.completions.create(model="echo", messages=CHAT)
    assert reply.choices[0].message.content == "one two three"


@pytest.mark.timeout(20)
async def test_garbage_on_the_wire_closes_that_connection_only() -> None:
    with anyio.fail_after(15):
        async with serve_models({"echo": EchoModel()}) as server:
            async with await anyio.connect_tcp("127.0.0.1", server.port) as raw:
                await raw.send(b"NONSENSE\r\nContent-Length: zebra\r\n\r\n")
                answer = await raw.receive()
            async with client(server.base_url) as c:
                reply = await c.chat.completions.create(model="echo", messages=CHAT)
    version, status, _ = answer.split(b" ", 2)
    assert version.startswith(b"HTTP/1.") and status == b"400"
    assert reply.choices[0].message.content == "one two three"


@pytest.mark.timeout(30)
async def test_serves_many_concurrent_keep_alive_connections() -> None:
    results: list[str] = []
    with anyio.fail_after(25):
        async with serve_models({"echo": EchoModel()}) as server, client(server.base_url) as c:

            async def ask(i: int) -> None:
                for j in range(3):
                    messages: list[ChatCompletionMessageParam] = [
                        {"role": "user", "content": f"request {i}.{j}"}
                    ]
                    reply = await c.chat.completions.create(model="echo", messages=messages)
                    results.append(reply.choices[0].message.content or "")

            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(ask, i)
    assert sorted(results) == sorted(f"request {i}.{j}" for i in range(100) for j in range(3))
    assert server.requests == 300
    # Keep-alive: connections were reused across each task's requests.
    assert server.connections <= 100


@pytest.mark.timeout(20)
def test_server_thread_serves_a_sync_client() -> None:
    with (
        ServerThread({"echo": EchoModel(prefix="> ")}) as server,
        openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as c,
    ):
        reply = c.chat.completions.create(model="echo", messages=CHAT)
    assert reply.choices[0].message.content == "> one two three"


# -- served actors -----------------------------------------------------------------


async def test_actor_model_unflips_the_user_view_and_replays_earlier_turns() -> None:
    seen: list[tuple[str, ...]] = []
    cards: list[Mapping[str, Any] | None] = []

    class Spy(ScriptedUser):
        async def respond(self, view: Any) -> Message:
            seen.append(tuple(f"{m.role}:{m.content}" for m in view.transcript))
            return await super().respond(view)

    def factory(card: Mapping[str, Any] | None) -> tuple[Any, object | None]:
        cards.append(card)
        return Spy(["first", "second", "third"]), None

    model = ActorModel("user", factory)
    prompt = user_system_prompt("get things done", scenario_card={"id": "s1", "seed": 4})
    # As an LLM user sends them: own prompt, then the dialogue with roles flipped.
    flipped: Sequence[Message] = [
        Message(role="system", content=prompt),
        Message(role="assistant", content="first"),
        Message(role="user", content="hello, what next?"),
        Message(role="assistant", content="second"),
        Message(role="user", content="done that"),
    ]
    reply = await model.reply(flipped, {})
    assert reply.role == "assistant"
    assert reply.content == "third"  # the replay advanced the scripted user twice
    assert cards == [{"id": "s1", "seed": 4}]
    assert seen[-1] == (
        "user:first",
        "assistant:hello, what next?",
        "user:second",
        "assistant:done that",
    )
    assert seen[:2] == [(), ("user:first", "assistant:hello, what next?")]


def test_scenario_cards_round_trip_and_reject_garbage() -> None:
    card = {"id": "x", "goal": {"steps": []}, "seed": 3}
    assert parse_scenario_card(user_system_prompt("g", scenario_card=card)) == card
    assert parse_scenario_card(user_system_prompt("g")) is None
    with pytest.raises(ValueError):
        parse_scenario_card("<convo-sim-scenario>[1, 2]</convo-sim-scenario>")
    with pytest.raises(ValueError):
        parse_scenario_card("<convo-sim-scenario>{")


@pytest.mark.timeout(20)
async def test_calendar_user_without_a_card_is_a_client_error() -> None:
    with anyio.fail_after(15):
        async with serve_models() as server, client(server.base_url) as c:
            with pytest.raises(openai.BadRequestError) as info:
                await c.chat.completions.create(model="calendar-user", messages=CHAT)
    assert "scenario card" in str(info.value)


@pytest.mark.timeout(20)
async def test_calendar_user_with_an_unknown_persona_is_a_client_error() -> None:
    card = {
        "id": "p",
        "goal": {"steps": [{"action": "add", "event_id": 0, "name": "Sync", "duration": 30}]},
        "persona": "no-such-persona",
        "seed": 1,
    }
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": user_system_prompt("g", scenario_card=card)}
    ]
    with anyio.fail_after(15):
        async with serve_models() as server, client(server.base_url) as c:
            # 400, not 500: the client must not retry a request that cannot succeed.
            with pytest.raises(openai.BadRequestError) as info:
                await c.chat.completions.create(model="calendar-user", messages=messages)
    assert "no-such-persona" in str(info.value)


# -- fault plans -----------------------------------------------------------------------


def test_fault_plan_rules_select_by_model_count_skip_and_predicate() -> None:
    plan = FaultPlan()
    plan.add(Fault.rate_limit("1"), model="a", times=2)
    plan.add(Fault.server_error(503), where=lambda body: body.get("tag") == "x", times=None)
    plan.add(Fault.disconnect(), model="b", skip=1)
    taken = [
        plan.take("a", {}),
        plan.take("b", {}),
        plan.take("a", {"tag": "x"}),
        plan.take("a", {}),
        plan.take("b", {}),
        plan.take("b", {}),
        plan.take("c", {"tag": "x"}),
        plan.take("c", {"tag": "x"}),
    ]
    kinds = [(f.kind, f.status) if f else None for f in taken]
    assert kinds == [
        ("status", 429),
        None,  # b's first request is skipped
        ("status", 429),
        None,
        ("disconnect", 500),
        None,  # b's rule fired its one time
        ("status", 503),
        ("status", 503),
    ]
    assert plan.injected == {"status": 4, "disconnect": 1}
    with pytest.raises(ValueError):
        plan.add(Fault.empty(), times=-1)


# -- the command line ------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_cli_serve_prints_the_port_it_picked() -> None:
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("convo-sim")), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("convo-sim serve: http://127.0.0.1:"), line
        base_url = line.split()[2]
        with openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=10) as c:
            names = {m.id for m in c.models.list().data}
            reply = c.chat.completions.create(model="echo", messages=CHAT)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert {"echo", "calendar-solver", "calendar-user"} <= names
    assert reply.choices[0].message.content == "one two three"
