"""Contract tests: verl's, OpenRLHF's and OpenEnv's interfaces, driven as the trainers do.

Their packages need torch/CUDA builds or a large web stack, so each test
plays the trainer's loop as its source does it (cited per test) and checks
the adapter's signatures against the documented ones; the outcome must be
`run_dialogue`'s with the same policy.
"""

from __future__ import annotations

import functools
import inspect
import json
from typing import Any

import anyio
import pytest

from convo_sim import Message, Transcript, View
from convo_sim.domains import get
from convo_sim.integrations.trainers import (
    DialogueAction,
    OpenEnvDialogue,
    OpenRLHFAgent,
    VerlInteraction,
    trainer_rows,
)
from convo_sim.scenarios import run_scenario

pytestmark = pytest.mark.timeout(60)
CALENDAR = get("calendar")
SEED = 4


def scenarios() -> list[Any]:
    return CALENDAR.scenarios()[:3] + CALENDAR.generate(3, seed=6)


async def policy(scenario: Any, chat: list[dict[str, Any]]) -> str:
    """The solver, from the chat the trainer holds (a model sees only that)."""
    messages = tuple(Message.from_openai(m) for m in chat)
    turn = sum(1 for m in messages if m.role == "assistant") + 1
    view = View("assistant", Transcript(messages=messages), turn, None)
    return (await CALENDAR.assistant(scenario, SEED).respond(view)).text


def params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


async def test_rows_prompt_is_what_reset_says() -> None:
    for scenario, row in zip(scenarios(), trainer_rows(scenarios(), seed=SEED), strict=True):
        reference = await run_scenario(scenario, seed=SEED)
        opening = len(scenario.opening_transcript()) + 1
        assert row["prompt"] == reference.transcript.to_openai()[:opening]
        assert json.loads(row["convo_sim"])["scenario"]["id"] == scenario.id


async def test_verl_interaction_as_its_agent_loop_drives_it() -> None:
    # verl 0.7.1 interactions/base.py signatures; experimental/agent_loop/tool_agent_loop.py: start_interaction(request_id,
    # **interaction_kwargs); per user turn generate_response(request_id, messages,
    # **interaction_kwargs) -> (should_terminate, content, turn_score, extra).
    assert params(VerlInteraction.__init__) == ["self", "config"]
    assert params(VerlInteraction.start_interaction)[:2] == ["self", "instance_id"]
    assert params(VerlInteraction.generate_response)[:3] == ["self", "instance_id", "messages"]
    interaction = VerlInteraction({"name": "convo_sim", "domain": "calendar"})
    for scenario, row in zip(scenarios(), trainer_rows(scenarios(), seed=SEED), strict=True):
        kwargs = {"name": "convo_sim", "convo_sim": row["convo_sim"]}
        key = await interaction.start_interaction("req-1", **kwargs)
        chat = list(row["prompt"])
        scores = []
        while True:
            chat.append({"role": "assistant", "content": await policy(scenario, chat)})
            stop, text, score, extra = await interaction.generate_response(key, chat, **kwargs)
            scores.append(score)
            if stop:
                break
            chat.append({"role": "user", "content": text})
        reference = await run_scenario(scenario, seed=SEED)
        assert await interaction.calculate_score(key) == scores[-1] == reference.reward
        assert extra["result"]["turns"] == reference.turns == len(scores)
        await interaction.finalize_interaction(key)
        with pytest.raises(KeyError):
            await interaction.generate_response(key, chat)


async def test_openrlhf_agent_as_its_executor_drives_it() -> None:
    # openrlhf 0.11.2 utils/agent.py MultiTurnAgentExecutor: reset({"observation",
    # "label"}) -> {"observation"}; step({"observation_text", "action_text", "label",
    # "sampling_params"}) -> {"rewards", "scores", "environment_feedback", "done", ...}.
    assert params(OpenRLHFAgent.reset)[:2] == ["self", "states"]
    assert params(OpenRLHFAgent.step)[:2] == ["self", "state_dict"]
    for scenario, row in zip(scenarios(), trainer_rows(scenarios(), seed=SEED), strict=True):
        agent = OpenRLHFAgent()
        prompt_text = json.dumps(row["prompt"])
        first = await agent.reset({"observation": prompt_text, "label": row["convo_sim"]})
        assert first["observation"] == prompt_text
        chat, done, out = list(row["prompt"]), False, {}
        while not done:
            action = await policy(scenario, chat)
            out = await agent.step(
                {"observation_text": "", "action_text": action, "label": row["convo_sim"]}
            )
            done = out["done"]
            feedback = out["environment_feedback"]
            assert done == (feedback == "")
            text = feedback.removeprefix("\n\nUser: ").removesuffix("\n\nAssistant: ")
            chat += [{"role": "assistant", "content": action}, {"role": "user", "content": text}]
        assert float(out["rewards"]) == (await run_scenario(scenario, seed=SEED)).reward
    with pytest.raises(RuntimeError, match="reset"):
        await OpenRLHFAgent().step({"action_text": "x"})


def test_openenv_style_reset_and_step() -> None:
    # openenv-core 0.3.0 Environment: reset(seed=None, episode_id=None, **kw) -> Observation;
    # step(action, timeout_s=None, **kw) -> Observation{done, reward, metadata}; state.
    assert params(OpenEnvDialogue.reset)[:3] == ["self", "seed", "episode_id"]
    assert params(OpenEnvDialogue.step)[:3] == ["self", "action", "timeout_s"]
    rows = trainer_rows(scenarios(), seed=SEED)
    env = OpenEnvDialogue(rows)
    for index, scenario in enumerate(scenarios()):
        obs = env.reset(episode_id=str(index))
        assert obs.messages == rows[index]["prompt"] and not obs.done
        while not obs.done:
            reply = anyio.run(policy, scenario, obs.messages)
            obs = env.step(DialogueAction(message=reply) if index % 2 else reply)
            assert obs.reward == 0.0 or obs.done
        reference = anyio.run(functools.partial(run_scenario, scenario, seed=SEED))
        assert obs.reward == reference.reward
        assert env.state == {"episode_id": str(index), "step_count": reference.turns}
    with pytest.raises(ValueError, match="convo_sim"):
        OpenEnvDialogue().reset()
