"""API keys never reach logs, error messages or output files, even when a server echoes them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import openai
import pytest
from structlog.testing import capture_logs

from convo_sim import (
    Message,
    ModelError,
    ModelSettings,
    RetryPolicy,
    TerminationReason,
    run_dialogue,
)
from convo_sim._faults import Fault, FaultPlan
from convo_sim._openai_model import LOCAL_API_KEY, OpenAIChatModel
from convo_sim._served_models import EchoModel
from convo_sim._server import ServerThread, serve_models
from convo_sim.agents import LLMAssistant
from convo_sim.cli import main
from convo_sim.users import ScriptedUser

KEY = "sk-convo-sim-TEST-9f8e7d6c5b4a3210fedcba"
FAST = RetryPolicy(attempts=3, initial=0.001, max_wait=0.01, jitter=0.001)


def _windows(text: str, size: int = 8) -> set[str]:
    return {text[i : i + size] for i in range(len(text) - size + 1)}


def assert_no_key(where: str, text: str) -> None:
    assert KEY not in text, where
    leaked = [w for w in _windows(KEY) if w in text]
    assert not leaked, f"{where} holds part of the key: {leaked}"


class Complains:
    """A served model that quotes part of the caller's key, as proxies do."""

    async def reply(self, messages: Sequence[Message], body: Mapping[str, Any]) -> Message:
        raise ValueError(f"key {KEY[:14]}...{KEY[-6:]} has no access to this model")


@pytest.mark.timeout(20)
async def test_the_server_really_echoes_the_key_so_the_checks_below_mean_something() -> None:
    plan = FaultPlan().add(Fault.unauthorized())
    with anyio.fail_after(15):
        async with (
            serve_models({"echo": EchoModel()}, faults=plan) as server,
            openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as raw,
        ):
            with pytest.raises(openai.AuthenticationError) as info:
                await raw.chat.completions.create(
                    model="echo", messages=[{"role": "user", "content": "hi"}]
                )
    assert KEY in str(info.value)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("how", ["env", "argument"])
@pytest.mark.parametrize(
    "fault", [Fault.unauthorized(), Fault.server_error(500)], ids=["401-echo", "500-retried"]
)
async def test_a_failing_dialogue_never_shows_the_key(
    how: str, fault: Fault, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY if how == "env" else "sk-other-key-not-under-test")
    plan = FaultPlan().add(fault, times=None)
    with anyio.fail_after(15), capture_logs() as logs:
        async with serve_models({"echo": EchoModel()}, faults=plan) as server:
            model = OpenAIChatModel(
                "echo",
                base_url=server.base_url,
                api_key=KEY if how == "argument" else None,
                retry=FAST,
            )
            async with model:
                result = await run_dialogue(LLMAssistant(model), ScriptedUser(["hello"]))
                with pytest.raises(ModelError) as info:
                    await model.complete([Message(role="user", content="x")], ModelSettings())
    assert plan.injected[fault.kind] >= 2
    assert result.termination is TerminationReason.ASSISTANT_ERROR
    assert result.error is not None and result.error.type == "ModelError"
    assert_no_key("result.error", result.error.message)
    out = tmp_path / "rollouts.jsonl"
    out.write_text(result.model_dump_json() + "\n")
    assert_no_key("output file", out.read_text())
    assert_no_key("ModelError", f"{info.value} {info.value!r} {info.value.args}")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert_no_key("repr(model)", repr(model))
    assert_no_key("logs", repr(logs))
    events = {e["event"] for e in logs}
    assert "model.failed" in events
    if fault.status == 500:
        assert "model.retry" in events


@pytest.mark.timeout(20)
async def test_part_of_a_key_quoted_in_an_error_is_scrubbed_too() -> None:
    with anyio.fail_after(15), capture_logs() as logs:
        async with (
            serve_models({"complains": Complains()}) as server,
            OpenAIChatModel("complains", base_url=server.base_url, api_key=KEY, retry=FAST) as m,
        ):
            with pytest.raises(ModelError) as info:
                await m.complete([Message(role="user", content="x")], ModelSettings())
    assert info.value.status_code == 400
    assert "has no access to this model" in str(info.value)
    assert_no_key("ModelError", str(info.value))
    assert_no_key("logs", repr(logs))


