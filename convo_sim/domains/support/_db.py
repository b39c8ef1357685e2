"""The store's database: customers, their payment methods, orders and their items.

A `StoreDB` is the dialogue's state: the tools (`_tools`) read and change
it, and the final verifier compares the one a dialogue ends with to the
scenario's expected one. Money is in cents; days are day numbers, `today`
being the day of the dialogue.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Customer",
    "Order",
    "OrderItem",
    "OrderStatus",
    "PaymentMethod",
    "Refund",
    "StoreDB",
    "Transfer",
    "money",
]

OrderStatus = Literal["pending", "delivered", "cancelled", "returned", "exchange_requested"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PaymentMethod(_Model):
    """A card or gift card on a customer's account."""

    id: str
    kind: Literal["credit_card", "gift_card", "paypal"]
    label: str


class Customer(_Model):
    """A customer: how they are identified, where they live, how they pay."""

    id: str
    name: str
    email: str
    zip: str
    address: str
    payment_methods: list[PaymentMethod] = Field(default_factory=list)
    orders: list[str] = Field(default_factory=list)


class OrderItem(_Model):
    """One item of an order: a product in one variant (size, colour)."""

    item_id: str
    product: str
    variant: str
    price: int = Field(ge=0)
    variants: list[str] = Field(default_factory=list)
    """Every variant of the product, for exchanges."""


class Order(_Model):
    """An order, its items and where it stands."""

    id: str
    customer_id: str
    status: OrderStatus
    items: list[OrderItem]
    address: str
    payment_method_id: str
    placed_day: int
    delivered_day: int | None = None

    @property
    def total(self) -> int:
        """The order's total, in cents."""
        return sum(item.price for item in self.items)


class Refund(_Model):
    """Money given back to a payment method."""

    order_id: str
    amount: int
    payment_method_id: str


class Transfer(_Model):
    """A customer handed over to a human agent."""

    customer_id: str


class StoreDB(_Model):
    """The whole store, as one dialogue sees it."""

    today: int
    customers: dict[str, Customer] = Field(default_factory=dict)
    orders: dict[str, Order] = Field(default_factory=dict)
    refunds: list[Refund] = Field(default_factory=list)
    transfers: list[Transfer] = Field(default_factory=list)


def money(cents: int) -> str:
    """`12345` as `$123.45`."""
    return f"${cents // 100}.{cents % 100:02d}"
