"""`convo-sim report`, `verify` and `run --samples` through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from convo_sim import Rollout, RolloutPlan, read_rollouts, summarize, write_rollouts
from convo_sim.cli import main
from convo_sim.domains import get
from convo_sim.scenarios import Scenario, bundled_scenarios

pytestmark = pytest.mark.timeout(60)


def calendar_plan(seed: int = 0) -> RolloutPlan[Scenario]:
    return get("calendar").plan(seed=seed)


@pytest.fixture
def calendar_file(tmp_path: Path) -> Path:
    path = tmp_path / "calendar.jsonl"

    async def produce() -> None:
        with anyio.fail_after(30):
            await write_rollouts(
                path, bundled_scenarios()[:4], calendar_plan(), samples_per_scenario=2
            )

    anyio.run(produce)
    return path


def test_report_prints_the_summary_of_a_file(
    calendar_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(calendar_file)]) == 0
    out = capsys.readouterr().out
    summary = summarize(read_rollouts(calendar_file))
    assert out.startswith("rollouts     8 (4 scenarios x 2 samples)\n")
    assert f"mean reward  {summary.mean_reward:.3f} ± " in out
    assert "pass@k       k=1 " in out and " k=2 " in out
    assert "pass^k       k=1 " in out
    assert "termination  " in out and "tokens       0 " in out


def test_report_json_matches_the_metrics(
    calendar_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(calendar_file), "--json", "--threshold", "0.5"]) == 0
    data = json.loads(capsys.readouterr().out)
    expected = summarize(read_rollouts(calendar_file), threshold=0.5)
    assert data["rollouts"] == 8 and data["threshold"] == 0.5
    assert data["mean_reward"] == pytest.approx(expected.mean_reward)
    assert {int(k): v for k, v in data["pass_hat_k"].items()} == pytest.approx(expected.pass_hat_k)


def test_report_on_a_bad_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"scenario_id": 1}\n{"also": "bad"}\n')
    assert main(["report", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}:1:" in err
    assert main(["report", str(tmp_path / "missing.jsonl")]) == 2


def test_verify_reproduces_the_live_scores(
    calendar_file: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "rescored.jsonl"
    assert main(["verify", str(calendar_file), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rescored     8 records, reward changed for 0" in printed
    for live, again in zip(read_rollouts(calendar_file), read_rollouts(out), strict=True):
        assert again.turn_scores == live.turn_scores
        assert again.verdicts == live.verdicts
        assert again.reward == live.reward


def test_verify_restores_tampered_scores_in_place(
    calendar_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = read_rollouts(calendar_file)
    tampered = [
        r.model_copy(update={"reward": 0.0, "verdicts": (), "turn_scores": ()}) for r in original
    ]
    calendar_file.write_text("".join(r.model_dump_json() + "\n" for r in tampered))
    assert main(["verify", str(calendar_file), "--out", str(calendar_file)]) == 0
    changed = sum(r.reward != 0.0 for r in original)
    assert f"reward changed for {changed}" in capsys.readouterr().out
    assert read_rollouts(calendar_file) == original
    assert not calendar_file.with_name(calendar_file.name + ".tmp").exists()


def test_verify_needs_the_scenarios_the_rollouts_came_from(
    calendar_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.jsonl"
    step = {"action": "add", "event_id": 0, "name": "Lunch", "duration": 30}
    other.write_text(json.dumps({"id": "elsewhere", "steps": [step]}) + "\n")
    code = main(["verify", str(calendar_file), "--scenarios", str(other)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and str(calendar_file) in err


def test_verify_rejects_a_record_whose_opening_changed(
    calendar_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, *rest = read_rollouts(calendar_file)
    params = dict(first.responses_create_params)
    params["input"] = [{"role": "system", "content": "Some other prompt."}, *params["input"][1:]]
    changed: Rollout = first.model_copy(update={"responses_create_params": params})
    calendar_file.write_text("".join(r.model_dump_json() + "\n" for r in [changed, *rest]))
    assert main(["verify", str(calendar_file)]) == 2
    assert "opening" in capsys.readouterr().err


def summary_block(printed: str) -> str:
    return printed.split("\nwrote ")[0]


def test_run_with_samples_resumes_and_matches_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.jsonl"
    args = ["run", "--samples", "3", "--out", str(out), "--seed", "4", "--no-progress"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("rollouts     30 (10 scenarios x 3 samples)\n")
    assert "k=1 " in first and "k=3 " in first and "k=4 " not in first
    assert first.rstrip().endswith(f"wrote        30 records to {out}")
    records = read_rollouts(out)
    assert sorted({r.sample_index for r in records}) == [0, 1, 2]

    assert main(args) == 0  # the same command again: nothing left to do
    again = capsys.readouterr().out
    assert f"wrote        0 records to {out} (30 already there)" in again
    assert summary_block(again) == summary_block(first)
    assert read_rollouts(out) == records

    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.strip() == summary_block(first).strip()


def test_run_no_resume_starts_over_and_progress_goes_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.jsonl"
    assert main(["run", "--out", str(out), "--max-turns", "2"]) == 0
    captured = capsys.readouterr()
    assert "rollouts 10/10 (100%)" in captured.err
    assert "(100%)" not in captured.out
    assert {r.turns for r in read_rollouts(out)} <= {1, 2}
    assert main(["run", "--out", str(out), "--no-resume", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert f"wrote        10 records to {out}\n" in captured.out and captured.err == ""
    assert max(r.turns for r in read_rollouts(out)) > 2


def test_run_refuses_a_file_of_another_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.jsonl"
    assert main(["run", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["run", "--out", str(out), "--seed", "9", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another seed" in err


def test_report_flags_duplicates_instead_of_counting_them(
    calendar_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = calendar_file.read_text().splitlines(keepends=True)
    doubled = tmp_path / "doubled.jsonl"
    doubled.write_text("".join(lines + lines[:3]))
    assert main(["report", str(calendar_file)]) == 0
    clean = capsys.readouterr().out
    assert main(["report", str(doubled)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rollouts     8 (4 scenarios x 2 samples)\n")
    assert "duplicates   3 (repeated samples, counted once; was the file written twice?)" in out
    assert [line for line in out.splitlines() if not line.startswith("duplicates")] == (
        clean.splitlines()
    )
    assert main(["report", str(doubled), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["duplicates"] == 3 and data["rollouts"] == 8


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_report_into_a_closed_pipe_exits_quietly(calendar_file: Path, as_json: bool) -> None:
    # `convo-sim report FILE | head -1`: the reader is gone before we write.
    import subprocess
    import sys

    code = "import sys; from convo_sim.cli import main; sys.exit(main())"
    args = [sys.executable, "-c", code, "report", str(calendar_file), *(["--json"] * as_json)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=30)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()
    assert proc.returncode == 141
