"""`convo-sim run` as a user runs it: a real subprocess of the installed script."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).with_name("convo-sim")
NEMO = ROOT / "convo_sim" / "domains" / "calendar" / "data" / "nemo_calendar_example.jsonl"
FIELDS = {
    "scenario_id",
    "seed",
    "termination",
    "terminated_by",
    "turns",
    "reward",
    "turn_scores",
    "verdicts",
    "responses_create_params",
    "error",
}

pytestmark = pytest.mark.timeout(60)


def convo_sim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_run_with_no_arguments_runs_the_bundled_scenarios(tmp_path: Path) -> None:
    done = convo_sim("run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = records(tmp_path / "rollouts.jsonl")
    assert len(rows) == 10
    for row in rows:
        assert set(row) >= FIELDS
        assert row["reward"] == 1.0 and row["termination"] == "user_stop"
        assert row["error"] is None
        items = row["responses_create_params"]["input"]
        assert items[0]["role"] == "system" and items[-1]["content"].endswith("###STOP###")
        assert {s["verifier"] for s in row["turn_scores"]} >= {"valid_calendar", "no_conflicts"}
    # The summary: how many dialogues, the mean reward, endings with counts, turns.
    assert re.search(r"^(dialogues|rollouts)\s+10\b", done.stdout, re.MULTILINE), done.stdout
    assert re.search(r"^mean reward\s+1\.000", done.stdout, re.MULTILINE)
    assert re.search(r"^termination\s+user_stop 10$", done.stdout, re.MULTILINE)
    assert "turns" in done.stdout


def test_options_scenarios_max_turns_seed_out_concurrency(tmp_path: Path) -> None:
    out = tmp_path / "nemo.jsonl"
    done = convo_sim(
        "run", "--scenarios", str(NEMO), "--out", str(out), "--concurrency", "2", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    rows = records(out)
    assert [r["turns"] for r in rows] == [1] * 5
    assert all(r["reward"] == 1.0 for r in rows)

    short = tmp_path / "short.jsonl"
    done = convo_sim("run", "--max-turns", "1", "--out", str(short), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert {r["termination"] for r in records(short)} == {"max_turns"}
    assert re.search(r"^termination\s+max_turns 10$", done.stdout, re.MULTILINE)

    seeded = [tmp_path / f"seed{i}.jsonl" for i in range(3)]
    for path, seed in zip(seeded, ("1", "1", "2"), strict=True):
        done = convo_sim("run", "--seed", seed, "--out", str(path), cwd=tmp_path)
        assert done.returncode == 0, done.stderr

    def inputs(path: Path) -> dict[str, Any]:
        return {r["scenario_id"]: r["responses_create_params"]["input"] for r in records(path)}

    assert inputs(seeded[0]) == inputs(seeded[1])
    assert inputs(seeded[0]) != inputs(seeded[2])
    assert all(isinstance(r["seed"], int) for r in records(seeded[2]))
    assert all(r["reward"] == 1.0 for r in records(seeded[2]))


def test_yaml_scenarios_run(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "- id: yaml-one\n"
        "  steps:\n"
        "    - {action: add, event_id: 0, name: Standup, duration: 15}\n"
        "    - {action: constrain, event_id: 0, constraint: at 10:15am}\n",
        encoding="utf-8",
    )
    done = convo_sim("run", "--scenarios", str(path), "--out", "o.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (row,) = records(tmp_path / "o.jsonl")
    assert (row["scenario_id"], row["reward"]) == ("yaml-one", 1.0)


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("bad.jsonl", '{"id": "a", "steps": []}\n\n{"id": oops}\n', 3),
        ("bad.yaml", "- id: a\n  steps: [\n", 3),
        (
            "bad2.jsonl",
            '{"id": "a", "steps": [{"action": "add", "event_id": 0, "name": "A", "duration": 5},'
            ' {"action": "constrain", "event_id": 0, "constraint": "whenever"}]}\n',
            1,
        ),
    ],
)
def test_a_malformed_scenario_file_is_one_line_and_exit_2(
    tmp_path: Path, name: str, text: str, line: int
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    done = convo_sim("run", "--scenarios", str(path), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"convo-sim: error: {path}:{line}: ")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "rollouts.jsonl").exists()


def test_missing_scenario_file_and_bad_flags(tmp_path: Path) -> None:
    done = convo_sim("run", "--scenarios", "nope.jsonl", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "convo-sim: error: nope.jsonl: no such file"
    done = convo_sim("run", "--concurrency", "0", cwd=tmp_path)
    assert done.returncode == 2 and "positive integer" in done.stderr


def test_a_failing_actor_factory_is_one_line_and_exit_1(tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text(
        "from convo_sim.scenarios import generate_calendar_scenarios\n"
        "SCENARIOS = generate_calendar_scenarios(3, seed=1)\n\n"
        "def assistant(scenario, seed):\n"
        "    raise LookupError('no model configured\\nfor this scenario')\n"
    )
    done = convo_sim("run", "--script", str(script), "--no-progress", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("convo-sim: error:")]
    assert len(errors) == 1
    assert "failed: LookupError: no model configured\\nfor this scenario" in errors[0]
