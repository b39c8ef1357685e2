"""convo-sim as a NeMo-Gym resources server.

The protocol tests drive the server over real HTTP on 127.0.0.1 as NeMo-Gym
0.4.0's `gymnasium_agent` does (cookies forwarded by hand, the row posted
again with every step); the end-to-end test runs NeMo-Gym's own code
(`scenarios/examples/nemo_gym/run.sh`) in its own Python 3.12 environment
when one is there, and says so loudly when it is not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convo_sim import TOKEN_FIELDS, Message, Transcript, View
from convo_sim.domains import get
from convo_sim.domains.calendar import CalendarScenario, load_scenarios, nemo_scenario
from convo_sim.integrations._common import scenario_from_data
from convo_sim.integrations.nemo_gym import (
    nemo_gym_app,
    nemo_gym_rows,
    response_message,
    serve_nemo_gym,
)
from convo_sim.scenarios import run_scenario
from tests.integration_support import not_run

ROOT = Path(__file__).resolve().parents[1]
RUN_SH = ROOT / "scenarios" / "examples" / "nemo_gym" / "run.sh"
CALENDAR = get("calendar")
NEMO_ROWS = "nemo_calendar_example.jsonl"


def replays() -> list[CalendarScenario]:
    with as_file(files("convo_sim.domains.calendar") / "data" / NEMO_ROWS) as path:
        return load_scenarios(path, nemo="replay")


def output(text: str | None, **tokens: Any) -> dict[str, Any]:
    """A Responses-API response as NeMo-Gym's vllm_model returns it."""
    content = [] if text is None else [{"type": "output_text", "text": text}]
    item = {"type": "message", "role": "assistant", "content": content, **tokens}
    return {"output": [item]}


class Agent:
    """NeMo-Gym 0.4.0's gymnasium_agent, as far as the wire goes: no cookie jar."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url, self.cookies = http, url, {}

    async def post(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        async with self.http.post(self.url + path, json=body, cookies=self.cookies) as reply:
            self.cookies = {k: v.value for k, v in reply.cookies.items()}
            return reply.status, await reply.json()


async def play(agent: Agent, row: dict[str, Any], scenario: CalendarScenario) -> dict[str, Any]:
    """The solver as the policy, with token ids that extend each other (as vLLM's do)."""
    solver = CALENDAR.assistant(scenario, 0)
    status, reset = await agent.post("/reset", row)
    assert status == 200 and reset["info"]["supports_explicit_close"]
    messages = [*scenario.opening_transcript().messages]
    observation, seen, total = reset["observation"], [1, 2], 0.0
    for turn in range(1, 64):
        messages.append(Message(role="user", content=observation))
        view = View("assistant", Transcript(messages=tuple(messages)), turn, None)
        reply = await solver.respond(view)
        prompt = [*seen, 50 + turn]
        tokens = {
            "prompt_token_ids": prompt,
            "generation_token_ids": [9, turn],
            "generation_log_probs": [-0.1, -0.2],
        }
        status, step = await agent.post("/step", row | {"response": output(reply.text, **tokens)})
        assert status == 200, step
        total += step["reward"]
        if step["terminated"] or step["truncated"]:
            return {**step, "total": total}
        assert step["reward"] == 0.0
        messages.append(reply)
        observation, seen = step["observation"], [*prompt, 9, turn]
    raise AssertionError("the dialogue never ended")


async def test_the_five_nemo_rows_over_http_match_run_dialogue() -> None:
    scenarios = replays()
    rows = nemo_gym_rows(scenarios, agent="convo_sim_agent", seed=0)
    with anyio.fail_after(30):
        async with serve_nemo_gym() as url, aiohttp.ClientSession() as http:
            agent = Agent(http, url)
            for row, scenario in zip(rows, scenarios, strict=True):
                assert row["responses_create_params"]["input"] == (
                    scenario.opening_transcript().to_responses_input()
                )
                assert row["agent_ref"] == {
                    "type": "responses_api_agents",
                    "name": "convo_sim_agent",
                }
                end = await play(agent, row, scenario)
                reference = await run_scenario(scenario, seed=0)
                result = end["info"]["result"]
                assert end["total"] == result["reward"] == reference.reward == 1.0
                assert (result["termination"], result["turns"]) == (
                    reference.termination.value,
                    reference.turns,
                )
                assert result["verdicts"] == [v.model_dump(mode="json") for v in reference.verdicts]
                assert end["info"]["contiguity"]["contiguous"] is True
                assert end["info"]["contiguity"]["policy_turns"] == reference.turns
                # The session is gone with the dialogue.
                assert (await agent.post("/step", row | {"response": output("[]")}))[0] == 409


async def test_rows_carry_the_scenario_exactly() -> None:
    for scenario in CALENDAR.scenarios() + replays() + CALENDAR.generate(20, seed=3):
        (row,) = nemo_gym_rows([scenario])
        assert json.loads(json.dumps(row)) == row
        assert scenario_from_data(CALENDAR, row["convo_sim"]["scenario"]) == scenario


async def test_bad_requests_get_one_line_and_a_status() -> None:
    (row,) = nemo_gym_rows(replays()[:1])
    with anyio.fail_after(20):
        async with serve_nemo_gym() as url, aiohttp.ClientSession() as http:
            agent = Agent(http, url)
            cases: list[tuple[str, Any, int, str]] = [
                ("/reset", {"responses_create_params": {"input": []}}, 400, "convo_sim"),
                ("/reset", [1, 2], 400, "JSON object"),
                ("/reset", {"convo_sim": {"scenario": {"id": 3}}}, 400, "convo_sim.scenario"),
                ("/reset", {"convo_sim": {"domain": "nope", "scenario": {}}}, 400, "nope"),
                ("/step", row | {"response": output("[]")}, 409, "/reset"),
            ]
            for path, body, status, words in cases:
                got, reply = await agent.post(path, body)
                assert (got, "\n" in reply["error"]) == (status, False), reply
                assert words in reply["error"]
            assert (await agent.post("/reset", row))[0] == 200
            got, reply = await agent.post("/step", row | {"response": {"output": "x"}})
            assert got == 400 and "output" in reply["error"]
            got, reply = await agent.post("/step", row)
            assert got == 400 and "response" in reply["error"]
            async with http.post(url + "/step", data=b"{", cookies=agent.cookies) as raw:
                assert raw.status == 400
            # The session survived the bad steps; /close ends it.
            assert (await agent.post("/step", row | {"response": output("[]")}))[0] == 200
            assert (await agent.post("/close", {}))[0] == 200
            assert (await agent.post("/step", row | {"response": output("[]")}))[0] == 409


async def test_verify_grades_one_reply_and_nothing_earns_nothing() -> None:
    """NeMo-Gym's plain protocol (simple_agent): the frozen-prefix rows, one graded reply."""
    with as_file(files("convo_sim.domains.calendar") / "data" / NEMO_ROWS) as path:
        raw = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    with anyio.fail_after(20):
        async with serve_nemo_gym() as url, aiohttp.ClientSession() as http:
            agent = Agent(http, url)
            assert (await agent.post("/seed_session", {}))[0] == 200
            for index, data in enumerate(raw):
                scenario = nemo_scenario(data, id=f"row-{index}")
                (row,) = nemo_gym_rows([scenario])
                reply = await CALENDAR.assistant(scenario, 0).respond(
                    View("assistant", scenario.opening_transcript(), 1, None)
                )
                rewards = []
                for response in (output(reply.text), output(None), output("[]"), {"output": []}):
                    status, verified = await agent.post("/verify", row | {"response": response})
                    assert status == 200, verified
                    rewards.append(verified["reward"])
                assert rewards == [1.0, 0.0, 0.0, 0.0]
            status, metrics = await agent.post(
                "/aggregate_metrics", {"verify_responses": [{"reward": 1.0}, {"reward": 0.0}]}
            )
            assert status == 200 and metrics["key_metrics"] == {"mean/reward": 0.5}


async def test_sessions_are_bounded() -> None:
    (row,) = nemo_gym_rows(replays()[:1])
    app = nemo_gym_app(max_sessions=2)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as http:
            agents = [Agent(http, url) for _ in range(3)]
            for agent in agents:
                assert (await agent.post("/reset", row))[0] == 200
            step = row | {"response": output("[]")}
            assert [(await a.post("/step", step))[0] for a in agents] == [409, 200, 200]
    finally:
        await runner.cleanup()


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["type", "role", "content", "text", *TOKEN_FIELDS]),
                inner,
                max_size=4,
            )
        ),
        max_leaves=20,
    )
)
def test_any_output_is_a_message_or_a_clear_refusal(output_value: Any) -> None:
    try:
        message = response_message({"output": output_value})
    except ValueError as exc:
        assert not isinstance(output_value, list) and "output" in str(exc)
    else:
        assert message.role == "assistant" and isinstance(message.content, str)


