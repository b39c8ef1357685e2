"""The rule-based support agent: follows the written policy, decides from the transcript alone.

Everything it knows it reads again from the transcript on every call: what
the customer said (its request, email or name and zip, order id, the item
and variant, the new address, its yes or no) and what the tools returned.
So one instance serves any number of dialogues, and `convo-sim serve`
answers as the in-process agent does (`support-agent`). It calls only the
tools its view offers; offered none, it says it cannot reach the records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from convo_sim._actors import View
from convo_sim._messages import Message, ToolCall
from convo_sim.domains.support._db import money
from convo_sim.domains.support._policy import RETURN_WINDOW_DAYS, affirmative

__all__ = ["SupportAgent", "read_request"]

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
NAME = re.compile(r"name is ([A-Z][a-z]+(?: [A-Z][a-z]+)+)")
ZIP = re.compile(r"zip(?: code)? is (\d{5})", re.I)
ORDER = re.compile(r"\bW\d{7}\b")
EXCHANGE = re.compile(r'exchange (?:the|my) (.+?) for "([^"]+)"', re.I)
ADDRESS = re.compile(r'new address is "([^"]+)"', re.I)
_NO = re.compile(r"^\W*(?:no|nope|don't|do not)\b", re.I)
_INTENTS = (
    ("exchange", re.compile(r"\bexchange\b", re.I)),
    ("cancel", re.compile(r"\bcancel\b", re.I)),
    ("return", re.compile(r"\b(?:return|refund)\b", re.I)),
    ("change_address", re.compile(r"\baddress\b", re.I)),
    ("transfer", re.compile(r"\b(?:price adjustment|payment method|complaint)\b", re.I)),
)

ASK_HELP = "How can I help you today?"
ASK_IDENTITY = (
    "To verify your identity, please give me the email address on your account, "
    "or your full name and zip code."
)
ASK_ORDER = "What is the order id? It looks like W1234567."
ASK_EXCHANGE = "Which item would you like to exchange, and for which variant? Options: {options}."
ASK_ADDRESS = "What is the new shipping address?"
OFFER_TRANSFER = "Would you like me to transfer you to a human agent?"
ANYTHING_ELSE = "Is there anything else I can help you with?"
TRANSFERRED = "I have transferred you to a human agent, who will contact you shortly."


@dataclass
class Request:
    """What the customer has said so far."""

    kind: str | None = None
    email: str | None = None
    name: str | None = None
    zip: str | None = None
    order_id: str | None = None
    product: str | None = None
    variant: str | None = None
    address: str | None = None


def read_request(texts: list[str]) -> Request:
    """The customer's request, from its messages in order (later details win)."""
    request = Request()
    for text in texts:
        if request.kind is None:
            request.kind = next((kind for kind, rx in _INTENTS if rx.search(text)), None)
        for attr, rx in (("email", EMAIL), ("name", NAME), ("zip", ZIP)):
            m = rx.search(text)
            if m:
                setattr(request, attr, m.group(1) if rx.groups else m.group(0))
        m = ORDER.search(text)
        if m:
            request.order_id = m.group(0)
        m = EXCHANGE.search(text)
        if m:
            request.product, request.variant = m.group(1), m.group(2)
        m = ADDRESS.search(text)
        if m:
            request.address = m.group(1)
    return request


@dataclass
class _Facts:
    customer: dict[str, Any] | None = None
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    calls: int = 0


def _facts(messages: tuple[Message, ...]) -> _Facts:
    results = {m.tool_call_id: m.text for m in messages if m.role == "tool"}
    facts = _Facts()
    for message in messages:
        for call in message.tool_calls if message.role == "assistant" else ():
            facts.calls += 1
            try:
                out = json.loads(results.get(call.id, "null"))
            except ValueError:
                out = None
            if not isinstance(out, dict) or "error" in out:
                facts.failed.add(f"{call.name}:{call.arguments}")
                continue
            if call.name == "find_customer":
                facts.customer = out
            elif call.name == "get_order":
                facts.orders[str(out.get("id"))] = out
            else:
                facts.done[call.name] = out
    return facts


