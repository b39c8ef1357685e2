"""The support domain over HTTP: `convo-sim serve`'s support-agent and support-customer.

The real `openai` client (and the lean transport) against the bundled
server on 127.0.0.1: the same dialogues and rewards as offline, with real
`tool_calls` on the wire, over chat completions and the Responses API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import anyio
import openai
import pytest

from convo_sim import Message, ModelSettings
from convo_sim._rollouts import generate_rollouts_sync, open_rollouts
from convo_sim._server import ServerThread
from convo_sim._sink import read_rollouts
from convo_sim.agents import LLMAssistant
from convo_sim.cli import main
from convo_sim.domains import get
from convo_sim.openai_model import OpenAIChatModel

SUPPORT = get("support")


def texts(record: Any) -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
    return [
        (m.role, m.text, tuple((c.name, c.arguments) for c in m.tool_calls))
        for m in record.transcript
    ]


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_serve_runs_the_same_support_dialogues_over_http(
    tmp_path: Path, api: Literal["chat", "responses"]
) -> None:
    offline = {
        r.scenario_id: r for r in generate_rollouts_sync(SUPPORT.scenarios(), SUPPORT.plan())
    }
    out = tmp_path / "served.jsonl"
    with ServerThread() as server:
        argv = [
            "run",
            "--domain",
            "support",
            "--no-progress",
            "--out",
            str(out),
            "--assistant",
            "openai:support-agent",
            "--user",
            "openai:support-customer",
            "--base-url",
            server.base_url,
            "--model-api",
            api,
        ]
        assert main(argv) == 0
    served = read_rollouts(out)
    assert len(served) == len(offline)
    for record in served:
        assert record.reward == 1.0, (record.scenario_id, record.verdicts, record.error)
        assert texts(record) == texts(offline[record.scenario_id])
        assert record.usage.total_tokens > 0  # the messages did travel through the server


async def test_the_openai_client_gets_real_tool_calls() -> None:
    scenario = SUPPORT.scenarios()[0]
    assert SUPPORT.tools is not None
    tools = [dict(t) for t in SUPPORT.tools(scenario).schemas()]
    messages = [
        m.to_openai()
        for m in (
            *scenario.opening_transcript().messages,
            Message(role="user", content="I want to cancel an order. My email is a.b@example.com."),
        )
    ]
    with ServerThread() as server:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x") as client:
            with anyio.fail_after(10):
                reply = await client.chat.completions.create(
                    model="support-agent",
                    messages=messages,
                    tools=tools,  # type: ignore[arg-type]
                )
                [call] = reply.choices[0].message.tool_calls or []
                assert reply.choices[0].finish_reason == "tool_calls"
                assert call.function.name == "find_customer"  # type: ignore[union-attr]
                assert call.function.arguments == '{"email": "a.b@example.com"}'  # type: ignore[union-attr]
                response = await client.responses.create(
                    model="support-agent",
                    input=[{"role": m["role"], "content": m["content"]} for m in messages],
                    tools=[  # type: ignore[list-item]
                        {"type": "function", **t["function"]} for t in tools
                    ],
                )
                [item] = [o for o in response.output if o.type == "function_call"]
                assert item.name == "find_customer"
                # Offered no tools, the agent calls none.
                plain = await client.chat.completions.create(
                    model="support-agent",
                    messages=messages,  # type: ignore[arg-type]
                )
                assert not plain.choices[0].message.tool_calls
                with pytest.raises(openai.BadRequestError):
                    await client.chat.completions.create(
                        model="support-agent",
                        messages=messages,  # type: ignore[arg-type]
                        tools=[{"type": "function"}],  # type: ignore[list-item]
                    )


@pytest.mark.parametrize(
    ("api", "transport"), [("chat", "lean"), ("chat", "sdk"), ("responses", "sdk")]
)
async def test_llm_assistant_sends_the_tools_and_handles_the_calls(
    api: Literal["chat", "responses"], transport: Literal["lean", "sdk"]
) -> None:
    scenarios = SUPPORT.scenarios()[:4]
    offline = {}
    async with open_rollouts(scenarios, SUPPORT.plan()) as stream:
        async for record in stream:
            offline[record.scenario_id] = record
    with ServerThread() as server:
        async with OpenAIChatModel(
            "support-agent", base_url=server.base_url, api=api, transport=transport
        ) as model:

            def assistant(scenario: Any, seed: int) -> LLMAssistant:
                return LLMAssistant(model, settings=ModelSettings(temperature=0.0))

            records = []
            with anyio.fail_after(30):
                async with open_rollouts(scenarios, SUPPORT.plan(assistant=assistant)) as stream:
                    async for record in stream:
                        records.append(record)
    assert len(records) == 4
    for record in records:
        assert record.reward == 1.0, (record.scenario_id, record.verdicts, record.error)
        assert texts(record) == texts(offline[record.scenario_id])
        assert record.usage.total_tokens > 0


def test_token_capture_through_tool_steps_exports_training_rows(tmp_path: Path) -> None:
    out, rows = tmp_path / "cap.jsonl", tmp_path / "trl.jsonl"
    with ServerThread() as server:
        argv = ["run", "--domain", "support", "--no-progress", "--out", str(out)]
        argv += ["--assistant", "openai:support-agent", "--user", "openai:support-customer"]
        argv += ["--base-url", server.base_url, "--capture-tokens"]
        assert main(argv) == 0
    records = read_rollouts(out)
    assert all(r.reward == 1.0 for r in records)
    assert all(r.contiguity is not None and r.contiguity.contiguous for r in records)
    # Every model call is a policy turn, tool steps included.
    for r in records:
        calls = sum(1 for m in r.transcript if m.role == "assistant")
        assert r.contiguity is not None and r.contiguity.policy_turns == calls
    assert main(["export", "--format", "trl", "--out", str(rows), str(out)]) == 0
    lines = rows.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(records)
