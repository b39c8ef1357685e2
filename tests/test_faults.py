"""Injected faults over loopback: transient ones are retried with nothing lost,
persistent ones end only the dialogue they hit. Every case runs on both
transports (`lean` and `sdk`): the retry layer is the same on both."""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import anyio
import pytest
from structlog.testing import capture_logs

from convo_sim import DialogueResult, RetryPolicy, TerminationReason
from convo_sim._faults import Fault, FaultPlan
from convo_sim._openai_model import OpenAIChatModel
from convo_sim._served_models import ServedModel, default_models
from convo_sim._server import ModelServer, serve_models
from convo_sim.cli.actors_spec import llm_assistant_for, llm_user_for
from convo_sim.scenarios import Scenario, bundled_scenarios, run_scenario

FAST = RetryPolicy(attempts=4, initial=0.001, max_wait=0.01, jitter=0.001, max_retry_after=0.02)
# The client's per-request timeout for "slow-solver", whose faults are hangs;
# the other models get a generous one, so a loaded machine cannot fake a fault.
SHORT_TIMEOUT = 0.4
TIMEOUT = 10.0
SEED = 11
TRANSPORTS = ["lean", "sdk"]
Transport = Literal["lean", "sdk"]


def _scenario() -> Scenario:
    goal_scenarios = [s for s in bundled_scenarios("calendar_examples") if s.goal is not None]
    return max(goal_scenarios, key=lambda s: len(s.goal.steps) if s.goal else 0)


def _models() -> dict[str, ServedModel]:
    models = default_models()
    # Aliases, so a persistent fault can target one dialogue's model by name.
    for name in ("broken-solver", "slow-solver", "mute-solver"):
        models[name] = models["calendar-solver"]
    models["broken-user"] = models["calendar-user"]
    return models


@dataclass
class Rig:
    server: ModelServer
    models: dict[str, OpenAIChatModel]

    async def run(
        self,
        scenario: Scenario,
        *,
        assistant: str = "calendar-solver",
        user: str = "calendar-user",
    ) -> DialogueResult:
        return await run_scenario(
            scenario,
            assistant=llm_assistant_for(self.models[assistant], scenario, SEED),
            user=llm_user_for(self.models[user], scenario, SEED),
        )


@asynccontextmanager
async def rig(plan: FaultPlan | None = None, transport: Transport = "lean") -> AsyncIterator[Rig]:
    async with serve_models(_models(), faults=plan) as server:
        models = {
            name: OpenAIChatModel(
                name,
                base_url=server.base_url,
                retry=FAST,
                timeout=SHORT_TIMEOUT if name == "slow-solver" else TIMEOUT,
                transport=transport,
            )
            for name in server.models
        }
        try:
            yield Rig(server, models)
        finally:
            for model in models.values():
                await model.aclose()


def _spoken(result: DialogueResult) -> list[tuple[str, str | None]]:
    return [(m.role, m.content) for m in result.transcript]


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


TRANSIENT = [
    pytest.param(Fault.rate_limit(retry_after="0"), "calendar-solver", id="429-retry-after-0"),
    pytest.param(Fault.rate_limit(retry_after="1"), "calendar-user", id="429-retry-after-1-capped"),
    pytest.param(Fault.rate_limit(retry_after=_http_date(30)), "calendar-solver", id="429-date"),
    pytest.param(Fault.rate_limit(retry_after=None), "calendar-user", id="429-no-header"),
    pytest.param(Fault.server_error(500), "calendar-solver", id="500"),
    pytest.param(Fault.server_error(503), "calendar-user", id="503"),
    pytest.param(Fault.hang(5.0), "slow-solver", id="hang-past-the-timeout"),
    pytest.param(Fault.malformed(), "calendar-user", id="malformed-json"),
    pytest.param(Fault.disconnect(), "calendar-solver", id="dropped-connection"),
    pytest.param(Fault.empty(), "calendar-user", id="empty-content"),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("fault", "model"), TRANSIENT)
