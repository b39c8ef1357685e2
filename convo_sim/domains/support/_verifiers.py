"""The support domain's verifiers and its reward rule (docs/support.md).

* `policy` (turn verifier): 1 for a turn whose tool calls break no rule of
  the written policy, else 0 with the violations (`_policy.violations`).
* `support_outcome` (final verifier): 1 only when all three hold, else 0
  with the first that fails as its reason, and each one's result in the
  details:

  - `database`: the final database (the transcript's tool calls replayed on
    the scenario's database) equals the expected one (`database_mismatch`);
  - `policy`: no tool call of the whole dialogue broke the policy
    (`policy_violation`);
  - `informed`: every fact the customer needed (`goal.must_hear`: the
    refund, the new variant, why a request was denied) is in the agent's
    messages (`customer_not_told`), and the final reply holds no `<think>`
    block (`think_found`).

Above them stands the core's final-reply rule: a dialogue whose last
assistant message is missing, empty or only calls tools scores 0 before
any verifier is asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from convo_sim._completion import TurnContext
from convo_sim._results import TurnScore, Verdict
from convo_sim._tools import replay
from convo_sim._verification import FinalContext, FinalVerifier, TurnVerifier
from convo_sim.domains.support._db import StoreDB
from convo_sim.domains.support._policy import violations
from convo_sim.domains.support._scenario import SupportScenario
from convo_sim.domains.support._tools import tool_env

__all__ = ["final_database", "policy", "support_outcome", "support_verifiers"]

THINK = "<think>"


def final_database(scenario: SupportScenario, ctx: FinalContext[Any]) -> StoreDB:
    """The database the dialogue ended with: its tool calls replayed on the scenario's."""
    return replay(tool_env(scenario), ctx.transcript).state


def policy(ctx: TurnContext[SupportScenario]) -> TurnScore:
    """0 when a tool call of this turn broke the policy, else 1."""
    scenario = ctx.scenario
    if scenario is None:
        return TurnScore(score=1.0, reason="no_scenario")
    found = [v for v in violations(ctx.transcript, scenario.database) if v.turn == ctx.turn]
    if found:
        return TurnScore(
            score=0.0,
            reason=f"policy_violation:{found[0].rule}",
            details={"violations": [v.as_dict() for v in found]},
        )
    return TurnScore(score=1.0, reason="pass")


def _diff(got: StoreDB, want: StoreDB) -> list[str]:
    a, b = got.model_dump(), want.model_dump()
    out: list[str] = []
    for key in sorted(set(a) | set(b)):
        if key in ("orders", "customers"):
            for oid in sorted(set(a[key]) | set(b[key])):
                if a[key].get(oid) != b[key].get(oid):
                    out.append(f"{key}.{oid}")
        elif a.get(key) != b.get(key):
            out.append(key)
    return out


def support_outcome(ctx: FinalContext[SupportScenario]) -> Verdict:
    """1 when the database is the expected one, no rule was broken and the customer was told."""
    scenario = ctx.scenario
    if scenario is None or scenario.expected_state is None or scenario.goal is None:
        return Verdict(reward=0.0, reason="no_expected_state")
    got = final_database(scenario, ctx)
    diff = _diff(got, scenario.expected_state)
    broken = [v.as_dict() for v in violations(ctx.transcript, scenario.database)]
    said = " ".join(m.text for m in ctx.transcript.messages if m.role == "assistant").lower()
    missing = [fact for fact in scenario.goal.must_hear if fact.lower() not in said]
    reply = ctx.final_reply
    think = reply is not None and THINK in reply.text
    tool_errors = sum(
        1 for m in ctx.transcript.messages if m.role == "tool" and m.text.startswith('{"error"')
    )
    details: dict[str, Any] = {
        "database": {"equal": not diff, "differs_at": diff},
        "policy": {"violations": broken},
        "informed": {"missing": missing, "think_found": think},
        "tool_errors": tool_errors,
    }
    for failed, reason in (
        (bool(broken), f"policy_violation:{broken[0]['rule']}" if broken else ""),
        (bool(diff), "database_mismatch"),
        (think, "think_found"),
        (bool(missing), "customer_not_told"),
    ):
        if failed:
            return Verdict(reward=0.0, reason=reason, details=details)
    return Verdict(reward=1.0, reason="pass", details=details)


def support_verifiers(
    scenario: SupportScenario,
) -> tuple[Sequence[TurnVerifier[SupportScenario]], Sequence[FinalVerifier[SupportScenario]]]:
    """The policy turn verifier and the outcome final verifier."""
    return (policy,), (support_outcome,)
