"""Understanding a user's calendar requests, in words, turn by turn (and the calendars shown).

The rule-based solver assistant, the simulated user's self-checks and the
per-turn verifiers all need the same answer to "what has the user asked for
so far?", so the parsing lives here, once. It understands the phrasings of
NeMo-Gym's public calendar data and of `convo_sim.users.CalendarUser`:

* an event is named by its id: `(event id: 3)`, `event id 3`, `event #3`;
* a new id with a duration adds an event (`a 60-minute slot`, `about 90
  minutes`, `an hour`, `half an hour`, `1.5 hours`); its title is the quoted
  text, or what follows the verb (`add`, `put in`, `slot in`, ...);
* a time phrase sets the event's constraint, which replaces any earlier one:
  `between 10:00 am and 11:45 am`, `before 1pm`, `wraps up by 1:45 pm`,
  `after 2pm`, `starts at 10am or later`, `at or after 11:45 am`,
  `at 11:15am`, `for 12:15 pm`, `noon`.

Messages without an event id are small talk (NeMo's users chat between
requests, often repeating a time: "glad it wraps up by 1:45 pm") and change
nothing. A message naming several events (an `upfront` user's first message,
or "move (event id: 1) after 2pm and (event id: 2) before 11am") is cut into
one piece per event by `message_requests`, and each piece is read by
`parse_request`. Constraints come back as NeMo-Gym text (`between 10am and
11:45am`), the form the grader reads.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from convo_sim._messages import Message
from convo_sim.domains.calendar._model import Constraint, ListedEvent, parse_constraint
from convo_sim.domains.calendar._reply import read_reply
from convo_sim.domains.calendar._times import format_12h, parse_time

__all__ = [
    "CalendarRequest",
    "RequestedEvent",
    "RequestedState",
    "constraint_of",
    "message_requests",
    "parse_duration",
    "parse_request",
    "requested_state",
    "shown_calendar",
]

# Typographic spaces, apostrophes and dashes that appear in real data (NeMo writes
# "10:00\u202fam" and "60\u2011minute").
_SPACES = str.maketrans({"\u202f": " ", "\u00a0": " ", "\u2009": " ", "\u2007": " ", "\u2019": "'"})
_DASHES = re.compile("[\u2010\u2011\u2012\u2013\u2014\u2212]")

_ID = re.compile(
    r"\(?\s*event\s*(?:id\s*[:#=]?|#|number|no\.?|\s)\s*(\d+)\b(?!:\d)\s*\)?"
    r"|\(\s*id\s*[:#]?\s*(\d+)\s*\)",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"[\"“”]([^\"“”]+)[\"“”]")

_T = (
    r"(?:noon|midday"
    r"|\d{1,2}(?::\d{2})?\s*(?:a\.?m\.?|p\.?m\.?)(?![a-z])"
    r"|\d{1,2}:\d{2}(?!\s*(?:a\.?m|p\.?m)))"
)
_TIME = re.compile(rf"(?<![\d:]){_T}", re.IGNORECASE)
# Parsing is most of what the rule-based actors cost, and most patterns below
# fail on most messages, slowly (they are tried at every word). So each comes
# with a *gate*: a pattern, matched against the lower-cased text, that every
# match of it contains (a word it needs, or a piece of it). A pattern whose
# gate fails is not tried. Gates apply to ASCII text only, where lower-casing
# is exactly the IGNORECASE folding; other text tries every pattern.
# Every constraint pattern holds a time (`_T`): noon, midday, or digits with a
# colon or followed by am/pm.
_TIME_GATE = re.compile(r"noon|midday|[0-9]\s*[ap]|[0-9]:[0-9]")
# Checked in order: a phrase that contains another kind's word comes first
# ("not after" is a `before`, "start at 2pm or later" an `after`, not an `at`).
_KINDS: tuple[tuple[str, re.Pattern[str], re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE), re.compile(gate))
    for kind, pattern, gate in (
        (
            "between",
            rf"(?:between|from)\s+({_T})\s+(?:and|to|until|till|-)\s+({_T})",
            "between|from",
        ),
        ("before", rf"(?:not\s+after|no\s+later\s+than)\s+({_T})", "after|later"),
        ("after", rf"(?:not\s+before|no\s+earlier\s+than)\s+({_T})", "before|earlier"),
        (
            "after",
            rf"(?:at\s+or\s+after|after|starting\s+(?:at|from)|from)\s+({_T})",
            "after|starting|from",
        ),
        ("after", rf"({_T})\s+(?:or\s+later|onwards?|or\s+after)", "later|onward|after"),
        ("before", rf"(?:at\s+or\s+before|before|by|until|till)\s+({_T})", "before|by|until|till"),
        ("before", rf"({_T})\s+(?:or\s+earlier|at\s+the\s+latest)", "earlier|latest"),
        ("at", rf"({_T})", _TIME_GATE.pattern),
    )
)

_WORD_NUMBERS = {
    "a": 1.0, "an": 1.0, "one": 1.0, "two": 2.0, "three": 3.0, "four": 4.0, "five": 5.0, "six": 6.0,
    "ten": 10.0, "fifteen": 15.0, "twenty": 20.0, "thirty": 30.0, "forty": 40.0,
    "forty-five": 45.0, "forty five": 45.0, "fifty": 50.0, "sixty": 60.0,
    "seventy-five": 75.0, "seventy five": 75.0, "ninety": 90.0, "one-and-a-half": 1.5,
    "one and a half": 1.5, "a half": 0.5, "half an": 0.5, "half a": 0.5,
}  # fmt: skip
_NUM = r"(\d+(?:\.\d+)?|one and a half|one-and-a-half|forty[- ]five|seventy[- ]five|[a-z]+)"
# With gates, as for `_KINDS`; "hm"'s gate is its hour unit and the minutes'
# digits that follow it.
_DURATIONS: tuple[tuple[re.Pattern[str], str, re.Pattern[str]], ...] = tuple(
    (re.compile(p, re.IGNORECASE), kind, re.compile(gate))
    for p, kind, gate in (
        (r"\b(?:an?\s+|one\s+)?hour\s+and\s+a\s+half\b", "90", r"hour\s+and\s+a\s+half"),
        (
            r"\b(?:an?\s+|one\s+)?hour\s+and\s+(?:a\s+)?quarter\b",
            "75",
            r"hour\s+and\s+(?:a\s+)?quarter",
        ),
        (r"\bhalf\s*(?:an?\s*|-)?\s*hour\b", "30", "half"),
        (r"\bquarter\s*(?:of\s+an\s*|-)?\s*hour\b", "15", "quarter"),
        (
            rf"\b{_NUM}\s*-?\s*(?:hours?|hrs?|h)\s*(?:and\s+)?(\d+)\s*-?\s*(?:minutes?|mins?|m)\b",
            "hm",
            r"(?:hours?|hrs?|h)\s*(?:and\s+)?[0-9]",
        ),
        (rf"\b{_NUM}\s*-?\s*(?:hours?|hrs?)\b", "h", "hour|hr"),
        (rf"\b{_NUM}\s*-?\s*(?:minutes?|mins?)\b", "m", "min"),
    )
)
_DURATION_WORDS = (
    r"(?:\d+(?:\.\d+)?|an?|one|two|three|four|half|quarter|fifteen|twenty|thirty|forty"
    r"|forty[- ]five|fifty|sixty|seventy[- ]five|ninety)"
)
_VERB = re.compile(
    r"\b(?:add|put(?:\s+in)?|slot\s+in|pencil\s+in|squeeze\s+in|book|schedule|create|set\s+up"
    r"|block\s+(?:out|off)|include)\b",
    re.IGNORECASE,
)
_LEAD = re.compile(
    r"^\s*(?:(?:a|an|the|my|our)\s+)?(?:new\s+)?(?:quick\s+)?"
    r"(?:(?:event|entry|meeting|item|slot)\s+(?:titled|called|named|for)\s+(?:the\s+|a\s+|an\s+)?)?",
    re.IGNORECASE,
)
_LEAD_DURATION = re.compile(
    rf"^\s*(?:(?:a|an)\s+)?(?:quick\s+)?{_DURATION_WORDS}\s*-?\s*(?:minutes?|mins?|hours?|hrs?)"
    r"\s*(?:-?\s*long\s+)?(?:(?:slot|block|session|meeting)\s+(?:for|called|titled|named)\s+"
    r"(?:the\s+|a\s+|an\s+)?)?",
    re.IGNORECASE,
)
_END = re.compile(
    r"\s+(?:to|on|in|into|onto)\s+(?:my|the|our)\s+(?:calendar|schedule|agenda)"
    r"|,?\s+(?:for|lasting|running|that\s+(?:runs|lasts)|which\s+(?:runs|lasts))\s+"
    rf"(?:(?:about|around|roughly|approximately|a|an|quick|just|some|maybe)\s+)*{_DURATION_WORDS}"
    r"\s*-?\s*(?:minutes?|mins?|hours?|hrs?)"
    r"|\s+(?:between|before|after|at|by|from)\s+\S*\d|[?!;]|\.(?:\s|$)|,\s*(?:please|thanks|thank)",
    re.IGNORECASE,
)
_SPACE_RUN = re.compile(r"\s+")
_ITS = re.compile(r"\b(?:it's|it is)\s+(?:a|an|the)\s+", re.IGNORECASE)
_GENERIC_NAMES = frozenset(
    {"", "event", "new event", "entry", "new entry", "meeting", "slot", "it"}
)


def _normalise(text: str) -> str:
    if text.isascii():
        return text  # every character replaced is non-ASCII
    return _DASHES.sub("-", text.translate(_SPACES))


def _gate_text(text: str) -> str | None:
    """What the patterns' gates are matched against, or None: try every pattern."""
    return text.lower() if text.isascii() else None


