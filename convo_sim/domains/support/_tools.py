"""The support agent's tools: typed functions of the store database.

The tools keep the database consistent (an order that does not exist, an
action its status does not allow, a variant the product does not have: a
`ToolError`, which the model sees as the call's result). They do not apply
the written policy (identity first, confirmation, the 30-day window): that
is the agent's job, and the policy verifier's to check (`_policy`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from convo_sim._tools import Tool, ToolEnv, ToolError
from convo_sim.domains.support._db import Order, Refund, StoreDB, Transfer

__all__ = ["MUTATING", "TOOLS", "tool_env"]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FindCustomer(_Args):
    """Either the account's email, or the customer's full name and zip code."""

    email: str | None = Field(default=None, description="the email address on the account")
    name: str | None = Field(default=None, description="the customer's full name")
    zip: str | None = Field(default=None, description="the zip code of the customer's address")


class OrderId(_Args):
    order_id: str = Field(description="the order id, like W1234567")


class CancelOrder(OrderId):
    reason: str = Field(default="", description="why the customer cancels")


class ExchangeItem(OrderId):
    item_id: str = Field(description="the item to exchange")
    new_variant: str = Field(description="the variant the customer wants instead")


class ChangeAddress(OrderId):
    address: str = Field(min_length=1, description="the new shipping address")


class TransferToHuman(_Args):
    customer_id: str = Field(description="the verified customer's id")
    summary: str = Field(default="", description="what the customer needs, for the human agent")


def _order(db: StoreDB, order_id: str) -> Order:
    order = db.orders.get(order_id.strip().lstrip("#"))
    if order is None:
        raise ToolError(f"no order {order_id!r}")
    return order


def find_customer(db: StoreDB, args: FindCustomer) -> dict[str, Any]:
    """Find the customer by email, or by full name and zip code."""
    if args.email:
        found = [c for c in db.customers.values() if c.email.lower() == args.email.lower()]
    elif args.name and args.zip:
        found = [
            c
            for c in db.customers.values()
            if c.name.lower() == args.name.strip().lower() and c.zip == args.zip.strip()
        ]
    else:
        raise ToolError("give either email, or name and zip")
    if not found:
        raise ToolError("no customer matches")
    customer = found[0]
    return {
        "customer_id": customer.id,
        "name": customer.name,
        "orders": list(customer.orders),
        "payment_methods": [m.model_dump() for m in customer.payment_methods],
    }


def get_order(db: StoreDB, args: OrderId) -> dict[str, Any]:
    """The order's details, its total and the days since it was delivered."""
    order = _order(db, args.order_id)
    data = order.model_dump()
    data["total"] = order.total
    data["days_since_delivery"] = (
        None if order.delivered_day is None else db.today - order.delivered_day
    )
    return data


def _refund(db: StoreDB, order: Order) -> dict[str, Any]:
    db.refunds.append(
        Refund(order_id=order.id, amount=order.total, payment_method_id=order.payment_method_id)
    )
    return {
        "order_id": order.id,
        "status": order.status,
        "refunded": order.total,
        "payment_method_id": order.payment_method_id,
    }


def cancel_order(db: StoreDB, args: CancelOrder) -> dict[str, Any]:
    """Cancel a pending order and refund its total to the payment method it was paid with."""
    order = _order(db, args.order_id)
    if order.status != "pending":
        raise ToolError(f"order {order.id} is {order.status}; only pending orders can be cancelled")
    order.status = "cancelled"
    return _refund(db, order)


def return_order(db: StoreDB, args: OrderId) -> dict[str, Any]:
    """Return a delivered order and refund its total to the payment method it was paid with."""
    order = _order(db, args.order_id)
    if order.status != "delivered":
        raise ToolError(
            f"order {order.id} is {order.status}; only delivered orders can be returned"
        )
    order.status = "returned"
    return _refund(db, order)


def exchange_item(db: StoreDB, args: ExchangeItem) -> dict[str, Any]:
    """Exchange one item of a delivered order for another variant of the same product."""
    order = _order(db, args.order_id)
    if order.status != "delivered":
        raise ToolError(
            f"order {order.id} is {order.status}; only delivered orders can be exchanged"
        )
    for item in order.items:
        if item.item_id == args.item_id:
            if args.new_variant not in item.variants or args.new_variant == item.variant:
                raise ToolError(f"{args.new_variant!r} is not another variant of {item.product}")
            item.variant = args.new_variant
            order.status = "exchange_requested"
            return {"order_id": order.id, "item_id": item.item_id, "variant": item.variant}
    raise ToolError(f"order {order.id} has no item {args.item_id!r}")


def change_address(db: StoreDB, args: ChangeAddress) -> dict[str, Any]:
    """Change the shipping address of a pending order."""
    order = _order(db, args.order_id)
    if order.status != "pending":
        raise ToolError(f"order {order.id} is {order.status}; only pending orders can be changed")
    order.address = args.address.strip()
    return {"order_id": order.id, "address": order.address}


def transfer_to_human(db: StoreDB, args: TransferToHuman) -> dict[str, Any]:
    """Hand the customer over to a human agent."""
    if args.customer_id not in db.customers:
        raise ToolError(f"no customer {args.customer_id!r}")
    db.transfers.append(Transfer(customer_id=args.customer_id))
    return {"transferred": True}


TOOLS: tuple[Tool[StoreDB], ...] = (
    Tool(
        "find_customer",
        "Find a customer by email, or by full name and zip code.",
        FindCustomer,
        find_customer,
    ),
    Tool("get_order", "Get an order's details, total and days since delivery.", OrderId, get_order),
    Tool("cancel_order", "Cancel a pending order; refunds its total.", CancelOrder, cancel_order),
    Tool("return_order", "Return a delivered order; refunds its total.", OrderId, return_order),
    Tool(
        "exchange_item",
        "Exchange an item of a delivered order for another variant.",
        ExchangeItem,
        exchange_item,
    ),
    Tool(
        "change_address",
        "Change the shipping address of a pending order.",
        ChangeAddress,
        change_address,
    ),
    Tool(
        "transfer_to_human",
        "Transfer the customer to a human agent.",
        TransferToHuman,
        transfer_to_human,
    ),
)
"""The tools, in the order the model sees them."""

MUTATING = frozenset(
    ("cancel_order", "return_order", "exchange_item", "change_address", "transfer_to_human")
)
"""The tools that change the database."""


def tool_env(scenario: Any) -> ToolEnv[StoreDB]:
    """A fresh tool environment on a copy of the scenario's database."""
    return ToolEnv(list(TOOLS), scenario.database.model_copy(deep=True))
