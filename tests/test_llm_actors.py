"""LLM actors: prompts, role flipping, stop tokens, empty replies, and the whole LLM path over HTTP."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest

from convo_sim import (
    Actor,
    Completion,
    DialogueResult,
    InputError,
    Message,
    ModelSettings,
    TerminationReason,
    Usage,
    run_dialogue,
)
from convo_sim._openai_model import OpenAIChatModel
from convo_sim._served_models import EchoModel
from convo_sim._server import ServerThread, serve_models
from convo_sim.agents import LLMAssistant, ScriptedAssistant
from convo_sim.cli import main
from convo_sim.cli.actors_spec import parse_actor_spec, wire_actors
from convo_sim.domains.calendar import DOMAIN
from convo_sim.scenarios import Scenario, bundled_scenarios, run_scenario
from convo_sim.users import LLMUser, ScriptedUser

ANYIO_BACKENDS = ("asyncio", "trio")  # the core runs on both; see tests/conftest.py


class FakeModel:
    """A ChatModel that replies from a list and records what it was sent."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[Message, ...]] = []

    async def complete(self, messages: Sequence[Message], settings: ModelSettings) -> Completion:
        self.sent.append(tuple(messages))
        text = self.replies[min(len(self.sent), len(self.replies)) - 1]
        usage = Usage(
            prompt_tokens=len(messages), completion_tokens=1, total_tokens=len(messages) + 1
        )
        message = Message(role="assistant", content=text, metadata={"usage": usage.model_dump()})
        return Completion(message=message, usage=usage, finish_reason="stop")


# -- the assistant ---------------------------------------------------------------------------


@pytest.mark.timeout(10)
async def test_assistant_keeps_the_transcripts_system_prompt() -> None:
    model = FakeModel("sure")
    prefix = [Message(role="system", content="from the scenario")]
    with anyio.fail_after(5):
        await run_dialogue(
            LLMAssistant(model, system_prompt="ignored"),
            ScriptedUser(["hi"]),
            prefix=prefix,
            max_turns=1,
        )
    assert [(m.role, m.content) for m in model.sent[0]] == [
        ("system", "from the scenario"),
        ("user", "hi"),
    ]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("own", "scenario_prompt", "expected"),
    [("mine", "theirs", "mine"), (None, "theirs", "theirs"), (None, None, None)],
)
async def test_assistant_prepends_its_prompt_else_the_scenarios(
    own: str | None, scenario_prompt: str | None, expected: str | None
) -> None:
    model = FakeModel("sure")
    scenario = Scenario(id="s", system_prompt=scenario_prompt)
    with anyio.fail_after(5):
        await run_dialogue(
            LLMAssistant(model, system_prompt=own),
            ScriptedUser(["hi"]),
            scenario=scenario,
            max_turns=1,
        )
    roles = [(m.role, m.content) for m in model.sent[0]]
    assert roles == ([("system", expected)] if expected else []) + [("user", "hi")]


# -- the user ------------------------------------------------------------------------------


@pytest.mark.timeout(10)
async def test_user_sees_its_prompt_and_the_flipped_dialogue_and_its_stop_text_is_kept() -> None:
    model = FakeModel("Book a call at 2pm.", "Perfect, thanks! ###STOP###")
    user = LLMUser(model, goal="a 30-minute call at 2pm", persona="terse and busy")
    with anyio.fail_after(5):
        result = await run_dialogue(
            ScriptedAssistant(["Booked: call at 14:00."]),
            user,
            prefix=[Message(role="system", content="assistant-only prompt")],
        )
    assert result.termination is TerminationReason.USER_STOP
    assert [(m.role, m.content) for m in result.transcript][1:] == [
        ("user", "Book a call at 2pm."),
        ("assistant", "Booked: call at 14:00."),
        ("user", "Perfect, thanks! ###STOP###"),
    ]
    first, second = model.sent
    system = first[0]
    assert system.role == "system"
    assert "a 30-minute call at 2pm" in system.text
    assert "terse and busy" in system.text
    assert "###STOP###" in system.text
    assert first[1:] == ()  # the user opens; the assistant's system prompt is not shown
    assert [(m.role, m.content) for m in second[1:]] == [
        ("assistant", "Book a call at 2pm."),
        ("user", "Booked: call at 14:00."),
    ]


def test_user_needs_a_goal() -> None:
    with pytest.raises(ValueError):
        LLMUser(FakeModel("x"), goal="  ")


# -- empty replies --------------------------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize("side", ["assistant", "user"])
async def test_empty_replies_are_retried_then_end_the_dialogue_as_that_sides_error(
    side: Literal["assistant", "user"],
) -> None:
    empty = FakeModel("   ")
    assistant: Actor
    user: Actor
    if side == "assistant":
        assistant, user = LLMAssistant(empty, empty_retries=2), ScriptedUser(["hi"])
    else:
        assistant, user = ScriptedAssistant(["hello"]), LLMUser(empty, goal="g", empty_retries=2)
    with anyio.fail_after(5):
        result = await run_dialogue(assistant, user, max_turns=3)
    assert result.termination is TerminationReason(f"{side}_error")
    assert result.error is not None
    assert (result.error.source, result.error.type) == (side, "EmptyReplyError")
    assert len(empty.sent) == 3


