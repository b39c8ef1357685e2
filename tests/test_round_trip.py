"""Scenarios save and load back; `verify` re-scores every file the tool writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convo_sim._sink import read_rollouts
from convo_sim.cli import main
from convo_sim.domains import get
from convo_sim.domains.calendar import generate_scenarios, load_scenarios
from convo_sim.scenarios import save_scenarios

ROOT = Path(__file__).resolve().parents[1]


@given(st.integers(min_value=0, max_value=2**31), st.integers(min_value=1, max_value=4))
def test_generated_scenarios_load_back_as_they_were(seed: int, count: int) -> None:
    import tempfile

    scenarios = generate_scenarios(count, seed=seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s.jsonl"
        assert save_scenarios(path, scenarios) == count
        assert load_scenarios(path) == scenarios


def test_every_bundled_scenario_saved_with_model_dump_json_loads_back(tmp_path: Path) -> None:
    # What the issue tried: `model_dump_json()` per line, read by `--scenarios`.
    calendar = get("calendar")
    every = calendar.scenarios(list(calendar.bundled))
    path = tmp_path / "all.jsonl"
    path.write_text("".join(s.model_dump_json() + "\n" for s in every), encoding="utf-8")
    assert load_scenarios(path) == every


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"max_turns": "3"}, "field 'max_turns'"),
        ({"colour": "red"}, "unknown field 'colour'"),
        ({"persona": "grumpy"}, "unknown persona"),
        ({"goal": {"steps": [{"action": "add", "event_id": 0}]}}, "field 'goal.steps[0]"),
        ({"expected_state": {"0": {"duration": 30}}}, "field 'expected_state'"),
    ],
)
def test_a_bad_saved_scenario_is_one_line_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, object], needle: str
) -> None:
    good, bad = (json.loads(s.model_dump_json()) for s in generate_scenarios(2, seed=4))
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**bad, **change}) + "\n")
    assert main(["run", "--scenarios", str(path), "--out", str(tmp_path / "r.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"convo-sim: error: {path}:2:") and needle in err, err


def test_generate_writes_scenarios_that_run_and_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, out = tmp_path / "gen.jsonl", tmp_path / "r.jsonl"
    assert main(["generate", "3", "--seed", "9", "--out", str(path)]) == 0
    assert capsys.readouterr().out == f"wrote        3 calendar scenarios to {path}\n"
    assert load_scenarios(path) == generate_scenarios(3, seed=9)
    assert main(["run", "--scenarios", str(path), "--out", str(out), "--no-progress"]) == 0
    assert len(read_rollouts(out)) == 3
    assert main(["verify", str(out), "--scenarios", str(path)]) == 0
    assert "rescored     3 records, reward changed for 0" in capsys.readouterr().out


def test_experiment_saves_the_scenarios_it_ran_and_verify_rescores_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["experiment", "--personas", "terse,impatient", "--samples", "1", "--generate", "2"]
    assert main([*argv, "--out-dir", str(tmp_path), "--no-html"]) == 0
    saved = load_scenarios(tmp_path / "scenarios.jsonl")
    records = read_rollouts(tmp_path / "rollouts.jsonl")
    assert {s.id for s in saved} == {r.scenario_id for r in records} and len(saved) == 4
    capsys.readouterr()
    rollouts = str(tmp_path / "rollouts.jsonl")
    assert main(["verify", rollouts, "--scenarios", str(tmp_path / "scenarios.jsonl")]) == 0
    assert "rescored     4 records, reward changed for 0" in capsys.readouterr().out
    # Without them, the error says where they are.
    assert main(["verify", rollouts]) == 2
    assert "scenarios.jsonl" in capsys.readouterr().err


def test_verify_rescores_a_script_s_records_with_its_own_verifiers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = "scenarios/examples/custom_verifier.py"
    out = tmp_path / "r.jsonl"
    monkeypatch.chdir(ROOT)
    assert main(["run", "--script", script, "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["verify", str(out), "--script", script, "--out", str(tmp_path / "v.jsonl")]) == 0
    assert "reward changed for 0" in capsys.readouterr().out
    before = [(r.key, r.reward, r.verdicts) for r in read_rollouts(out)]
    after = [(r.key, r.reward, r.verdicts) for r in read_rollouts(tmp_path / "v.jsonl")]
    assert after == before
    assert {v.verifier for r in read_rollouts(out) for v in r.verdicts} != {"calendar"}
    main_script = "scenarios/examples/scripted_main.py"
    assert main(["verify", str(out), "--script", main_script]) == 2
    assert "main()" in capsys.readouterr().err


def test_run_script_finds_the_bundled_examples_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--script", "scenarios/examples/persona_sweep.py", "--out", "sweep.jsonl"]
    assert main(argv) == 0
    assert len(read_rollouts(tmp_path / "sweep.jsonl")) > 0
    assert main(["run", "--script", "scenarios/examples/nope.py"]) == 2
    assert "nope.py" in capsys.readouterr().err


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = ["id", "system_prompt", "prefix", "user_script", "goal", "persona", "expected_state"]
FIELDS += ["max_turns", "seed", "metadata", "unknown"]


@given(st.dictionaries(st.sampled_from(FIELDS), JSON, min_size=1, max_size=4))
def test_a_mangled_saved_scenario_loads_or_is_one_scenario_error(
    changes: dict[str, object],
) -> None:
    import tempfile

    from convo_sim import ScenarioError

    (scenario,) = generate_scenarios(1, seed=11)
    record = {**json.loads(scenario.model_dump_json()), **changes}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s.jsonl"
        path.write_text(json.dumps(record) + "\n", encoding="utf-8")
        try:
            loaded = load_scenarios(path)
        except ScenarioError as exc:
            assert exc.line == 1 and "\n" not in str(exc)
        else:  # what loads also runs: the goal's calendar is still computable
            assert loaded[0].expected() is not None or loaded[0].goal is None
