"""The customer-support domain: an agent with tools on a store's database, and a customer.

`DOMAIN` is what `convo_sim.domains.get("support")` returns; see
docs/support.md for the store, the tools, the policy and the reward rule.
"""

from __future__ import annotations

from convo_sim.domains.support._agent import SupportAgent
from convo_sim.domains.support._customer import SupportCustomer
from convo_sim.domains.support._db import StoreDB
from convo_sim.domains.support._domain import DOMAIN
from convo_sim.domains.support._generate import generate_scenarios
from convo_sim.domains.support._loaders import bundled_scenarios, load_scenarios
from convo_sim.domains.support._policy import POLICY
from convo_sim.domains.support._scenario import SupportGoal, SupportScenario
from convo_sim.domains.support._tools import TOOLS, tool_env

__all__ = [
    "DOMAIN",
    "POLICY",
    "TOOLS",
    "StoreDB",
    "SupportAgent",
    "SupportCustomer",
    "SupportGoal",
    "SupportScenario",
    "bundled_scenarios",
    "generate_scenarios",
    "load_scenarios",
    "tool_env",
]
