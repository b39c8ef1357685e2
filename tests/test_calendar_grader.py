"""The calendar grader, checked against an independent oracle of NeMo-Gym's reference grader.

The oracle below restates, step by step, what the reference
(`NVIDIA-NeMo/Gym`, `resources_servers/calendar/utils.py` and `app.py`) does,
accidents included. With `principled=False` it is the reference; with
`principled=True` it applies the documented differences
(docs/calendar-grading.md). The grader must equal the second on every
generated input, and the first on every input that meets no difference.
"""

from __future__ import annotations

import json
import math
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import convo_sim.domains.calendar as calendar_package
from convo_sim.domains.calendar import (
    Constraint,
    ExpectedEvent,
    ExpectedState,
    ExpectedStateError,
    ListedEvent,
    extract_json_list,
    format_12h,
    format_24h,
    format_calendar,
    json_list_span,
    parse_listed_events,
    parse_time,
    solve_schedule,
)
from convo_sim.domains.calendar import _grading as grader_module
from convo_sim.domains.calendar._grading import CalendarGrade, grade_calendar_response

# The five public NeMo-Gym records, as bundled with the package (a byte-for-byte
# copy of shared/data/nemo-calendar-example.jsonl).
RECORDS = (
    Path(__file__).resolve().parents[1]
    / "convo_sim"
    / "domains"
    / "calendar"
    / "data"
    / "nemo_calendar_example.jsonl"
)

# --- The reference, restated as an oracle --------------------------------------------
#
# Facts (read from the reference source, restated here in our own words):
# * The server scores an empty reply 0 before grading (it gives no reason;
#   we report no_json_list). Then: "<think>" anywhere -> think_found; an
#   empty expected state -> pass, whatever the text.
# * The list is the first match of one regular expression: "[", then items,
#   "{", items, "}", items, "]", where an item is a character other than a
#   square bracket or a "{...}" group with no "}" inside. Only that match is
#   json-decoded; a decoding error means no list (no_json_list); any other
#   exception anywhere below is error_in_grading.
# * Events are keyed by str(item["event_id"]), later items replacing earlier
#   ones; the count of keys must equal the count of expected events.
# * Conflicts: every item against every other item that is not == to it, in
#   list order; an item's times are read when first needed; overlap unless
#   one ends at or before the other starts.
# * Then, per expected key in order: the listed duration must == the
#   expected one; the start must be >= min_time and the end <= max_time;
#   then the constraint ("before "/"after "/"between ... and "/"at " prefixes,
#   anything else passes). A missing key is a KeyError: error_in_grading.
# * Times: strip; if "am" (checked first) or "pm" occurs, remove it and read
#   "h" or "h:m" with int(); 12 means 0, pm adds 12 hours. Otherwise "h:m"
#   with int(). So upper-case AM/PM fails, "10:75" is 11:15, "13pm" is 25:00.
# * A string duration fails when added to the start: error_in_grading.
# * The expected state's times (min_time, max_time, constraint times) are
#   read the same way; a constraint is recognised by its exact lower-case
#   prefix and one space ("before " ...), "between" splits on " and ".
#
# The documented differences (docs/calendar-grading.md), in words:
# * Times in a reply: the reference's reading, in any letter case.
# * The expected state is read up front (after the think and empty-state
#   checks): every entry an object with a positive integer duration, a
#   constraint and two times; a time is 24-hour H:MM (0:00 to 24:00), or
#   12-hour h or h:MM with am/pm in any case, with or without a space and
#   dots ("11 a.m."), or noon, midday, midnight; a constraint is one of the
#   four forms, keywords in any case and any whitespace around words; its
#   times as above; min_time not after max_time. Anything else:
#   error_in_grading.
# * A non-number duration in a reply: constraint_violated. An id listed
#   twice: different_number_of_events.

_ITEM = r"(?:[^\[\]]|\{[^}]*\})"
REFERENCE_LIST = re.compile(r"\[" + _ITEM + r"*\{" + _ITEM + r"*\}" + _ITEM + r"*\]", re.DOTALL)


@dataclass(frozen=True)
class Outcome:
    reward: float
    reason: str
    triggers: frozenset[str] = frozenset()  # documented differences met on the way


