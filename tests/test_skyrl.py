"""convo-sim as a SkyRL-gym environment, with the real skyrl-gym package.

SkyRL-gym has no rollout loop of its own (SkyRL's generator is bound to its
inference engines), so the test is that loop's part: `skyrl_gym.make` builds
the environment from a dataset row as the generator does, the bundled
server's `calendar-solver` (over the real `openai` client, on 127.0.0.1) is
the policy, and the outcome is `run_dialogue`'s with the same solver.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import anyio
import pytest

from convo_sim.domains import get
from convo_sim.scenarios import run_scenario
from convo_sim.server import ServerThread
from tests.integration_support import need

pytestmark = pytest.mark.timeout(120)
CALENDAR = get("calendar")


@pytest.fixture(scope="module")
def skyrl() -> Any:
    need("skyrl_gym", "skyrl")
    from convo_sim.integrations import skyrl as adapter

    adapter.register()
    return adapter


def test_skyrl_make_init_step_matches_run_dialogue(skyrl: Any) -> None:
    import openai
    import skyrl_gym

    scenarios = CALENDAR.scenarios() + CALENDAR.generate(6, seed=2)
    rows = skyrl.skyrl_rows(scenarios, seed=3)
    rewards = []
    with ServerThread() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="local", max_retries=0)
        for row, scenario in zip(rows, scenarios, strict=True):
            row = json.loads(json.dumps(row))  # a dataset row is data
            extras = {k: v for k, v in row.items() if k not in ("prompt", "env_class")}
            env = skyrl_gym.make(row["env_class"], env_config={}, extras=extras)
            assert isinstance(env, skyrl_gym.envs.base_text_env.BaseTextEnv)
            chat, _ = env.init(row["prompt"])
            assert chat[: len(row["prompt"])] == row["prompt"]
            total, done, steps = 0.0, False, 0
            while not done:
                reply = client.chat.completions.create(model="calendar-solver", messages=chat)
                text = reply.choices[0].message.content or ""
                out = env.step(text)
                total += out["reward"]
                done = out["done"]
                steps += 1
                assert steps <= env.max_turns
                chat = [*chat, {"role": "assistant", "content": text}, *out["observations"]]
            metrics = env.get_metrics()
            env.close()
            reference = anyio.run(functools.partial(run_scenario, scenario, seed=3))
            assert out["observations"] == []
            assert total == out["metadata"]["result"]["reward"] == reference.reward
            assert metrics["turns"] == reference.turns == steps
            assert metrics[f"termination/{reference.termination.value}"] == 1.0
            rewards.append(total)
    assert set(rewards) == {1.0}
    assert skyrl.DialogueTextEnv.aggregate_metrics([{"reward": 1.0}, {"reward": 0.0}]) == {
        "reward": 0.5
    }


def test_a_wrong_answer_earns_nothing_and_limits_hold(skyrl: Any) -> None:
    import skyrl_gym

    scenario = CALENDAR.scenarios()[0]
    (row,) = skyrl.skyrl_rows([scenario])
    env = skyrl_gym.make("convo_sim", env_config={"max_turns": 2}, extras=row)
    env.init(row["prompt"])
    assert env.max_turns == 2
    first = env.step("I cannot help with calendars.")
    assert (first["reward"], first["done"]) == (0.0, False)
    last = env.step("[]")
    assert last["done"] and last["reward"] == 0.0
    assert last["metadata"]["termination"] == "max_turns"
    with pytest.raises(ValueError, match="convo_sim"):
        skyrl_gym.make("convo_sim", env_config={}, extras={"prompt": []})