@pytest.mark.timeout(10)
async def test_an_empty_reply_then_text_continues_the_dialogue() -> None:
    model = FakeModel("", "there you go")
    with anyio.fail_after(5):
        result = await run_dialogue(LLMAssistant(model), ScriptedUser(["hi"]), max_turns=1)
    assert result.termination is TerminationReason.MAX_TURNS
    assert result.transcript[-1].content == "there you go"
    # Both calls' tokens count: the empty one was paid for too.
    assert result.usage.total_tokens == 4


# -- over HTTP -------------------------------------------------------------------------------


@pytest.mark.timeout(20)
async def test_token_usage_over_http_is_summed_into_the_result() -> None:
    with anyio.fail_after(15):
        async with (
            serve_models({"echo": EchoModel()}) as server,
            OpenAIChatModel("echo", base_url=server.base_url) as model,
        ):
            result = await run_dialogue(
                LLMAssistant(model), ScriptedUser(["one two", "three four five"]), max_turns=5
            )
    assert [m.content for m in result.transcript.by_role("assistant")] == [
        "one two",
        "three four five",
    ]
    per_message = [
        m.metadata["usage"]["total_tokens"] for m in result.transcript.by_role("assistant")
    ]
    # echo: prompt tokens are all words sent so far, completion tokens the echoed words.
    assert per_message == [2 + 2, 7 + 3]
    assert result.usage.total_tokens == sum(per_message)


def test_actor_specs_parse_and_reject_nonsense() -> None:
    assert parse_actor_spec("builtin", flag="--user").kind == "builtin"
    spec = parse_actor_spec("openai:gpt-4o-mini", flag="--user")
    assert (spec.kind, spec.model) == ("openai", "gpt-4o-mini")
    for bad in ("openai:", "gpt-4o", "vllm:qwen"):
        with pytest.raises(InputError):
            parse_actor_spec(bad, flag="--assistant")


def _args(assistant: str, user: str, base_url: str | None, api: str = "chat") -> argparse.Namespace:
    return argparse.Namespace(
        assistant=assistant,
        user=user,
        base_url=base_url,
        api_key_env="CONVO_SIM_TEST_UNSET_KEY",
        model_api=api,
    )


def test_openai_specs_without_a_server_or_key_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(InputError) as info:
        wire_actors(
            _args("openai:gpt-4o-mini", "builtin", None),
            builtin_assistant=DOMAIN.assistant,
            builtin_user=DOMAIN.user,
        )
    assert "CONVO_SIM_TEST_UNSET_KEY" in str(info.value)


def _spoken(result: DialogueResult) -> list[tuple[str, str | None]]:
    return [(m.role, m.content) for m in result.transcript]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_the_http_llm_path_reaches_the_same_dialogues_and_rewards_as_in_process(
    api: str,
) -> None:
    scenarios = (
        bundled_scenarios("calendar_examples")[:4] + bundled_scenarios("nemo_calendar_example")[:2]
    )
    builtin = wire_actors(
        _args("builtin", "builtin", None),
        builtin_assistant=DOMAIN.assistant,
        builtin_user=DOMAIN.user,
    )
    with anyio.fail_after(50):
        async with serve_models() as server:
            http = wire_actors(
                _args("openai:calendar-solver", "openai:calendar-user", server.base_url, api),
                builtin_assistant=DOMAIN.assistant,
                builtin_user=DOMAIN.user,
            )
            try:
                for index, scenario in enumerate(scenarios):
                    seed = 1000 + index
                    local = await run_scenario(
                        scenario,
                        assistant=builtin.assistant(scenario, seed),
                        user=builtin.user(scenario, seed),
                    )
                    remote = await run_scenario(
                        scenario,
                        assistant=http.assistant(scenario, seed),
                        user=http.user(scenario, seed),
                    )
                    assert _spoken(remote) == _spoken(local), scenario.id
                    assert remote.reward == local.reward, scenario.id
                    assert remote.termination == local.termination, scenario.id
                    assert remote.error is None
                    assert local.usage.total_tokens == 0 < remote.usage.total_tokens
            finally:
                await http.aclose()
    assert sum(1 for s in scenarios if s.goal is not None) >= 2


def _records(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    out = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        out[record["scenario_id"], record["sample_index"]] = record
    return out


@pytest.mark.timeout(60)
def test_cli_run_over_convo_sim_serve_matches_the_builtin_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local, remote = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    common = ["run", "--samples", "2", "--no-progress", "--seed", "5"]
    assert main([*common, "--out", str(local)]) == 0
    with ServerThread() as server:
        code = main(
            [
                *common,
                "--out",
                str(remote),
                "--assistant",
                "openai:calendar-solver",
                "--user",
                "openai:calendar-user",
                "--base-url",
                server.base_url,
                "--model-api",
                "responses",
            ]
        )
    assert code == 0
    assert server.requests > 0
    a, b = _records(local), _records(remote)
    assert a.keys() == b.keys() and len(a) >= 4
    for key in a:
        assert (
            b[key]["responses_create_params"]["input"] == a[key]["responses_create_params"]["input"]
        )
        assert b[key]["reward"] == a[key]["reward"]
        assert b[key]["error"] is None
        assert b[key]["usage"]["total_tokens"] > 0 == a[key]["usage"]["total_tokens"]
    assert "mean reward" in capsys.readouterr().out


def test_cli_run_refuses_a_malformed_actor_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never.jsonl"
    assert main(["run", "--assistant", "gpt-4o", "--no-progress", "--out", str(out)]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "--assistant 'gpt-4o'" in err and "openai:MODEL" in err
