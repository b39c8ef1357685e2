"""The rule-based customer: pursues its hidden goal, reveals it piece by piece.

It answers what the agent asks (who it is, the order, the item and
variant, the new address), says yes only to a proposal that matches its
goal (the right order, the right action, the right variant or address)
and no to anything else, accepts or refuses a transfer to a human as its
goal says, and ends with the stop token once the agent has done what it
came for (or has told it why not).

A persona (`convo_sim.users.Persona`) changes how: `disclosure`
(`all_at_once` gives everything in the first message; `when_asked` opens
without saying what it wants), `verbosity`, `cooperativeness` (a
question is deflected with that chance), `patience` (it gives up after so
many messages) and off-topic remarks. Typos and changes of mind are not
played: an email or an order id with a typo is another customer's.
Randomness comes from the seed and the message index.
"""

from __future__ import annotations

import random
import re

from convo_sim._actors import View
from convo_sim._completion import DEFAULT_STOP_TOKEN
from convo_sim._messages import Message
from convo_sim.domains.support._scenario import SupportGoal, SupportScenario
from convo_sim.users._persona import Persona

__all__ = ["SupportCustomer"]

_ASKS_IDENTITY = re.compile(r"\b(?:verify|identity|email)\b", re.I)
_ASKS_ORDER = re.compile(r"\border id\b", re.I)
_ASKS_ITEM = re.compile(r"\bwhich item\b", re.I)
_ASKS_ADDRESS = re.compile(r"\bnew shipping address\b", re.I)
_ASKS_HELP = re.compile(r"\bhow can i help\b", re.I)
_PROPOSAL = re.compile(r"\bshall i proceed\b", re.I)
_OFFER = re.compile(r"\btransfer you to a human\b", re.I)
_DONE = re.compile(r"\b(?:anything else|transferred you)\b", re.I)
_ASIDES = (
    "By the way, your website looks nice.",
    "The weather is lovely here today.",
    "I'm typing this from my phone.",
)
_DEFLECT = ("Hmm, give me a second.", "I don't have that at hand right now.", "Hold on.")


class SupportCustomer:
    """The support domain's simulated customer (see the module docstring).

    Args:
        scenario: the scenario, whose `goal` it pursues.
        persona: how it behaves; None: cooperative and plain.
        seed: seeds deflections and asides.
        stop_token: what it says when it is done.
    """

    def __init__(
        self,
        scenario: SupportScenario,
        *,
        persona: Persona | None = None,
        seed: int | None = None,
        stop_token: str = DEFAULT_STOP_TOKEN,
    ) -> None:
        if scenario.goal is None:
            raise ValueError(f"scenario {scenario.id!r} has no goal for the customer")
        self.goal: SupportGoal = scenario.goal
        self.persona = persona
        self.seed = scenario.seed if seed is None else seed
        self.stop = stop_token

    async def respond(self, view: View[object]) -> Message:
        """The customer's next message."""
        said = [m for m in view.transcript.messages if m.role == "user"]
        agent = view.last.text if view.last is not None else ""
        rng = random.Random(f"{self.seed}:{len(said)}")
        persona = self.persona
        if persona and persona.patience is not None and len(said) >= persona.patience:
            return self._message(f"This is taking too long. {self.stop}", rng, aside=False)
        text, question = self._answer(agent, not said)
        if question and persona and rng.random() > persona.cooperativeness:
            return self._message(rng.choice(_DEFLECT), rng)
        return self._message(text, rng, aside=self.stop not in text)

    def _answer(self, agent: str, first: bool) -> tuple[str, bool]:
        """What to say to the agent's last message, and whether it answers a question."""
        goal = self.goal
        disclosure = self.persona.disclosure if self.persona else "progressive"
        if first:
            if disclosure == "when_asked":
                return "Hi, I need some help.", False
            if disclosure == "all_at_once":
                return " ".join(
                    p for p in (self._intent(), self._identity(), self._details()) if p
                ), False
            return self._intent(), False
        if _DONE.search(agent) and not _OFFER.search(agent):
            return f"No, that's all. Thank you! {self.stop}", False
        if _OFFER.search(agent):
            if goal.accept_transfer:
                return "Yes, please transfer me.", False
            return f"No, thank you. {self.stop}", False
        if _PROPOSAL.search(agent):
            return (
                "Yes, please go ahead." if self._matches(agent) else "No, that's not what I want."
            ), False
        if _ASKS_IDENTITY.search(agent):
            return self._identity(), True
        if _ASKS_ORDER.search(agent):
            return f"The order id is {goal.order_id}.", True
        if _ASKS_ITEM.search(agent) or _ASKS_ADDRESS.search(agent):
            return self._details(), True
        if _ASKS_HELP.search(agent):
            return self._intent(), True
        return self._intent(), False

    def _intent(self) -> str:
        goal = self.goal
        return {
            "cancel": "I want to cancel an order.",
            "return": "I want to return an order and get a refund.",
            "exchange": "I want to exchange an item from an order.",
            "change_address": "I need to change the shipping address of an order.",
            "transfer": f"I would like {goal.request}.",
        }[goal.kind]

    def _identity(self) -> str:
        goal = self.goal
        if goal.identify_by == "email":
            return f"My email is {goal.email}."
        return f"My name is {goal.name} and my zip code is {goal.zip}."

    def _details(self) -> str:
        goal = self.goal
        parts = [f"The order id is {goal.order_id}." if goal.order_id else ""]
        if goal.kind == "exchange":
            parts.append(f'I want to exchange the {goal.product} for "{goal.new_variant}".')
        elif goal.kind == "change_address":
            parts.append(f'The new address is "{goal.new_address}".')
        return " ".join(p for p in parts if p)

    def _matches(self, proposal: str) -> bool:
        """Whether the agent proposes exactly what the goal asks for."""
        goal = self.goal
        text = proposal.lower()
        if goal.order_id is None or goal.order_id.lower() not in text:
            return False
        verb = {
            "cancel": "cancel",
            "return": "return",
            "exchange": "exchange",
            "change_address": "address",
        }
        if verb.get(goal.kind, "?") not in text:
            return False
        if goal.kind == "exchange":
            return f'"{(goal.new_variant or "").lower()}"' in text
        if goal.kind == "change_address":
            return (goal.new_address or "").lower() in text
        return True

    def _message(self, text: str, rng: random.Random, *, aside: bool = True) -> Message:
        persona = self.persona
        if persona is not None:
            if persona.verbosity == "verbose" and self.stop not in text:
                text = f"{text} Thanks so much for your help."
            elif persona.verbosity == "terse":
                text = text.replace("Hi, ", "").replace("please ", "").replace("Thank you! ", "")
            if aside and rng.random() < persona.off_topic_rate:
                text = f"{text} {rng.choice(_ASIDES)}"
        return Message(role="user", content=text)