class _Stop(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


_NAMED = {"noon": 12 * 60, "midday": 12 * 60, "midnight": 0}
_24H = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_12H = re.compile(r"([0-9]{1,2})(?::([0-9]{2}))?\s*([ap])\.?m\.?")
_SINGLE_RULE = re.compile(r"\s*(before|after|at)\s+(\S.*?)\s*", re.IGNORECASE | re.DOTALL)
_BETWEEN_RULE = re.compile(r"\s*between\s+(\S.*?)\s+and\s+(\S.*?)\s*", re.IGNORECASE | re.DOTALL)


def documented_time(value: Any) -> int:
    """An expected-state time, as the documentation words it (raises ValueError)."""
    if not isinstance(value, str):
        raise ValueError(value)
    text = value.strip().lower()
    if text in _NAMED:
        return _NAMED[text]
    if found := _24H.fullmatch(text):
        hour, minute = int(found[1]), int(found[2])
        if minute < 60 and (hour < 24 or (hour, minute) == (24, 0)):
            return hour * 60 + minute
        raise ValueError(value)
    if found := _12H.fullmatch(text):
        hour, minute = int(found[1]), int(found[2] or 0)
        if 1 <= hour <= 12 and minute < 60:
            return hour % 12 * 60 + minute + (12 * 60 if found[3] == "p" else 0)
    raise ValueError(value)


def documented_rule(rule: Any) -> tuple[str, int, int] | None:
    """A constraint as the documentation words it: (kind, T, U) or None; raises ValueError."""
    if rule is None:
        return None
    if not isinstance(rule, str):
        raise ValueError(rule)
    if found := _BETWEEN_RULE.fullmatch(rule):
        first, second = documented_time(found[1]), documented_time(found[2])
        if second < first:
            raise ValueError(rule)
        return "between", first, second
    if found := _SINGLE_RULE.fullmatch(rule):
        point = documented_time(found[2])
        return found[1].lower(), point, point
    raise ValueError(rule)


@dataclass
class Oracle:
    principled: bool
    triggers: set[str] = field(default_factory=set)

    def clock(self, value: Any) -> int:
        if not isinstance(value, str):
            raise TypeError("strip() of a non-string")
        text = value.strip()
        if self.principled:
            text = text.lower()
        for half, shift in (("am", 0), ("pm", 12 * 60)):
            if half in text:
                body = text.replace(half, "")
                try:
                    hour, minute = (
                        (int(piece) for piece in body.split(":")) if ":" in text else (int(body), 0)
                    )
                except ValueError:
                    self._note_case(text)
                    raise
                return (0 if hour == 12 else hour * 60) + shift + minute
        try:
            hour, minute = (int(piece) for piece in text.split(":"))
        except ValueError:
            self._note_case(text)
            raise
        return hour * 60 + minute

    def _note_case(self, text: str) -> None:
        if text != text.lower():
            self.triggers.add("case")

    def reference_time(self, value: Any) -> int:
        """An expected-state time as the reference reads it (its reply reading)."""
        return Oracle(principled=False).clock(value)

    def reference_rule(self, rule: Any) -> tuple[str, int, int] | None:
        """A constraint as the reference reads it; None: no constraint (unknown text too)."""
        if rule is None:
            return None
        for prefix in ("before ", "after ", "at "):
            if rule.startswith(prefix):
                point = self.reference_time(rule.replace(prefix, ""))
                return prefix.strip(), point, point
        if rule.startswith("between "):
            ends = rule.replace("between ", "").split(" and ")
            if len(ends) != 2:
                raise ValueError(rule)
            return "between", self.reference_time(ends[0]), self.reference_time(ends[1])
        return None

    def read_expected(self, expected: dict[str, Any]) -> None:
        """Note when the reference reads the expected state otherwise; in principled
        mode, reject a malformed one up front."""
        for entry in expected.values():
            try:
                ours: Any = (
                    entry["duration"],
                    documented_time(entry["min_time"]),
                    documented_time(entry["max_time"]),
                    documented_rule(entry["constraint"]),
                )
                duration_ok = type(entry["duration"]) is int and entry["duration"] > 0
                if not duration_ok or ours[1] > ours[2]:
                    ours = None
            except (ValueError, KeyError, TypeError):
                ours = None
            try:
                theirs: Any = (
                    entry["duration"],
                    self.reference_time(entry["min_time"]),
                    self.reference_time(entry["max_time"]),
                    self.reference_rule(entry["constraint"]),
                )
            except Exception:
                theirs = "error"
            if ours != theirs:
                self.triggers.add("expected_state")
            if self.principled and ours is None:
                raise _Stop("error_in_grading")

    def end(self, start: int, item: dict[str, Any]) -> Any:
        duration = item["duration"]
        if not isinstance(duration, int | float):
            self.triggers.add("duration_type")
            if self.principled:
                raise _Stop("constraint_violated")
        return start + duration

    def satisfied(self, item: dict[str, Any], wanted: dict[str, Any]) -> bool:
        if item["duration"] != wanted["duration"]:
            return False
        read = documented_time if self.principled else self.reference_time
        rule_of = documented_rule if self.principled else self.reference_rule
        low, high = read(wanted["min_time"]), read(wanted["max_time"])
        start = self.clock(item["start_time"])
        finish = start + item["duration"]
        if start < low or finish > high:
            return False
        rule = rule_of(wanted["constraint"])
        if rule is None:
            return True
        kind, point, until = rule
        return {
            "before": finish <= point,
            "after": start >= point,
            "at": start == point,
            "between": start >= point and finish <= until,
        }[kind]

    def grade(self, text: str, expected: dict[str, Any]) -> Outcome:
        try:
            reward, reason = self._grade(text, expected)
        except _Stop as stop:
            reward, reason = 0.0, stop.reason
        except Exception:
            reward, reason = 0.0, "error_in_grading"
        return Outcome(reward, reason, frozenset(self.triggers))

    def _grade(self, text: str, expected: dict[str, Any]) -> tuple[float, str]:
        if text == "":
            return 0.0, "no_json_list"
        if "<think>" in text:
            return 0.0, "think_found"
        if len(expected) == 0:
            return 1.0, "pass"
        self.read_expected(expected)
        found = REFERENCE_LIST.search(text)
        items = None
        if found is not None:
            try:
                items = json.loads(found.group(0))
            except json.JSONDecodeError:
                items = None
        if not items:
            return 0.0, "no_json_list"
        keyed = {}
        for item in items:
            keyed[str(item["event_id"])] = item
        if len(keyed) != len(expected):
            return 0.0, "different_number_of_events"
        if len(keyed) != len(items):
            self.triggers.add("duplicate_ids")
            if self.principled:
                return 0.0, "different_number_of_events"
        for item in items:
            start = self.clock(item["start_time"])
            finish = self.end(start, item)
            for other in items:
                if item and other == item:
                    continue
                other_start = self.clock(other["start_time"])
                other_finish = self.end(other_start, other)
                if not (finish <= other_start or start >= other_finish):
                    return 0.0, "conflicting_events"
        for key in expected:
            if not self.satisfied(keyed[key], expected[key]):
                return 0.0, "constraint_violated"
        return 1.0, "pass"


def reference(text: str, expected: dict[str, Any]) -> Outcome:
    return Oracle(principled=False).grade(text, expected)


def documented(text: str, expected: dict[str, Any]) -> Outcome:
    return Oracle(principled=True).grade(text, expected)


def check(text: str, expected: dict[str, Any]) -> Outcome:
    """Grade with both; assert the grader's contract; return the reference outcome."""
    ours = grade_calendar_response(text, expected)
    spec = documented(text, expected)
    assert (ours.reward, ours.reason) == (spec.reward, spec.reason), (text, expected, ours)
    ref = reference(text, expected)
    if not ref.triggers:
        assert (ours.reward, ours.reason) == (ref.reward, ref.reason), (text, expected, ours)
    return ref


# --- Generated replies ---------------------------------------------------------------

NAMES = ["Sync", "Review [draft]", "Plan {Q4}", "Retro ]", "x } y", 'Say "hi"', "Budget: 1:1"]
WRAPPERS = [
    "{list}",
    "Here is your calendar:\n\n{list}\n\nLet me know!",
    "```json\n{list}\n```",
    "Done.\n```\n{list}\n```\nAnything else?",
    "{other}\n\nCorrection:\n{list}",
    "[1, 2, 3] then {list}",
    "[note] {list}",
    "[{'event_id': 0}] {list}",
    '{"events": {list}}',
    "<think>plan it</think>{list}",
    "{list}</think>",
    "{list}[",
    "I cannot do that.",
    "",
    "   ",
]


def random_expected(rng: random.Random) -> dict[str, Any]:
    keys = rng.sample(range(8), rng.choice([0, 1, 1, 2, 2, 3, 3, 4, 5]))
    window = rng.choice(
        [("10:00", "16:00")] * 4 + [("9:00", "17:00"), ("10am", "4pm"), ("11:00", "15:00")]
    )
    state: dict[str, Any] = {}
    for key in keys:
        duration = rng.choice([15, 30, 45, 60, 75, 90])
        kind = rng.choice([None, "before", "after", "between", "at"])
        point = rng.randrange(600, 960, rng.choice([15, 15, 5]))
        if kind is None:
            rule = None
        elif kind == "between":
            other = rng.randrange(600, 961, 15)
            rule = f"between {format_12h(min(point, other))} and {format_12h(max(point, other))}"
        else:
            rule = f"{kind} {format_12h(point)}"
        state[str(key)] = {
            "event_id": key,
            "duration": duration,
            "constraint": rule,
            "min_time": window[0],
            "max_time": window[1],
        }
    return state


def _write_time(minutes: int, rng: random.Random) -> str:
    """One way among many to write a time in an expected state (some unreadable to one side)."""
    hours, mins = divmod(minutes, 60)
    twelve, half = f"{hours % 12 or 12}", "am" if hours < 12 else "pm"
    forms = [
        format_12h(minutes) if minutes < 24 * 60 else "24:00",
        format_24h(minutes),
        f"{twelve}:{mins:02d} {half}",
        f"{twelve}:{mins:02d}{half.upper()}",
        f"{twelve}:{mins:02d} {half[0]}.m.",
        f"{twelve}:{mins:02d}{half}.",
        f" {format_24h(minutes)} ",
        f"{hours - 1}:{mins + 60}",  # minutes past 59: the reference reads it, we do not
        f"{hours}:{mins}",  # one-digit minutes, likewise
        f"{hours}",
    ]
    if minutes == 12 * 60:
        forms += ["noon", "midday", "Noon"]
    if minutes in (0, 24 * 60):
        forms += ["midnight"]
    if mins == 0:
        forms += [f"{twelve} {half[0]}.m.", f"{twelve}{half.upper()}"]
    return rng.choice(forms)


_KEYWORD_STYLES = ["{k} ", "{K} ", " {k} ", "{k}\t", "{k}  ", "{K}\t"]


def oddly_written(expected: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The same expected state, with its times and constraints written in other ways."""
    state = ExpectedState.from_nemo(expected)
    odd: dict[str, Any] = {}
    for key, entry in expected.items():
        event = state[key]
        entry = dict(entry)
        choice = rng.randrange(10)
        if choice < 4 and event.constraint is not None:
            rule = event.constraint
            keyword = rng.choice(_KEYWORD_STYLES)
            word = keyword.format(k=rule.kind, K=rule.kind.capitalize())
            if rule.until is not None:
                joint = rng.choice([" and ", "  and ", " AND ", " and\t", "\tand "])
                text = f"{word}{_write_time(rule.time, rng)}{joint}{_write_time(rule.until, rng)}"
            else:
                text = f"{word}{_write_time(rule.time, rng)}"
            entry["constraint"] = text + rng.choice(["", "", " ", "\n"])
        elif choice < 6:
            entry[rng.choice(["min_time", "max_time"])] = _write_time(
                rng.choice([event.min_time, event.max_time, 12 * 60, 24 * 60]), rng
            )
        elif choice == 6:
            entry["constraint"] = rng.choice(
                ["whenever", "at 24:00", "after 2pm and before 4pm", "around noon", "at noon", 5]
            )
        elif choice == 7:
            # A NeMo entry that also carries a start time: still graded by its fields.
            entry["start_time"] = rng.choice(["10:00", "13:00", format_24h(event.min_time)])
        elif choice == 8:
            entry["duration"] = rng.choice([str(event.duration), float(event.duration), 0, True])
        odd[key] = entry
    return odd


def restyle(minutes: int, rng: random.Random) -> Any:
    hours, mins = divmod(minutes, 60)
    twelve = f"{hours % 12 or 12}"
    half = "am" if hours < 12 else "pm"
    styles = [
        format_24h(minutes),
        f"{hours}:{mins:02d}",
        f"{twelve}:{mins:02d}{half}",
        f"{twelve}:{mins:02d} {half}",
        f"{twelve}:{mins:02d}\u202f{half}",
        f"{twelve}:{mins:02d}{half.upper()}",
        f"{twelve}:{mins:02d} {half.upper()}",
        f" {format_24h(minutes)} ",
        f"{hours - 1}:{mins + 60}",  # the reference reads this as the same time
        f"{hours * 100 + mins}",
        f"{hours}.{mins:02d}",
        f"{format_24h(minutes)}:00",
        minutes,
        None,
        "noon",
        f"{hours + 12}pm",
    ]
    if mins == 0:
        styles += [f"{twelve}{half}", f"{twelve}{half.upper()}"]
    return rng.choice(styles)


def boundary_start(wanted: dict[str, Any], rng: random.Random) -> int:
    """A start exactly at, or one minute past, a boundary of the event's rules."""
    duration = wanted["duration"]
    low, high = parse_time(wanted["min_time"]), parse_time(wanted["max_time"])
    options = [low, low - 1, high - duration, high - duration + 1]
    rule = wanted["constraint"]
    if rule is not None:
        kind, _, rest = rule.partition(" ")
        if kind == "between":
            first, second = (parse_time(x) for x in rest.split(" and "))
            options += [first, first - 1, second - duration, second - duration + 1]
        else:
            point = parse_time(rest)
            options += {
                "before": [point - duration, point - duration + 1],
                "after": [point, point - 1],
                "at": [point, point - 1, point + 1],
            }[kind]
    return rng.choice(options)


def random_reply(rng: random.Random, expected: dict[str, Any], *, twelve_hour: bool = False) -> str:
    state = ExpectedState.from_nemo(expected)
    schedule = solve_schedule(state.values(), window=(0, 24 * 60)) or {
        key: rng.randrange(600, 960, 15) for key in state
    }
    items: list[Any] = [
        {
            "event_id": int(key),
            "event_name": rng.choice(NAMES),
            "start_time": format_12h(start) if twelve_hour else format_24h(start),
            "duration": state[key].duration,
        }
        for key, start in schedule.items()
    ]
    for _ in range(rng.choice([0, 0, 1, 1, 1, 2, 3])):
        mutate(rng, items, expected)
    dumped = json.dumps(items, indent=rng.choice([None, None, 2]))
    wrapper = rng.choice(WRAPPERS)
    if wrapper == "{list}[" or rng.random() < 0.05:
        dumped = dumped[: rng.randrange(len(dumped) + 1)]  # a truncated reply
    other = json.dumps(
        [dict(item, start_time="10:00") if isinstance(item, dict) else item for item in items]
    )
    return wrapper.replace("{other}", other).replace("{list}", dumped)


def clock24(minutes: int) -> str:
    return format_24h(min(max(minutes, 0), 24 * 60))


def mutate(rng: random.Random, items: list[Any], expected: dict[str, Any]) -> None:
    if not items:
        items.append({"event_id": 0, "start_time": "10:00", "duration": 30})
        return
    position = rng.randrange(len(items))
    item = items[position]
    if not isinstance(item, dict):
        return
    choice = rng.randrange(12)
    try:
        start = parse_time(item.get("start_time"))
    except ValueError:
        start = 600
    duration = item.get("duration")
    duration = duration if type(duration) is int else 30
    wanted = expected.get(str(item.get("event_id")))
    if choice == 0:
        item["start_time"] = clock24(start + rng.choice([-60, -15, -5, -1, 1, 5, 15, 60]))
    elif choice == 1 and wanted is not None:
        item["start_time"] = clock24(boundary_start(wanted, rng))
    elif choice == 2:
        item["duration"] = rng.choice(
            [
                duration + 15,
                duration - 15,
                str(duration),
                "sixty",
                None,
                float(duration),
                duration + 0.5,
                True,
                [duration],
                math.nan,
            ]
        )
    elif choice == 3:
        items.pop(position)
    elif choice == 4:
        items.append(
            {
                "event_id": 90 + position,
                "event_name": "Extra",
                "start_time": "15:45",
                "duration": 15,
            }
        )
    elif choice == 5:
        copy = (
            dict(item)
            if rng.random() < 0.5
            else dict(item, start_time=clock24(start + rng.choice([0, 30, 300])))
        )
        items.insert(rng.randrange(len(items) + 1), copy)
    elif choice == 6 and type(item.get("event_id")) is int:
        item["event_id"] = rng.choice(
            [str(item["event_id"]), float(item["event_id"]), f"0{item['event_id']}"]
        )
    elif choice in (7, 8):
        item["start_time"] = restyle(start, rng)
    elif choice == 9:
        item.pop(rng.choice(["event_id", "start_time", "duration", "event_name"]), None)
    elif choice == 10:
        items[position] = rng.choice([5, "x", [1], None, {}])
    elif choice == 11:
        other = rng.choice(items)
        if isinstance(other, dict) and "event_id" in other:
            item["event_id"] = other["event_id"]  # two entries share an id
        rng.shuffle(items)


def test_grader_matches_the_reference_on_generated_replies() -> None:
    rng = random.Random(20240611)
    reasons: Counter[str] = Counter()
    triggers: Counter[str] = Counter()
    for _ in range(4000):
        expected = random_expected(rng)
        outcome = check(random_reply(rng, expected), expected)
        reasons[outcome.reason] += 1
        triggers.update(outcome.triggers or {"none"})
    # Every reason and every documented difference was exercised, and the
    # inputs compared exactly with the reference are the large majority.
    assert set(reasons) == {
        "pass",
        "think_found",
        "no_json_list",
        "different_number_of_events",
        "conflicting_events",
        "constraint_violated",
        "error_in_grading",
    }, reasons
    assert min(reasons.values()) >= 20, reasons
    assert {"case", "duration_type", "duplicate_ids"} <= set(triggers), triggers
    assert triggers["none"] > 0.8 * 4000, triggers


def test_grader_matches_the_reference_on_oddly_written_expected_states() -> None:
    # Times, constraints and fields written in ways the reference reads
    # otherwise (or not at all): the grader must follow the documented rule
    # every time, and equal the reference wherever both read the state alike.
    rng = random.Random(20250113)
    reasons: Counter[str] = Counter()
    triggers: Counter[str] = Counter()
    differs: Counter[tuple[str, str]] = Counter()
    for _ in range(3000):
        clean = random_expected(rng)
        if not clean:
            continue
        text = random_reply(rng, clean)
        expected = oddly_written(clean, rng)
        outcome = check(text, expected)
        ours = grade_calendar_response(text, expected)
        reasons[outcome.reason] += 1
        triggers.update(outcome.triggers or {"none"})
        if (outcome.reward, outcome.reason) != (ours.reward, ours.reason):
            differs[(outcome.reason, ours.reason)] += 1
    assert triggers["expected_state"] > 1000 and triggers["none"] > 400, triggers
    # Both directions occur, and each is documented in docs/calendar-grading.md.
    print(differs)
    assert differs[("pass", "constraint_violated")] > 0, differs
    assert differs[("error_in_grading", "pass")] > 0, differs
    assert differs[("pass", "error_in_grading")] > 0, differs


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='[]{}a" ,:0\n', max_size=24))
def test_list_extraction_matches_the_reference_pattern(text: str) -> None:
    found = REFERENCE_LIST.search(text)
    assert json_list_span(text) == (None if found is None else found.span())


