"""Hostile scenario files: every one is `FILE:LINE: problem` and exit 2, never a traceback.

Each input here once ended in a traceback (exit 1), hung, took seconds, or
was accepted and crashed the run later. A scenario the loader accepts must
be runnable: its values are checked when it is loaded.
"""

from __future__ import annotations

import json
import os
import re
import string
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convo_sim import InputError, ScenarioError
from convo_sim.cli import main
from convo_sim.scenarios import Scenario, load_scenarios
from convo_sim.scenarios import _bounds as bounds

pytestmark = pytest.mark.timeout(30)

NATIVE: dict[str, Any] = {
    "id": "ok",
    "steps": [
        {"action": "add", "event_id": 0, "name": "Design review", "duration": 60},
        {"action": "constrain", "event_id": 0, "constraint": "before 1pm"},
    ],
}
NEMO_ROW: dict[str, Any] = {
    "responses_create_params": {
        "input": [
            {"role": "system", "content": "Keep my calendar."},
            {"role": "user", "content": "Add a 30 minute sync (event id: 0)."},
        ]
    },
    "exp_cal_state": {
        "0": {
            "event_id": 0,
            "duration": 30,
            "constraint": None,
            "min_time": "10:00",
            "max_time": "16:00",
        }
    },
}
SEED: dict[str, Any] = {
    "id": "seed",
    "user_script": ["Add Retro at 11am (event id: 0)"],
    "expected_state": {"0": {"event_name": "Retro", "start_time": "11:00", "duration": 30}},
}
STEPS_YAML = "[{action: add, event_id: 0, name: Sync, duration: 30}]"


def native(**changes: Any) -> dict[str, Any]:
    return {**NATIVE, **changes}


def step(**changes: Any) -> dict[str, Any]:
    return native(steps=[{**NATIVE["steps"][0], **changes}])


def constrained(text: str) -> dict[str, Any]:
    return native(steps=[NATIVE["steps"][0], {**NATIVE["steps"][1], "constraint": text}])


