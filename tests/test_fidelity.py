"""User-fidelity metrics on hand-built dialogues whose true values are known."""

from __future__ import annotations

import pytest

from convo_sim import Message
from convo_sim.domains.calendar._fidelity import message_requests
from convo_sim.scenarios import CalendarGoal, GoalStep
from convo_sim.users import Persona, get_persona, user_fidelity

STOP = "###STOP###"

GOAL = CalendarGoal(
    steps=(
        GoalStep(action="add", event_id=0, name="Lunch", duration=60),
        GoalStep(action="constrain", event_id=0, constraint="before 1pm"),
        GoalStep(action="add", event_id=1, name="Gym", duration=30),
    )
)
ADD_LUNCH = "Please add Lunch (event id: 0), 60 minutes."
LUNCH_BEFORE_1 = "Event id 0 has to end before 1pm."
ADD_GYM = "Add Gym (event id: 1) for 30 minutes."


def dialogue(*user: str, asks: bool = False) -> list[Message]:
    """User messages, each answered by the assistant (with a question if `asks`)."""
    out = [Message(role="system", content="You keep a calendar.")]
    for text in user:
        out.append(Message(role="user", content=text))
        if STOP not in text:
            out.append(
                Message(role="assistant", content="Done. Anything else?" if asks else "Done.")
            )
    return out


def test_a_faithful_progressive_user_scores_full_marks() -> None:
    fid = user_fidelity(
        dialogue(ADD_LUNCH, LUNCH_BEFORE_1, ADD_GYM, STOP), expected=GOAL, persona="cooperative"
    )
    assert (fid.goal_items, fid.communicated, fid.goal_coverage) == (3, 3, 1.0)
    assert fid.missing == ()
    assert fid.stopped and fid.goal_met and not fid.premature_stop
    assert fid.stop_discipline == "ok" and fid.stop_ok and fid.stop_count == 1
    assert (fid.pacing_violations, fid.leakage) == (0, 0.0)
    assert (fid.user_messages, fid.request_messages, fid.chatter, fid.turns) == (4, 3, 0, 3)


def test_stopping_after_the_first_request_is_premature_and_names_what_is_missing() -> None:
    fid = user_fidelity(dialogue(ADD_LUNCH, STOP), expected=GOAL)
    assert fid.communicated == 1
    assert fid.goal_coverage == pytest.approx(1 / 3)
    assert fid.missing == ("event 0 constraint", "event 1")
    assert fid.premature_stop and not fid.goal_met
    # Without a persona, pacing is not measured.
    assert fid.pacing_violations is None and fid.leakage is None


def test_goal_met_given_by_the_caller_overrides_coverage() -> None:
    messages = dialogue(ADD_LUNCH, LUNCH_BEFORE_1, ADD_GYM, STOP)
    assert user_fidelity(messages, expected=GOAL, goal_met=False).premature_stop
    assert not user_fidelity(messages[:-1], expected=GOAL, goal_met=False).premature_stop


def test_a_wrong_duration_or_a_wrong_last_constraint_is_not_communicated() -> None:
    fid = user_fidelity(
        dialogue("Please add Lunch (event id: 0), 45 minutes.", ADD_GYM, STOP), expected=GOAL
    )
    assert fid.missing == ("event 0", "event 0 constraint")
    # Changing its mind and reverting covers the constraint; the reverse does not.
    reverted = dialogue(ADD_LUNCH, "Event id 0 should start after 2pm.", LUNCH_BEFORE_1, ADD_GYM)
    kept = dialogue(ADD_LUNCH, LUNCH_BEFORE_1, "Event id 0 should start after 2pm.", ADD_GYM)
    assert user_fidelity(reverted, expected=GOAL).goal_coverage == 1.0
    assert user_fidelity(kept, expected=GOAL).missing == ("event 0 constraint",)


def test_nemo_expected_state_and_equivalent_time_wording() -> None:
    expected = {
        "3": {
            "event_id": 3,
            "duration": 90,
            "constraint": "between 10am and 11:45am",
            "min_time": "10:00",
            "max_time": "16:00",
        }
    }
    said = "Could you put in a planning session (event id: 3), about 90 minutes, between 10:00 am and 11:45 am?"
    fid = user_fidelity([Message(role="user", content=said)], expected=expected)
    assert (fid.goal_items, fid.communicated) == (2, 2)
    assert fid.stop_discipline == "missing" and not fid.stopped and not fid.premature_stop


def test_when_asked_user_that_volunteers_leaks() -> None:
    withholding = get_persona("withholding")
    assert withholding.disclosure == "when_asked"
    # First request is volunteered (nobody asked yet); the later ones answer questions.
    fid = user_fidelity(
        dialogue(ADD_LUNCH, LUNCH_BEFORE_1, ADD_GYM, STOP, asks=True),
        expected=GOAL,
        persona=withholding,
    )
    assert fid.pacing_violations == 1
    assert fid.leakage == pytest.approx(1 / 3)
    # Greeting first, then everything only when asked: no leak.
    polite = dialogue("Hi, I need help with my calendar.", ADD_LUNCH, LUNCH_BEFORE_1, asks=True)
    fid = user_fidelity(polite, expected=GOAL, persona=withholding)
    assert (fid.pacing_violations, fid.chatter) == (0, 1)
    # Not asked (the assistant makes no question): every request is volunteered.
    fid = user_fidelity(dialogue(ADD_LUNCH, ADD_GYM), expected=GOAL, persona=withholding)
    assert fid.pacing_violations == 2 and fid.leakage == 1.0