def test_list_extraction_matches_on_many_random_bracket_strings() -> None:
    rng = random.Random(7)
    for _ in range(20000):
        text = "".join(rng.choice('[]{}a"') for _ in range(rng.randrange(18)))
        found = REFERENCE_LIST.search(text)
        assert json_list_span(text) == (None if found is None else found.span()), text


def test_a_truncated_long_list_is_handled_in_linear_time() -> None:
    # The reference pattern needs exponential time here (about 4 s for 20
    # objects, doubling with each one); the pytest timeout would catch us.
    items = [{"event_id": i, "start_time": "10:00", "duration": 5} for i in range(2000)]
    text = json.dumps(items)[:-1]
    assert json_list_span(text) is None
    assert json_list_span("[" + "{}" * 5000) is None
    assert grade_calendar_response(text, {"0": _nemo(30)}).reason == "no_json_list"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.sampled_from([0, 1, 2]))
def test_never_raises_on_any_text(text: str, which: int) -> None:
    expected = [{}, {"0": _nemo(60, "before 11am")}, {"0": _nemo(30), "1": _nemo(45, "at 1pm")}][
        which
    ]
    grade = grade_calendar_response(text, expected)
    assert isinstance(grade, CalendarGrade)
    assert grade.reward == (1.0 if grade.reason == "pass" else 0.0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["event_id", "start_time", "duration", "x"]), inner, max_size=4
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, min_size=1, max_size=4), st.text(alphabet="ab[]{} ", max_size=6))
def test_json_shaped_replies_grade_like_the_documented_reference(
    items: list[Any], prose: str
) -> None:
    text = prose + json.dumps(items) + prose
    check(text, {"0": _nemo(60, "before 11am"), "1": _nemo(30)})


