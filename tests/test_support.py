"""The support domain: tools on a store database, a policy, a customer with a hidden goal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convo_sim import Message, ToolCall, run_dialogue
from convo_sim._env import DialogueEnv
from convo_sim._errors import ScenarioError
from convo_sim._records import Rollout
from convo_sim._rollouts import generate_rollouts_sync
from convo_sim._sink import read_rollouts
from convo_sim._verification import FinalContext
from convo_sim.agents import FunctionAssistant
from convo_sim.cli import main
from convo_sim.domains import get
from convo_sim.domains.support import SupportAgent, SupportScenario, load_scenarios
from convo_sim.domains.support._agent import decide
from convo_sim.domains.support._generate import generate_scenarios, make_scenario
from convo_sim.domains.support._verifiers import support_outcome

SUPPORT = get("support")


def by_kind(kind: str, seed: int = 0) -> SupportScenario:
    import random

    return make_scenario(random.Random(f"{kind}:{seed}"), f"t-{kind}-{seed}", kind=kind)


def rollout(scenario: SupportScenario, assistant: Any) -> Rollout:
    plan = SUPPORT.plan(assistant=lambda s, seed: assistant)
    [record] = generate_rollouts_sync([scenario], plan)
    return record


def test_run_gives_full_reward_on_every_bundled_scenario(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    assert main(["run", "--domain", "support", "--no-progress", "--out", str(out)]) == 0
    records = read_rollouts(out)
    assert len(records) == len(SUPPORT.scenarios()) >= 14
    assert all(r.reward == 1.0 for r in records), [
        (r.scenario_id, r.verdicts) for r in records if r.reward != 1.0
    ]
    kinds = {r.metadata["kind"] for r in records}
    assert kinds == {
        "cancel",
        "return",
        "return_late",
        "exchange",
        "exchange_cancelled",
        "change_address",
        "transfer",
    }
    for record in records:
        items = record.responses_create_params["input"]
        types = {item.get("type", "message") for item in items}
        assert {"function_call", "function_call_output"} <= types
        tools = record.responses_create_params["tools"]
        assert {t["name"] for t in tools} >= {"find_customer", "get_order", "transfer_to_human"}


def test_run_gives_full_reward_on_500_generated_scenarios(tmp_path: Path) -> None:
    out = tmp_path / "g.jsonl"
    argv = ["run", "--domain", "support", "--generate", "500", "--concurrency", "64"]
    assert main([*argv, "--no-progress", "--out", str(out)]) == 0
    records = read_rollouts(out)
    assert len(records) == 500
    assert sum(r.reward or 0.0 for r in records) == 500.0
    calls = sum(
        1
        for r in records
        for item in r.responses_create_params["input"]
        if item.get("type") == "function_call"
    )
    assert calls >= 2 * 500  # at least find_customer and one more per dialogue


def test_generation_is_seeded_and_the_expected_state_differs_when_the_goal_acts() -> None:
    a, b = generate_scenarios(20, seed=4), generate_scenarios(20, seed=4)
    assert a == b and a != generate_scenarios(20, seed=5)
    for scenario in a:
        changed = scenario.expected_state != scenario.database
        assert changed == (
            scenario.metadata["kind"] not in ("return_late", "exchange_cancelled")
            or bool(scenario.goal and scenario.goal.accept_transfer)
        )


# -- a faulty agent scores 0, with the reason -------------------------------------------


class SkipsIdentity:
    """Reads the order and acts on the customer's yes without ever calling find_customer."""

    async def respond(self, view: Any) -> Message:
        messages = view.transcript.messages
        fake = Message(
            role="tool",
            content=json.dumps({"customer_id": "x", "orders": [view.scenario.goal.order_id]}),
            tool_call_id="fake",
        )
        faked = (
            *messages[:1],
            Message(
                role="assistant",
                content=None,
                tool_calls=(ToolCall(id="fake", name="find_customer", arguments="{}"),),
            ),
            fake,
            *messages[1:],
        )
        reply = decide(faked, {"get_order", "cancel_order", "return_order"})
        if not reply.tool_calls and "verify your identity" in reply.text:
            return Message(role="assistant", content=f"Which order? (order id) {reply.text}")
        return reply


