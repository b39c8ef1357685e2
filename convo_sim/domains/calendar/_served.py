"""The calendar's models for `convo-sim serve`: the rule-based actors behind a chat API.

`calendar-solver` is `CalendarSolverAssistant`, which rebuilds its state
from the transcript, so a fresh one per request answers as the in-process
one does. `calendar-user` is the scenario's default user, rebuilt from the
scenario card in the LLM user's system prompt (see `card` in
`convo_sim.domains.calendar._domain`), which carries the user's own seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from convo_sim._actors import Actor
from convo_sim._served_models import ActorModel, ServedModel

__all__ = ["served_models"]


def served_models() -> dict[str, ServedModel]:
    """`calendar-solver` and `calendar-user`, by name."""
    return {
        "calendar-solver": ActorModel("assistant", _solver),
        "calendar-user": ActorModel("user", _user),
    }


def _solver(card: Mapping[str, Any] | None) -> tuple[Actor, object | None]:
    from convo_sim.domains.calendar._assistant import CalendarSolverAssistant

    return CalendarSolverAssistant(), None


def _user(card: Mapping[str, Any] | None) -> tuple[Actor, object | None]:
    # The same user a built-in run makes (`default_user`), with the card's
    # seed: the user's own, already mixed with the scenario's.
    from convo_sim.domains.calendar._domain import default_user, from_card

    if card is None:
        raise ValueError(
            "calendar-user needs a scenario card in its system prompt; "
            "build the LLM user with LLMUser(..., scenario_card=...)"
        )
    scenario = from_card(card)
    return default_user(scenario, seed=scenario.seed), scenario