class SupportAgent:
    """The policy-following rule-based agent (the support domain's default assistant)."""

    async def respond(self, view: View[Any]) -> Message:
        """The next message: a tool call, a question, a proposal, or the outcome."""
        return decide(view.transcript.messages, {_tool_name(t) for t in view.tools})


def _tool_name(schema: Mapping[str, Any]) -> str:
    function = schema.get("function")
    return str(function.get("name") if isinstance(function, Mapping) else schema.get("name"))


def decide(messages: tuple[Message, ...], offered: set[str]) -> Message:
    """The agent's next message for a transcript, given the tools offered."""
    user_texts = [m.text for m in messages if m.role == "user"]
    request = read_request(user_texts)
    facts = _facts(messages)
    last_user = user_texts[-1] if user_texts else ""
    last_assistant = next(
        (m.text for m in reversed(messages) if m.role == "assistant" and m.text), ""
    )
    ids = count(facts.calls + 1)

    def call(tool: str, /, **args: Any) -> Message:
        if tool not in offered:
            return say("I'm sorry, I cannot reach the store's records right now.")
        arguments = json.dumps({k: v for k, v in args.items() if v is not None})
        tool_call = ToolCall(id=f"call_{next(ids)}", name=tool, arguments=arguments)
        return Message(role="assistant", content=None, tool_calls=(tool_call,))

    def tried(tool: str, /, **args: Any) -> bool:
        arguments = json.dumps({k: v for k, v in args.items() if v is not None})
        return f"{tool}:{arguments}" in facts.failed

    if facts.done.get("transfer_to_human"):
        return say(TRANSFERRED if TRANSFERRED not in last_assistant else ANYTHING_ELSE)
    if request.kind is None:
        return say(ASK_HELP)
    customer = facts.customer
    if customer is None:
        if request.email and not tried("find_customer", email=request.email):
            return call("find_customer", email=request.email)
        if (
            request.name
            and request.zip
            and not tried("find_customer", name=request.name, zip=request.zip)
        ):
            return call("find_customer", name=request.name, zip=request.zip)
        if facts.failed:
            return say("I could not find an account with those details. " + ASK_IDENTITY)
        return say(ASK_IDENTITY)
    if request.kind == "transfer":
        return call(
            "transfer_to_human",
            customer_id=customer["customer_id"],
            summary="request the tools cannot handle",
        )
    if request.order_id is None:
        return say(ASK_ORDER)
    if request.order_id not in customer.get("orders", ()):
        return say(f"I cannot find order {request.order_id} on your account. {ASK_ORDER}")
    order = facts.orders.get(request.order_id)
    if order is None:
        return call("get_order", order_id=request.order_id)
    action = facts.done.get(_TOOL[request.kind])
    if action is not None:
        return say(
            _outcome(request, order, action, customer)
            if _outcome(request, order, action, customer) not in last_assistant
            else ANYTHING_ELSE
        )
    denial = _denial(request.kind, order)
    if denial is not None:
        if OFFER_TRANSFER in last_assistant:
            if affirmative(last_user):
                return call(
                    "transfer_to_human", customer_id=customer["customer_id"], summary=denial
                )
            return say("Understood, I have made no changes. " + ANYTHING_ELSE)
        return say(f"I'm sorry, {denial} {OFFER_TRANSFER}")
    proposal = _proposal(request, order, customer)
    if isinstance(proposal, Message):
        return proposal
    if proposal in last_assistant:
        if affirmative(last_user):
            return _act(request, order, call)
        if _NO.match(last_user):
            return say("Understood, I have made no changes. " + ANYTHING_ELSE)
    return say(proposal)


_TOOL = {
    "cancel": "cancel_order",
    "return": "return_order",
    "exchange": "exchange_item",
    "change_address": "change_address",
}


