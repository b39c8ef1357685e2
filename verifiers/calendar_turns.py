"""Calendar verifiers: every assistant turn, and the final state.

Turn verifiers judge each calendar against what the user has asked for *so
far*, which they read from the user's messages in the transcript with the
same parser the solver uses (`convo_sim.calendar.intents`), so they work on
NeMo-Gym prefixes as well as on simulated dialogues:

* `valid_calendar`: the reply shows a calendar (a JSON list of events) with
  each id once;
* `no_conflicts`: share of listed events that overlap no other;
* `events_present`: share of requested events listed with their duration;
* `constraints_honoured`: share of requested events listed inside the
  working window and within their latest constraint.

`CalendarFinalVerifier` grades the last assistant reply against the
scenario's expected state with `grade_calendar_response` (NeMo-Gym's rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from convo_sim.calendar.intents import (
    RequestedState,
    constraint_of,
    message_requests,
    requested_state,
    shown_calendar,
)
from convo_sim.calendar.model import WORKING_WINDOW, ExpectedState, ListedEvent
from convo_sim.calendar.times import format_24h, parse_time
from convo_sim.messages import Message, Transcript
from convo_sim.results import TurnScore, Verdict
from convo_sim.verification import FinalContext, FinalVerifier, TurnContext, TurnVerifier
from convo_sim.verifiers.calendar import grade_calendar_response

__all__ = [
    "CalendarFinalVerifier",
    "ConstraintsHonoured",
    "EventsPresent",
    "NoConflicts",
    "ValidCalendar",
    "calendar_verifiers",
]


class _Requested:
    """`requested_state` of a transcript, replaying only the user messages new since the last call.

    A verifier scores every turn of its dialogue, and replaying the whole
    dialogue each time made scoring quadratic. A transcript that does not
    extend the last one is replayed from the start, so the answer is always
    `requested_state(messages)`. The state returned is the memo's own: read
    it, do not change it. `calendar_verifiers` gives its verifiers one memo,
    so the second to ask in a turn gets the first one's answer.
    """

    __slots__ = ("messages", "state", "texts")

    def __init__(self) -> None:
        self.messages: tuple[Message, ...] = ()  # held, so that `is` below is sound
        self.texts: tuple[str, ...] = ()
        self.state = RequestedState()

    def __call__(self, messages: tuple[Message, ...]) -> RequestedState:
        if messages is self.messages:
            return self.state
        texts = tuple(m.text for m in messages if m.role == "user")
        done = len(self.texts)
        if texts[:done] != self.texts:
            self.state, done = RequestedState(), 0
        for text in texts[done:]:
            for request in message_requests(text):
                self.state.apply(request)
        self.messages, self.texts = messages, texts
        return self.state


def _score(
    verifier: _Verifier, ctx: TurnContext, score: float, reason: str, **details: Any
) -> TurnScore:
    # Named and numbered here: the orchestrator copies a score that lacks them.
    return TurnScore(
        score=score, reason=reason, details=details, verifier=verifier.name, turn=ctx.turn
    )


def _no_list(verifier: _Verifier, ctx: TurnContext) -> TurnScore:
    return _score(verifier, ctx, 0.0, "no_json_list", detail="no calendar shown")


class _Verifier:
    """What the calendar turn verifiers share: a name and the replay of the requests."""

    name = ""

    def __init__(self) -> None:
        self._replay = _Requested()

    def _requested(self, ctx: TurnContext) -> RequestedState:
        return self._replay(ctx.transcript.messages)


class ValidCalendar(_Verifier):
    """1 when the reply shows a calendar with each event id once, else 0."""

    name = "valid_calendar"

    def __call__(self, ctx: TurnContext) -> TurnScore:
        listed = shown_calendar(ctx.message.text)
        if listed is None:
            if not self._requested(ctx).events:
                return _score(self, ctx, 1.0, "nothing_requested")
            return _no_list(self, ctx)
        ids = [e.event_id for e in listed]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            return _score(self, ctx, 0.0, "duplicate_event_id", event_ids=repeated)
        return _score(self, ctx, 1.0, "pass", events=len(listed))


class NoConflicts(_Verifier):
    """Share of listed events that overlap no other (half-open intervals)."""

    name = "no_conflicts"

    def __call__(self, ctx: TurnContext) -> TurnScore:
        listed = shown_calendar(ctx.message.text)
        if listed is None:
            if not self._requested(ctx).events:
                return _score(self, ctx, 1.0, "nothing_requested")
            return _no_list(self, ctx)
        pairs = _overlaps(listed)
        if not pairs:
            return _score(self, ctx, 1.0, "pass")
        involved = {i for pair in pairs for i in pair}
        return _score(
            self,
            ctx,
            1.0 - len(involved) / len(listed),
            "conflicting_events",
            overlapping=[list(pair) for pair in pairs],
        )


class EventsPresent(_Verifier):
    """Share of the events requested so far that are listed with their duration."""

    name = "events_present"

    def __call__(self, ctx: TurnContext) -> TurnScore:
        requested = self._requested(ctx)
        if not requested.events:
            return _score(self, ctx, 1.0, "nothing_requested")
        listed = shown_calendar(ctx.message.text)
        if listed is None:
            return _no_list(self, ctx)
        shown = {e.event_id: e for e in listed}
        missing = [k for k in requested.events if str(k) not in shown]
        wrong = [
            k
            for k, e in requested.events.items()
            if str(k) in shown and shown[str(k)].duration != e.duration
        ]
        ok = len(requested.events) - len(missing) - len(wrong)
        if not missing and not wrong:
            return _score(self, ctx, 1.0, "pass", events=ok)
        return _score(
            self,
            ctx,
            ok / len(requested.events),
            "missing_events" if missing else "wrong_duration",
            missing=missing,
            wrong_duration=wrong,
        )


class ConstraintsHonoured(_Verifier):
    """Share of the events requested so far that are listed in the window and constraint.

    An event that is not listed cannot honour its constraint, so it counts
    against this score as well as against `events_present`.

    Args:
        window: the working day, `(start, end)` in minutes since midnight.
    """

    name = "constraints_honoured"

    def __init__(self, window: tuple[int, int] = WORKING_WINDOW) -> None:
        super().__init__()
        self.window = window

    def __call__(self, ctx: TurnContext) -> TurnScore:
        requested = self._requested(ctx)
        if not requested.events:
            return _score(self, ctx, 1.0, "nothing_requested")
        listed = shown_calendar(ctx.message.text)
        if listed is None:
            return _no_list(self, ctx)
        shown = {e.event_id: e for e in listed}
        broken: dict[str, str] = {}
        for key, event in requested.events.items():
            entry = shown.get(str(key))
            if entry is None:
                broken[str(key)] = "not listed"
                continue
            if entry.start_time < self.window[0] or entry.end_time > self.window[1]:
                broken[str(key)] = f"runs {_span(entry)}, outside the working window"
                continue
            constraint = constraint_of(event.constraint)
            if constraint is not None and not constraint.allows(entry.start_time, entry.duration):
                broken[str(key)] = f"runs {_span(entry)}, breaking {constraint.text!r}"
        if not broken:
            return _score(self, ctx, 1.0, "pass")
        return _score(
            self,
            ctx,
            1.0 - len(broken) / len(requested.events),
            "constraint_violated",
            violations=broken,
        )


class CalendarFinalVerifier:
    """Grades the last assistant reply against the expected state, as NeMo-Gym does.

    Args:
        expected: the expected state (`ExpectedState`, NeMo `exp_cal_state`
            or seed `expected_state`). None: the scenario's (`Scenario.expected()`)
            if the dialogue has a scenario with one, else everything the user
            asked for in the transcript.
    """

    name = "calendar_final"

    def __init__(self, expected: ExpectedState | Mapping[str, Any] | None = None) -> None:
        self.expected = expected

    def __call__(self, ctx: FinalContext) -> Verdict:
        expected, source = self._expected(ctx)
        reply = next(
            (m for m in reversed(ctx.transcript.messages) if m.role == "assistant" and m.text),
            None,
        )
        if reply is None:
            return Verdict(
                reward=0.0,
                reason="no_assistant_reply",
                details={"detail": "the assistant never replied", "expected_from": source},
            )
        grade = grade_calendar_response(reply.text, expected)
        return Verdict(
            reward=grade.reward,
            reason=grade.reason,
            details={"detail": grade.detail, "expected_from": source},
        )

    def _expected(self, ctx: FinalContext) -> tuple[ExpectedState | Mapping[str, Any], str]:
        if self.expected is not None:
            return self.expected, "verifier"
        scenario_expected = getattr(ctx.scenario, "expected", None)
        if callable(scenario_expected):
            found = scenario_expected()
            if isinstance(found, Mapping):
                return found, "scenario"
        return _from_transcript(ctx.transcript), "transcript"


def _from_transcript(transcript: Transcript) -> dict[str, dict[str, Any]]:
    return requested_state(transcript.messages).expected_state()


def calendar_verifiers(
    scenario: object | None = None,
) -> tuple[list[TurnVerifier], list[FinalVerifier]]:
    """The calendar domain's verifiers for a scenario: (turn verifiers, final verifiers).

    The working window comes from the scenario's goal when it has one; the
    final verifier reads the scenario's expected state when the dialogue
    ends (see `CalendarFinalVerifier`).
    """
    window = WORKING_WINDOW
    goal = getattr(scenario, "goal", None)
    if goal is not None:
        window = (parse_time(goal.min_time), parse_time(goal.max_time))
    verifiers = (ValidCalendar(), NoConflicts(), EventsPresent(), ConstraintsHonoured(window))
    shared = _Requested()
    for verifier in verifiers:
        verifier._replay = shared
    turn: list[TurnVerifier] = [*verifiers]
    final: list[FinalVerifier] = [CalendarFinalVerifier()]
    return turn, final


def _overlaps(listed: Sequence[ListedEvent]) -> list[tuple[str, str]]:
    ordered = sorted(listed, key=lambda e: (e.start_time, e.end_time))
    pairs: list[tuple[str, str]] = []
    for i, first in enumerate(ordered):
        for second in ordered[i + 1 :]:
            if second.start_time >= first.end_time:
                break
            pairs.append((first.event_id, second.event_id))
    return pairs


def _span(event: ListedEvent) -> str:
    return f"{format_24h(event.start_time)}-{format_24h(min(event.end_time, 24 * 60))}"
