"""Trajectories from Python (`collect`), and the policy kept apart from the simulated user."""

from __future__ import annotations

import argparse
import json
import pickle
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from convo_sim import (
    Message,
    ModelSettings,
    RolloutBatch,
    RolloutError,
    RolloutPlan,
    collect,
    read_rollouts,
)
from convo_sim._collect import CapturingAssistant
from convo_sim.agents import LLMAssistant
from convo_sim.cli import main
from convo_sim.cli.actors_spec import llm_assistant_for, llm_user_for, wire_actors
from convo_sim.domains.calendar import DOMAIN as CALENDAR
from convo_sim.openai_model import OpenAIChatModel
from convo_sim.scenarios import Scenario, bundled_scenarios
from convo_sim.server import ServedModel, ServerThread, default_models, serve_models

FIELDS = ("prompt_token_ids", "generation_token_ids", "generation_log_probs")

calendar_assistant, calendar_user = CALENDAR.assistant, CALENDAR.user
calendar_verifier_set = CALENDAR.verifiers


def _policy_factory(model: OpenAIChatModel, scenario: Scenario, seed: int) -> Any:
    return llm_assistant_for(model, scenario, seed)


@pytest.mark.timeout(60)
async def test_collect_returns_a_batch_ready_for_every_trainer() -> None:
    scenarios = bundled_scenarios()[:3]
    with anyio.fail_after(50):
        # The model itself does not capture: collect turns it on for the policy.
        async with (
            serve_models() as server,
            OpenAIChatModel("calendar-solver", base_url=server.base_url) as model,
        ):
            plan = RolloutPlan(
                assistant=partial(_policy_factory, model),
                user=calendar_user,
                verifiers=calendar_verifier_set,
            )
            batch = await collect(scenarios, plan, samples_per_scenario=2)
    assert isinstance(batch, RolloutBatch) and len(batch) == 6
    # Scenario order, then sample order: a GRPO group's samples together.
    assert [r.key for r in batch] == [(s.id, i) for s in scenarios for i in (0, 1)]
    assert all(r.contiguity is not None and r.contiguity.contiguous for r in batch)
    trl = batch.columns("trl")
    assert {"prompt_ids", "completion_ids", "logprobs", "env_mask"} <= trl.keys()
    assert len(trl["prompt_ids"]) == 6
    for completion, mask, logprobs in zip(
        trl["completion_ids"], trl["env_mask"], trl["logprobs"], strict=True
    ):
        assert len(completion) == len(mask) == len(logprobs) and 0 < sum(mask) < len(mask)
    skyrl = batch.columns("skyrl")
    assert skyrl["rewards"] == [r.reward for r in batch]
    samples = batch.samples(per_turn=True)
    assert len(samples) == sum(r.turns for r in batch)
    assert batch.stats("verl").rows == 6 and batch[1:3].rollouts == batch.rollouts[1:3]


@pytest.mark.timeout(30)
async def test_collect_refuses_a_policy_it_cannot_capture() -> None:
    plan = RolloutPlan(assistant=calendar_assistant, user=calendar_user)
    with anyio.fail_after(20), pytest.raises(RolloutError) as info:
        await collect(bundled_scenarios()[:1], plan)
    assert "capture_tokens needs" in info.value.problem
    plain = await collect(bundled_scenarios()[:1], plan, capture_tokens=False)
    assert plain[0].contiguity is None and plain.rows("trl") == []


class _Shared:
    def __init__(self) -> None:
        self.actor = LLMAssistant(_NoModel(), settings=ModelSettings(seed=3))

    def __call__(self, scenario: Any, seed: int) -> Any:
        return self.actor


class _NoModel:
    async def complete(self, messages: Sequence[Message], settings: ModelSettings) -> Any:
        raise AssertionError("not called")


def test_capturing_factories_copy_the_actor_and_pickle() -> None:
    shared = _Shared()
    wrapped = CapturingAssistant(shared)
    actor = wrapped(bundled_scenarios()[0], 1)
    assert actor is not shared.actor
    assert actor.settings == ModelSettings(seed=3, capture_tokens=True)  # type: ignore[attr-defined]
    assert shared.actor.settings.capture_tokens is None
    assert pickle.loads(pickle.dumps(CapturingAssistant(calendar_assistant))).factory is (
        calendar_assistant
    )


class _Recording:
    """A served model that keeps whether each request asked for tokens."""

    def __init__(self, model: ServedModel) -> None:
        self.model = model
        self.asked: list[bool] = []

    async def reply(self, messages: Sequence[Message], body: Mapping[str, Any]) -> Message:
        self.asked.append(body.get("return_token_ids") is True)
        return await self.model.reply(messages, body)


