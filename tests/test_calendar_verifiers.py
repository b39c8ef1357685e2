"""Calendar turn verifiers and the final verifier, through the public API."""

from __future__ import annotations

import json
from typing import Any

import anyio
from hypothesis import given
from hypothesis import strategies as st

from convo_sim import (
    FinalContext,
    Message,
    TerminationReason,
    Transcript,
    TurnContext,
    TurnScore,
    all_of,
    cumulative,
    run_dialogue,
)
from convo_sim.agents import CalendarSolverAssistant, ScriptedAssistant
from convo_sim.domains.calendar import json_list_span, parse_listed_events
from convo_sim.domains.calendar._intents import shown_calendar
from convo_sim.scenarios import CalendarGoal, GoalStep, Scenario, bundled_scenarios
from convo_sim.users import ScriptedUser
from convo_sim.verifiers import (
    CalendarFinalVerifier,
    ConstraintsHonoured,
    EventsPresent,
    NoConflicts,
    ValidCalendar,
    calendar_verifiers,
)

ASK = [
    'Please add "Design review" for 60 minutes (event id: 0)',
    "Could (event id: 0) be before 1pm?",
    'Please add "Lunch" for 30 minutes (event id: 1)',
]


def calendar(*events: tuple[int, str, int]) -> str:
    items = [
        {"event_id": i, "event_name": f"E{i}", "start_time": start, "duration": duration}
        for i, start, duration in events
    ]
    return "Here you go:\n" + json.dumps(items)


def turn(reply: str, asks: list[str] = ASK) -> TurnContext:
    messages: list[Message] = []
    for text in asks:
        messages.append(Message(role="user", content=text))
    message = Message(role="assistant", content=reply)
    return TurnContext(Transcript(messages=(*messages, message)), message, 1)


GOOD = calendar((0, "10:00", 60), (1, "11:00", 30))


def test_a_correct_calendar_passes_every_turn_verifier() -> None:
    ctx = turn(GOOD)
    for verifier in (ValidCalendar(), NoConflicts(), EventsPresent(), ConstraintsHonoured()):
        score = verifier(ctx)
        assert (score.score, score.reason) == (1.0, "pass"), verifier.name


def test_no_calendar_scores_zero_with_a_reason_everywhere() -> None:
    ctx = turn("Done! Your events are booked.")
    for verifier in (ValidCalendar(), NoConflicts(), EventsPresent(), ConstraintsHonoured()):
        score = verifier(ctx)
        assert (score.score, score.reason) == (0.0, "no_json_list"), verifier.name


def test_nothing_requested_yet_is_not_a_failure() -> None:
    ctx = turn("Hello! What can I schedule for you?", asks=["Hi there"])
    for verifier in (ValidCalendar(), NoConflicts(), EventsPresent(), ConstraintsHonoured()):
        assert verifier(ctx).score == 1.0


def test_duplicate_ids_are_an_invalid_calendar() -> None:
    score = ValidCalendar()(turn(calendar((0, "10:00", 60), (0, "12:00", 60))))
    assert (score.score, score.reason) == (0.0, "duplicate_event_id")
    assert score.details["event_ids"] == ["0"]


def test_conflicts_score_the_share_of_events_that_overlap_nothing() -> None:
    reply = calendar((0, "10:00", 60), (1, "10:30", 30), (2, "12:00", 30), (3, "13:00", 60))
    score = NoConflicts()(turn(reply))
    assert score.reason == "conflicting_events"
    assert score.score == 0.5
    assert score.details["overlapping"] == [["0", "1"]]
    back_to_back = NoConflicts()(turn(calendar((0, "10:00", 60), (1, "11:00", 30))))
    assert back_to_back.score == 1.0


def test_events_present_counts_missing_and_wrong_durations() -> None:
    missing = EventsPresent()(turn(calendar((0, "10:00", 60))))
    assert (missing.score, missing.reason) == (0.5, "missing_events")
    assert missing.details["missing"] == [1]
    wrong = EventsPresent()(turn(calendar((0, "10:00", 45), (1, "11:00", 30))))
    assert (wrong.score, wrong.reason) == (0.5, "wrong_duration")


def test_constraints_honoured_uses_the_latest_constraint_and_the_window() -> None:
    late = ConstraintsHonoured()(turn(calendar((0, "13:00", 60), (1, "10:00", 30))))
    assert (late.score, late.reason) == (0.5, "constraint_violated")
    assert "before 1pm" in late.details["violations"]["0"]
    moved = [*ASK, "Actually, move (event id: 0) so it is after 2pm."]
    assert (
        ConstraintsHonoured()(turn(calendar((0, "14:00", 60), (1, "10:00", 30)), moved)).score
        == 1.0
    )
    outside = ConstraintsHonoured()(turn(calendar((0, "10:00", 60), (1, "15:45", 30))))
    assert outside.score == 0.5 and "window" in outside.details["violations"]["1"]
    wider = ConstraintsHonoured(window=(9 * 60, 17 * 60))
    assert wider(turn(calendar((0, "10:00", 60), (1, "15:45", 30)))).score == 1.0


def final(reply: str | None, scenario: object | None = None) -> FinalContext:
    messages = [Message(role="user", content=text) for text in ASK]
    if reply is not None:
        messages.append(Message(role="assistant", content=reply))
    return FinalContext(
        Transcript(messages=tuple(messages)), TerminationReason.USER_STOP, 1, (), scenario
    )


