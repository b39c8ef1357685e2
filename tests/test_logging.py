from __future__ import annotations

import io
import json

import pytest
import structlog
from structlog.testing import capture_logs

import convo_sim._logging as cs_logging
from convo_sim import configure_logging, run_dialogue
from convo_sim.agents import ScriptedAssistant
from convo_sim.users import ScriptedUser

pytestmark = pytest.mark.timeout(10)


@pytest.fixture(autouse=True)
def _reset_structlog() -> object:
    yield
    structlog.reset_defaults()
    cs_logging._content = False


async def test_dialogue_events_carry_the_dialogue_id_and_no_content() -> None:
    with capture_logs() as logs:
        result = await run_dialogue(
            ScriptedAssistant(["secret answer"]),
            ScriptedUser(["secret question"]),
            dialogue_id="d-1",
        )
    events = [e["event"] for e in logs]
    assert events[0] == "dialogue.started"
    assert events[-1] == "dialogue.finished"
    assert events.count("turn.completed") == 3
    finished = logs[-1]
    assert finished["termination"] == "user_stop"
    assert finished["turns"] == result.turns == 1
    assert "secret" not in repr(logs)


async def test_dialogue_id_is_bound_in_context() -> None:
    stream = io.StringIO()
    configure_logging("debug", json=True, stream=stream)
    await run_dialogue(ScriptedAssistant(["a"]), ScriptedUser(["q"]), dialogue_id="abc")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {line["event"] for line in lines} >= {
        "dialogue.started",
        "turn.completed",
        "dialogue.finished",
    }
    assert all(line["dialogue_id"] == "abc" for line in lines)
    assert "q" not in [line.get("content") for line in lines]


async def test_content_is_logged_only_when_asked() -> None:
    stream = io.StringIO()
    configure_logging("debug", json=True, log_content=True, stream=stream)
    await run_dialogue(ScriptedAssistant(["the answer"]), ScriptedUser(["the question"]))
    contents = [json.loads(line).get("content") for line in stream.getvalue().splitlines()]
    assert "the question" in contents and "the answer" in contents


async def test_level_filters_events() -> None:
    stream = io.StringIO()
    configure_logging("warning", stream=stream)
    await run_dialogue(ScriptedAssistant(["a"]), ScriptedUser(["q"]))
    assert stream.getvalue() == ""


def test_importing_configures_nothing() -> None:
    structlog.reset_defaults()
    before = structlog.get_config()
    import importlib

    import convo_sim

    importlib.reload(convo_sim)
    assert structlog.get_config() == before


async def test_unconfigured_library_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    structlog.reset_defaults()
    assert not structlog.is_configured()
    await run_dialogue(ScriptedAssistant(["a"]), ScriptedUser(["q"]))
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