async def test_transient_faults_are_retried_and_nothing_is_lost(
    fault: Fault, model: str, transport: Transport
) -> None:
    scenario = _scenario()
    with anyio.fail_after(25):
        async with rig(transport=transport) as clean:
            expected = await clean.run(scenario)
        # Twice in a row, on the second request of that model: mid-dialogue.
        plan = FaultPlan().add(fault, model=model, times=2, skip=1)
        side = {"assistant": model} if "solver" in model else {"user": model}
        async with rig(plan, transport) as faulty:
            with capture_logs() as logs:
                result = await faulty.run(scenario, **side)
    assert expected.termination is TerminationReason.USER_STOP
    assert expected.reward == 1.0
    assert plan.injected[fault.kind] == 2
    assert result.error is None
    assert result.termination == expected.termination
    assert _spoken(result) == _spoken(expected)
    assert result.reward == expected.reward
    retried = [e for e in logs if e["event"] in ("model.retry", "model.empty_reply")]
    assert len(retried) == 2
    if fault.status == 429:
        assert all(e["status"] == 429 for e in retried)
        assert all(e["wait_s"] <= FAST.max_retry_after for e in retried)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_persistent_faults_end_only_their_own_dialogue(transport: Transport) -> None:
    scenario = _scenario()
    plan = FaultPlan()
    plan.add(Fault.server_error(500), model="broken-solver", times=None)
    plan.add(Fault.hang(30.0), model="slow-solver", times=None)
    plan.add(Fault.empty(), model="mute-solver", times=None)
    plan.add(Fault.disconnect(), model="broken-user", times=None)
    runs = {
        "broken-solver": {"assistant": "broken-solver"},
        "slow-solver": {"assistant": "slow-solver"},
        "mute-solver": {"assistant": "mute-solver"},
        "broken-user": {"user": "broken-user"},
        "healthy-1": {},
        "healthy-2": {},
        "healthy-3": {},
    }
    results: dict[str, DialogueResult] = {}
    with anyio.fail_after(25):
        async with rig(plan, transport) as faulty:

            async def one(name: str) -> None:
                results[name] = await faulty.run(scenario, **runs[name])

            async with anyio.create_task_group() as tg:
                for name in runs:
                    tg.start_soon(one, name)
        async with rig(transport=transport) as clean:
            expected = await clean.run(scenario)

    for name in ("healthy-1", "healthy-2", "healthy-3"):
        assert results[name].error is None
        assert _spoken(results[name]) == _spoken(expected)
        assert results[name].reward == expected.reward == 1.0

    def failure(name: str) -> tuple[TerminationReason, str, str, str]:
        result = results[name]
        assert result.error is not None, name
        return result.termination, result.error.source, result.error.type, result.error.message

    termination, source, kind, message = failure("broken-solver")
    assert (termination, source, kind) == (
        TerminationReason.ASSISTANT_ERROR,
        "assistant",
        "ModelError",
    )
    assert "HTTP 500" in message and f"after {FAST.attempts} attempt(s)" in message
    termination, source, kind, message = failure("slow-solver")
    assert (termination, source, kind) == (
        TerminationReason.ASSISTANT_ERROR,
        "assistant",
        "ModelError",
    )
    assert "Timeout" in message and f"after {FAST.attempts} attempt(s)" in message
    termination, source, kind, _ = failure("mute-solver")
    assert (termination, source, kind) == (
        TerminationReason.ASSISTANT_ERROR,
        "assistant",
        "EmptyReplyError",
    )
    termination, source, kind, message = failure("broken-user")
    assert (termination, source, kind) == (TerminationReason.USER_ERROR, "user", "ModelError")
    assert f"after {FAST.attempts} attempt(s)" in message and "HTTP" not in message
    # A failed dialogue keeps what was said before the failure, and is still scored.
    assert results["broken-user"].transcript[0].role == "system"
    assert all(r.reward is not None for r in results.values())
