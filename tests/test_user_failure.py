"""User-failure attribution: the calendar's rule-based review, and `run` records that carry it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from convo_sim import DEFAULT_STOP_TOKEN, Message
from convo_sim._sink import read_rollouts
from convo_sim._user_failure import UserFailureTag, is_simulator_failure, user_failure_of
from convo_sim.agents import CalendarSolverAssistant
from convo_sim.cli import main
from convo_sim.domains.calendar._review import review_user
from convo_sim.scenarios import CalendarGoal, GoalStep, Scenario

GOAL = CalendarGoal(
    steps=(
        GoalStep(action="add", event_id=0, name="Team sync", duration=30),
        GoalStep(action="constrain", event_id=0, constraint="after 2pm"),
        GoalStep(action="add", event_id=1, name="Lunch", duration=60),
    )
)
SYNC = 'I need a 30-minute slot for "Team sync" (event id: 0), please. It should be after 2pm.'
LUNCH = 'I need a 60-minute slot for "Lunch" (event id: 1), please.'
STOP = f"Thanks, that's all. {DEFAULT_STOP_TOKEN}"


def scenario(persona: str | None = None) -> Scenario:
    return Scenario(id="review", goal=GOAL, persona=persona, seed=1)


def dialogue(*user_texts: str, wrong: bool = False) -> list[Message]:
    """The user's messages, each answered by the solver (or by an empty calendar)."""
    solver = CalendarSolverAssistant()
    messages: list[Message] = []
    for text in user_texts:
        messages.append(Message(role="user", content=text))
        if DEFAULT_STOP_TOKEN in text:
            break
        reply = "Done!\n\n[]" if wrong else solver.reply(messages)
        messages.append(Message(role="assistant", content=reply))
    return messages


def kinds(failure: object) -> list[tuple[str, str]]:
    assert failure is not False, failure
    return [(t.kind, t.severity) for t in failure]  # type: ignore[attr-defined]


def test_a_user_that_plays_its_part_has_no_failure() -> None:
    messages = dialogue(SYNC, LUNCH, STOP)
    assert review_user(messages, scenario(), termination="user_stop", goal_met=True) is False


def test_leaving_early_after_right_turns_is_the_simulators_failure() -> None:
    failure = review_user(dialogue(SYNC, STOP), scenario(), termination="user_stop", goal_met=False)
    assert kinds(failure) == [("premature_termination", "critical")]
    assert failure and failure[0].turn == 2 and "event 1" in failure[0].detail
    assert is_simulator_failure(failure)


def test_leaving_after_the_assistants_mistakes_is_the_users_right() -> None:
    messages = dialogue(SYNC, SYNC, STOP, wrong=True)
    assert review_user(messages, scenario(), termination="user_stop", goal_met=False) is False


def test_withholding_until_the_turns_run_out_is_a_failure() -> None:
    messages = dialogue(SYNC, "Okay.", "Hmm, okay.")
    failure = review_user(messages, scenario(), termination="max_turns", goal_met=False)
    assert ("withheld_info", "critical") in kinds(failure)


def test_asking_for_what_the_goal_does_not_hold() -> None:
    ghost = 'I need a 45-minute slot for "Gym" (event id: 7), please.'
    failure = review_user(
        dialogue(SYNC, LUNCH, ghost, STOP), scenario(), termination="user_stop", goal_met=True
    )
    assert kinds(failure) == [("hallucination", "major")]
    unmet = review_user(
        dialogue(SYNC, LUNCH, ghost, STOP), scenario(), termination="user_stop", goal_met=False
    )
    assert ("hallucination", "critical") in kinds(unmet)


def test_contradicting_the_goal() -> None:
    wrong_length = 'I need a 90-minute slot for "Lunch" (event id: 1), please.'
    failure = review_user(
        dialogue(SYNC, wrong_length, STOP), scenario(), termination="user_stop", goal_met=False
    )
    assert ("contradicted_goal", "critical") in kinds(failure)
    assert any("90 minutes" in t.detail for t in failure or ())


def test_stopping_twice_is_inconsistent() -> None:
    messages = [*dialogue(SYNC, LUNCH), Message(role="user", content=STOP)]
    messages += [Message(role="assistant", content="Bye"), Message(role="user", content=STOP)]
    failure = review_user(messages, scenario(), termination="user_stop", goal_met=True)
    assert kinds(failure) == [("inconsistent_behavior", "minor")]
    assert not is_simulator_failure(failure)


def test_tags_are_validated_and_ordered_most_severe_first() -> None:
    minor = UserFailureTag(kind="revealed_info_early", severity="minor")
    critical = UserFailureTag(kind="premature_termination", severity="critical", turn=3)
    assert user_failure_of([minor, critical]) == (critical, minor)
    assert user_failure_of([]) is False
    assert not is_simulator_failure(False) and not is_simulator_failure(None)
    with pytest.raises(ValidationError):
        UserFailureTag(kind="rudeness", severity="minor")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        UserFailureTag(kind="hallucination", severity="fatal")  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["user", "assistant"]), st.text(max_size=80)), max_size=8)
)
def test_the_review_never_crashes_on_any_dialogue(items: list[tuple[str, str]]) -> None:
    messages = [Message(role=role, content=text) for role, text in items]  # type: ignore[arg-type]
    for termination in ("user_stop", "max_turns", "error"):
        failure = review_user(messages, scenario("withholding"), termination=termination)
        assert failure is False or all(isinstance(t, UserFailureTag) for t in failure)


def test_convo_sim_run_records_carry_persona_fidelity_and_user_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The report: `run` wrote empty metadata although most bundled
    # scenarios name a persona.
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--out", "out.jsonl"]) == 0
    records = read_rollouts(tmp_path / "out.jsonl")
    raw = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(records) == len(raw) == 10
    personas = {r.scenario_id: r.metadata.get("persona") for r in records}
    assert sum(p is not None for p in personas.values()) == 7
    assert personas["hiring-loop"] == "terse" and personas["two-events"] is None
    assert all(r.user_failure is False and "fidelity" in r.metadata for r in records)
    assert all(row["user_failure"] is False for row in raw)
    # A record written before the field existed reads as never reviewed.
    old = {k: v for k, v in raw[0].items() if k != "user_failure"}
    (tmp_path / "old.jsonl").write_text(json.dumps(old) + "\n", encoding="utf-8")
    assert read_rollouts(tmp_path / "old.jsonl")[0].user_failure is None
