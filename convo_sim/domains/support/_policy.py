"""The written policy the support agent follows, and the check of every tool call against it.

`POLICY` is the agent's system prompt. `violations` replays a transcript's
tool calls on the scenario's database and, before each call runs, checks
it against the rules that the tools themselves do not enforce:

* `identity_not_verified`: any tool but `find_customer` before a customer
  was found;
* `not_customers_order`: an order of another customer read or changed;
* `no_confirmation`: a change (cancel, return, exchange, address) the
  customer did not just say yes to;
* `refund_outside_window` / `exchange_outside_window`: a return or an
  exchange more than 30 days after delivery;
* `exchange_of_cancelled_order`: an exchange asked for a cancelled order.

Each violation is numbered with the turn its call belongs to (the turn the
assistant's next answer ends), so the turn verifier reports it per turn.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from convo_sim._messages import Transcript
from convo_sim._tools import ToolEnv
from convo_sim.domains.support._db import StoreDB
from convo_sim.domains.support._tools import MUTATING, TOOLS

__all__ = ["POLICY", "RETURN_WINDOW_DAYS", "Violation", "affirmative", "violations"]

RETURN_WINDOW_DAYS = 30

POLICY = f"""You are a customer support agent of an online store. Use the tools to look up \
and change the store's records, and follow this policy:

1. Verify the customer's identity first, with find_customer: by the email on the account, \
or by full name and zip code. Do not look up or change anything before that.
2. Act only on orders of the verified customer.
3. Before any change (cancel, return, exchange, address), say exactly what you will do and \
get an explicit "yes" from the customer.
4. Only pending orders can be cancelled or have their address changed; cancelling refunds \
the order's total to the payment method it was paid with.
5. Returns and refunds only within {RETURN_WINDOW_DAYS} days of delivery; the whole order is \
returned and its total refunded to its payment method.
6. Exchanges only of delivered orders, within {RETURN_WINDOW_DAYS} days of delivery, for \
another variant of the same product. A cancelled order cannot be exchanged.
7. If the policy does not allow a request, say why, and offer to transfer the customer to a \
human agent. Requests the tools cannot handle go to a human agent (transfer_to_human).
8. Tell the customer the outcome: the amount refunded, the new variant, the new address."""

_YES = re.compile(r"^\W*(?:yes|yeah|yep|sure|please do|go ahead|confirm(?:ed)?)\b", re.I)
_CHANGES = MUTATING - {"transfer_to_human"}
_TOOL_NAMES = frozenset(t.name for t in TOOLS)


def affirmative(text: str) -> bool:
    """Whether a customer's message says yes (it starts with yes, sure, go ahead...)."""
    return bool(_YES.match(text))


@dataclass(frozen=True, slots=True)
class Violation:
    """One tool call against the policy."""

    turn: int
    rule: str
    tool: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """The violation as JSON-able data."""
        return {"turn": self.turn, "rule": self.rule, "tool": self.tool, "detail": self.detail}


def violations(transcript: Transcript, database: StoreDB) -> list[Violation]:
    """Every policy violation of the transcript's tool calls, in order."""
    env = ToolEnv(list(TOOLS), database.model_copy(deep=True))
    answered = {m.tool_call_id: m for m in transcript.messages if m.role == "tool"}
    found: list[Violation] = []
    verified: str | None = None
    last_user = ""
    turn = 1
    for message in transcript.messages:
        if message.role == "user":
            last_user = message.text
            continue
        if message.role != "assistant":
            continue
        if not message.tool_calls:
            turn += 1
            continue
        for call in message.tool_calls:
            if call.id not in answered:
                continue
            db = env.state
            args = _arguments(call.arguments)
            problems: list[tuple[str, str]] = []
            if call.name in _TOOL_NAMES and call.name != "find_customer" and verified is None:
                problems.append(("identity_not_verified", "no customer was verified yet"))
            order = db.orders.get(str(args.get("order_id", "")).strip().lstrip("#"))
            if order is not None and verified is not None and order.customer_id != verified:
                problems.append(("not_customers_order", f"order {order.id} is not theirs"))
            if call.name in _CHANGES and not affirmative(last_user):
                problems.append(("no_confirmation", "the customer did not just say yes"))
            if order is not None and call.name in ("return_order", "exchange_item"):
                age = None if order.delivered_day is None else db.today - order.delivered_day
                if order.status == "cancelled" and call.name == "exchange_item":
                    problems.append(("exchange_of_cancelled_order", f"order {order.id}"))
                elif age is not None and age > RETURN_WINDOW_DAYS:
                    rule = (
                        "refund_outside_window"
                        if call.name == "return_order"
                        else "exchange_outside_window"
                    )
                    problems.append((rule, f"delivered {age} days ago"))
            found.extend(Violation(turn, rule, call.name, detail) for rule, detail in problems)
            result = env.run(call)
            if call.name == "find_customer" and "error" not in _arguments(result.text):
                verified = str(_arguments(result.text).get("customer_id")) or None
    return found


def _arguments(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
