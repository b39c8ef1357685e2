"""Scenario loading (three formats, every error with its line), generation and bundled sets."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from convo_sim import ScenarioError
from convo_sim.domains.calendar import (
    CALENDAR_SYSTEM_PROMPT,
    DURATIONS,
    CalendarGoal,
    CalendarScenario,
    GoalStep,
    bundled_scenarios,
    is_goal_solvable,
    load_scenarios,
    native_scenario,
    nemo_replay_scenario,
    nemo_scenario,
    parse_constraint,
    seed_scenario,
)
from convo_sim.domains.calendar import generate_scenarios as generate_calendar_scenarios

NEMO = (
    Path(__file__).resolve().parents[1]
    / "convo_sim"
    / "domains"
    / "calendar"
    / "data"
    / "nemo_calendar_example.jsonl"
)

NATIVE = {
    "id": "demo",
    "persona": "terse",
    "max_turns": 8,
    "seed": 3,
    "steps": [
        {"action": "add", "event_id": 0, "name": "Design review", "duration": 60},
        {"action": "constrain", "event_id": 0, "constraint": "before 1pm"},
    ],
}

YAML = """\
scenarios:
  - id: demo
    persona: terse
    max_turns: 8
    seed: 3
    steps:
      - action: add
        event_id: 0
        name: Design review
        duration: 60
      - action: constrain
        event_id: 0
        constraint: before 1pm
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(*records: Any) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def other(**changes: Any) -> dict[str, Any]:
    return {**NATIVE, "id": "other", **changes}


def load_error(path: Path) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenarios(path)
    assert info.value.path == str(path)
    return info.value


# ---------------------------------------------------------------- the three formats


def test_native_jsonl_yaml_and_json_array_load_the_same_scenario(tmp_path: Path) -> None:
    from_jsonl = load_scenarios(write(tmp_path, "a.jsonl", jsonl(NATIVE)))
    from_yaml = load_scenarios(write(tmp_path, "a.yaml", YAML))
    from_array = load_scenarios(write(tmp_path, "a.json", json.dumps([NATIVE], indent=2)))
    assert from_jsonl == from_yaml == from_array
    (s,) = from_jsonl
    assert (s.id, s.persona, s.max_turns, s.seed) == ("demo", "terse", 8, 3)
    assert s.system_prompt == CALENDAR_SYSTEM_PROMPT
    assert s.expected() == {
        "0": {
            "event_id": 0,
            "duration": 60,
            "constraint": "before 1pm",
            "min_time": "10:00",
            "max_time": "16:00",
        }
    }


def test_nemo_rows_load_as_prefixes_or_replays() -> None:
    rows = [json.loads(line) for line in NEMO.read_text(encoding="utf-8").splitlines()]
    prefixes = load_scenarios(NEMO)
    replays = load_scenarios(NEMO, nemo="replay")
    assert len(prefixes) == len(replays) == 5
    for row, prefix, replay in zip(rows, prefixes, replays, strict=True):
        items = row["responses_create_params"]["input"]
        assert len(prefix.prefix) == len(items) and prefix.prefix[-1].role == "user"
        assert prefix.user_script == () and prefix.max_turns == 1
        assert prefix.expected() == row["exp_cal_state"]
        users = [item["content"] for item in items if item["role"] == "user"]
        assert list(replay.user_script) == users
        assert [m.role for m in replay.prefix] == ["system"]
        assert replay == nemo_replay_scenario(row, id=replay.id)
        assert prefix == nemo_scenario(row, id=prefix.id)


def test_seed_records_carry_an_exact_expected_calendar(tmp_path: Path) -> None:
    record = {
        "id": "seed-1",
        "user_script": ['Please add "Retro" for 30 minutes at 11am (event id: 0)'],
        "expected_state": {"0": {"event_name": "Retro", "start_time": "11:00", "duration": 30}},
    }
    (s,) = load_scenarios(write(tmp_path, "seed.jsonl", jsonl(record)))
    assert s.user_script == tuple(record["user_script"])
    assert s.expected() == record["expected_state"]
    assert s == seed_scenario(record)
    with_messages = {**record, "messages": [{"role": "user", "content": "hi"}]}
    del with_messages["user_script"]
    assert seed_scenario(with_messages).prefix[0].content == "hi"


def test_bundled_sets() -> None:
    native = bundled_scenarios()
    assert len(native) >= 10 and len({s.id for s in native}) == len(native)
    for s in native:
        assert s.goal is not None and is_goal_solvable(s.goal), s.id
    assert len(bundled_scenarios("nemo_calendar_example")) == 5


# ---------------------------------------------------------------- errors, with lines


def test_bad_json_on_line_3(tmp_path: Path) -> None:
    text = jsonl(NATIVE) + "\n" + '{"id": "x", "steps": [\n'
    error = load_error(write(tmp_path, "bad.jsonl", text))
    assert error.line == 3
    assert "not valid JSON" in error.problem


