"""Personas: the model, the bundled set, the LLM prompt, and the rule-based persona user."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest
from pydantic import ValidationError

from convo_sim import (
    DEFAULT_STOP_TOKEN,
    DialogueResult,
    InputError,
    Message,
    ScenarioError,
    TerminationReason,
    View,
    run_dialogue,
)
from convo_sim._models import Completion, ModelSettings
from convo_sim.agents import CalendarSolverAssistant, FunctionAssistant
from convo_sim.domains.calendar._grading import grade_calendar_response
from convo_sim.scenarios import (
    CalendarGoal,
    GoalStep,
    Scenario,
    bundled_scenarios,
    default_user,
    run_scenario,
)
from convo_sim.users import (
    PERSONAS,
    CalendarUser,
    LLMUser,
    Persona,
    PersonaCalendarUser,
    UnknownPersonaError,
    get_persona,
    persona_prompt,
    user_fidelity,
)

GOAL = CalendarGoal(
    steps=(
        GoalStep(action="add", event_id=0, name="Team sync", duration=30),
        GoalStep(action="constrain", event_id=0, constraint="after 2pm"),
        GoalStep(action="add", event_id=1, name="Lunch", duration=60),
        GoalStep(action="constrain", event_id=1, constraint="before 1pm"),
        GoalStep(action="add", event_id=2, name="Code review", duration=45),
        GoalStep(action="constrain", event_id=2, constraint="between 10am and 12pm"),
    )
)


def scenario(persona: str | None = None, seed: int = 7) -> Scenario:
    return Scenario(id="personas", goal=GOAL, persona=persona, seed=seed)


async def talk(
    user: PersonaCalendarUser,
    *,
    asks: bool = False,
    max_turns: int = 20,
    solver: CalendarSolverAssistant | None = None,
) -> DialogueResult:
    solver = solver or CalendarSolverAssistant()

    def reply(view: View) -> str:
        text = solver.reply(view.transcript.messages)
        return f"{text}\nAnything else?" if asks else text

    assistant = FunctionAssistant(reply)
    with anyio.fail_after(5):
        return await run_dialogue(assistant, user, max_turns=max_turns)


def user_texts(result: DialogueResult) -> list[str]:
    return [m.text for m in result.transcript.by_role("user")]


def passed(result: DialogueResult) -> bool:
    replies = result.transcript.by_role("assistant")
    return bool(replies) and grade_calendar_response(replies[-1].text, GOAL.expected_state()).passed


def test_bundled_personas_cover_the_required_behaviours() -> None:
    for name in ("cooperative", "terse", "verbose", "impatient", "vague", "withholding"):
        assert name in PERSONAS
    for name in ("indecisive", "noisy", "upfront"):
        assert name in PERSONAS
    assert all(p.name == key for key, p in PERSONAS.items())
    assert PERSONAS["terse"].verbosity == "terse"
    assert PERSONAS["impatient"].patience is not None
    assert PERSONAS["withholding"].disclosure == "when_asked"
    assert PERSONAS["upfront"].disclosure == "all_at_once"
    assert PERSONAS["indecisive"].change_of_mind > 0
    assert PERSONAS["noisy"].typo_rate > 0 and PERSONAS["noisy"].off_topic_rate > 0
    assert PERSONAS["vague"].cooperativeness < 1


def test_persona_is_frozen_and_validated() -> None:
    persona = get_persona("terse")
    with pytest.raises(ValidationError):
        persona.verbosity = "verbose"  # type: ignore[misc]
    for bad in (
        {"cooperativeness": 1.5},
        {"typo_rate": -0.1},
        {"patience": -1},
        {"disclosure": "x"},
    ):
        with pytest.raises(ValidationError):
            Persona(name="bad", **bad)  # type: ignore[arg-type]


def test_unknown_persona_names_the_known_ones() -> None:
    with pytest.raises(UnknownPersonaError) as info:
        get_persona("grumpy")
    assert isinstance(info.value, InputError)
    assert info.value.name == "grumpy"
    assert set(info.value.known) == set(PERSONAS)
    assert "cooperative" in str(info.value)


def test_persona_prompt_speaks_to_every_field() -> None:
    impatient = persona_prompt(get_persona("impatient"), stop_token="<<bye>>")
    assert "mistakes once, at the next one" in impatient and "<<bye>>" in impatient
    assert "Never give up while the assistant is getting things right" in impatient
    assert DEFAULT_STOP_TOKEN not in impatient
    noisy = persona_prompt(get_persona("noisy"))
    assert "typos" in noisy and "unrelated remark" in noisy
    assert "first request, all in one message" in persona_prompt(get_persona("upfront"))
    assert "only when the assistant asks" in persona_prompt(get_persona("withholding"))
    assert "change your mind back" in persona_prompt(get_persona("indecisive"))
    assert "deflect" in persona_prompt(get_persona("vague"))
    cooperative = persona_prompt(get_persona("cooperative"))
    assert "typos" not in cooperative and "impatient" not in cooperative


class RecordingModel:
    """A chat model that remembers what it was sent and says the stop token."""

    def __init__(self) -> None:
        self.seen: list[Sequence[Message]] = []

    async def complete(
        self, messages: Sequence[Message], settings: ModelSettings | None = None
    ) -> Completion:
        self.seen.append(messages)
        return Completion(message=Message(role="assistant", content=DEFAULT_STOP_TOKEN))


@pytest.mark.timeout(5)
async def test_llm_user_plays_a_persona_given_by_name_or_object() -> None:
    model = RecordingModel()
    by_name = LLMUser(model, goal="Add lunch (event id: 0), 60 minutes.", persona="terse")
    assert persona_prompt(get_persona("terse")) in by_name.system_prompt
    by_object = LLMUser(
        model, goal="Add lunch.", persona=get_persona("impatient"), stop_token="<<bye>>"
    )
    assert persona_prompt(get_persona("impatient"), stop_token="<<bye>>") in by_object.system_prompt
    free = LLMUser(model, goal="Add lunch.", persona="Speaks like a pirate.")
    assert "Speaks like a pirate." in free.system_prompt
    await by_name.respond(View("user", scenario().opening_transcript(), 1))
    assert "Write as few words as you can" in (model.seen[0][0].content or "")


@pytest.mark.timeout(10)
async def test_cooperative_user_reaches_its_goal_with_the_solver() -> None:
    result = await talk(PersonaCalendarUser(scenario("cooperative")))
    assert result.termination.value == "user_stop" and passed(result)
    fid = user_fidelity(result.transcript, expected=GOAL, persona="cooperative")
    assert fid.goal_coverage == 1.0 and fid.stop_ok and fid.pacing_violations == 0


@pytest.mark.timeout(10)
async def test_same_seed_same_dialogue_other_seed_other_words() -> None:
    first = await talk(PersonaCalendarUser(scenario("noisy", seed=3)))
    again = await talk(PersonaCalendarUser(scenario("noisy", seed=3)))
    other = await talk(PersonaCalendarUser(scenario("noisy", seed=4)))
    assert user_texts(first) == user_texts(again)
    assert user_texts(first) != user_texts(other)


@pytest.mark.timeout(10)
async def test_impatient_user_leaves_after_mistakes_not_after_a_count() -> None:
    patience = get_persona("impatient").patience
    assert patience == 1
    # A perfect assistant never tries its patience, however long the goal.
    perfect = await talk(PersonaCalendarUser(scenario("impatient")))
    assert passed(perfect) and perfect.termination.value == "user_stop"
    assert len(user_texts(perfect)) > 3  # more messages than the old fixed count of 3
    # An assistant that keeps showing an empty calendar gets one correction,
    # then the user leaves at the second bad turn.
    careless = FunctionAssistant(lambda view: "Here is your calendar.\n\n[]")
    with anyio.fail_after(5):
        result = await run_dialogue(careless, PersonaCalendarUser(scenario("impatient")))
    texts = user_texts(result)
    assert len(texts) == 1 + patience + 1  # the request, the corrections, the give-up
    assert DEFAULT_STOP_TOKEN in texts[-1] and not passed(result)
    fid = user_fidelity(result.transcript, expected=GOAL, persona="impatient")
    assert fid.premature_stop and fid.stop_ok
    # A patient user with the same careless assistant corrects twice.
    patient = await run_dialogue(careless, PersonaCalendarUser(scenario("cooperative")))
    assert len(user_texts(patient)) == 1 + 2 + 1


@pytest.mark.timeout(10)
async def test_terse_and_verbose_change_the_wording_not_the_requests() -> None:
    terse = await talk(PersonaCalendarUser(scenario("terse")))
    verbose = await talk(PersonaCalendarUser(scenario("verbose")))
    plain = await talk(PersonaCalendarUser(scenario("cooperative")))
    for result in (terse, verbose):
        assert passed(result)
    assert not any(
        t.lower().startswith(("hey", "hi")) or "please" in t.lower() for t in user_texts(terse)
    )

    def mean_len(r: DialogueResult) -> float:
        return sum(map(len, user_texts(r))) / len(user_texts(r))

    assert mean_len(terse) < mean_len(plain) < mean_len(verbose)


@pytest.mark.timeout(10)
async def test_upfront_user_states_its_whole_goal_in_the_first_message() -> None:
    result = await talk(PersonaCalendarUser(scenario("upfront")), max_turns=1)
    first = result.transcript.by_role("user")[0]
    fid = user_fidelity([first], expected=GOAL, persona="upfront")
    assert fid.goal_coverage == 1.0 and fid.pacing_violations == 0


@pytest.mark.timeout(10)
async def test_withholding_user_waits_to_be_asked() -> None:
    # An assistant that never asks gets nothing revealed.
    silent = await talk(
        PersonaCalendarUser(scenario("withholding")),
        max_turns=4,
        solver=CalendarSolverAssistant(invite=False),
    )
    assert user_fidelity(silent.transcript, expected=GOAL).request_messages == 0
    # Asked every turn, it reveals everything without volunteering anything.
    asked = await talk(PersonaCalendarUser(scenario("withholding")), asks=True)
    assert passed(asked)
    fid = user_fidelity(asked.transcript, expected=GOAL, persona="withholding")
    assert fid.goal_coverage == 1.0 and fid.pacing_violations == 0
    assert fid.chatter == 1  # the opening greeting


@pytest.mark.timeout(10)
async def test_indecisive_user_asks_for_another_time_then_reverts() -> None:
    always = Persona(name="always-indecisive", change_of_mind=1.0)
    result = await talk(PersonaCalendarUser(scenario(), persona=always))
    texts = user_texts(result)
    decoys = [i for i, t in enumerate(texts) if t.startswith("Hmm, actually")]
    assert len(decoys) == 3  # one per constraint of the goal
    assert all("(event id:" in texts[i] for i in decoys)
    assert passed(result)
    assert user_fidelity(result.transcript, expected=GOAL).goal_coverage == 1.0


@pytest.mark.timeout(10)
async def test_noise_never_changes_what_is_asked() -> None:
    noisy = Persona(name="very-noisy", typo_rate=0.5, off_topic_rate=1.0)
    result = await talk(PersonaCalendarUser(scenario(), persona=noisy))
    plain = await talk(PersonaCalendarUser(scenario("cooperative")))
    assert user_texts(result) != user_texts(plain)
    assert passed(result)
    assert user_fidelity(result.transcript, expected=GOAL).goal_coverage == 1.0


@pytest.mark.timeout(10)
async def test_uncooperative_user_deflects_after_its_first_request() -> None:
    stubborn = Persona(name="stubborn", cooperativeness=0.0)
    result = await talk(PersonaCalendarUser(scenario(), persona=stubborn), max_turns=5)
    fid = user_fidelity(result.transcript, expected=GOAL)
    assert fid.request_messages == 1 and fid.chatter == 4
    assert result.termination.value == "max_turns"


def test_persona_user_needs_a_known_persona() -> None:
    with pytest.raises(UnknownPersonaError):
        PersonaCalendarUser(scenario("grumpy"))


# ---------------------------------------------------------------- personas in the default wiring


def test_default_user_plays_the_scenarios_persona() -> None:
    for name in PERSONAS:
        user = default_user(scenario(name))
        assert isinstance(user, PersonaCalendarUser) and user.persona == get_persona(name)
    assert type(default_user(scenario(None))) is CalendarUser
    with pytest.raises(ScenarioError) as info:
        default_user(scenario("grumpy"))
    assert info.value.scenario_id == "personas"
    assert "grumpy" in info.value.problem


@pytest.mark.timeout(20)
async def test_upfront_user_and_solver_reach_full_reward_on_every_bundled_scenario() -> None:
    for base in bundled_scenarios():
        s = base.model_copy(update={"persona": "upfront"})
        result = await run_scenario(s)  # the default user plays the persona
        assert result.reward == 1.0, (s.id, result.verdicts)
        assert result.termination == TerminationReason.USER_STOP
        # The whole goal in the first message, all of it applied in one reply.
        assert result.turns == 1, s.id
        assert all(t.score == 1.0 for t in result.turn_scores), s.id
        fid = user_fidelity(result.transcript, expected=s.goal, persona="upfront")
        assert fid.goal_coverage == 1.0 and fid.pacing_violations == 0


@pytest.mark.timeout(20)
async def test_withholding_user_and_solver_complete_every_bundled_scenario() -> None:
    # The solver ends every reply with an invitation, so the user never has
    # to volunteer, and one request per turn fits each scenario's own limit.
    for base in bundled_scenarios():
        assert base.goal is not None
        s = base.model_copy(update={"persona": "withholding"})
        result = await run_scenario(s)
        assert result.reward == 1.0, (s.id, result.verdicts)
        assert result.termination == TerminationReason.USER_STOP, s.id
        fid = user_fidelity(result.transcript, expected=s.goal, persona="withholding")
        assert fid.goal_coverage == 1.0 and fid.pacing_violations == 0, s.id
        assert fid.stop_ok


ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("convo-sim")


NATIVE_GOAL = CalendarGoal(
    steps=(
        GoalStep(action="add", event_id=0, name="Lunch", duration=60),
        GoalStep(action="constrain", event_id=0, constraint="before 1pm"),
        GoalStep(action="add", event_id=1, name="Gym", duration=30),
    )
)


def native(persona: str) -> str:
    """One native scenario record (a JSONL line) of NATIVE_GOAL with `persona`."""
    steps = [step.model_dump(exclude_none=True) for step in NATIVE_GOAL.steps]
    return json.dumps({"id": f"lunch-{persona}", "persona": persona, "seed": 5, "steps": steps})


@pytest.mark.timeout(60)
def test_convo_sim_run_honours_personas(tmp_path: Path) -> None:
    scenarios = tmp_path / "personas.jsonl"
    scenarios.write_text(f"{native('upfront')}\n{native('terse')}\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    done = subprocess.run(
        [str(CLI), "run", "--scenarios", str(scenarios), "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = {row["scenario_id"]: row for row in map(json.loads, out.read_text().splitlines())}
    for row in rows.values():
        assert row["reward"] == 1.0 and row["termination"] == "user_stop"

    def users(scenario_id: str) -> list[str]:
        items = rows[scenario_id]["responses_create_params"]["input"]
        return [item["content"] for item in items if item["role"] == "user"]

    # upfront: every request in the first message, then thanks.
    assert len(users("lunch-upfront")) == 2
    assert (
        user_fidelity(
            [Message(role="user", content=users("lunch-upfront")[0])],
            expected=NATIVE_GOAL,
        ).goal_coverage
        == 1.0
    )
    # terse: no pleasantries anywhere.
    assert not any(t.lower().startswith(("hey", "hi")) for t in users("lunch-terse"))


@pytest.mark.timeout(60)
def test_an_unknown_persona_is_one_line_naming_file_line_and_scenario(tmp_path: Path) -> None:
    scenarios = tmp_path / "personas.jsonl"
    scenarios.write_text(f"{native('terse')}\n{native('grumpy')}\n", encoding="utf-8")
    done = subprocess.run(
        [str(CLI), "run", "--scenarios", str(scenarios), "--out", str(tmp_path / "o.jsonl")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"{scenarios}:2:" in lines[0]
    assert "'lunch-grumpy'" in lines[0] and "'grumpy'" in lines[0] and "cooperative" in lines[0]
