"""One bad string never stops a run: a record that cannot be written is recorded as an error.

A lone surrogate (the JSON escape `"\\udcff"` from a model, a `\\ud800` from
a Python actor) cannot be encoded as UTF-8, so the record holding it could
not be written. It becomes an error record of that dialogue, its text
escaped, and every other dialogue is written as usual.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from convo_sim import (
    Actor,
    FinalContext,
    Message,
    Rollout,
    RolloutPlan,
    RolloutSink,
    TurnContext,
    TurnScore,
    Verdict,
    generate_rollouts_sync,
    read_rollouts,
    write_rollouts,
)
from convo_sim._served_models import ServedModel, default_models
from convo_sim._server import ServerThread, serve_models
from convo_sim.agents import FunctionAssistant
from convo_sim.cli import main
from convo_sim.scenarios import Scenario
from convo_sim.users import ScriptedUser

pytestmark = pytest.mark.timeout(60)

BAD = "[]\ud800"


def scenarios(n: int) -> list[Scenario]:
    return [Scenario(id=f"s{i}", system_prompt="Keep my calendar.", max_turns=3) for i in range(n)]


def assistant(scenario: Scenario, seed: int) -> Actor:
    return FunctionAssistant(lambda view: BAD if scenario.id == "s2" else "[]")


def user(scenario: Scenario, seed: int) -> Actor:
    return ScriptedUser(["Add lunch.", "Thanks ###STOP###"])


def verifiers(scenario: Scenario) -> tuple[list[object], list[object]]:
    def quotes_the_reply(ctx: TurnContext) -> TurnScore:
        return TurnScore(score=1.0, reason="pass", details={"reply": ctx.message.text})

    def final(ctx: FinalContext) -> Verdict:
        return Verdict(
            reward=1.0, reason="pass", details={"last": ctx.transcript.messages[-2].text}
        )

    return [quotes_the_reply], [final]


def assert_escaped(record: Rollout) -> None:
    assert record.error is not None and record.error.source == "record"
    assert "surrogate" in record.error.message
    assert record.reward == 0.0
    line = record.model_dump_json()
    assert "\\\\ud800" in line  # the escape is kept as text, readable
    assert BAD not in line


def test_a_lone_surrogate_from_an_actor_is_a_recorded_error_not_an_abort() -> None:
    records = generate_rollouts_sync(
        scenarios(5),
        RolloutPlan(assistant=assistant, user=user, verifiers=verifiers, concurrency=2),
    )
    by_id = {r.scenario_id: r for r in records}
    assert sorted(by_id) == ["s0", "s1", "s2", "s3", "s4"]
    assert_escaped(by_id["s2"])
    assert by_id["s2"].transcript.by_role("assistant")[0].text == "[]\\ud800"
    for scenario_id in ("s0", "s1", "s3", "s4"):
        assert by_id[scenario_id].error is None and by_id[scenario_id].reward == 1.0


def test_the_sink_writes_an_unwritable_record_as_its_escaped_error(tmp_path: Path) -> None:
    record = Rollout(
        responses_create_params={"input": [{"role": "user", "content": "hi \udcff"}]},
        scenario_id="bad",
        sample_index=0,
        seed=1,
        termination="user_stop",
        terminated_by="stop_token",
        turns=1,
        reward=1.0,
        metadata={"odd": object()},
    )
    path = tmp_path / "out.jsonl"
    with RolloutSink(path) as sink:
        sink.write(record)
    (back,) = read_rollouts(path)
    assert back.key == ("bad", 0)
    assert_escaped_text = back.responses_create_params["input"][0]["content"]
    assert assert_escaped_text == "hi \\udcff"
    assert back.error is not None and back.error.source == "record"
    assert back.reward == 0.0
    assert back.metadata["odd"].startswith("<object object at")


async def test_write_rollouts_keeps_every_other_record(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    plan = RolloutPlan(assistant=assistant, user=user, verifiers=verifiers, concurrency=3)
    with anyio.fail_after(20):
        stats = await write_rollouts(path, scenarios(8), plan, samples_per_scenario=2)
    assert (stats.written, stats.resumed) == (16, 0)
    records = read_rollouts(path)
    assert len(records) == 16
    bad = [r for r in records if r.error is not None]
    assert sorted(r.key for r in bad) == [("s2", 0), ("s2", 1)]
    # Resuming finds the run complete: the bad samples are done, not retried forever.
    with anyio.fail_after(20):
        again = await write_rollouts(path, scenarios(8), plan, samples_per_scenario=2)
    assert (again.written, again.resumed) == (0, 16)


# -- over HTTP: the bundled server answers one request with a lone surrogate -------


class Poisoned:
    """A served model that answers its `nth` request with a lone surrogate appended.

    The server writes replies with `json.dumps`, so the client reads the
    JSON escape `\\udcff`, which decodes to a lone surrogate.
    """

    def __init__(self, inner: ServedModel, nth: int) -> None:
        self.inner = inner
        self.nth = nth
        self.calls = 0

    async def reply(self, messages: Sequence[Message], body: Mapping[str, Any]) -> Message:
        self.calls += 1
        message = await self.inner.reply(messages, body)
        if self.calls == self.nth:
            return message.model_copy(update={"content": f"{message.text}\udcff"})
        return message


def poisoned_models() -> tuple[dict[str, ServedModel], Poisoned]:
    models = default_models()
    poisoned = Poisoned(models["calendar-solver"], nth=7)
    return {**models, "calendar-solver": poisoned}, poisoned


def run_args(out: Path, base_url: str) -> list[str]:
    return [
        "run",
        "--no-progress",
        "--samples",
        "2",
        "--concurrency",
        "4",
        "--out",
        str(out),
        "--assistant",
        "openai:calendar-solver",
        "--user",
        "openai:calendar-user",
        "--base-url",
        base_url,
    ]


def test_cli_run_over_the_server_with_one_bad_reply_writes_every_other_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean, dirty = tmp_path / "clean.jsonl", tmp_path / "dirty.jsonl"
    with ServerThread() as server:
        assert main(run_args(clean, server.base_url)) == 0
    models, poisoned = poisoned_models()
    with ServerThread(models) as server:
        assert main(run_args(dirty, server.base_url)) == 0
    assert poisoned.calls >= poisoned.nth
    printed = capsys.readouterr().out
    assert "wrote        20 records" in printed
    lines = dirty.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 20 and all(json.loads(line) for line in lines)
    expected = {r.key: r for r in read_rollouts(clean)}
    records = read_rollouts(dirty)
    hit = [r for r in records if "\\udcff" in r.model_dump_json()]
    assert len(hit) == 1 and hit[0].reward == 0.0
    assert hit[0].error is not None
    for r in records:
        if r is not hit[0]:
            assert r.error is None
            assert r.responses_create_params == expected[r.key].responses_create_params
            assert r.reward == expected[r.key].reward
    # `report` reads the file back and counts the bad record as an error.
    assert main(["report", str(dirty)]) == 0
    assert "errors       1" in capsys.readouterr().out


async def test_write_rollouts_over_serve_models_with_one_bad_reply(tmp_path: Path) -> None:
    from convo_sim._openai_model import OpenAIChatModel
    from convo_sim.cli.actors_spec import llm_assistant_for, llm_user_for
    from convo_sim.domains.calendar import DOMAIN
    from convo_sim.scenarios import bundled_scenarios

    models, poisoned = poisoned_models()
    path = tmp_path / "out.jsonl"
    with anyio.fail_after(40):
        async with serve_models(models) as server:
            solver = OpenAIChatModel("calendar-solver", base_url=server.base_url)
            simulated = OpenAIChatModel("calendar-user", base_url=server.base_url)
            async with solver, simulated:
                plan = RolloutPlan(
                    assistant=lambda s, seed: llm_assistant_for(solver, s, seed),
                    user=lambda s, seed: llm_user_for(simulated, s, seed),
                    verifiers=DOMAIN.verifiers,
                    concurrency=4,
                    max_turns=20,
                )
                stats = await write_rollouts(path, bundled_scenarios(), plan)
    assert poisoned.calls >= poisoned.nth
    assert stats.written == 10
    records = read_rollouts(path)
    assert len(records) == 10
    assert sum(r.error is not None for r in records) == 1
    assert sum(r.reward == 1.0 for r in records) == 9