# --- Pinned principled differences ---------------------------------------------------


def _nemo(
    duration: int, constraint: str | None = None, low: str = "10:00", high: str = "16:00"
) -> dict[str, Any]:
    return {
        "event_id": 0,
        "duration": duration,
        "constraint": constraint,
        "min_time": low,
        "max_time": high,
    }


def _reply(*events: tuple[Any, Any, Any]) -> str:
    return json.dumps(
        [{"event_id": i, "event_name": "E", "start_time": s, "duration": d} for i, s, d in events]
    )


@pytest.mark.parametrize("start", ["10:00 AM", "10AM", "10:00\u202fAM", "10:00 Am"])
def test_upper_case_am_pm_is_read(start: str) -> None:
    expected = {"0": _nemo(60, "before 11am")}
    text = _reply((0, start, 60))
    assert reference(text, expected).reason == "error_in_grading"
    assert grade_calendar_response(text, expected).reason == "pass"


def test_upper_case_constraints_in_the_expected_state_are_read() -> None:
    expected = {"0": _nemo(60, "before 11AM")}
    text = _reply((0, "10:00", 60))
    assert reference(text, expected).reason == "error_in_grading"
    assert grade_calendar_response(text, expected).reason == "pass"
    assert (
        grade_calendar_response(_reply((0, "10:30", 60)), expected).reason == "constraint_violated"
    )


