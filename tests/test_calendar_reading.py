"""One reading of a reply: the grader, the turn verifiers and the simulated user agree.

Each reply below is shown to all three readers against the same requests.
The grader's verdict is the reference; the turn verifiers must all score 1
exactly when it passes, and the simulated user must find nothing to correct
exactly then. Also here: the verifiers' cost grows as n log n in the number
of events listed, checked by counting executed lines, not by timing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from convo_sim import Message, Transcript, TurnContext
from convo_sim.domains.calendar import parse_listed_events
from convo_sim.domains.calendar._grading import grade_calendar_response
from convo_sim.domains.calendar._reply import read_reply, reply_minutes
from convo_sim.scenarios import CalendarGoal, GoalStep, Scenario
from convo_sim.users import CalendarUser
from convo_sim.verifiers import ConstraintsHonoured, EventsPresent, NoConflicts, ValidCalendar

ASKS = [
    'Please add "Design review" for 60 minutes (event id: 0)',
    "Could (event id: 0) be before 1pm?",
    'Please add "Lunch" for 30 minutes (event id: 1)',
]
EXPECTED = {
    "0": {
        "event_id": 0,
        "duration": 60,
        "constraint": "before 1pm",
        "min_time": "10:00",
        "max_time": "16:00",
    },
    "1": {
        "event_id": 1,
        "duration": 30,
        "constraint": None,
        "min_time": "10:00",
        "max_time": "16:00",
    },
}
GOAL = Scenario(
    id="reading",
    goal=CalendarGoal(
        steps=(
            GoalStep(action="add", event_id=0, name="Design review", duration=60),
            GoalStep(action="constrain", event_id=0, constraint="before 1pm"),
            GoalStep(action="add", event_id=1, name="Lunch", duration=30),
        )
    ),
)


def listing(*events: tuple[Any, Any, Any]) -> str:
    return json.dumps(
        [{"event_id": i, "event_name": "E", "start_time": s, "duration": d} for i, s, d in events]
    )


GOOD = listing((0, "10:00", 60), (1, "11:00", 30))
REPLIES = {
    "plain": GOOD,
    "fenced with prose": f"Here you go:\n```json\n{GOOD}\n```\nAnything else?",
    "think tags": f"<think>fits before 1pm</think>{GOOD}",
    "think marker only": f"{GOOD}\n<think>",
    "closing think only": f"reasoning...</think>\n{GOOD}",
    "minutes past 59": listing((0, "9:75", 60), (1, "11:15", 30)),
    "upper-case AM": listing((0, "10:00 AM", 60), (1, "11:00 AM", 30)),
    "twelve-hour lower case": listing((0, "10am", 60), (1, "11:30am", 30)),
    "float durations": listing((0, "10:00", 60.0), (1, "11:00", 30.0)),
    "a fraction of a minute": listing((0, "10:00", 60.5), (1, "12:00", 30)),
    "string duration": listing((0, "10:00", "60"), (1, "11:00", 30)),
    "spaces in the time": listing((0, " 10 : 00 ", 60), (1, "11:00", 30)),
    "a time past the day": listing((0, "10:00", 60), (1, "13pm", 30)),
    "an extra event": listing((0, "10:00", 60), (1, "11:00", 30), (2, "12:00", 15)),
    "a missing event": listing((0, "10:00", 60)),
    "an id twice": listing((0, "10:00", 60), (1, "11:00", 30), (1, "12:00", 30)),
    "overlap": listing((0, "10:00", 60), (1, "10:30", 30)),
    "breaks the constraint": listing((0, "12:30", 60), (1, "10:00", 30)),
    "outside the window": listing((0, "10:00", 60), (1, "15:45", 30)),
    "ids as strings": listing(("0", "10:00", 60), ("1", "11:00", 30)),
    "no list": "All booked!",
    "empty list": "Nothing yet: []",
    "blank": "  \n ",
    "python-style list first": "[{'event_id': 0}] " + GOOD,
    "prose list first": "[note] " + GOOD,
}


def turn_scores(reply: str) -> dict[str, float]:
    messages = [Message(role="user", content=text) for text in ASKS]
    message = Message(role="assistant", content=reply)
    ctx = TurnContext(Transcript(messages=(*messages, message)), message, 1)
    verifiers = (ValidCalendar(), NoConflicts(), EventsPresent(), ConstraintsHonoured())
    return {v.name: v(ctx).score for v in verifiers}


def user_objects(reply: str) -> bool:
    user = CalendarUser(GOAL)
    user.revealed = len(GOAL.goal.steps) if GOAL.goal else 0
    return user._check(reply) is not None


@pytest.mark.parametrize("name", list(REPLIES))
def test_grader_turn_verifiers_and_user_read_a_reply_alike(name: str) -> None:
    reply = REPLIES[name]
    passed = grade_calendar_response(reply, EXPECTED).passed
    scores = turn_scores(reply)
    assert all(s == 1.0 for s in scores.values()) == passed, (name, passed, scores)
    assert user_objects(reply) == (not passed), name
    assert (read_reply(reply).events is not None) == (parse_listed_events(reply) is not None), name


def test_the_readings_that_pass_and_fail() -> None:
    # Pinned, so that the agreement above is not agreement on "everything fails".
    passing = {n for n, r in REPLIES.items() if grade_calendar_response(r, EXPECTED).passed}
    assert passing == {
        "plain",
        "fenced with prose",
        "closing think only",
        "minutes past 59",
        "upper-case AM",
        "twelve-hour lower case",
        "float durations",
        "spaces in the time",
        "ids as strings",
        "prose list first",
    }


@pytest.mark.parametrize("reply", [f"<think>plan</think>{GOOD}", "<think>", "  ", ""])
def test_think_tags_and_blank_replies_fail_every_turn_even_before_any_request(reply: str) -> None:
    message = Message(role="assistant", content=reply)
    ctx = TurnContext(
        Transcript(messages=(Message(role="user", content="Hi!"), message)), message, 1
    )
    for verifier in (ValidCalendar(), NoConflicts(), EventsPresent(), ConstraintsHonoured()):
        score = verifier(ctx)
        assert score.score == 0.0, verifier.name
        assert score.reason in ("think_found", "empty_reply"), score.reason


def test_the_user_asks_for_the_calendar_without_think_notes() -> None:
    user = CalendarUser(GOAL)
    first = user.reply(None)
    assert "event id: 0" in first
    answer = user.reply(Message(role="assistant", content=f"<think>x</think>{GOOD}"))
    assert "<think>" in answer and "calendar" in answer


def test_extra_events_count_against_events_present() -> None:
    score = turn_scores(REPLIES["an extra event"])
    assert score["events_present"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("value", "minutes"),
    [
        ("10:00", 600),
        ("9:75", 615),
        ("10:00 AM", 600),
        ("10AM", 600),
        ("12am", 0),
        ("12:30pm", 750),
        ("13pm", 1500),
        (" 1_0:00", 600),
        ("10", None),
        ("ten", None),
        (600, None),
        (None, None),
        ("10:00:00", None),
    ],
)
def test_reply_times_are_read_as_the_reference_reads_them(
    value: object, minutes: int | None
) -> None:
    assert reply_minutes(value) == minutes


# --- Cost: n log n, counted in executed lines ----------------------------------------


def executed_lines(call: Callable[[], object]) -> int:
    """How many lines of Python ran during `call()` (C code, like `json.loads`, is free)."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        call()
    finally:
        sys.settrace(None)
    return count


