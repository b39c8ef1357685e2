"""User-fidelity metrics: did the simulated user play its part?

A rollout's reward judges the assistant; these metrics judge the *user
simulator*, so that an experiment can tell "the assistant failed" from "the
user never asked". They read only the text of the user's messages (parsed
with the calendar request parser), so they apply to rule-based and LLM
users alike.

* **goal coverage**: the share of the goal's items the user communicated.
  Each expected event is one item (its id with the right duration) and each
  constraint another (the last constraint the user gave for the event must
  equal the goal's: a user that changes its mind and reverts is covered).
* **premature stop**: the user sent its stop token before its goal was met
  (by default: before it had communicated every item; callers that know the
  outcome pass `goal_met`).
* **pacing violations / leakage**: user messages that disclosed more than
  the persona's `disclosure` allows. A message *discloses* an event when it
  says something new about it (a new event, duration or constraint);
  repeating what was said, as in a correction, discloses nothing.
  `progressive`: a message disclosing more than one event. `when_asked`: a
  disclosure not preceded by an assistant question (a `?`, or an invitation
  such as "anything else"), or disclosing more than one event.
  `all_at_once`: a goal event first named after the first disclosing
  message. `leakage` is the share of disclosing messages that broke the rule.
* **stop-token discipline**: the stop token must appear exactly once, in the
  last message of the dialogue (`ok`); otherwise `missing`, `repeated` or
  `mid_dialogue`.
* **turns used**: assistant turns and user messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from convo_sim._completion import DEFAULT_STOP_TOKEN
from convo_sim._messages import Message, Transcript
from convo_sim._records import Rollout

# `message_requests` lives with the request parser (the solver needs it too);
# it is re-exported here, where it was first defined.
from convo_sim.domains.calendar._intents import RequestedState, message_requests
from convo_sim.domains.calendar._model import ConstraintFormatError, parse_constraint
from convo_sim.domains.calendar._scenario import CalendarGoal, CalendarScenario
from convo_sim.users._persona import Persona, get_persona, scenario_persona

__all__ = [
    "StopDiscipline",
    "UserFidelity",
    "message_requests",
    "user_fidelity",
    "with_fidelity",
]

StopDiscipline: TypeAlias = Literal["ok", "missing", "repeated", "mid_dialogue"]


class UserFidelity(BaseModel):
    """How faithfully a simulated user played its goal and persona in one dialogue.

    Attributes:
        goal_items: how many items the goal holds (events plus constraints).
        communicated: how many of them the user communicated.
        goal_coverage: `communicated / goal_items` (1.0 for an empty goal).
        missing: the items never communicated (`event 2`, `event 2 constraint`).
        stopped: the user sent its stop token.
        goal_met: whether the goal counted as met when the dialogue ended.
        premature_stop: the user stopped while its goal was not met.
        request_messages: user messages that carried at least one request.
        disclosures: user messages that said something new about an event.
        pacing_violations: request messages that broke the persona's
            disclosure rule; None without a persona.
        leakage: `pacing_violations / disclosures` (0.0 when nothing was
            disclosed); None without a persona.
        stop_count: user messages holding the stop token.
        stop_discipline: `ok`, `missing`, `repeated` or `mid_dialogue`.
        user_messages: messages the user sent.
        chatter: user messages with neither a request nor the stop token.
        turns: assistant turns.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    goal_items: int = Field(ge=0)
    communicated: int = Field(ge=0)
    goal_coverage: float = Field(ge=0.0, le=1.0)
    missing: tuple[str, ...] = ()
    stopped: bool
    goal_met: bool
    premature_stop: bool
    request_messages: int = Field(ge=0)
    disclosures: int = Field(ge=0)
    pacing_violations: int | None = None
    leakage: float | None = None
    stop_count: int = Field(ge=0)
    stop_discipline: StopDiscipline
    user_messages: int = Field(ge=0)
    chatter: int = Field(ge=0)
    turns: int = Field(ge=0)

    @property
    def stop_ok(self) -> bool:
        """The stop token was sent exactly once, at the very end."""
        return self.stop_discipline == "ok"


def _same_constraint(said: str | None, wanted: str) -> bool:
    if said is None:
        return False
    try:
        return parse_constraint(said) == parse_constraint(wanted)
    except ConstraintFormatError:
        return said.strip().lower() == wanted.strip().lower()


def _goal_items(expected: Mapping[str, Mapping[str, Any]]) -> list[tuple[int, str, Any]]:
    """(event id, `event`/`constraint`, wanted value) for every goal item."""
    items: list[tuple[int, str, Any]] = []
    for key, entry in expected.items():
        event_id = int(entry.get("event_id", key))
        items.append((event_id, "event", entry.get("duration")))
        if entry.get("constraint"):
            items.append((event_id, "constraint", entry["constraint"]))
    return items


_INVITATION = re.compile(r"\?|\b(?:anything else|what else|let me know|tell me)\b", re.IGNORECASE)


def _asked(message: Message | None) -> bool:
    return message is not None and _INVITATION.search(message.text) is not None


def _snapshot(state: RequestedState) -> dict[int, tuple[int, str | None]]:
    return {key: (e.duration, e.constraint) for key, e in state.events.items()}