def test_an_agent_that_skips_the_identity_check_scores_zero() -> None:
    record = rollout(by_kind("cancel"), SkipsIdentity())
    assert record.reward == 0.0
    assert record.verdicts[0].reason == "policy_violation:identity_not_verified"
    assert any(s.reason.startswith("policy_violation") for s in record.turn_scores)


class RefundsAnyway:
    """The policy agent, except that it treats every order as inside the refund window."""

    async def respond(self, view: Any) -> Message:
        messages = tuple(
            m.model_copy(update={"content": _young(m.text)}) if m.role == "tool" else m
            for m in view.transcript.messages
        )
        return decide(messages, {_name(t) for t in view.tools})


def _young(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict) and isinstance(data.get("days_since_delivery"), int):
        data["days_since_delivery"] = 1
    return json.dumps(data)


def _name(schema: Any) -> str:
    return str(schema["function"]["name"])


def test_an_agent_that_refunds_outside_the_window_scores_zero() -> None:
    scenario = by_kind("return_late")
    record = rollout(scenario, RefundsAnyway())
    assert record.reward == 0.0
    assert record.verdicts[0].reason == "policy_violation:refund_outside_window"
    assert record.verdicts[0].details["database"]["equal"] is False


class UnknownTool:
    """Calls a tool that does not exist instead of the real one, then claims success."""

    async def respond(self, view: Any) -> Message:
        last = view.transcript.last
        if last is not None and last.role == "tool" and "unknown tool" in last.text:
            return Message(role="assistant", content="Done, your order is cancelled.")
        reply = decide(view.transcript.messages, {_name(t) for t in view.tools})
        for call in reply.tool_calls:
            if call.name == "cancel_order":
                bad = call.model_copy(update={"name": "refund_everything"})
                return reply.model_copy(update={"tool_calls": (bad,)})
        return reply


def test_an_agent_that_calls_an_unknown_tool_scores_zero() -> None:
    record = rollout(by_kind("cancel"), UnknownTool())
    assert record.reward == 0.0
    verdict = record.verdicts[0]
    assert verdict.reason == "database_mismatch"
    assert verdict.details["tool_errors"] >= 1
    outputs = [
        item["output"]
        for item in record.responses_create_params["input"]
        if item.get("type") == "function_call_output"
    ]
    assert any("unknown tool 'refund_everything'" in out for out in outputs)


# -- attacks on the reward -----------------------------------------------------------


class Rewrites:
    """The policy agent with its outcome message rewritten."""

    def __init__(self, rewrite: Any) -> None:
        self.rewrite = rewrite

    async def respond(self, view: Any) -> Message:
        reply = decide(view.transcript.messages, {_name(t) for t in view.tools})
        if reply.text.startswith("Done"):
            return self.rewrite(reply)
        return reply


def test_an_empty_reply_after_the_right_tool_calls_earns_nothing() -> None:
    record = rollout(by_kind("cancel"), Rewrites(lambda m: m.model_copy(update={"content": ""})))
    assert record.reward == 0.0
    assert record.verdicts[0].reason in ("no_final_reply", "customer_not_told")


def test_a_think_block_earns_nothing() -> None:
    think = Rewrites(lambda m: m.model_copy(update={"content": f"<think>easy</think> {m.text}"}))
    record = rollout(by_kind("return"), think)
    assert record.reward == 0.0
    assert record.verdicts[0].reason == "think_found"


def test_a_tool_call_only_final_message_earns_nothing() -> None:
    def respond(view: Any) -> Message:
        n = len(view.transcript)
        call = ToolCall(id=f"c{n}", name="get_order", arguments='{"order_id": "W0000000"}')
        return Message(role="assistant", content=None, tool_calls=(call,))

    record = rollout(by_kind("cancel"), FunctionAssistant(respond))
    assert record.reward == 0.0
    assert record.termination == "max_steps"
    assert record.verdicts[0].reason == "no_final_reply"


def test_mutating_into_the_expected_state_without_verifying_earns_nothing() -> None:
    scenario = by_kind("cancel")
    oid = scenario.goal.order_id if scenario.goal else ""
    must = scenario.goal.must_hear if scenario.goal else ()
    done: list[bool] = []

    def respond(view: Any) -> Message:
        if not done:
            done.append(True)
            call = ToolCall(id="c1", name="cancel_order", arguments=json.dumps({"order_id": oid}))
            return Message(role="assistant", content=None, tool_calls=(call,))
        return Message(role="assistant", content=f"Cancelled {oid}; refund {' '.join(must)}.")

    record = rollout(scenario, FunctionAssistant(respond))
    assert record.verdicts[0].details["database"]["equal"] is True  # the state alone is right
    assert record.reward == 0.0
    assert record.verdicts[0].reason.startswith("policy_violation:")


