"""convo-sim as a PrimeIntellect verifiers `MultiTurnEnv`, in verifiers' own rollout loop.

`env.evaluate` (verifiers' loop) runs against the bundled server's
`calendar-solver` over HTTP on 127.0.0.1 with vLLM's token fields asked for;
rewards, endings and turns must be `run_dialogue`'s with the same solver,
and the token ids verifiers parsed must reach the record, contiguous.

The run happens in a child interpreter started in a scratch directory:
from the repository root, convo-sim's own `verifiers/` folder (the
verifier family's source) would shadow the verifiers package.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.integration_support import not_run

pytestmark = pytest.mark.timeout(180)

CHILD = r"""
import asyncio, json, sys
import anyio
from openai import AsyncOpenAI
import verifiers as vf
from convo_sim.domains import get
from convo_sim.integrations.verifiers import DialogueMultiTurnEnv, dialogue_dataset
from convo_sim.scenarios import run_scenario
from convo_sim.server import ServerThread

calendar = get("calendar")
scenarios = calendar.scenarios()[:4] + calendar.generate(4, seed=8)
env = DialogueMultiTurnEnv(scenarios, seed=3)
assert isinstance(env, vf.MultiTurnEnv)
async def evaluate_all(base_url):
    client = vf.OpenAIChatCompletionsClient(AsyncOpenAI(base_url=base_url, api_key="local"))
    outs = {}
    for model in sys.argv[1:]:
        outs[model] = await env.evaluate(
            client=client, model=model,
            sampling_args={"logprobs": True, "extra_body": {"return_token_ids": True}},
            num_examples=-1, rollouts_per_example=1, state_columns=["trajectory", "convo_sim"],
        )
    return outs

with ServerThread() as server:
    outs = asyncio.run(evaluate_all(server.base_url))
results = {}
for model, out in outs.items():
    got = []
    for o in out["outputs"]:
        got.append({
            "id": json.loads(o["info"]["convo_sim"])["scenario"]["id"],
            "reward": o["reward"], "stop": o.get("stop_condition"), "error": o.get("error"),
            "steps": len(o.get("trajectory") or []),
            "tokens": sorted((o["trajectory"][0].get("tokens") or {}).keys())
            if o.get("trajectory") else [],
            "summary": o.get("convo_sim") or {},
        })
    results[model] = got
ref = {}
for s in scenarios:
    r = anyio.run(lambda: run_scenario(s, seed=3))
    ref[s.id] = {"reward": r.reward, "turns": r.turns, "termination": r.termination.value,
                 "verdicts": [v.model_dump(mode="json") for v in r.verdicts]}
print(json.dumps({"got": results, "ref": ref}))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One child run, two policies: the solver, and `echo`, which repeats the user."""
    if importlib.util.find_spec("datasets") is None:
        not_run("verifiers is not installed (pip install -e '.[verifiers]'; .ci/run does)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, "calendar-solver", "echo"],
        cwd=tmp_path_factory.mktemp("verifiers"),
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    if "No module named 'verifiers'" in done.stderr:
        not_run("verifiers is not installed (pip install -e '.[verifiers]'; .ci/run does)")
    assert done.returncode == 0, done.stderr[-3000:]
    data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return data


def test_verifiers_own_loop_matches_run_dialogue(runs: dict[str, Any]) -> None:
    got, ref = runs["got"]["calendar-solver"], runs["ref"]
    assert len(got) == len(ref) == 8
    for rollout in got:
        expected = ref[rollout["id"]]
        summary = rollout["summary"]
        assert rollout["error"] is None
        assert rollout["stop"] == "has_final_env_response"
        assert rollout["reward"] == expected["reward"] == 1.0
        assert (summary["termination"], summary["turns"]) == (
            expected["termination"],
            expected["turns"],
        )
        assert summary["verdicts"] == expected["verdicts"]
        assert rollout["steps"] == expected["turns"]
        # verifiers parsed the server's token ids; they reached convo-sim's record.
        assert {"prompt_ids", "completion_ids", "completion_logprobs"} <= set(rollout["tokens"])
        assert summary["contiguity"]["contiguous"] is True
        assert summary["contiguity"]["policy_turns"] == expected["turns"]


def test_a_policy_that_answers_nothing_useful_earns_nothing(runs: dict[str, Any]) -> None:
    got = runs["got"]["echo"]
    assert len(got) == 8
    assert {rollout["reward"] for rollout in got} == {0.0}
    assert [r["error"] for r in got] == [None] * 8