def test_upper_case_variant_grades_like_the_reference_on_the_lower_case_reply() -> None:
    rng = random.Random(11)
    compared = crashed = 0
    for _ in range(400):
        expected = random_expected(rng)
        text = random_reply(rng, expected, twelve_hour=True)
        lower = re.sub(r"(\d)( ?)(am|pm)", r"\1\2\3", text)
        upper = re.sub(r"(\d)( ?)(am|pm)", lambda m: m[1] + m[2] + m[3].upper(), lower)
        if upper == lower:
            continue
        compared += 1
        ours = grade_calendar_response(upper, expected)
        spec = documented(lower, expected)
        assert (ours.reward, ours.reason) == (spec.reward, spec.reason), upper
        crashed += reference(upper, expected).reason == "error_in_grading" != spec.reason
    assert compared > 20 and crashed > 5, (compared, crashed)


@pytest.mark.parametrize("duration", ["60", "sixty", None, [60], {"minutes": 60}])
def test_a_duration_that_is_not_a_number_is_a_wrong_duration(duration: Any) -> None:
    # Two entries: a lone entry holding "[" is invisible to the reference pattern.
    expected = {"0": _nemo(30), "1": _nemo(60)}
    text = _reply((0, "11:00", 30), (1, "10:00", duration))
    assert reference(text, expected).reason == "error_in_grading"
    grade = grade_calendar_response(text, expected)
    assert (grade.reward, grade.reason) == (0.0, "constraint_violated")
    assert "event 1" in grade.detail and "duration" in grade.detail


def test_numeric_durations_of_other_json_types_keep_parity() -> None:
    expected = {"0": _nemo(60)}
    assert check(_reply((0, "10:00", 60.0)), expected).reason == "pass"
    assert check(_reply((0, "10:00", 60.5)), expected).reason == "constraint_violated"
    assert check(_reply((0, "10:00", True)), {"0": _nemo(1)}).reason == "pass"


@pytest.mark.parametrize(
    ("text", "expected", "reference_reason"),
    [
        # An exact copy: the two never conflict in the reference, which passes.
        (_reply((0, "10:00", 60), (0, "10:00", 60)), {"0": _nemo(60, "before 11am")}, "pass"),
        # The last entry wins in the reference, hiding the first.
        (_reply((0, "13:00", 60), (0, "10:00", 60)), {"0": _nemo(60, "before 11am")}, "pass"),
        (
            _reply((0, "10:00", 60), (1, "11:00", 30), (1, "12:00", 30)),
            {"0": _nemo(60), "1": _nemo(30)},
            "pass",
        ),
        (
            _reply((0, "10:00", 60), (1, "10:30", 30), (1, "12:00", 30)),
            {"0": _nemo(60), "1": _nemo(30)},
            "conflicting_events",
        ),
    ],
)
def test_an_id_listed_twice_fails(
    text: str, expected: dict[str, Any], reference_reason: str
) -> None:
    ref = reference(text, expected)
    assert ref.reason == reference_reason
    assert "duplicate_ids" in ref.triggers
    grade = grade_calendar_response(text, expected)
    assert (grade.reward, grade.reason) == (0.0, "different_number_of_events")
    assert "listed 2 times" in grade.detail


def test_constraint_keywords_in_any_case_are_enforced() -> None:
    expected = {"0": _nemo(60, "Before 11am")}
    late = _reply((0, "12:00", 60))
    assert reference(late, expected).reason == "pass"  # an unknown constraint to the reference
    assert grade_calendar_response(late, expected).reason == "constraint_violated"


def test_malformed_expected_state_is_an_error_in_grading() -> None:
    text = _reply((0, "10:00", 60))
    for expected in [{"0": {"duration": 60}}, {"0": _nemo(60, "whenever")}, {"0": 5}, None]:
        grade = grade_calendar_response(text, expected)  # type: ignore[arg-type]
        assert grade.reason == "error_in_grading"
        assert "expected state" in grade.detail


# --- Agreement on the rule's details ------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "start", "duration", "wanted", "reason"),
    [
        ("before 11am", "10:00", 60, 60, "pass"),
        ("before 11am", "10:01", 60, 60, "constraint_violated"),
        ("after 2pm", "14:00", 30, 30, "pass"),
        ("after 2pm", "13:59", 30, 30, "constraint_violated"),
        ("between 10am and 11:45am", "10:45", 60, 60, "pass"),
        ("between 10am and 11:45am", "10:46", 60, 60, "constraint_violated"),
        ("between 10:15am and 11:45am", "10:14", 60, 60, "constraint_violated"),
        ("at 1pm", "13:00", 30, 30, "pass"),
        ("at 1pm", "13:01", 30, 30, "constraint_violated"),
        ("at 1pm", "12:59", 30, 30, "constraint_violated"),
        ("at 1pm", "1pm", 30, 30, "pass"),
        (None, "15:00", 60, 60, "pass"),  # ends exactly at max_time
        (None, "15:01", 60, 60, "constraint_violated"),
        (None, "10:00", 60, 60, "pass"),  # starts exactly at min_time
        (None, "09:59", 60, 60, "constraint_violated"),
        (None, "9:75", 60, 60, "pass"),  # int() arithmetic: the reference reads 10:15
        (None, "13pm", 60, 60, "constraint_violated"),  # read as 25:00
        ("before 11am", "10:00", 45, 60, "constraint_violated"),  # wrong duration
    ],
)
def test_boundaries_agree_with_the_reference(
    rule: str | None, start: str, duration: int, wanted: int, reason: str
) -> None:
    expected = {"0": _nemo(wanted, rule)}
    assert check(_reply((0, start, duration)), expected).reason == reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no_json_list"),
        ("<think>", "think_found"),
        ("</think>" + _reply((0, "10:00", 60), (1, "11:00", 30)), "pass"),
        (_reply((0, "10:00", 60), (1, "11:00", 30)), "pass"),  # back to back
        (_reply((0, "10:00", 60), (1, "10:59", 30)), "conflicting_events"),
        (_reply((0, "10:00", 60)), "different_number_of_events"),
        (_reply((0, "10:00", 60), (2, "11:00", 30)), "error_in_grading"),  # id 1 missing
        (
            _reply((0, "10:00", 60), (1, "11:00", 30), (2, "12:00", 30)),
            "different_number_of_events",
        ),
        ("[1, 2] " + _reply((0, "10:00", 60), (1, "11:00", 30)), "pass"),
        ("[{'event_id': 0}] " + _reply((0, "10:00", 60), (1, "11:00", 30)), "no_json_list"),
        (_reply((0, "10:00", 60), (1, "11:00", 30)) + _reply((0, "10:00", 10)), "pass"),
        (
            '[{"event_id": 0, "event_name": "a [b]", "start_time": "10:00", "duration": 60}]',
            "no_json_list",
        ),
        ('[5, {"event_id": 0}]', "error_in_grading"),
        ('{"event_id": 0, "start_time": "10:00", "duration": 60}', "no_json_list"),
        # 0 and 0.0 are different keys, but the entries are == so the reference
        # never compares them for overlap; it then misses key "1".
        (
            '[{"event_id": 0, "start_time": "10:00", "duration": 60},'
            ' {"event_id": 0.0, "start_time": "10:00", "duration": 60}]',
            "error_in_grading",
        ),
        # Python's json raises a plain ValueError on a 5000-digit integer.
        (
            _reply((0, "10:00", 60), (1, "11:00", 30)).replace("60", "6" * 5000),
            "error_in_grading",
        ),
        (_reply((0, "10:00", 60), (1, "11:00", 30)).replace("60", "6,"), "no_json_list"),
        # A "]" inside a later entry's string ends the candidate early ...
        (
            '[{"event_id": 0, "start_time": "10:00", "duration": 60},'
            ' {"event_id": 1, "start_time": "11:00", "duration": 30, "event_name": "x]"}]',
            "no_json_list",
        ),
        # ... and inside the first entry's string it does not.
        (
            '[{"event_id": 0, "start_time": "10:00", "duration": 60, "event_name": "x]"},'
            ' {"event_id": 1, "start_time": "11:00", "duration": 30}]',
            "pass",
        ),
    ],
)
def test_whole_reply_cases_agree_with_the_reference(text: str, reason: str) -> None:
    expected = {"0": _nemo(60), "1": _nemo(30)}
    assert check(text, expected).reason == reason


