from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convo_sim import Message, ToolCall, Transcript

ANYIO_BACKENDS = ("asyncio", "trio")  # the core runs on both; see tests/conftest.py

DATA = (
    Path(__file__).resolve().parents[1]
    / "convo_sim"
    / "domains"
    / "calendar"
    / "data"
    / "nemo_calendar_example.jsonl"
)

roles = st.sampled_from(["system", "developer", "user", "assistant", "tool"])
texts = st.text(max_size=40)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    role = draw(roles)
    calls: tuple[ToolCall, ...] = ()
    if role == "assistant":
        calls = tuple(
            ToolCall(
                id=f"c{i}",
                name=draw(st.from_regex(r"[a-z_]{1,8}", fullmatch=True)),
                arguments=draw(texts),
            )
            for i in range(draw(st.integers(0, 2)))
        )
    content = draw(st.one_of(texts, st.none())) if calls else draw(texts)
    return Message(
        role=role,
        content=content,
        tool_calls=calls,
        tool_call_id=draw(st.from_regex(r"c[0-9]", fullmatch=True)) if role == "tool" else None,
        metadata=draw(st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)),
    )


@given(st.lists(messages(), max_size=6))
def test_json_round_trip_is_lossless(items: list[Message]) -> None:
    transcript = Transcript(messages=tuple(items))
    assert Transcript.model_validate_json(transcript.model_dump_json()) == transcript


@given(st.lists(messages(), max_size=6))
def test_openai_chat_round_trip(items: list[Message]) -> None:
    # metadata is local bookkeeping and never goes over the wire
    plain = tuple(m.model_copy(update={"metadata": {}}) for m in items)
    transcript = Transcript(messages=plain)
    wire = json.loads(json.dumps(transcript.to_openai()))
    assert Transcript.from_openai(wire) == transcript


@given(st.lists(messages(), max_size=6))
def test_responses_input_round_trip(items: list[Message]) -> None:
    plain = []
    for m in items:
        # Responses items carry no speaker name; tool replies need a call id.
        plain.append(m.model_copy(update={"metadata": {}, "name": None}))
    transcript = Transcript(messages=tuple(plain))
    items_out = transcript.to_responses_input()
    back = Transcript.from_responses_input(json.loads(json.dumps(items_out)))
    # An assistant message followed by another assistant message with only
    # tool calls merges into one; compare the wire form, which is canonical.
    assert back.to_responses_input() == items_out


def test_nemo_rows_convert_and_round_trip() -> None:
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    assert len(rows) == 5
    for row in rows:
        items = row["responses_create_params"]["input"]
        transcript = Transcript.from_responses_input(items)
        assert len(transcript) == len(items)
        assert transcript[0].role == "system"
        assert transcript.last is not None and transcript.last.role == "user"
        assert transcript.to_responses_input() == [
            {"role": i["role"], "content": i["content"]} for i in items
        ]


def test_content_parts_are_flattened() -> None:
    t = Transcript.from_responses_input(
        [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "a"},
                    {"type": "input_text", "text": "b"},
                ],
            }
        ]
    )
    assert t[0].content == "ab"


def test_unknown_role_is_rejected_with_the_value() -> None:
    with pytest.raises(ValueError, match="'robot'"):
        Message.from_openai({"role": "robot", "content": "hi"})


def test_messages_are_frozen() -> None:
    m = Message(role="user", content="hi")
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type is internal
        m.content = "changed"  # type: ignore[misc]