def parse_duration(text: str) -> int | None:
    """Minutes of the first duration phrase in `text` (`90-minute`, `an hour`), or None."""
    text = _normalise(text)
    gated = _gate_text(text)
    for pattern, kind, gate in _DURATIONS:
        if gated is not None and gate.search(gated) is None:
            continue
        m = pattern.search(text)
        if m is None:
            continue
        if kind.isdigit():
            return int(kind)
        amount = _number(m.group(1))
        if amount is None:
            continue
        minutes = amount * 60 if kind in ("h", "hm") else amount
        if kind == "hm":
            minutes += int(m.group(2))
        if minutes > 0 and float(minutes).is_integer():
            return int(minutes)
    return None


def _number(word: str) -> float | None:
    word = word.lower()
    try:
        return float(word)
    except ValueError:
        return _WORD_NUMBERS.get(word)


def _constraint(text: str) -> str | None:
    gated = _gate_text(text)
    if gated is not None and _TIME_GATE.search(gated) is None:
        return None
    for kind, pattern, gate in _KINDS:
        if gated is not None and gate.search(gated) is None:
            continue
        m = pattern.search(text)
        if m is None:
            continue
        try:
            words = [format_12h(parse_time(g)) for g in m.groups()]
        except ValueError:  # "13pm" looks like a time and is not one
            continue
        return f"between {words[0]} and {words[1]}" if kind == "between" else f"{kind} {words[0]}"
    return None