# ----------------------------------------------------------- NeMo-Gym's own code


def nemo_gym_venv() -> Path | None:
    """NeMo-Gym's environment, as run.sh finds it (None: not made yet)."""
    configured = os.environ.get("NEMO_GYM_VENV")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = Path(configured) if configured else cache / "convo-sim" / "nemo-gym-0.4.0"
    return venv if (venv / "bin" / "gym").exists() else None


@pytest.mark.timeout(400)
def test_nemo_gym_runs_convo_sim_end_to_end(tmp_path: Path) -> None:
    """run.sh: NeMo-Gym 0.4.0's gymnasium_agent, vllm_model and rollout collection."""
    venv = nemo_gym_venv()
    if venv is None or shutil.which("bash") is None:
        not_run(
            "NeMo-Gym end to end: no NeMo-Gym environment (make it with "
            "`bash scenarios/examples/nemo_gym/run.sh`, which needs Python 3.12+; .ci/run does)"
        )
    # The package under test, from the interpreter running the tests.
    env = {
        **os.environ,
        "NEMO_GYM_VENV": str(venv),
        "CONVO_SIM_VENV": sys.prefix,
        "NEMO_GYM_OUT": str(tmp_path),
    }
    done = subprocess.run(
        ["bash", str(RUN_SH)], env=env, capture_output=True, text=True, timeout=380, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "1.0"
    rollouts = [json.loads(line) for line in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    assert len(rollouts) == 5
    for rollout in rollouts:
        assert (rollout["reward"], rollout["terminated"], rollout["truncated"]) == (
            1.0,
            True,
            False,
        )
        assert rollout["info"]["result"]["termination"] == "user_stop"
        # NeMo-Gym's vllm_model captured the bundled server's token ids, and
        # they reached convo-sim's record through the environment, contiguous.
        items = rollout["response"]["output"]
        policy = [i for i in items if "generation_token_ids" in i]
        assert len(policy) == rollout["info"]["result"]["turns"]
        assert rollout["info"]["contiguity"]["contiguous"] is True
        users = [i for i in items if i.get("role") == "user"]
        assert len(users) == len(policy) - 1  # the last user message ends the dialogue


def test_rows_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from convo_sim.integrations.nemo_gym import main

    assert main(["rows", "--set", "calendar_examples", "--agent", "a", "--seed", "2"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows == nemo_gym_rows(CALENDAR.scenarios(["calendar_examples"]), agent="a", seed=2)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"x": 1}\n')
    for args in (["--scenarios", str(bad)], ["--set", "nope"], ["--domain", "nope"]):
        assert main(["rows", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
