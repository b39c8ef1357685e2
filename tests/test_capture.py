"""Token capture in the OpenAI adapter: what it asks, what it keeps, what it refuses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, Literal

import anyio
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from convo_sim import (
    Message,
    ModelSettings,
    TerminationReason,
    TokenCaptureError,
    check_contiguity,
    run_dialogue,
)
from convo_sim.agents import LLMAssistant
from convo_sim.openai_model import OpenAIChatModel
from convo_sim.server import ChatTokenizer, EchoModel, TokenOptions, serve_models
from convo_sim.users import ScriptedUser

FIELDS = ("prompt_token_ids", "generation_token_ids", "generation_log_probs")
Transport = Literal["lean", "sdk"]


class Recording(EchoModel):
    """The echo model, keeping every request body it answers."""

    def __init__(self) -> None:
        super().__init__(prefix="Noted: ")
        self.bodies: list[dict[str, Any]] = []

    async def reply(self, messages: Sequence[Message], body: Mapping[str, Any]) -> Message:
        self.bodies.append(json.loads(json.dumps(body)))
        return await super().reply(messages, body)


USER_LINES = ["Add lunch at noon.", "And a call at 3pm.", "Thanks! ###STOP###"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("transport", ["lean", "sdk"])
async def test_every_reply_keeps_its_tokens_and_the_next_request_sends_them_back(
    transport: Transport,
) -> None:
    recording = Recording()
    with anyio.fail_after(25):
        async with (
            serve_models({"policy": recording}) as server,
            OpenAIChatModel(
                "policy", base_url=server.base_url, transport=transport, capture_tokens=True
            ) as model,
        ):
            result = await run_dialogue(
                LLMAssistant(model, system_prompt="You keep a calendar."),
                ScriptedUser(USER_LINES),
                max_turns=5,
            )
    assert result.error is None and result.termination == TerminationReason.USER_STOP
    replies = result.transcript.by_role("assistant")
    assert len(replies) == 2
    for reply in replies:
        meta = reply.metadata
        assert all(isinstance(meta[name], list) and meta[name] for name in FIELDS)
        assert len(meta["generation_log_probs"]) == len(meta["generation_token_ids"])
        assert meta["usage"]["completion_tokens"] == len(meta["generation_token_ids"])
    # vLLM's request fields, as NeMo-Gym's vllm_model sends them.
    for body in recording.bodies:
        assert body["logprobs"] is True and body["top_logprobs"] == 0
        assert body["return_tokens_as_token_ids"] is True and body["return_token_ids"] is True
    # Turn 2 carries turn 1's fields back, unchanged, on that assistant message.
    sent = recording.bodies[1]["messages"]
    carried = [m for m in sent if m["role"] == "assistant"]
    assert len(carried) == 1
    assert {name: carried[0][name] for name in FIELDS} == {
        name: replies[0].metadata[name] for name in FIELDS
    }
    # The server built turn 2's prompt from them: one contiguous sequence.
    first = replies[0].metadata
    second = replies[1].metadata["prompt_token_ids"]
    before = first["prompt_token_ids"] + first["generation_token_ids"]
    assert second[: len(before)] == before


@pytest.mark.timeout(30)
async def test_only_the_last_tokened_reply_is_sent_back() -> None:
    recording = Recording()
    with anyio.fail_after(25):
        async with (
            serve_models({"policy": recording}) as server,
            OpenAIChatModel("policy", base_url=server.base_url, capture_tokens=True) as model,
        ):
            result = await run_dialogue(
                LLMAssistant(model), ScriptedUser([*USER_LINES[:2], *USER_LINES]), max_turns=4
            )
    assert result.error is None
    last = recording.bodies[-1]["messages"]
    tokened = [i for i, m in enumerate(last) if "prompt_token_ids" in m]
    assistants = [i for i, m in enumerate(last) if m["role"] == "assistant"]
    assert len(assistants) == 3 and tokened == assistants[-1:]


@pytest.mark.timeout(30)
async def test_capture_per_call_through_model_settings_and_off_by_default() -> None:
    recording = Recording()
    with anyio.fail_after(25):
        async with (
            serve_models({"policy": recording}) as server,
            OpenAIChatModel("policy", base_url=server.base_url) as model,
        ):
            hi = [Message(role="user", content="hi")]
            plain = await model.complete(hi)
            captured = await model.complete(hi, ModelSettings(capture_tokens=True))
    assert not any(name in plain.message.metadata for name in FIELDS)
    assert "logprobs" not in recording.bodies[0]
    assert all(name in captured.message.metadata for name in FIELDS)


def test_capture_needs_chat_completions() -> None:
    with pytest.raises(ValueError, match="chat"):
        OpenAIChatModel("m", base_url="http://127.0.0.1:9/v1", api="responses", capture_tokens=True)


@pytest.mark.timeout(20)
async def test_capture_asked_of_the_responses_api_per_call_is_a_token_capture_error() -> None:
    model = OpenAIChatModel("m", base_url="http://127.0.0.1:9/v1", api="responses")
    with pytest.raises(TokenCaptureError) as info:
        await model.complete(
            [Message(role="user", content="hi")], ModelSettings(capture_tokens=True)
        )
    assert info.value.missing == "api"


# -- servers that do not (quite) return tokens -------------------------------------------------


@asynccontextmanager
async def replying(body: dict[str, Any]) -> AsyncIterator[tuple[str, list[int]]]:
    """A server answering every chat completion with `body`; yields (base_url, hit count)."""
    hits = [0]

    async def handle(request: web.Request) -> web.Response:
        hits[0] += 1
        await request.read()
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1", hits
    finally:
        await runner.cleanup()


def _completion(**extra: Any) -> dict[str, Any]:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": "ok"},
        "finish_reason": "stop",
    }
    choice.update(extra.pop("choice", {}))
    return {"id": "c1", "object": "chat.completion", "choices": [choice], **extra}


LOGPROBS = {
    "content": [
        {"token": "token_id:7", "logprob": -0.5},
        {"token": "token_id:257", "logprob": -0.1},
    ]
}

MISSING = {
    "no token fields (OpenAI itself)": (_completion(), "prompt_token_ids"),
    "logprobs without prompt ids (vLLM < 0.10.2)": (
        _completion(choice={"logprobs": LOGPROBS}),
        "prompt_token_ids",
    ),
    "prompt ids without logprobs": (
        _completion(prompt_token_ids=[1, 2], choice={"token_ids": [7, 257]}),
        "generation_log_probs",
    ),
    "lengths disagree": (
        _completion(prompt_token_ids=[1, 2], choice={"token_ids": [7], "logprobs": LOGPROBS}),
        "generation_log_probs",
    ),
    "text tokens and no ids": (
        _completion(
            prompt_token_ids=[1, 2],
            choice={"logprobs": {"content": [{"token": "ok", "logprob": -0.5}]}},
        ),
        "generation_token_ids",
    ),
    "ids that are not integers": (
        _completion(
            prompt_token_ids=[1, "2"], choice={"token_ids": [7, 257], "logprobs": LOGPROBS}
        ),
        "prompt_token_ids",
    ),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("transport", ["lean", "sdk"])
@pytest.mark.parametrize("case", sorted(MISSING))
async def test_a_reply_without_tokens_fails_the_call_at_once(
    case: str, transport: Transport
) -> None:
    body, missing = MISSING[case]
    with anyio.fail_after(25):
        async with replying(body) as (url, hits):
            model = OpenAIChatModel("m", base_url=url, transport=transport, capture_tokens=True)
            async with model:
                with pytest.raises(TokenCaptureError) as info:
                    await model.complete([Message(role="user", content="hi")])
                plain = await model.complete(
                    [Message(role="user", content="hi")], ModelSettings(capture_tokens=False)
                )
    assert info.value.missing == missing
    assert info.value.attempts == 1 and hits[0] == 2  # not retried: the server would say the same
    assert plain.message.text == "ok"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("transport", ["lean", "sdk"])
async def test_ids_from_token_id_strings_and_a_bundle_on_the_message_are_read(
    transport: Transport,
) -> None:
    vllm_old_ids = _completion(prompt_token_ids=[1, 2], choice={"logprobs": LOGPROBS})
    bundle = _completion(
        choice={
            "message": {
                "role": "assistant",
                "content": "ok",
                "prompt_token_ids": [3, 4],
                "generation_token_ids": [9],
                "generation_log_probs": [-0.25],
            }
        }
    )
    got = []
    with anyio.fail_after(25):
        for body in (vllm_old_ids, bundle):
            async with replying(body) as (url, _):
                model = OpenAIChatModel("m", base_url=url, transport=transport, capture_tokens=True)
                async with model:
                    got.append((await model.complete([Message(role="user", content="hi")])).message)
    assert [got[0].metadata[name] for name in FIELDS] == [[1, 2], [7, 257], [-0.5, -0.1]]
    assert [got[1].metadata[name] for name in FIELDS] == [[3, 4], [9], [-0.25]]


@pytest.mark.timeout(30)
async def test_a_dialogue_whose_server_returns_no_tokens_ends_as_assistant_error() -> None:
    with anyio.fail_after(25):
        async with (
            replying(_completion()) as (url, hits),
            OpenAIChatModel("m", base_url=url, capture_tokens=True) as model,
        ):
            result = await run_dialogue(LLMAssistant(model), ScriptedUser(USER_LINES), max_turns=3)
    assert result.termination == TerminationReason.ASSISTANT_ERROR
    assert result.error is not None and result.error.type == "TokenCaptureError"
    assert not result.transcript.by_role("assistant") and hits[0] == 1


# -- contiguity ---------------------------------------------------------------------------------

TOKENS = st.lists(st.integers(0, 50), min_size=1, max_size=12)


def _items(turns: list[tuple[list[int], list[int]]]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [{"role": "system", "content": "s"}]
    for prompt, generation in turns:
        items.append({"role": "user", "content": "u"})
        items.append(
            {
                "role": "assistant",
                "content": "a",
                "prompt_token_ids": prompt,
                "generation_token_ids": generation,
                "generation_log_probs": [-1.0] * len(generation),
            }
        )
    return items


def _contiguous(first: list[int], steps: list[tuple[list[int], list[int]]]) -> list[Any]:
    turns = []
    prompt = first
    for added, generation in steps:
        turns.append((prompt, generation))
        prompt = prompt + generation + added
    return turns


@given(TOKENS, st.lists(st.tuples(TOKENS, TOKENS), min_size=1, max_size=6))
def test_turns_that_extend_each_other_are_contiguous(
    first: list[int], steps: list[tuple[list[int], list[int]]]
) -> None:
    turns = _contiguous(first, steps)
    result = check_contiguity(_items(turns))
    assert result is not None and result.contiguous and result.reason == ""
    assert result.policy_turns == len(turns)
    assert result.generated_tokens == sum(len(g) for _, g in turns)


@given(
    TOKENS,
    st.lists(st.tuples(TOKENS, TOKENS), min_size=2, max_size=6),
    st.data(),
)
def test_a_changed_token_is_found_at_its_turn_and_position(
    first: list[int], steps: list[tuple[list[int], list[int]]], data: st.DataObject
) -> None:
    turns = _contiguous(first, steps)
    broken = data.draw(st.integers(2, len(turns)), label="turn")
    prompt, generation = turns[broken - 1]
    before = len(turns[broken - 2][0]) + len(turns[broken - 2][1])
    position = data.draw(st.integers(0, before - 1), label="position")
    changed = [*prompt]
    changed[position] += 1000
    turns[broken - 1] = (changed, generation)
    result = check_contiguity(_items(turns))
    assert result is not None and not result.contiguous
    assert (result.broken_turn, result.position) == (broken, position)
    assert "re-tokenized" in result.reason


def test_a_truncated_history_breaks_contiguity_and_says_so() -> None:
    result = check_contiguity(_items([([1, 2, 3], [4, 5]), ([1, 2], [6])]))
    assert result is not None and not result.contiguous
    assert result.broken_turn == 2 and "fewer than" in result.reason


def test_no_token_data_is_none_and_garbled_fields_are_named() -> None:
    assert check_contiguity([{"role": "assistant", "content": "hi"}]) is None
    items = _items([([1, 2], [3])])
    items[-1]["generation_log_probs"] = [-1.0, -2.0]
    with pytest.raises(ValueError, match=r"input\[2\]\.generation_log_probs"):
        check_contiguity(items)
    items[-1]["prompt_token_ids"] = "1 2"
    with pytest.raises(ValueError, match=r"prompt_token_ids"):
        check_contiguity(items)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("options", "contiguous"),
    [
        (TokenOptions(), True),
        (TokenOptions(drift=True), True),
        (TokenOptions(honour_token_ids=False), True),
        (TokenOptions(drift=True, honour_token_ids=False), False),
    ],
)
async def test_drift_breaks_a_rollout_only_when_the_server_ignores_the_ids(
    options: TokenOptions, contiguous: bool
) -> None:
    from convo_sim import Rollout
    from convo_sim.scenarios import Scenario

    scenario = Scenario.model_validate({"id": "s", "user_script": USER_LINES})
    with anyio.fail_after(25):
        async with (
            serve_models({"policy": EchoModel(prefix="Noted the ")}, tokens=options) as server,
            OpenAIChatModel("policy", base_url=server.base_url, capture_tokens=True) as model,
        ):
            result = await run_dialogue(
                LLMAssistant(model, system_prompt="You keep a calendar."),
                ScriptedUser(USER_LINES),
                max_turns=5,
            )
    record = Rollout.from_result(scenario, 0, 0, result)
    assert record.contiguity is not None and record.contiguity.policy_turns == 2
    assert record.contiguity.contiguous is contiguous
    if not contiguous:
        assert record.contiguity.broken_turn == 2
        assert "turn 1's generation" in record.contiguity.reason
    # The record's assistant items carry the fields, and read back into metadata.
    items = record.responses_create_params["input"]
    assistants = [item for item in items if item.get("role") == "assistant"]
    assert all(all(name in item for name in FIELDS) for item in assistants)
    again = record.transcript.by_role("assistant")
    assert [m.metadata["generation_token_ids"] for m in again] == [
        item["generation_token_ids"] for item in assistants
    ]
    assert ChatTokenizer.END in assistants[0]["generation_token_ids"]


# -- fuzz: what the adapter and the server read from the other side ----------------------------

KEYS = st.sampled_from(
    [
        "choices",
        "message",
        "prompt_token_ids",
        "token_ids",
        "logprobs",
        "content",
        "logprob",
        "token",
        "generation_token_ids",
        "generation_log_probs",
        "role",
    ]
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 2**65)
    | st.floats(allow_nan=True)
    | st.sampled_from(["token_id:7", "token_id:x", "assistant", "hi"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=40,
)


def _read_or_refuse(data: Any) -> None:
    from convo_sim._capture import MissingTokens, read_tokens
    from convo_sim._fast_chat import MalformedReply, parse_chat_completion

    try:
        fields = read_tokens(data)
    except MissingTokens:
        pass
    else:
        assert len(fields["generation_log_probs"]) == len(fields["generation_token_ids"]) > 0
    with suppress(MissingTokens, MalformedReply):
        parse_chat_completion(data, "m", capture=True)


@given(JSON)
def test_any_reply_is_read_or_refused_as_missing_tokens(data: Any) -> None:
    _read_or_refuse(data)


@given(st.lists(JSON, max_size=5))
def test_any_items_are_checked_or_refused_with_value_error(items: list[Any]) -> None:
    from convo_sim._tokens import carried_ids

    with suppress(ValueError):
        check_contiguity(items)
    try:
        index, ids = carried_ids(items, 394)
    except ValueError:
        pass
    else:
        assert all(0 <= t < 394 for t in ids) and index < len(items)


@st.composite
def near_replies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid capturing reply with some of its parts swapped for any JSON."""

    def part(valid: Any) -> Any:
        return draw(st.one_of(st.just(valid), JSON))

    entries = [{"token": "token_id:7", "logprob": -0.5}, {"token": "token_id:257", "logprob": -1}]
    logprobs = part({"content": part([part(e) for e in entries])})
    message = part({"role": "assistant", "content": "ok"})
    choice = part({"message": message, "token_ids": part([7, 257]), "logprobs": logprobs})
    return {"choices": part([choice]), "prompt_token_ids": part([1, 2, 3])}


@given(near_replies())
def test_near_valid_replies_are_read_or_refused_as_missing_tokens(data: dict[str, Any]) -> None:
    _read_or_refuse(data)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("transport", ["lean", "sdk"])
async def test_a_garbled_capturing_reply_is_retried_like_any_other(transport: Transport) -> None:
    from convo_sim import RetryPolicy
    from convo_sim.server import Fault, FaultPlan

    plan = FaultPlan()
    plan.add(Fault.malformed(), times=1)
    plan.add(Fault.server_error(503), times=1)
    with anyio.fail_after(25):
        async with (
            serve_models({"policy": EchoModel()}, faults=plan) as server,
            OpenAIChatModel(
                "policy",
                base_url=server.base_url,
                transport=transport,
                capture_tokens=True,
                retry=RetryPolicy(attempts=3, initial=0.01, max_wait=0.01, jitter=0),
            ) as model,
        ):
            reply = await model.complete([Message(role="user", content="hi")])
    assert server.requests == 3
    assert all(name in reply.message.metadata for name in FIELDS)
