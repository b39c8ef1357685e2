"""The Domain seam: the registry, the calendar behind it, a second domain, and one path.

A domain is one unit: the toy "shout" domain (tests/toy_domain.py, public
names only) runs through the CLI, scripts, `run_scenario` and the server
once it is registered or named by an entry point, exactly as the calendar.
"""

from __future__ import annotations

import importlib.metadata
import json
import pickle
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from convo_sim import (
    InputError,
    RolloutPlan,
    ScenarioError,
    UnknownDomainError,
    generate_rollouts_sync,
    read_rollouts,
    sample_seed,
    write_rollouts,
)
from convo_sim.cli import main
from convo_sim.domains import ENTRY_POINT_GROUP, Domain, _registry, get, names, register, unregister
from convo_sim.domains.calendar import DOMAIN as CALENDAR
from convo_sim.domains.calendar import CalendarScenario
from convo_sim.scenarios import load_script, run_scenario, run_script
from convo_sim.server import default_models
from tests import toy_domain
from tests.toy_domain import DOMAIN as SHOUT

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[importlib.metadata.EntryPoint]]:
    """A fresh registry whose installed entry points are the list the test fills in."""
    points: list[importlib.metadata.EntryPoint] = []

    def entry_points(*, group: str) -> importlib.metadata.EntryPoints:
        assert group == ENTRY_POINT_GROUP
        return importlib.metadata.EntryPoints(points)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(_registry, "_registered", {})
    monkeypatch.setattr(_registry, "_loaded", {})
    monkeypatch.setattr(_registry, "_failed", {})
    yield points


def point(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


@pytest.fixture
def shout(registry: list[importlib.metadata.EntryPoint]) -> Domain[Any]:
    """The toy domain, installed as a third-party package installs one."""
    registry.append(point("shout", "tests.toy_domain:DOMAIN"))
    return SHOUT


# ---------------------------------------------------------------- the registry


def test_the_calendar_is_installed_and_named() -> None:
    assert "calendar" in names()
    assert get("calendar") is CALENDAR
    metadata = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    assert {p.name: p.value for p in metadata}["calendar"] == "convo_sim.domains.calendar:DOMAIN"


def test_an_unknown_domain_is_an_input_error_naming_the_installed_ones() -> None:
    with pytest.raises(UnknownDomainError) as info:
        get("calender")
    assert isinstance(info.value, InputError)
    assert info.value.name == "calender" and info.value.known == names()
    assert "expected one of: calendar" in str(info.value)


def test_a_third_party_entry_point_adds_a_domain(shout: Domain[Any]) -> None:
    assert names() == ["calendar", "shout", "support"]
    assert get("shout") is shout


def test_the_calendar_is_found_when_the_installed_metadata_is_stale(
    registry: list[importlib.metadata.EntryPoint],
) -> None:
    assert registry == []  # no entry point at all, as in a checkout never reinstalled
    assert names() == ["calendar", "support"]
    assert get("calendar") is CALENDAR


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("no_such_package.domain:DOMAIN", "ModuleNotFoundError"),
        ("tests.toy_domain:basic", "not a Domain"),
        ("tests.toy_domain:MISSING", "AttributeError"),
    ],
)
def test_a_broken_entry_point_is_logged_and_skipped(
    shout: Domain[Any], registry: list[importlib.metadata.EntryPoint], value: str, why: str
) -> None:
    registry.append(point("broken", value))
    with capture_logs() as logs:
        assert names() == ["calendar", "shout", "support"]
    [failed] = [e for e in logs if e["event"] == "domain.load_failed"]
    assert failed["domain"] == "broken" and why in failed["error"]
    with pytest.raises(UnknownDomainError) as info:
        get("broken")
    assert why in str(info.value) and info.value.known == ["calendar", "shout", "support"]


