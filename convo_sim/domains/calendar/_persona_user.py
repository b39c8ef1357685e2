"""A persona on top of the rule-based calendar user.

`PersonaCalendarUser` wraps a `CalendarUser` (which knows *what* to say: the
goal's requests, its corrections, its thanks) and changes *how* it is said
and when, following a `Persona`:

* disclosure: `all_at_once` sends every planned request in the first
  message; `when_asked` holds the next request back until the assistant asks
  a question (or invites one), sending a short waiting line instead;
* cooperativeness: with chance `1 - cooperativeness` per turn, a request is
  replaced by a non-committal deflection (the request comes a turn later);
* patience: the bad assistant turns (a calendar it has to correct) it puts
  up with before it gives up with the stop token; an assistant that makes
  no mistake never exhausts it;
* change of mind: with chance `change_of_mind` per request that carries a
  time, the user first asks for another time (`at ...`), and reverts to the
  one it wants in its next message. It always reverts: the scenario's
  expected state is the goal, so a kept change would make the verifier
  grade the wrong target;
* expertise: how often an event and its first constraint come in one message;
* verbosity, quirks, typos and off-topic remarks reshape the text. Every
  reshaped message is parsed again with the request parser, and a
  reshaping that would change what the message asks for is dropped, so
  noise never changes the goal.

**Every persona is winnable.** The user knows its turn limit (the
scenario's `max_turns`, else `DEFAULT_MAX_TURNS`) and the turn it is in. A
behaviour that costs a turn (waiting to be asked, deflecting, a change of
mind) is spent only while the turns left exceed what the rest of its goal
needs (one turn per remaining request, and one to say it is done); after
that it cooperates. If the turns left are fewer than its remaining
requests (a limit below the goal's length), it packs several requests into
one message so that the goal still fits. So a perfect assistant reaches
every goal with every persona, and one that wastes turns or makes mistakes
does not: the persona's demands bind only on the assistant's failures.

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
from convo_sim._rollouts import DEFAULT_MAX_TURNS
from convo_sim.domains.calendar._intents import message_requests, parse_request
from convo_sim.domains.calendar._model import parse_constraint
from convo_sim.domains.calendar._scenario import CalendarScenario
from convo_sim.domains.calendar._times import format_12h, parse_time
from convo_sim.domains.calendar._user import CalendarUser
from convo_sim.users._persona import Persona, get_persona, scenario_persona

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


_COMBINE = {"novice": 0.1, "intermediate": 0.3, "expert": 0.6}
"""Chance that an event and its first constraint come in one message, by expertise."""


class PersonaCalendarUser:
    """A `CalendarUser` that plays a `Persona`.

    Args:
        scenario: the scenario (it must have a calendar goal).
        persona: the persona; default: the scenario's (`scenario_persona`:
            a sampled one in its metadata, or a bundled one by name), else
            `cooperative`.
        seed: seeds wording and persona behaviour; the scenario's seed by default.
        stop_token: what the user says when it is done or gives up.
        max_corrections: passed to `CalendarUser`, unless the persona sets
            its `patience`.
        max_turns: the turn limit the user paces itself for; the scenario's,
            else `DEFAULT_MAX_TURNS`.

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
        max_turns: int | None = None,
    ) -> None:
        if persona is None:
            persona = scenario_persona(scenario) or get_persona("cooperative")
        self.persona = persona
        self.seed = scenario.seed if seed is None else seed
        self.stop_token = stop_token
        self.max_turns = max_turns or scenario.max_turns or DEFAULT_MAX_TURNS
        # The wrapper owns every persona behaviour, verbosity included, so the
        # inner user is built without one.
        self.inner = CalendarUser(
            scenario.model_copy(update={"persona": None}),
            seed=self.seed,
            stop_token=stop_token,
            max_corrections=max_corrections if persona.patience is None else persona.patience,
            combine=_COMBINE[persona.expertise],
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
        text = self._next(view)
        self.sent += 1
        if self.stop_token in text:
            self.done = True
        return Message(role="user", content=text)

    def _next(self, view: View) -> str:
        inner = self.inner
        if self.pending:  # the revert of a change of mind, due now
            return self._shape(self.pending.pop(0))
        first = inner.sent == 0 and inner.revealed == 0
        if not first:
            problem = inner.check(view.last)
            if problem is not None or inner.done_revealing:
                # A correction (or giving up, out of patience), or thanks and stop.
                return self._shape(inner.answer(problem))
        # Nothing to correct and requests left: the persona decides how to go on.
        left = self.max_turns - view.turn + 1  # assistant replies left, this one's included
        need = len(inner.messages) - inner.sent  # requests left, one message each
        spare = left - 1 - need  # turns beyond those and the closing message
        persona = self.persona
        if spare > 0:
            asked = view.last is not None and _INVITATION.search(view.last.text) is not None
            if persona.disclosure == "when_asked" and not asked:
                return self._rng("wait").choice(_WAITING[:1] if self.sent == 0 else _WAITING[1:])
            if not first and self._rng("coop").random() >= persona.cooperativeness:
                return self._rng("deflect").choice(_DEFLECT)
        if first and persona.disclosure == "all_at_once":
            return self._shape(self._take(need))
        # Fewer turns than requests left: pack requests so the goal still fits.
        pack = need if left < 2 else max(1, need - left + 2)
        if pack > 1:
            return self._shape(self._take(pack))
        text = inner.reply(view.last) if first else inner.answer(None)
        return self._shape(self._maybe_change_mind(text, spare))

    def _take(self, count: int) -> str:
        """The inner user's next `count` planned requests, in one message."""
        inner = self.inner
        planned = inner.messages[inner.sent : inner.sent + count]
        inner.revealed += sum(steps for _, steps in planned)
        inner.sent += len(planned)
        return "\n".join(text for text, _ in planned)

    def _maybe_change_mind(self, text: str, spare: int) -> str:
        # Only a planned request that times an event already added: a decoy
        # inside a correction, or for an event not added yet, makes no sense.
        # The decoy and its revert cost a turn, so it needs one to spare.
        planned = self.inner.messages[self.inner.sent - 1][0] if self.inner.sent else None
        request = parse_request(text)
        if (
            spare < 1
            or planned is None
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
        """Verbosity, quirks, off-topic remarks and typos, keeping what the text asks for."""
        stop = self.stop_token in text
        body = text.replace(self.stop_token, "").strip()
        meaning = _meaning(body)
        rng = self._rng("shape")
        steps: list[Callable[[str], str]] = [self._voice]
        if rng.random() < self.persona.off_topic_rate:
            remark = rng.choice(_OFF_TOPIC)
            steps.append(lambda t: f"{t} {remark}".strip())
        steps.extend(_QUIRK_STEPS[quirk] for quirk in self.persona.quirks)
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


_ABBREVIATIONS = (
    (re.compile(r"\bplease\b", re.IGNORECASE), "pls"),
    (re.compile(r"\bthanks\b|\bthank you\b", re.IGNORECASE), "thx"),
    (re.compile(r"\byou\b", re.IGNORECASE), "u"),
)


def _abbreviate(text: str) -> str:
    for pattern, short in _ABBREVIATIONS:
        text = pattern.sub(short, text)
    return text


_QUIRK_STEPS: dict[str, Callable[[str], str]] = {
    "lowercase": str.lower,
    # Sentence ends only: "10:30" and "(event id: 3)" keep their punctuation.
    "no_punctuation": lambda t: re.sub(r"[.!]+(?=\s|$)", "", t),
    "abbreviations": _abbreviate,
    "exclamations": lambda t: re.sub(r"\.(?=\s|$)", "!", t),
}


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
