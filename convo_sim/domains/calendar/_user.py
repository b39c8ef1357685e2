"""A rule-based calendar user: reveals its goal turn by turn and checks every calendar.

`CalendarUser` plays the user side of the calendar domain offline. Each turn
it reads the calendar the assistant showed exactly as the grader reads it
(`convo_sim.domains.calendar._reply`: think tags, the first JSON list, its times and
durations) and checks it, with the grader's constraint checks,
against everything it has asked for so far. A mistake gets pointed out, at
most `max_corrections` times; after that the user gives up. Otherwise it
reveals its next request, or, when the whole goal is revealed and met, says
thanks with the stop token.

Phrasings are picked by `random.Random` seeded with the scenario's seed and
the message's position, so a seed always gives the same dialogue, and
different seeds give different wordings (of the same requests). Every
phrasing is one that `convo_sim.domains.calendar._intents.parse_request` reads back
exactly, and names events the way NeMo-Gym's users do: "(event id: 3)".
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from convo_sim._actors import View
from convo_sim._completion import DEFAULT_STOP_TOKEN
from convo_sim._messages import Message
from convo_sim.domains.calendar._model import (
    Constraint,
    ExpectedEvent,
    ExpectedState,
    ListedEvent,
    parse_constraint,
)
from convo_sim.domains.calendar._overlaps import overlapping, partner
from convo_sim.domains.calendar._reply import read_reply
from convo_sim.domains.calendar._scenario import CalendarScenario, GoalStep
from convo_sim.domains.calendar._times import format_12h, format_24h
from convo_sim.users._persona import PERSONAS

__all__ = ["CalendarUser"]

_ADD = (
    'Hey, could you add a new event titled "{name}"? It should be a {adj} slot. {ref}',
    'Could you add "{name}" to my calendar? It runs {noun}. {ref}',
    "Please add {name} {ref} to my calendar for {noun}.",
    "Can you put in a {adj} {name}? {ref}",
    'I need a {adj} slot for "{name}" {ref}, please.',
    'Could you schedule "{name}" {ref}? It will take {noun}.',
    "Hi! Please book {name} {ref} on the calendar, lasting {noun}.",
)
_ADD_CONSTRAINED = (
    'Could you add "{name}" {ref} for {noun}, {phrase}?',
    'Please put "{name}" on my calendar {ref}: it takes {noun} and should be {phrase}.',
    'New one: "{name}" {ref}, {noun}, {phrase}, please.',
)
_CONSTRAIN = (
    "Could you slot {short} {ref} {phrase}?",
    "Can we make sure {short} {ref} is {phrase}? Thanks.",
    "Please schedule {short} {ref} {phrase}.",
    "I'd like {short} {ref} to be {phrase}.",
    "For {short} {ref}: it needs to be {phrase}.",
)
_MOVE = (
    "Change of plans: could you move {short} {ref} so it is {phrase}?",
    "Actually, {short} {ref} should be {phrase} instead.",
    "Scratch the earlier timing for {short} {ref}; make it {phrase}, please.",
    "Sorry to switch things up, but can {short} {ref} be {phrase} now?",
)
_PHRASES: dict[str, tuple[str, ...]] = {
    "before": (
        "before {t}",
        "ending by {t}",
        "wrapped up by {t}",
        "finished no later than {t}",
        "done by {t}",
    ),
    "after": (
        "after {t}",
        "starting at {t} or later",
        "starting at or after {t}",
        "no earlier than {t}",
    ),
    "between": (
        "between {t} and {u}",
        "somewhere between {t} and {u}",
        "sometime between {t} and {u}",
        "from {t} to {u}",
    ),
    # Not "starting at {t}": that reads as "at {t} or later".
    "at": ("at {t}", "at exactly {t}", "at {t} sharp"),
}
_DONE = (
    "That's everything, thanks! {stop}",
    "Perfect, that's all I needed. {stop}",
    "Looks great, thank you! {stop}",
    "Great, we're all set. {stop}",
)
_GIVE_UP = (
    "This still isn't right, so let's leave it here. {stop}",
    "I don't think this is going to work out. Never mind. {stop}",
    "Still not what I asked for; I'll sort it out myself. {stop}",
)
_THANKS = ("Thanks! ", "Great, thank you. ", "Nice, thanks. ", "")


@dataclass(frozen=True, slots=True)
class _Problem:
    """The first thing wrong with a shown calendar, for the user to point out."""

    kind: str
    event: ExpectedEvent | None = None
    other: str | None = None


class CalendarUser:
    """A simulated user that reveals a `CalendarGoal` and checks the assistant's calendars.

    Args:
        scenario: the scenario whose `goal` the user pursues (it must have one).
        seed: seeds the wording; the scenario's seed by default.
        max_corrections: how many times the user points out a mistake before
            giving up.
        combine: the chance that a new event and its first constraint are
            asked for in one message.
        stop_token: what the user says when it is done or gives up.

    Raises:
        ValueError: the scenario has no goal, or an argument is out of range.
    """

    def __init__(
        self,
        scenario: CalendarScenario,
        *,
        seed: int | None = None,
        max_corrections: int = 2,
        combine: float = 0.3,
        stop_token: str = DEFAULT_STOP_TOKEN,
    ) -> None:
        if scenario.goal is None:
            raise ValueError(f"scenario {scenario.id!r} has no calendar goal for CalendarUser")
        if max_corrections < 0:
            raise ValueError(f"max_corrections must be at least 0, got {max_corrections!r}")
        if not 0.0 <= combine <= 1.0:
            raise ValueError(f"combine must be in [0, 1], got {combine!r}")
        self.scenario = scenario
        self.goal = scenario.goal
        self.seed = scenario.seed if seed is None else seed
        self.max_corrections = max_corrections
        self.stop_token = stop_token
        persona = PERSONAS.get(scenario.persona or "")
        self.verbosity = persona.verbosity if persona is not None else "normal"
        self.messages = self._plan(combine)
        self.revealed = 0  # goal steps revealed so far
        self.sent = 0  # planned messages sent so far
        self.corrections = 0
        self._expected: tuple[int, ExpectedState] = (0, ExpectedState())

    def _rng(self, *key: object) -> random.Random:
        # A string seed is hashed with SHA-512 by `random`, so it is stable
        # across processes, unlike hash().
        return random.Random(":".join(map(str, (self.seed, *key))))

    def _plan(self, combine: float) -> list[tuple[str, int]]:
        """The messages to send, as (text, number of goal steps it reveals)."""
        steps = self.goal.steps
        rng = self._rng("plan")
        plan: list[tuple[str, int]] = []
        constrained: set[int] = set()
        names = {s.event_id: s.name or f"Event {s.event_id}" for s in steps if s.action == "add"}
        i = 0
        while i < len(steps):
            step = steps[i]
            msg_rng = self._rng("message", len(plan))
            if step.action == "add":
                following = steps[i + 1] if i + 1 < len(steps) else None
                if (
                    following is not None
                    and following.action == "constrain"
                    and following.event_id == step.event_id
                    and rng.random() < combine
                ):
                    plan.append((self._add(msg_rng, step, following), 2))
                    constrained.add(step.event_id)
                    i += 2
                    continue
                plan.append((self._add(msg_rng, step, None), 1))
            else:
                moved = step.event_id in constrained
                constrained.add(step.event_id)
                templates = _MOVE if moved else _CONSTRAIN
                text = msg_rng.choice(templates).format(
                    short=_short(names[step.event_id], msg_rng),
                    ref=_ref(step.event_id),
                    phrase=_phrase(msg_rng, _constraint(step)),
                )
                plan.append((self._voice(msg_rng, text), 1))
            i += 1
        return plan

    def _add(self, rng: random.Random, step: GoalStep, constraint: GoalStep | None) -> str:
        assert step.name is not None and step.duration is not None
        fields = {
            "name": step.name,
            "ref": _ref(step.event_id),
            "adj": _duration_adjective(rng, step.duration),
            "noun": _duration_noun(rng, step.duration),
        }
        if constraint is None:
            return self._voice(rng, rng.choice(_ADD).format(**fields))
        text = rng.choice(_ADD_CONSTRAINED).format(
            **fields, phrase=_phrase(rng, _constraint(constraint))
        )
        return self._voice(rng, text)

    def _voice(self, rng: random.Random, text: str) -> str:
        """Fit a message to the persona's verbosity."""
        if self.verbosity == "terse":
            return text.removeprefix("Hey, ").removeprefix("Hi! ").replace(" Thanks.", "")
        if self.verbosity == "verbose":
            return f"{text} I really appreciate the help keeping my day organised."
        return text

    async def respond(self, view: View) -> Message:
        """Reveal the next request, point out a mistake, or stop.

        Raises:
            Exception: only on a bug; every assistant reply gets an answer.
        """
        return Message(role="user", content=self.reply(view.last))

    def reply(self, assistant: Message | None) -> str:
        """The user's next message after the assistant's message `assistant`."""
        if self.sent == 0 and self.revealed == 0:
            return self._next()
        return self.answer(self.check(assistant))

    @property
    def done_revealing(self) -> bool:
        """Every planned request has been sent."""
        return self.sent >= len(self.messages)

    def check(self, assistant: Message | None) -> _Problem | None:
        """The first problem the user sees in the calendar `assistant` shows, or None."""
        return self._check(assistant.text if assistant is not None else "")

    def answer(self, problem: _Problem | None) -> str:
        """The user's next message, given what `check` found in the last reply."""
        if problem is not None:
            rng = self._rng("correction", self.corrections)
            if self.corrections >= self.max_corrections:
                return rng.choice(_GIVE_UP).format(stop=self.stop_token)
            self.corrections += 1
            return self._voice(rng, self._correction(rng, problem))
        if self.sent < len(self.messages):
            rng = self._rng("thanks", self.sent)
            thanks = rng.choice(_THANKS) if self.verbosity != "terse" else ""
            return thanks + self._next()
        return self._rng("done").choice(_DONE).format(stop=self.stop_token)

    def _next(self) -> str:
        text, steps = self.messages[self.sent]
        self.sent += 1
        self.revealed += steps
        return text

    def expected(self) -> ExpectedState:
        """What the calendar must satisfy, given the requests revealed so far."""
        if self._expected[0] != self.revealed:
            self._expected = (
                self.revealed,
                ExpectedState.from_nemo(self.goal.expected_state(self.revealed)),
            )
        return self._expected[1]

    def _check(self, text: str) -> _Problem | None:
        # The grader's reading of the reply (`convo_sim.domains.calendar._reply`): a
        # reply it cannot see a calendar in is one the user cannot see one in.
        reading = read_reply(text)
        if reading.events is None:
            return _Problem("think" if reading.problem == "think_found" else "no_calendar")
        return _diagnose(reading.events, self.expected())

    def _correction(self, rng: random.Random, problem: _Problem) -> str:
        event = problem.event
        if problem.kind == "think":
            return "Please leave out your <think> notes and just show me the calendar as a list."
        if problem.kind == "no_calendar" or event is None:
            if problem.kind == "extra":
                return f"I didn't ask for event {problem.other}; please take it off the calendar."
            return rng.choice(
                (
                    "I can't see the calendar in your reply. Could you show it as a list?",
                    "Could you show me the whole calendar, please? I can't read it here.",
                )
            )
        step = self._add_step(int(event.event_id))
        name = step.name or f"Event {event.event_id}"
        ref = _ref(step.event_id)
        if problem.kind == "missing":
            text = (
                f'You left out "{name}" {ref}. It should be {_duration_noun(rng, event.duration)}'
            )
            if event.constraint is not None:
                text += f", {_phrase(rng, event.constraint)}"
            return text + "."
        if problem.kind == "duration":
            return f"{_short(name, rng)} {ref} should last {_duration_noun(rng, event.duration)}."
        if problem.kind == "overlap":
            other = self._add_step(int(problem.other or 0))
            return (
                f"{_short(name, rng)} {ref} overlaps with {_short(other.name or '', rng)} "
                f"{_ref(other.event_id)}. They can't be at the same time."
            )
        if problem.kind == "window":
            return f"{_short(name, rng)} {ref} has to fit inside my working day."
        assert event.constraint is not None
        return rng.choice(
            (
                "That's not right: {short} {ref} needs to be {phrase}.",
                "Hmm, {short} {ref} was supposed to be {phrase}.",
                "Please double-check {short} {ref}: I asked for it {phrase}.",
            )
        ).format(short=_short(name, rng), ref=ref, phrase=_phrase(rng, event.constraint))

    def _add_step(self, event_id: int) -> GoalStep:
        return next(s for s in self.goal.steps if s.action == "add" and s.event_id == event_id)


