"""Calendar verifiers: every assistant turn, and the final state.

Turn verifiers judge each calendar against what the user has asked for *so
far*, which they read from the user's messages in the transcript with the
same parser the solver uses (`convo_sim.domains.calendar._intents`), so they work on
NeMo-Gym prefixes as well as on simulated dialogues:

* `valid_calendar`: the reply shows a calendar (a JSON list of events) with
  each id once;
* `no_conflicts`: share of listed events that overlap no other;
* `events_present`: share of requested and listed events that are both, with
  the requested duration (an event nobody asked for counts against it);
* `constraints_honoured`: share of requested events listed inside the
  working window and within their latest constraint.

They read a reply exactly as the grader does (`convo_sim.domains.calendar._reply`):
a reply that is blank or holds `<think>` scores 0 on every one of them,
with reason `empty_reply` or `think_found`, even before anything has been
asked for. Together they are at least as strict as the grader: when all
four score 1 on a reply, the grader passes it against what was asked.

`CalendarFinalVerifier` grades the dialogue's final reply
(`convo_sim._verification.final_reply`) against the scenario's expected state
with `grade_calendar_response` (NeMo-Gym's rule).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

from convo_sim._messages import Message, Transcript
from convo_sim._results import TurnScore, Verdict
from convo_sim._verification import (
    NO_FINAL_REPLY,
    FinalContext,
    FinalVerifier,
    TurnContext,
    TurnVerifier,
)
from convo_sim.domains.calendar._grading import grade_calendar_response
from convo_sim.domains.calendar._intents import (
    RequestedState,
    constraint_of,
    message_requests,
    requested_state,
)
from convo_sim.domains.calendar._model import WORKING_WINDOW, ExpectedState, ListedEvent
from convo_sim.domains.calendar._overlaps import overlapping, partner
from convo_sim.domains.calendar._reply import CalendarReading, read_reply
from convo_sim.domains.calendar._scenario import CalendarGoal, expected_state_of
from convo_sim.domains.calendar._times import MINUTES_PER_DAY, format_24h, parse_time
from convo_sim.scenarios._model import Scenario

# Readings no turn may pass, asked for or not: the grader fails them all.
_UNREADABLE: Final = frozenset(("empty_reply", "think_found"))
_PAIRS_SHOWN: Final = 10  # overlapping pairs listed in a score's details

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


def _no_list(verifier: _Verifier, ctx: TurnContext, reading: CalendarReading) -> TurnScore:
    reason = reading.problem or "no_json_list"
    return _score(verifier, ctx, 0.0, reason, detail=reading.detail or "no calendar shown")


class _Verifier:
    """What the calendar turn verifiers share: a name, the replay of the requests, the reading."""

    name = ""

    def __init__(self) -> None:
        self._replay = _Requested()

    def _requested(self, ctx: TurnContext) -> RequestedState:
        return self._replay(ctx.transcript.messages)

    def _calendar(
        self, ctx: TurnContext, *, requested: bool
    ) -> tuple[tuple[ListedEvent, ...] | None, TurnScore | None]:
        """The calendar shown, or the score of a turn that shows none.

        `requested`: whether something has been asked for; a reply with no
        calendar is fine before that, unless it is blank or thinks aloud.
        """
        reading = read_reply(ctx.message.text)
        if reading.events is not None:
            return reading.events, None
        if reading.problem in _UNREADABLE:
            return None, _no_list(self, ctx, reading)
        if not requested:
            return None, _score(self, ctx, 1.0, "nothing_requested")
        return None, _no_list(self, ctx, reading)


class ValidCalendar(_Verifier):
    """1 when the reply shows a calendar with each event id once, else 0."""

    name = "valid_calendar"

    def __call__(self, ctx: TurnContext) -> TurnScore:
        listed, failed = self._calendar(ctx, requested=bool(self._requested(ctx).events))
        if listed is None:
            assert failed is not None
            return failed
        counts = Counter(e.event_id for e in listed)
        repeated = sorted(i for i, n in counts.items() if n > 1)
        if repeated:
            return _score(self, ctx, 0.0, "duplicate_event_id", event_ids=repeated)
        return _score(self, ctx, 1.0, "pass", events=len(listed))


class NoConflicts(_Verifier):
    """Share of listed events that overlap no other (half-open intervals).

    O(n log n) in the number of events listed; the details name at most ten
    overlapping pairs (each event with the first one it overlaps).
    """

    name = "no_conflicts"

    def __call__(self, ctx: TurnContext) -> TurnScore:
        listed, failed = self._calendar(ctx, requested=bool(self._requested(ctx).events))
        if listed is None:
            assert failed is not None
            return failed
        spans = [(e.start_time, e.end_time) for e in listed]
        involved = overlapping(spans)
        if not involved:
            return _score(self, ctx, 1.0, "pass")
        pairs: list[list[str]] = []
        for position in involved:
            other = partner(spans, position)
            if other is not None and other > position:
                pairs.append([listed[position].event_id, listed[other].event_id])
            if len(pairs) == _PAIRS_SHOWN:
                break
        return _score(
            self,
            ctx,
            1.0 - len(involved) / len(listed),
            "conflicting_events",
            overlapping=pairs,
            events_overlapping=len(involved),
        )


class EventsPresent(_Verifier):
    """Share of the events requested so far that are listed, with their duration, and nothing else.

    The score is the number of requested events listed with the requested
    duration, over the number of events requested plus those listed without
    having been requested: the grader fails a calendar with an extra event,
    and so does this.
    """

    name = "events_present"

    def __call__(self, ctx: TurnContext) -> TurnScore:
        requested = self._requested(ctx)
        listed, failed = self._calendar(ctx, requested=bool(requested.events))
        if listed is None:
            assert failed is not None
            return failed
        if not requested.events:
            return _score(self, ctx, 1.0, "nothing_requested")
        shown = {e.event_id: e for e in listed}
        missing: list[int] = []
        wrong: list[int] = []
        for key, event in requested.events.items():
            entry = shown.get(str(key))
            if entry is None:
                missing.append(key)
            elif entry.duration != event.duration:
                wrong.append(key)
        extra: list[str] = []
        if len(shown) > len(requested.events) - len(missing):  # something unrequested is listed
            wanted = {str(key) for key in requested.events}
            extra = [key for key in shown if key not in wanted]
        ok = len(requested.events) - len(missing) - len(wrong)
        if not missing and not wrong and not extra:
            return _score(self, ctx, 1.0, "pass", events=ok)
        reason = "missing_events" if missing else "wrong_duration" if wrong else "extra_events"
        return _score(
            self,
            ctx,
            ok / (len(requested.events) + len(extra)),
            reason,
            missing=missing,
            wrong_duration=wrong,
            extra=extra,
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
        listed, failed = self._calendar(ctx, requested=bool(requested.events))
        if listed is None:
            assert failed is not None
            return failed
        if not requested.events:
            return _score(self, ctx, 1.0, "nothing_requested")
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
            or seed `expected_state`). None: the scenario's (its
            `expected_state`, else its calendar goal's) if the dialogue has a
            scenario with one, else everything the user asked for in the
            transcript.
    """

    name = "calendar_final"

    def __init__(self, expected: ExpectedState | Mapping[str, Any] | None = None) -> None:
        self.expected = expected

    def __call__(self, ctx: FinalContext[Scenario]) -> Verdict:
        expected, source = self._expected(ctx)
        # The final reply or nothing: never an earlier reply (see `final_reply`).
        reply = ctx.final_reply
        if reply is None:
            return Verdict(
                reward=0.0,
                reason=NO_FINAL_REPLY,
                details={"detail": "the dialogue has no final reply", "expected_from": source},
            )
        grade = grade_calendar_response(reply.text, expected)
        return Verdict(
            reward=grade.reward,
            reason=grade.reason,
            details={"detail": grade.detail, "expected_from": source},
        )

    def _expected(
        self, ctx: FinalContext[Scenario]
    ) -> tuple[ExpectedState | Mapping[str, Any], str]:
        if self.expected is not None:
            return self.expected, "verifier"
        if ctx.scenario is not None:
            found = expected_state_of(ctx.scenario)
            if isinstance(found, Mapping):
                return found, "scenario"
        return _from_transcript(ctx.transcript), "transcript"