@pytest.mark.timeout(60)
def test_policy_and_user_on_their_own_servers_and_only_the_policy_captured(
    tmp_path: Path,
) -> None:
    models = default_models()
    policy, user = _Recording(models["calendar-solver"]), _Recording(models["calendar-user"])
    out = tmp_path / "r.jsonl"
    with (
        ServerThread({"calendar-solver": policy}) as policy_server,
        ServerThread({"calendar-user": user}) as user_server,
    ):
        code = main(
            [
                "run",
                "--assistant",
                "openai:calendar-solver",
                "--user",
                "openai:calendar-user",
                "--assistant-base-url",
                policy_server.base_url,
                "--user-base-url",
                user_server.base_url,
                "--capture-tokens",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
    assert code == 0
    records = read_rollouts(out)
    assert records and all(r.error is None and r.reward == 1.0 for r in records)
    assert policy.asked and all(policy.asked)
    assert user.asked and not any(user.asked)
    for record in records:
        assert record.usage_by_role["assistant"].total_tokens > 0
        assert record.usage_by_role["user"].total_tokens > 0
        assert record.usage.total_tokens == sum(
            u.total_tokens for u in record.usage_by_role.values()
        )
        items = record.responses_create_params["input"]
        assert not any(name in i for i in items if i.get("role") == "user" for name in FIELDS)
        assert all(all(name in i for name in FIELDS) for i in items if i.get("role") == "assistant")


@pytest.mark.timeout(60)
async def test_a_capturing_user_model_still_gives_the_policy_no_user_tokens() -> None:
    # Even when the simulated user's own model captures tokens, they never
    # reach the records or the masks: only assistant items are policy turns.
    scenarios = bundled_scenarios()[:2]
    with anyio.fail_after(50):
        async with (
            serve_models() as server,
            OpenAIChatModel("calendar-solver", base_url=server.base_url) as policy,
            OpenAIChatModel(
                "calendar-user", base_url=server.base_url, capture_tokens=True
            ) as simulated,
        ):
            plan = RolloutPlan(
                assistant=partial(_policy_factory, policy),
                user=lambda scenario, seed: llm_user_for(simulated, scenario, seed),
                verifiers=calendar_verifier_set,
            )
            batch = await collect(scenarios, plan)
    for rollout, sample in zip(batch, batch.samples(), strict=True):
        items = rollout.responses_create_params["input"]
        generated = sum(
            len(i["generation_token_ids"]) for i in items if i.get("role") == "assistant"
        )
        assert sum(sample.mask) == generated
        assert not any("generation_token_ids" in i for i in items if i.get("role") == "user")
        assert rollout.usage_by_role["user"].completion_tokens > 0


def _args(**kw: Any) -> argparse.Namespace:
    base = {
        "assistant": "openai:p",
        "user": "openai:u",
        "base_url": None,
        "api_key_env": "CONVO_SIM_TEST_SHARED_KEY",
        "model_api": "chat",
        "capture_tokens": True,
    }
    return argparse.Namespace(**{**base, **kw})


def test_each_side_has_its_own_endpoint_and_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("CONVO_SIM_TEST_POLICY_KEY", "sk-policy-0000000000")
    wiring = wire_actors(
        _args(
            assistant_base_url="http://127.0.0.1:1/v1",
            assistant_api_key_env="CONVO_SIM_TEST_POLICY_KEY",
            user_base_url="http://127.0.0.1:2/v1",
        ),
        builtin_assistant=calendar_assistant,
        builtin_user=calendar_user,
    )
    endpoints = {m.endpoint.model: m.endpoint for m in wiring.models}
    assert endpoints["p"].base_url == "http://127.0.0.1:1/v1"
    assert endpoints["p"].api_key_env == "CONVO_SIM_TEST_POLICY_KEY"
    assert endpoints["p"].capture_tokens is True
    assert endpoints["u"].base_url == "http://127.0.0.1:2/v1"
    assert endpoints["u"].api_key_env == "CONVO_SIM_TEST_SHARED_KEY"
    assert endpoints["u"].capture_tokens is False
    # A side with no server and no key is refused, naming that side's variable.
    with pytest.raises(Exception, match="CONVO_SIM_TEST_USER_KEY"):
        wire_actors(
            _args(
                assistant_base_url="http://127.0.0.1:1/v1",
                user_api_key_env="CONVO_SIM_TEST_USER_KEY",
            ),
            builtin_assistant=calendar_assistant,
            builtin_user=calendar_user,
        )
    # The same model on the same server for both sides: two models, one captures.
    same = wire_actors(
        _args(assistant="openai:m", user="openai:m", base_url="http://127.0.0.1:1/v1"),
        builtin_assistant=calendar_assistant,
        builtin_user=calendar_user,
    )
    assert sorted(m.endpoint.capture_tokens for m in same.models) == [False, True]
    assert "sk-policy" not in json.dumps([repr(m.endpoint) for m in wiring.models])


@pytest.mark.parametrize(
    "flags",
    [
        ["--capture-tokens"],
        ["--capture-tokens", "--assistant", "openai:m", "--base-url", "http://127.0.0.1:9/v1",
         "--model-api", "responses"],
    ],
)  # fmt: skip
def test_capture_without_an_llm_policy_on_chat_is_refused(
    flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never.jsonl"
    assert main(["run", "--no-progress", "--out", str(out), *flags]) == 2
    assert "--capture-tokens" in capsys.readouterr().err
    assert not out.exists()