def test_progressive_user_naming_two_events_at_once_leaks() -> None:
    both = f"{ADD_LUNCH}\n{ADD_GYM}"
    fid = user_fidelity(dialogue(both, LUNCH_BEFORE_1, STOP), expected=GOAL, persona="cooperative")
    assert fid.goal_coverage == 1.0
    assert fid.pacing_violations == 1 and fid.leakage == pytest.approx(1 / 2)


def test_all_at_once_user_must_say_everything_in_its_first_request() -> None:
    upfront = get_persona("upfront")
    everything = f"{ADD_LUNCH} It has to end before 1pm.\n{ADD_GYM}"
    fid = user_fidelity(dialogue(everything, STOP), expected=GOAL, persona=upfront)
    assert fid.goal_coverage == 1.0 and fid.pacing_violations == 0
    # Holding the second event back for a later message breaks the pacing.
    fid = user_fidelity(dialogue(ADD_LUNCH, ADD_GYM, STOP), expected=GOAL, persona=upfront)
    assert fid.pacing_violations == 1
    # A correction of an event already named is not a late disclosure.
    fid = user_fidelity(
        dialogue(f"{ADD_LUNCH}\n{ADD_GYM}", LUNCH_BEFORE_1), expected=GOAL, persona=upfront
    )
    assert fid.pacing_violations == 0


@pytest.mark.parametrize(
    ("users", "discipline", "count"),
    [
        ((ADD_LUNCH,), "missing", 0),
        ((ADD_LUNCH, STOP), "ok", 1),
        ((ADD_LUNCH, f"Thanks, that is all. {STOP}"), "ok", 1),
        ((ADD_LUNCH, STOP, STOP), "repeated", 2),
        ((STOP, ADD_LUNCH), "mid_dialogue", 1),
    ],
)
def test_stop_token_discipline(users: tuple[str, ...], discipline: str, count: int) -> None:
    fid = user_fidelity(dialogue(*users), expected=GOAL)
    assert (fid.stop_discipline, fid.stop_count) == (discipline, count)
    assert fid.stop_ok == (discipline == "ok")


def test_chatter_and_custom_stop_token() -> None:
    messages = dialogue("Lovely weather today.", ADD_LUNCH, "<<done>>")[:-1]
    fid = user_fidelity(messages, expected=None, stop_token="<<done>>")
    assert (fid.chatter, fid.request_messages, fid.stop_discipline) == (1, 1, "ok")
    assert fid.goal_items == 0 and fid.goal_coverage == 1.0


def test_message_requests_splits_a_message_that_names_several_events() -> None:
    text = (
        "Add Lunch (event id: 0) for 60 minutes before 1pm.\n"
        'Then "Gym" (event id: 1), 30 minutes, after 2 p.m. please. '
        "Finally event id 2: it's a 45 minute call."
    )
    found = {(r.event_id, r.duration, r.constraint) for r in message_requests(text)}
    assert (0, 60, "before 1pm") in found
    assert (1, 30, "after 2pm") in found
    assert message_requests("Just chatting, nothing to schedule.") == []


def test_message_requests_lives_with_the_parser_and_cuts_at_clause_breaks() -> None:
    from convo_sim.domains.calendar import _intents as intents

    assert message_requests is intents.message_requests
    # "event id 2:" names event 2 (only a clock time after "event" is not an id).
    assert [
        (r.event_id, r.duration) for r in message_requests("Finally event id 2: 45 minutes.")
    ] == [(2, 45)]
    # Two ids in one sentence: each title stays with its own event, and the
    # "and" of a time range is not a clause break.
    text = (
        'Please add "Lunch" (event id: 1), an hour, and "Gym" (event id: 2), 30 minutes, '
        "between 1pm and 2pm."
    )
    assert [(r.event_id, r.name, r.duration, r.constraint) for r in message_requests(text)] == [
        (1, "Lunch", 60, None),
        (2, "Gym", 30, "between 1pm and 2pm"),
    ]
    moves = "Put event 1 between 10am and 11am and event 2 after 3pm"
    assert [(r.event_id, r.constraint) for r in message_requests(moves)] == [
        (1, "between 10am and 11am"),
        (2, "after 3pm"),
    ]


def test_custom_persona_object_is_accepted() -> None:
    persona = Persona(name="mine", disclosure="progressive")
    fid = user_fidelity(dialogue(ADD_LUNCH), expected=GOAL, persona=persona)
    assert fid.pacing_violations == 0


def test_a_correction_that_repeats_a_request_discloses_nothing() -> None:
    messages = [
        Message(role="user", content="Hi, I need help with my calendar."),
        Message(role="assistant", content="Sure, what should I add?"),
        Message(role="user", content=ADD_LUNCH),
        Message(role="assistant", content="Here is your calendar."),
        Message(role="user", content="You left out Lunch (event id: 0). It should be 60 minutes."),
    ]
    fid = user_fidelity(messages, expected=GOAL, persona="withholding")
    assert (fid.request_messages, fid.disclosures, fid.pacing_violations) == (2, 1, 0)
    assert fid.leakage == 0.0