def _name(original: str) -> str | None:
    quoted = _QUOTED.search(original)
    if quoted is not None:
        return quoted.group(1).strip() or None
    text = _ID.sub(" ", original)
    text = _SPACE_RUN.sub(" ", text)
    for candidate in (_after_verb(text), _its(text)):
        if candidate is not None and candidate.lower() not in _GENERIC_NAMES:
            return candidate[0].upper() + candidate[1:]
    return None


def _after_verb(text: str) -> str | None:
    verb = _VERB.search(text)
    if verb is None:
        return None
    rest = text[verb.end() :]
    for lead in (_LEAD, _LEAD_DURATION, _LEAD):
        m = lead.match(rest)
        if m is not None:
            rest = rest[m.end() :]
    end = _END.search(rest)
    name = (rest[: end.start()] if end else rest).strip(" ,.:-")
    return name or None


def _its(text: str) -> str | None:
    m = _ITS.search(text)
    if m is None:
        return None
    rest = text[m.end() :]
    end = _END.search(rest)
    comma = rest.find(",")
    stop = min(p for p in (end.start() if end else len(rest), comma if comma >= 0 else len(rest)))
    return rest[:stop].strip(" ,.:-") or None


@dataclass(frozen=True, slots=True)
class CalendarRequest:
    """What one user message asks of one event.

    Attributes:
        event_id: the event it names.
        name: the title given, if any (only meaningful for a new event).
        duration: minutes, if a duration was given.
        constraint: NeMo-Gym constraint text, if a time was given.
    """

    event_id: int
    name: str | None = None
    duration: int | None = None
    constraint: str | None = None


