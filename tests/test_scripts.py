"""Scenario scripts: the bundled examples run, bad scripts fail with file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from convo_sim import ScenarioError
from convo_sim._sink import read_rollouts
from convo_sim.cli import main
from convo_sim.scenarios._script import load_script, run_script

EXAMPLES = Path(__file__).resolve().parent.parent / "scenarios" / "examples"


def write(tmp_path: Path, source: str, name: str = "script.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source).lstrip())
    return path


def run_cli(script: Path, out: Path, *extra: str) -> int:
    return main(["run", "--script", str(script), "--out", str(out), *extra])


def test_there_are_at_least_three_examples() -> None:
    names = {p.name for p in EXAMPLES.glob("*.py")}
    assert {"persona_sweep.py", "nemo_dialogue.py", "custom_verifier.py"} <= names


@pytest.mark.timeout(30)
def test_persona_sweep_runs_every_persona(tmp_path: Path) -> None:
    out = tmp_path / "sweep.jsonl"
    assert run_cli(EXAMPLES / "persona_sweep.py", out) == 0
    records = read_rollouts(out)
    script = load_script(EXAMPLES / "persona_sweep.py")
    assert len(records) == len(script.scenarios) * script.samples
    by_persona: dict[str, list[float]] = {}
    for r in records:
        by_persona.setdefault(r.metadata["persona"], []).append(r.reward or 0.0)
    assert set(by_persona) == {"cooperative", "terse", "indecisive", "noisy", "impatient"}
    # The solver makes no mistake, so every persona reaches its goal,
    # and the records say who the user was and that it played its part.
    assert all(min(rewards) == 1.0 for rewards in by_persona.values())
    assert all(r.user_failure is False and "fidelity" in r.metadata for r in records)


@pytest.mark.timeout(30)
def test_nemo_dialogue_replays_and_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nemo.jsonl"
    assert run_cli(EXAMPLES / "nemo_dialogue.py", out) == 0
    [record] = read_rollouts(out)
    assert record.scenario_id == "nemo_dialogue"
    assert record.reward == 1.0 and record.termination.value == "user_stop"
    users = [m.text for m in record.transcript.by_role("user")]
    assert users[0].startswith("Hi! Could you add") and users[-1] == "###STOP###"
    assert "wrote        1 records" in capsys.readouterr().out


@pytest.mark.timeout(30)
async def test_custom_verifier_is_used_and_lowers_a_restless_calendar() -> None:
    script = load_script(EXAMPLES / "custom_verifier.py")
    records = {r.scenario_id: r for r in await run_script(script)}
    for record in records.values():
        names = [v.verifier for v in record.verdicts]
        assert names == ["calendar_final", "stable_calendar"]
        assert record.reward == min(v.reward for v in record.verdicts)
    assert records["stable-day"].reward == 1.0
    moved = records["reshuffled-day"].verdicts[1]
    assert moved.reason == "events_moved" and moved.details["moves"] >= 1
    assert records["reshuffled-day"].reward is not None and records["reshuffled-day"].reward < 1.0


@pytest.mark.timeout(30)
def test_main_script_results_are_printed_and_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "main.jsonl"
    assert run_cli(EXAMPLES / "scripted_main.py", out) == 0
    records = read_rollouts(out)
    assert [r.scenario_id for r in records] == ["scripted_main-0", "scripted_main-1"]
    assert [r.termination.value for r in records] == ["user_stop", "max_turns"]
    printed = capsys.readouterr().out
    assert "--- scripted_main-0" in printed and "user: Please add" in printed


@pytest.mark.timeout(30)
async def test_hooks_replace_the_default_actors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        from convo_sim.agents import ScriptedAssistant
        from convo_sim.scenarios import Scenario
        from convo_sim.users import ScriptedUser

        SCENARIOS = [{"id": "hooked"}]
        SAMPLES = 3

        def assistant(scenario, seed):
            return ScriptedAssistant([f"seed {seed}"])

        def user(scenario, seed):
            return ScriptedUser([f"hello from {scenario.id}"])

        def verifiers(scenario):
            return [], []
        """,
    )
    records = await run_script(load_script(path), seed=5)
    assert [r.sample_index for r in records] == [0, 1, 2]
    assert len({r.seed for r in records}) == 3
    for r in records:
        texts = [m.text for m in r.transcript]
        assert texts[:2] == ["hello from hooked", f"seed {r.seed}"]
        assert r.reward is None and r.verdicts == ()


BAD_SCRIPTS = [
    ("SCENARIOS = [\n  Scenario(id='a'\n", "syntax error", 2),
    ("x = 1\nSCENARIO = []\n", "did you mean 'SCENARIO' (line 2)", 2),
    ("x = 1\n", "defines none of SCENARIOS, scenarios(), DIALOGUE or main()", None),
    ("import math\n\nvalue = math.sqrt(-1)\nSCENARIOS = []\n", "raised ValueError", 3),
    (
        "def helper():\n    raise RuntimeError('boom')\n\ndef scenarios():\n    return helper()\n",
        "scenarios() raised RuntimeError: boom",
        2,
    ),
    ("\nSCENARIOS = 'not a list'\n", "expected a list of scenarios, got a str", 2),
    ("\n\nSCENARIOS = [{'id': 'a'}, {'id': 'a'}]\n", "two scenarios share the id 'a'", 3),
    ("SCENARIOS = [{'id': 'a', 'max_turns': 0}]\n", "scenario 0: max_turns", 1),
    ("SCENARIOS = [42]\n", "scenario 0 is a int", 1),
    ("def main():\n    return None\n", "main must be an 'async def' function", 1),
    ("SCENARIOS = [{'id': 'a'}]\n\ndef user(scenario):\n    pass\n", "user must take 2", 3),
    ("DIALOGUE = ['hi', 3]\n", "DIALOGUE must be a list of user messages", 1),
    ("SCENARIOS = [{'id': 'a'}]\nSAMPLES = 0\n", "SAMPLES must be a positive integer", 2),
    (
        "GOAL = {'steps': [{'action': 'add', 'event_id': 0, 'name': 'A', 'duration': 30}]}\n"
        "SCENARIOS = [{'id': 'a', 'goal': GOAL, 'persona': 'grumpy'}]\n",
        "scenario 'a': unknown persona 'grumpy'",
        2,
    ),
]


def test_a_user_hook_may_take_any_persona_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "GOAL = {'steps': [{'action': 'add', 'event_id': 0, 'name': 'A', 'duration': 30}]}\n"
        "SCENARIOS = [{'id': 'a', 'goal': GOAL, 'persona': 'Speaks like a pirate.'}]\n\n"
        "def user(scenario, seed):\n    return None\n",
    )
    assert load_script(path).scenarios[0].persona == "Speaks like a pirate."


@pytest.mark.parametrize(("source", "problem", "line"), BAD_SCRIPTS)
def test_bad_scripts_raise_scenario_error_with_file_and_line(
    tmp_path: Path, source: str, problem: str, line: int | None
) -> None:
    path = tmp_path / "bad.py"
    path.write_text(source)
    with pytest.raises(ScenarioError) as info:
        load_script(path)
    assert info.value.path == str(path.resolve())
    assert info.value.line == line
    assert problem in info.value.problem


def test_bad_script_on_the_command_line_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "SCENARIOS = [\n")
    assert run_cli(path, tmp_path / "out.jsonl") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{path.resolve()}:1: syntax error" in err
    missing = tmp_path / "missing.py"
    assert run_cli(missing, tmp_path / "out.jsonl") == 2
    assert "cannot read the script" in capsys.readouterr().err
