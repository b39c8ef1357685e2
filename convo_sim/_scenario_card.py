"""The scenario card: a scenario as one line of JSON inside an LLM user's system prompt.

An LLM user (`convo_sim.users.LLMUser(..., scenario_card=...)`) appends its
goal as data between `<convo-sim-scenario>` tags; a rule-based served user
model (`convo-sim serve`'s `calendar-user`, say) reads it back with
`parse_scenario_card` and rebuilds the user from it. The card is the whole
protocol: nothing rides in `extra_body` or `metadata`, so it passes through
any client and both the chat and the Responses APIs. What the card holds is
the domain's business (`Domain.card`, `Domain.from_card`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["SCENARIO_CARD_TAG", "format_scenario_card", "parse_scenario_card"]

SCENARIO_CARD_TAG = "convo-sim-scenario"
"""The tag around the machine-readable goal in an LLM user's system prompt."""

_CARD_OPEN = f"<{SCENARIO_CARD_TAG}>"
_CARD_CLOSE = f"</{SCENARIO_CARD_TAG}>"


def format_scenario_card(card: Mapping[str, Any]) -> str:
    """The card as it goes into a prompt: one line of JSON between the tags."""
    text = json.dumps(dict(card), separators=(",", ":"), sort_keys=True)
    return f"{_CARD_OPEN}{text}{_CARD_CLOSE}"


def parse_scenario_card(text: str) -> dict[str, Any] | None:
    """The scenario card in a user's system prompt, or None if it has none.

    Raises:
        ValueError: the tags are there but hold no JSON object.
    """
    start = text.find(_CARD_OPEN)
    if start < 0:
        return None
    end = text.find(_CARD_CLOSE, start)
    if end < 0:
        raise ValueError(f"the scenario card has no closing {_CARD_CLOSE} tag")
    card = json.loads(text[start + len(_CARD_OPEN) : end])
    if not isinstance(card, dict):
        raise ValueError(f"the scenario card must be a JSON object, got {type(card).__name__}")
    return card
