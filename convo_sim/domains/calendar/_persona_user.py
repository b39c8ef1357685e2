"""A persona on top of the rule-based calendar user.

`PersonaCalendarUser` wraps a `CalendarUser` (which knows *what* to say: the
goal's requests, its corrections, its thanks) and changes *how* it is said
and when, following a `Persona`:

* disclosure: `all_at_once` sends every planned request in the first
  message; `when_asked` holds the next request back until the assistant asks
  a question (or invites one), sending a short waiting line instead;
* cooperativeness: with chance `1 - cooperativeness` per turn, a request is
  replaced by a non-committal deflection (the request comes a turn later);
* patience: after `patience` messages, if it is not done, the user gives up
  with the stop token;
* change of mind: with chance `change_of_mind` per request that carries a
  time, the user first asks for another time (`at ...`), and reverts to the
  one it wants in its next message. It always reverts: the scenario's
  expected state is the goal, so a kept change would make the verifier
  grade the wrong target;
* verbosity, typos and off-topic remarks reshape the text. Every reshaped
  message is parsed again with the request parser, and a reshaping that
  would change what the message asks for is dropped, so noise never changes
  the goal.

Randomness comes from `random.Random` seeded with the seed and the message
index, so a seed always gives the same dialogue.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from convo_sim._actors import View
from convo_sim._completion import DEFAULT_STOP_TOKEN
from convo_sim._messages import Message
from convo_sim.domains.calendar._intents import message_requests, parse_request
from convo_sim.domains.calendar._model import parse_constraint
from convo_sim.domains.calendar._scenario import CalendarScenario
from convo_sim.domains.calendar._times import format_12h, parse_time
from convo_sim.domains.calendar._user import CalendarUser
from convo_sim.users._persona import Persona, get_persona

__all__ = ["PersonaCalendarUser"]

_INVITATION = re.compile(r"\?|\b(?:anything else|what else|let me know|tell me)\b", re.IGNORECASE)
_WAITING = (
    "Hi, I need some help with my calendar.",
    "Okay.",
    "Alright.",
    "Hmm, okay.",
)
_DEFLECT = (
    "Whatever you think works best.",
    "Hmm, I'm not sure yet. You decide.",
    "Let me think about it.",
    "Doesn't matter much to me.",
)
_GIVE_UP = (
    "I don't have time for this any more. {stop}",
    "This is taking too long; I'll do it myself. {stop}",
    "Never mind, let's stop here. {stop}",
)
_OFF_TOPIC = (
    "By the way, the coffee machine on our floor is broken again.",
    "Unrelated, but did you see the game last night?",
    "Also, my cat knocked a plant off the shelf this morning.",
    "Random thought: I should really water my plants.",
)
_CONTEXT = (
    "It's been a hectic week, so I want to get my schedule straight.",
    "I'm trying to keep my day organised, so bear with me.",
    "My manager asked me to sort out my calendar today.",
)
_REVERT = (
    "Sorry, I changed my mind back. ",
    "On second thought, forget that. ",
    "Actually no, let's keep it as I first wanted. ",
)
# Words the request parser keys on, spared by typos (as are words with digits).
_SPARED_WORDS = """
event before after between from until till later earlier than onwards starting
start noon midday hour hours minute minutes mins half quarter three four five
fifteen twenty thirty forty fifty sixty seventy ninety exactly sharp latest
least ending finished wrapped done lasting long slot
"""
_SPARED = frozenset(_SPARED_WORDS.split())
_WORD = re.compile(r"[A-Za-z]{4,}")
_PLEASANTRIES = re.compile(
    r"^(?:(?:hey|hi|hello)[,!]?|(?:great|nice|perfect)[,!]?\s+thank(?:s| you)[.!]?"
    r"|thanks[.!]?|thank you[.!]?)\s+|\s*(?:thanks|thank you)[.!]?\s*$|,?\s*\bplease\b,?",
    re.IGNORECASE,
)


def _meaning(text: str) -> list[tuple[int, int | None, str | None]]:
    """What a message asks for, names aside (typos may touch names)."""
    return [(r.event_id, r.duration, r.constraint) for r in message_requests(text)]


class PersonaCalendarUser:
    """A `CalendarUser` that plays a `Persona`.

    Args:
        scenario: the scenario (it must have a calendar goal).
        persona: the persona; default: the scenario's `persona` by name,
            else `cooperative`.
        seed: seeds wording and persona behaviour; the scenario's seed by default.
        stop_token: what the user says when it is done or gives up.
        max_corrections: passed to `CalendarUser`.

    Raises:
        ValueError: the scenario has no goal.
        UnknownPersonaError: the scenario names a persona that does not exist.
    """

    def __init__(
        self,
        scenario: CalendarScenario,
        *,
        persona: Persona | None = None,
        seed: int | None = None,
        stop_token: str = DEFAULT_STOP_TOKEN,
        max_corrections: int = 2,
    ) -> None:
        if persona is None:
            persona = get_persona(scenario.persona or "cooperative")
        self.persona = persona
        self.seed = scenario.seed if seed is None else seed
        self.stop_token = stop_token
        # The wrapper owns every persona behaviour, verbosity included, so the
        # inner user is built without one.
        self.inner = CalendarUser(
            scenario.model_copy(update={"persona": None}),
            seed=self.seed,
            stop_token=stop_token,
            max_corrections=max_corrections,
        )
        self.sent = 0
        self.pending: list[str] = []
        self.done = False

    def _rng(self, *key: object) -> random.Random:
        return random.Random(":".join(map(str, (self.seed, "persona", self.sent, *key))))

    async def respond(self, view: View) -> Message:
        """The persona's next message.

        Raises:
            Exception: only on a bug in this class or the inner user.
        """
        text = await self._next(view)
        self.sent += 1
        if self.stop_token in text:
            self.done = True
        return Message(role="user", content=text)

    async def _next(self, view: View) -> str:
        persona = self.persona
        if persona.patience is not None and self.sent >= persona.patience and not self.done:
            # Out of patience: stop now, unless the inner user is stopping anyway.
            text = await self._inner(view)
            if self.stop_token in text:
                return self._shape(text)
            return self._rng("give-up").choice(_GIVE_UP).format(stop=self.stop_token)
        if self.pending:
            return self._shape(self.pending.pop(0))
        more = self.inner.sent < len(self.inner.messages)
        if more and persona.disclosure == "when_asked":
            asked = view.last is not None and _INVITATION.search(view.last.text) is not None
            if not asked:
                return self._rng("wait").choice(_WAITING[:1] if self.sent == 0 else _WAITING[1:])
        if more and self.sent > 0 and self._rng("coop").random() >= persona.cooperativeness:
            return self._rng("deflect").choice(_DEFLECT)
        if more and persona.disclosure == "all_at_once" and self.inner.sent == 0:
            return self._shape(self._everything())
        text = await self._inner(view)
        return self._shape(self._maybe_change_mind(text))

    async def _inner(self, view: View) -> str:
        return (await self.inner.respond(view)).text

    def _everything(self) -> str:
        """Every planned request of the inner user, in one message."""
        texts = [text for text, _ in self.inner.messages]
        self.inner.revealed = sum(steps for _, steps in self.inner.messages)
        self.inner.sent = len(self.inner.messages)
        return "\n".join(texts)

    def _maybe_change_mind(self, text: str) -> str:
        # Only a planned request that times an event already added: a decoy
        # inside a correction, or for an event not added yet, makes no sense.
        planned = self.inner.messages[self.inner.sent - 1][0] if self.inner.sent else None
        request = parse_request(text)
        if (
            planned is None
            or not text.endswith(planned)
            or request is None
            or request.constraint is None
            or request.duration is not None
        ):
            return text
        rng = self._rng("mind")
        if rng.random() >= self.persona.change_of_mind:
            return text
        decoy = _decoy(rng, request.constraint)
        if decoy is None:
            return text
        self.pending.append(rng.choice(_REVERT) + text)
        return f"Hmm, actually, could you put (event id: {request.event_id}) at {decoy}?"

    def _shape(self, text: str) -> str:
        """Verbosity, off-topic remarks and typos, keeping what the text asks for."""
        stop = self.stop_token in text
        body = text.replace(self.stop_token, "").strip()
        meaning = _meaning(body)
        rng = self._rng("shape")
        steps: list[Callable[[str], str]] = [self._voice]
        if rng.random() < self.persona.off_topic_rate:
            remark = rng.choice(_OFF_TOPIC)
            steps.append(lambda t: f"{t} {remark}".strip())
        if self.persona.typo_rate > 0:
            steps.append(lambda t: _typos(t, rng, self.persona.typo_rate))
        for step in steps:
            shaped = step(body)
            # Reading a text costs more than the rest of a turn; an unchanged
            # one (a normal voice, no typo drawn) need not be read again.
            if shaped != body and _meaning(shaped) == meaning:
                body = shaped
        return f"{body} {self.stop_token}".strip() if stop else body

    def _voice(self, text: str) -> str:
        verbosity = self.persona.verbosity
        if verbosity == "terse":
            terse = text
            # Leading pleasantries can come in a row ("Thanks! Hi, ...").
            for _ in range(3):
                terse = _PLEASANTRIES.sub("", terse).strip()
            return terse[:1].upper() + terse[1:] if terse else text
        if verbosity == "verbose" and text:
            rng = self._rng("voice")
            return f"{rng.choice(_CONTEXT)} {text} Thanks so much for your help!"
        return text


def _decoy(rng: random.Random, constraint: str) -> str | None:
    """Another start time, on the hour, early enough in the day, unlike `constraint`."""
    wanted = parse_constraint(constraint)
    if wanted is None:
        return None
    hours = [h * 60 for h in range(10, 15) if not (wanted.kind == "at" and wanted.time == h * 60)]
    start = rng.choice(hours)
    assert parse_time(format_12h(start)) == start
    return format_12h(start)


def _typos(text: str, rng: random.Random, rate: float) -> str:
    def typo(match: re.Match[str]) -> str:
        word = match.group(0)
        if word.lower() in _SPARED or rng.random() >= rate:
            return word
        i = rng.randrange(len(word) - 1)
        kind = rng.randrange(3)
        if kind == 0:  # swap two neighbours
            return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        if kind == 1:  # drop one
            return word[:i] + word[i + 1 :]
        return word[:i] + word[i] + word[i:]  # double one

    # Words inside "(event id: N)" and times have digits or are spared.
    return _WORD.sub(typo, text)
