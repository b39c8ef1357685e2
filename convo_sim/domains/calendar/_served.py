"""The calendar's models for `convo-sim serve`: the rule-based actors and judges behind a chat API.

`calendar-solver` is `CalendarSolverAssistant`, which rebuilds its state
from the transcript, so a fresh one per request answers as the in-process
one does. `calendar-user` is the scenario's default user, rebuilt from the
scenario card in the LLM user's system prompt (see `card` in
`convo_sim.domains.calendar._domain`), which carries the user's own seed.

Two rule-based judges answer the LLM judges' prompts, so that the judges
run offline over real HTTP: `calendar-judge` answers a `RubricJudge` (it
reads the dialogue and the reply from the payload and scores the reply with
the calendar's four turn verifiers: the lowest score, with the first
failing verifier's reason), and `calendar-user-reviewer` answers a
`UserReviewer` (it rebuilds the scenario from the payload's card and runs
the calendar's rule-based review of the user). Both read only the data
between the judge tags: what a reply says to the judge changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from convo_sim._actors import Actor
from convo_sim._judging import parse_judge_payload
from convo_sim._messages import Message, Transcript
from convo_sim._served_models import ActorModel, ServedModel

__all__ = ["served_models"]


def served_models() -> dict[str, ServedModel]:
    """`calendar-solver`, `calendar-user`, `calendar-judge` and `calendar-user-reviewer`."""
    return {
        "calendar-solver": ActorModel("assistant", _solver),
        "calendar-user": ActorModel("user", _user),
        "calendar-judge": CalendarJudgeModel(),
        "calendar-user-reviewer": CalendarUserReviewerModel(),
    }


def _payload(messages: Sequence[Message]) -> dict[str, Any]:
    for message in reversed(messages):
        if message.role == "user":
            payload = parse_judge_payload(message.text)
            if payload is not None:
                return payload
    raise ValueError("no judge payload (<convo-sim-judge> tags) in the request")


def _dialogue(items: object) -> list[Message]:
    if not isinstance(items, list):
        raise ValueError("the judge payload's 'dialogue' must be a list")
    out = []
    for item in items:
        if not isinstance(item, Mapping) or item.get("role") not in (
            "system",
            "developer",
            "user",
            "assistant",
        ):
            raise ValueError("each dialogue item needs a role and a content")
        out.append(Message(role=item["role"], content=str(item.get("content") or "")))
    return out


class CalendarJudgeModel:
    """`calendar-judge`: a `RubricJudge`'s judge, by the calendar's turn verifiers."""

    async def reply(self, messages: Sequence[Message], body: Mapping[str, Any]) -> Message:
        """The verdict on the payload's reply, as the judge's JSON answer.

        Raises:
            ValueError: the request holds no readable payload (a 400).
        """
        from convo_sim._verification import TurnContext
        from convo_sim.domains.calendar._scenario import CalendarScenario
        from convo_sim.domains.calendar._verifiers import calendar_verifiers

        payload = _payload(messages)
        reply = Message(role="assistant", content=str(payload.get("reply") or ""))
        transcript = Transcript(messages=(*_dialogue(payload.get("dialogue", [])), reply))
        turn = sum(1 for m in transcript.messages if m.role == "assistant")
        ctx = TurnContext(transcript, reply, turn, None)
        verifiers, _ = calendar_verifiers(CalendarScenario(id="judge"))
        scores = [v(ctx) for v in verifiers]
        worst = min(scores, key=lambda s: s.score)  # type: ignore[union-attr]
        reason = "pass" if worst.score >= 1.0 else f"{worst.verifier}: {worst.reason}"  # type: ignore[union-attr]
        answer = {"score": worst.score, "reason": reason}  # type: ignore[union-attr]
        return Message(role="assistant", content=json.dumps(answer))


class CalendarUserReviewerModel:
    """`calendar-user-reviewer`: a `UserReviewer`'s judge, by the calendar's rules."""

    async def reply(self, messages: Sequence[Message], body: Mapping[str, Any]) -> Message:
        """The review of the payload's user, as the reviewer's JSON answer.

        Raises:
            ValueError: the request holds no readable payload or card (a 400).
        """
        from convo_sim.domains.calendar._domain import from_card
        from convo_sim.domains.calendar._review import review_user

        payload = _payload(messages)
        card = payload.get("card")
        if not isinstance(card, Mapping):
            raise ValueError("calendar-user-reviewer needs the scenario card in the payload")
        scenario = from_card(card)
        if scenario.goal is None:
            return Message(role="assistant", content=json.dumps({"failures": []}))
        reward = payload.get("reward")
        verdict = review_user(
            _dialogue(payload.get("dialogue", [])),
            scenario,
            termination=str(payload.get("termination") or ""),
            goal_met=None if not isinstance(reward, int | float) else reward >= 1.0,
        )
        failures = [tag.model_dump(mode="json") for tag in verdict or ()]
        return Message(role="assistant", content=json.dumps({"failures": failures}))


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
