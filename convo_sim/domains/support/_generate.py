"""Seeded support scenarios, each solvable under the policy by construction.

A scenario is made in three steps: a small store (three customers, their
payment methods and one to three orders each), a goal for one customer
about one of its orders (or a request the tools cannot handle), and the
expected database, which is the start database after the policy's answer
to the goal ran *through the tools themselves* (`_solution_calls`): a
cancel of a pending order, a return or exchange within the window, an
address change of a pending order; for a request the policy denies, only
the transfer to a human the customer accepts (or nothing). So the expected
state is reachable, by calls the policy allows (the generator asserts that
the calls run without a tool error and without a policy violation).
"""

from __future__ import annotations

import random

from convo_sim._messages import Message, ToolCall, Transcript
from convo_sim._tools import ToolEnv
from convo_sim.domains.support._db import (
    Customer,
    Order,
    OrderItem,
    PaymentMethod,
    StoreDB,
    money,
)
from convo_sim.domains.support._policy import POLICY, RETURN_WINDOW_DAYS, violations
from convo_sim.domains.support._scenario import SupportGoal, SupportScenario
from convo_sim.domains.support._tools import TOOLS

__all__ = ["generate_scenarios", "make_scenario"]

_FIRST = (
    "Ava",
    "Ben",
    "Chloe",
    "Daniel",
    "Emma",
    "Felix",
    "Grace",
    "Hugo",
    "Iris",
    "Jonas",
    "Kira",
    "Liam",
    "Maya",
    "Noah",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
)
_LAST = (
    "Adams",
    "Brown",
    "Chen",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Hall",
    "Ito",
    "Jensen",
    "Kim",
    "Lopez",
    "Moreau",
    "Novak",
    "Olsen",
    "Patel",
)
_STREETS = ("Oak St", "Maple Ave", "Pine Rd", "Cedar Ln", "Elm St", "Birch Way", "Lake Dr")
_CITIES = ("Springfield", "Riverton", "Fairview", "Madison", "Georgetown", "Salem")
_PRODUCTS: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("T-Shirt", ("S / red", "M / red", "L / red", "M / blue", "L / blue"), 2500),
    ("Running Shoes", ("size 8", "size 9", "size 10", "size 11"), 8900),
    ("Backpack", ("black", "grey", "green"), 5400),
    ("Desk Lamp", ("white", "black"), 3200),
    ("Water Bottle", ("500 ml", "750 ml", "1 l"), 1800),
    ("Headphones", ("black", "silver"), 12900),
    ("Jacket", ("S", "M", "L", "XL"), 11000),
)
_REQUESTS = (
    "a price adjustment because the item went on sale",
    "a change of the payment method of an order",
    "a complaint about the delivery driver",
)
_TODAY = 500
_KINDS = (
    "cancel",
    "return",
    "return_late",
    "exchange",
    "exchange_cancelled",
    "change_address",
    "transfer",
)


def _address(rng: random.Random, zip_code: str) -> str:
    return f"{rng.randint(1, 999)} {rng.choice(_STREETS)}, {rng.choice(_CITIES)} {zip_code}"


def _order(
    rng: random.Random, oid: str, customer: Customer, status: str, delivered: int | None
) -> Order:
    items = []
    for index, (product, variants, price) in enumerate(rng.sample(_PRODUCTS, rng.randint(1, 3))):
        items.append(
            OrderItem(
                item_id=f"{oid}-{index + 1}",
                product=product,
                variant=rng.choice(variants),
                price=price + rng.randint(0, 20) * 50,
                variants=list(variants),
            )
        )
    placed = (delivered if delivered is not None else _TODAY) - rng.randint(1, 6)
    return Order(
        id=oid,
        customer_id=customer.id,
        status=status,  # type: ignore[arg-type]
        items=items,
        address=customer.address,
        payment_method_id=rng.choice(customer.payment_methods).id,
        placed_day=placed,
        delivered_day=delivered,
    )


def _store(rng: random.Random) -> StoreDB:
    db = StoreDB(today=_TODAY)
    people = rng.sample([(f, s) for f in _FIRST for s in _LAST], 3)
    for n, (first, last) in enumerate(people):
        cid = f"c{rng.randint(10000, 99999)}{n}"
        zip_code = f"{rng.randint(10000, 99999)}"
        customer = Customer(
            id=cid,
            name=f"{first} {last}",
            email=f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@example.com",
            zip=zip_code,
            address=_address(rng, zip_code),
            payment_methods=[
                PaymentMethod(
                    id=f"pm_{cid}_card",
                    kind="credit_card",
                    label=f"Visa ending {rng.randint(1000, 9999)}",
                ),
            ]
            + (
                [PaymentMethod(id=f"pm_{cid}_gift", kind="gift_card", label="gift card")]
                if rng.random() < 0.5
                else []
            ),
        )
        for _ in range(rng.randint(1, 3)):
            oid = f"W{rng.randint(1000000, 9999999)}"
            while oid in db.orders:
                oid = f"W{rng.randint(1000000, 9999999)}"
            status, delivered = rng.choice(
                (("pending", None), ("delivered", _TODAY - rng.randint(1, 60)), ("cancelled", None))
            )
            db.orders[oid] = _order(rng, oid, customer, status, delivered)
            customer.orders.append(oid)
        db.customers[cid] = customer
    return db