@pytest.mark.parametrize(
    ("record", "needle"),
    [
        ({k: v for k, v in NATIVE.items() if k != "steps"} | {"id": "x", "max_turns": 3}, None),
        (other(steps=[{"action": "add", "event_id": 0, "name": "A"}]), "duration"),
        (other(id="x", steps=NATIVE["steps"], max_turns="8"), "max_turns"),
        (
            other(steps=[{"action": "add", "event_id": 0, "name": "A", "duration": "60"}]),
            "duration",
        ),
        (
            other(steps=[{"action": "add", "event_id": "0", "name": "A", "duration": 60}]),
            "event_id",
        ),
        (other(stepz=[]), "stepz"),
        (other(steps=[{"action": "move", "event_id": 0}]), "action"),
        (
            other(steps=[{"action": "constrain", "event_id": 0, "constraint": "before 1pm"}]),
            "before any",
        ),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_malformed_native_records_name_line_and_field(
    tmp_path: Path, record: Any, needle: str | None
) -> None:
    error = load_error(write(tmp_path, "s.jsonl", jsonl(NATIVE, record)))
    assert error.line == 2
    if needle is not None:
        assert needle in error.problem


def test_missing_field_is_named(tmp_path: Path) -> None:
    record = {k: v for k, v in NATIVE.items() if k != "id"}
    error = load_error(write(tmp_path, "s.jsonl", jsonl(NATIVE, other(), record)))
    assert (error.line, error.problem) == (3, "missing field 'id'")


@pytest.mark.parametrize("text", ["around noon", "before lunch", "between 2pm and 1pm", "at 25:00"])
def test_unknown_constraint_text(tmp_path: Path, text: str) -> None:
    steps = [*NATIVE["steps"], {"action": "constrain", "event_id": 0, "constraint": text}]
    error = load_error(
        write(tmp_path, "s.jsonl", jsonl(NATIVE, other(), other(id="z", steps=steps)))
    )
    assert error.line == 3
    assert "steps[2].constraint" in error.problem and "not a constraint" in error.problem


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    text = YAML.replace("        duration: 60", "        duration: [60")
    error = load_error(write(tmp_path, "s.yaml", text))
    assert error.line is not None and error.line >= 10
    assert "not valid YAML" in error.problem


def test_yaml_field_error_points_at_the_field(tmp_path: Path) -> None:
    text = YAML.replace("constraint: before 1pm", "constraint: around noon")
    error = load_error(write(tmp_path, "s.yml", text))
    assert error.line == 13  # the line of `constraint: around noon`


def test_missing_pyyaml_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ScenarioError, match=r"convo-sim\[yaml\]"):
        load_scenarios(write(tmp_path, "s.yaml", YAML))


def test_unknown_persona_names_the_scenario_file_and_line(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "p.jsonl", jsonl(NATIVE, other(persona="grumpy"))))
    assert (error.line, error.scenario_id) == (2, "other")
    assert "'grumpy'" in error.problem and "cooperative" in error.problem
    yaml_error = load_error(write(tmp_path, "p.yaml", YAML.replace("terse", "grumpy")))
    assert (yaml_error.line, yaml_error.scenario_id) == (3, "demo")  # `persona: grumpy`
    with pytest.raises(ScenarioError) as info:
        native_scenario({**NATIVE, "persona": "grumpy"})
    assert info.value.scenario_id == "demo" and info.value.path is None
    # Every bundled persona loads.
    for name in ("upfront", "withholding", "noisy"):
        assert load_scenarios(write(tmp_path, "ok.jsonl", jsonl(other(persona=name))))


def test_duplicate_ids_and_unrecognised_records(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "dup.jsonl", jsonl(NATIVE, other(), NATIVE)))
    assert error.line == 3 and "duplicate scenario id 'demo'" in error.problem
    error = load_error(write(tmp_path, "what.jsonl", jsonl({"hello": 1})))
    assert error.line == 1 and "not a scenario record" in error.problem


def test_empty_missing_and_binary_files(tmp_path: Path) -> None:
    assert load_error(write(tmp_path, "empty.jsonl", "\n\n")).line == 1
    missing = tmp_path / "nope.jsonl"
    assert "no such file" in load_error(missing).problem
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(jsonl(NATIVE).encode() + b"\xff\xfe\n")
    assert load_error(binary).line == 2


def test_malformed_nemo_rows(tmp_path: Path) -> None:
    row = json.loads(NEMO.read_text(encoding="utf-8").splitlines()[0])
    bad_state = {**row, "exp_cal_state": {"0": {**row["exp_cal_state"]["0"], "duration": "60"}}}
    no_input = {**row, "responses_create_params": {"tools": []}}
    bad_role = {**row, "responses_create_params": {"input": [{"role": "robot", "content": "x"}]}}
    for bad, needle in (
        (bad_state, "exp_cal_state"),
        (no_input, "responses_create_params.input"),
        (bad_role, "robot"),
    ):
        error = load_error(write(tmp_path, "n.jsonl", jsonl(row, bad)))
        assert error.line == 2 and needle in error.problem
    with pytest.raises(ScenarioError, match="exp_cal_state"):
        nemo_scenario({k: v for k, v in row.items() if k != "exp_cal_state"})