def _from_transcript(transcript: Transcript) -> dict[str, dict[str, Any]]:
    return requested_state(transcript.messages).expected_state()


def calendar_verifiers(
    scenario: Scenario | None = None,
) -> tuple[list[TurnVerifier], list[FinalVerifier[Scenario]]]:
    """The calendar domain's verifiers for a scenario: (turn verifiers, final verifiers).

    The working window comes from the scenario's calendar goal when it has
    one; the final verifier reads the scenario's expected state when the
    dialogue ends (see `CalendarFinalVerifier`).
    """
    window = WORKING_WINDOW
    goal = scenario.goal if scenario is not None else None
    if isinstance(goal, CalendarGoal):
        window = (parse_time(goal.min_time), parse_time(goal.max_time))
    verifiers = (ValidCalendar(), NoConflicts(), EventsPresent(), ConstraintsHonoured(window))
    shared = _Requested()
    for verifier in verifiers:
        verifier._replay = shared
    turn: list[TurnVerifier] = [*verifiers]
    final: list[FinalVerifier[Scenario]] = [CalendarFinalVerifier()]
    return turn, final


def _span(event: ListedEvent) -> str:
    return f"{_clock(event.start_time)}-{_clock(event.end_time)}"


def _clock(minutes: int) -> str:
    # A reply's times are read as the grader reads them, so they may lie
    # outside the day ("-1:00", "30:00").
    return format_24h(minutes) if 0 <= minutes <= MINUTES_PER_DAY else f"{minutes} min"