def test_the_customer_refuses_a_change_it_did_not_ask_for() -> None:
    scenario = by_kind("cancel")

    async def respond(view: Any) -> Message:
        reply = decide(view.transcript.messages, {_name(t) for t in view.tools})
        if "Shall I proceed" in reply.text:
            return reply.model_copy(update={"content": reply.text.replace("cancel", "return")})
        return reply

    record = rollout(scenario, FunctionAssistant(respond))
    said = [m.text for m in record.transcript if m.role == "user"]
    assert "No, that's not what I want." in said
    assert record.reward == 0.0


@pytest.mark.parametrize(
    "persona", ["cooperative", "terse", "verbose", "upfront", "withholding", "noisy", "vague"]
)
def test_personas_still_reach_the_goal(persona: str) -> None:
    scenarios = [s.model_copy(update={"persona": persona}) for s in generate_scenarios(14, seed=9)]
    records = generate_rollouts_sync(scenarios, SUPPORT.plan())
    assert [r.reward for r in records] == [1.0] * 14


def test_an_impatient_customer_gives_up() -> None:
    scenario = by_kind("exchange").model_copy(update={"persona": "impatient"})
    [record] = generate_rollouts_sync([scenario], SUPPORT.plan())
    assert record.termination == "user_stop" and record.reward == 0.0


# -- the step-wise environment ---------------------------------------------------------


async def test_the_env_runs_a_support_dialogue_with_tool_steps() -> None:
    env: DialogueEnv[Any] = DialogueEnv("support")
    scenario = by_kind("exchange")
    obs = await env.reset(scenario)
    saw_tool_observation = False
    with anyio.fail_after(10):
        while not env.done:
            reply = decide(obs.transcript.messages, {_name(t) for t in obs.tools})
            step = await env.step(reply)
            obs = step.observation
            if reply.tool_calls and not env.done:
                assert [m.role for m in step.info["new_messages"]] == ["tool"]
                saw_tool_observation = True
    result = await env.result()
    assert saw_tool_observation and result.reward == 1.0
    record = await env.rollout()
    assert record.reward == 1.0


async def test_run_dialogue_with_the_domain_pieces() -> None:
    scenario = by_kind("change_address")
    turn, final = SUPPORT.verifiers(scenario)
    assert SUPPORT.tools is not None
    result = await run_dialogue(
        SupportAgent(),
        SUPPORT.user(scenario, 0),
        prefix=scenario.opening_transcript(),
        scenario=scenario,
        tools=SUPPORT.tools(scenario),
        turn_verifiers=turn,
        final_verifiers=final,
    )
    assert result.reward == 1.0


# -- input and fuzzing -------------------------------------------------------------------


def test_a_malformed_scenario_file_names_its_line(tmp_path: Path) -> None:
    good = SUPPORT.scenarios()[0].model_dump_json()
    path = tmp_path / "s.jsonl"
    path.write_text(good + "\n" + json.dumps({"id": "x", "database": {"today": "soon"}}) + "\n")
    with pytest.raises(ScenarioError) as info:
        load_scenarios(path)
    assert info.value.line == 2 and "database" in str(info.value)
    assert main(["run", "--domain", "support", "--scenarios", str(path)]) == 2