def test_an_empty_expected_state_passes_any_non_empty_reply() -> None:
    for text in ["hello", "[not json", " "]:
        assert check(text, {}).reason == "pass"
    assert grade_calendar_response("hi", ExpectedState()).passed
    assert check("<think>x", {}).reason == "think_found"


def test_identical_entries_do_not_conflict_with_each_other_in_the_reference() -> None:
    expected = {"0": _nemo(60), "1": _nemo(30)}
    text = _reply((0, "10:00", 60), (0, "10:00", 60), (1, "11:00", 30))
    assert reference(text, expected).reason == "pass"
    assert grade_calendar_response(text, expected).reason == "different_number_of_events"


def test_details_name_the_event_and_the_rule() -> None:
    missing = grade_calendar_response(
        _reply((0, "10:00", 60), (2, "11:00", 30)), {"0": _nemo(60), "1": _nemo(30)}
    )
    assert "expected event 1 is not listed" in missing.detail
    expected = {"1": {**_nemo(60, "before 11am"), "event_id": 1}}
    grade = grade_calendar_response(_reply((1, "11:30", 60)), expected)
    assert grade.reason == "constraint_violated"
    assert "event 1" in grade.detail and "'before 11am'" in grade.detail and "11:00" in grade.detail
    conflict = grade_calendar_response(
        _reply((0, "10:00", 60), (1, "10:30", 30)), {"0": _nemo(60), "1": _nemo(30)}
    )
    assert "event 0" in conflict.detail and "event 1" in conflict.detail


def test_grade_is_frozen_and_consistent() -> None:
    grade = grade_calendar_response("", {})
    with pytest.raises(ValidationError):
        grade.reward = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        CalendarGrade(reward=1.0, reason="no_json_list", detail="")


# --- The five public records ---------------------------------------------------------

HAND_BUILT = [
    ({"0": "10:30", "1": "12:00"}, ("1", "13:00")),
    (
        {
            "0": "10:00",
            "3": "11:30",
            "5": "12:15",
            "1": "13:15",
            "6": "14:00",
            "2": "15:00",
            "4": "15:30",
        },
        ("6", "13:45"),
    ),
    (
        {
            "5": "10:00",
            "3": "11:15",
            "1": "11:45",
            "0": "12:30",
            "6": "13:15",
            "2": "14:00",
            "4": "14:30",
        },
        ("1", "12:30", "0", "11:45"),  # a full day: event 1 swaps places with event 0
    ),
    ({"1": "10:00", "3": "11:00", "4": "11:30", "0": "13:00", "2": "15:00"}, ("2", "14:00")),
    ({"2": "10:00", "3": "10:30", "0": "11:30", "1": "15:00"}, ("3", "12:30")),
]


def _records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in RECORDS.read_text().splitlines() if line.strip()]


def _calendar_reply(expected: dict[str, Any], starts: dict[str, str]) -> str:
    events = [
        ListedEvent(key, f"Event {key}", parse_time(start), expected[key]["duration"])
        for key, start in starts.items()
    ]
    return "Here is the updated calendar:\n\n```json\n" + format_calendar(events) + "\n```"


@pytest.mark.parametrize("index", range(5))
def test_public_records_hand_built_replies_pass_and_a_moved_event_fails(index: int) -> None:
    record = _records()[index]
    assert record["responses_create_params"]["input"][-1]["role"] == "user"
    expected = record["exp_cal_state"]
    starts, move = HAND_BUILT[index]
    assert check(_calendar_reply(expected, starts), expected).reason == "pass"
    moved = dict(starts)
    for key, start in zip(move[::2], move[1::2], strict=True):
        moved[key] = start
    grade = grade_calendar_response(_calendar_reply(expected, moved), expected)
    assert (grade.reward, grade.reason) == (0.0, "constraint_violated")
    assert f"event {move[0]} " in grade.detail and expected[move[0]]["constraint"] in grade.detail
    assert check(_calendar_reply(expected, moved), expected).reason == "constraint_violated"


@pytest.mark.parametrize("index", range(5))
def test_public_records_solver_reply_passes_and_every_assistant_turn_agrees(index: int) -> None:
    record = _records()[index]
    expected = record["exp_cal_state"]
    state = ExpectedState.from_nemo(expected)
    schedule = solve_schedule(state.values())
    assert schedule is not None
    reply = format_calendar(ListedEvent(k, "x", s, state[k].duration) for k, s in schedule.items())
    assert check(reply, expected).reason == "pass"
    for message in record["responses_create_params"]["input"]:
        if message["role"] == "assistant":
            check(message["content"], expected)


# --- The model: expected states, listed events, extraction ---------------------------


def test_expected_state_from_nemo_round_trips() -> None:
    expected = _records()[3]["exp_cal_state"]
    state = ExpectedState.from_nemo(expected)
    assert list(state) == list(expected)
    assert state["0"] == ExpectedEvent("0", 30, Constraint("at", 780), 600, 960)
    assert state["3"].constraint is None
    assert state.to_nemo() == expected
    assert ExpectedState.from_dict(expected) == state


def test_seed_format_is_an_exact_calendar() -> None:
    seed = {
        "0": {"event_name": "Standup", "start_time": "10:00", "duration": 15},
        "1": {"event_name": "Late", "start_time": "15:30", "duration": 60},
    }
    state = ExpectedState.from_dict(seed)
    assert state["0"] == ExpectedEvent("0", 15, Constraint("at", 600), 600, 960)
    assert state["1"].max_time == 990  # widened so the expected calendar itself passes
    exact = _reply((0, "10:00", 15), (1, "15:30", 60))
    assert grade_calendar_response(exact, seed).passed
    moved = grade_calendar_response(_reply((0, "10:15", 15), (1, "15:30", 60)), seed)
    assert moved.reason == "constraint_violated" and "'at 10am'" in moved.detail


