"""The support domain's models for `convo-sim serve`.

`support-agent` is `SupportAgent`, which decides from the transcript alone
(tool calls and results included) and calls only the tools the request
offers (`tools`): it answers with real `tool_calls`. `support-customer` is
the scenario's default customer, rebuilt from the scenario card in the LLM
user's system prompt (see `card` in `_domain`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from convo_sim._actors import Actor
from convo_sim._served_models import ActorModel, ServedModel

__all__ = ["served_models"]


def served_models() -> dict[str, ServedModel]:
    """`support-agent` and `support-customer`, by name."""
    return {
        "support-agent": ActorModel("assistant", _agent),
        "support-customer": ActorModel("user", _customer),
    }


def _agent(card: Mapping[str, Any] | None) -> tuple[Actor, object | None]:
    from convo_sim.domains.support._agent import SupportAgent

    return SupportAgent(), None


def _customer(card: Mapping[str, Any] | None) -> tuple[Actor, object | None]:
    from convo_sim.domains.support._domain import default_user, from_card

    if card is None:
        raise ValueError(
            "support-customer needs a scenario card in its system prompt; "
            "build the LLM user with LLMUser(..., scenario_card=...)"
        )
    scenario = from_card(card)
    return default_user(scenario, seed=scenario.seed), scenario
