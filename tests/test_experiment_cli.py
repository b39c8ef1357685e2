"""`convo-sim experiment` says what went wrong and means what `run` means."""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import pytest

from convo_sim._experiments import CellStats
from convo_sim._sink import read_rollouts
from convo_sim.cli import main
from convo_sim.cli.experiment import format_table


def dead_port() -> int:
    # A port nothing listens on: bound, then closed.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(60)
def test_an_unreachable_model_shows_in_an_errors_column_and_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{dead_port()}/v1"
    argv = ["experiment", "--personas", "terse", "--samples", "1", "--generate", "1"]
    argv += ["--assistants", "builtin,openai:calendar-solver", "--base-url", url]
    assert main([*argv, "--out-dir", str(tmp_path), "--no-html"]) == 0
    out, err = capsys.readouterr()
    header, builtin, llm = out.splitlines()[:3]
    assert header.split()[:4] == ["persona", "assistant", "n", "errors"]
    assert builtin.split()[:4] == ["terse", "builtin", "1", "0"]
    assert llm.split()[:4] == ["terse", "openai:calendar-solver", "1", "1"]
    assert "1 of 2 rollouts ended in an error" in err
    cells = {
        c["group"]["assistant"]: c
        for c in json.loads((tmp_path / "results.json").read_text())["cells"]
    }
    assert (cells["builtin"]["errors"], cells["openai:calendar-solver"]["errors"]) == (0, 1)
    with (tmp_path / "results.csv").open() as handle:
        assert [row["errors"] for row in csv.DictReader(handle)] == ["0", "1"]


def test_a_model_with_no_server_and_no_key_is_refused_up_front_as_in_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    argv = ["experiment", "--assistants", "openai:gpt-4o-mini", "--out-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs an API key in $OPENAI_API_KEY" in err
    assert not (tmp_path / "rollouts.jsonl").exists()  # refused before anything ran
    assert main(["run", "--assistant", "openai:gpt-4o-mini", "--out", str(tmp_path / "r")]) == 2
    assert "needs an API key in $OPENAI_API_KEY" in capsys.readouterr().err


def test_max_turns_overrides_every_scenario_s_limit_in_experiment_as_in_run(
    tmp_path: Path,
) -> None:
    argv = ["experiment", "--personas", "cooperative", "--samples", "1", "--generate", "2"]
    free = tmp_path / "free"
    assert main([*argv, "--out-dir", str(free), "--no-html"]) == 0
    assert max(r.turns for r in read_rollouts(free / "rollouts.jsonl")) > 2  # the limit binds
    capped = tmp_path / "capped"
    assert main([*argv, "--max-turns", "2", "--out-dir", str(capped), "--no-html"]) == 0
    records = read_rollouts(capped / "rollouts.jsonl")
    assert records and all(r.turns <= 2 for r in records)
    saved = [json.loads(line) for line in (capped / "scenarios.jsonl").read_text().splitlines()]
    assert saved and all(s["max_turns"] == 2 for s in saved)
    # `run` on the saved scenarios: --max-turns overrides their limit of 2 too.
    run_out = tmp_path / "run.jsonl"
    scenarios = str(capped / "scenarios.jsonl")
    assert main(["run", "--scenarios", scenarios, "--max-turns", "1", "--out", str(run_out)]) == 0
    assert all(r.turns <= 1 for r in read_rollouts(run_out))


def test_old_scenario_count_gets_a_pointer_to_generate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["experiment", "--scenarios", "4"]) == 2
    assert "--generate 4" in capsys.readouterr().err


def test_the_table_stays_aligned_with_long_names() -> None:
    cells = [
        CellStats(group={"persona": "cooperative", "assistant": "builtin"}, rollouts=3, scored=3),
        CellStats(
            group={"persona": "terse", "assistant": "openai:Qwen/Qwen2.5-72B-Instruct"},
            rollouts=12,
            scored=12,
            errors=2,
            mean_reward=0.5,
            reward_ci=(0.25, 0.75),
        ),
    ]
    lines = format_table(cells, k=3).splitlines()
    # Every column starts at the same offset on every line.
    starts = [lines[0].index(name) for name in ("assistant", "errors", "reward", "pass^3")]
    for line, row in zip(lines[1:], cells, strict=True):
        assert line.index(row.group["assistant"]) == starts[0]
        assert line[starts[2] :].startswith(("-", "0.50"))
    assert lines[2].split()[2:4] == ["12", "2"]


def test_experiment_help_has_no_markup(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["experiment", "--help"])
    out = capsys.readouterr().out
    assert "`" not in out and "--samples" in out and "--generate" in out


def test_a_rerun_with_nothing_left_says_so_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from convo_sim._progress import Progress

    stream = io.StringIO()
    progress = Progress(stream=stream, tty=False)
    progress.start(10, already_done=10)
    progress.close()
    assert stream.getvalue().splitlines() == [
        "rollouts 10/10 (100%) | nothing left to run: every sample is already in the file"
    ]


def test_summary_counts_in_the_singular(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "one.jsonl"
    assert main(["generate", "1", "--out", str(path)]) == 0
    argv = ["run", "--scenarios", str(path), "--out", str(tmp_path / "r"), "--no-progress"]
    assert main(argv) == 0
    assert "rollouts     1 (1 scenario x 1 sample)" in capsys.readouterr().out


def test_log_level_works_after_the_command_too(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "one.jsonl"
    assert main(["generate", "1", "--out", str(path)]) == 0
    code = "import sys; from convo_sim.cli import main; sys.exit(main())"
    for argv in (["--log-level", "info", "run"], ["run", "--log-level", "info"]):
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                *argv,
                "--scenarios",
                str(path),
                "--no-progress",
                "--out",
                str(tmp_path / "r.jsonl"),
                "--no-resume",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "dialogue.started" in done.stderr