def _stop_discipline(messages: Sequence[Message], stop_indices: Sequence[int]) -> StopDiscipline:
    if not stop_indices:
        return "missing"
    if len(stop_indices) > 1:
        return "repeated"
    return "ok" if stop_indices[0] == len(messages) - 1 else "mid_dialogue"


def user_fidelity(
    transcript: Transcript | Sequence[Message],
    *,
    expected: Mapping[str, Mapping[str, Any]] | CalendarGoal | None,
    persona: Persona | str | None = None,
    goal_met: bool | None = None,
    stop_token: str = DEFAULT_STOP_TOKEN,
) -> UserFidelity:
    """Measure one dialogue's user against its goal and persona.

    Args:
        transcript: the whole dialogue (a conversation prefix included).
        expected: the user's goal: a `CalendarGoal` or an expected state in
            NeMo-Gym `exp_cal_state` (or seed `expected_state`) form; None
            for no goal (coverage 1.0).
        persona: the persona the user played, or its bundled name; None
            leaves pacing unmeasured.
        goal_met: whether the goal was met when the dialogue ended (for
            example: full coverage and a passing reward); default: full
            coverage.
        stop_token: the user's stop signal.

    Raises:
        UnknownPersonaError: `persona` names no bundled persona.
    """
    if isinstance(persona, str):
        persona = get_persona(persona)
    messages = tuple(transcript.messages if isinstance(transcript, Transcript) else transcript)
    if isinstance(expected, CalendarGoal):
        expected = expected.expected_state()
    items = _goal_items(expected or {})
    goal_events = {event_id for event_id, kind, _ in items if kind == "event"}

    state = RequestedState()
    request_messages = disclosures = violations = chatter = user_messages = 0
    stop_indices: list[int] = []
    seen_events: set[int] = set()
    last_assistant: Message | None = None
    for index, message in enumerate(messages):
        if message.role == "assistant":
            last_assistant = message
            continue
        if message.role != "user":
            continue
        user_messages += 1
        if stop_token in message.text:
            stop_indices.append(index)
        requests = message_requests(message.text.replace(stop_token, " "))
        if not requests:
            chatter += stop_token not in message.text
            continue
        request_messages += 1
        before = _snapshot(state)
        for request in requests:
            state.apply(request)
        after = _snapshot(state)
        new = {key for key, value in after.items() if before.get(key) != value}
        if not new:
            continue
        disclosures += 1
        if persona is not None and _breaks_pacing(
            persona,
            new,
            seen_events,
            goal_events,
            first=disclosures == 1,
            asked=_asked(last_assistant),
        ):
            violations += 1
        seen_events |= new

    missing: list[str] = []
    for event_id, kind, wanted in items:
        said = state.events.get(event_id)
        if kind == "event":
            if said is None or said.duration != wanted:
                missing.append(f"event {event_id}")
        elif said is None or not _same_constraint(said.constraint, wanted):
            missing.append(f"event {event_id} constraint")
    communicated = len(items) - len(missing)
    coverage = communicated / len(items) if items else 1.0
    met = coverage == 1.0 if goal_met is None else goal_met
    stopped = bool(stop_indices)
    return UserFidelity(
        goal_items=len(items),
        communicated=communicated,
        goal_coverage=coverage,
        missing=tuple(missing),
        stopped=stopped,
        goal_met=met,
        premature_stop=stopped and not met,
        request_messages=request_messages,
        disclosures=disclosures,
        pacing_violations=None if persona is None else violations,
        leakage=None if persona is None else violations / max(disclosures, 1),
        stop_count=len(stop_indices),
        stop_discipline=_stop_discipline(messages, stop_indices),
        user_messages=user_messages,
        chatter=chatter,
        turns=sum(1 for m in messages if m.role == "assistant"),
    )


def _breaks_pacing(
    persona: Persona,
    named: set[int],
    seen: set[int],
    goal_events: set[int],
    *,
    first: bool,
    asked: bool,
) -> bool:
    if persona.disclosure == "all_at_once":
        # Everything belongs in the first request; a goal event first named
        # later was held back.
        return not first and bool((named - seen) & goal_events)
    if len(named) > 1:
        return True
    return persona.disclosure == "when_asked" and not asked


def with_fidelity(
    rollout: Rollout, scenario: CalendarScenario, *, threshold: float = 1.0
) -> Rollout:
    """`rollout` with `metadata["fidelity"]` measured against `scenario`'s goal and persona.

    The goal counts as met when the rollout's reward reaches `threshold`
    (by full coverage when it has no reward). Reports and experiment tables
    read the metrics from there.

    Raises:
        UnknownPersonaError: the scenario names a persona that is not bundled.
    """
    goal_met = None if rollout.reward is None else rollout.reward >= threshold
    fidelity = user_fidelity(
        rollout.transcript,
        expected=scenario.goal if scenario.goal is not None else scenario.expected_state,
        persona=scenario_persona(scenario),
        goal_met=goal_met,
    )
    metadata = {**rollout.metadata, "fidelity": fidelity.model_dump(mode="json")}
    return rollout.model_copy(update={"metadata": metadata})