_CALL = st.builds(
    lambda name, args: (name, args),
    st.sampled_from(
        [
            "find_customer",
            "get_order",
            "cancel_order",
            "return_order",
            "exchange_item",
            "change_address",
            "transfer_to_human",
            "nope",
        ]
    ),
    st.one_of(
        st.text(max_size=30),
        st.dictionaries(
            st.sampled_from(
                [
                    "order_id",
                    "email",
                    "item_id",
                    "new_variant",
                    "address",
                    "customer_id",
                    "name",
                    "zip",
                ]
            ),
            st.one_of(st.text(max_size=12), st.integers(), st.none()),
            max_size=4,
        ).map(json.dumps),
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=st.lists(_CALL, max_size=6), final=st.text(max_size=30))
def test_no_sequence_of_tool_calls_crashes_the_verifiers(
    calls: list[tuple[str, str]], final: str
) -> None:
    scenario = SUPPORT.scenarios()[0]
    env = SUPPORT.tools(scenario) if SUPPORT.tools else None
    assert env is not None
    messages = list(scenario.opening_transcript().messages)
    messages.append(Message(role="user", content="yes"))
    for index, (name, arguments) in enumerate(calls):
        call = ToolCall(id=f"c{index}", name=name, arguments=arguments)
        messages.append(Message(role="assistant", content=None, tool_calls=(call,)))
        messages.append(env.run(call))
    messages.append(Message(role="assistant", content=final))
    from convo_sim import TerminationReason, Transcript

    ctx = FinalContext(
        Transcript(messages=tuple(messages)), TerminationReason.MAX_TURNS, 1, (), scenario
    )
    verdict = support_outcome(ctx)
    assert 0.0 <= verdict.reward <= 1.0
    if verdict.reward == 1.0:
        assert scenario.goal is not None
        assert all(f.lower() in final.lower() for f in scenario.goal.must_hear)


# -- the other commands --------------------------------------------------------------


def test_verify_report_export_and_experiment_take_support_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.jsonl"
    assert main(["run", "--domain", "support", "--no-progress", "--out", str(out)]) == 0
    rescored = tmp_path / "v.jsonl"
    assert main(["verify", "--domain", "support", str(out), "--out", str(rescored)]) == 0
    assert "reward changed for 0" in capsys.readouterr().out
    assert [r.reward for r in read_rollouts(rescored)] == [r.reward for r in read_rollouts(out)]

    html = tmp_path / "report.html"
    assert main(["report", str(out), "--html", str(html)]) == 0
    page = html.read_text(encoding="utf-8")
    assert "assistant · turn 2 · tool step" in page
    assert "→ find_customer(" in page and "tool result · call_1" in page
    assert page.count('class="msg tool"') >= 2 * len(read_rollouts(out))

    rows = tmp_path / "m.jsonl"
    assert main(["export", "--format", "messages", "--out", str(rows), str(out)]) == 0
    row = json.loads(rows.read_text(encoding="utf-8").splitlines()[0])
    assert row["tools"][0]["function"]["name"] == "find_customer"
    roles = [m["role"] for m in row["messages"]]
    assert "tool" in roles and any(m.get("tool_calls") for m in row["messages"])

    grid = tmp_path / "exp"
    argv = ["experiment", "--domain", "support", "--personas", "cooperative,impatient"]
    argv += ["--seeds", "1", "--generate", "3", "--out-dir", str(grid), "--no-html"]
    assert main(argv) == 0
    data = json.loads((grid / "results.json").read_text())
    cells = {c["group"]["persona"]: c for c in data["cells"]}
    assert cells["cooperative"]["mean_reward"] == 1.0
    assert cells["impatient"]["mean_reward"] == 0.0


async def test_run_scenario_gives_the_support_dialogue_its_tools() -> None:
    from convo_sim.scenarios import run_scenario

    with anyio.fail_after(10):
        result = await run_scenario(by_kind("return"), domain="support")
    assert result.reward == 1.0
    assert any(m.role == "tool" for m in result.transcript)


def test_the_step_limits_are_cli_options(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    argv = ["run", "--domain", "support", "--no-progress", "--out", str(out)]
    assert main([*argv, "--max-steps", "2"]) == 0
    records = read_rollouts(out)
    assert {r.termination for r in records} == {"max_steps"}
    assert {r.terminated_by for r in records} == {"max_steps(2)"}
    assert all(r.reward == 0.0 for r in records)
    assert main([*argv, "--no-resume", "--max-turn-steps", "1"]) == 0
    assert {r.terminated_by for r in read_rollouts(out)} == {"max_turn_steps(1)"}


def test_the_sync_env_runs_a_support_dialogue() -> None:
    from convo_sim import SyncDialogueEnv

    env: SyncDialogueEnv[Any] = SyncDialogueEnv("support")
    obs = env.reset(by_kind("transfer"))
    while not env.done:
        obs = env.step(decide(obs.transcript.messages, {_name(t) for t in obs.tools})).observation
    result = env.result()
    assert result.reward == 1.0
    assert [m.name for m in result.transcript if m.role == "tool"] == [
        "find_customer",
        "transfer_to_human",
    ]