@given(
    st.lists(
        st.tuples(st.integers(0, 23 * 4), st.sampled_from([15, 30, 45, 60])), min_size=1, max_size=6
    )
)
def test_any_seed_calendar_passes_against_itself(slots: list[tuple[int, int]]) -> None:
    starts, seed = 0, {}
    for i, (gap, duration) in enumerate(slots):
        starts += gap * 5
        if starts + duration > 24 * 60:
            break
        seed[str(i)] = {
            "event_name": f"E{i}",
            "start_time": format_24h(starts),
            "duration": duration,
        }
        starts += duration
    if seed:
        reply = _reply(*((int(k), v["start_time"], v["duration"]) for k, v in seed.items()))
        assert grade_calendar_response(reply, seed).passed


@pytest.mark.parametrize(
    ("data", "event_id", "field_name"),
    [
        ({"0": {"duration": 60, "constraint": None, "min_time": "10:00"}}, "0", "max_time"),
        ({"3": _nemo(60, "whenever")}, "3", "constraint"),
        ({"0": _nemo(0)}, "0", "duration"),
        ({"0": {**_nemo(60), "min_time": "25:00"}}, "0", "min_time"),
        ({"1": {"event_name": "x", "start_time": "10:00", "duration": "60"}}, "1", "duration"),
    ],
)
def test_expected_state_errors_carry_the_entry_and_field(
    data: dict[str, Any], event_id: str, field_name: str
) -> None:
    with pytest.raises(ExpectedStateError) as caught:
        ExpectedState.from_dict(data)
    assert (caught.value.event_id, caught.value.field) == (event_id, field_name)


def test_listed_events_round_trip_through_text() -> None:
    events = [ListedEvent("0", "Plan [Q4]", 600, 60), ListedEvent("7", "Sync", 705, 15)]
    for order in (events, events[::-1]):
        assert parse_listed_events("Sure!\n" + format_calendar(order) + "\nBye") == order
    # The reference pattern cannot see a lone entry with a bracket in its name.
    assert parse_listed_events(format_calendar(events[:1])) is None
    assert parse_listed_events("no calendar") is None
    assert parse_listed_events('[{"event_id": 0, "start_time": "10:00", "duration": "60"}]') is None


@pytest.mark.parametrize(
    "text", ["[]", "[ ]", "Here is your calendar.\n\n[]", "Nothing yet:\n```json\n[\n]\n```"]
)
def test_an_empty_list_is_no_list_to_the_grader_but_an_empty_calendar_to_the_helpers(
    text: str,
) -> None:
    # NeMo-Gym's pattern needs an object inside the list, so the grader keeps
    # answering no_json_list (which the reference does too) ...
    assert check(text, {"0": _nemo(60)}).reason == "no_json_list"
    assert check(text, {}).reason == "pass"
    assert extract_json_list(text) is None
    # ... while the helpers that read a calendar see an empty one, not none.
    assert parse_listed_events(text) == []
    for other in ("no calendar", "[1]", "see [draft] then []", "[oops"):
        assert parse_listed_events(other) is None, other


def test_extract_json_list_takes_only_the_first_candidate() -> None:
    assert extract_json_list('x [{"a": 1}] y [{"b": 2}]') == [{"a": 1}]
    assert extract_json_list("[{'a': 1}] then [{\"b\": 2}]") is None
    assert extract_json_list('[[{"a": 1}]]') == [{"a": 1}]
    assert extract_json_list("[1, 2]") is None


def test_public_names_are_complete_and_importable() -> None:
    for module in (calendar_package, grader_module):
        for name in module.__all__:
            assert hasattr(module, name), name
        defined_here = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and (isinstance(value, type) or callable(value))
            and getattr(value, "__module__", "").startswith(module.__name__)
        }
        assert defined_here <= set(module.__all__), defined_here - set(module.__all__)


# --- Issue #10's cases, decided one by one (docs/calendar-grading.md) ----------------


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("constraint", "before noon"),
        ("constraint", "before midday"),
        ("constraint", "before 11 a.m."),
        ("constraint", "before 11am."),
        ("constraint", "between 10 a.m. and 1 p.m."),
        ("max_time", "4 p.m."),
        ("min_time", "10 a.m."),
    ],
)
def test_times_only_convo_sim_reads_turn_a_zero_into_a_one(field_name: str, value: str) -> None:
    # Item 2, a principled difference (0 -> 1): the data means a clear time,
    # so convo-sim grades by it; the reference cannot read it and fails.
    expected = {"0": {**_nemo(60), field_name: value}}
    text = _reply((0, "10:00", 60))
    ref = reference(text, expected)
    assert (ref.reward, ref.reason) == (0.0, "error_in_grading")
    assert "expected_state" in ref.triggers
    assert grade_calendar_response(text, expected).reason == "pass"
    assert check(text, expected).reason == "error_in_grading"


def test_midnight_is_the_start_of_the_day() -> None:
    # As "12am" is, here and in the reference: "before midnight" is never met.
    expected = {"0": _nemo(60, "before midnight", "0:00", "24:00")}
    assert grade_calendar_response(_reply((0, "10:00", 60)), expected).reason == (
        "constraint_violated"
    )
    assert check(
        _reply((0, "10:00", 60)), {"0": _nemo(60, "before 12am", "0:00", "24:00")}
    ).reason == ("constraint_violated")


@pytest.mark.parametrize("rule", [" before 11am", "before\t11am", "Before 11am", "BEFORE 11am"])
def test_constraints_the_reference_does_not_recognise_are_enforced(rule: str) -> None:
    # Item 3 (1 -> 0): the reference treats the text as no constraint at all;
    # convo-sim reads it as written, whitespace and letter case aside.
    expected = {"0": _nemo(60, rule)}
    late = _reply((0, "12:00", 60))
    assert reference(late, expected).reason == "pass"
    grade = grade_calendar_response(late, expected)
    assert grade.reason == "constraint_violated" and "11:00" in grade.detail
    assert grade_calendar_response(_reply((0, "10:00", 60)), expected).reason == "pass"


def test_a_between_with_odd_whitespace_is_read() -> None:
    # Item 3 (0 -> 1): the reference's split on " and " fails on a tab.
    expected = {"0": _nemo(60, "between 10am and\t11am")}
    text = _reply((0, "10:00", 60))
    assert reference(text, expected).reason == "error_in_grading"
    assert grade_calendar_response(text, expected).reason == "pass"