def say(text: str) -> Message:
    return Message(role="assistant", content=text)


def _denial(kind: str, order: Mapping[str, Any]) -> str | None:
    status = order.get("status")
    age = order.get("days_since_delivery")
    if kind in ("cancel", "change_address") and status != "pending":
        return (
            f"order {order['id']} is {status}, and only pending orders can be changed or cancelled."
        )
    if kind in ("return", "exchange"):
        if status == "cancelled":
            return f"order {order['id']} was cancelled, and a cancelled order cannot be returned or exchanged."
        if status != "delivered":
            return f"order {order['id']} is {status}, and only delivered orders can be returned or exchanged."
        if age is not None and age > RETURN_WINDOW_DAYS:
            return (
                f"order {order['id']} was delivered {age} days ago, and returns and exchanges are "
                f"only possible within {RETURN_WINDOW_DAYS} days of delivery."
            )
    return None


def _pay_label(customer: Mapping[str, Any], method_id: str) -> str:
    for method in customer.get("payment_methods", ()):
        if method.get("id") == method_id:
            return str(method.get("label"))
    return method_id


def _item(request: Request, order: Mapping[str, Any]) -> dict[str, Any] | None:
    for item in order.get("items", ()):
        if request.product and item.get("product", "").lower() == request.product.lower():
            return dict(item)
    return None


def _proposal(
    request: Request, order: Mapping[str, Any], customer: Mapping[str, Any]
) -> str | Message:
    oid = order["id"]
    to = _pay_label(customer, str(order.get("payment_method_id")))
    total = money(int(order.get("total", 0)))
    if request.kind == "cancel":
        return (
            f"I will cancel order {oid} and refund {total} to your {to}. Shall I proceed (yes/no)?"
        )
    if request.kind == "return":
        return (
            f"I will return order {oid} and refund {total} to your {to}. Shall I proceed (yes/no)?"
        )
    if request.kind == "exchange":
        item = _item(request, order)
        if (
            item is None
            or request.variant not in item.get("variants", ())
            or request.variant == item.get("variant")
        ):
            options = "; ".join(
                f"{i['product']} (now {i['variant']}): "
                + ", ".join(f'"{v}"' for v in i["variants"] if v != i["variant"])
                for i in order.get("items", ())
            )
            return say(ASK_EXCHANGE.format(options=options))
        return (
            f"I will exchange the {item['product']} of order {oid} from {item['variant']} "
            f'to "{request.variant}". Shall I proceed (yes/no)?'
        )
    if request.address is None:
        return say(ASK_ADDRESS)
    return f'I will change the shipping address of order {oid} to "{request.address}". Shall I proceed (yes/no)?'


def _act(request: Request, order: Mapping[str, Any], call: Callable[..., Message]) -> Message:
    oid = order["id"]
    if request.kind == "cancel":
        return call("cancel_order", order_id=oid, reason="customer request")
    if request.kind == "return":
        return call("return_order", order_id=oid)
    if request.kind == "exchange":
        item = _item(request, order)
        assert item is not None
        return call(
            "exchange_item", order_id=oid, item_id=item["item_id"], new_variant=request.variant
        )
    return call("change_address", order_id=oid, address=request.address)


def _outcome(
    request: Request,
    order: Mapping[str, Any],
    result: Mapping[str, Any],
    customer: Mapping[str, Any],
) -> str:
    oid = order["id"]
    if request.kind in ("cancel", "return"):
        what = "cancelled" if request.kind == "cancel" else "returned"
        to = _pay_label(customer, str(result.get("payment_method_id")))
        return (
            f"Done: order {oid} is {what}, and {money(int(result.get('refunded', 0)))} "
            f"will be refunded to your {to}. {ANYTHING_ELSE}"
        )
    if request.kind == "exchange":
        return f'Done: the exchange for "{result.get("variant")}" is on its way. {ANYTHING_ELSE}'
    return f'Done: order {oid} will ship to "{result.get("address")}". {ANYTHING_ELSE}'