def _target(rng: random.Random, db: StoreDB, kind: str) -> tuple[Customer, Order]:
    """A customer and an order the goal is about, made to fit `kind`."""
    customer = rng.choice(list(db.customers.values()))
    oid = rng.choice(customer.orders)
    status, delivered = {
        "cancel": ("pending", None),
        "change_address": ("pending", None),
        "return": ("delivered", _TODAY - rng.randint(0, RETURN_WINDOW_DAYS)),
        "exchange": ("delivered", _TODAY - rng.randint(0, RETURN_WINDOW_DAYS)),
        "return_late": ("delivered", _TODAY - rng.randint(RETURN_WINDOW_DAYS + 1, 120)),
        "exchange_cancelled": ("cancelled", None),
        "transfer": (db.orders[oid].status, db.orders[oid].delivered_day),
    }[kind]
    order = _order(rng, oid, customer, status, delivered)
    db.orders[oid] = order
    return customer, order


def make_scenario(
    rng: random.Random, scenario_id: str, *, kind: str | None = None
) -> SupportScenario:
    """One scenario from `rng`: a store, a goal, the expected final store."""
    db = _store(rng)
    kind = kind or rng.choice(_KINDS)
    customer, order = _target(rng, db, kind)
    accept = rng.random() < 0.5
    fields: dict[str, object] = {
        "name": customer.name,
        "email": customer.email,
        "zip": customer.zip,
        "identify_by": rng.choice(("email", "name_zip")),
        "order_id": order.id,
        "accept_transfer": accept,
    }
    calls: list[tuple[str, dict[str, object]]] = []
    if kind == "cancel":
        fields |= {"kind": "cancel", "must_hear": (money(order.total),)}
        calls.append(("cancel_order", {"order_id": order.id}))
    elif kind == "return":
        fields |= {"kind": "return", "must_hear": (money(order.total),)}
        calls.append(("return_order", {"order_id": order.id}))
    elif kind == "return_late":
        fields |= {"kind": "return", "must_hear": (f"{RETURN_WINDOW_DAYS} days",)}
    elif kind in ("exchange", "exchange_cancelled"):
        item = rng.choice(order.items)
        new = rng.choice([v for v in item.variants if v != item.variant])
        denied = kind == "exchange_cancelled"
        fields |= {
            "kind": "exchange",
            "product": item.product,
            "new_variant": new,
            "must_hear": ("cancelled",) if denied else (new,),
        }
        if not denied:
            args: dict[str, object] = {
                "order_id": order.id,
                "item_id": item.item_id,
                "new_variant": new,
            }
            calls.append(("exchange_item", args))
    elif kind == "change_address":
        new_address = _address(rng, customer.zip)
        while new_address == order.address:
            new_address = _address(rng, customer.zip)
        fields |= {
            "kind": "change_address",
            "new_address": new_address,
            "must_hear": (new_address,),
        }
        calls.append(("change_address", {"order_id": order.id, "address": new_address}))
    else:
        fields |= {
            "kind": "transfer",
            "request": rng.choice(_REQUESTS),
            "order_id": None,
            "accept_transfer": True,
            "must_hear": ("human agent",),
        }
        calls.append(("transfer_to_human", {"customer_id": customer.id}))
    denied = kind in ("return_late", "exchange_cancelled")
    if denied:
        fields["must_hear"] = (*fields["must_hear"], "human agent")  # type: ignore[misc]
        if accept:
            calls.append(("transfer_to_human", {"customer_id": customer.id}))
    goal = SupportGoal.model_validate(fields)
    expected = _solve(db, customer, calls)
    return SupportScenario(
        id=scenario_id,
        system_prompt=POLICY,
        goal=goal,
        database=db,
        expected_state=expected,
        seed=rng.randint(0, 2**31),
        metadata={"kind": kind},
    )


def _solve(db: StoreDB, customer: Customer, calls: list[tuple[str, dict[str, object]]]) -> StoreDB:
    """Run the policy's answer through the tools; assert it breaks no rule and no tool refuses."""
    import json

    messages: list[Message] = [Message(role="user", content="hi")]
    by = {"email": customer.email}
    messages.append(
        Message(
            role="assistant",
            content=None,
            tool_calls=(ToolCall(id="v", name="find_customer", arguments=json.dumps(by)),),
        )
    )
    messages.append(Message(role="tool", content="", tool_call_id="v"))
    for index, (name, args) in enumerate(calls):
        messages.append(Message(role="user", content="yes"))
        messages.append(
            Message(
                role="assistant",
                content=None,
                tool_calls=(ToolCall(id=f"s{index}", name=name, arguments=json.dumps(args)),),
            )
        )
        messages.append(Message(role="tool", content="", tool_call_id=f"s{index}"))
    transcript = Transcript(messages=tuple(messages))
    found = violations(transcript, db)
    assert not found, f"the generator's solution breaks the policy: {found}"
    env = ToolEnv(list(TOOLS), db.model_copy(deep=True))
    for message in transcript.messages:
        for call in message.tool_calls:
            result = env.run(call)
            assert "error" not in json.loads(result.text), result.text
    return env.state


def generate_scenarios(n: int, *, seed: int = 0) -> list[SupportScenario]:
    """`n` scenarios from `seed` (the same seed, the same scenarios), ids `support-gen-<seed>-<i>`."""
    rng = random.Random(f"support:{seed}")
    return [make_scenario(rng, f"support-gen-{seed}-{i}") for i in range(n)]