@pytest.mark.parametrize("rule", ["whenever", "around noon", "after 2pm and before 4pm"])
def test_constraint_text_nobody_can_read_is_an_error_in_grading(rule: str) -> None:
    # Unknown text (1 -> 0 where the reference reads it as no constraint).
    expected = {"0": _nemo(60, rule)}
    text = _reply((0, "10:00", 60))
    grade = grade_calendar_response(text, expected)
    assert grade.reason == "error_in_grading" and "constraint" in grade.detail
    assert reference(text, expected).reason in ("pass", "error_in_grading")


@pytest.mark.parametrize(("low", "reads_as"), [("9:75", 615), ("10:0", 600), ("0am", 0)])
def test_times_only_the_reference_reads_are_an_error_in_grading(low: str, reads_as: int) -> None:
    # 1 -> 0: a time outside the documented forms is malformed data.
    expected = {"0": {**_nemo(60), "min_time": low}}
    text = _reply((0, format_24h(max(reads_as, 600)), 60))
    assert reference(text, expected).reason == "pass"
    assert grade_calendar_response(text, expected).reason == "error_in_grading"


def test_a_nemo_entry_with_a_start_time_is_graded_by_its_nemo_fields() -> None:
    # Item 4, parity: the reference ignores `start_time` in exp_cal_state.
    expected = {"0": {**_nemo(60, "before 11am"), "start_time": "13:00"}}
    for start, reason in [("10:00", "pass"), ("13:00", "constraint_violated")]:
        text = _reply((0, start, 60))
        assert check(text, expected).reason == reason
    window = {"0": {**_nemo(60, None, "10:00", "12:00"), "start_time": "15:00"}}
    assert check(_reply((0, "15:00", 60)), window).reason == "constraint_violated"


@pytest.mark.parametrize(
    ("low", "high", "start"), [("10:00", "16:00", "12:00"), ("0:00", "24:00", "23:00")]
)
def test_at_end_of_day_is_a_violated_constraint(low: str, high: str, start: str) -> None:
    # Item 5, parity: "at 24:00" can never be met; no crash while saying so.
    expected = {"0": _nemo(60, "at 24:00", low, high)}
    grade = grade_calendar_response(_reply((0, start, 60)), expected)
    assert grade.reason == "constraint_violated"
    assert "unexpected error" not in grade.detail
    assert check(_reply((0, start, 60)), expected).reason == "constraint_violated"


def test_a_whitespace_reply_passes_an_empty_state_here_but_is_no_final_reply() -> None:
    # The grading function keeps parity; the dialogue rule decides
    # (convo_sim._verification.final_reply): a blank last turn earns nothing.
    assert check("  \n", {}).reason == "pass"


_PIECES = ["[", "]", "{", "}", "a", '"', '{"a": 1}', '[{"b": "x]"}', " [note] ", "{[", "]}", "[ {"]


def test_list_extraction_matches_on_structured_random_replies() -> None:
    # Pieces of real replies (objects, brackets in strings, notes, fragments),
    # so that every path of the linear search (one pair, the walk back, the
    # exact stretches) meets the reference pattern.
    rng = random.Random(8)
    for _ in range(20000):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randrange(14)))
        found = REFERENCE_LIST.search(text)
        assert json_list_span(text) == (None if found is None else found.span()), text


class _Counted(str):
    """A text whose searches add the characters they read to `work` (an upper bound)."""

    work = 0

    def _read(self, start: int | None, end: int | None) -> int:
        low = 0 if start is None else start
        high = len(self) if end is None else end
        return max(0, high - low)

    def find(self, sub: str, start: Any = None, end: Any = None) -> int:  # type: ignore[override]
        found = str.find(self, sub, start, end)
        low = 0 if start is None else start
        _Counted.work += (found - low + 1) if found >= 0 else self._read(start, end)
        return found

    def rfind(self, sub: str, start: Any = None, end: Any = None) -> int:  # type: ignore[override]
        found = str.rfind(self, sub, start, end)
        high = len(self) if end is None else end
        _Counted.work += (high - found) if found >= 0 else self._read(start, end)
        return found

    def count(self, sub: str, start: Any = None, end: Any = None) -> int:  # type: ignore[override]
        _Counted.work += self._read(start, end)
        return str.count(self, sub, start, end)


class _CountedPattern:
    """A compiled pattern whose scans add the characters they cover to `_Counted.work`."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern

    def match(self, text: str, pos: int = 0, endpos: int = sys.maxsize) -> re.Match[str] | None:
        found = self.pattern.match(text, pos, endpos)
        _Counted.work += (found.end() - pos + 1) if found else 1
        return found

    def search(self, text: str, pos: int = 0, endpos: int = sys.maxsize) -> re.Match[str] | None:
        found = self.pattern.search(text, pos, endpos)
        _Counted.work += (found.end() if found else min(endpos, len(text))) - pos + 1
        return found

    def finditer(self, text: str, pos: int = 0, endpos: int = sys.maxsize) -> Any:
        _Counted.work += min(endpos, len(text)) - pos
        return self.pattern.finditer(text, pos, endpos)


ADVERSARIAL = {
    "fragments then a list": lambda k: '[ {"a": 1} ' * k + _reply((0, "10:00", 60)),
    "a truncated list with brackets in names": lambda k: json.dumps(
        [{"event_id": i, "event_name": f"R [d{i}]", "start_time": "10:00", "duration": 5}
         for i in range(k // 4)]
    )[:-1],
    "brackets in prose": lambda k: "see [note] and {x: [y]} then ] [ " * (k // 4),
    "every bracket in an open group": lambda k: "[" + '{"a": "[", "b": "]"} ' * (k // 3),
    "open braces, no close": lambda k: "[{" * k + "]",
    "closes first": lambda k: "}" + "[x]{" * k,
    "runs of brackets": lambda k: "[[[[{]]]]}" * k,
    "an open brace before many lists": lambda k: "{" + "[x]" * k + "}",
}  # fmt: skip


@pytest.mark.parametrize("shape", list(ADVERSARIAL))
def test_list_extraction_reads_each_character_a_bounded_number_of_times(
    shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Linear time, checked without a clock: every search in C is counted by
    # the characters it reads, and the total stays a small multiple of the
    # text's length as the text grows (a quadratic search grows with it).
    from convo_sim.domains.calendar import _listing as listing

    for name in ("_BRACKET", "_TOKEN", "_WALK"):
        monkeypatch.setattr(listing, name, _CountedPattern(getattr(listing, name)))
    per_char = []
    for k in (500, 4000):
        text = _Counted(ADVERSARIAL[shape](k))
        _Counted.work = 0
        listing.json_list_span(text)
        per_char.append(_Counted.work / len(text))
    assert max(per_char) < 20, per_char
    assert per_char[1] < 2 * per_char[0] + 1, per_char


def test_every_test_the_grading_page_names_exists() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "calendar-grading.md").read_text()
    files = {p.stem for p in Path(__file__).parent.glob("test_*.py")}
    named = set(re.findall(r"\btest_\w+", page)) - files
    assert len(named) > 15
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    defined = set(re.findall(r"def (test_\w+)", tests))
    assert named <= defined, named - defined
