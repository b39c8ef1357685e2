"""Finding the calendar list in a reply: NeMo-Gym's extraction, in linear time.

NeMo-Gym takes the first match of one regular expression as the calendar:
a `[`, then text in which every square bracket lies inside a `{...}` group
holding no `}` before it, with at least one `{` later closed by `}`, then
`]`. Python's engine backtracks exponentially on it when a list is never
closed (a truncated reply). `json_list_span` finds the same text, at the
same place, in time linear in the reply, and it does most of its work in
C: a reply costs a few times `json.loads` of the list it holds
(benchmarks/grading.py).

How. Only the characters `[ ] { }` matter; the pattern's item is a
non-bracket character or a group from a `{` to the first `}` after it.
From a start `[`, a match can only continue past a bracket that a group
covers, that is, when a `{` stands between the bracket and the last `}`
before it (and a `}` follows the bracket). Every match ends at a `]`, so
the starts are taken a `]` at a time: string searches find the last `[`
before it that no earlier start can get past (`_first_live`), and the
first bracket after a start decides most starts at once: a `]` with a `{`
then a `}` before it, and no open `{` left, ends the match there; a `[` or
`]` with no open `{` before it ends every hope of a match from this start.
The few starts left (a bracket inside a string, as in `"Review [draft]"`)
are settled exactly by `_settle`: a right-to-left pass over the structural
characters of the stretch that the start can reach (`_reach`), which
settles every other start in that stretch too, so no character is visited
twice.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

__all__ = ["decode_list", "json_list_span"]

_BRACKET: Final = re.compile(r"[\[\]]")
_TOKEN: Final = re.compile(r"[\[\]{}]")
# A walk over items that takes a group at every "{" it can (see `_reach`).
_WALK: Final = re.compile(r"(?:\{[^}]*+\}|[^\[\]])*+")


def json_list_span(text: str) -> tuple[int, int] | None:
    """Where the first JSON-like list of objects in `text` is, as `(start, end)`.

    This is exactly the span NeMo-Gym's extraction regular expression finds
    (the leftmost start, and the end its backtracking engine reaches first),
    computed in linear time.
    """
    start = text.find("[")
    end = text.find("]", start + 1) if start >= 0 else -1
    if end >= 0 and text.count("[") == 1 and text.count("]") == 1:
        # One "[" before one "]" (every reply of the rule-based assistant):
        # the only candidate is that pair, a match when a "{" there is
        # followed by a "}".
        brace = text.find("{", start, end)
        return (start, end + 1) if brace >= 0 and text.find("}", brace, end) >= 0 else None
    last_close = text.rfind("}")
    position = 0
    while True:
        opened = text.find("{", position)
        if opened < 0 or opened > last_close:
            return None  # every match holds a "{" and a later "}"
        # No start can pass or end at a "]" with no "{" before it: skip those.
        skipped = text.rfind("]", position, opened)
        if skipped >= 0:
            position = skipped + 1
        # Every match ends at a "]"; take the starts before the next one.
        close = text.find("]", opened)
        if close < 0:
            return None
        start = _first_live(text, position, close)
        reached = close + 1
        while 0 <= start < close:
            following = text.find("[", start + 1, close)
            end = close if following < 0 else following
            last_open, shut = text.rfind("{", start, end), text.rfind("}", start, end)
            if last_open > shut and end <= last_close:
                # An open "{" may carry a match past `end`: settle exactly.
                limit = _reach(text, start, last_close)
                span = _settle(text, start, limit)
                if span is not None:
                    return span
                reached = max(reached, limit)
                start = limit if limit < close else -1
                continue
            if end == close and shut >= 0 and text.find("{", start, shut) >= 0:
                # A "{" then a "}", and nothing can pass this "]": the list ends here.
                return start, close + 1
            start = following  # no match from `start`
        position = reached


def _first_live(text: str, position: int, close: int) -> int:
    """The first "[" in `[position, close)` from which a match might reach `close`, or -1.

    A start reaches `close` only by passing every "[" between, each inside a
    group: a `{` after the start, with no `}` between it and the bracket. So
    if the last brace before a "[" is a `}` (or there is none), no earlier
    start passes it; if it is a `{`, no start between that `{` and the "["
    does. Walking back from `close` over these cuts, each character is read
    at most once.
    """
    live = text.rfind("[", position, close)
    bracket = live
    while bracket >= 0:
        opened = text.rfind("{", position, bracket)
        shut = text.rfind("}", max(opened, position), bracket)
        if opened < 0 or shut >= 0:
            return live
        earlier = text.rfind("[", position, opened)
        if earlier < 0:
            return live
        live = bracket = earlier
    return live


def _reach(text: str, start: int, last_close: int) -> int:
    """The first bracket that no match from `start` can pass (`len(text)` if none).

    A match passes a bracket only inside a group: a `{` after the last `}`
    before the bracket (and at or after the match's current position), up to
    the first `}` after the bracket. Taking a group at every `{` reaches at
    least as far as any other choice, so one possessive pattern walks it, in
    C. Past the last `}` no group can close, so the walk stops at the next
    bracket (and the pattern, bounded there, never scans for a `}` in vain).
    """
    walked = _WALK.match(text, start + 1, last_close + 1)
    assert walked is not None  # the pattern matches the empty string
    reached = walked.end()
    bracket = _BRACKET.search(text, reached)
    return len(text) if bracket is None else bracket.start()


def _settle(text: str, start: int, limit: int) -> tuple[int, int] | None:
    """The first match starting in `[start, limit)`, by the engine's own order.

    No match from there passes `limit` (see `_reach`), so the structural
    characters in `[start, limit]` decide it. The pattern after `[` is:
    items, `{`, items, `}`, items, `]`, where an item is one character other
    than a square bracket, or a `{...}` group with no `}` inside. For each
    position, `close`/`shut`/`rest` hold where the first match of the
    pattern's tail from there ends (-1: none): items then `]`; items, `}`,
    items, `]`; items, `{`, ... `]`. The engine tries, at each item, a
    character, then a group, then moving on; every choice leads to a later
    position, so one right-to-left pass gives its depth-first answer. Plain
    characters only pass on the value of the next position, so the pass
    visits the structural characters alone.
    """
    marks = [m.start() for m in _TOKEN.finditer(text, start, min(limit + 1, len(text)))]
    size = len(marks)
    close = [-1] * (size + 1)  # items then "]"
    shut = [-1] * (size + 1)  # items, "}", items, "]"
    rest = [-1] * (size + 1)  # items, "{", items, "}", items, "]"
    group = -1  # the token after the next "}": where a group from a "{" here resumes
    for index in range(size - 1, -1, -1):
        at = marks[index]
        char = text[at]
        following = index + 1
        if char == "}":  # an item (a character), or the stop of `shut`
            close[index] = close[following]
            shut[index] = shut[following] if shut[following] >= 0 else close[following]
            rest[index] = rest[following]
            group = following
        elif char == "{":  # an item (a character, else a group), or the stop of `rest`
            value = close[following]
            close[index] = value if value >= 0 or group < 0 else close[group]
            value = shut[following]
            shut[index] = value if value >= 0 or group < 0 else shut[group]
            value = rest[following]
            if value < 0 and group >= 0:
                value = rest[group]
            rest[index] = value if value >= 0 else shut[following]
        elif char == "]":  # the stop of `close`; a bracket is no item
            close[index] = at + 1
    for index in range(size):
        at = marks[index]
        if at >= limit:
            break
        if text[at] == "[" and rest[index + 1] >= 0:
            return at, rest[index + 1]
    return None


def decode_list(text: str, span: tuple[int, int]) -> list[Any]:
    """Decode the candidate list at `span`, as the reference does.

    Raises:
        json.JSONDecodeError: the candidate is not valid JSON (the reference:
            no list).
        ValueError: it is valid JSON that Python's decoder refuses (an integer
            of more than 4,300 digits); the reference: an error in grading.
        RecursionError: it nests too deeply; likewise.
    """
    parsed = json.loads(text[span[0] : span[1]])
    return parsed if isinstance(parsed, list) else []