@pytest.mark.timeout(60)
def test_the_cli_keeps_the_key_out_of_its_output_file_and_streams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVO_SIM_TEST_SECRET", KEY)
    out = tmp_path / "rollouts.jsonl"
    plan = FaultPlan().add(Fault.unauthorized(), model="calendar-solver", times=None)
    with ServerThread(faults=plan) as server:
        code = main(
            [
                "--log-level",
                "debug",
                "run",
                "--no-progress",
                "--out",
                str(out),
                "--assistant",
                "openai:calendar-solver",
                "--user",
                "openai:calendar-user",
                "--base-url",
                server.base_url,
                "--api-key-env",
                "CONVO_SIM_TEST_SECRET",
            ]
        )
    captured = capfd.readouterr()
    assert code == 0
    assert plan.injected["unauthorized"] >= 1
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records and all(r["termination"] == "assistant_error" for r in records)
    assert all("HTTP 401" in r["error"]["message"] for r in records)
    assert_no_key("output file", out.read_text())
    assert_no_key("stdout", captured.out)
    assert_no_key("stderr", captured.err)
    assert "model.failed" in captured.err  # the logs were written, and checked


# -- a reply that echoes the key, and pickles -------------------------------------


class EchoesTheKey:
    """A served model whose 200 reply quotes the caller's key, whole and in part."""

    async def reply(self, messages: Sequence[Message], body: Mapping[str, Any]) -> Message:
        return Message(
            role="assistant",
            content=f"Your key is {KEY}; I saw {KEY[3:17]}... in the header.",
        )


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("api", "transport"), [("chat", "lean"), ("chat", "sdk"), ("responses", "sdk")]
)
async def test_a_reply_that_echoes_the_key_is_scrubbed_before_it_is_recorded(
    api: str, transport: str, tmp_path: Path
) -> None:
    from convo_sim import RolloutSink, read_rollouts
    from convo_sim._records import Rollout
    from convo_sim._report_html import write_html
    from convo_sim.scenarios import Scenario

    with anyio.fail_after(20):
        async with (
            serve_models({"echoes": EchoesTheKey()}) as server,
            OpenAIChatModel(
                "echoes",
                base_url=server.base_url,
                api_key=KEY,
                api=api,  # type: ignore[arg-type]
                transport=transport,  # type: ignore[arg-type]
                retry=FAST,
            ) as model,
        ):
            reply = await model.complete([Message(role="user", content="x")])
            result = await run_dialogue(
                LLMAssistant(model), ScriptedUser(["hello", "###STOP###"]), max_turns=3
            )
    assert "Your key is ***" in reply.message.text
    assert_no_key("reply", reply.model_dump_json())
    assert result.error is None and result.turns == 1
    assert_no_key("transcript", result.transcript.model_dump_json())
    record = Rollout.from_result(Scenario(id="s"), 0, 0, result)
    out = tmp_path / "rollouts.jsonl"
    with RolloutSink(out) as sink:
        sink.write(record)
    assert_no_key("rollouts file", out.read_text())
    html = tmp_path / "report.html"
    write_html(read_rollouts(out), html)
    page = html.read_text()
    assert "Your key is ***" in page
    # The page names convo-sim itself, which this test key happens to contain.
    assert_no_key("html report", page.replace("convo-sim", ""))


def test_a_pickled_model_never_holds_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    from ray import cloudpickle  # what Ray ships factories with

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    from_env = OpenAIChatModel("m", base_url="http://127.0.0.1:9/v1")
    explicit = OpenAIChatModel("m", base_url="http://127.0.0.1:9/v1", api_key=KEY)
    holder = LLMAssistant(explicit, system_prompt="Keep my calendar.")
    for name, obj in (("env", from_env), ("argument", explicit), ("assistant", holder)):
        for dumps in (pickle.dumps, cloudpickle.dumps):
            data = dumps(obj)
            assert_no_key(f"{name} {dumps.__module__}", data.decode("latin-1"))
    # Unpickled where it is used, the model reads its key again from the environment.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-worker-s-own-key-0123456789")
    copy = pickle.loads(pickle.dumps(explicit))
    assert copy._api_key == "sk-the-worker-s-own-key-0123456789"
    assert (copy.model, copy.base_url, copy.api, copy.timeout) == (
        "m",
        explicit.base_url,
        "chat",
        60.0,
    )
    monkeypatch.delenv("OPENAI_API_KEY")
    assert pickle.loads(pickle.dumps(from_env))._api_key == LOCAL_API_KEY


def test_a_model_names_the_variable_its_pickles_read_the_key_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pickle

    monkeypatch.setenv("MY_PROVIDER_KEY", KEY)
    model = OpenAIChatModel("m", api_key_env="MY_PROVIDER_KEY")
    assert model._api_key == KEY
    data = pickle.dumps(model)
    assert_no_key("pickle", data.decode("latin-1"))
    assert pickle.loads(data)._api_key == KEY