@functools.lru_cache(maxsize=8192)
def parse_request(text: str) -> CalendarRequest | None:
    """Parse one user message; None when it names no event or asks for nothing.

    Cached: the solver, the simulated user and the verifiers re-read the
    whole dialogue every turn, and requests are immutable.
    """
    original = _normalise(text)
    found = _ID.search(original)
    if found is None:
        return None
    event_id = int(found.group(1) or found.group(2))
    # Titles may hold words like "at" or "for"; read times and durations
    # without them.
    rest = _QUOTED.sub(" ", original)
    rest = _ID.sub(" ", rest)
    duration = parse_duration(rest)
    constraint = _constraint(rest)
    if duration is None and constraint is None:
        return None
    name = _name(original) if duration is not None else None
    return CalendarRequest(event_id, name, duration, constraint)


# A sentence ends at a newline, a semicolon, or ./!/? before whitespace;
# "a.m." and "p.m." are not sentence ends.
_SENTENCE_END = re.compile(r"\n+|;\s*|(?<![ap]\.m)(?<!\b[ap])[.!?]+\s+", re.IGNORECASE)
# Where one clause of a sentence ends and the next begins ("..., and", " then").
_CLAUSE = re.compile(
    r",\s*(?:(?:and|then|also|plus)\s+)?|\s+(?:and|then|also|plus)\s+", re.IGNORECASE
)
_RANGE = _KINDS[0][1]  # "between T and T", "from T to T": its "and" joins no clauses


def _ids(text: str) -> list[re.Match[str]]:
    """The first mention of each distinct event id in `text`, in order."""
    seen: set[str] = set()
    first: list[re.Match[str]] = []
    for match in _ID.finditer(text):
        event_id = match.group(1) or match.group(2)
        if event_id not in seen:
            seen.add(event_id)
            first.append(match)
    return first


def _opens_with_id(sentence: str) -> bool:
    match = _ID.search(sentence)
    return match is not None and not sentence[: match.start()].strip(" (")


def _cuts(sentence: str) -> list[int]:
    """Where to cut a sentence that names several events, one cut per further event.

    The cut goes at the last clause break (a comma, "and", "then") between
    the previous event's id and the next one's, so that a title said before
    its id (`and "Gym" (event id: 2)`) stays with its event; with no break,
    right before the id. Breaks inside a time range are not clause breaks.
    """
    ids = _ids(sentence)
    ranges = [m.span() for m in _RANGE.finditer(sentence)]
    cuts: list[int] = []
    for previous, current in itertools.pairwise(ids):
        breaks = [
            m.start()
            for m in _CLAUSE.finditer(sentence, previous.end(), current.start())
            if not any(a <= m.start() < b for a, b in ranges)
        ]
        cuts.append(breaks[-1] if breaks else current.start())
    return cuts


