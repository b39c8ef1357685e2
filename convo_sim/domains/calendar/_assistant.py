"""A rule-based calendar assistant: parse the user's requests, solve exactly, show the calendar.

`CalendarSolverAssistant` is the offline default of the calendar domain. It
rebuilds its state from the transcript it is shown every turn (so it can
continue a NeMo-Gym conversation prefix written by someone else), schedules
with the exact search of `convo_sim.domains.calendar._solve`, keeps events where the
last calendar shown put them whenever it can, and prints the whole calendar
as a JSON list in every reply.

A user message may hold several requests (an `upfront` user states its
whole goal at once); they are read with
`convo_sim.domains.calendar._intents.message_requests` and applied in order. Every
reply invites the next request: after what it did ("Added ... Anything
else you'd like to schedule?"), or, when the latest user message asked for
nothing (a greeting, "Okay.", a deflection), with the calendar alone ("Is
there anything else you'd like to schedule?"). That is not a follow-up
question about a request, which the calendar prompt rules out; it is what a
scheduling assistant says, and it lets a `withholding` user, who speaks
only when asked, reveal one request per turn, so that the solver is a
perfect assistant for every persona.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from convo_sim._actors import View
from convo_sim._messages import Message
from convo_sim.domains.calendar._intents import (
    CalendarRequest,
    RequestedEvent,
    RequestedState,
    constraint_of,
    message_requests,
    shown_calendar,
)
from convo_sim.domains.calendar._model import (
    WORKING_WINDOW,
    ListedEvent,
    format_calendar,
)
from convo_sim.domains.calendar._solve import EventSpec, solve_schedule

__all__ = ["CalendarSolverAssistant"]

_SHOWN = "Here is your calendar."
_INVITE_EMPTY = "Your calendar is empty. What would you like to schedule?"
_INVITE_MORE = "Here is your calendar. Is there anything else you'd like to schedule?"
_INVITE_NEXT = "Anything else you'd like to schedule?"


@dataclass(slots=True)
class _Replay:
    """The requests read so far, and what the latest user message did.

    `note` is None while the latest user message asked for nothing (or there
    is none yet); the reply then shows the calendar, inviting a request.
    """

    texts: tuple[str, ...] = ()
    state: RequestedState = field(default_factory=RequestedState)
    note: str | None = None


def _copy(state: RequestedState) -> RequestedState:
    events = {
        key: RequestedEvent(e.event_id, e.name, e.duration, e.constraint)
        for key, e in state.events.items()
    }
    return RequestedState(events, state.requests)


class CalendarSolverAssistant:
    """An exact, deterministic calendar assistant.

    Every turn it reads all user messages in the transcript with
    `convo_sim.domains.calendar._intents.message_requests` (several requests in one
    message are applied one after the other), and schedules the result. A
    request that would make the calendar impossible (no placement honours
    every constraint) is not applied, and the reply says so. Events keep the
    start the last shown calendar gave them when that still fits; new or
    displaced events go to the earliest slot that lets everything fit.

    Args:
        window: the working day, `(start, end)` in minutes since midnight.
        step: the grid of start times the solver tries, in minutes.
        sentence: begin each reply with one short sentence before the list.
        invite: end every reply's sentence with an invitation to the next
            request ("Anything else you'd like to schedule?"); False never
            asks ("Here is your calendar." when the user asked for nothing),
            which a `withholding` user answers by waiting until its turns
            run short.
    """

    def __init__(
        self,
        *,
        window: tuple[int, int] = WORKING_WINDOW,
        step: int = 15,
        sentence: bool = True,
        invite: bool = True,
    ) -> None:
        self.window = window
        self.step = step
        self.sentence = sentence
        self.invite = invite
        # Memo of the last transcript read; a pure speed-up, since the state
        # is always what replaying the shown transcript gives.
        self._replay = _Replay()

    async def respond(self, view: View) -> Message:
        """Return the calendar for everything asked so far, as a JSON list.

        Raises:
            Exception: only on a bug; every user message has an answer.
        """
        return Message(role="assistant", content=self.reply(view.transcript.messages))

    def reply(self, messages: Sequence[Message]) -> str:
        """The reply to a dialogue (a plain function of it, for use outside a run)."""
        texts = tuple(m.text for m in messages if m.role == "user")
        replay, starts = self._read(texts, _last_shown(messages))
        listed = [
            ListedEvent(str(e.event_id), e.name, starts[str(e.event_id)], e.duration)
            for e in sorted(replay.state.events.values(), key=lambda e: e.event_id)
        ]
        calendar = format_calendar(listed)
        if not self.sentence:
            return calendar
        note = replay.note
        if note is None:
            note = _SHOWN if not self.invite else _INVITE_MORE if listed else _INVITE_EMPTY
        elif self.invite:
            note = f"{note} {_INVITE_NEXT}"
        return f"{note}\n\n{calendar}"

    def _read(
        self, texts: tuple[str, ...], current: dict[str, int]
    ) -> tuple[_Replay, dict[str, int]]:
        """Replay the user's messages; return the state and a schedule for it."""
        done = self._replay
        if texts[: len(done.texts)] == done.texts:
            replay = _Replay(done.texts, _copy(done.state), done.note)
            new = texts[len(done.texts) :]
        else:
            replay, new = _Replay(), texts
        starts: dict[str, int] | None = None
        for text in new:
            replay.note, starts = self._apply_all(replay.state, message_requests(text), current)
        replay.texts = texts
        self._replay = replay
        if starts is None:
            starts = self._solve(replay.state, current)
            # Every applied request was checked to leave a solvable calendar.
            assert starts is not None
        return replay, starts

    def _apply_all(
        self, state: RequestedState, requests: Sequence[CalendarRequest], current: dict[str, int]
    ) -> tuple[str | None, dict[str, int] | None]:
        """Apply one message's requests to `state`, in order, each only if it fits.

        Returns what to tell the user (None: the message asked for nothing),
        and the schedule of the new state (None when the state did not change).
        """
        notes: list[str] = []
        starts: dict[str, int] | None = None
        for request in requests:
            note, solved = self._apply(state, request, current)
            notes.append(note)
            # A refused request leaves the state, and so the last schedule, as it was.
            if solved is not None:
                starts = solved
        return (" ".join(notes) if notes else None), starts

    def _apply(
        self, state: RequestedState, request: CalendarRequest, current: dict[str, int]
    ) -> tuple[str, dict[str, int] | None]:
        """Apply one request to `state` if it leaves a solvable calendar.

        Returns what to tell the user, and the schedule of the new state
        (None when the state did not change).
        """
        key = request.event_id
        attempt = _copy(state)
        if not attempt.apply(request):
            return f"There is no event {key} yet; tell me its duration and I will add it.", None
        # Solving (rather than only deciding solvability) doubles as the
        # schedule for this turn's reply, so the search runs once per request.
        starts = self._solve(attempt, current)
        added = key not in state.events
        if starts is None:
            # Other requests of the same message may have changed the calendar,
            # so the note speaks of this event only.
            kept = "did not add it" if added else "left it as it was"
            return (
                f"I cannot fit that for event {key} without breaking another constraint, "
                f"so I {kept}."
            ), None
        state.events, state.requests = attempt.events, attempt.requests
        event = state.events[key]
        if added:
            note = f"Added {event.name!r} (event {key}, {event.duration} minutes)."
            if request.constraint is not None:
                note = f"{note[:-1]}, {request.constraint}."
        elif request.constraint is not None:
            note = f"Scheduled {event.name!r} (event {key}) {request.constraint}."
        else:
            note = f"Changed {event.name!r} (event {key}) to {event.duration} minutes."
        return note, starts

    def _solve(self, state: RequestedState, current: dict[str, int]) -> dict[str, int] | None:
        specs = [
            EventSpec(str(e.event_id), e.duration, constraint_of(e.constraint))
            for e in state.events.values()
        ]
        return solve_schedule(specs, window=self.window, current=current, step=self.step)


def _last_shown(messages: Sequence[Message]) -> dict[str, int]:
    """The starts of the most recent calendar an assistant showed (keep them if possible)."""
    for message in reversed(messages):
        if message.role != "assistant" or not message.text:
            continue
        listed = shown_calendar(message.text)
        if listed is not None:
            return {e.event_id: e.start_time for e in listed}
    return {}
