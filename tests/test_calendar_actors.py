"""The calendar domain's rule-based actors: CalendarSolverAssistant and CalendarUser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from convo_sim import DEFAULT_STOP_TOKEN, Message, TerminationReason, Transcript, View
from convo_sim.agents import CalendarSolverAssistant, FunctionAssistant
from convo_sim.domains.calendar._grading import grade_calendar_response
from convo_sim.domains.calendar._intents import parse_request, requested_state, shown_calendar
from convo_sim.scenarios import (
    CalendarGoal,
    GoalStep,
    Scenario,
    bundled_scenarios,
    generate_calendar_scenarios,
    nemo_replay_scenario,
    nemo_scenario,
    run_scenario,
)
from convo_sim.users import CalendarUser, ScriptedUser

NEMO = (
    Path(__file__).resolve().parents[1]
    / "convo_sim"
    / "domains"
    / "calendar"
    / "data"
    / "nemo_calendar_example.jsonl"
)


def nemo_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in NEMO.read_text(encoding="utf-8").splitlines()]


def last_reply(transcript: Transcript) -> str:
    return transcript.by_role("assistant")[-1].text


def scenario(*steps: GoalStep, seed: int = 0) -> Scenario:
    return Scenario(id="t", goal=CalendarGoal(steps=steps), seed=seed, max_turns=20)


def add(i: int, name: str, duration: int) -> GoalStep:
    return GoalStep(action="add", event_id=i, name=name, duration=duration)


def constrain(i: int, text: str) -> GoalStep:
    return GoalStep(action="constrain", event_id=i, constraint=text)


# ---------------------------------------------------------------- end to end


@pytest.mark.timeout(30)
async def test_solver_and_user_reach_full_reward_on_every_bundled_scenario() -> None:
    scenarios = bundled_scenarios()
    assert len(scenarios) >= 10
    for s in scenarios:
        result = await run_scenario(s)
        assert result.termination == TerminationReason.USER_STOP, s.id
        assert result.reward == 1.0, (s.id, result.verdicts)
        assert all(score.score == 1.0 for score in result.turn_scores), s.id
        # The user revealed its whole goal before it stopped.
        assert requested_state(result.transcript.messages).expected_state() == s.expected()


@pytest.mark.timeout(120)
async def test_solver_and_user_reach_full_reward_on_1000_generated_scenarios() -> None:
    scenarios = generate_calendar_scenarios(1000, seed=2024)
    rewards: dict[str, float | None] = {}
    endings: set[TerminationReason] = set()

    async def one(s: Scenario) -> None:
        result = await run_scenario(s)
        rewards[s.id] = result.reward
        endings.add(result.termination)

    with anyio.fail_after(100):
        async with anyio.create_task_group() as tg:
            for s in scenarios:
                tg.start_soon(one, s)
    assert len(rewards) == 1000
    failed = [key for key, value in rewards.items() if value != 1.0]
    assert not failed, failed[:5]
    assert endings == {TerminationReason.USER_STOP}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("index", range(5))
async def test_nemo_record_replayed_by_a_scripted_user_passes_the_grader(index: int) -> None:
    row = nemo_rows()[index]
    s = nemo_replay_scenario(row)
    assert [m.role for m in s.prefix] == ["system"]
    result = await run_scenario(s, user=ScriptedUser(s.user_script))
    assert result.termination == TerminationReason.USER_STOP
    assert result.turns == len(s.user_script)
    grade = grade_calendar_response(last_reply(result.transcript), row["exp_cal_state"])
    assert grade.passed, grade.detail
    assert result.reward == 1.0


@pytest.mark.timeout(30)
@pytest.mark.parametrize("index", range(5))
async def test_solver_continues_a_nemo_prefix_and_passes(index: int) -> None:
    row = nemo_rows()[index]
    result = await run_scenario(nemo_scenario(row))
    assert result.turns == 1
    assert result.transcript.messages[:-1] == nemo_scenario(row).prefix
    grade = grade_calendar_response(last_reply(result.transcript), row["exp_cal_state"])
    assert grade.passed, grade.detail


def test_nemo_user_phrasings_are_understood_exactly() -> None:
    for row in nemo_rows():
        transcript = Transcript.from_responses_input(row["responses_create_params"]["input"])
        assert requested_state(transcript.messages).expected_state() == row["exp_cal_state"]


# ---------------------------------------------------------------- the request parser


@pytest.mark.parametrize(
    ("text", "duration", "constraint"),
    [
        (
            "Could you slot X (event id: 0) somewhere between 10:00\u202fam and 11:45\u202fam?",
            None,
            "between 10am and 11:45am",
        ),
        ("Please move event id 2 so it wraps up by 1:45\u202fpm", None, "before 1:45pm"),
        ("Can we make sure (event id: 3) starts at 10am or later?", None, "after 10am"),
        ("(event id: 3) should start at or after 2 p.m.", None, "after 2pm"),
        ("Set the sync (event id: 5) for 12:15 pm", None, "at 12:15pm"),
        ("Put it at noon (event id: 1)", None, "at 12pm"),
        ("Keep (event id: 4) from 13:00 to 15:30", None, "between 1pm and 3:30pm"),
        ("(event id: 6) no later than 3pm please", None, "before 3pm"),
        ("(event id: 6) not before 11:30am please", None, "after 11:30am"),
        ('Add "Retro" for half an hour (event id: 7)', 30, None),
        ('Add "Retro" for an hour and a half (event id: 7)', 90, None),
        ("Add a 90\u2011minute Retro (event id: 7)", 90, None),
        ("Add Retro for an hour (event id: 7) before 1pm", 60, "before 1pm"),
        ("Add Retro for 1.5 hours (event id: 7)", 90, None),
        ("Add Retro, 1 hour 15 minutes (event id: 7)", 75, None),
    ],
)
def test_request_parser_reads_many_phrasings(
    text: str, duration: int | None, constraint: str | None
) -> None:
    request = parse_request(text)
    assert request is not None
    assert (request.duration, request.constraint) == (duration, constraint)


@pytest.mark.parametrize(
    "text",
    [
        "Thanks! I'm glad we'll have it wrapped up by 1:45\u202fpm.",  # small talk, no event id
        "Hello there",
        "(event id: 2) sounds great, thanks",  # an id but no request
        "Could you set (event id: 1) for 13pm?",  # not a time
    ],
)
def test_request_parser_ignores_small_talk(text: str) -> None:
    assert parse_request(text) is None


def test_titles_are_read_from_quotes_and_verbs() -> None:
    quoted = parse_request(
        'Could you add a 45-minute "1:1 Review at 3pm" to my calendar? (event id: 0)'
    )
    assert quoted is not None
    assert (quoted.name, quoted.duration, quoted.constraint) == ("1:1 Review at 3pm", 45, None)
    bare = parse_request("Please add Budget review (event id: 2) to my calendar for 30 minutes.")
    assert bare is not None and bare.name == "Budget review"


# ---------------------------------------------------------------- the solver


def solver_reply(*user: str) -> str:
    messages = [Message(role="system", content="calendar")]
    solver = CalendarSolverAssistant()
    for text in user:
        messages.append(Message(role="user", content=text))
        messages.append(Message(role="assistant", content=solver.reply(messages)))
    return messages[-1].text


def test_solver_prints_the_calendar_even_when_it_understands_nothing() -> None:
    reply = solver_reply("Hi! How are you?")
    assert reply.rstrip().endswith("[]")
    reply = solver_reply('Add "Retro" for 30 minutes (event id: 0)', "What a lovely day.")
    listed = shown_calendar(reply)
    assert listed is not None and [e.event_id for e in listed] == ["0"]


def test_solver_lists_events_sorted_by_id_with_the_json_fields() -> None:
    reply = solver_reply(
        'Add "B" for 30 minutes (event id: 1)',
        'Add "A" for 60 minutes (event id: 0)',
        "(event id: 1) at 10am",
    )
    items = json.loads(reply[reply.index("[") :])
    assert [item["event_id"] for item in items] == [0, 1]
    assert set(items[0]) == {"event_id", "event_name", "start_time", "duration"}
    assert items[1]["start_time"] == "10:00"
    assert items[0]["start_time"] == "10:30"


def test_solver_refuses_an_impossible_request_and_keeps_the_calendar_valid() -> None:
    reply = solver_reply(
        'Add "A" for 60 minutes (event id: 0)',
        "(event id: 0) at 10am",
        'Add "B" for 60 minutes (event id: 1)',
        "(event id: 1) at 10:30am",  # overlaps A, which is fixed at 10am
    )
    assert "cannot" in reply.split("[")[0]
    starts = {e.event_id: e.start_time for e in shown_calendar(reply) or ()}
    assert starts == {"0": 600, "1": 660}


def test_solver_keeps_events_where_the_shown_calendar_put_them() -> None:
    # Someone else's assistant placed event 0 at 11:00; adding event 1 keeps it there.
    messages = [
        Message(role="user", content='Add "A" for 60 minutes (event id: 0)'),
        Message(
            role="assistant",
            content='[{"event_id": 0, "event_name": "A", "start_time": "11:00", "duration": 60}]',
        ),
        Message(role="user", content='Add "B" for 60 minutes (event id: 1)'),
    ]
    listed = shown_calendar(CalendarSolverAssistant().reply(messages))
    assert listed is not None
    assert {e.event_id: e.start_time for e in listed} == {"0": 660, "1": 600}


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        # NeMo-style: two event ids in one sentence, then two moves in one.
        (
            (
                'Please add "Budget review" (event id: 0) for an hour and a 30\u2011minute '
                '"Vendor call" (event id: 1).',
                "Could you move (event id: 0) to after 2pm and make sure (event id: 1) "
                "wraps up by 11am?",
            ),
            {"0": (60, "after 2pm"), "1": (30, "before 11am")},
        ),
        (
            (
                "Add Lunch (event id: 0) for 60 minutes before 1pm, then add a 45 minute "
                '"Call" (event id: 1) from 1pm to 2:30pm.',
            ),
            {"0": (60, "before 1pm"), "1": (45, "between 1pm and 2:30pm")},
        ),
        # An upfront user: every request on a line of its own.
        (
            (
                'I need a 60-minute slot for "Sprint planning" (event id: 0), please.\n'
                "Could you slot the Sprint planning (event id: 0) between 10am and 11:45 am?\n"
                'Please put "Design review" on my calendar (event id: 1): it takes 45 minutes '
                "and should be ending by 1:00 pm.\n"
                'Could you add "Team lunch" (event id: 2) for an hour, at exactly 12:30pm?',
            ),
            {
                "0": (60, "between 10am and 11:45am"),
                "1": (45, "before 1pm"),
                "2": (60, "at 12:30pm"),
            },
        ),
    ],
)
def test_solver_applies_every_request_of_a_message(
    messages: tuple[str, ...], expected: dict[str, tuple[int, str]]
) -> None:
    reply = solver_reply(*messages)
    state = {
        key: {
            "event_id": int(key),
            "duration": duration,
            "constraint": constraint,
            "min_time": "10:00",
            "max_time": "16:00",
        }
        for key, (duration, constraint) in expected.items()
    }
    grade = grade_calendar_response(reply, state)
    assert grade.passed, (grade.detail, reply)
    # The reply says what became of each event the last message named.
    note = reply.split("[")[0]
    for key in expected:
        assert f"(event {key}" in note, note


def test_solver_refuses_only_the_impossible_request_of_a_message() -> None:
    reply = solver_reply(
        'Add "A" for 60 minutes (event id: 0) and "B" for 60 minutes (event id: 1).',
        "Put (event id: 0) at 10am and (event id: 1) at 10:30am.",
    )
    note = reply.split("[")[0]
    assert "Scheduled 'A' (event 0) at 10am." in note and "cannot" in note
    starts = {e.event_id: e.start_time for e in shown_calendar(reply) or ()}
    assert starts == {"0": 600, "1": 660}


async def test_solver_state_comes_from_the_transcript_not_its_memory() -> None:
    solver = CalendarSolverAssistant()
    first = Transcript(
        messages=(Message(role="user", content='Add "A" for 60 minutes (event id: 0)'),)
    )
    second = Transcript(
        messages=(Message(role="user", content='Add "B" for 30 minutes (event id: 5)'),)
    )
    with anyio.fail_after(5):
        for transcript, expected in ((first, ["0"]), (second, ["5"]), (first, ["0"])):
            reply = await solver.respond(View("assistant", transcript, 1))
            listed = shown_calendar(reply.text)
            assert listed is not None and [e.event_id for e in listed] == expected


# ---------------------------------------------------------------- the user


GOAL = (
    add(0, "Design review", 60),
    constrain(0, "before 1pm"),
    add(1, "Team lunch", 45),
    constrain(1, "between 12pm and 2pm"),
    constrain(0, "after 2:30pm"),
)


def test_user_phrasing_is_identical_for_a_seed_and_varies_across_seeds() -> None:
    s = scenario(*GOAL)
    same = [CalendarUser(s, seed=7).messages for _ in range(2)]
    assert same[0] == same[1]
    wordings = {tuple(CalendarUser(s, seed=seed).messages) for seed in range(12)}
    assert len(wordings) >= 10


def test_every_user_message_reads_back_as_the_goal_it_reveals() -> None:
    for s in generate_calendar_scenarios(150, seed=5):
        assert s.goal is not None
        for seed in (0, 1):
            user = CalendarUser(s, seed=seed)
            state_messages: list[Message] = []
            revealed = 0
            for text, steps in user.messages:
                state_messages.append(Message(role="user", content=text))
                revealed += steps
                got = requested_state(state_messages)
                assert got.expected_state() == s.goal.expected_state(revealed), text
            names = {e.event_id: e.name for e in requested_state(state_messages).events.values()}
            wanted = {step.event_id: step.name for step in s.goal.steps if step.action == "add"}
            assert names == wanted


@pytest.mark.timeout(10)
async def test_same_seed_gives_the_same_dialogue() -> None:
    s = scenario(*GOAL, seed=3)
    first, second = (await run_scenario(s), await run_scenario(s))
    assert first.transcript == second.transcript
    other = await run_scenario(s, seed=4)
    assert other.transcript != first.transcript
    assert other.reward == first.reward == 1.0


def wrong_calendar(view: View) -> str:
    # Always shows event 0 at 15:00, which breaks "before 1pm".
    return '[{"event_id": 0, "event_name": "Design review", "start_time": "15:00", "duration": 60}]'


@pytest.mark.timeout(10)
async def test_user_points_out_a_wrong_calendar_then_gives_up() -> None:
    s = scenario(add(0, "Design review", 60), constrain(0, "before 1pm"))
    result = await run_scenario(s, assistant=FunctionAssistant(wrong_calendar))
    users = [m.text for m in result.transcript.by_role("user")]
    # add, constrain, two corrections, give up.
    assert len(users) == 5
    corrections, give_up = users[2:4], users[4]
    for text in corrections:
        assert "(event id: 0)" in text and DEFAULT_STOP_TOKEN not in text
        request = parse_request(text)
        assert request is not None and request.constraint == "before 1pm"
    assert give_up.endswith(DEFAULT_STOP_TOKEN)
    assert result.termination == TerminationReason.USER_STOP
    assert result.reward == 0.0
    assert result.verdicts[0].reason == "constraint_violated"


@pytest.mark.parametrize("max_corrections", [0, 1, 3])
async def test_max_corrections_bounds_the_complaints(max_corrections: int) -> None:
    s = scenario(add(0, "Design review", 60), constrain(0, "before 1pm"))
    with anyio.fail_after(10):
        result = await run_scenario(
            s,
            assistant=FunctionAssistant(wrong_calendar),
            user=CalendarUser(s, max_corrections=max_corrections),
        )
    users = result.transcript.by_role("user")
    assert len(users) == 2 + max_corrections + 1
    assert users[-1].text.endswith(DEFAULT_STOP_TOKEN)


@pytest.mark.timeout(10)
async def test_user_accepts_a_fixed_calendar_after_one_correction() -> None:
    s = scenario(add(0, "Design review", 60), add(1, "Team lunch", 30))
    solver = CalendarSolverAssistant()
    calls = 0

    def forgetful(view: View) -> str:
        nonlocal calls
        calls += 1
        if calls == 2:  # leaves out event 1 once
            return '[{"event_id": 0, "event_name": "Design review", "start_time": "10:00", "duration": 60}]'
        return solver.reply(view.transcript.messages)

    result = await run_scenario(s, assistant=FunctionAssistant(forgetful))
    users = [m.text for m in result.transcript.by_role("user")]
    assert "left out" in users[2] and "(event id: 1)" in users[2]
    assert result.reward == 1.0
    assert result.termination == TerminationReason.USER_STOP


@pytest.mark.timeout(10)
async def test_a_reply_that_is_not_a_calendar_scores_zero_with_a_reason() -> None:
    s = scenario(*GOAL)
    result = await run_scenario(s, assistant=FunctionAssistant(lambda view: "Sure, done!"))
    assert result.error is None
    assert result.reward == 0.0
    assert result.verdicts[0].reason == "no_json_list"
    valid = [t for t in result.turn_scores if t.verifier == "valid_calendar"]
    assert valid and all(t.score == 0.0 and t.reason == "no_json_list" for t in valid)
    assert "can't see the calendar" in result.transcript.by_role("user")[1].text.lower() or (
        "show me" in result.transcript.by_role("user")[1].text
    )


@pytest.mark.timeout(10)
async def test_user_reads_an_empty_list_as_an_empty_calendar() -> None:
    # "[]" is a calendar with nothing in it: the user says what is missing,
    # rather than asking to see a calendar.
    s = scenario(add(0, "Design review", 60), constrain(0, "before 1pm"))
    empty = FunctionAssistant(lambda view: "Here is your calendar.\n\n[]")
    result = await run_scenario(s, assistant=empty, max_turns=2)
    correction = result.transcript.by_role("user")[1].text
    assert "left out" in correction and "(event id: 0)" in correction
    request = parse_request(correction)
    assert request is not None and (request.event_id, request.duration) == (0, 60)
    valid = [t for t in result.turn_scores if t.verifier == "valid_calendar"]
    present = [t for t in result.turn_scores if t.verifier == "events_present"]
    assert [(t.score, t.reason) for t in valid] == [(1.0, "pass")] * 2
    assert [(t.score, t.reason) for t in present] == [(0.0, "missing_events")] * 2
    # The grader keeps NeMo-Gym's reading: no list of objects at all.
    assert result.verdicts[0].reason == "no_json_list"


def test_calendar_user_needs_a_goal() -> None:
    with pytest.raises(ValueError, match="no calendar goal"):
        CalendarUser(Scenario(id="x"))
    with pytest.raises(ValueError, match="max_corrections"):
        CalendarUser(scenario(*GOAL), max_corrections=-1)