_calls = iter(range(1_000_000))


def crowded(n: int, seed: int) -> str:
    # Every event overlaps the next: the worst case for pairwise comparison.
    # A new name each call, so that no reading comes from a cache.
    tag = f"{seed}-{next(_calls)}"
    events = [
        {"event_id": i, "event_name": f"E{tag}", "start_time": f"{10 + i % 5}:{i % 60:02d}",
         "duration": 90}
        for i in range(n)
    ]  # fmt: skip
    return json.dumps(events)


def growth(work: Callable[[int, int], object]) -> float:
    """Lines run for 4n events over lines for n (quadratic work gives about 16)."""
    small = executed_lines(lambda: work(250, 1))
    large = executed_lines(lambda: work(1000, 2))
    return large / small


def _turn(verifier: Any) -> Callable[[int, int], object]:
    def work(n: int, seed: int) -> object:
        reply = crowded(n, seed)
        message = Message(role="assistant", content=reply)
        asks = [
            Message(role="user", content=f"Add E (event id: {i}) for 90 minutes") for i in range(3)
        ]
        return verifier(TurnContext(Transcript(messages=(*asks, message)), message, 1))

    return work


def _grade(n: int, seed: int) -> object:
    expected = {
        str(i): {"event_id": i, "duration": 90, "constraint": None, "min_time": "0:00",
                 "max_time": "24:00"}
        for i in range(n)
    }  # fmt: skip
    return grade_calendar_response(crowded(n, seed).replace('"E', '"F'), expected)


def _grade_apart(n: int, seed: int) -> object:
    events = [
        {"event_id": i, "event_name": f"E{seed}", "start_time": "10:00", "duration": 1}
        for i in range(n)
    ]
    for position, event in enumerate(events):
        event["start_time"] = f"{position // 60}:{position % 60:02d}"
    expected = {
        str(i): {"event_id": i, "duration": 1, "constraint": None, "min_time": "0:00",
                 "max_time": "24:00"}
        for i in range(n)
    }  # fmt: skip
    return grade_calendar_response(json.dumps(events), expected)


def _user(n: int, seed: int) -> object:
    steps = tuple(GoalStep(action="add", event_id=i, name=f"E{i}", duration=90) for i in range(n))
    user = CalendarUser(Scenario(id=f"big{seed}", goal=CalendarGoal(steps=steps)))
    user.revealed = n
    return user._check(crowded(n, seed))


@pytest.mark.parametrize(
    "work",
    [
        _turn(ValidCalendar()),
        _turn(NoConflicts()),
        _turn(EventsPresent()),
        _turn(ConstraintsHonoured()),
        _grade,
        _grade_apart,
        _user,
    ],
    ids=["valid_calendar", "no_conflicts", "events_present", "constraints_honoured",
         "grader_conflicting", "grader_passing", "simulated_user"],
)  # fmt: skip
def test_checking_a_calendar_grows_as_n_log_n(work: Callable[[int, int], object]) -> None:
    assert growth(work) < 7.0
