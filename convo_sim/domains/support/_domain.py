"""The support domain behind the `Domain` seam: its factories, card and `DOMAIN`."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from convo_sim._actors import Actor
from convo_sim._errors import ScenarioError
from convo_sim._verification import FinalVerifier, TurnVerifier
from convo_sim.domains._domain import Domain
from convo_sim.domains.support._agent import SupportAgent
from convo_sim.domains.support._customer import SupportCustomer
from convo_sim.domains.support._db import StoreDB
from convo_sim.domains.support._generate import generate_scenarios
from convo_sim.domains.support._loaders import bundled_scenarios, load_scenarios
from convo_sim.domains.support._policy import POLICY
from convo_sim.domains.support._scenario import SupportScenario
from convo_sim.domains.support._served import served_models
from convo_sim.domains.support._tools import tool_env
from convo_sim.domains.support._verifiers import support_verifiers
from convo_sim.scenarios._run import user_seed
from convo_sim.users._persona import UnknownPersonaError, get_persona
from convo_sim.users._simple import ScriptedUser

__all__ = ["DOMAIN", "default_user"]


def default_user(scenario: SupportScenario, *, seed: int | None = None) -> Actor:
    """The scenario's customer (its persona, if it names one), or its script.

    Raises:
        ScenarioError: the scenario names a persona that is not bundled.
    """
    if scenario.user_script:
        return ScriptedUser(scenario.user_script)
    persona = None
    if scenario.persona is not None:
        try:
            persona = get_persona(scenario.persona)
        except UnknownPersonaError as exc:
            raise ScenarioError(
                f"scenario {scenario.id!r}: {exc}", scenario_id=scenario.id
            ) from None
    return SupportCustomer(scenario, persona=persona, seed=seed)


def assistant(scenario: SupportScenario, seed: int) -> Actor:
    """The rule-based, policy-following agent."""
    return SupportAgent()


def user(scenario: SupportScenario, seed: int) -> Actor:
    """The scenario's customer, seeded by `user_seed(scenario, seed)`.

    Raises:
        ScenarioError: the scenario names a persona that is not bundled.
    """
    return default_user(scenario, seed=user_seed(scenario, seed))


def verifiers(
    scenario: SupportScenario,
) -> tuple[Sequence[TurnVerifier[SupportScenario]], Sequence[FinalVerifier[SupportScenario]]]:
    """The policy turn verifier and the outcome final verifier."""
    return support_verifiers(scenario)


def card(scenario: SupportScenario, seed: int) -> dict[str, Any]:
    """What a served `support-customer` rebuilds the customer from (its seed: the user's)."""
    return {
        "id": scenario.id,
        "goal": scenario.goal.model_dump(mode="json") if scenario.goal else None,
        "persona": scenario.persona,
        "seed": user_seed(scenario, seed),
        "user_script": list(scenario.user_script),
    }


def from_card(data: Mapping[str, Any]) -> SupportScenario:
    """The scenario a card describes (without the store: the customer does not see it).

    Raises:
        pydantic.ValidationError: the card does not describe a support scenario.
    """
    return SupportScenario.model_validate(
        {
            "id": data.get("id", "served"),
            "goal": data.get("goal"),
            "persona": data.get("persona"),
            "seed": data.get("seed", 0),
            "user_script": data.get("user_script") or (),
            "database": StoreDB(today=0),
        }
    )


def describe_goal(scenario: SupportScenario) -> str | None:
    """The customer's goal in words, for an LLM customer's prompt."""
    goal = scenario.goal
    if goal is None:
        return None
    who = (
        f"your email is {goal.email}"
        if goal.identify_by == "email"
        else f"your name is {goal.name} and your zip code is {goal.zip}"
    )
    want = {
        "cancel": f"cancel order {goal.order_id}",
        "return": f"return order {goal.order_id} and get a refund",
        "exchange": f'exchange the {goal.product} of order {goal.order_id} for "{goal.new_variant}"',
        "change_address": f'ship order {goal.order_id} to "{goal.new_address}"',
        "transfer": f"{goal.request}",
    }[goal.kind]
    transfer = "accept" if goal.accept_transfer else "refuse"
    return (
        f"You are a customer of an online store and you want to {want}. When asked who you "
        f"are, say {who}. Give one piece of information at a time, only when asked. Say yes "
        f"only to a change that is exactly what you want. If the agent cannot help and offers "
        f"a human agent, {transfer} it."
    )


DOMAIN: Domain[SupportScenario] = Domain(
    name="support",
    description="a store's support agent calls tools on the store's database (tau-bench style)",
    scenario_type=SupportScenario,
    load=load_scenarios,
    bundled={"support_examples": functools.partial(bundled_scenarios, "support_examples")},
    default_sets=("support_examples",),
    generate=generate_scenarios,
    assistant=assistant,
    user=user,
    verifiers=verifiers,
    system_prompt=POLICY,
    served_models=served_models,
    card=card,
    from_card=from_card,
    describe_goal=describe_goal,
    tools=tool_env,
)
"""The support domain (`convo_sim.domains.get("support")`)."""
