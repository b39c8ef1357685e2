"""User personas: how a simulated user behaves, apart from what it wants.

A scenario says *what* the user wants (its goal); a `Persona` says *how* it
goes about it: how much it writes, whether it answers questions, how long it
waits, how it discloses its goal, whether it changes its mind, how noisy its
typing is. The same persona drives the rule-based calendar user (through
`convo_sim.users.PersonaCalendarUser`) and LLM users (through
`persona_prompt`), so experiments can compare both under one name.

The bundled personas live in `PERSONAS`; a scenario's `persona` field names
one of them, looked up with `get_persona`. A persona that is not bundled
(one drawn by `sample_personas`) rides in the scenario's
`metadata["persona_spec"]` next to its name; `scenario_persona` reads
either.

Every persona can be satisfied: its behaviours that cost turns (waiting to
be asked, deflecting, changing its mind) are spent only from the turns the
goal leaves spare, and impatience is about the assistant's mistakes, not a
count of messages (see `convo_sim.domains.calendar.PersonaCalendarUser`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from convo_sim._completion import DEFAULT_STOP_TOKEN
from convo_sim._errors import InputError
from convo_sim.users._profile import PersonaProfile

__all__ = [
    "PERSONAS",
    "PERSONA_SPEC_KEY",
    "Disclosure",
    "Expertise",
    "Persona",
    "Quirk",
    "UnknownPersonaError",
    "Verbosity",
    "get_persona",
    "persona_prompt",
    "scenario_persona",
]

Verbosity: TypeAlias = Literal["terse", "normal", "verbose"]
Disclosure: TypeAlias = Literal["all_at_once", "progressive", "when_asked"]
Expertise: TypeAlias = Literal["novice", "intermediate", "expert"]
Quirk: TypeAlias = Literal["lowercase", "no_punctuation", "abbreviations", "exclamations"]

PERSONA_SPEC_KEY = "persona_spec"
"""The scenario metadata key holding a persona that is not bundled, as data."""

_Rate = Field(default=0.0, ge=0.0, le=1.0)


class Persona(BaseModel):
    """How a simulated user behaves.

    Attributes:
        name: the persona's name (the key in `PERSONAS` for bundled ones).
        description: one line for people reading reports.
        verbosity: `terse` strips pleasantries, `verbose` adds context and thanks.
        cooperativeness: chance, per turn, that the user answers what it is
            asked; otherwise it deflects ("whatever works") and the turn is
            lost (only while the turn limit leaves a turn to spare).
        patience: how many bad assistant turns (a mistake it has to point
            out, a reply without what it asked for) it puts up with; at the
            next one it gives up with the stop token. 0 leaves at the first
            mistake; None keeps the user's own default (the calendar user
            points out two). An assistant that makes no mistake never runs
            out of it.
        disclosure: `all_at_once` states the whole goal in its first request;
            `progressive` reveals one request per turn; `when_asked` reveals
            the next request only after the assistant asks a question (or
            when waiting longer would leave too few turns for its goal).
        change_of_mind: chance, per constraint, that the user first asks for a
            different time and then reverts to the one it wants.
        typo_rate: chance, per word, of a typo (words holding numbers and the
            calendar words the request depends on are spared).
        off_topic_rate: chance, per message, of an off-topic remark.
        expertise: how used the user is to the task: an `expert` often asks
            for an event and its time in one message, a `novice` rarely.
        quirks: habits of writing (`lowercase`, `no_punctuation`,
            `abbreviations`, `exclamations`), never changing what is asked.
        profile: who the user is (demographics, OCEAN traits), for LLM users'
            prompts and for reports; sampled personas have one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    verbosity: Verbosity = "normal"
    cooperativeness: float = Field(default=1.0, ge=0.0, le=1.0)
    patience: int | None = Field(default=None, ge=0)
    disclosure: Disclosure = "progressive"
    change_of_mind: float = _Rate
    typo_rate: float = _Rate
    off_topic_rate: float = _Rate
    expertise: Expertise = "intermediate"
    quirks: tuple[Quirk, ...] = ()
    profile: PersonaProfile | None = None


class UnknownPersonaError(InputError):
    """No bundled persona has this name.

    Attributes:
        name: the name asked for.
        known: the bundled names.
    """

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown persona {name!r}; expected one of: {', '.join(known)}")


def _bundle(*personas: Persona) -> Mapping[str, Persona]:
    return MappingProxyType({p.name: p for p in personas})


PERSONAS: Mapping[str, Persona] = _bundle(
    Persona(
        name="cooperative",
        description="answers everything, one request per turn, no noise",
    ),
    Persona(
        name="terse",
        description="few words, no pleasantries",
        verbosity="terse",
    ),
    Persona(
        name="verbose",
        description="long messages with context, thanks and the odd aside",
        verbosity="verbose",
        off_topic_rate=0.2,
    ),
    Persona(
        name="impatient",
        description="short messages; gives up at the assistant's second mistake",
        verbosity="terse",
        patience=1,
    ),
    Persona(
        name="upfront",
        description="states the whole goal in the first request",
        disclosure="all_at_once",
    ),
    Persona(
        name="withholding",
        description="reveals the next request only when asked a question",
        disclosure="when_asked",
    ),
    Persona(
        name="vague",
        description="often deflects instead of answering",
        cooperativeness=0.5,
    ),
    Persona(
        name="indecisive",
        description="often asks for another time first, then reverts",
        change_of_mind=0.5,
    ),
    Persona(
        name="noisy",
        description="typos and off-topic chatter",
        typo_rate=0.08,
        off_topic_rate=0.3,
    ),
)
"""The bundled personas, by name (read-only)."""