def jsonl(*records: Any) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def nest(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


DEEP = 5000
BIG = "9" * 5000  # over CPython's 4,300-digit limit on int(str)

# (file name, content, the line the error must name)
CASES: dict[str, tuple[str, str, int]] = {
    # -- tracebacks -------------------------------------------------------------
    "yaml-duplicate-scenarios-key": (
        "s.yaml",
        f"scenarios:\n  - id: a\n    steps: {STEPS_YAML}\nscenarios:\n  - id: b\n    steps: {STEPS_YAML}\n",
        4,
    ),
    "yaml-recursive-anchor": ("s.yaml", "scenarios: &loop\n  - *loop\n", 2),
    "yaml-recursive-anchor-in-record": (
        "s.yaml",
        f"- id: a\n  steps: {STEPS_YAML}\n  metadata: &m\n    self: *m\n",
        4,
    ),
    "yaml-int-key": ("s.yaml", f"- id: a\n  steps: {STEPS_YAML}\n  1: one\n", 3),
    "yaml-null-key-deep": (
        "s.yaml",
        f"- id: a\n  steps: {STEPS_YAML}\n  metadata:\n    x:\n      ~: nothing\n",
        5,
    ),
    "yaml-list-key": ("s.yaml", f"- id: a\n  steps: {STEPS_YAML}\n  ? [1, 2]\n  : pair\n", 3),
    "yaml-deep-flow": ("s.yaml", f"- id: a\n  steps: {STEPS_YAML}\n  metadata: {nest(DEEP)}\n", 3),
    "yaml-deep-block": (
        "s.yaml",
        "- id: a\n  metadata:\n"
        + "".join("  " * (i + 2) + "k:\n" for i in range(300))
        + "  " * 302
        + "v\n",
        101,  # the mapping at depth d starts on line d: the 101st is one too many
    ),
    "yaml-big-int": ("s.yaml", f"- id: a\n  seed: {BIG}\n  steps: {STEPS_YAML}\n", 2),
    "jsonl-deep-line": ("s.jsonl", jsonl(NATIVE) + nest(DEEP) + "\n", 2),
    "json-array-deep": ("s.json", "[\n" + json.dumps(NATIVE) + ",\n" + nest(DEEP) + "\n]\n", 3),
    "jsonl-deep-in-record": (
        "s.jsonl",
        jsonl(NATIVE) + json.dumps(native(id="b"))[:-1] + ', "metadata": ' + nest(DEEP) + "}\n",
        2,
    ),
    "jsonl-big-int": (
        "s.jsonl",
        jsonl(NATIVE) + json.dumps(native(id="b"))[:-1] + f', "seed": {BIG}}}\n',
        2,
    ),
    "json-array-big-int": ("s.json", "[\n" + json.dumps(native(seed=1))[:-2] + f"{BIG}}}\n]", 2),
    # -- accepted, then the run crashed ---------------------------------------------
    "native-at-24:00": ("s.jsonl", jsonl(NATIVE, {**constrained("at 24:00"), "id": "b"}), 2),
    "native-before-24:00": ("s.jsonl", jsonl(constrained("before 24:00")), 1),
    "native-min-time-banana": ("s.jsonl", jsonl(native(min_time="banana")), 1),
    "native-min-time-negative": ("s.jsonl", jsonl(native(min_time="-1:00")), 1),
    "native-max-time-25": ("s.jsonl", jsonl(native(max_time="25:00")), 1),
    "native-min-after-max": ("s.jsonl", jsonl(native(min_time="15:00", max_time="11:00")), 1),
    "native-huge-duration": ("s.jsonl", jsonl(NATIVE, {**step(duration=10**30), "id": "b"}), 2),
    "native-day-long-duration": ("s.jsonl", jsonl(step(duration=100_000)), 1),
    "nemo-lone-surrogate": (
        "s.jsonl",
        jsonl(NEMO_ROW).replace("30 minute sync", "30 minute \\udc80sync"),
        1,
    ),
    "seed-lone-surrogate": ("s.jsonl", jsonl(SEED).replace("Retro at", "Retro \\udc80at"), 1),
    "native-lone-surrogate-name": (
        "s.jsonl",
        jsonl(NATIVE, {**step(name="A\ud800B"), "id": "b"}),
        2,
    ),
    "yaml-lone-surrogate": ("s.yaml", f'- id: "a\\udc80"\n  steps: {STEPS_YAML}\n', 1),
    "nemo-huge-duration": (
        "s.jsonl",
        jsonl(NEMO_ROW).replace('"duration": 30', '"duration": 1000000000'),
        1,
    ),
    "nemo-at-24:00": (
        "s.jsonl",
        jsonl(NEMO_ROW).replace('"constraint": null', '"constraint": "at 24:00"'),
        1,
    ),
    "empty-id": ("s.jsonl", jsonl(native(id="")), 1),
    "id-with-newline": ("s.jsonl", jsonl(NATIVE, native(id="a\nb")), 2),
    "blank-id": ("s.jsonl", jsonl(native(id="   ")), 1),
    "seed-id-with-newline": ("s.jsonl", jsonl({**SEED, "id": "x\ny"}), 1),
    # -- slow: a 1 KB alias bomb expands to 10^7 elements ---------------------------
    "yaml-alias-bomb": (
        "s.yaml",
        "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 8))
        + f"scenarios:\n  - id: a\n    steps: {STEPS_YAML}\n    metadata: *a7\n",
        5,  # a1..a4 add 110 + 1,110 + 11,110 + 111,110 nodes: a4 crosses 100,000
    ),
}


def assert_one_line_error(error: InputError, path: Path, line: int) -> None:
    assert error.path == str(path)
    assert error.line == line, error
    assert str(error).startswith(f"{path}:{line}: ")
    assert "\n" not in str(error)


@pytest.mark.parametrize("name", list(CASES))
def test_every_hostile_input_is_one_error_with_file_and_line(name: str, tmp_path: Path) -> None:
    filename, text, line = CASES[name]
    path = tmp_path / filename
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with pytest.raises(ScenarioError) as info:
        load_scenarios(path)
    assert_one_line_error(info.value, path, line)


@pytest.mark.parametrize(
    "name", ["yaml-recursive-anchor", "jsonl-deep-line", "native-at-24:00", "yaml-alias-bomb"]
)
def test_the_cli_exits_2_with_one_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    filename, text, line = CASES[name]
    path = tmp_path / filename
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    assert main(["run", "--scenarios", str(path), "--out", str(tmp_path / "out.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"convo-sim: error: {path}:{line}: ")
    assert len(err.splitlines()) == 1


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(ScenarioError) as info:
        load_scenarios(fifo)
    assert_one_line_error(info.value, fifo, 1)
    assert "not a regular file" in info.value.problem


def test_dev_zero_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenarios("/dev/zero")
    assert_one_line_error(info.value, Path("/dev/zero"), 1)


def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenarios(tmp_path)
    assert_one_line_error(info.value, tmp_path, 1)


def test_a_file_over_the_size_bound_is_refused_at_the_line_it_crosses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bounds, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "big.jsonl"
    path.write_text(jsonl(*[native(id=f"s{i}") for i in range(20)]))
    line_length = len(json.dumps(native(id="s0"))) + 1
    with pytest.raises(ScenarioError) as info:
        load_scenarios(path)
    assert_one_line_error(info.value, path, 1000 // line_length + 1)
    assert "1000 bytes" in info.value.problem
    path.write_text(jsonl(native(id="s0")))
    assert len(load_scenarios(path)) == 1


def test_nesting_and_aliases_within_the_bounds_still_load(tmp_path: Path) -> None:
    shared = "\n".join(
        [
            "common: &meta {team: platform, tags: [a, b, c]}",
            "scenarios:",
            *(
                f"  - {{id: s{i}, steps: {STEPS_YAML}, metadata: {{shared: *meta, n: {i}}}}}"
                for i in range(50)
            ),
        ]
    )
    path = tmp_path / "ok.yaml"
    path.write_text(shared + "\n")
    loaded = load_scenarios(path)
    assert len(loaded) == 50 and loaded[7].metadata["shared"]["tags"] == ["a", "b", "c"]
    deep = tmp_path / "deep.jsonl"
    deep.write_text(jsonl(native(metadata={"x": json.loads(nest(40))})))
    assert load_scenarios(deep)[0].metadata["x"] == json.loads(nest(40))


def test_checked_values_still_accept_what_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text(
        jsonl(
            native(id="a", min_time="9:00", max_time="17:30"),
            constrained("between 9am and 11:59pm") | {"id": "b", "max_time": "24:00"},
            step(duration=1440) | {"id": "c", "min_time": "0:00", "max_time": "24:00"},
            native(id="unicode: café ☕ 会议"),
        )
    )
    assert [s.id for s in load_scenarios(path)] == ["a", "b", "c", "unicode: café ☕ 会议"]


# -- fuzzing: any input is a valid scenario or one ScenarioError with a line -------


def _fragments() -> st.SearchStrategy[str]:
    record_text = [
        json.dumps(NATIVE),
        json.dumps(NEMO_ROW),
        json.dumps(SEED),
        f"- id: a\n  steps: {STEPS_YAML}\n",
        "scenarios:\n",
        "&a [*a]",
        "*a",
        "? [1]\n: x\n",
        "[" * 300,
        "{" * 300,
        "]" * 300,
        "9" * 4400,
        '"\\udc80"',
        "\ud800",
        "at 24:00",
        "min_time",
        '"max_time": "25:00"',
        "\x00",
        "\n",
        "  ",
        ":",
        "-",
        ",",
        '"',
        "{",
        "}",
        "1e999",
        "NaN",
        "null",
        "true",
        "\ufeff",
    ]
    pieces = st.one_of(
        st.sampled_from(record_text),
        st.text(alphabet=string.printable, max_size=20),
        st.text(max_size=10),
    )
    return st.lists(pieces, max_size=12).map("".join)


def _mutated_record() -> st.SearchStrategy[str]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.sampled_from(
            ["", "at 24:00", "before 1pm", "10:00", "25:00", "-1:00", "x\ny", "\udc80"]
        ),
        st.from_regex(r"\A(at|before|after) [0-9]{1,2}(:[0-9]{2})?(am|pm)?\Z"),
        st.from_regex(r"\Abetween [0-9]{1,2}(am|pm) and [0-9]{1,2}:[0-9]{2}\Z"),
        st.from_regex(r"\A-?[0-9]{1,2}:[0-9]{2}\Z"),
    )
    values = st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )
    base = st.sampled_from([NATIVE, NEMO_ROW, SEED, NATIVE["steps"][0]])
    return st.builds(
        lambda record, key, value, drop: json.dumps(
            {**{k: v for k, v in record.items() if k != drop}, key: value}
        ),
        base,
        st.sampled_from(
            [
                "id",
                "steps",
                "min_time",
                "max_time",
                "seed",
                "max_turns",
                "metadata",
                "persona",
                "exp_cal_state",
                "expected_state",
                "responses_create_params",
                "user_script",
                "x",
            ]
        ),
        values,
        st.sampled_from(["", "id", "steps", "exp_cal_state", "expected_state"]),
    )


def check_loads_or_fails_cleanly(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        loaded = load_scenarios(path)
    except ScenarioError as exc:
        assert exc.path == str(path)
        assert isinstance(exc.line, int) and exc.line >= 1, exc
        # (YAML also breaks lines at CR, NEL and the Unicode separators.)
        assert exc.line <= len(re.split("\r\n|[\n\r\x85\u2028\u2029]", text)), exc
        assert str(exc).startswith(f"{path}:{exc.line}: ")
        assert "\n" not in str(exc)
        return
    # Accepted: then it is runnable as it stands, nothing left to fail at run time.
    for scenario in loaded:
        check_runnable(scenario)


def check_runnable(scenario: Scenario) -> None:
    from convo_sim.cli.actors_spec import describe_goal
    from convo_sim.domains.calendar._model import ExpectedState

    json.loads(scenario.model_dump_json())  # writable: no lone surrogates, JSON values only
    assert scenario.id.strip() and scenario.id.isprintable()
    scenario.opening_transcript()
    describe_goal(scenario)
    expected = scenario.expected()
    if expected is not None:
        for event in ExpectedState.from_dict(expected).values():
            if event.constraint is not None:
                assert event.constraint.text
    if scenario.goal is not None:
        for goal_step in scenario.goal.steps:
            if goal_step.constraint is not None:
                from convo_sim.domains.calendar._model import parse_constraint

                constraint = parse_constraint(goal_step.constraint)
                assert constraint is not None and constraint.text
    # And the run itself: the rule-based actors and verifiers, as `convo-sim run`.
    from convo_sim import Rollout
    from convo_sim.scenarios import run_scenario

    async def run() -> None:
        with anyio.fail_after(10):
            result = await run_scenario(scenario, max_turns=6)
        assert result.error is None, result.error
        Rollout.from_result(scenario, 0, 0, result).model_dump_json()

    anyio.run(run)


@pytest.mark.timeout(120)
@given(text=_fragments(), suffix=st.sampled_from(["jsonl", "json", "yaml"]))
def test_fuzzed_files_load_or_fail_with_a_line(
    tmp_path_factory: Any, text: str, suffix: str
) -> None:
    tmp_path = tmp_path_factory.mktemp("fuzz")
    check_loads_or_fails_cleanly(tmp_path, f"s.{suffix}", text)


@pytest.mark.timeout(120)
@given(lines=st.lists(_mutated_record(), min_size=1, max_size=3))
def test_fuzzed_records_load_or_fail_with_a_line(tmp_path_factory: Any, lines: list[str]) -> None:
    tmp_path = tmp_path_factory.mktemp("fuzz")
    check_loads_or_fails_cleanly(tmp_path, "s.jsonl", "".join(f"{line}\n" for line in lines))