def test_seed_record_needs_a_conversation(tmp_path: Path) -> None:
    record = {"expected_state": {"0": {"event_name": "A", "start_time": "10:00", "duration": 30}}}
    error = load_error(write(tmp_path, "s.jsonl", jsonl(record)))
    assert error.line == 1 and "conversation" in error.problem
    bad = {**record, "user_script": ["x"], "expected_state": {"0": {"event_name": "A"}}}
    assert "start_time" in load_error(write(tmp_path, "t.jsonl", jsonl(bad))).problem


def test_native_scenario_from_python_raises_without_a_path() -> None:
    with pytest.raises(ScenarioError) as info:
        native_scenario({"id": "x"})
    assert (info.value.path, info.value.line) == (None, None)


def test_goal_steps_validate_themselves() -> None:
    with pytest.raises(ValueError, match="needs a non-empty 'name'"):
        GoalStep(action="add", event_id=0, duration=30)
    with pytest.raises(ValueError, match="not a constraint"):
        GoalStep(action="constrain", event_id=0, constraint="soonish")
    with pytest.raises(ValueError, match="a second time"):
        CalendarGoal(
            steps=(
                GoalStep(action="add", event_id=0, name="A", duration=30),
                GoalStep(action="add", event_id=0, name="B", duration=30),
            )
        )
    assert CalendarScenario(id="x").expected() is None


# ---------------------------------------------------------------- generation


def test_generation_is_seeded_and_prefix_stable() -> None:
    assert generate_calendar_scenarios(40, seed=1) == generate_calendar_scenarios(40, seed=1)
    assert generate_calendar_scenarios(10, seed=1) == generate_calendar_scenarios(40, seed=1)[:10]
    assert generate_calendar_scenarios(10, seed=2) != generate_calendar_scenarios(10, seed=1)


def test_generated_scenarios_are_varied_and_solvable_at_every_step() -> None:
    scenarios = generate_calendar_scenarios(300, seed=11)
    events: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    durations: set[int] = set()
    moves = 0
    names: set[str] = set()
    for s in scenarios:
        assert s.goal is not None and is_goal_solvable(s.goal), s.id
        adds = [step for step in s.goal.steps if step.action == "add"]
        constrains = [step for step in s.goal.steps if step.action == "constrain"]
        events[len(adds)] += 1
        durations.update(step.duration or 0 for step in adds)
        names.update(step.name or "" for step in adds)
        for step in constrains:
            constraint = parse_constraint(step.constraint)
            assert constraint is not None
            kinds[constraint.kind] += 1
        moves += len(constrains) > len({step.event_id for step in constrains})
        assert s.max_turns is not None and s.max_turns > len(s.goal.steps)
    assert set(events) == {2, 3, 4, 5, 6}
    assert durations <= set(DURATIONS) and min(durations) == 15 and max(durations) == 120
    assert set(kinds) == {"before", "after", "between", "at"}
    assert 0.15 < moves / len(scenarios) < 0.6
    assert len(names) > 150


def test_generation_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="min_events"):
        generate_calendar_scenarios(1, min_events=0)
    with pytest.raises(ValueError, match="move_rate"):
        generate_calendar_scenarios(1, move_rate=2.0)
    with pytest.raises(ValueError, match="n must"):
        generate_calendar_scenarios(-1)
    assert generate_calendar_scenarios(0) == []
    (one,) = generate_calendar_scenarios(1, min_events=1, max_events=1, seed=9)
    assert one.goal is not None
    assert sum(step.action == "add" for step in one.goal.steps) == 1


def test_nemo_request_parameters_reach_the_rollout_record() -> None:
    from convo_sim import Rollout
    from convo_sim._results import DialogueResult, TerminationReason
    from convo_sim.scenarios import nemo_scenario

    row = json.loads(NEMO.read_text().splitlines()[0])
    row["responses_create_params"]["temperature"] = 0.25
    row["responses_create_params"]["tools"] = []
    scenario = nemo_scenario(row)
    assert scenario.metadata["responses_create_params"] == {"temperature": 0.25, "tools": []}
    result = DialogueResult(
        dialogue_id="d",
        transcript=scenario.opening_transcript(),
        termination=TerminationReason.MAX_TURNS,
        terminated_by="max_turns(1)",
        turns=0,
    )
    record = Rollout.from_result(scenario, 0, 1, result)
    assert record.responses_create_params["temperature"] == 0.25
    assert record.responses_create_params["tools"] == []
    assert record.responses_create_params["input"] == row["responses_create_params"]["input"]