def _diagnose(listed: Sequence[ListedEvent], expected: ExpectedState) -> _Problem | None:
    """The first problem with `listed`, in the order a person would notice it."""
    shown = {e.event_id: e for e in listed}
    if len(shown) < len(listed):
        return _Problem("no_calendar")  # an id listed twice: ask for the calendar again
    for key, event in expected.items():
        if key not in shown:
            return _Problem("missing", event)
    extra = [key for key in shown if key not in expected]
    if extra:
        return _Problem("extra", other=extra[0])
    for key, event in expected.items():
        if shown[key].duration != event.duration:
            return _Problem("duration", event)
    # One sort instead of comparing every pair (O(n log n) in the events listed).
    spans = [(e.start_time, e.end_time) for e in listed]
    involved = set(overlapping(spans))
    if involved:
        position_of = {e.event_id: position for position, e in enumerate(listed)}
        for key, event in expected.items():
            position = position_of[key]
            if position in involved:
                other = partner(spans, position)
                assert other is not None  # `overlapping` saw one
                return _Problem("overlap", event, listed[other].event_id)
    for key, event in expected.items():
        start = shown[key].start_time
        if start < event.min_time or start + event.duration > event.max_time:
            return _Problem("window", event)
        if event.constraint is not None and not event.constraint.allows(start, event.duration):
            return _Problem("constraint", event)
    return None


