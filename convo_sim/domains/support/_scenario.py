"""Support scenarios: the customer's hidden goal, the store's database, the expected one."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from convo_sim.domains.support._db import StoreDB
from convo_sim.scenarios._model import Scenario

__all__ = ["GoalKind", "SupportGoal", "SupportScenario"]

GoalKind = Literal["cancel", "return", "exchange", "change_address", "transfer"]


class SupportGoal(BaseModel):
    """What the customer wants, and what it knows; the agent learns it only by asking.

    Attributes:
        kind: the request.
        name: the customer's full name.
        email: the account's email.
        zip: the zip code of the customer's address.
        identify_by: what the customer gives when asked who it is.
        order_id: the order the request is about (None: a `transfer` request
            about no order).
        product: for an exchange, the product to exchange.
        new_variant: for an exchange, the variant wanted instead.
        new_address: for an address change, the new address.
        request: for a `transfer`, what the customer asks for in words.
        accept_transfer: when the policy denies the request and the agent
            offers a human agent, whether the customer accepts.
        must_hear: what the agent must tell the customer (case-insensitive
            substrings of its messages): the refund, the new variant, the
            reason of a denial.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: GoalKind
    name: str
    email: str
    zip: str
    identify_by: Literal["email", "name_zip"] = "email"
    order_id: str | None = None
    product: str | None = None
    new_variant: str | None = None
    new_address: str | None = None
    request: str | None = None
    accept_transfer: bool = False
    must_hear: tuple[str, ...] = ()


class SupportScenario(Scenario[SupportGoal, StoreDB]):
    """A support dialogue: the goal, the database it starts from, the database it must end with."""

    database: StoreDB

    @model_validator(mode="before")
    @classmethod
    def _tools_in_metadata(cls, data: Any) -> Any:
        # Records name the tools the assistant had, as NeMo-Gym's
        # `responses_create_params.tools` does.
        if isinstance(data, dict):
            from convo_sim._tools import responses_tools
            from convo_sim.domains.support._tools import TOOLS

            meta = dict(data.get("metadata") or {})
            params = dict(meta.get("responses_create_params") or {})
            if "tools" not in params:
                params["tools"] = responses_tools([t.chat_schema() for t in TOOLS])
                meta["responses_create_params"] = params
                data = {**data, "metadata": meta}
        return data
