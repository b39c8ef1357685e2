"""Tool steps in the dialogue state machine: run_dialogue and DialogueEnv alike."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from convo_sim import (
    Message,
    TerminationReason,
    Tool,
    ToolCall,
    ToolEnv,
    ToolError,
    Transcript,
    run_dialogue,
)
from convo_sim._env import DialogueEnv
from convo_sim._records import Rollout
from convo_sim._tools import TOOL_ERROR_KEY, replay
from convo_sim.agents import FunctionAssistant
from convo_sim.scenarios import Scenario
from convo_sim.users import ScriptedUser


class Counter(BaseModel):
    value: int = 0


class AddArgs(BaseModel):
    amount: int


def _add(state: Counter, args: AddArgs) -> dict[str, int]:
    if args.amount < 0:
        raise ToolError("amount must not be negative")
    state.value += args.amount
    return {"value": state.value}


ADD = Tool("add", "Add to the counter.", AddArgs, _add)


def counter_env(_: object = None) -> ToolEnv[Counter]:
    return ToolEnv([ADD], Counter())


def call(args: str, name: str = "add", cid: str = "c1") -> Message:
    return Message(
        role="assistant", content=None, tool_calls=(ToolCall(id=cid, name=name, arguments=args),)
    )


def stepper(first: list[Message]) -> FunctionAssistant:
    """Sends `first` one by one while the last message is a tool result, then answers."""
    pending = list(first)

    def respond(view: Any) -> Message:
        last = view.transcript.last
        if pending and (last.role == "user" or last.role == "tool"):
            return pending.pop(0)
        tools = [m for m in view.transcript.messages if m.role == "tool"]
        return Message(role="assistant", content=f"done: {tools[-1].content if tools else ''}")

    return FunctionAssistant(respond)


async def test_tool_calls_run_and_the_assistant_answers_after_them() -> None:
    env = counter_env()
    with anyio.fail_after(5):
        result = await run_dialogue(
            stepper([call('{"amount": 2}'), call('{"amount": 3}', cid="c2")]),
            ScriptedUser(["add five", "thanks ###STOP###"]),
            tools=env,
        )
    assert env.state.value == 5
    roles = [m.role for m in result.transcript]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant", "user"]
    assert result.turns == 1
    assert result.transcript[-2].text == 'done: {"value": 5}'
    # The assistant saw the tools as chat-completions schemas.
    assert result.termination is TerminationReason.USER_STOP


async def test_the_assistant_view_carries_the_tool_schemas() -> None:
    seen: list[tuple[Any, ...]] = []

    def respond(view: Any) -> Message:
        seen.append(view.tools)
        return Message(role="assistant", content="hi")

    await run_dialogue(FunctionAssistant(respond), ScriptedUser(["a"]), tools=counter_env())
    assert seen[0][0]["function"]["name"] == "add"
    assert seen[0][0]["function"]["parameters"]["properties"]["amount"]["type"] == "integer"
    seen.clear()
    await run_dialogue(FunctionAssistant(respond), ScriptedUser(["a"]), max_turns=1)
    assert seen == [()]


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (call('{"amount": 1}', name="nope"), "unknown_tool"),
        (call("{amount: 1"), "bad_json"),
        (call('{"amount": "many"}'), "bad_arguments"),
        (call('{"amount": -1}'), "refused"),
    ],
)
async def test_a_malformed_call_goes_back_as_a_tool_error(message: Message, kind: str) -> None:
    env = counter_env()
    result = await run_dialogue(
        stepper([message]), ScriptedUser(["go", "###STOP###"]), tools=env, max_turns=3
    )
    tool = result.transcript[2]
    assert tool.role == "tool" and tool.metadata[TOOL_ERROR_KEY] == kind
    assert "error" in json.loads(tool.text)
    assert env.errors == 1 and env.state.value == 0
    assert result.error is None and result.transcript[3].role == "assistant"


async def test_max_turn_steps_ends_a_tool_loop() -> None:
    def loop(view: Any) -> Message:
        return call('{"amount": 1}', cid=f"c{len(view.transcript)}")

    result = await run_dialogue(
        FunctionAssistant(loop), ScriptedUser(["go"]), tools=counter_env(), max_turn_steps=4
    )
    assert result.termination is TerminationReason.MAX_STEPS
    assert result.terminated_by == "max_turn_steps(4)"
    assert len(result.transcript.by_role("assistant")) == 4
    assert result.turns == 0


async def test_max_steps_counts_every_model_call() -> None:
    result = await run_dialogue(
        stepper([call('{"amount": 1}'), call('{"amount": 1}', cid="c2")]),
        ScriptedUser(["go", "more", "more"]),
        tools=counter_env(),
        max_steps=2,
    )
    assert result.termination is TerminationReason.MAX_STEPS
    assert result.terminated_by == "max_steps(2)"
    assert result.reward is None


async def test_without_a_tool_environment_tool_calls_end_the_turn_as_before() -> None:
    result = await run_dialogue(stepper([call('{"amount": 1}')]), ScriptedUser(["go"]), max_turns=1)
    assert [m.role for m in result.transcript] == ["user", "assistant"]
    assert result.termination is TerminationReason.MAX_TURNS


async def test_records_keep_tool_calls_and_results_in_both_formats() -> None:
    result = await run_dialogue(
        stepper([call('{"amount": 2}')]), ScriptedUser(["go", "###STOP###"]), tools=counter_env()
    )
    scenario = Scenario(id="s")
    record = Rollout.from_result(scenario, 0, 0, result)
    items = record.responses_create_params["input"]
    kinds = [item.get("type", "message") for item in items]
    assert kinds == ["message", "function_call", "function_call_output", "message", "message"]
    back = Rollout.model_validate_json(record.model_dump_json()).transcript
    assert back[1].tool_calls[0].arguments == '{"amount": 2}'
    assert back[2].tool_call_id == "c1" and json.loads(back[2].text) == {"value": 2}
    chat = back.to_openai()
    assert chat[1]["tool_calls"][0]["function"]["name"] == "add"
    assert chat[2]["role"] == "tool" and chat[2]["tool_call_id"] == "c1"
    # The final state comes back from the transcript alone.
    assert replay(counter_env(), back).state.value == 2


async def test_the_env_returns_tool_results_and_the_policy_acts_again() -> None:
    env: DialogueEnv[Any] = DialogueEnv(
        user=ScriptedUser(["add two", "###STOP###"]), tools=counter_env
    )
    obs = await env.reset(Scenario(id="s"))
    assert obs.tools and obs.tools[0]["function"]["name"] == "add"
    step = await env.step(call('{"amount": 2}'))
    assert not step.terminated and not step.truncated
    assert [m.role for m in step.info["new_messages"]] == ["tool"]
    assert step.observation.transcript.last is not None
    assert step.observation.transcript.last.role == "tool"
    assert step.info["turn"] == 0
    step = await env.step("added")
    assert step.terminated and step.info["termination"] == "user_stop"
    result = await env.result()
    assert [m.role for m in result.transcript] == ["user", "assistant", "tool", "assistant", "user"]


async def test_the_env_and_run_dialogue_agree_on_step_limits() -> None:
    env: DialogueEnv[Any] = DialogueEnv(
        user=ScriptedUser(["go"]), tools=counter_env, max_turn_steps=2
    )
    await env.reset(Scenario(id="s"))
    await env.step(call('{"amount": 1}'))
    step = await env.step(call('{"amount": 1}', cid="c2"))
    assert step.truncated and step.info["terminated_by"] == "max_turn_steps(2)"


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=10), arguments=st.text(max_size=40))
def test_no_call_crashes_the_environment(name: str, arguments: str) -> None:
    env = counter_env()
    message = env.run(ToolCall(id="x", name=name, arguments=arguments))
    assert message.role == "tool" and message.tool_call_id == "x"
    json.loads(message.text)


def test_replay_skips_calls_that_were_never_answered() -> None:
    transcript = Transcript(messages=(call('{"amount": 4}'),))
    assert replay(counter_env(), transcript).state.value == 0


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["type", "function", "name", "x"]), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(tools=_JSON)
# Found by CI: a function's own "type" key overrode the Responses entry's.
@example(tools=[{"function": {"name": "", "type": None}}])
def test_a_request_s_tools_are_read_or_refused_never_crash(tools: object) -> None:
    from convo_sim._served_models import request_tools
    from convo_sim._tools import chat_tools, responses_tools

    try:
        checked = request_tools({"tools": tools})
    except ValueError:
        return
    for shape in (chat_tools(checked), responses_tools(checked)):
        assert all(isinstance(entry["type"], str) for entry in shape)
    assert [t["function"]["name"] for t in chat_tools(checked)] == [
        t["name"] for t in responses_tools(checked)
    ]