def _constraint(step: GoalStep) -> Constraint:
    constraint = parse_constraint(step.constraint)
    assert constraint is not None  # a constrain step always has one (GoalStep validates)
    return constraint


def _ref(event_id: int) -> str:
    return f"(event id: {event_id})"


def _short(name: str, rng: random.Random) -> str:
    """How the user refers to an event it already added: its name, or the part before a colon."""
    head = name.split(":")[0].strip()
    return rng.choice((f"the {name}", f"the {head}", name)) if head else name


def _time(rng: random.Random, minutes: int) -> str:
    twelve = format_12h(minutes)
    number, suffix = twelve[:-2], twelve[-2:]
    forms = [twelve, f"{number} {suffix}", f"{number}\u202f{suffix}", format_24h(minutes)]
    if ":" not in number:
        forms.append(f"{number}:00 {suffix}")
    if minutes == 12 * 60:
        forms.append("noon")
    return rng.choice(forms)


def _phrase(rng: random.Random, constraint: Constraint) -> str:
    template = rng.choice(_PHRASES[constraint.kind])
    until = constraint.until if constraint.until is not None else constraint.time
    return template.format(t=_time(rng, constraint.time), u=_time(rng, until))


def _duration_adjective(rng: random.Random, minutes: int) -> str:
    forms = [f"{minutes}-minute", f"{minutes}\u2011minute"]
    if minutes % 60 == 0:
        hours = minutes // 60
        forms.append(f"{hours}-hour" if hours > 1 else "one-hour")
    if minutes == 30:
        forms.append("half-hour")
    return rng.choice(forms)


def _duration_noun(rng: random.Random, minutes: int) -> str:
    forms = [f"{minutes} minutes", f"about {minutes} minutes"]
    words = {30: "half an hour", 60: "an hour", 90: "an hour and a half", 120: "two hours"}
    if minutes in words:
        forms.append(words[minutes])
    if minutes > 60 and minutes % 60:
        forms.append(f"1 hour {minutes - 60} minutes" if minutes < 120 else f"{minutes} minutes")
    return rng.choice(forms)
