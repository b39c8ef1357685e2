"""`convo-sim experiment`, experiment tables and confidence intervals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from convo_sim import InputError, TerminationReason, Transcript
from convo_sim._experiments import NO_GROUP, cell_stats
from convo_sim._records import Rollout
from convo_sim._server import ServerThread
from convo_sim._sink import read_rollouts
from convo_sim._stats import bootstrap_interval, wilson_interval
from convo_sim.cli import main
from convo_sim.cli.experiment import run_experiment
from convo_sim.domains.calendar import generate_scenarios as generate_calendar_scenarios

PERSONAS = ["cooperative", "terse", "impatient"]


def run_cli(*argv: str) -> int:
    return main(["experiment", *argv])


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("experiment")
    code = run_cli(
        "--personas", ",".join(PERSONAS), "--seeds", "3", "--generate", "2", "--out-dir", str(out)
    )
    assert code == 0
    return out


def test_experiment_writes_rollouts_tables_and_report(experiment: Path) -> None:
    records = read_rollouts(experiment / "rollouts.jsonl")
    assert len(records) == 2 * len(PERSONAS) * 3
    assert {r.metadata["persona"] for r in records} == set(PERSONAS)
    assert all(r.metadata["assistant"] == "builtin" for r in records)
    assert all(0.0 <= r.metadata["fidelity"]["goal_coverage"] <= 1.0 for r in records)
    assert (experiment / "report.html").read_text().startswith("<!DOCTYPE html>")

    table = json.loads((experiment / "results.json").read_text())
    cells = {c["group"]["persona"]: c for c in table["cells"]}
    assert set(cells) == set(PERSONAS) and "Wilson" in table["intervals"]
    assert table["meta"]["seeds"] == 3
    for cell in cells.values():
        assert cell["rollouts"] == 6 and cell["fidelity_n"] == 6
        low, high = cell["reward_ci"]
        assert low <= cell["mean_reward"] <= high
        assert set(cell["pass_hat_k"]) == {"1", "2", "3"}
    # Every persona is winnable: the solver, a perfect assistant, serves each
    # one fully, and no user is to blame for anything.
    for cell in cells.values():
        assert cell["mean_reward"] == 1.0 and cell["premature_stop_rate"] == 0.0
        assert cell["goal_coverage"] == 1.0
        assert (cell["reviewed"], cell["user_failures"]) == (6, 0)
        assert cell["simulator_failures"] == cell["assistant_failures"] == 0
    assert all(r.user_failure is False for r in records)
    # The impatient user still writes tersely.
    assert cells["impatient"]["mean_turns"] == cells["cooperative"]["mean_turns"]

    with (experiment / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["persona"] for r in rows] == sorted(PERSONAS)
    for column in (
        "mean_reward_ci_low",
        "pass_hat_3",
        "goal_coverage_ci_high",
        "leakage",
        "simulator_failures",
        "assistant_failures",
    ):
        assert column in rows[0]


def test_rerunning_resumes_without_duplicates(experiment: Path) -> None:
    before = (experiment / "rollouts.jsonl").read_bytes()
    code = run_cli(
        "--personas",
        ",".join(PERSONAS),
        "--seeds",
        "3",
        "--generate",
        "2",
        "--out-dir",
        str(experiment),
    )
    assert code == 0
    assert (experiment / "rollouts.jsonl").read_bytes() == before


@pytest.mark.timeout(20)
async def test_another_seed_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    scenarios = generate_calendar_scenarios(1, seed=0)
    done = await run_experiment(
        scenarios, personas=["terse"], seeds=2, seed=1, out_dir=tmp_path, html=False
    )
    assert set(done.paths) == {"rollouts", "scenarios", "csv", "json"}
    with pytest.raises(InputError) as info:
        await run_experiment(scenarios, personas=["terse"], seeds=2, seed=2, out_dir=tmp_path)
    assert info.value.path == str(tmp_path / "rollouts.jsonl")
    # Starting over is allowed.
    again = await run_experiment(
        scenarios, personas=["terse"], seeds=2, seed=2, out_dir=tmp_path, resume=False
    )
    assert {r.seed for r in again.rollouts}.isdisjoint({r.seed for r in done.rollouts})


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--personas", "grumpy"], "unknown persona 'grumpy'"),
        (["--assistants", "gpt"], "unknown assistant spec 'gpt'"),
        (["--seeds", "0"], "--samples must be at least 1"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    assert run_cli(*argv, "--generate", "1", "--out-dir", str(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_every_assistant_meets_the_same_users_over_the_real_http_path(tmp_path: Path) -> None:
    # The done-when of the paired design: the same solver in process and
    # behind `convo-sim serve` (the real openai client over HTTP) gives the
    # same dialogues, so identical per-persona results and zero differences.
    personas = "cooperative,vague,indecisive,withholding,noisy,impatient"
    with ServerThread() as server:
        code = run_cli(
            "--personas", personas, "--assistants", "builtin,openai:calendar-solver",
            "--seeds", "2", "--generate", "2", "--out-dir", str(tmp_path), "--no-html",
            "--base-url", server.base_url,
        )  # fmt: skip
    assert code == 0
    table = json.loads((tmp_path / "results.json").read_text())
    by_cell = {(c["group"]["persona"], c["group"]["assistant"]): c for c in table["cells"]}
    for persona in personas.split(","):
        local, served = by_cell[persona, "builtin"], by_cell[persona, "openai:calendar-solver"]
        assert {k: v for k, v in local.items() if k != "group"} == {
            k: v for k, v in served.items() if k != "group"
        }, persona
        assert local["mean_reward"] == 1.0
    records = read_rollouts(tmp_path / "rollouts.jsonl")
    pairs: dict[tuple[str, str, int], dict[str, Rollout]] = {}
    for r in records:
        key = (r.metadata["base_scenario"], r.metadata["persona"], r.sample_index)
        pairs.setdefault(key, {})[r.metadata["assistant"]] = r
    assert len(pairs) == 2 * 6 * 2
    for pair in pairs.values():
        local, served = pair["builtin"], pair["openai:calendar-solver"]
        assert local.seed == served.seed  # the user's seed never depends on the assistant
        assert [(m.role, m.text) for m in local.transcript] == [
            (m.role, m.text) for m in served.transcript
        ]
    paired = table["paired"]
    assert {row["group"]["persona"] for row in paired} == {*personas.split(","), "(all)"}
    for row in paired:
        assert row["mean_difference"] == 0.0 and row["difference_ci"] == [0.0, 0.0]
        assert row["ties"] == row["pairs"] and row["p_value"] == 1.0
    with (tmp_path / "paired.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(paired)


def test_a_worse_assistant_shows_as_a_paired_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `echo` repeats the user: it never shows a calendar, so it loses every pair.
    with ServerThread() as server:
        code = run_cli(
            "--personas", "cooperative,terse", "--assistants", "builtin,openai:echo",
            "--seeds", "3", "--generate", "2", "--out-dir", str(tmp_path), "--no-html",
            "--base-url", server.base_url,
        )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "paired differences (other - builtin)" in out
    rows = {
        r["group"]["persona"]: r
        for r in json.loads((tmp_path / "results.json").read_text())["paired"]
    }
    pooled = rows["(all)"]
    assert pooled["pairs"] == 12 and pooled["losses"] == 12 and pooled["mean_difference"] == -1.0
    assert pooled["test"] == "exact sign test"
    assert pooled["p_value"] == pytest.approx(2 / 2**12)
    assert rows["terse"]["p_value"] == pytest.approx(2 / 2**6)
    # The echo's failures are the assistant's, not the simulator's.
    cells = json.loads((tmp_path / "results.json").read_text())["cells"]
    echo = [c for c in cells if c["group"]["assistant"] == "openai:echo"]
    assert all(
        c["assistant_failures"] == c["rollouts"] and c["simulator_failures"] == 0 for c in echo
    )


def test_a_population_replaces_the_named_personas(tmp_path: Path) -> None:
    code = run_cli(
        "--population", "4", "--seed", "5", "--seeds", "1", "--generate", "2",
        "--out-dir", str(tmp_path), "--no-html",
    )  # fmt: skip
    assert code == 0
    table = json.loads((tmp_path / "results.json").read_text())
    population = table["meta"]["population"]
    assert population["size"] == 4 and population["seed"] == 5
    assert 0.0 < population["diversity"]["mean_pairwise_distance"] <= 1.0
    names = {c["group"]["persona"] for c in table["cells"]}
    assert names == {f"pop5-{i:03d}" for i in range(4)}
    records = read_rollouts(tmp_path / "rollouts.jsonl")
    assert all(r.metadata["persona_spec"]["name"] == r.metadata["persona"] for r in records)
    assert all(r.metadata["persona_spec"]["profile"]["age"] >= 16 for r in records)
    assert all(r.reward == 1.0 and r.user_failure is False for r in records)
    assert run_cli("--population", "0", "--out-dir", str(tmp_path)) == 2


def rollout(scenario: str, index: int, reward: float | None, **metadata: object) -> Rollout:
    return Rollout(
        responses_create_params={"input": Transcript().to_responses_input()},
        reward=reward,
        scenario_id=scenario,
        sample_index=index,
        seed=index,
        termination=TerminationReason.USER_STOP,
        terminated_by="stop_token",
        turns=2,
        metadata=metadata,
    )


def test_cell_stats_on_known_values() -> None:
    fid = {"goal_coverage": 0.5, "premature_stop": True, "stop_discipline": "ok", "leakage": None}
    records = [
        rollout("a", 0, 1.0, persona="p"),
        rollout("a", 1, 1.0, persona="p"),
        rollout("a", 2, 0.0, persona="p", fidelity=fid),
        rollout("b", 0, 0.0, persona="q"),
        rollout("c", 0, None),
    ]
    cells = {c.group["persona"]: c for c in cell_stats(records, by=("persona",))}
    assert set(cells) == {"p", "q", NO_GROUP}
    p = cells["p"]
    assert (p.rollouts, p.scored) == (3, 3)
    assert p.mean_reward == pytest.approx(2 / 3)
    assert p.pass_rate == pytest.approx(2 / 3)
    assert p.pass_hat_k[2] == pytest.approx(1 / 3)  # C(2,2) / C(3,2)
    assert p.pass_hat_k[3] == 0.0
    assert p.pass_ci == wilson_interval(2, 3)
    assert (p.fidelity_n, p.goal_coverage, p.premature_stop_rate) == (1, 0.5, 1.0)
    assert p.leakage is None and p.leakage_ci is None
    assert cells[NO_GROUP].mean_reward is None and cells[NO_GROUP].reward_ci is None


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(5, 10) or (0, 0)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    low, high = wilson_interval(0, 10) or (0, 0)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(10, 10) or (0, 0)
    assert low == pytest.approx(0.7225, abs=1e-4) and high == 1.0
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_bootstrap_interval_is_reproducible_and_brackets_the_mean() -> None:
    values = [0.0, 1.0, 1.0, 0.5, 1.0, 0.0, 1.0, 1.0]
    first = bootstrap_interval(values, seed=1)
    assert first == bootstrap_interval(values, seed=1)
    assert first is not None and first[0] < sum(values) / len(values) < first[1]
    assert bootstrap_interval([0.7, 0.7]) == (0.7, 0.7)
    assert bootstrap_interval([]) is None


def test_experiment_takes_its_scenarios_from_a_script(tmp_path: Path) -> None:
    script = (
        Path(__file__).resolve().parent.parent / "scenarios" / "examples" / "custom_verifier.py"
    )
    code = run_cli(
        "--script", str(script), "--personas", "terse,noisy", "--seeds", "1",
        "--out-dir", str(tmp_path), "--no-html",
    )  # fmt: skip
    assert code == 0
    records = read_rollouts(tmp_path / "rollouts.jsonl")
    assert {r.metadata["base_scenario"] for r in records} == {"stable-day", "reshuffled-day"}
    assert {r.metadata["persona"] for r in records} == {"terse", "noisy"}
    assert (
        run_cli("--script", str(script), "--scenarios", str(script), "--out-dir", str(tmp_path))
        == 2
    )


@pytest.mark.timeout(90)
def test_llm_users_reviewed_by_an_llm_judge_over_http(tmp_path: Path) -> None:
    # The served calendar-user plays each persona from the scenario card, and
    # the served calendar-user-reviewer reviews it; the judge's answers are
    # cached by content hash in a file, so a second run asks nothing new.
    cache = tmp_path / "judge.jsonl"
    args = (
        "--personas", "cooperative,impatient", "--seeds", "1", "--generate", "2",
        "--user", "openai:calendar-user", "--user-reviewer", "openai:calendar-user-reviewer",
        "--judge-cache", str(cache), "--no-html",
    )  # fmt: skip
    with ServerThread() as server:
        assert run_cli(*args, "--out-dir", str(tmp_path / "a"), "--base-url", server.base_url) == 0
        cached = len(cache.read_text().splitlines())
        assert run_cli(*args, "--out-dir", str(tmp_path / "b"), "--base-url", server.base_url) == 0
    assert cached == 4 and len(cache.read_text().splitlines()) == cached
    for run in ("a", "b"):
        records = read_rollouts(tmp_path / run / "rollouts.jsonl")
        assert len(records) == 4
        assert all(r.reward == 1.0 and r.user_failure is False for r in records)
        reviews = [r.metadata["user_review"] for r in records]
        assert all(
            v["reviewer"] == "judge" and v["prompt_version"] == "user-review/1" for v in reviews
        )
        assert all(v["cached"] is (run == "b") for v in reviews)
        assert {r.metadata["persona"] for r in records} == {"cooperative", "impatient"}
    meta = json.loads((tmp_path / "a" / "results.json").read_text())["meta"]
    assert (meta["user"], meta["user_reviewer"]) == (
        "openai:calendar-user",
        "openai:calendar-user-reviewer",
    )
