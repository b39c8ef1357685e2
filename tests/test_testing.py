"""The fakes of convo_sim.testing drive the real LLM actors and orchestrator."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from convo_sim import Message, ModelSettings, TerminationReason, run_dialogue
from convo_sim.agents import LLMAssistant
from convo_sim.testing import FunctionModel, ScriptedModel
from convo_sim.users import LLMUser

ANYIO_BACKENDS = ("asyncio", "trio")  # the core runs on both; see tests/conftest.py

pytestmark = pytest.mark.timeout(10)


async def test_function_model_drives_llm_actors() -> None:
    async def assistant_fn(messages: Sequence[Message], settings: ModelSettings) -> str:
        return f"noted: {messages[-1].text}"

    assistant_model = FunctionModel(assistant_fn)
    user_model = ScriptedModel("book a call", "thanks ###STOP###")
    result = await run_dialogue(
        LLMAssistant(assistant_model, system_prompt="be brief"),
        LLMUser(user_model, goal="a call"),
    )
    assert result.termination is TerminationReason.USER_STOP
    assert [m.content for m in result.transcript] == [
        "book a call",
        "noted: book a call",
        "thanks ###STOP###",
    ]
    # The assistant saw its system prompt; the user model saw roles flipped.
    assert assistant_model.calls[0].messages[0] == Message(role="system", content="be brief")
    assert user_model.calls[1].messages[-1].role == "user"
    assert result.usage.total_tokens > 0


async def test_scripted_model_running_out_ends_the_dialogue_as_an_error() -> None:
    result = await run_dialogue(
        LLMAssistant(ScriptedModel("one"), system_prompt="s"),
        LLMUser(ScriptedModel("a", "b"), goal="g"),
    )
    assert result.termination is TerminationReason.ASSISTANT_ERROR
    assert result.error is not None and result.error.type == "IndexError"


async def test_bad_reply_type_is_a_type_error() -> None:
    model = FunctionModel(lambda messages, settings: 3)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="not a str"):
        await model.complete([Message(role="user", content="x")], ModelSettings())