def message_requests(text: str) -> list[CalendarRequest]:
    """Every calendar request in one user message, in order.

    A message naming one event is parsed whole by `parse_request`. One
    naming several (an `all_at_once` user, or "move (event id: 1) after 2pm
    and (event id: 2) before 11am") is cut into lines and sentences; a
    sentence without an event id joins the next one when that one opens with
    the id ("Could you add a 30-minute call? (event id: 2)"), else the one
    before; a sentence naming several ids is cut at the clause break before
    each new id. The solver, the simulated users, the turn verifiers and the
    user-fidelity metrics all read messages with this one function.
    """
    return list(_message_requests(text))


@functools.lru_cache(maxsize=8192)
def _message_requests(text: str) -> tuple[CalendarRequest, ...]:
    # Cached like `parse_request`: every reader re-reads the whole dialogue.
    if len(_ids(_normalise(text))) <= 1:
        request = parse_request(text)
        return () if request is None else (request,)
    sentences = [
        part.strip()
        for line in _normalise(text).splitlines()
        for part in _SENTENCE_END.split(line)
        if part.strip()
    ]
    pieces: list[str] = []
    carry = ""
    for index, sentence in enumerate(sentences):
        if not _ids(sentence):
            following = sentences[index + 1] if index + 1 < len(sentences) else ""
            if not pieces or _opens_with_id(following):
                carry += sentence + " "
            else:
                pieces[-1] += " " + sentence
            continue
        sentence, carry = carry + sentence, ""
        cuts = [0, *_cuts(sentence), len(sentence)]
        pieces.extend(sentence[a:b] for a, b in itertools.pairwise(cuts))
    requests = (parse_request(piece) for piece in pieces)
    return tuple(r for r in requests if r is not None)


@dataclass(slots=True)
class RequestedEvent:
    """One event as the user has asked for it so far."""

    event_id: int
    name: str
    duration: int
    constraint: str | None = None


@dataclass(slots=True)
class RequestedState:
    """Everything the user has asked for so far.

    Attributes:
        events: by event id, in the order they were added.
        requests: how many requests were applied (a message may hold several).
    """

    events: dict[int, RequestedEvent] = field(default_factory=dict)
    requests: int = 0

    def apply(self, request: CalendarRequest) -> bool:
        """Apply one request; False when it cannot apply (a new id without a duration)."""
        event = self.events.get(request.event_id)
        if event is None:
            if request.duration is None:
                return False
            name = request.name or f"Event {request.event_id}"
            event = RequestedEvent(request.event_id, name, request.duration)
            self.events[request.event_id] = event
        elif request.duration is not None:
            event.duration = request.duration
        if request.constraint is not None:
            event.constraint = request.constraint
        self.requests += 1
        return True

    def expected_state(
        self, *, min_time: str = "10:00", max_time: str = "16:00"
    ) -> dict[str, dict[str, Any]]:
        """This state as a NeMo-Gym `exp_cal_state` mapping."""
        return {
            str(e.event_id): {
                "event_id": e.event_id,
                "duration": e.duration,
                "constraint": e.constraint,
                "min_time": min_time,
                "max_time": max_time,
            }
            for e in self.events.values()
        }


def requested_state(messages: Iterable[Message]) -> RequestedState:
    """Replay the user's messages among `messages` into what they asked for.

    Every request of a message counts (see `message_requests`), in order.
    """
    state = RequestedState()
    for message in messages:
        if message.role != "user":
            continue
        for request in _message_requests(message.text):
            state.apply(request)
    return state


def shown_calendar(text: str) -> tuple[ListedEvent, ...] | None:
    """The calendar an assistant message shows, or None (`read_reply(text).events`).

    The reading is the grader's (think tags, the first JSON list, its time
    and duration rules), shared with the turn verifiers, the simulated user
    and the solver; see `convo_sim.domains.calendar._reply`.
    """
    return read_reply(text).events


@functools.lru_cache(maxsize=1024)
def constraint_of(text: str | None) -> Constraint | None:
    """`parse_constraint`, cached: constraints are immutable and few."""
    return parse_constraint(text)