def get_persona(name: str) -> Persona:
    """The bundled persona called `name`.

    Raises:
        UnknownPersonaError: no bundled persona has that name; the error
            lists the names that exist.
    """
    try:
        return PERSONAS[name]
    except KeyError:
        raise UnknownPersonaError(name, tuple(PERSONAS)) from None


_VERBOSITY = {
    "terse": "Write as few words as you can: no greetings, no pleasantries, no thanks.",
    "normal": "Write short, natural messages, the way people chat with an assistant.",
    "verbose": (
        "Write long, chatty messages: explain why you need things, thank the assistant, "
        "and wrap each request in a few sentences of context."
    ),
}
_DISCLOSURE = {
    "all_at_once": "State everything you want in your first request, all in one message.",
    "progressive": "Reveal your requests one at a time: one new request per message.",
    "when_asked": (
        "Do not volunteer requests. Reveal your next request only when the assistant asks "
        "you a question; otherwise reply briefly and wait."
    ),
}


_EXPERTISE = {
    "novice": "You rarely use scheduling tools: ask for one thing at a time, in plain words.",
    "expert": "You use scheduling tools every day: be precise, and give an event's time "
    "together with the event when you know it.",
}
_QUIRKS: dict[str, str] = {
    "lowercase": "You write everything in lower case.",
    "no_punctuation": "You leave out full stops and exclamation marks.",
    "abbreviations": "You abbreviate casually (pls, thx, u).",
    "exclamations": "You end sentences with exclamation marks!",
}


def _patience_line(patience: int, stop_token: str) -> str:
    if patience == 0:
        allowed = "at the assistant's first mistake"
    else:
        times = "once" if patience == 1 else f"{patience} times"
        allowed = f"after pointing out the assistant's mistakes {times}, at the next one"
    return (
        f"You are impatient: {allowed}, give up and reply with {stop_token} alone. "
        "Never give up while the assistant is getting things right."
    )


def scenario_persona(scenario: Any) -> Persona | None:
    """The persona a scenario's user plays, or None when it names none.

    A persona carried as data in `scenario.metadata["persona_spec"]` (a
    sampled one) wins; else `scenario.persona` names a bundled one.

    Raises:
        UnknownPersonaError: the name is not bundled and no spec carries it.
        InputError: the spec is not a valid persona, or names another persona.
    """
    name = getattr(scenario, "persona", None)
    metadata = getattr(scenario, "metadata", None) or {}
    spec = metadata.get(PERSONA_SPEC_KEY) if isinstance(metadata, Mapping) else None
    if spec is not None:
        try:
            persona = spec if isinstance(spec, Persona) else Persona.model_validate(spec)
        except ValidationError as exc:
            raise InputError(f"metadata.{PERSONA_SPEC_KEY} is not a persona: {exc}") from None
        if name is not None and persona.name != name:
            raise InputError(
                f"metadata.{PERSONA_SPEC_KEY} holds persona {persona.name!r}, "
                f"but the scenario names {name!r}"
            )
        return persona
    if name is None:
        return None
    return get_persona(name)


def persona_prompt(persona: Persona, *, stop_token: str = DEFAULT_STOP_TOKEN) -> str:
    """Instructions that make an LLM user simulator play `persona`.

    The text covers every field, in the second person, so that it can be
    appended to a user simulator's system prompt after its goal.
    """
    lines = [f"You play a user with the persona {persona.name!r}."]
    if persona.description:
        lines.append(f"In short: {persona.description}.")
    if persona.profile is not None:
        lines.append(persona.profile.describe())
    if persona.expertise != "intermediate":
        lines.append(_EXPERTISE[persona.expertise])
    lines.append(_VERBOSITY[persona.verbosity])
    lines.append(_DISCLOSURE[persona.disclosure])
    if persona.cooperativeness < 1.0:
        share = round(persona.cooperativeness * 100)
        lines.append(
            f"You answer the assistant's questions directly only about {share}% of the time; "
            "otherwise you deflect with something non-committal."
        )
    if persona.patience is not None:
        lines.append(_patience_line(persona.patience, stop_token))
    if persona.change_of_mind > 0:
        share = round(persona.change_of_mind * 100)
        lines.append(
            f"For about {share}% of your time constraints, first ask for a different time, "
            "then change your mind back to the time you really want."
        )
    if persona.typo_rate > 0:
        lines.append(
            "You type carelessly and make occasional typos, but never in numbers, times "
            "or event ids."
        )
    if persona.off_topic_rate > 0:
        share = round(persona.off_topic_rate * 100)
        lines.append(f"In about {share}% of your messages, add an unrelated remark.")
    lines.extend(_QUIRKS[quirk] for quirk in persona.quirks)
    lines.append(
        f"When everything you want is in the calendar, reply with {stop_token} alone. "
        f"Send {stop_token} exactly once, as your last message, and never otherwise."
    )
    return "\n".join(lines)