def test_final_verifier_grades_against_the_scenario_or_the_transcript() -> None:
    scenario = Scenario(
        id="s",
        goal=CalendarGoal(
            steps=(
                GoalStep(action="add", event_id=0, name="Design review", duration=60),
                GoalStep(action="constrain", event_id=0, constraint="before 1pm"),
                GoalStep(action="add", event_id=1, name="Lunch", duration=30),
            )
        ),
    )
    verdict = CalendarFinalVerifier()(final(GOOD, scenario))
    assert (verdict.reward, verdict.reason) == (1.0, "pass")
    assert verdict.details["expected_from"] == "scenario"
    from_transcript = CalendarFinalVerifier()(final(calendar((0, "13:00", 60), (1, "10:00", 30))))
    assert (from_transcript.reward, from_transcript.reason) == (0.0, "constraint_violated")
    assert from_transcript.details["expected_from"] == "transcript"
    explicit = CalendarFinalVerifier({})(final(calendar((0, "13:00", 60))))
    assert explicit.reward == 1.0  # an empty expected state passes outright, as in NeMo-Gym


def test_final_verifier_without_any_reply() -> None:
    verdict = CalendarFinalVerifier()(final(None))
    assert (verdict.reward, verdict.reason) == (0.0, "no_final_reply")


def test_calendar_verifiers_take_the_window_from_the_goal() -> None:
    goal = CalendarGoal(
        steps=(GoalStep(action="add", event_id=0, name="Early", duration=30),),
        min_time="08:00",
        max_time="18:00",
    )
    turns, finals = calendar_verifiers(Scenario(id="w", goal=goal))
    names = [getattr(v, "name", "") for v in (*turns, *finals)]
    assert names == [
        "valid_calendar",
        "no_conflicts",
        "events_present",
        "constraints_honoured",
        "calendar_final",
    ]
    ctx = turn(calendar((0, "08:30", 30)), ['Add "Early" for 30 minutes (event id: 0)'])
    score = turns[3](ctx)
    assert isinstance(score, TurnScore) and score.score == 1.0
    assert ConstraintsHonoured()(ctx).score == 0.0  # outside the default 10:00-16:00


async def test_verifiers_score_a_whole_dialogue_with_any_reward() -> None:
    turns, finals = calendar_verifiers(None)
    with anyio.fail_after(10):
        wrong_once = ScriptedAssistant(
            [calendar((0, "13:00", 60)), GOOD.replace("E0", "Design review")]
        )
        result = await run_dialogue(
            wrong_once,
            ScriptedUser([ASK[0] + " " + ASK[1].split("? ")[0], ASK[2]]),
            turn_verifiers=turns,
            final_verifiers=finals,
            reward=all_of(),
        )
    assert result.reward == 0.0  # the first turn broke "before 1pm"
    first = {s.verifier: s.score for s in result.turn_scores if s.turn == 1}
    assert first["constraints_honoured"] == 0.0 and first["valid_calendar"] == 1.0
    assert [v.reason for v in result.verdicts] == ["pass"]
    partial = cumulative()(result.turn_scores, result.verdicts)
    assert partial is not None and 0.0 < partial < 1.0


async def test_turn_verifiers_follow_a_nemo_prefix() -> None:
    (s, *_) = bundled_scenarios("nemo_calendar_example")
    turns, finals = calendar_verifiers(s)
    with anyio.fail_after(10):
        result = await run_dialogue(
            CalendarSolverAssistant(),
            ScriptedUser(()),
            prefix=s.opening_transcript(),
            scenario=s,
            max_turns=1,
            turn_verifiers=turns,
            final_verifiers=finals,
        )
    assert [t.score for t in result.turn_scores] == [1.0] * 4
    assert result.reward == 1.0


# The cached extraction has a fast path for replies holding one list; it
# must agree with the grader's own extraction on every text.
_PIECES = st.sampled_from(
    ["[", "]", "{", "}", '"', ",", " ", "x", "\n", '{"event_id": 0, "event_name": "A", '
     '"start_time": "10:00", "duration": 30}', "Here:", "[]", "]}", "{[", ": 1"]
)  # fmt: skip


@given(st.lists(_PIECES, max_size=12).map("".join))
def test_cached_extraction_agrees_with_the_grader(text: str) -> None:
    expected = parse_listed_events(text)
    got = shown_calendar(text)
    assert got == (None if expected is None else tuple(expected))


def test_fast_path_covers_solver_replies() -> None:
    reply = CalendarSolverAssistant().reply([Message(role="user", content=ASK[0])])
    span = json_list_span(reply)
    assert span is not None
    listed: Any = shown_calendar(reply)
    assert listed == tuple(parse_listed_events(reply) or ())


def test_final_verifier_grades_the_final_reply_never_an_earlier_one() -> None:
    messages = [Message(role="user", content=text) for text in ASK]
    messages += [Message(role="assistant", content=GOOD), Message(role="assistant", content=" ")]
    ctx = FinalContext(Transcript(messages=tuple(messages)), TerminationReason.MAX_TURNS, 2, ())
    verdict = CalendarFinalVerifier()(ctx)
    assert (verdict.reward, verdict.reason) == (0.0, "no_final_reply")
    failed = FinalContext(
        Transcript(messages=tuple(messages[:-1])), TerminationReason.ASSISTANT_ERROR, 2, ()
    )
    assert CalendarFinalVerifier()(failed).reason == "no_final_reply"