def test_unreadable_metadata_leaves_the_built_in_domains(
    registry: list[importlib.metadata.EntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    def entry_points(*, group: str) -> importlib.metadata.EntryPoints:
        raise OSError("a distribution's metadata cannot be read")

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    with capture_logs() as logs:
        assert names() == ["calendar", "support"]
    assert [e["event"] for e in logs] == ["domain.discovery_failed"]


def test_an_entry_point_under_another_name_is_skipped(
    registry: list[importlib.metadata.EntryPoint],
) -> None:
    registry.append(point("yell", "tests.toy_domain:DOMAIN"))  # the object says "shout"
    with capture_logs() as logs:
        assert names() == ["calendar", "support"]
    assert any("named 'shout'" in e.get("error", "") for e in logs)


def test_an_entry_point_cannot_take_a_built_in_name(
    registry: list[importlib.metadata.EntryPoint],
) -> None:
    registry.append(point("calendar", "tests.toy_domain:DOMAIN"))
    with capture_logs() as logs:
        assert get("calendar") is CALENDAR
    assert any(e["event"] == "domain.name_taken" for e in logs)


def test_register_and_unregister(registry: list[importlib.metadata.EntryPoint]) -> None:
    register(SHOUT)
    assert "shout" in names() and get("shout") is SHOUT
    register(SHOUT)  # the same object again is fine
    other = Domain(**{**vars(SHOUT), "description": "another"})
    with pytest.raises(ValueError, match="exists already"):
        register(other)
    register(other, replace=True)
    assert get("shout") is other
    with pytest.raises(ValueError, match="exists already"):
        register(CALENDAR.__class__(**{**vars(CALENDAR)}))
    with pytest.raises(TypeError):
        register("calendar")  # type: ignore[arg-type]
    unregister("shout")
    assert "shout" not in names()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"name": "not a name"}, "identifier"),
        ({"default_sets": ("missing",)}, "not among the bundled sets"),
        ({"max_turns": 0}, "max_turns"),
        ({"card": lambda scenario, seed: {}}, "card and from_card"),
    ],
)
def test_a_domain_checks_itself(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Domain(**{**vars(SHOUT), **change})


def test_the_domains_bundled_sets_by_name() -> None:
    assert [s.id for s in CALENDAR.scenarios()] == [
        s.id for s in CALENDAR.bundled["calendar_examples"]()
    ]
    assert len(CALENDAR.scenarios(list(CALENDAR.bundled))) == 15
    with pytest.raises(InputError, match="bundles no scenario set 'nope'"):
        CALENDAR.scenarios(["nope"])


# ---------------------------------------------------------------- one path


def test_a_plan_is_the_domains_factories_and_pickles_by_reference() -> None:
    plan = CALENDAR.plan(seed=3, concurrency=4)
    assert (plan.assistant, plan.user, plan.verifiers) == (
        CALENDAR.assistant,
        CALENDAR.user,
        CALENDAR.verifiers,
    )
    assert (plan.seed, plan.concurrency, plan.max_turns) == (3, 4, CALENDAR.max_turns)
    assert pickle.loads(pickle.dumps(plan)) == plan  # what Ray ships, without cloudpickle
    with pytest.raises(TypeError):
        CALENDAR.plan(sed=3)
    with pytest.raises(ValueError, match="concurrency"):
        CALENDAR.plan(concurrency=0)


def comparable(rollout: Any) -> tuple[Any, ...]:
    return (
        rollout.termination,
        rollout.terminated_by,
        rollout.turns,
        rollout.reward,
        [(s.verifier, s.turn, s.score, s.reason) for s in rollout.turn_scores],
        [(v.verifier, v.reward, v.reason) for v in rollout.verdicts],
        [(m.role, m.text) for m in rollout.transcript.messages],
    )


def test_python_and_the_cli_give_the_same_dialogues_for_the_same_seed(tmp_path: Path) -> None:
    cli = tmp_path / "cli.jsonl"
    argv = ["run", "--samples", "2", "--seed", "5", "--out", str(cli), "--no-progress"]
    assert main(argv) == 0
    by_cli = {r.key: comparable(r) for r in read_rollouts(cli)}

    python = tmp_path / "python.jsonl"
    anyio.run(
        lambda: write_rollouts(
            python, CALENDAR.scenarios(), CALENDAR.plan(seed=5), samples_per_scenario=2
        )
    )
    by_plan = {r.key: comparable(r) for r in read_rollouts(python)}
    assert by_plan == by_cli and len(by_cli) == 20

    async def one_by_one() -> dict[tuple[str, int], Any]:
        out = {}
        for scenario in CALENDAR.scenarios():
            for index in range(2):
                seed = sample_seed(5, scenario.id, index)
                out[(scenario.id, index)] = comparable(await run_scenario(scenario, seed=seed))
        return out

    # run_scenario's result is a DialogueResult: the same fields, the same values.
    assert anyio.run(one_by_one) == by_cli
    # And the samples really differ: the seed reaches the user's wording.
    assert by_cli[("change-of-mind", 0)][-1] != by_cli[("change-of-mind", 1)][-1]


def test_the_same_holds_for_generated_scenarios() -> None:
    generated = CALENDAR.generate(12, seed=4)
    rollouts = generate_rollouts_sync(generated, CALENDAR.plan(seed=9))

    async def one_by_one() -> dict[str, Any]:
        return {
            s.id: comparable(await run_scenario(s, seed=sample_seed(9, s.id, 0))) for s in generated
        }

    assert {r.scenario_id: comparable(r) for r in rollouts} == anyio.run(one_by_one)


# ---------------------------------------------------------------- everything takes a domain


@pytest.mark.parametrize(
    "argv",
    [
        ["run"],
        ["run", "--script", "unused.py"],
        ["experiment"],
        ["verify", "rollouts.jsonl"],
        ["serve", "--port", "0"],
        ["report", "rollouts.jsonl"],
        ["report", "rollouts.jsonl", "--domain", ""],
    ],
)
def test_an_unknown_domain_flag_is_one_line_and_exit_2(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rollouts.jsonl").write_text("")
    (tmp_path / "unused.py").write_text("SCENARIOS = []\n")
    name = "" if "" in argv else "nope"
    argv = argv if "" in argv else [*argv, "--domain", "nope"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"unknown domain {name!r}; expected one of: calendar" in err


def test_a_second_domain_runs_through_the_cli(
    shout: Domain[Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "shout.jsonl"
    argv = ["run", "--domain", "shout", "--samples", "2", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    records = read_rollouts(out)
    assert sorted(r.key for r in records) == [("hello", 0), ("hello", 1), ("one", 0), ("one", 1)]
    assert {r.reward for r in records} == {1.0}
    assert {v.verifier for r in records for v in r.verdicts} == {"last_word"}
    # Its own file format, with the line of a bad record.
    scenarios = tmp_path / "shout-scenarios.jsonl"
    scenarios.write_text('{"id": "a", "goal": {"words": ["x"]}}\n{"id": "b", "goal": {}}\n')
    assert main(["run", "--domain", "shout", "--scenarios", str(scenarios), "--out", str(out)]) == 2
    assert f"{scenarios}:2: field 'goal.words'" in capsys.readouterr().err
    # verify re-scores with the domain's verifiers; the calendar's would not recognise it.
    assert main(["verify", str(out), "--domain", "shout", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mean_reward"] == 1.0
    assert main(["verify", str(out), "--json"]) == 2  # the calendar has no "hello"


def test_a_second_domain_runs_an_experiment_grid(shout: Domain[Any], tmp_path: Path) -> None:
    argv = ["experiment", "--domain", "shout", "--personas", "terse", "--seeds", "1"]
    assert main([*argv, "--generate", "2", "--out-dir", str(tmp_path), "--no-html"]) == 0
    table = json.loads((tmp_path / "results.json").read_text())
    assert table["meta"]["domain"] == "shout"
    assert [c["mean_reward"] for c in table["cells"]] == [1.0]


def test_the_server_serves_every_domains_models(shout: Domain[Any]) -> None:
    served = default_models()
    assert {"echo", "calendar-solver", "calendar-user", "shout-assistant", "shout-echo"} <= set(
        served
    )


def test_a_model_name_two_domains_claim_goes_to_the_first(
    registry: list[importlib.metadata.EntryPoint],
) -> None:
    clash = Domain(**{**vars(SHOUT), "name": "zzz", "served_models": lambda: {"echo": object()}})
    register(clash)  # type: ignore[arg-type]
    with capture_logs() as logs:
        served = default_models()
    assert type(served["echo"]).__name__ == "EchoModel"
    assert [e["domain"] for e in logs if e["event"] == "server.model_name_taken"] == ["zzz"]


async def test_run_scenario_takes_a_domain_by_name_or_object(shout: Domain[Any]) -> None:
    (scenario, _) = toy_domain.basic()
    by_name = await run_scenario(scenario, domain="shout")
    by_object = await run_scenario(scenario, domain=SHOUT)
    assert by_name.reward == by_object.reward == 1.0
    assert [m.text for m in by_name.transcript] == [
        "hello",
        "HELLO",
        "world",
        "WORLD",
        "###STOP###",
    ]
    with pytest.raises(UnknownDomainError):
        await run_scenario(scenario, domain="nope")


def write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(source).lstrip())
    return path


async def test_a_script_names_its_domain(shout: Domain[Any], tmp_path: Path) -> None:
    script = load_script(
        write(
            tmp_path,
            """
            DOMAIN = "shout"
            SCENARIOS = [{"id": "s", "goal": {"words": ["hey", "you"]}}]
            """,
        )
    )
    assert script.domain is SHOUT
    (record,) = await run_script(script)
    assert record.reward == 1.0 and record.turns == 2


@pytest.mark.parametrize(
    ("source", "wanted", "problem", "line"),
    [
        ('SCENARIOS = []\nDOMAIN = "nope"\n', None, "unknown domain 'nope'", 2),
        ("DOMAIN = 3\nSCENARIOS = []\n", None, "DOMAIN must be", 1),
        ('DOMAIN = "shout"\nSCENARIOS = []\n', "calendar", "asks for domain 'calendar'", 1),
    ],
)
def test_a_scripts_domain_is_checked_with_its_line(
    shout: Domain[Any], tmp_path: Path, source: str, wanted: str | None, problem: str, line: int
) -> None:
    with pytest.raises(ScenarioError, match=problem) as info:
        load_script(write(tmp_path, source), domain=wanted)
    assert info.value.line == line


def test_a_bare_scenario_with_a_calendar_goal_is_a_calendar_scenario(tmp_path: Path) -> None:
    script = load_script(
        write(
            tmp_path,
            """
            from convo_sim.domains.calendar import CalendarGoal, GoalStep
            from convo_sim.scenarios import Scenario

            SCENARIOS = [
                Scenario(
                    id="bare",
                    goal=CalendarGoal(
                        steps=(GoalStep(action="add", event_id=0, name="Call", duration=30),)
                    ),
                )
            ]
            """,
        )
    )
    (scenario,) = script.scenarios
    assert type(scenario) is CalendarScenario
    assert scenario.expected() == {
        "0": {
            "event_id": 0,
            "duration": 30,
            "constraint": None,
            "min_time": "10:00",
            "max_time": "16:00",
        }
    }


def test_the_default_turn_limit_is_one_number() -> None:
    from convo_sim import DEFAULT_MAX_TURNS
    from convo_sim.scenarios import DEFAULT_MAX_TURNS as scenarios_default

    assert DEFAULT_MAX_TURNS == scenarios_default == CALENDAR.max_turns == 20
    assert RolloutPlan(assistant=CALENDAR.assistant, user=CALENDAR.user).max_turns is None


@pytest.mark.timeout(30)
def test_serve_takes_a_domain() -> None:
    import subprocess
    import sys

    script = str(Path(sys.executable).with_name("convo-sim"))
    proc = subprocess.Popen(
        [script, "serve", "--port", "0", "--domain", "calendar"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    served = "calendar-judge, calendar-solver, calendar-user, calendar-user-reviewer, echo"
    assert line.endswith(f"(models: {served})\n"), line
    assert main(["serve", "--canned", "--domain", "calendar"]) == 2
